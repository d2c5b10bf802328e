"""Behaviours of ie_ray/estimators/smoothed.py that the estimator's own tests leave open (mutation testing).

Each test checks one behaviour of the smoothed-MI estimator's pieces (mostly its private helpers, called
directly because that is cheap and exact) against values derived independently of the code under test: by
hand, from a closed form, or recomputed with numpy/scipy. Statistical checks use fixed seeds and margins many
standard errors wide. benchmarks/mutation.py runs this file against every mutant of the module; the survivors
each test was written for are listed in SURVIVORS.md of the branch that added it.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from ie_ray.estimators import smoothed as sm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LN2 = math.log(2.0)


# --- counts validation ---------------------------------------------------------------------------------------


def test_counts_accept_integer_valued_floats_and_refuse_fractions() -> None:
    """`_check_counts` takes counts of any integer dtype and float counts whose values are whole numbers (returned as
    int64 with the same values), and refuses float counts with a fractional part (1.5 occurrences of a state mean
    nothing) in float64 and float32 alike, and counts of the wrong shape. Expected by hand from the contract in
    `smoothed_mi`'s docstring ("`counts` (U,) integers >= 1")."""
    for given in (np.array([1, 2, 3], dtype=np.int32), np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3], np.float32),
                  [1, 2, 3]):
        out = sm._check_counts(given, 3, "")
        assert out.dtype == np.int64 and out.tolist() == [1, 2, 3]
    for bad in (np.array([1.0, 1.5, 2.0]), np.array([1.0, 1.5, 2.0], dtype=np.float32), np.array([2.5, 2.5, 2.5])):
        with pytest.raises(ValueError, match=r"counts must be \(3,\) integers"):
            sm._check_counts(bad, 3, "")
    with pytest.raises(ValueError, match=r"counts must be \(3,\) integers"):
        sm._check_counts(np.array([1, 2]), 3, "")


def test_counts_below_one_are_named_with_their_rows() -> None:
    """A count below 1 is refused, and the message lists the first five offending values and their rows (counts of
    1 or more are not offending). Expected by hand: in [1, 0, 2, -1, 0, -2, 1, -3, 5, -4] the counts below 1 are
    0, -1, 0, -2, -3, -4 at rows 1, 3, 4, 5, 7, 9; the first five of each are named."""
    counts = np.array([1, 0, 2, -1, 0, -2, 1, -3, 5, -4])
    with pytest.raises(ValueError, match=re.escape("got [0, -1, 0, -2, -3] at rows [1, 3, 4, 5, 7]")):
        sm._check_counts(counts, len(counts), "")


# --- a known law's weight columns ------------------------------------------------------------------------------


def _is_half(column: np.ndarray, base: np.ndarray) -> bool:
    """column is base on exactly n // 2 components and 0 on the others."""
    on = column != 0
    return int(on.sum()) == len(base) // 2 and np.array_equal(column[on], base[on])


