"""Identical states as weighted atoms (ie_ray/estimators/smoothed.py): the atom path is the same estimator as
the expanded sample, within Monte Carlo error; and the pieces of the lean, adaptive pass that make it fast.

The reference is the expanded sample with deduplication switched off (`dedupe=False`: every row its own
component), so each comparison is between two code paths: the automatic deduplication and the explicit
`counts` path (atoms from np.unique, the reducer's way) against it. Three samples: 26 micro-like atoms with
skewed frequencies among N = 2,000 (also the isometric path: d = 64 >= 2 x 26), ~580 atoms of a 600-atom law
among 2,000, and a mix where half the rows are unique. Tolerances come from the spread over seeds and the
reported Monte Carlo errors (4 combined standard errors plus a small allowance).

Seen red with the code broken on purpose (each time 2-6 of the comparisons failed): the leave-one-out removing
the draw's whole atom instead of its own sample (`unit = base` on the counts path: at tau = 0.1 the micro case's
leave-one-out fell from 3.9 to -5.9 bits, the 600-atom case's from 9.0 to -2.5), the bootstrap resampling atoms
instead of samples (multinomial(U, 1/U) scaled to N: the micro case's replicate sd went from 0.058 to 0.161 bit),
and the N/2 reading keeping half of the atoms instead of half of the samples (at tau = 0.1: micro 3.87 -> 2.82
bits, 600 atoms 8.67 -> 7.99, the mix 7.63 -> 7.24).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from ie_ray.estimators import smoothed as sm
from ie_ray.estimators.smoothed import Scale, SmoothedParams, smoothed_mi, smoothed_mi_batch
from ie_ray.validate_smoothed import DiscreteResidualLaw

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 2000
SEEDS = range(6)
PARAMS = SmoothedParams(tau=0.25, taus=(0.1, 0.25, 0.5, 1.0), reported_taus=(0.5,), n_bootstrap=100)


def _pair_map(atoms: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((atoms.shape[1], atoms.shape[1])) / math.sqrt(atoms.shape[1])
    return atoms + np.tanh(atoms @ w)


def _micro() -> tuple[np.ndarray, np.ndarray]:
    """26 atoms in d = 64 with Zipf-like frequencies (a token alphabet): heavy duplication."""
    rng = np.random.default_rng(0)
    atoms = rng.standard_normal((26, 64))
    p = 1.0 / np.arange(1, 27)
    idx = rng.choice(26, size=N, p=p / p.sum())
    return atoms[idx], _pair_map(atoms, 1)[idx]


def _law600() -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = DiscreteResidualLaw(16, 600, seed=1).sample(N, seed=2)
    return x, y


def _mix() -> tuple[np.ndarray, np.ndarray]:
    """Half the rows unique, half from 20 atoms, shuffled."""
    rng = np.random.default_rng(3)
    unique = rng.standard_normal((N // 2, 16))
    atoms = rng.standard_normal((20, 16))
    x = np.concatenate([unique, atoms[rng.integers(20, size=N // 2)]])[rng.permutation(N)]
    return x, _pair_map(x, 4)


CASES = {"micro": _micro, "law600": _law600, "mix": _mix}


def _atoms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, first, counts = np.unique(np.concatenate([x, y], 1), axis=0, return_index=True, return_counts=True)
    return x[first], y[first], counts


@functools.cache
def _runs(case: str, path: str) -> list:
    x, y = CASES[case]()
    if path == "expanded":
        return [smoothed_mi(x, y, PARAMS, seed=s, dedupe=False) for s in SEEDS]
    if path == "dedupe":
        return [smoothed_mi(x, y, PARAMS, seed=s) for s in SEEDS]
    xa, ya, counts = _atoms(x, y)  # the reducer's way: atoms + counts, the scale of the expanded sample given
    return smoothed_mi_batch([xa] * len(SEEDS), [ya] * len(SEEDS), PARAMS, [100 + s for s in SEEDS],
                             [Scale.of(x)] * len(SEEDS), [Scale.of(y)] * len(SEEDS), counts=[counts] * len(SEEDS))


def _field(runs, tau: float, f) -> np.ndarray:
    return np.array([f(r.at(tau)) for r in runs])


def _means_agree(a: np.ndarray, b: np.ndarray, allowance: float) -> tuple[bool, str]:
    """Means over seeds equal within 4 standard errors of their difference plus `allowance`."""
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    gap, tol = abs(a.mean() - b.mean()), 4 * se + allowance
    return gap <= tol, f"{a.mean():.4f} vs {b.mean():.4f} (gap {gap:.4f}, tolerance {tol:.4f})"


@pytest.mark.parametrize("case", list(CASES))
def test_atoms_are_used_and_the_sample_size_is_kept(case: str) -> None:
    expanded, dedupe, counts = (_runs(case, p)[0] for p in ("expanded", "dedupe", "counts"))
    assert expanded.n_atoms == N and expanded.n_samples == dedupe.n_samples == counts.n_samples == N
    assert dedupe.n_atoms == counts.n_atoms < 0.9 * N
    assert dedupe.to_mi_result(0.25).bound_cap_bits == math.log2(N)


@pytest.mark.parametrize("path", ["dedupe", "counts"])
@pytest.mark.parametrize("case", list(CASES))
def test_estimate_equals_the_expanded_sample_within_monte_carlo_error(case: str, path: str) -> None:
    for ra, rb in zip(_runs(case, "expanded"), _runs(case, path)):
        for a, b in zip(ra.readings, rb.readings):
            tol = 4 * math.hypot(a.mc_se_bits, b.mc_se_bits) + 2e-3
            assert abs(a.mi_bits - b.mi_bits) <= tol, (case, path, a.tau, a.mi_bits, b.mi_bits, tol)


@pytest.mark.parametrize("path", ["dedupe", "counts"])
@pytest.mark.parametrize("case", list(CASES))
def test_half_loo_bootstrap_and_flags_follow_the_expanded_sample(case: str, path: str) -> None:
    # the N/2 reading and the bootstrap are random over seeds (which half, which resample), the leave-one-out over
    # draws: compare their means over seeds; the bootstrap spread and interval width with a 25% relative band
    # (100 replicates: ~7% sd per seed) on top of 4 standard errors
    ex, at = _runs(case, "expanded"), _runs(case, path)
    for tau in PARAMS.grid:
        checks = {
            "half": (lambda r: r.half_bits, 0.01),
            "loo": (lambda r: r.loo_bits, 0.01 + 0.02 * abs(ex[0].at(tau).loo_bits)),
        }
        if tau in PARAMS.reported:
            width = float(np.mean(_field(ex, tau, lambda r: r.ci_high - r.ci_low)))
            checks["bootstrap sd"] = (lambda r: float(np.std(r.bootstrap)), 0.25 * width / 4)
            checks["interval width"] = (lambda r: r.ci_high - r.ci_low, 0.25 * width)
        for name, (f, allowance) in checks.items():
            ok, msg = _means_agree(_field(ex, tau, f), _field(at, tau, f), allowance)
            assert ok, f"{case} {path} tau={tau} {name}: {msg}"
        flags_ex, flags_at = (max(set(fl), key=list(fl).count) for fl in
                              (_field(ex, tau, lambda r: r.flag), _field(at, tau, lambda r: r.flag)))
        assert flags_ex == flags_at, f"{case} {path} tau={tau}: most common flag {flags_ex} vs {flags_at}"


def test_reported_taus_have_an_interval_and_the_others_do_not() -> None:
    for r in _runs("law600", "dedupe")[0].readings:
        assert r.reported == (r.tau in (0.25, 0.5))
        assert math.isfinite(r.loo_bits) and min_draws_ok(r)
        if r.reported:
            assert len(r.bootstrap) == PARAMS.n_bootstrap and r.ci_low <= r.mi_bits <= r.ci_high
        else:
            assert len(r.bootstrap) == 0 and math.isnan(r.ci_low) and math.isnan(r.ci_high)


def min_draws_ok(r) -> bool:
    return PARAMS.min_draws <= r.n_draws <= PARAMS.n_draws


def test_reported_taus_join_the_grid_and_the_cache_key() -> None:
    p = SmoothedParams(tau=0.25, taus=(0.1, 0.5), reported_taus=(0.75,))
    assert p.grid == (0.1, 0.25, 0.5, 0.75) and p.reported == (0.25, 0.75)
    assert p.key_dict()["reported_taus"] == [0.25, 0.75] and p.key_dict()["taus"] == [0.1, 0.25, 0.5, 0.75]
    assert SmoothedParams.from_dict({"reported_taus": [0.5]}).reported_taus == (0.5,)
    assert p.key_dict() != SmoothedParams(tau=0.25, taus=(0.1, 0.5, 0.75)).key_dict()
    with pytest.raises(ValueError, match="reported_taus"):
        SmoothedParams(reported_taus=(-1.0,)).validate()


def test_the_weighted_scale_is_the_expanded_samples() -> None:
    x, _ = _micro()
    xa, _, counts = _atoms(*_micro())
    a, b = Scale.of(xa, counts), Scale.of(x)
    np.testing.assert_allclose(a.center, b.center, atol=1e-12)
    np.testing.assert_allclose(a.spread, b.spread, rtol=1e-10)


def test_counts_are_checked() -> None:
    xa, ya, counts = _atoms(*_micro())
    with pytest.raises(ValueError, match="counts must be >= 1"):
        smoothed_mi(xa, ya, PARAMS, counts=np.where(np.arange(len(counts)) == 3, 0, counts))
    with pytest.raises(ValueError, match=r"counts must be \(26,\)"):
        smoothed_mi(xa, ya, PARAMS, counts=counts[:-1])
    with pytest.raises(ValueError, match="not both"):
        smoothed_mi(xa, ya, PARAMS, counts=counts, weights=np.ones(len(counts)))
    with pytest.raises(ValueError, match="at least 4 paired samples"):
        smoothed_mi(xa[:2], ya[:2], PARAMS, counts=np.array([1, 2]))


def test_adaptive_draws_stop_only_when_precise_and_all_draws_without_it() -> None:
    x, y = _law600()
    adaptive = smoothed_mi(x, y, SmoothedParams(n_bootstrap=0), seed=1)
    full = smoothed_mi(x, y, SmoothedParams(n_bootstrap=0, mc_tolerance_fraction=0.0), seed=1)
    assert all(r.n_draws == 4000 for r in full.readings)
    for a, f in zip(adaptive.readings, full.readings):
        tolerance = max(0.05, 0.05 * abs(a.plugin_bits))
        assert a.n_draws == 4000 or 1.96 * a.mc_se_bits <= 0.5 * tolerance, a
        assert a.flag != "imprecise" or a.n_draws == 4000
        assert abs(a.mi_bits - f.mi_bits) <= 4 * math.hypot(a.mc_se_bits, f.mc_se_bits) + 1e-3
    assert adaptive.n_draws == max(r.n_draws for r in adaptive.readings)


def test_leave_one_out_from_sums_equals_log_sum_exp() -> None:
    # the fast path (own-excluded sums + the own atom's remaining weight) against the log-sum-exp path on every
    # row, for counts with repeats (own weight c_i - 1 > 0) and singletons (own term -inf), at a tau where some
    # rows underflow in float32 (those take the log-sum-exp path in both, the rest must agree to float32 error)
    import torch

    xa, ya, counts = _atoms(*_law600())
    zx, zy = (torch.as_tensor(Scale.of(a, counts).apply(a)) for a in (xa, ya))
    base = counts.astype(np.float64)
    loo = sm._LeaveOneOut(base, np.ones(len(base)), torch.float32, torch.device("cpu"))
    rng = np.random.default_rng(0)
    idx = torch.as_tensor(rng.integers(len(xa), size=300))
    W = torch.as_tensor(base, dtype=torch.float32)[:, None]
    for tau in (0.1, 0.25, 0.5):
        sig = tau * 4.0  # d_eff = 16
        D, G = sm._distances(zx, zy, (zx * zx).sum(1), (zy * zy).sum(1), idx, torch.randn(300, 16),
                             torch.randn(300, 16), [None, None])
        exps = (D, G, *sm._exponent_coefficients(sig, sig, torch.float32, torch.device("cpu")))
        E = torch.empty(3, 300, len(xa))
        S = sm._excluded_sums(*exps, torch.arange(300), idx, E, W, clip=False)
        fast = loo.pmi(S[:, :, 0], exps, idx)
        slow = loo._by_logsumexp(exps, idx, torch.arange(300))
        assert torch.isfinite(fast).all()
        np.testing.assert_allclose(fast.numpy(), slow.numpy(), atol=2e-3, rtol=1e-4, err_msg=f"tau={tau}")


def test_exact_duplicates_are_found_exactly() -> None:
    x, y = _mix()
    first, counts, atom = sm._exact_duplicates(x, y)
    assert counts.sum() == N and len(first) == len(_atoms(x, y)[2])
    np.testing.assert_array_equal(x[first][atom], x)
    np.testing.assert_array_equal(y[first][atom], y)
    x2 = x.copy()
    x2[np.flatnonzero(atom == atom[0])[-1], 0] += 1e-12  # one row differs from its twins in the last bits
    first2, counts2, _ = sm._exact_duplicates(x2, y)
    assert len(first2) == len(first) + (counts[atom[0]] > 1)
    rng = np.random.default_rng(0)
    assert sm._exact_duplicates(rng.standard_normal((500, 8)), rng.standard_normal((500, 8))) is None


def test_cached_distance_rows_equal_recomputed_ones() -> None:
    # 300 atoms, 900 draws: each atom drawn ~3 times, its D row cached (default budget) or recomputed (a budget
    # too small for the 300 x 300 cache); same draws, same noise, so equal to float32 rounding
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 24))
    y = x + 0.5 * rng.standard_normal((300, 24))
    assert sm._DistanceRows.worth_it(300, 900, 4, 512.0) and not sm._DistanceRows.worth_it(300, 900, 4, 0.5)
    params = SmoothedParams(n_draws=900, n_bootstrap=5, mc_tolerance_fraction=0.0)
    cached, recomputed = (smoothed_mi(x, y, replace_memory(params, mb), seed=2) for mb in (512.0, 0.5))
    for a, b in zip(cached.readings, recomputed.readings):
        assert a.mi_bits == pytest.approx(b.mi_bits, abs=1e-5) and a.loo_bits == pytest.approx(b.loo_bits, abs=1e-4)


def replace_memory(params: SmoothedParams, mb: float) -> SmoothedParams:
    from dataclasses import replace

    return replace(params, memory_mb=mb)
