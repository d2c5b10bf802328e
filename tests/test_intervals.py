"""Intervals that hold: every estimator's 95% interval contains its own estimate; on problems with known MI the
interval covers the centre of the seed-to-seed distribution of the estimate (and the truth, where the estimator
is unbiased) at about its nominal rate; and its width matches that distribution's spread, so an interval that
is 3x too narrow or too wide fails.

"Seed-to-seed": each seed draws a fresh data set AND a fresh estimator seed (split, subsets, critic), so the
spread of the estimates over seeds is what a user rerunning the whole experiment would see. Bands are stated
next to each test with the values measured when they were set.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from ie_ray.estimators import MINEParams, estimate_gaussian, fit_mine_ensemble
from ie_ray.estimators.benchmark import Task, correlated_gaussians, independent_gaussians
from ie_ray.estimators.gaussian import interval_replicates

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Seeds per coverage / width measurement.
N_SEEDS = 60
#: Interval replicates per Gaussian estimate in the coverage runs (the package default is 200).
N_REPLICATES = 50
#: Coverage is accepted from this rate on (nominal 0.95; 60 seeds give a binomial sd of ~0.03, so 0.85 is >3 sd
#: below nominal, and an interval 3x too narrow covers ~0.5).
MIN_COVERAGE = 0.85
#: Half-width / (1.96 x seed-to-seed sd) must lie in this band: 3x too narrow (~0.35) or too wide (~3) fails.
WIDTH_BAND = (0.5, 2.0)


# --- (a) the interval contains the estimate ---------------------------------------------------------------------

#: The regimes where the old bootstrap (with replacement) missed its own estimate (issue 17), as (dims, MI bits,
#: rows, shrinkage): it read 0.04 bits with [5.9, 11.7], 0.09 with [3.2, 4.8], 3.26 with [4.05, 5.20].
MISSED_BEFORE = [(60, 2.0, 100, None), (60, 2.0, 400, None), (16, 2.0, 200, 0.0)]


@pytest.mark.parametrize(("d", "mi", "n", "shrinkage"), MISSED_BEFORE)
def test_gaussian_interval_contains_its_estimate_where_the_bootstrap_missed_it(d, mi, n, shrinkage) -> None:
    x, y = correlated_gaussians(d, mi, n, seed=0)
    r = estimate_gaussian(x, y, shrinkage, n_bootstrap=200)
    assert r.ci_low <= r.mi_bits <= r.ci_high, r.to_row()
    assert r.ci_high - r.ci_low > 0.0, r.to_row()
    # the interval is about the estimate's sampling spread, not a band of several bits beside it
    assert r.ci_high - r.ci_low < 1.5, r.to_row()


@pytest.mark.parametrize("family", ["gaussian", "nonlinear", "residual"])
def test_gaussian_interval_contains_its_estimate_on_the_validation_grid(family: str) -> None:
    # The validation grid's families and its smallest and largest MI at 2000 rows, Ledoit-Wolf and plain, in the
    # dims that cost milliseconds (the high-dim regimes are the ones above).
    for d in (1, 16):
        for mi in (0.1, 8.0):
            x, y = Task(family, d, mi, seed=d).sample(2000)
            for shrinkage in (None, 0.0):
                r = estimate_gaussian(x, y, shrinkage, n_bootstrap=20, seed=d)
                assert r.ci_low <= r.mi_bits <= r.ci_high, (family, d, mi, shrinkage, r.to_row())


def test_interval_replicates_are_centred_on_the_estimate() -> None:
    x, y = correlated_gaussians(3, 1.0, 300, seed=1)
    reps = interval_replicates(x, y, 1.234, 0.0, 51, np.random.default_rng(0))
    assert np.median(reps) == pytest.approx(1.234, abs=1e-12)
    assert reps.std() > 0
    with pytest.raises(ValueError, match="at least 2 rows"):
        interval_replicates(x[:1], y[:1], 0.0, 0.0, 5, np.random.default_rng(0))


def test_every_neural_objective_interval_contains_its_estimate() -> None:
    # Five problems from independent to 10 bits in 16 dims on 400 rows, short and long training (the long one
    # memorises: held-out bounds below zero, some flagged diverged). Measured: every interval holds its value.
    problems = [correlated_gaussians(16, mi, 400, seed=i) for i, mi in enumerate((0.2, 3.0, 6.0, 10.0))]
    problems.append(independent_gaussians(16, 400, seed=9))
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    for objective in ("dv", "nwj", "smile", "mine_ema", "infonce"):
        for steps in (30, 300 if objective != "infonce" else 100):
            params = MINEParams(objective=objective, steps=steps, batch_size=64, min_width=32, marginal_shifts=64,
                                n_bootstrap=100, lr=1e-2)
            for r in fit_mine_ensemble(xs, ys, params, list(range(len(problems)))):
                assert r.ci_low <= r.mi_bits <= r.ci_high, (objective, steps, r.to_row())


# --- (b) coverage and (c) width on known MI -----------------------------------------------------------------------


@lru_cache(maxsize=None)
def _gaussian_runs(d: int, mi: float, n: int, shrinkage: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimates, ci_low, ci_high) of the Gaussian estimator over N_SEEDS fresh data sets and seeds."""
    rows = []
    for seed in range(N_SEEDS):
        x, y = correlated_gaussians(d, mi, n, seed=seed)
        r = estimate_gaussian(x, y, shrinkage, n_bootstrap=N_REPLICATES, seed=seed)
        rows.append((r.mi_bits, r.ci_low, r.ci_high))
    return tuple(np.array(col) for col in zip(*rows))