def test_weight_columns_of_a_known_law() -> None:
    """`_weight_columns` (a known law: components play the samples' part) gives [the weights, the weights on a random
    half (n // 2) of the components and 0 elsewhere, B copies of the weights] and (n, B) 0/1 replicate halves with
    n // 2 ones per column; with `extrapolate` B more columns, each the weights on a random half of the components.
    Without `extrapolate` (the default) there are 2 + B columns. Expected by hand from the docstring; the
    weights are not normalised (their sum is 7.5) so that no step may assume they sum to 1."""
    n, b = 7, 5
    base = np.array([0.5, 1.0, 2.0, 0.25, 1.5, 1.25, 1.0])
    for extrapolate in (False, True, None):
        rng = np.random.default_rng(11)
        if extrapolate is None:
            cols, members = sm._weight_columns(n, rng, b, base)
        else:
            cols, members = sm._weight_columns(n, rng, b, base, extrapolate)
        assert cols.shape == (n, 2 + (2 * b if extrapolate else b))
        assert np.isfinite(cols).all()
        np.testing.assert_array_equal(cols[:, 0], base)
        assert _is_half(cols[:, 1], base)
        np.testing.assert_array_equal(cols[:, 2 : 2 + b], np.repeat(base[:, None], b, axis=1))
        assert members.shape == (n, b)
        assert set(np.unique(members)) <= {0.0, 1.0} and (members.sum(0) == n // 2).all()
        if extrapolate:
            assert all(_is_half(cols[:, 2 + b + j], base) for j in range(b))
            # the halves are drawn at random: not all the same
            assert len({tuple(cols[:, 2 + b + j]) for j in range(b)}) > 1
        assert len({tuple(members[:, j]) for j in range(b)}) > 1


# --- stratified draws over a known law's components ------------------------------------------------------------


def test_draws_of_a_single_component_law() -> None:
    """A law of one component: every draw is that component (equal weights, a permutation of one index, resized).
    Expected by hand."""
    out = sm._draw_components(1, 10, np.random.default_rng(0), np.array([3.0]))
    assert out.tolist() == [0] * 10


def test_draws_follow_unequal_weights_with_whole_floors_and_an_iid_remainder() -> None:
    """Unequal (un-normalised) weights w, p = w / sum(w): each component gets floor(n_draws * p_i) draws, and each of
    the rest = n_draws - sum(floors) remainder draws picks a component independently (with replacement) from p.

    Expected by hand. Rest = 1: w = (1, 1, 1, 2), n_draws = 11 gives 2.2, 2.2, 2.2, 4.4: floors (2, 2, 2, 4), and
    exactly one component gets one more draw (11 in all); w = (8, 1, 1), n_draws = 5 gives 4, 0.5, 0.5: floors
    (4, 0, 0), and the extra draw goes to component 0 with probability 0.8 (over 1,000 seeds 0.8 +- 0.045, 3.5
    standard errors of 0.013; uniform picks would give 1/3). Rest = 2: w = (8, 1, 1), n_draws = 7 gives 5.6, 0.7,
    0.7: floors (5, 0, 0), and a light component gets above its floor when either of two independent draws picks
    it: 1 - 0.9^2 = 0.19 (over 2,000 seeds 0.19 +- 0.04, 4.5 standard errors of 0.009); one draw only would give
    0.10, two distinct components (drawn without replacement) 0.51. Whatever the draws, every component keeps its
    floor, the output is a shuffled sequence (not sorted by component), and the total is at most n_draws."""
    w = np.array([1.0, 1.0, 1.0, 2.0])
    for seed in range(20):
        out = sm._draw_components(4, 11, np.random.default_rng(seed), w)
        c = np.bincount(out, minlength=4)
        assert len(out) == 11 and ((c - [2, 2, 2, 4]) >= 0).all() and ((c - [2, 2, 2, 4]).sum() == 1)
    extra_to_heavy = 0
    for seed in range(1000):
        c = np.bincount(sm._draw_components(3, 5, np.random.default_rng(seed), np.array([8.0, 1.0, 1.0])), minlength=3)
        assert c.sum() == 5 and (c >= [4, 0, 0]).all()
        extra_to_heavy += c[0] == 5
    assert abs(extra_to_heavy / 1000 - 0.8) < 0.045
    above = np.zeros(3)
    for seed in range(2000):
        out = sm._draw_components(3, 7, np.random.default_rng(seed), np.array([8.0, 1.0, 1.0]))
        c = np.bincount(out, minlength=3)
        assert (c >= [5, 0, 0]).all() and c.sum() <= 7
        above += c > [5, 0, 0]
    assert abs(above[1] / 2000 - 0.19) < 0.04 and abs(above[2] / 2000 - 0.19) < 0.04
    out = sm._draw_components(4, 11, np.random.default_rng(3), np.array([1.0, 1.0, 1.0, 2.0]))
    assert not (np.diff(out) >= 0).all()


# --- the Monte Carlo errors the flag compares -------------------------------------------------------------------


def test_compared_errors_are_the_ratio_and_mean_standard_errors() -> None:
    """`_Accumulator.compared_errors`: the N/2 reading is the ratio estimator R = sum r q / sum r over the draws (r a
    draw's weight in the half column, q its pmi), whose linearised standard error is sqrt(sum r^2 (q - R)^2) / sum r;
    the leave-one-out reading is a plain mean, standard error sd(loo, ddof=0) / sqrt(n); both in bits (/ ln 2).
    Expected values from numpy on the same numbers, added in two batches (the sums accumulate). The numbers keep
    both variances below 1 and the means away from 0, 1 and 2, so that no special value hides a wrong term."""
    q0 = np.array([0.9, 1.3, 0.7, 1.1, 1.6, 0.8, 1.2, 1.0])
    q1 = np.array([0.5, 1.4, 0.2, 0.9, 1.7, 0.6, 1.1, 0.3])
    r = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    loo = np.array([0.35, 0.1, 0.6, 0.25, 0.4, 0.05, 0.5, 0.3])
    acc = sm._Accumulator(2, "cpu")
    pmi = torch.as_tensor(np.stack([q0, q1], 1))
    w = torch.as_tensor(np.stack([np.ones(8), r], 1))
    acc.add(pmi[:5], w[:5], torch.as_tensor(loo[:5]))
    acc.add(pmi[5:], w[5:], torch.as_tensor(loo[5:]))
    ratio = (r * q1).sum() / r.sum()
    want_half = math.sqrt((r**2 * (q1 - ratio) ** 2).sum()) / r.sum() / LN2
    want_loo = loo.std() / math.sqrt(len(loo)) / LN2
    se_half, se_loo = acc.compared_errors()
    assert se_half == pytest.approx(want_half, rel=1e-9)
    assert se_loo == pytest.approx(want_loo, rel=1e-9)


def test_compared_error_of_an_empty_half_is_infinite() -> None:
    """Where no draw falls in the half (every r = 0) the N/2 reading has no draws and its standard error is
    infinite (not a division by zero); the leave-one-out error is still the plain one. By hand."""
    acc = sm._Accumulator(2, "cpu")
    acc.add(torch.tensor([[0.5, 0.5], [0.7, 0.7]], dtype=torch.float64),
            torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64), torch.tensor([0.2, 0.4], dtype=torch.float64))
    se_half, se_loo = acc.compared_errors()
    assert se_half == math.inf
    assert se_loo == pytest.approx(0.1 / math.sqrt(2) / LN2, rel=1e-9)


