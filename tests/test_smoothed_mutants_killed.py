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
import warnings

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


def test_draws_of_unequal_weights_are_floors_plus_a_residual_remainder_with_exact_expected_counts() -> None:
    """Unequal (un-normalised) weights w, p = w / sum(w): each component gets floor(n_draws * p_i) draws, and each of
    the rest = n_draws - sum(floors) remainder draws picks a component independently (with replacement) in
    proportion to what its floor left out, n_draws * p_i - floor: so every component's expected number of draws is
    exactly n_draws * p_i (a remainder drawn in proportion to p over-draws the heavy components).

    Expected by hand. Rest = 1: w = (1, 1, 1, 2), n_draws = 11 gives 2.2, 2.2, 2.2, 4.4: floors (2, 2, 2, 4), and
    exactly one component gets one more draw (11 in all). w = (8, 1, 1), n_draws = 5 gives 4, 0.5, 0.5: floors
    (4, 0, 0), left-overs (0, 0.5, 0.5): the extra draw never goes to component 0 and goes to component 1 with
    probability 0.5 (over 1,000 seeds 0.5 +- 0.055, 3.5 standard errors of 0.016; drawn in proportion to p it
    would go to component 0 with probability 0.8). Rest = 2: w = (8, 1, 1), n_draws = 7 gives 5.6, 0.7, 0.7:
    floors (5, 0, 0), left-overs (0.6, 0.7, 0.7), so each remainder draw picks (0.3, 0.35, 0.35): component 1 gets
    above its floor with probability 1 - 0.65^2 = 0.5775, component 0 with 1 - 0.7^2 = 0.51 (2,000 seeds, +- 0.045,
    4 standard errors of 0.011), and the mean counts are (5.6, 0.7, 0.7) (+- 0.07, about 4.5 standard errors;
    in proportion to p the mean of component 0 would be 6.6). Whatever the draws, every component keeps its floor,
    the total is n_draws exactly, also when both remainder draws pick the same component (a fancy-index `+= 1`
    counted it once), and the output is a shuffled sequence (not sorted by component)."""
    w = np.array([1.0, 1.0, 1.0, 2.0])
    for seed in range(20):
        out = sm._draw_components(4, 11, np.random.default_rng(seed), w)
        c = np.bincount(out, minlength=4)
        assert len(out) == 11 and ((c - [2, 2, 2, 4]) >= 0).all() and ((c - [2, 2, 2, 4]).sum() == 1)
    to_first_light = 0
    for seed in range(1000):
        c = np.bincount(sm._draw_components(3, 5, np.random.default_rng(seed), np.array([8.0, 1.0, 1.0])), minlength=3)
        assert c.sum() == 5 and c[0] == 4 and (c >= [4, 0, 0]).all()
        to_first_light += c[1] == 1
    assert abs(to_first_light / 1000 - 0.5) < 0.055
    above, total = np.zeros(3), np.zeros(3)
    for seed in range(2000):
        out = sm._draw_components(3, 7, np.random.default_rng(seed), np.array([8.0, 1.0, 1.0]))
        c = np.bincount(out, minlength=3)
        assert (c >= [5, 0, 0]).all() and c.sum() == len(out) == 7
        above += c > [5, 0, 0]
        total += c
    assert abs(above[0] / 2000 - 0.51) < 0.045
    assert abs(above[1] / 2000 - 0.5775) < 0.045 and abs(above[2] / 2000 - 0.5775) < 0.045
    np.testing.assert_allclose(total / 2000, [5.6, 0.7, 0.7], atol=0.07)
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
    shorter call at that offset, and the two sides and two seeds give different noise. Float32, shape (m, d), also
    when torch's default dtype is float64.
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
    # float32 whatever torch's default dtype
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = sm._noise_block(seed, 1, 2, d)
    finally:
        torch.set_default_dtype(before)
    assert wide.dtype == torch.float32
    np.testing.assert_array_equal(wide.numpy(), ref[512:768])
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


# --- memory rules: the distance cache and the chunk size ------------------------------------------------------------


def test_distance_cache_is_used_when_atoms_repeat_and_the_cache_fits_a_quarter_of_the_memory() -> None:
    """`_DistanceRows.worth_it(U, draws, itemsize, memory_mb)`: fewer atoms than draws (so atoms repeat), and the
    two U x U caches (2 U^2 itemsize bytes) within a quarter of the memory budget. By hand at the edges: U = 512,
    itemsize 4 needs 2 MiB, a quarter of 8 MB; one atom more, a smaller budget, 8-byte items or as many draws as
    atoms do not qualify."""
    assert sm._DistanceRows.worth_it(512, 1000, 4, 8.0)
    assert sm._DistanceRows.worth_it(511, 512, 4, 8.0)
    assert sm._DistanceRows.worth_it(512, 1000, 8, 16.0)
    assert not sm._DistanceRows.worth_it(513, 1000, 4, 8.0)
    assert not sm._DistanceRows.worth_it(512, 1000, 4, 7.99)
    assert not sm._DistanceRows.worth_it(512, 1000, 8, 8.0)
    assert not sm._DistanceRows.worth_it(512, 512, 4, 1e6)
    assert not sm._DistanceRows.worth_it(1, 1, 4, 1e6)


def test_chunk_size_fits_the_work_arrays_in_the_memory_budget() -> None:
    """`_chunk_size(params, U, columns, itemsize)`: the draws whose work arrays, (11 U + 4 columns) items each,
    fit in memory_mb, at least 1 and at most n_draws; `chunk_draws` overrides. By hand: U = 20, 9 columns, 4-byte
    items take (220 + 36) x 4 = 1,024 bytes a draw, so 1 MiB holds 1,024 draws and 3 MiB 3,072; 8-byte items 512;
    a budget below one draw still gives 1; a large budget gives n_draws."""
    p = sm.SmoothedParams(memory_mb=1.0, n_draws=4000)
    assert sm._chunk_size(p, 20, 9, 4) == 1024
    assert sm._chunk_size(sm.SmoothedParams(memory_mb=3.0, n_draws=4000), 20, 9, 4) == 3072
    assert sm._chunk_size(p, 20, 9, 8) == 512
    assert sm._chunk_size(sm.SmoothedParams(memory_mb=1e-4, n_draws=4000), 20, 9, 4) == 1
    assert sm._chunk_size(sm.SmoothedParams(memory_mb=1e6, n_draws=4000), 20, 9, 4) == 4000
    assert sm._chunk_size(sm.SmoothedParams(memory_mb=1.0, chunk_draws=7), 20, 9, 4) == 7


# --- the adaptive stop ----------------------------------------------------------------------------------------------


class _Readings:
    """What `_precise_enough` reads from an accumulator: draws, values() and compared_errors()."""

    def __init__(self, draws, full, half, se, loo, se_half, se_loo, third=0.0):
        self.draws = draws
        self._values = (np.array([full, half, third]), se, loo)
        self._errors = (se_half, se_loo)

    def values(self):
        return self._values

    def compared_errors(self):
        return self._errors


def _at_exactly(target, f, start=None):
    """A float x near `start` (default: target) with f(x) == target exactly, f increasing near there (searched over
    neighbouring floats)."""
    x = target if start is None else start
    for _ in range(64):
        if f(x) == target:
            return x
        x = float(np.nextafter(x, np.inf if f(x) < target else -np.inf))
    raise AssertionError("no exact float found")


