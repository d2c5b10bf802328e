"""Closed-form MI of a Gaussian fit, in bits: exact for jointly Gaussian data, a baseline for anything else.

For jointly Gaussian (X, Y) with joint covariance S and diagonal blocks Sx, Sy,
I(X; Y) = 0.5 (logdet Sx + logdet Sy - logdet S) / ln 2. On other data this is the MI of the Gaussian with the
same covariance: it sees linear (second-order) dependence only, misses non-linear dependence entirely, and
non-Gaussian marginals can push it either way, so it is a reference point for the neural bounds, not a bound.

The plug-in estimate is biased upward by about dx * dy / (2 n ln 2) bits, and on LM hidden states (a few
thousand points in 576 dims, covariances near-singular: many directions carry almost no variance) the
log-determinants are dominated by the smallest eigenvalues, i.e. by noise. There it means something only with
shrinkage: S is replaced by (1 - delta) S + delta mu I (mu = mean variance), with the Ledoit-Wolf (2004)
intensity delta by default. The joint matrix is shrunk once and Sx, Sy are taken as its blocks, so that the
three determinants describe one positive-definite covariance and the estimate is never negative.

Every dim is standardised first (MI does not change, and shrinkage toward the identity then treats a dim with
huge activations like any other), and dims that are constant on the data are dropped (they carry no
information, and would make S singular).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ie_ray.estimators.diagnostics import diagnose
from ie_ray.estimators.mine import DEFAULT_HELDOUT_FRACTION, DEFAULT_N_BOOTSTRAP
from ie_ray.estimators.result import MIResult

#: A dim whose std is below this is treated as constant and dropped (the MINE standardisation's floor).
_CONSTANT_STD: float = 1e-6
#: Offset mixed into the seed of the interval's generator (as in mine.py), so it is not the split's stream.
_BOOTSTRAP_STREAM: int = 0xB007
#: Fraction of the train rows each interval replicate leaves out (the d of a delete-d jackknife, see
#: `interval_replicates`). Half (d = n/2, plain half-sampling) overstated the spread by ~1.5x at 16 + 16 dims on
#: 160 rows and understated it by ~0.75x at 60 + 60 dims on 320 rows. A quarter gave 1.0-1.2x the seed-to-seed
#: spread at 1-16 dims (80-800 rows, with and without shrinkage) and 1.2-1.8x, on the safe side, with more dims
#: than rows (tests/test_intervals.py).
_LEAVE_OUT_FRACTION: float = 0.25


@dataclass(frozen=True)
class GaussianParams:
    """The Gaussian estimator's parameters as data (the MINEParams counterpart), for `estimate(..., "gaussian")`.

    shrinkage: None = Ledoit-Wolf, 0.0 = plain sample covariance, (0, 1] = fixed intensity.
    """

    shrinkage: float | None = None
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GaussianParams:
        """Build from a config mapping (missing keys take the defaults), rejecting unknown keys by name."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown Gaussian parameter(s) {unknown}; valid parameters are {valid}")
        return cls(**dict(d))