# --- noise: a pure function of (seed, side, draw index, d) ------------------------------------------------------


def _reference_block(seed: int, side: int, block: int, d: int) -> np.ndarray:
    """Block `block` of 256 draws, from its own generator seeded by SeedSequence([seed, side, block]) (the rule in
    `_noise_block`'s source, restated)."""
    state = int(np.random.SeedSequence([seed, side, block]).generate_state(1, dtype=np.uint64)[0] >> 1)
    gen = torch.Generator(device="cpu").manual_seed(state)
    return torch.randn(256, d, generator=gen, dtype=torch.float32).numpy()


def test_noise_is_a_pure_function_of_seed_side_draw_and_width() -> None:
    """`_noise(seed, side, start, m, d)` is rows start .. start + m - 1 of the concatenated per-block streams: a
    window crossing a block boundary equals the reference blocks' rows, a sub-window of a longer call equals a
    shorter call at that offset, and the two sides and two seeds give different noise. Float32, shape (m, d).
    Reference blocks restated from the documented rule (SeedSequence-seeded generator per block of 256)."""
    seed, d = 1234, 3
    ref = np.concatenate([_reference_block(seed, 1, b, d) for b in range(3)])
    long = sm._noise(seed, 1, 200, 300, d)
    assert long.dtype == torch.float32 and tuple(long.shape) == (300, d)
    np.testing.assert_array_equal(long.numpy(), ref[200:500])
    np.testing.assert_array_equal(sm._noise(seed, 1, 250, 20, d).numpy(), long[50:70].numpy())
    np.testing.assert_array_equal(sm._noise_block(seed, 1, 2, d).numpy(), ref[512:768])
    assert not np.array_equal(sm._noise(seed, 0, 200, 300, d).numpy(), long.numpy())
    assert not np.array_equal(sm._noise(seed + 1, 1, 200, 300, d).numpy(), long.numpy())
    # the estimator's kept-block path gives the same values as fresh calls
    blocks = sm._NoiseBlocks(seed, (2, d))
    np.testing.assert_array_equal(blocks(1, 200, 100).numpy(), ref[200:300])
    np.testing.assert_array_equal(blocks(1, 300, 200).numpy(), ref[300:500])
    np.testing.assert_array_equal(blocks(0, 0, 5).numpy(), _reference_block(seed, 0, 0, 2)[:5])


# --- device placement: helpers follow the data, not torch's default device ------------------------------------------