def test_a_tau_stops_once_its_reading_and_the_compared_readings_are_precise_enough() -> None:
    """`_precise_enough(acc, params)` (by hand from its docstring): False with mc_tolerance_fraction 0 or fewer than
    min_draws draws (at exactly min_draws it may stop); else, with tol = max(convergence_min_bits,
    convergence_fraction |I|) and allowed = mc_tolerance_fraction tol, False when 1.96 se > allowed, and True only
    when each compared reading g (N/2, leave-one-out) has 1.96 se_g <= allowed or | |I - g| - tol | >= 1.96 se_g.
    Numbers: I = 8 bits, fraction 1/16, min 0.25: tol = 0.5, allowed (f = 0.5) = 0.25; equalities are exact in
    floating point (searched), so each comparison's side of the boundary is pinned."""
    p = sm.SmoothedParams(convergence_min_bits=0.25, convergence_fraction=0.0625, mc_tolerance_fraction=0.5,
                          min_draws=100)
    ok = dict(draws=100, full=8.0, half=8.1, se=0.01, loo=7.95, se_half=0.01, se_loo=0.01)
    assert sm._precise_enough(_Readings(**ok), p)
    assert not sm._precise_enough(_Readings(**{**ok, "draws": 99}), p)
    no_stop = sm.SmoothedParams(**{**p.__dict__, "mc_tolerance_fraction": 0.0})
    assert not sm._precise_enough(_Readings(**ok), no_stop)
    assert not sm._precise_enough(_Readings(**{**ok, "se": 0.0, "se_half": 0.0, "se_loo": 0.0}), no_stop)
    # tolerance from the fraction (8 x 1/16 = 0.5 > 0.25) and from the minimum (|I| = 2: 0.125 < 0.25, tol 0.25)
    se_edge = _at_exactly(0.25, lambda s: 1.96 * s, start=0.25 / 1.96)
    assert sm._precise_enough(_Readings(**{**ok, "se": se_edge}), p)
    assert not sm._precise_enough(_Readings(**{**ok, "se": np.nextafter(se_edge, 1.0)}), p)
    assert not sm._precise_enough(_Readings(**{**ok, "se": 0.2}), p)
    small = dict(ok, full=2.0, half=2.05, loo=1.98, se=_at_exactly(0.125, lambda s: 1.96 * s, start=0.125 / 1.96))
    assert sm._precise_enough(_Readings(**small), p)
    assert not sm._precise_enough(_Readings(**{**small, "se": 0.07}), p)
    # a compared reading with a large error: fine only when clear of the threshold tol by 1.96 se_g
    for key, g_key in (("se_half", "half"), ("se_loo", "loo")):
        far = {**ok, key: 0.5, g_key: 9.5}  # | |8 - 9.5| - 0.5 | = 1.0 >= 0.98
        near = {**ok, key: 0.5, g_key: 9.0}  # | |8 - 9| - 0.5 | = 0.5 < 0.98
        below = {**ok, key: 0.5, g_key: 8.0 - 0.5 - 1.0}  # | 1.5 - 0.5 | = 1.0
        assert sm._precise_enough(_Readings(**far), p), key
        assert sm._precise_enough(_Readings(**below), p), key
        assert not sm._precise_enough(_Readings(**near), p), key
        # exactly 1.96 se_g = 0.75 clear of the threshold (g = 9.25: | 1.25 - 0.5 | = 0.75): fine; a float closer: not
        se_g = _at_exactly(0.75, lambda s: 1.96 * s, start=0.75 / 1.96)
        assert sm._precise_enough(_Readings(**{**ok, key: se_g, g_key: 9.25}), p), key
        assert not sm._precise_enough(_Readings(**{**ok, key: se_g, g_key: float(np.nextafter(9.25, 0.0))}), p), key
        # as precise as allowed (1.96 se_g == allowed exactly) while next to the threshold: fine
        se_g = _at_exactly(0.25, lambda s: 1.96 * s, start=0.25 / 1.96)
        assert sm._precise_enough(_Readings(**{**ok, key: se_g, g_key: 8.5}), p), key
        assert not sm._precise_enough(_Readings(**{**ok, key: np.nextafter(se_g, 1.0), g_key: 8.5}), p), key
    # the estimate is column 0 and the N/2 reading column 1 (column 2, a replicate, is not compared)
    assert not sm._precise_enough(_Readings(**{**ok, "se_half": 0.5, "half": 9.0, "third": 9.5}), p)
    assert sm._precise_enough(_Readings(**{**ok, "se_half": 0.5, "half": 9.5, "third": 9.0}), p)


# --- small pieces: device, row blocks, sigma --------------------------------------------------------------------------


def test_device_auto_picks_cuda_only_where_it_is_available() -> None:
    """`_device`: "auto" is cuda where torch sees a GPU and the CPU otherwise (torch.cuda.is_available replaced
    both ways: building a torch.device needs no GPU); any other name is that device. By hand."""
    from unittest import mock

    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        assert sm._device("auto") == torch.device("cuda")
    with mock.patch.object(torch.cuda, "is_available", return_value=False):
        assert sm._device("auto") == torch.device("cpu")
    assert sm._device("cpu") == torch.device("cpu") and sm._device("cuda:1") == torch.device("cuda", 1)


def test_row_blocks_are_float64_copies_of_2048_rows() -> None:
    """`_row_blocks`: consecutive float64 copies of 2,048 rows (the last one shorter) that together are the array;
    writing into a block leaves the array alone. By hand: 5,000 rows are 2,048 + 2,048 + 904."""
    flat = np.arange(10_000, dtype=np.float32).reshape(5000, 2)
    blocks = list(sm._row_blocks(flat))
    assert [len(b) for b in blocks] == [2048, 2048, 904] and all(b.dtype == np.float64 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), flat)
    blocks[0][:] = -1.0
    assert flat[0, 0] == 0.0


def test_sigma_is_tau_times_the_root_of_the_live_dimensions() -> None:
    """`Scale.sigma(tau)` = tau sqrt(d_eff), d_eff the non-constant dimensions, at least 1 (a scale with no live
    dimension still has sigma = tau). By hand."""
    assert sm.Scale(np.zeros(4), np.array([1.0, 0.0, 2.0, 3.0])).sigma(0.5) == pytest.approx(0.5 * math.sqrt(3))
    assert sm.Scale(np.zeros(2), np.array([0.0, 2.0])).sigma(0.5) == pytest.approx(0.5)
    assert sm.Scale(np.zeros(2), np.zeros(2)).sigma(0.5) == pytest.approx(0.5)


# --- the noise blocks' cache -------------------------------------------------------------------------------------------


def test_noise_blocks_draw_each_block_once_across_consecutive_chunks() -> None:
    """`_NoiseBlocks` keeps the last block of each side, so chunks that meet inside a block draw it once: chunks
    [0, 500) and [500, 1000) of one side generate blocks 0, 1 and then 2, 3 (4 blocks, not 5); a chunk ending on
    a block's last row does not generate the next block; a chunk whose last row is the first row of a block does.
    The values are those of fresh blocks whatever was kept (a later chunk in another block does not reuse the kept
    one). Block counts by hand (blocks of 256); values against `_noise_block`."""
    from unittest import mock

    real = sm._noise_block
    calls = []

    def counted(seed, side, block, d):
        calls.append((side, block))
        return real(seed, side, block, d)

    with mock.patch.object(sm, "_noise_block", counted):
        nb = sm._NoiseBlocks(3, (2, 2))
        a = nb(0, 0, 500)
        b = nb(0, 500, 500)
        assert calls == [(0, 0), (0, 1), (0, 2), (0, 3)]
        calls.clear()
        nb = sm._NoiseBlocks(3, (2, 2))
        nb(1, 0, 256)
        assert calls == [(1, 0)]
        nb(1, 256, 1)
        assert calls == [(1, 0), (1, 1)]
        calls.clear()
        c = sm._NoiseBlocks(3, (2, 2))(0, 200, 57)  # rows 200 .. 256: blocks 0 and 1
        assert calls == [(0, 0), (0, 1)]
        d = nb(1, 600, 10)  # side 1 kept block 1; rows 600 .. 609 are in block 2
    ref0 = np.concatenate([real(3, 0, k, 2).numpy() for k in range(4)])
    np.testing.assert_array_equal(np.concatenate([a.numpy(), b.numpy()]), ref0[:1000])
    np.testing.assert_array_equal(c.numpy(), ref0[200:257])
    np.testing.assert_array_equal(d.numpy(), real(3, 1, 2, 2).numpy()[600 - 512 : 610 - 512])


# --- the leave-one-out reading from the plug-in's sums -----------------------------------------------------------------


def _own_excluded_sums(D, G, a, b, base, idx):
    """(3, m): per draw, sum over j != own of base_j e^{a_x D + b_x G} (x), e^{..y..} (y) and their product (joint)."""
    ex = np.exp(a[0] * D[0] + b[0] * G[0])
    ey = np.exp(a[1] * D[1] + b[1] * G[1])
    mask = np.ones_like(ex)
    mask[np.arange(len(idx)), idx] = 0.0
    w = base[None, :] * mask
    return np.stack([(w * ex).sum(1), (w * ey).sum(1), (w * ex * ey).sum(1)])