def _coverage(values: np.ndarray, low: np.ndarray, high: np.ndarray, target: float) -> float:
    return float(np.mean((low <= target) & (target <= high)))


def _width_ratio(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Mean interval half-width over 1.96 x the seed-to-seed sd of the estimate (1 for a calibrated interval)."""
    return float(np.mean((high - low) / 2) / (1.96 * values.std(ddof=1)))


#: (dims, MI bits, rows, shrinkage, unbiased). With at least 2 (dx + dy) train rows (the first four) the value is
#: the bias-corrected canonical-correlation form, unbiased, and its interval (a standard error from the rows,
#: `gaussian.standard_error_bits`) must cover the truth too. With more dims than rows (30 + 30 dims, 40 train
#: rows, as hidden states) the rule shrinks (Ledoit-Wolf): it reads ~0.1 bits for a truth of 2, and an interval
#: describes sampling spread, not bias, so there it must cover the seed-to-seed centre only. Measured coverage
#: of the centre (50 replicates): 0.95, 0.98, 0.95, 0.95, 0.95; of the truth: 0.93, 0.98, 0.95, 0.95 (the
#: plug-in with its delete-d jackknife interval had covered the centre only, 1.3 bits high at 16 dims); the old
#: bootstrap with replacement: 0.95, 0.97, 0.45, 0.00, 0.00.
COVERAGE_REGIMES = [
    (1, 0.5, 100, 0.0, True),
    (2, 1.0, 200, 0.0, True),
    (8, 2.0, 300, None, True),
    (16, 2.0, 200, 0.0, True),
    (30, 2.0, 50, None, False),
]


@pytest.mark.parametrize(("d", "mi", "n", "shrinkage", "unbiased"), COVERAGE_REGIMES)
def test_gaussian_interval_covers_the_seed_to_seed_centre(d, mi, n, shrinkage, unbiased) -> None:
    values, low, high = _gaussian_runs(d, mi, n, shrinkage)
    centre = float(np.mean(values))
    assert _coverage(values, low, high, centre) >= MIN_COVERAGE, (centre, _coverage(values, low, high, centre))
    if unbiased:
        assert _coverage(values, low, high, mi) >= MIN_COVERAGE, _coverage(values, low, high, mi)


#: Measured half-width / (1.96 sd): 1.06, 1.10, 1.04, 1.02. The dims > rows regime (1.39) is left out: its
#: spread is a few hundredths of a bit, and a 3x narrower interval there would sit at the band's edge.
@pytest.mark.parametrize(("d", "mi", "n", "shrinkage", "unbiased"), COVERAGE_REGIMES[:4])
def test_gaussian_interval_width_matches_the_seed_to_seed_spread(d, mi, n, shrinkage, unbiased) -> None:
    ratio = _width_ratio(*_gaussian_runs(d, mi, n, shrinkage))
    assert WIDTH_BAND[0] <= ratio <= WIDTH_BAND[1], ratio


def test_mine_dv_interval_coverage_and_width() -> None:
    """MINE-DV's interval resamples held-out critic scores only; the seed-to-seed spread also holds the data, the
    split and training. On a well-trained small problem (2 dims, 1 bit, 1000 rows, 300 steps) the two agree:
    measured coverage of the centre 0.97, of the truth 0.80 (the bound reads ~0.92 bits, below the truth as a
    lower bound should), half-width / (1.96 sd) 0.96. 60 estimators as one ensemble: ~4 s on one core."""
    problems = [correlated_gaussians(2, 1.0, 1000, seed=s) for s in range(N_SEEDS)]
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    params = MINEParams(steps=300, batch_size=128, lr=1e-2, min_width=32, marginal_shifts=64, n_bootstrap=100)
    fits = fit_mine_ensemble(xs, ys, params, list(range(N_SEEDS)))
    assert all(f.ok for f in fits)
    values = np.array([f.mi_bits for f in fits])
    low, high = np.array([f.ci_low for f in fits]), np.array([f.ci_high for f in fits])
    assert ((low <= values) & (values <= high)).all()
    centre = float(values.mean())
    assert 0.8 < centre <= 1.0 + 0.05, centre
    assert _coverage(values, low, high, centre) >= MIN_COVERAGE
    assert WIDTH_BAND[0] <= _width_ratio(values, low, high) <= WIDTH_BAND[1]