def _leave_one_out_reference(D, G, a, b, base, unit, idx):
    """log p_-i(x', y') - log p_-i(x') - log p_-i(y') per draw by scipy's logsumexp: exponents a D + b G (clipped at
    MAX_EXPONENT = 30), the own component's exponent 0 and its weight c_i - 1 (base - unit), normaliser
    sum(base) - unit_i."""
    ex = np.minimum(a[0] * D[0] + b[0] * G[0], 30.0)
    ey = np.minimum(a[1] * D[1] + b[1] * G[1], 30.0)
    out = []
    for k, i in enumerate(idx):
        lx, ly = ex[k].copy(), ey[k].copy()
        lx[i] = ly[i] = 0.0
        with np.errstate(divide="ignore"):
            lw = np.log(base.astype(np.float64))
            lw[i] = np.log(base[i] - unit[i])
        out.append(logsumexp(lx + ly + lw) - logsumexp(lx + lw) - logsumexp(ly + lw)
                   + math.log(base.sum() - unit[i]))
    return np.array(out)


def test_leave_one_out_by_logsumexp_matches_scipy_whatever_the_default_device() -> None:
    """`_LeaveOneOut._by_logsumexp` (the recomputation for draws whose sums underflow) equals the leave-one-out pmi
    computed with scipy's logsumexp from the definition (own component at exponent 0 with weight c_i - 1), also when
    torch's default device is not the data's (a caller's torch.set_default_device; here the meta device): every
    helper tensor must be built on the data's device. Counts (3, 1, 2, 1): the draw of a count-1 atom has no own
    weight left (log 0 = -inf, dropped by logsumexp)."""
    rng = np.random.default_rng(5)
    u, m = 4, 3
    D = rng.uniform(0.0, 4.0, (2, m, u))
    G = rng.normal(0.0, 1.0, (2, m, u))
    a, b = np.array([-0.6, -0.4]), np.array([-0.8, -0.5])
    base, unit = np.array([3.0, 1.0, 2.0, 1.0]), np.ones(4)
    idx = np.array([0, 1, 2])
    want = _leave_one_out_reference(D, G, a, b, base, unit, idx)
    loo = sm._LeaveOneOut(base, unit, torch.float64, "cpu")
    exps = (torch.as_tensor(D), torch.as_tensor(G), torch.as_tensor(a).view(2, 1, 1), torch.as_tensor(b).view(2, 1, 1))
    t_idx, bad = torch.as_tensor(idx), torch.arange(m)
    np.testing.assert_allclose(loo._by_logsumexp(exps, t_idx, bad).numpy(), want, rtol=1e-10, atol=1e-12)
    with torch.device("meta"):
        got = loo._by_logsumexp(exps, t_idx, bad)
    assert got.device.type == "cpu"
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_distance_rows_cache_fills_each_row_once_on_the_data_device() -> None:
    """`_DistanceRows.filled(idx)`: rows of the squared distances ||a_i - a_j||^2 between atoms (numpy reference),
    computed the first time an atom is asked for and reused after that (the cache's purpose: a row asked for again
    is not recomputed, as seen by changing the atoms afterwards: only the new row follows them), on the atoms'
    device even when torch's default device is another (the meta device here)."""
    rng = np.random.default_rng(2)
    A = rng.normal(size=(5, 3))
    want = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
    At = torch.as_tensor(A)
    with torch.device("meta"):
        cache = sm._DistanceRows(At, (At * At).sum(1))
        D = cache.filled(torch.tensor([3, 1, 3], device="cpu"))
    assert D.device.type == "cpu"
    np.testing.assert_allclose(D[[1, 3]].numpy(), want[[1, 3]], atol=1e-12)
    cache.A = At * 2.0  # rows 1 and 3 are kept; row 0 is computed from the new atoms
    cache.sq = (cache.A * cache.A).sum(1)
    D = cache.filled(torch.tensor([1, 0, 3]))
    np.testing.assert_allclose(D[[1, 3]].numpy(), want[[1, 3]], atol=1e-12)
    np.testing.assert_allclose(D[0].numpy(), 4.0 * want[0], atol=1e-12)


# --- a sample's weight columns (counts) ---------------------------------------------------------------------------