def test_leave_one_out_pmi_from_the_plugin_sums() -> None:
    """`_LeaveOneOut.pmi(S, exps, idx)`: from the own-excluded sums S of the plug-in, the leave-one-out pmi (own atom
    at weight c_i - 1, normaliser N - 1) equals the definition computed with scipy's logsumexp, for draws of atoms
    with counts 3, 1, 2 and 1, including a draw whose sums underflow (every other atom far away, its own count 1:
    recomputed from the exponents, finite); in float32 the result stays float32 and within float32 rounding of the
    reference, no divide-by-zero warning comes from atoms of count 1 (log 0 = -inf by design), and the tensors are
    on the given device when torch's default device is another (meta)."""

    rng = np.random.default_rng(13)
    u, m = 4, 5
    D = rng.uniform(0.0, 0.3, (2, m, u))  # atoms close together: the own atom's weight c_i - 1 is a small part
    G = rng.normal(0.0, 0.1, (2, m, u))
    idx = np.array([0, 1, 2, 3, 1])
    D[:, 4, :] = 5000.0  # draw 4 (atom 1, count 1): every other atom far away
    D[:, np.arange(m), idx] = 0.0
    a, b = np.array([-0.6, -0.4]), np.array([-0.8, -0.5])
    base, unit = np.array([3.0, 1.0, 2.0, 1.0]), np.ones(4)
    want = _leave_one_out_reference(D, G, a, b, base, unit, idx)
    S = _own_excluded_sums(D, G, a, b, base, idx)
    assert (S[:, 4] == 0.0).all() and np.isfinite(want).all()
    for dtype, tol, default in ((torch.float64, 1e-9, None), (torch.float32, 1e-3, None), (torch.float64, 1e-9, "meta")):
        with warnings.catch_warnings(), torch.device(default or "cpu"):
            warnings.simplefilter("error")
            loo = sm._LeaveOneOut(base, unit, dtype, "cpu")  # its tensors on the CPU whatever torch's default device
        exps = tuple(torch.as_tensor(v, dtype=dtype) for v in (D, G, a.reshape(2, 1, 1), b.reshape(2, 1, 1)))
        got = loo.pmi(torch.as_tensor(S, dtype=dtype), exps, torch.as_tensor(idx))
        assert got.dtype == dtype
        np.testing.assert_allclose(got.numpy(), want, rtol=tol, atol=tol)


def test_leave_one_out_recomputes_exactly_the_rows_with_a_tiny_sum() -> None:
    """The documented rule of `_LeaveOneOut.pmi`: a draw is recomputed from the exponents when any one of its three
    sums (x, y or joint, own weight c_i - 1 added) is at most TINY x the largest weight; the others are read from the
    sums. Seen by giving sums that disagree with the exponents: a recomputed row equals the definition (scipy), a row
    read from the sums equals log s_xy - log s_x - log s_y + log(N - 1). Largest weight 3: the threshold is 3e-25.
    Rows (all of count-1 atoms, no own weight left): x sum at the threshold (recomputed), x sum just above it (read),
    only the joint sum at it (recomputed), ordinary sums (read)."""
    rng = np.random.default_rng(14)
    u, m = 4, 4
    D = rng.uniform(0.0, 3.0, (2, m, u))
    G = rng.normal(0.0, 0.5, (2, m, u))
    idx = np.array([1, 3, 1, 3])
    D[:, np.arange(m), idx] = 0.0
    a, b = np.array([-0.6, -0.4]), np.array([-0.8, -0.5])
    base, unit = np.array([3.0, 1.0, 2.0, 1.0]), np.ones(4)
    want = _leave_one_out_reference(D, G, a, b, base, unit, idx)
    tiny = sm._LeaveOneOut.TINY * 3.0
    S = np.array([[tiny, tiny * (1 + 1e-9), 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0.125, 0.125, tiny, 0.2]])
    loo = sm._LeaveOneOut(base, unit, torch.float64, "cpu")
    exps = tuple(torch.as_tensor(v) for v in (D, G, a.reshape(2, 1, 1), b.reshape(2, 1, 1)))
    got = loo.pmi(torch.as_tensor(S), exps, torch.as_tensor(idx)).numpy()
    read = np.log(S[2]) - np.log(S[0]) - np.log(S[1]) + math.log(base.sum() - 1.0)
    np.testing.assert_allclose(got[[0, 2]], want[[0, 2]], rtol=1e-9)
    np.testing.assert_allclose(got[[1, 3]], read[[1, 3]], rtol=1e-9)


# --- the estimator's inputs and outputs --------------------------------------------------------------------------------


def _small_problem(seed: int = 15, n: int = 24):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, x[:, :2] + 0.7 * rng.normal(size=(n, 2))


_SMALL = sm.SmoothedParams(tau=0.5, taus=(), n_draws=60, min_draws=60, n_bootstrap=6, mc_tolerance_fraction=0.0)


def test_a_reported_reading_has_one_replicate_per_bootstrap_column() -> None:
    """A reported reading carries n_bootstrap replicates, with either correction (the extrapolation's second set of
    halves is subtracted from the first, not appended), and the replicates of the plug-in average to the estimate
    (value + each replicate's deviation from their mean). By hand from `_replicates`' docstring."""
    from dataclasses import replace

    x, y = _small_problem()
    for correction in ("none", "extrapolate"):
        for weights in (None, np.linspace(1.0, 2.0, 24)):
            r = sm.smoothed_mi(x, y, replace(_SMALL, correction=correction), seed=1, weights=weights).at(0.5)
            assert r.bootstrap.shape == (6,), (correction, weights is None)
            assert r.bootstrap.mean() == pytest.approx(r.mi_bits, abs=1e-9)


def test_known_law_weights_are_validated() -> None:
    """A known law's weights must be one per component and all > 0: a wrong shape or a zero weight is a ValueError
    naming the rule. By hand."""
    x, y = _small_problem()
    for bad in (np.ones(23), np.ones((24, 1)), np.r_[np.ones(23), 0.0]):
        with pytest.raises(ValueError, match=r"weights must be \(24,\) and > 0"):
            sm.smoothed_mi(x, y, _SMALL, weights=bad)


def test_known_law_weights_are_read_in_float64() -> None:
    """Weights are read as float64 whatever their dtype: float32 weights give the same result as the same numbers
    converted to float64 first, and integer weights the same as their float values (float64 estimator dtype, so
    no float32 rounding hides a difference). By hand: the same law in every case."""
    from dataclasses import replace

    x, y = _small_problem()
    p = replace(_SMALL, dtype="float64")
    w32 = (np.arange(24) % 5 + 1).astype(np.float32) / np.float32(3.0)
    a = sm.smoothed_mi(x, y, p, seed=2, weights=w32).at(0.5)
    b = sm.smoothed_mi(x, y, p, seed=2, weights=w32.astype(np.float64)).at(0.5)
    assert (a.mi_bits, a.half_bits, a.loo_bits, a.mc_se_bits) == (b.mi_bits, b.half_bits, b.loo_bits, b.mc_se_bits)
    wi = np.arange(24) % 5 + 1
    c = sm.smoothed_mi(x, y, p, seed=2, weights=wi).at(0.5)
    d = sm.smoothed_mi(x, y, p, seed=2, weights=wi.astype(np.float64)).at(0.5)
    assert (c.mi_bits, c.half_bits, c.loo_bits) == (d.mi_bits, d.half_bits, d.loo_bits)


def test_deduplication_draws_the_same_samples_as_the_expanded_sample() -> None:
    """Merging identical rows changes the cost, not the draws: with one seed, draw k is the same sample (row) with
    the same noise whether the rows were merged into atoms or kept (dedupe=False), because draws are stratified over
    the samples in the rows' order and each sample is mapped to its own atom. So the plug-in, its Monte Carlo error
    and the leave-one-out reading agree to float64 rounding (the N/2 reading and the replicates draw their random
    halves per atom, so they differ). 10 states in d = 3 (< 2 x 10: no isometry on either path), repeated 6 times
    in a shuffled order, float64, all 120 draws."""
    from dataclasses import replace

    rng = np.random.default_rng(16)
    ax = rng.normal(size=(10, 3))
    ay = ax[:, :2] + 0.5 * rng.normal(size=(10, 2))
    rows = rng.permutation(np.repeat(np.arange(10), 6))
    x, y = ax[rows], ay[rows]
    p = replace(_SMALL, dtype="float64", n_draws=120, min_draws=120, taus=(0.25,))
    merged = sm.smoothed_mi(x, y, p, seed=3)
    expanded = sm.smoothed_mi(x, y, p, seed=3, dedupe=False)
    assert merged.n_atoms == 10 and expanded.n_atoms == 60
    for a, b in zip(merged.readings, expanded.readings):
        for name in ("plugin_bits", "mc_se_bits", "loo_bits"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-9), (a.tau, name)


# --- parameter, input and flag rules ----------------------------------------------------------------------------------