def estimate_gaussian(
    x: np.ndarray,
    y: np.ndarray,
    shrinkage: float | None = None,
    *,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
) -> MIResult:
    """MI(X; Y) in bits of a Gaussian fit to paired samples x (N, dx), y (N, dy).

    `shrinkage`: None = Ledoit-Wolf intensity from the data, 0.0 = the plain sample covariance, a value in
    (0, 1] = that fixed intensity. The rows are split at random (from `seed`) as MINE splits them: `mi_bits` is
    the formula on the train split, `heldout_bits` the same formula, intensity included, recomputed on the
    held-out split (an independent estimate from fewer rows, not a likelihood of held-out data), and the 95%
    interval comes from `interval_replicates`: subsamples of distinct train rows, the whole estimator
    (intensity included) on each, rescaled to the spread at n_train rows and centred on `mi_bits`, so it
    always contains it. `bootstrap` holds those replicates.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (N, dx) and (N, dy) arrays with the same N, got {x.shape} and {y.shape}")
    if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1] or None (Ledoit-Wolf), got {shrinkage}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    n = x.shape[0]
    n_heldout = int(round(n * heldout_fraction))
    n_train = n - n_heldout
    if n_train < 2 or (heldout_fraction > 0 and n_heldout < 2):
        raise ValueError(
            f"{n} samples with heldout_fraction={heldout_fraction} leave {n_train} train and {n_heldout} "
            f"held-out rows; need at least 2 in each: give more samples or change heldout_fraction"
        )
    start = time.perf_counter()
    order = np.random.default_rng(seed).permutation(n)
    train, heldout = order[:n_train], order[n_train:]
    value = gaussian_mi_bits(x[train], y[train], shrinkage)
    held = gaussian_mi_bits(x[heldout], y[heldout], shrinkage) if n_heldout else math.nan
    boot = interval_replicates(x[train], y[train], value, shrinkage, n_bootstrap,
                               np.random.default_rng([seed, _BOOTSTRAP_STREAM]))
    ci_low, ci_high = np.percentile(boot, [2.5, 97.5]) if np.isfinite(boot).all() else (math.nan,) * 2
    curve = np.empty(0, dtype=np.float32)  # nothing is trained
    return MIResult(
        mi_bits=value,
        readout="gaussian",
        heldout_bits=held,
        max_train_bits=value,
        last_train_bits=value,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        bootstrap=boot,
        curve=curve,
        n_samples=n,
        n_train=n_train,
        n_heldout=n_heldout,
        seed=seed,
        wall_s=time.perf_counter() - start,
        flag=diagnose(value, curve),
        objective="gaussian",
    )


def interval_replicates(
    x: np.ndarray, y: np.ndarray, value: float, shrinkage: float | None, n_replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """Replicates of the estimate `value` on the rows x (n, dx), y (n, dy): a delete-d jackknife with random
    subsets (Shao & Wu 1989), recentred on `value`. Their 2.5-97.5 percentiles are the 95% interval.

    Why not the ordinary bootstrap (resampling n rows with replacement): a resample holds only ~0.63 n distinct
    rows, and this estimator depends on the rows' number far more than on their noise. Without shrinkage its
    upward bias (~dx dy / (2 n ln 2) bits) grows as the distinct rows get fewer; with Ledoit-Wolf, duplicated
    rows make the covariance look better determined and the intensity collapses. The resampled values then sat
    beside the estimate instead of around it: 0.04 bits with a bootstrap interval [5.9, 11.7] (60 + 60 dims,
    80 rows, Ledoit-Wolf), 3.26 bits with [4.05, 5.20] (16 + 16 dims, 160 rows, no shrinkage).

    Here each replicate is the estimator on m = n - d DISTINCT rows (d = `_LEAVE_OUT_FRACTION` x n, drawn
    without replacement). For a smooth statistic the spread of such subsets is sqrt(d / m) times the spread
    at n rows, so deviations from their median are scaled by sqrt(m / d), and added to `value`: the replicates
    describe the sampling spread of the value reported, around that value (which the interval therefore always
    contains, since the median lies between the percentiles), not the larger bias of an estimate from fewer
    rows. Downstream intervals of differences (IE) combine these replicates like any other estimator's.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"an interval needs at least 2 rows to leave some out, got {n}")
    d = min(n - 1, max(1, round(_LEAVE_OUT_FRACTION * n)))
    m = n - d
    raw = np.empty(n_replicates, dtype=np.float64)
    for b in range(n_replicates):
        rows = rng.choice(n, m, replace=False)
        raw[b] = gaussian_mi_bits(x[rows], y[rows], shrinkage)
    return value + math.sqrt(m / d) * (raw - np.median(raw))


def gaussian_mi_bits(x: np.ndarray, y: np.ndarray, shrinkage: float | None = None) -> float:
    """The closed-form MI in bits of the (shrunk) sample covariance of x (n, dx), y (n, dy); NaN when that
    covariance is singular (e.g. n <= dx + dy without shrinkage).

    With L the Cholesky factor of the joint matrix S, the top-left block of L is the factor of Sx and
    logdet S - logdet Sx = 2 sum log diag L[dx:, dx:], so one factorisation of S and one of Sy give the MI.
    """
    z = np.concatenate([x, y], axis=1).astype(np.float64)
    std = z.std(axis=0)
    keep = std >= _CONSTANT_STD
    dx = int(keep[: x.shape[1]].sum())
    z = (z[:, keep] - z[:, keep].mean(axis=0)) / std[keep]
    if dx == 0 or dx == z.shape[1]:
        return 0.0  # one side has no varying dim: nothing to be informative about
    cov = z.T @ z / z.shape[0]
    delta = ledoit_wolf_shrinkage(z, cov) if shrinkage is None else shrinkage
    mu = np.trace(cov) / cov.shape[0]
    cov *= 1.0 - delta
    cov[np.diag_indices_from(cov)] += delta * mu
    try:
        log_diag_joint = np.log(np.diagonal(np.linalg.cholesky(cov)))
        log_diag_y = np.log(np.diagonal(np.linalg.cholesky(cov[dx:, dx:])))
    except np.linalg.LinAlgError:
        return math.nan
    # 0.5 (logdet Sy - (logdet S - logdet Sx)), each logdet = 2 sum log diag of its Cholesky factor.
    return float((log_diag_y.sum() - log_diag_joint[dx:].sum()) / math.log(2))


def ledoit_wolf_shrinkage(z: np.ndarray, cov: np.ndarray | None = None) -> float:
    """Ledoit-Wolf (2004) intensity in [0, 1] for shrinking the covariance of centred rows z (n, p) toward mu I.

    With S = z'z / n, mu = tr S / p and the normalised norm |A|^2 = tr(A A') / p: d^2 = |S - mu I|^2 and
    b^2 = min(d^2, (1/n^2) sum_k |z_k z_k' - S|^2); the intensity is b^2 / d^2 (the formula of
    sklearn.covariance.ledoit_wolf_shrinkage, which is not a dependency here). The sum over k uses
    sum_k |z_k z_k' - S|^2 = sum_k |z_k|^4 / p - n |S|^2, which costs O(n p) instead of O(n p^2).
    """
    n, p = z.shape
    if cov is None:
        cov = z.T @ z / n
    mu = np.trace(cov) / p
    sq_norm = float((cov**2).sum()) / p
    d2 = sq_norm - mu**2
    b2 = (float(((z**2).sum(axis=1) ** 2).sum()) / p - n * sq_norm) / n**2
    b2 = min(max(b2, 0.0), d2)
    return b2 / d2 if d2 > 0 else 0.0