def test_count_columns_of_a_sample() -> None:
    """`_count_columns` for a sample of N = sum(counts): [the counts, the atoms' share of a random half (N // 2) of
    the samples, B copies of the counts, with `extrapolate` B more such halves] and (N, B) 0/1 replicate halves with
    N // 2 ones per column; 2 + B columns without `extrapolate` (the default). With all counts 1 a half is 0/1 with
    N // 2 ones; with repeated atoms it is a per-atom count between 0 and c_i summing to N // 2 (hypergeometric).
    Expected by hand from the docstring."""
    b = 4
    for counts in (np.ones(9, dtype=np.int64), np.array([3, 1, 4, 1, 5, 2])):
        n = int(counts.sum())
        for extrapolate in (False, True, None):
            rng = np.random.default_rng(3)
            if extrapolate is None:
                cols, members = sm._count_columns(counts, rng, b)
            else:
                cols, members = sm._count_columns(counts, rng, b, extrapolate)
            assert cols.shape == (len(counts), 2 + (2 * b if extrapolate else b)) and cols.dtype == np.float64
            np.testing.assert_array_equal(cols[:, 0], counts)
            np.testing.assert_array_equal(cols[:, 2 : 2 + b], np.repeat(counts[:, None].astype(float), b, axis=1))
            halves = [cols[:, 1]] + ([cols[:, 2 + b + j] for j in range(b)] if extrapolate else [])
            for half in halves:
                assert half.sum() == n // 2 and (half >= 0).all() and (half <= counts).all()
                np.testing.assert_array_equal(half, np.round(half))
            if extrapolate:
                assert len({tuple(h) for h in halves[1:]}) > 1
            assert members.shape == (n, b) and set(np.unique(members)) <= {0.0, 1.0}
            assert (members.sum(0) == n // 2).all()


def test_an_equal_weight_law_is_the_estimator_of_its_distinct_samples() -> None:
    """A known law of N components with equal weights and N distinct samples (every count 1) are the same estimator:
    the components play the samples' part, draws go through the components in a seeded order alike, the N/2 reading,
    the replicates and the extrapolation's halves are random halves of the N components alike, and the leave-one-out
    removes the whole component (weight 1) as it removes the sample. So with one seed both give the same readings,
    to float rounding, at every tau, with the extrapolation and an interval. Expected by this reasoning, not from
    either path's numbers."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 3))
    y = x[:, :2] + 0.5 * rng.normal(size=(40, 2))
    params = sm.SmoothedParams(tau=0.5, taus=(0.25,), n_draws=120, n_bootstrap=6, correction="extrapolate",
                               min_draws=120, mc_tolerance_fraction=0.0)
    law = sm.smoothed_mi(x, y, params, seed=4, weights=np.ones(40))
    sample = sm.smoothed_mi(x, y, params, seed=4, dedupe=False)
    assert [r.tau for r in law.readings] == [0.25, 0.5] and math.isfinite(law.at(0.5).ci_low)
    names = ("mi_bits", "plugin_bits", "half_bits", "loo_bits", "mc_se_bits", "ci_low", "ci_high", "n_draws")
    for a, b in zip(law.readings, sample.readings):
        np.testing.assert_allclose([getattr(a, k) for k in names], [getattr(b, k) for k in names], atol=1e-6,
                                   err_msg=str(a.tau))
        np.testing.assert_allclose(a.bootstrap, b.bootstrap, atol=1e-6)
        assert a.flag == b.flag


# --- exact duplicates -----------------------------------------------------------------------------------------------


def _atoms_as_sets(x, y, found):
    first, counts, inverse = found
    np.testing.assert_array_equal(x[first][inverse], x)
    np.testing.assert_array_equal(y[first][inverse], y)
    assert counts.sum() == len(x) and np.array_equal(np.bincount(inverse, minlength=len(first)), counts)
    return sorted((tuple(x[f]) + tuple(y[f]), int(c)) for f, c in zip(first, counts))


def _collision_sample(side: int):
    """14 rows: atoms C, D, E four times each and A once; A' once, which differs from A below float32's precision
    (the hash's) on one side only: x (side 0) or y (side 1), in the 13th digit of one coordinate."""
    rng = np.random.default_rng(4 + side)
    ax, ay = rng.uniform(0.25, 0.75, (4, 3)), rng.uniform(0.25, 0.75, (4, 2))
    a2 = [ax[0].copy(), ay[0].copy()]
    a2[side][1] += 1e-12
    x = np.stack([ax[0], a2[0], *[ax[k] for k in (1, 2, 3) for _ in range(4)]])
    y = np.stack([ay[0], a2[1], *[ay[k] for k in (1, 2, 3) for _ in range(4)]])
    perm = rng.permutation(14)
    want = sorted([(tuple(ax[0]) + tuple(ay[0]), 1), (tuple(a2[0]) + tuple(a2[1]), 1),
                   *[(tuple(ax[k]) + tuple(ay[k]), 4) for k in (1, 2, 3)]])
    return x[perm], y[perm], want


def test_exact_duplicates_tell_apart_states_equal_in_float32() -> None:
    """`_exact_duplicates` merges exactly identical (x, y) rows only: two rows whose x, or whose y, differ below
    float32's precision hash alike but are different atoms, also where such a pair is the only pair in its hash
    class. Expected by hand: 5 atoms, A and A' once, C, D, E four times each."""
    for side in (0, 1):
        x, y, want = _collision_sample(side)
        assert _atoms_as_sets(x, y, sm._exact_duplicates(x, y)) == want, side


def test_exact_duplicates_threshold_is_inclusive() -> None:
    """Rows are merged when the atoms are at most DEDUPE_FRACTION = 0.9 of the rows: 10 rows with one repeated row
    are 9 atoms = 0.9 x 10, merged; 10 distinct rows are not (None); the same on the exact (byte-wise) path taken
    after a hash collision. By hand."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))
    assert sm._exact_duplicates(x, y) is None
    x[7], y[7] = x[2], y[2]
    found = sm._exact_duplicates(x, y)
    assert found is not None and len(found[0]) == 9 and sorted(found[1].tolist()) == [1] * 8 + [2]
    # the same threshold after a hash collision (row 4 equals row 3 in float32 only): 8 hash classes, 9 atoms
    x[4], y[4] = x[3], y[3]
    x[4, 0] += 1e-12
    found = sm._exact_duplicates(x, y)
    assert found is not None and len(found[0]) == 9 and sorted(found[1].tolist()) == [1] * 8 + [2]


def _hash_order(x, y):
    """First row of each distinct (x, y) row in the order of the documented hash: two float32 projections per side
    from torch's generator seeded 0x5EED, summed, the pair's bits read as one int64 key, keys sorted."""
    gen = torch.Generator().manual_seed(0x5EED)
    h = torch.zeros(len(x), 2, dtype=torch.float32)
    for a in (x, y):
        h = h + torch.as_tensor(a.astype(np.float32)) @ torch.randn(a.shape[1], 2, generator=gen, dtype=torch.float32)
    keys = h.numpy().view(np.int64).ravel()
    return np.array([np.flatnonzero(keys == k)[0] for k in np.unique(keys)])


def test_exact_duplicates_are_reproducible() -> None:
    """The atoms (and so the estimate of a seed, whose random halves are drawn per atom) do not depend on torch's
    global state: the same result after reseeding torch's global generator and with float64 as torch's default
    dtype. Without a hash collision the exact fallback does not run and the atoms come in the order of the seeded
    projection hash (restated in `_hash_order`)."""
    rng = np.random.default_rng(7)
    ax, ay = rng.normal(size=(12, 5)), rng.normal(size=(12, 4))
    pick = rng.integers(0, 12, size=60)
    x, y = ax[pick], ay[pick]
    torch.manual_seed(1)
    one = sm._exact_duplicates(x, y)
    torch.manual_seed(2)
    two = sm._exact_duplicates(x, y)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = sm._exact_duplicates(x, y)
    finally:
        torch.set_default_dtype(before)
    for other in (two, wide):
        for a, b in zip(one, other):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one[0], _hash_order(x, y))
    assert _atoms_as_sets(x, y, one) == sorted((tuple(ax[k]) + tuple(ay[k]), int(c))
                                               for k, c in enumerate(np.bincount(pick, minlength=12)) if c)


# --- the isometry for few atoms -------------------------------------------------------------------------------------


def test_isometric_coordinates_from_twice_as_many_dimensions() -> None:
    """`_isometric(z)`, z (U, d): when d >= 2U, U coordinates (U, U) with every pairwise distance of z (numpy
    reference, float32 tolerance) and z's dtype; when d < 2U, z itself. At the threshold d = 2U it is the former.
    By hand from the docstring."""
    rng = np.random.default_rng(9)
    for u, d in ((3, 6), (3, 9), (4, 20), (5, 9), (5, 3), (4, 11)):
        z = rng.normal(size=(u, d)).astype(np.float32)
        out = sm._isometric(z)
        if d < 2 * u:
            assert out is z
            continue
        assert out.shape == (u, u) and out.dtype == np.float32
        want = np.linalg.norm(z[:, None, :].astype(np.float64) - z[None, :, :], axis=-1)
        got = np.linalg.norm(out[:, None, :].astype(np.float64) - out[None, :, :], axis=-1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- random halves --------------------------------------------------------------------------------------------------


def test_sample_halves_mark_exactly_half_of_many_samples() -> None:
    """`_sample_halves(n, k, rng)`: (k, n) 0/1 rows, each marking exactly n // 2 samples, for one row and for many,
    and at sizes where numpy's partition does not sort the whole row (n = 300, 1,001 and 2,000: only the element at
    the requested index is in its sorted place, so only the (n // 2)-th smallest key is the right cut; measured, a
    neighbouring index gives a wrong cut in about 1% of rows at n = 257-400); the rows differ. k = 0 gives (0, n).
    By hand."""
    rng = np.random.default_rng(10)
    assert sm._sample_halves(7, 0, rng).shape == (0, 7)
    for n, k in ((1001, 1), (1001, 20), (2000, 5), (9, 1), (300, 400)):
        h = sm._sample_halves(n, k, rng)
        assert h.shape == (k, n) and h.dtype == np.float64 and set(np.unique(h)) <= {0.0, 1.0}
        assert (h.sum(1) == n // 2).all()
        if k > 1:
            assert len({tuple(row) for row in h}) == k


# --- the accumulator's sums -----------------------------------------------------------------------------------------


def _accumulated(dtype, device_default=None):
    rng = np.random.default_rng(12)
    m = 10_000
    q = np.stack([5.0 + 1e-3 * rng.normal(size=m), 2.0 + 0.5 * rng.normal(size=m)], 1).astype(np.float32)
    r = np.where(rng.random(m) < 0.5, np.float32(0.1), np.float32(0.0)).astype(np.float32)
    w = np.stack([np.ones(m, np.float32), r], 1)
    loo = (0.1 + 0.01 * rng.normal(size=m)).astype(np.float32)
    if device_default is None:
        acc = sm._Accumulator(2, "cpu")
    else:
        with torch.device(device_default):
            acc = sm._Accumulator(2, "cpu")
    for part in (slice(0, 4000), slice(4000, m)):
        acc.add(torch.as_tensor(q[part], dtype=dtype), torch.as_tensor(w[part], dtype=dtype),
                torch.as_tensor(loo[part], dtype=dtype))
    return acc, q.astype(np.float64), w.astype(np.float64), loo.astype(np.float64)


def test_accumulator_readings_in_float64_from_float32_draws() -> None:
    """`_Accumulator.values()`: per column sum w q / sum w in bits, the estimate's Monte Carlo standard error
    sqrt(mean q0^2 - mean q0^2) / sqrt(n) in bits (column 0 has weight 1 on every draw), and the mean leave-one-out
    pmi in bits; `compared_errors()` as in the test above. The sums run in float64 whatever the draws' dtype (the
    estimator's float32): pmi values near 5 nats with a spread of 1e-3, whose variance float32 squares would lose,
    weights of 0.1 (not exact in binary) and leave-one-out values near 0.1 over 10,000 draws in two batches. The
    sums also live on the given device when torch's default device is another (the meta device here). Expected
    values from numpy in float64 on the same float32 numbers."""
    for dtype, default in ((torch.float32, None), (torch.float64, None), (torch.float32, "meta")):
        acc, q, w, loo = _accumulated(dtype, default)
        values, se, loo_bits = acc.values()
        np.testing.assert_allclose(values, (w * q).sum(0) / w.sum(0) / LN2, rtol=1e-12)
        assert se == pytest.approx(q[:, 0].std() / math.sqrt(len(q)) / LN2, rel=1e-5)
        assert loo_bits == pytest.approx(loo.mean() / LN2, rel=1e-12)
        r, q1 = w[:, 1], q[:, 1]
        ratio = (r * q1).sum() / r.sum()
        se_half, se_loo = acc.compared_errors()
        assert se_half == pytest.approx(math.sqrt((r**2 * (q1 - ratio) ** 2).sum()) / r.sum() / LN2, rel=1e-9)
        assert se_loo == pytest.approx(loo.std() / math.sqrt(len(loo)) / LN2, rel=1e-6)