def test_parameter_rules_and_their_messages() -> None:
    """`SmoothedParams.validate`, each rule at its edge and its message (by hand from the rules): taus finite and
    > 0; n_draws >= 10; min_draws >= 1; mc_tolerance_fraction finite and >= 0; n_bootstrap >= 0; correction and
    dtype from their lists; chunk_draws >= 0 and memory_mb > 0."""
    from dataclasses import replace

    p = sm.SmoothedParams()
    for ok in (dict(n_draws=10), dict(min_draws=1), dict(mc_tolerance_fraction=0.0), dict(n_bootstrap=0),
               dict(dtype="float64"), dict(dtype="float32"), dict(correction="extrapolate"), dict(memory_mb=0.5),
               dict(chunk_draws=0), dict(taus=(1e-9,))):
        replace(p, **ok).validate()
    bad = [
        (dict(taus=(0.1, 0.0)), "smoothed tau values must be finite and > 0, got tau=0.25, taus=[0.1, 0.0], "
                                "reported_taus=[]"),
        (dict(reported_taus=(math.inf,)), "smoothed tau values must be finite and > 0, got tau=0.25, "
                                          "taus=[0.05, 0.1, 0.25, 0.5, 1.0], reported_taus=[inf]"),
        (dict(n_draws=9), "smoothed n_draws must be >= 10 Monte Carlo draws, got 9"),
        (dict(min_draws=0), "smoothed min_draws must be >= 1, got 0"),
        (dict(mc_tolerance_fraction=-0.1), "smoothed mc_tolerance_fraction must be >= 0 (0 = always n_draws draws), "
                                           "got -0.1"),
        (dict(mc_tolerance_fraction=math.inf), "smoothed mc_tolerance_fraction must be >= 0"),
        (dict(mc_tolerance_fraction=math.nan), "smoothed mc_tolerance_fraction must be >= 0"),
        (dict(n_bootstrap=-1), "smoothed n_bootstrap must be >= 0, got -1"),
        (dict(correction="bias"), "smoothed correction must be one of ['none', 'extrapolate'], got 'bias'"),
        (dict(dtype="float16"), "smoothed dtype must be float32 or float64, got 'float16'"),
        (dict(chunk_draws=-1), "smoothed chunk_draws must be >= 0 (0 = automatic) and memory_mb > 0"),
        (dict(memory_mb=0.0), "smoothed chunk_draws must be >= 0 (0 = automatic) and memory_mb > 0"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            replace(p, **change).validate()


def test_paired_states_rules_and_their_messages() -> None:
    """`_check_pair`: 2-D x and y with as many rows; at least 4 samples, counted as the given sample size when the
    rows are atoms with counts; finite values, the message naming the side and the first five bad rows. By hand."""
    rng = np.random.default_rng(17)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    shape = "smoothed_mi needs paired 2-D states x (N, dx), y (N, dy); got "
    for a, b in ((x[:, 0], y), (x, y[:, 0]), (x, y[:11])):
        with pytest.raises(ValueError, match=re.escape(shape + f"{a.shape} and {b.shape}")):
            sm._check_pair(a, b, "")
    assert sm._check_pair(x[:4], y[:4], "")[0].shape == (4, 3)
    with pytest.raises(ValueError, match=re.escape("smoothed_mi (problem 2) needs at least 4 paired samples, got 3")):
        sm._check_pair(x[:3], y[:3], " (problem 2)")
    assert sm._check_pair(x[:3], y[:3], "", 10)[0].shape == (3, 3)  # three atoms of ten samples
    with pytest.raises(ValueError, match="at least 4 paired samples, got 2"):
        sm._check_pair(x[:5], y[:5], "", 2)
    for side in (0, 1):
        a, b = x.copy(), y.copy()
        (a, b)[side][[1, 3, 5, 7, 9, 11], 0] = [np.nan, np.inf, -np.inf, np.nan, np.nan, np.nan]
        with pytest.raises(ValueError, match=re.escape(
                f"smoothed_mi: {'xy'[side]} has NaN/inf in rows [1, 3, 5, 7, 9]...; drop or repair them first (a NaN "
                "state usually means the model overflowed in its dtype)")):
            sm._check_pair(a, b, "")


def test_convergence_flag_rules_at_their_edges() -> None:
    """`convergence_flag` (by hand from its docstring), with tol = max(min_bits, fraction |I|): "nan" when any of
    I, I(N/2), the Monte Carlo error is not finite; "not_converged" when |I - I(N/2)| > tol; "undersampled" when a
    leave-one-out reading is given and |I - loo| > tol; "imprecise" when 1.96 mc_se > tol; "ok" otherwise (the
    Monte Carlo error defaults to 0). Edges in exact binary numbers: I = 8, fraction 1/16, min 0.25 give tol 0.5, and
    a difference of exactly tol is not flagged; I = -8 gives the same tol; I = 1 gives tol = min_bits 0.25."""
    f = sm.convergence_flag
    kw = dict(min_bits=0.25, fraction=0.0625)
    assert f(1.0, 1.0) == "ok" and f(1.0, 1.0, loo_bits=None) == "ok"
    for args in ((math.nan, 1.0, 0.0), (1.0, math.inf, 0.0), (1.0, 1.0, math.nan)):
        assert f(args[0], args[1], mc_se_bits=args[2], **kw) == "nan"
    assert f(8.0, 7.5, **kw) == "ok" and f(8.0, 8.5, **kw) == "ok"
    assert f(8.0, float(np.nextafter(7.5, 0.0)), **kw) == "not_converged"
    assert f(-8.0, -7.5, **kw) == "ok" and f(-8.0, -7.0, **kw) == "not_converged"
    assert f(1.0, 1.25, **kw) == "ok" and f(1.0, 1.3, **kw) == "not_converged"
    assert f(8.0, 8.0, loo_bits=8.5, **kw) == "ok" and f(8.0, 8.0, loo_bits=7.5, **kw) == "ok"
    assert f(8.0, 8.0, loo_bits=float(np.nextafter(8.5, 9.0)), **kw) == "undersampled"
    assert f(8.0, 8.0, loo_bits=7.0, mc_se_bits=1.0, **kw) == "undersampled"
    assert f(8.0, 9.0, loo_bits=7.0, **kw) == "not_converged"
    se = _at_exactly(0.5, lambda s: 1.96 * s, start=0.5 / 1.96)
    assert f(8.0, 8.0, mc_se_bits=se, **kw) == "ok"
    assert f(8.0, 8.0, mc_se_bits=float(np.nextafter(se, 1.0)), **kw) == "imprecise"
    assert f(8.0, 8.0, mc_se_bits=0.1, **kw) == "ok" and f(8.0, 8.0, mc_se_bits=0.3, **kw) == "imprecise"


# --- a reading from its columns ------------------------------------------------------------------------------------------


def test_replicates_of_the_plugin_and_of_the_extrapolation() -> None:
    """`_replicates`: none: value + (replicate - their mean); extrapolate: the columns split in two equal sets,
    value + (first - its mean) - (second - its mean); no columns: the value alone. By hand."""
    none = sm.SmoothedParams()
    ex = sm.SmoothedParams(correction="extrapolate")
    np.testing.assert_array_equal(sm._replicates(none, 2.0, np.zeros(0)), [2.0])
    np.testing.assert_array_equal(sm._replicates(ex, 2.0, np.zeros(0)), [2.0])
    np.testing.assert_allclose(sm._replicates(none, 2.0, np.array([1.0, 3.0, 5.0, 7.0])), [-1.0, 1.0, 3.0, 5.0])
    np.testing.assert_allclose(sm._replicates(ex, 2.0, np.array([1.0, 3.0, 10.0, 20.0])), [6.0, -2.0])
    np.testing.assert_allclose(sm._replicates(none, 2.0, np.array([4.0])), [2.0])


def test_reading_value_interval_and_flags_from_its_columns() -> None:
    """`_reading(params, tau, sigma, columns, mc_se, loo, reported, n_draws)` by hand: the value is the plug-in
    (column 0) or, extrapolated, 2 plug-in - N/2 (column 1); the flag is `convergence_flag` of the plug-in, the N/2
    reading, the Monte Carlo error and the leave-one-out reading; a reported reading (the default, with 0 draws
    unless told) carries the replicates and their 2.5%/97.5% quantiles (numpy) widened to contain the value; an
    unreported one has no replicates and a NaN interval. "below_zero" replaces "ok" when the whole interval is
    below 0 (reported: max(97.5% quantile, value) < 0) or, without replicates, value + 1.96 mc_se < 0; a bound at
    exactly 0 is not below it."""
    p = sm.SmoothedParams(convergence_min_bits=0.5, convergence_fraction=0.05)
    r = sm._reading(p, 0.25, 0.7, np.array([1.0, 1.25, 0.9, 1.1, 1.0, 1.2]), 0.01, 1.1)
    reps = 1.0 + (np.array([0.9, 1.1, 1.0, 1.2]) - 1.05)
    low, high = np.quantile(reps, [0.025, 0.975])
    assert (r.tau, r.sigma, r.mi_bits, r.plugin_bits, r.half_bits, r.mc_se_bits, r.loo_bits) == \
        (0.25, 0.7, 1.0, 1.0, 1.25, 0.01, 1.1)
    assert r.reported is True and r.n_draws == 0 and r.flag == "ok"
    np.testing.assert_allclose(r.bootstrap, reps)
    assert r.ci_low == pytest.approx(low) and r.ci_high == pytest.approx(high)
    ex = sm.SmoothedParams(convergence_min_bits=0.5, correction="extrapolate")
    r = sm._reading(ex, 0.5, 1.0, np.array([2.0, 1.5, 1.0, 1.5, 2.5, 2.0]), 0.01, 2.0, True, 40)
    assert r.mi_bits == 2.5 and r.n_draws == 40 and r.reported and r.flag == "ok"
    np.testing.assert_allclose(r.bootstrap, [2.0, 3.0])  # 2.5 + (-0.25, 0.25) - (0.25, -0.25)
    # flags: each input of convergence_flag matters
    assert sm._reading(p, 0.25, 0.7, np.array([1.0, 1.75]), 0.01, 1.0, False).flag == "not_converged"
    assert sm._reading(p, 0.25, 0.7, np.array([1.0, 1.0]), 0.01, 1.75, False).flag == "undersampled"
    assert sm._reading(p, 0.25, 0.7, np.array([1.0, 1.0]), 0.3, 1.0, False).flag == "imprecise"
    assert sm._reading(replace_params(p, convergence_min_bits=0.05), 0.25, 0.7, np.array([1.0, 1.2]), 0.01, 1.0,
                       False).flag == "not_converged"
    assert sm._reading(replace_params(p, convergence_fraction=0.5), 0.25, 0.7, np.array([4.0, 5.5]), 0.01, 4.0,
                       False).flag == "ok"
    # unreported: no replicates, NaN interval, below zero when value + 1.96 se < 0
    u = sm._reading(p, 0.1, 0.3, np.array([-0.5, -0.5]), 0.1, -0.5, False, 12)
    assert u.flag == "below_zero" and u.reported is False and u.n_draws == 12 and u.bootstrap.shape == (0,)
    assert math.isnan(u.ci_low) and math.isnan(u.ci_high) and u.sigma == 0.3 and u.loo_bits == -0.5
    for value, want in ((-0.1, "ok"), (-0.25, "below_zero"), (-(1.96 * 0.1), "ok"), (0.5, "ok")):
        assert sm._reading(p, 0.1, 0.3, np.array([value, value]), 0.1, value, False).flag == want, value
    assert sm._reading(p, 0.1, 0.3, np.array([-0.5, -0.5]), 0.3, -0.5, False).flag == "imprecise"
    # reported: below zero when the whole interval is
    assert sm._reading(p, 0.1, 0.3, np.array([-0.5, -0.5, -0.6, -0.4]), 0.01, -0.5).flag == "below_zero"
    assert sm._reading(p, 0.1, 0.3, np.array([0.0, 0.0, 0.0, 0.0]), 0.01, 0.0).flag == "ok"
    assert sm._reading(p, 0.1, 0.3, np.array([0.5, 0.5, 0.4, 0.6]), 0.01, 0.5).flag == "ok"
    assert sm._reading(p, 0.1, 0.3, np.array([-0.1, -0.1, -0.4, 0.2]), 0.01, -0.1).flag == "ok"
    assert sm._reading(p, 0.1, 0.3, np.array([-0.5, -0.5, -0.6, -0.4]), 0.3, -0.5).flag == "imprecise"


def replace_params(p, **change):
    from dataclasses import replace

    return replace(p, **change)


# --- standardisation ------------------------------------------------------------------------------------------------------


def test_scale_of_states_with_and_without_counts_and_its_application() -> None:
    """`Scale.of`: per-dimension mean and (population) standard deviation over all leading axes (numpy reference),
    over more than one row block (2,048 rows); with counts, those of the expanded sample (numpy on np.repeat), and a
    count per row or a ValueError; an empty sample gives NaN. `Scale.apply`: (states - center) / spread as float32
    with the input's shape, constant dimensions exactly 0."""
    rng = np.random.default_rng(18)
    states = (rng.normal(size=(3, 1500, 4)) * [1.0, 2.0, 0.0, 5.0] + [3.0, -1.0, 7.0, 0.5]).astype(np.float32)
    s = sm.Scale.of(states)
    flat = states.reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(s.center, flat.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.spread, flat.std(0), rtol=1e-10, atol=1e-12)
    assert s.d_eff == 3
    z = s.apply(states)
    assert z.dtype == np.float32 and z.shape == states.shape
    live = flat.std(0) > 0
    want = np.where(live, (flat - flat.mean(0)) / np.where(live, flat.std(0), 1.0), 0.0)
    np.testing.assert_allclose(z.reshape(-1, 4), want, rtol=1e-5, atol=1e-5)
    assert (z[..., 2] == 0.0).all()
    atoms = rng.normal(size=(5, 3)) * [1.0, 0.0, 3.0]
    counts = np.array([1, 4, 2, 3, 1])
    c = sm.Scale.of(atoms, counts)
    expanded = np.repeat(atoms, counts, axis=0)
    np.testing.assert_allclose(c.center, expanded.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.spread, expanded.std(0), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=re.escape("Scale.of: counts must be one per row (5,), got shape (4,)")):
        sm.Scale.of(atoms, counts[:4])
    one = sm.Scale.of(np.array([[1.0, -2.0, 3.0]]))  # a single row: its own center, no spread
    np.testing.assert_array_equal(one.center, [1.0, -2.0, 3.0])
    np.testing.assert_array_equal(one.spread, [0.0, 0.0, 0.0])
    empty = sm.Scale.of(np.zeros((0, 3)))
    assert empty.center.shape == empty.spread.shape == (3,) and np.isnan(empty.center).all()
    assert np.isnan(empty.spread).all()


# --- exponents and sums ---------------------------------------------------------------------------------------------------


def test_exponent_coefficients_and_the_own_excluded_sums() -> None:
    """`_exponent_coefficients(sx, sy)`: (2, 1, 1) a = -1 / (2 sigma^2), b = -1 / sigma per side, in the given dtype.
    `_excluded_sums`: per draw and column, sum over j != own of w_j e^{a D + b G} for x, y and their product (the
    joint), computed in base 2 (equal to float32 rounding); with `clip` each side's exponent is capped at
    MAX_EXPONENT = 30 first. Columns as a (U, C) matrix or a list of vectors give the same. numpy reference."""
    a, b = sm._exponent_coefficients(0.5, 2.0, torch.float64, "cpu")
    assert a.shape == b.shape == (2, 1, 1) and a.dtype == b.dtype == torch.float64
    np.testing.assert_allclose(a.ravel().numpy(), [-2.0, -0.125])
    np.testing.assert_allclose(b.ravel().numpy(), [-2.0, -0.5])
    a32, _ = sm._exponent_coefficients(0.5, 2.0, torch.float32, "cpu")
    assert a32.dtype == torch.float32
    with torch.device("meta"):  # on the given device whatever torch's default device
        on = sm._exponent_coefficients(0.5, 2.0, torch.float64, "cpu")
    assert all(t.device.type == "cpu" for t in on)
    rng = np.random.default_rng(19)
    u, m = 5, 3
    D = rng.uniform(0.0, 2.0, (2, m, u))
    G = rng.normal(0.0, 1.0, (2, m, u))
    G[0, 2, 4] = -40.0  # x exponent -2 D + 80 > 30 for draw 2, atom 4: clipped when asked
    idx = np.array([1, 0, 3])
    W = rng.uniform(0.5, 2.0, (u, 2))
    av, bv = np.array([-2.0, -0.125]), np.array([-2.0, -0.5])
    for clip in (False, True):
        ex = av[:, None, None] * D + bv[:, None, None] * G
        if clip:
            ex = np.minimum(ex, 30.0)
        e = np.exp(ex)
        e = np.stack([e[0], e[1], e[0] * e[1]])
        e[:, np.arange(m), idx] = 0.0
        want = np.einsum("smu,uc->smc", e, W)
        for cols in (torch.as_tensor(W), [torch.as_tensor(W[:, 0].copy()), torch.as_tensor(W[:, 1].copy())]):
            E = torch.empty(3, m, u, dtype=torch.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the work arrays are used as they are (no resized outputs)
                got = sm._excluded_sums(torch.as_tensor(D), torch.as_tensor(G), a, b, torch.arange(m),
                                        torch.as_tensor(idx), E, cols, clip)
            assert got.shape == (3, m, 2)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def test_distances_and_noise_projections_of_the_draws() -> None:
    """`_distances`: D[s, k, j] = ||a_{i_k} - a_j||^2 (clamped at 0) and G[s, k, j] = z_k . (a_{i_k} - a_j) for both
    sides (x: 4 atoms in d = 3, y: 4 atoms in d = 2, so that U, d_x and d_y all differ), the same with a given
    buffer or one allocated here, and with the distance caches (each side its own). numpy reference; float64."""
    rng = np.random.default_rng(20)
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    idx = np.array([2, 0, 2, 3, 1])
    nx, ny = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    want_D = [((A[idx][:, None, :] - A[None, :, :]) ** 2).sum(-1) for A in (X, Y)]
    want_G = [np.einsum("kd,kjd->kj", z, A[idx][:, None, :] - A[None, :, :]) for A, z in ((X, nx), (Y, ny))]
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    sqx, sqy = (Xt * Xt).sum(1), (Yt * Yt).sum(1)
    args = (Xt, Yt, sqx, sqy, torch.as_tensor(idx), torch.as_tensor(nx), torch.as_tensor(ny))
    for caches in ([None, None], [sm._DistanceRows(Xt, sqx), sm._DistanceRows(Yt, sqy)]):
        for buf in (None, torch.empty(2, 10, 4, dtype=torch.float64), "meta"):
            if isinstance(buf, str):  # the buffer allocated here is on the states' device whatever torch's default device
                with torch.device("meta"):
                    D, G = sm._distances(*args, caches, None)
                assert D.device.type == "cpu"
            else:
                D, G = sm._distances(*args, caches, buf)
            assert D.shape == G.shape == (2, 5, 4) and D.dtype == torch.float64
            for s in (0, 1):
                np.testing.assert_allclose(D[s].numpy(), want_D[s], atol=1e-12)
                np.testing.assert_allclose(G[s].numpy(), want_G[s], atol=1e-12)


# --- the per-problem driver, `_one_problem`: formula, overflow, adaptive stop, devices, work arrays ------------------


def _identity_scale(d: int) -> sm.Scale:
    """A Scale that leaves states as they are (center 0, spread 1): sigma = tau sqrt(d) in the states' own units."""
    return sm.Scale(center=np.zeros(d), spread=np.ones(d))


def _pointwise_mi_nats(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray, sig_a: float,
                       sig_b: float) -> np.ndarray:
    """log p(x', y') - log p(x') - log p(y') at each point (x', y') of the smoothed law putting weight w_j on the
    pair (a_j, b_j) (Gaussian noise sig_a on x, sig_b on y), in float64 with scipy's logsumexp: written without the
    estimator's code."""
    lx = -((xs[:, None, :] - a[None]) ** 2).sum(2) / (2 * sig_a**2)
    ly = -((ys[:, None, :] - b[None]) ** 2).sum(2) / (2 * sig_b**2)
    lp = np.log(w / w.sum())[None]
    return logsumexp(lx + ly + lp, 1) - logsumexp(lx + lp, 1) - logsumexp(ly + lp, 1)


def _mixture_mi_bits(a: np.ndarray, b: np.ndarray, w: np.ndarray, sig_a: float, sig_b: float, n: int,
                     seed: int) -> tuple[float, float]:
    """I(X + sig_a e; Y + sig_b e') of the law putting weight w_j on the pair (a_j, b_j), by plain Monte Carlo:
    (bits, standard error in bits)."""
    rng = np.random.default_rng(seed)
    comp = rng.choice(len(w), size=n, p=w / w.sum())
    xs = a[comp] + sig_a * rng.normal(size=(n, a.shape[1]))
    ys = b[comp] + sig_b * rng.normal(size=(n, b.shape[1]))
    pmi = _pointwise_mi_nats(xs, ys, a, b, w, sig_a, sig_b)
    return float(pmi.mean() / LN2), float(pmi.std() / math.sqrt(n) / LN2)


def test_plugin_equals_a_plain_monte_carlo_of_the_smoothed_mixture_on_a_lopsided_law() -> None:
    """The estimate of a known law (weights) is I_sigma of that law: recomputed by plain Monte Carlo with numpy
    (`_mixture_mi_bits`) on a law whose two sides differ (6 atoms in 3-D on x, their parity on a 1-D y, unequal
    weights), so that swapping the x and y densities in the pointwise MI, or using one of them twice, is off by
    about the entropy gap between the sides (more than a bit here). Agreement within 4 combined standard errors.
    Also the sample path (counts): 6 atoms seen 3, 1, 2, 2, 1, 1 times are the law with those weights."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 3)) * 1.2
    b = (np.arange(6) % 2).astype(float)[:, None]
    w = np.array([3.0, 1.0, 2.0, 2.0, 1.0, 1.0])
    tau = 0.3
    params = sm.SmoothedParams(tau=tau, taus=(), n_draws=6000, min_draws=6000, n_bootstrap=2, dtype="float64",
                               mc_tolerance_fraction=0.0)
    ref, ref_se = _mixture_mi_bits(a, b, w, tau * math.sqrt(3), tau * 1.0, 200_000, seed=11)
    assert 0.3 < ref < 0.99  # a law where the pointwise MI's three densities all matter
    for kwargs in (dict(weights=w), dict(counts=w.astype(np.int64))):
        r = sm.smoothed_mi(a, b, params, seed=5, scale_x=_identity_scale(3), scale_y=_identity_scale(1),
                           **kwargs).at(tau)
        assert abs(r.plugin_bits - ref) <= 4 * math.hypot(r.mc_se_bits, ref_se) + 1e-3, (kwargs.keys(), r, ref)


#: The weights of the 5-atom laws below: unequal, so that a draw's own weight and its neighbour's differ (a sum that
#: lost its terms would then read log(W / w_own) instead of log(W / w_j)).
_LAW_WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 6.0])


def _draw_plan(u: int, n_draws: int, seed: int) -> tuple[np.ndarray, int]:
    """The components the law with weights _LAW_WEIGHTS[:u] draws, and the noise seed, as `_one_problem` derives them."""
    rng = np.random.default_rng(seed)
    own = sm._draw_components(u, n_draws, rng, _LAW_WEIGHTS[:u])
    return own, int(rng.integers(2**63 - 1))


def _exponent_problem(x_gain: float | None, y_gain: float | None, d: int = 200, tau: float = 0.25, seed: int = 2):
    """Four far-apart atoms (x and y in d dimensions each) and one more, atom j, placed from the first draw's own
    atom i along that draw's noise z on each side: z scaled by c gives the draw's shifted exponent for j
    (2c - c^2) |z|^2 / 2 (the own exponent is 0). `x_gain`/`y_gain` are the wanted exponents (None: j far away on
    that side). Returns (zx, zy, sigma, the exponents as built)."""
    u, n_draws = 5, 40
    own, noise_seed = _draw_plan(u, n_draws, seed)
    sigma = tau * math.sqrt(d)
    zx = np.zeros((u, d))
    zy = np.zeros((u, d))
    for k in range(u):  # 40 sigma apart: every other exponent is below -800
        zx[k, k] = zy[k, k] = 40 * sigma * (k + 1)
    i = int(own[0])
    j = (i + 1) % u
    gains = []
    for side, (z, gain) in enumerate(((zx, x_gain), (zy, y_gain))):
        e = sm._noise(noise_seed, side, 0, 1, d)[0].double().numpy()
        sq = float(e @ e)
        if gain is None:
            gains.append(-math.inf)
            continue
        c = 1.0 - math.sqrt(1.0 - 2.0 * gain / sq)  # (2c - c^2) sq / 2 = gain
        z[j] = z[i] + c * sigma * e
        gains.append(gain)
    return zx, zy, sigma, gains


def _run_one_problem(zx, zy, tau, dtype):
    """`_one_problem` on the law with weights _LAW_WEIGHTS, seed 2, 40 draws in chunks of one (`_plugin_by_hand`'s
    draws), no scaling."""
    params = sm.SmoothedParams(tau=tau, taus=(), n_draws=40, min_draws=40, n_bootstrap=2, chunk_draws=1,
                               mc_tolerance_fraction=0.0, dtype="float32" if dtype == torch.float32 else "float64")
    d = zx.shape[1]
    return sm._one_problem(zx, zy, _identity_scale(d), _identity_scale(d), params, 2, _LAW_WEIGHTS, None, None,
                           torch.device("cpu"), dtype)[0]


def _plugin_by_hand(zx: np.ndarray, zy: np.ndarray, sigma: float, seed: int = 2, n_draws: int = 40) -> float:
    """The plug-in estimate of the law with weights _LAW_WEIGHTS from its draws (`_draw_plan`) and their noise
    (`sm._noise`): the mean over those draws of the pointwise MI (`_pointwise_mi_nats`), in bits."""
    own, noise_seed = _draw_plan(len(zx), n_draws, seed)
    ex = sm._noise(noise_seed, 0, 0, n_draws, zx.shape[1]).double().numpy()
    ey = sm._noise(noise_seed, 1, 0, n_draws, zy.shape[1]).double().numpy()
    pmi = _pointwise_mi_nats(zx[own] + sigma * ex, zy[own] + sigma * ey, zx, zy, _LAW_WEIGHTS, sigma, sigma)
    return float(pmi.mean() / LN2)


def test_an_overflowing_chunk_is_recomputed_with_clipped_exponents(monkeypatch) -> None:
    """A draw whose joint term overflows float32 (e^50 on each side: e^100 > 3.4e38) is recomputed with each side's
    exponent clipped at MAX_EXPONENT (30): the reading stays finite and equals the plug-in computed by hand in
    float64 (`_plugin_by_hand`, no clipping needed there): clipping both sides by the same amount leaves the
    pointwise MI of a draw dominated by one term unchanged ((100 - 60) - (50 - 30) - (50 - 30) = 0). The overflow
    is checked to happen (the clipped call is made), so the test cannot pass by missing it."""
    zx, zy, sigma, gains = _exponent_problem(50.0, 50.0)
    assert sum(gains) > 88.8 > max(gains)  # the joint term overflows float32, each side alone does not
    clipped = []
    real = sm._excluded_sums

    def spy(*args, clip):
        clipped.append(clip)
        return real(*args, clip=clip)

    monkeypatch.setattr(sm, "_excluded_sums", spy)
    r32 = _run_one_problem(zx, zy, 0.25, torch.float32)
    assert True in clipped
    assert math.isfinite(r32.mi_bits) and math.isfinite(r32.loo_bits)
    assert r32.mi_bits == pytest.approx(_plugin_by_hand(zx, zy, sigma), abs=1e-3)


def test_exponents_are_not_clipped_where_nothing_overflows() -> None:
    """A term of e^36 on one side (finite in float32; the joint term too, the other side being far away) is used
    as it is: the reading equals the plug-in computed by hand, in float32 and float64. Clipping it at 30 would
    take ~6 nats off that draw's pointwise MI, 0.2 bit over the 40 draws."""
    zx, zy, sigma, _ = _exponent_problem(None, 36.0)
    expected = _plugin_by_hand(zx, zy, sigma)
    for dtype in (torch.float32, torch.float64):
        assert _run_one_problem(zx, zy, 0.25, dtype).mi_bits == pytest.approx(expected, abs=1e-3), dtype


def test_a_tau_stops_at_the_first_checkpoint_where_it_is_precise_enough() -> None:
    """The adaptive stop is checked at every `min_draws` checkpoint, whatever the chunks: with a tolerance no
    estimate misses (mc_tolerance_fraction 1e6) every tau stops at the first checkpoint, 50 draws, even when the
    chunks (20 draws) do not end on checkpoints; with mc_tolerance_fraction 0 every tau uses all n_draws. By hand
    from `SmoothedParams`' docstring."""
    x, y = _small_problem(n=30)
    base = sm.SmoothedParams(tau=0.5, taus=(0.25, 1.0), n_draws=300, min_draws=50, n_bootstrap=2, chunk_draws=20,
                             mc_tolerance_fraction=1e6)
    for chunk in (20, 0):
        r = sm.smoothed_mi(x, y, replace_params(base, chunk_draws=chunk), seed=3)
        assert [reading.n_draws for reading in r.readings] == [50, 50, 50], chunk
    r = sm.smoothed_mi(x, y, replace_params(base, mc_tolerance_fraction=0.0), seed=3)
    assert [reading.n_draws for reading in r.readings] == [300, 300, 300]


def test_a_grid_tau_is_reported_only_when_it_is_a_reported_tau_to_twelve_digits() -> None:
    """A grid tau 1e-10 (relative) away from the headline is another tau: no interval, no replicates. The headline
    itself is reported. By hand from `SmoothedParams`: reported = the headline and `reported_taus`."""
    x, y = _small_problem()
    near = 0.5 * (1 + 1e-10)
    r = sm.smoothed_mi(x, y, replace_params(_SMALL, taus=(near,)), seed=1)
    assert len(r.readings) == 2
    assert r.at(0.5).reported and r.at(0.5).bootstrap.shape == (6,)
    other = next(reading for reading in r.readings if reading.tau == near)
    assert not other.reported and other.bootstrap.shape == (0,) and math.isnan(other.ci_low)


def test_the_batched_path_merges_exactly_repeated_rows_by_default() -> None:
    """`smoothed_mi_batch` finds exactly repeated (x, y) rows unless told not to (dedupe=True by default, as in
    `smoothed_mi`): 40 rows made of 8 distinct pairs are 8 atoms; with dedupe=False, 40. By hand."""
    x, y = _small_problem(n=8)
    xs, ys = np.repeat(x, 5, axis=0), np.repeat(y, 5, axis=0)
    assert sm.smoothed_mi_batch([xs], [ys], _SMALL, [0])[0].n_atoms == 8
    assert sm.smoothed_mi_batch([xs], [ys], _SMALL, [0], dedupe=False)[0].n_atoms == 40


def _device_cases():
    """(x, y, kwargs) covering the sample path with every row its own atom, with repeated rows (atoms and counts,
    and the distance cache: fewer atoms than draws), a known law, and states wider than twice their rows."""
    x, y = _small_problem(n=30)
    return [(x, y, dict(dedupe=False)), (np.repeat(x[:6], 5, 0), np.repeat(y[:6], 5, 0), {}),
            (x, y, dict(weights=np.linspace(1.0, 3.0, 30))),
            (_wide(x[:8]), y[:8], dict(dedupe=False))]


def _wide(x: np.ndarray) -> np.ndarray:
    """States in more than twice as many dimensions as rows (here 8 rows in 18 dimensions): the estimator then
    works in the rows' own coordinates (`_isometric`)."""
    return np.concatenate([x] * 6, axis=1) + np.linspace(0.0, 1.0, 18)[None] * x[:, :1]


def test_every_tensor_is_made_on_the_requested_device_whatever_torchs_default() -> None:
    """With torch's default device set elsewhere ("meta": tensors without data), an estimate on the CPU
    (device="cpu") gives the same readings as without: every tensor of the computation is placed explicitly,
    none on the default device (a GPU run would otherwise mix devices, or a user's set_default_device("cuda")
    move the CPU estimator's tensors). Both dtypes."""
    for dtype in ("float32", "float64"):
        params = sm.SmoothedParams(tau=0.5, taus=(1.0,), n_draws=90, min_draws=30, n_bootstrap=3, chunk_draws=20,
                                   device="cpu", dtype=dtype)
        for x, y, kwargs in _device_cases():
            expected = sm.smoothed_mi(x, y, params, seed=4, **kwargs)
            with torch.device("meta"):
                got = sm.smoothed_mi(x, y, params, seed=4, **kwargs)
            for r, e in zip(got.readings, expected.readings, strict=True):
                assert (r.mi_bits, r.half_bits, r.loo_bits) == (e.mi_bits, e.half_bits, e.loo_bits), (dtype, kwargs)
                np.testing.assert_array_equal(r.bootstrap, e.bootstrap)  # the replicates' draw weights too


class _Reached(Exception):
    """Raised by a spy once it has seen what it checks (a meta-device run has no values to finish with)."""


def test_the_draws_noise_is_moved_to_the_computing_device(monkeypatch) -> None:
    """The noise is drawn on the CPU (`_noise`) and moved to the estimator's device with its dtype: run on the
    "meta" device (no data, so the run is stopped by the spy at the first distance computation), every tensor
    handed to `_distances` is on that device and of that dtype."""
    seen = {}

    def spy(X, Y, sqx, sqy, idx, nx, ny, caches, buf=None):
        seen.update(devices={t.device.type for t in (X, Y, sqx, sqy, idx, nx, ny, buf)},
                    dtypes={t.dtype for t in (X, Y, nx, ny, buf)})
        raise _Reached

    monkeypatch.setattr(sm, "_distances", spy)
    zx, zy = _small_problem(n=12)
    params = sm.SmoothedParams(tau=0.5, taus=(), n_draws=40, min_draws=40, n_bootstrap=2, dtype="float64")
    with pytest.raises(_Reached):
        sm._one_problem(zx, zy, _identity_scale(3), _identity_scale(2), params, 0, None, None, None,
                        torch.device("meta"), torch.float64)
    assert seen == dict(devices={"meta"}, dtypes={torch.float64})


def test_work_arrays_follow_the_memory_rules(monkeypatch) -> None:
    """What `_one_problem` allocates, seen by spies (by hand from its comments and `_chunk_size`'s docstring):
    - the memory rules are asked with the dtype's item size (4 bytes for float32, 8 for float64);
    - the distance caches are built exactly when `_DistanceRows.worth_it` says so, and then the chunks get three
      quarters of `memory_mb` (the caches take at most a quarter);
    - the (chunk x U) work arrays are allocated once, for most = max(1, min(chunk, min_draws, n_draws)) draws (4
      rows of distances, 3 of exponentials), and every chunk reuses them;
    - every tensor handed to the sums and the accumulator is of the estimator's dtype."""
    seen: dict[str, list] = {k: [] for k in ("chunk", "worth", "dist", "sums", "add")}
    real_chunk, real_worth, real_dist = sm._chunk_size, sm._DistanceRows.worth_it, sm._distances
    real_sums, real_add = sm._excluded_sums, sm._Accumulator.add

    def chunk(params, n, n_columns, itemsize):
        out = real_chunk(params, n, n_columns, itemsize)
        seen["chunk"].append((params.memory_mb, itemsize, out))
        return out

    def worth(n_atoms, n_draws, itemsize, memory_mb):
        out = real_worth(n_atoms, n_draws, itemsize, memory_mb)
        seen["worth"].append((itemsize, out))
        return out

    def dist(X, Y, sqx, sqy, idx, nx, ny, caches, buf=None):
        seen["dist"].append((caches[0] is not None, caches[1] is not None, None if buf is None else
                             (buf.untyped_storage().nbytes(), buf.data_ptr())))
        return real_dist(X, Y, sqx, sqy, idx, nx, ny, caches, buf)

    def sums(D, G, a, b, rows, idx, E, cols, clip):
        seen["sums"].append((E.untyped_storage().nbytes(), E.data_ptr(), {D.dtype, G.dtype, a.dtype, b.dtype}))
        return real_sums(D, G, a, b, rows, idx, E, cols, clip=clip)

    def add(self, pmi, w_own, loo_pmi):
        seen["add"].append({pmi.dtype, w_own.dtype, loo_pmi.dtype})
        return real_add(self, pmi, w_own, loo_pmi)

    monkeypatch.setattr(sm, "_chunk_size", chunk)
    monkeypatch.setattr(sm._DistanceRows, "worth_it", staticmethod(worth))
    monkeypatch.setattr(sm, "_distances", dist)
    monkeypatch.setattr(sm, "_excluded_sums", sums)
    monkeypatch.setattr(sm._Accumulator, "add", add)
    x, y = _small_problem(n=30)
    repeated = (np.repeat(x[:6], 5, 0), np.repeat(y[:6], 5, 0))  # 6 atoms
    cases = [  # (states, n_draws, min_draws, chunk_draws, atoms, cached, most)
        ((x, y), 30, 30, 1, 30, False, 1),
        ((x, y), 30, 10, 0, 30, False, 10),
        (repeated, 90, 50, 20, 6, True, 20),
        (repeated, 90, 10, 40, 6, True, 10),
    ]
    for dtype, itemsize, torch_dtype in (("float32", 4, torch.float32), ("float64", 8, torch.float64)):
        for (xs, ys), n_draws, min_draws, chunk_draws, u, cached, most in cases:
            for v in seen.values():
                v.clear()
            params = sm.SmoothedParams(tau=0.5, taus=(), n_draws=n_draws, min_draws=min_draws, n_bootstrap=3,
                                       chunk_draws=chunk_draws, mc_tolerance_fraction=0.0, dtype=dtype,
                                       device="cpu", memory_mb=64.0)
            sm.smoothed_mi(xs, ys, params, seed=2)
            case = (dtype, n_draws, min_draws, chunk_draws)
            assert seen["worth"] == [(itemsize, cached)], case
            [(memory_mb, size, _)] = seen["chunk"]
            assert (memory_mb, size) == (48.0 if cached else 64.0, itemsize), case
            assert {c[:2] for c in seen["dist"]} == {(cached, cached)}, case
            assert {c[2] for c in seen["dist"]} == {(4 * most * u * itemsize, seen["dist"][0][2][1])}, case
            assert {s[:2] for s in seen["sums"]} == {(3 * most * u * itemsize, seen["sums"][0][1])}, case
            assert all(s[2] == {torch_dtype} for s in seen["sums"]), case
            assert all(a == {torch_dtype} for a in seen["add"]), case


# --- the batched entry point: scales, checks and the result's fields ---------------------------------------------


def test_atoms_with_counts_are_scaled_as_their_expanded_sample(monkeypatch) -> None:
    """Without given scales, atoms with counts are standardised by the expanded sample's per-dimension mean and
    standard deviation (numpy's average and weighted variance, by hand), not the atoms' unweighted ones."""
    seen = {}
    real = sm._one_problem

    def spy(zx, zy, sx, sy, *args):
        seen.update(sx=sx, sy=sy)
        return real(zx, zy, sx, sy, *args)

    monkeypatch.setattr(sm, "_one_problem", spy)
    x, y = _small_problem(n=6)
    c = np.array([1, 5, 2, 9, 1, 3])
    sm.smoothed_mi(x, y, _SMALL, counts=c)
    for side, states in (("sx", x), ("sy", y)):
        mean = np.average(states, axis=0, weights=c)
        np.testing.assert_allclose(seen[side].center, mean, rtol=1e-12)
        np.testing.assert_allclose(seen[side].spread, np.sqrt(np.average((states - mean) ** 2, axis=0, weights=c)),
                                   rtol=1e-12)


def test_a_result_names_its_dimensions_and_its_wall_time() -> None:
    """`SmoothedResult`: d_x and d_y are the two sides' widths (3 and 2), the seed as given, and wall_s the seconds
    the problem took (positive, and far below a minute for 24 samples)."""
    x, y = _small_problem()
    r = sm.smoothed_mi_batch([x], [y], _SMALL, [7])[0]
    assert (r.d_x, r.d_y, r.seed) == (3, 2, 7)
    assert 0.0 < r.wall_s < 60.0


def test_batch_messages_name_the_problem_only_in_a_batch() -> None:
    """Errors of a single problem say `smoothed_mi: ...` / `smoothed_mi needs ...`; in a batch of several they name
    the problem (` (problem 1)`). Counts and weights together, counts of the wrong length, and states that are not
    2-D (said as such, before any count is compared with rows), with the exact messages. By hand."""
    x, y = _small_problem(n=8)
    both = ("give counts (a sample's multiplicities) or weights (a known law's probabilities), not both")
    with pytest.raises(ValueError, match=re.escape(f"smoothed_mi: {both}")):
        sm.smoothed_mi_batch([x], [y], _SMALL, [0], weights=np.ones(8), counts=[np.ones(8)])
    with pytest.raises(ValueError, match=re.escape(f"smoothed_mi (problem 1): {both}")):
        sm.smoothed_mi_batch([x, x], [y, y], _SMALL, [0, 1], weights=np.ones(8), counts=[None, np.ones(8)])
    with pytest.raises(ValueError, match="^" + re.escape("smoothed_mi: counts must be (8,) integers")):
        sm.smoothed_mi_batch([x], [y], _SMALL, [0], counts=[np.ones(7)])
    with pytest.raises(ValueError, match="^" + re.escape("smoothed_mi (problem 1): counts must be (8,) integers")):
        sm.smoothed_mi_batch([x, x], [y, y], _SMALL, [0, 1], counts=[None, np.ones(7)])
    not_2d = "smoothed_mi needs paired 2-D states x (N, dx), y (N, dy); got (8,) and (8, 2)"  # both sides named
    with pytest.raises(ValueError, match="^" + re.escape(not_2d)):
        sm.smoothed_mi_batch([x[:, 0]], [y], _SMALL, [0], counts=[np.ones(8)])
    with pytest.raises(ValueError, match="^" + re.escape(not_2d)):
        sm.smoothed_mi_batch([x[:, 0]], [y], _SMALL, [0], counts=[np.ones(7)])  # not "counts must be (8,)"
    with pytest.raises(ValueError, match="^" + re.escape("smoothed_mi (problem 0) needs at least 4 paired samples")):
        sm.smoothed_mi_batch([x[:3], x], [y[:3], y], _SMALL, [0, 1])


def test_atoms_count_as_the_samples_they_stand_for() -> None:
    """The at-least-4-samples rule counts the samples the atoms stand for: 3 atoms seen twice each (6 samples) are
    accepted, 3 atoms seen once are refused with the sample count. By hand."""
    x, y = _small_problem(n=3)
    r = sm.smoothed_mi(x, y, _SMALL, counts=np.array([2, 2, 2]))
    assert (r.n_samples, r.n_atoms) == (6, 3)
    with pytest.raises(ValueError, match=re.escape("smoothed_mi needs at least 4 paired samples, got 3")):
        sm.smoothed_mi(x, y, _SMALL, counts=np.array([1, 1, 1]))
