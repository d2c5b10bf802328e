"""The entropy limit on hand-made states whose distinct-state counts are known by construction.

Every expected entropy is computed here from the class counts written out by hand (-sum p log2 p), and the
window search is checked against a brute-force all-pairs reference, never against the module's own helpers.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from ie_ray.entropy_limit import DEFAULT_TOLERANCE, DistinctStates, distinct_states, entropy_limit_ie
from ie_ray.ie import entropy_bits

TOL = DEFAULT_TOLERANCE


def plug_in(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts)


def expand(prefix_states: np.ndarray, counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows: prefix p repeated counts[p] times, with its state; symbols are 2-token prefixes (p, 7)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    symbols = np.stack([owner, np.full_like(owner, 7)], axis=1)
    return prefix_states[owner], symbols


# --- counting and entropy ----------------------------------------------------------------------------------------


def test_distinct_prefixes_with_distinct_states_merge_nothing() -> None:
    counts = [1, 2, 3, 4, 10]
    states, symbols = expand(np.random.default_rng(0).standard_normal((5, 6)), counts)
    result = distinct_states(states, symbols)
    expected = -(1 / 20 * math.log2(1 / 20) + 2 / 20 * math.log2(2 / 20) + 3 / 20 * math.log2(3 / 20)
                 + 4 / 20 * math.log2(4 / 20) + 10 / 20 * math.log2(10 / 20))
    assert (result.n_samples, result.n_prefixes, result.n_states, result.n_merged) == (20, 5, 5, 0)
    assert result.entropy_bits == pytest.approx(expected, abs=1e-12)
    assert result.prefix_entropy_bits == pytest.approx(entropy_bits(symbols), abs=1e-12)
    assert result.max_within_prefix_rms == 0.0
    assert result.cap_bits == pytest.approx(math.log2(20))


def test_coinciding_states_merge_and_entropy_uses_merged_counts() -> None:
    counts = [1, 2, 3, 4, 5, 6]
    base = np.random.default_rng(1).standard_normal((6, 8))
    base[1] = base[0]  # exactly the same state
    base[3] = base[2] + 1e-6  # float noise
    states, symbols = expand(base, counts)
    result = distinct_states(states, symbols)
    # classes {0,1}: 1+2, {2,3}: 3+4, {4}: 5, {5}: 6  -> 3, 7, 5, 6 of 21
    expected = -(3 / 21 * math.log2(3 / 21) + 7 / 21 * math.log2(7 / 21) + 5 / 21 * math.log2(5 / 21)
                 + 6 / 21 * math.log2(6 / 21))
    assert (result.n_prefixes, result.n_states, result.n_merged) == (6, 4, 2)
    assert result.entropy_bits == pytest.approx(expected, abs=1e-12)
    assert result.prefix_entropy_bits == pytest.approx(plug_in(counts), abs=1e-12)
    assert result.entropy_bits < result.prefix_entropy_bits


def test_to_row_holds_every_scalar() -> None:
    states, symbols = expand(np.array([[0.0, 1.0], [0.0, 1.0], [3.0, -2.0]]), [2, 1, 1])
    row = distinct_states(states, symbols).to_row()
    assert row == {
        "n_samples": 4, "n_prefixes": 3, "n_states": 2, "n_merged": 1,
        "entropy_bits": pytest.approx(plug_in([3, 1])), "prefix_entropy_bits": pytest.approx(plug_in([2, 1, 1])),
        "max_within_prefix_rms": 0.0, "tolerance": TOL, "cap_bits": pytest.approx(2.0),
    }


def test_one_dimensional_symbols_and_all_constant_states() -> None:
    states = np.full((6, 3), 2.5)
    result = distinct_states(states, np.array([0, 1, 2, 2, 3, 3]))
    assert (result.n_prefixes, result.n_states, result.entropy_bits) == (4, 1, 0.0)
    assert result.prefix_entropy_bits == pytest.approx(plug_in([1, 1, 2, 2]))


# --- the tolerance -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rms", "n_states"), [(0.5 * TOL, 1), (2.0 * TOL, 2)])
def test_tolerance_boundary(rms: float, n_states: int) -> None:
    # differing by `rms` in every unit-spread coordinate gives exactly that RMS
    states = np.array([np.zeros(5), np.full(5, rms)])
    result = distinct_states(states, np.array([0, 1]), spread=np.ones(5))
    assert result.n_states == n_states


def test_standardisation_keeps_small_dimensions_visible() -> None:
    rng = np.random.default_rng(2)
    cloud = rng.standard_normal((200, 4))
    cloud[:, 0] *= 1e4
    a = cloud[0].copy()
    b = a.copy()
    b[1] += 10 * TOL * cloud[:, 1].std()  # 10 tolerances in standardised units, only in a std-1 dimension
    states = np.vstack([cloud, a, b])
    symbols = np.arange(len(states))
    # cloud[0] and a are the same state, so one merge is expected; b stays apart
    own = distinct_states(states, symbols)
    assert (own.n_prefixes, own.n_states) == (202, 201)
    # one global scale set by the large dimension hides b (RMS = 10 * tol * std1 / 1e4 / 2): adding b to the
    # data adds no class. (That scale also merges some cloud points, hence the comparison, not a count.)
    with_b = distinct_states(states, symbols, spread=np.full(4, 1e4))
    without_b = distinct_states(states[:-1], symbols[:-1], spread=np.full(4, 1e4))
    assert with_b.n_states == without_b.n_states
    assert with_b.n_prefixes == without_b.n_prefixes + 1


def test_zero_spread_dimensions_are_ignored() -> None:
    # dimension 1 differs by 1.0, but its spread is 0: only dimension 0 (difference 0.5 tol) counts
    states = np.array([[0.0, 0.0], [0.5 * TOL, 1.0]])
    assert distinct_states(states, np.array([0, 1]), spread=np.array([1.0, 0.0])).n_states == 1
    assert distinct_states(states, np.array([0, 1]), spread=np.array([1.0, 1.0])).n_states == 2


def test_max_within_prefix_rms_reports_nondeterministic_states() -> None:
    states = np.array([
        [0.0, 0.0, 0.0, 0.0],
        [0.1, 0.1, 0.1, 0.1],  # same prefix 0, every coordinate off by 0.1 -> RMS 0.1
        [5.0, 5.0, 5.0, 5.0],
        [5.0, 5.0, 5.0, 5.1],  # same prefix 1, one coordinate of four off by 0.1 -> RMS sqrt(0.01/4) = 0.05
    ])
    result = distinct_states(states, np.array([0, 0, 1, 1]), spread=np.ones(4))
    assert result.max_within_prefix_rms == pytest.approx(0.1, rel=1e-9)
    only_second = distinct_states(states[2:], np.array([1, 1]), spread=np.ones(4))
    assert only_second.max_within_prefix_rms == pytest.approx(math.sqrt(0.1**2 / 4), rel=1e-9)


def test_transitive_chain_is_one_class() -> None:
    a, b, c = np.zeros(3), np.full(3, 0.8 * TOL), np.full(3, 1.6 * TOL)  # a~b, b~c, a and c 1.6 tol apart
    chain = distinct_states(np.array([a, b, c]), np.array([0, 1, 2]), spread=np.ones(3))
    assert chain.n_states == 1
    ends = distinct_states(np.array([a, c]), np.array([0, 2]), spread=np.ones(3))
    assert ends.n_states == 2


# --- the window search against brute force ----------------------------------------------------------------------


def brute_force_classes(reps: np.ndarray, spread: np.ndarray, tolerance: float) -> np.ndarray:
    z = reps / spread
    diff = z[:, None, :] - z[None, :, :]
    rms = np.sqrt((diff**2).mean(axis=2))
    _, labels = connected_components(rms <= tolerance, directed=False)
    return labels


@pytest.mark.parametrize("case", [0, 1, 2])
def test_window_search_matches_brute_force(case: int) -> None:
    rng = np.random.default_rng(100 + case)
    d, tolerance = 12, 0.05
    # 100 bases packed closely (so the sort windows hold many neighbours), 200 copies at noise levels on
    # both sides of the tolerance: the classes are decided only by exact distances and chains.
    bases = rng.standard_normal((100, d))
    parent = rng.integers(0, 100, size=200)
    noise_rms = rng.uniform(0.1, 2.0, size=200) * tolerance
    directions = rng.standard_normal((200, d))
    directions /= np.sqrt((directions**2).mean(axis=1, keepdims=True))
    reps = np.vstack([bases, bases[parent] + directions * noise_rms[:, None]])
    reps[rng.choice(300, size=10, replace=False)] = bases[0]  # exact copies too
    counts = list(rng.integers(1, 6, size=300))
    states, symbols = expand(reps, counts)
    spread = states.std(axis=0)

    labels = brute_force_classes(reps, spread, tolerance)
    class_counts = np.bincount(labels, weights=counts)
    for seed in (0, 1):
        result = distinct_states(states, symbols, tolerance=tolerance, seed=seed)
        assert result.n_states == labels.max() + 1
        assert result.entropy_bits == pytest.approx(plug_in(list(class_counts)), abs=1e-12)
    assert 1 < labels.max() + 1 < 290  # the case really merges, and not everything


def test_scale_fifty_thousand_rows() -> None:
    rng = np.random.default_rng(7)
    n_states, per_state, d = 5_000, 4, 64
    base = rng.standard_normal((n_states, d)).astype(np.float32)
    # 20,000 prefixes, 4 per state: the first copy exact, the others with noise far below the tolerance
    prefix_states = np.repeat(base, per_state, axis=0)
    noisy = np.arange(len(prefix_states)) % per_state >= 2
    prefix_states[noisy] += (rng.standard_normal((int(noisy.sum()), d)) * 1e-6).astype(np.float32)
    counts = [3] * 10_000 + [2] * 10_000  # 50,000 rows
    states, symbols = expand(prefix_states, counts)
    order = rng.permutation(len(states))
    started = time.perf_counter()
    result = distinct_states(states[order], symbols[order])
    seconds = time.perf_counter() - started
    # state s gathers prefixes 4s..4s+3: states 0..2499 have 4*3 = 12 rows, states 2500..4999 have 4*2 = 8
    assert (result.n_samples, result.n_prefixes, result.n_states) == (50_000, 20_000, 5_000)
    assert result.entropy_bits == pytest.approx(plug_in([12] * 2_500 + [8] * 2_500), abs=1e-9)
    assert result.max_within_prefix_rms == 0.0
    assert seconds < 10.0, f"took {seconds:.1f} s"


# --- IE and bad input -------------------------------------------------------------------------------------------


def test_entropy_limit_ie_subtracts_mean_micro() -> None:
    assert entropy_limit_ie(5.0, [1.0, 2.0, 3.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="micro_bits is empty"):
        entropy_limit_ie(5.0, [])


def test_nan_in_states_is_named_with_its_row() -> None:
    states = np.zeros((4, 3))
    states[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN in 1 rows \(first: \[2\]\)"):
        distinct_states(states, np.arange(4))
    states[2, 1] = np.inf
    with pytest.raises(ValueError, match="inf"):
        distinct_states(states, np.arange(4))


@pytest.mark.parametrize(
    ("states", "symbols", "kwargs", "message"),
    [
        (np.zeros((4, 3)), np.arange(5), {}, "4 rows but symbols has 5"),
        (np.zeros(4), np.arange(4), {}, "must be 2-D"),
        (np.zeros((4, 3)), np.zeros(4), {}, "integer token ids"),
        (np.zeros((4, 3)), np.arange(4), {"tolerance": 0.0}, "tolerance"),
        (np.zeros((4, 3)), np.arange(4), {"spread": np.ones(2)}, r"spread has shape \(2,\)"),
        (np.zeros((4, 3)), np.arange(4), {"spread": np.array([1.0, -1.0, 1.0])}, "spread must be finite"),
    ],
)
def test_bad_input_is_rejected(states: np.ndarray, symbols: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distinct_states(states, symbols, **kwargs)


def test_result_is_frozen() -> None:
    result = distinct_states(np.eye(2), np.array([0, 1]))
    assert isinstance(result, DistinctStates)
    with pytest.raises(AttributeError):
        result.n_states = 3  # type: ignore[misc]
