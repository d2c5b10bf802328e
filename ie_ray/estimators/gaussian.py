"""Closed-form MI of a Gaussian fit, in bits: exact for jointly Gaussian data, a baseline for anything else.

For jointly Gaussian (X, Y) with canonical correlations rho_i (the singular values of Sx^-1/2 Sxy Sy^-1/2),
I(X; Y) = -1/2 sum_i log(1 - rho_i^2) = 1/2 (logdet Sx + logdet Sy - logdet S). On other data this is the MI of
the Gaussian with the same covariance: it sees linear (second-order) dependence only, misses non-linear
dependence entirely, and non-Gaussian marginals can push it either way, so it is a reference point for the
neural bounds, not a bound.

Three forms, recorded in the result's `form`:

- "cca_corrected" (the default wherever the rows allow it): the plug-in value from the sample canonical
  correlations minus its exact expected bias. The plug-in is biased upward by about dx dy / (2 N) nats (at
  64 + 64 dims on 640 rows it read 9.1 bits for a truth of 4), but for Gaussian rows its expectation is known exactly
  (`wishart_bias_bits`), so the corrected value is unbiased at any N > dx + dy + 1. Its spread is what limits it:
  about sqrt(dx dy / 2) / N nats from the noise alone (0.05 bit at 768 + 768 dims on 16,000 rows).
- "cca_plugin": the same without the correction (`bias_correction=False`), for comparison.
- "shrunk": the log-determinants of (1 - delta) S + delta I (S the correlation matrix), with the Ledoit-Wolf
  (2004) intensity delta, or a fixed one. Only where the rows are too few (see UNSHRUNK_MIN_ROWS_PER_DIM): any
  shrinkage of the off-diagonal block pulls every rho_i toward 0, which at strong dependence removes most of
  the signal (1 dim, 8 bits: Ledoit-Wolf read 3.4 bits on 1,000 rows, 5.1 on 10,000; 4 bits in 64 + 64 dims on
  640 rows: 0.7), so it is a last resort, biased low, that is at least finite where the sample covariance is
  singular or the unshrunk value mostly noise. benchmarks/results/gaussian_accuracy.md has the measurements.

Every dim is standardised first (MI does not change, and shrinkage toward the identity then treats a dim with
huge activations like any other), and dims that are constant on the data are dropped (they carry no
information, and would make S singular). The unshrunk forms also drop the directions of each side that carry no
variance at float64 precision (a LayerNorm output lives in a hyperplane): its numerical rank is what the bias
correction counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
from scipy import special, stats

from ie_ray.estimators.diagnostics import diagnose
from ie_ray.estimators.mine import DEFAULT_HELDOUT_FRACTION, DEFAULT_N_BOOTSTRAP
from ie_ray.estimators.result import MIResult

#: A dim whose std is below this is treated as constant and dropped (the MINE standardisation's floor).
_CONSTANT_STD: float = 1e-6
#: A direction of one side whose variance (in the side's correlation matrix) is below this fraction of the
#: largest is numerically absent and dropped from the unshrunk forms: eigh's absolute error is ~1e-16 x the
#: largest eigenvalue x a few dims, so smaller eigenvalues are rounding (float32 inputs in a hyperplane land at
#: ~1e-15), while a real direction with 1e-6 of the largest standard deviation is kept.
_RANK_TOL: float = 1e-12
#: Rows per chunk in the passes over the data (float64 copies of a chunk: 8192 x 1536 dims = 100 MB).
_CHUNK_ROWS: int = 8192
#: Offset mixed into the seed of the interval's generator (as in mine/readout.py), so it is not the split's stream.
_BOOTSTRAP_STREAM: int = 0xB007
#: Fraction of the train rows each interval replicate of the shrunk form leaves out (the d of a delete-d
#: jackknife, see `interval_replicates`). Half (d = n/2, plain half-sampling) overstated the spread by ~1.5x at
#: 16 + 16 dims on 160 rows and understated it by ~0.75x at 60 + 60 dims on 320 rows. A quarter gave 1.0-1.2x the
#: seed-to-seed spread at 1-16 dims (80-800 rows, with and without shrinkage) and 1.2-1.8x, on the safe side, with
#: more dims than rows (tests/test_intervals.py).
_LEAVE_OUT_FRACTION: float = 0.25
#: The shrinkage rule of `shrinkage=None`: the unshrunk, bias-corrected form when the rows number at least this
#: many times the dims of both sides together (dx + dy, numerical ranks), Ledoit-Wolf below. The corrected
#: form is unbiased at any N > dx + dy + 1, but its spread grows without bound as N approaches dx + dy (RMSE
#: ~0.3-0.35 bit at N = 2 (dx + dy), 0.5-0.65 at 1.5, 0.8-0.95 at 1.25, nearly whatever the dims and the MI),
#: while Ledoit-Wolf stays finite by reading ~0 whatever the truth (on the Gaussian family it kept at most a
#: fifth of 0.5-4 bits). Measured over 10-30 seeds at 8, 32 and 128 dims per side
#: (benchmarks/results/gaussian_rule.md): from 2 (dx + dy) rows the corrected form's RMSE was below
#: Ledoit-Wolf's for every true MI from 1 bit up, and from 0.5 bit up at 32 and 128 dims (at 8 dims 0.50 vs
#: 0.47 bit); Ledoit-Wolf won only near MI = 0, where reading 0 is right by luck. Below 2 the corrected form
#: loses at 0.5 bit everywhere and ties at 1 bit at 1.25. Two is where its own noise is down to ~1/3 bit.
UNSHRUNK_MIN_ROWS_PER_DIM: float = 2.0

Form = Literal["cca_corrected", "cca_plugin", "shrunk", "constant"]
#: The `shrinkage` values that are names rather than intensities.
LEDOIT_WOLF: str = "ledoit_wolf"


@dataclass(frozen=True)
class GaussianParams:
    """The Gaussian estimator's parameters as data (the MINEParams counterpart), for `estimate(..., "gaussian")`.

    shrinkage: None = the rule (unshrunk and bias-corrected when the train rows number at least
    `min_rows_per_dim` x (dx + dy), Ledoit-Wolf below); 0.0 = never shrink; "ledoit_wolf" = always Ledoit-Wolf;
    a value in (0, 1] = that fixed intensity. bias_correction: subtract the exact expected bias of the unshrunk
    plug-in (no effect on a shrunk value, whose bias has no closed form).
    """

    shrinkage: float | str | None = None
    bias_correction: bool = True
    min_rows_per_dim: float = UNSHRUNK_MIN_ROWS_PER_DIM
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


@dataclass(frozen=True)
class GaussianMIResult(MIResult):
    """An MIResult with what the closed form did: `form` ("cca_corrected", "cca_plugin", "shrunk" or "constant"
    when one side has no varying dim), `bias_correction_bits` (subtracted from the plug-in value; 0 unless
    cca_corrected), `shrinkage_intensity` (0 for the unshrunk forms), `se_bits` (the standard error behind an
    unshrunk interval; NaN for shrunk, whose interval is a jackknife) and `dims_x`, `dims_y` (the dims the
    formula used: numerical ranks for the unshrunk forms, non-constant dims for shrunk)."""

    form: str = ""
    bias_correction_bits: float = math.nan
    shrinkage_intensity: float = math.nan
    se_bits: float = math.nan
    dims_x: int = 0
    dims_y: int = 0

    def to_row(self) -> dict[str, Any]:
        return {**super().to_row(), "form": self.form, "bias_correction_bits": float(self.bias_correction_bits),
                "shrinkage_intensity": float(self.shrinkage_intensity), "se_bits": float(self.se_bits),
                "dims_x": int(self.dims_x), "dims_y": int(self.dims_y)}


@dataclass(frozen=True)
class GaussianFit:
    """The closed form on one set of rows. `bits` is the reported value (plug-in minus `bias_bits`).

    For the unshrunk forms, `rho` holds the canonical correlations, and a = (x - mean_x) @ map_x,
    b = (y - mean_y) @ map_y are the rows' canonical variates, those of the side named by `scaled_x` (x when
    True) multiplied by rho_i (`_canonical_fit` says why): all the interval needs."""

    bits: float
    form: Form
    bias_bits: float
    intensity: float
    n: int
    dims_x: int
    dims_y: int
    rho: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    mean_x: np.ndarray | None = field(default=None, repr=False)
    mean_y: np.ndarray | None = field(default=None, repr=False)
    map_x: np.ndarray | None = field(default=None, repr=False)
    map_y: np.ndarray | None = field(default=None, repr=False)
    scaled_x: bool = True

    @property
    def unshrunk(self) -> bool:
        return self.form in ("cca_corrected", "cca_plugin")


def estimate_gaussian(
    x: np.ndarray,
    y: np.ndarray,
    shrinkage: float | str | None = None,
    *,
    bias_correction: bool = True,
    min_rows_per_dim: float = UNSHRUNK_MIN_ROWS_PER_DIM,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
) -> GaussianMIResult:
    """MI(X; Y) in bits of a Gaussian fit to paired samples x (N, dx), y (N, dy).

    `shrinkage` and `bias_correction` as in GaussianParams. The rows are split at random (from `seed`) as MINE
    splits them: `mi_bits` is the closed form on the train split, `heldout_bits` the same form (the train
    split's choice of form, not the rule again) on the held-out split, an independent estimate from fewer rows
    (NaN when they are too few for an unshrunk form; pass heldout_fraction=0 to use every row).

    The 95% interval: for the unshrunk forms, mi_bits -/+ 1.96 standard errors from one more pass over the rows
    (`standard_error_bits`), and `bootstrap` holds n_bootstrap normal replicates with that spread (random order,
    for the combination of replicates downstream); for the shrunk form, the delete-d jackknife of
    `interval_replicates`, whose cost (n_bootstrap fits) is bounded because the rule only shrinks small N.
    """
    x, y = _check_pair(x, y)
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    n = x.shape[0]
    n_heldout = round(n * heldout_fraction)
    n_train = n - n_heldout
    if n_train < 2 or (heldout_fraction > 0 and n_heldout < 2):
        raise ValueError(
            f"{n} samples with heldout_fraction={heldout_fraction} leave {n_train} train and {n_heldout} "
            f"held-out rows; need at least 2 in each: give more samples or change heldout_fraction"
        )
    start = time.perf_counter()
    order = np.random.default_rng(seed).permutation(n)
    train, heldout = np.sort(order[:n_train]), np.sort(order[n_train:])
    xt, yt = x[train], y[train]
    fit = fit_gaussian(xt, yt, shrinkage, bias_correction=bias_correction, min_rows_per_dim=min_rows_per_dim)
    # The held-out value uses the train split's form: the rule on fewer rows could pick another one, and then
    # the two readings would estimate different things.
    same_form = (0.0 if fit.unshrunk else shrinkage if fit.form == "constant"
                 else LEDOIT_WOLF if shrinkage is None else shrinkage)
    held = (fit_gaussian(x[heldout], y[heldout], same_form, bias_correction=bias_correction).bits
            if n_heldout else math.nan)
    rng = np.random.default_rng([seed, _BOOTSTRAP_STREAM])
    se = math.nan
    if fit.form == "constant" or not math.isfinite(fit.bits):
        boot = np.full(n_bootstrap, fit.bits)
    elif fit.unshrunk:
        se = standard_error_bits(xt, yt, fit)
        boot = fit.bits + se * _normal_scores(n_bootstrap, rng)
    else:
        boot = interval_replicates(xt, yt, fit.bits, same_form, n_bootstrap, rng)
    if not np.isfinite(boot).all():
        ci_low = ci_high = math.nan
    elif fit.unshrunk:
        z = float(stats.norm.ppf(0.975))
        ci_low, ci_high = fit.bits - z * se, fit.bits + z * se
    else:
        ci_low, ci_high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    curve = np.empty(0, dtype=np.float32)  # nothing is trained
    return GaussianMIResult(
        mi_bits=fit.bits,
        readout="gaussian",
        heldout_bits=held,
        max_train_bits=fit.bits,
        last_train_bits=fit.bits,
        ci_low=ci_low,
        ci_high=ci_high,
        bootstrap=boot,
        curve=curve,
        n_samples=n,
        n_train=n_train,
        n_heldout=n_heldout,
        seed=seed,
        wall_s=time.perf_counter() - start,
        flag=diagnose(fit.bits, curve),
        objective="gaussian",
        form=fit.form,
        bias_correction_bits=fit.bias_bits,
        shrinkage_intensity=fit.intensity,
        se_bits=se,
        dims_x=fit.dims_x,
        dims_y=fit.dims_y,
    )


def gaussian_mi_bits(
    x: np.ndarray,
    y: np.ndarray,
    shrinkage: float | str | None = None,
    *,
    bias_correction: bool = True,
    min_rows_per_dim: float = UNSHRUNK_MIN_ROWS_PER_DIM,
) -> float:
    """The closed-form MI in bits of x (n, dx), y (n, dy) (`fit_gaussian(...).bits`): what `estimate_gaussian`
    reports on its train rows, without the interval. NaN when the chosen form is undefined (an unshrunk form
    with n <= dx + dy, or an exactly singular shrunk covariance)."""
    return fit_gaussian(x, y, shrinkage, bias_correction=bias_correction, min_rows_per_dim=min_rows_per_dim).bits


def fit_gaussian(
    x: np.ndarray,
    y: np.ndarray,
    shrinkage: float | str | None = None,
    *,
    bias_correction: bool = True,
    min_rows_per_dim: float = UNSHRUNK_MIN_ROWS_PER_DIM,
) -> GaussianFit:
    """The closed form on the rows x (n, dx), y (n, dy), its form picked by `shrinkage` (see GaussianParams).

    One pass over the rows in float64 chunks builds the covariance; everything after works on (dx + dy)^2
    numbers. The unshrunk forms whiten each side's correlation matrix by its eigendecomposition (keeping its
    numerical rank) and take the singular values of the whitened cross block as the canonical correlations
    (`_canonical_fit`);
    log(1 - rho^2) is summed with log1p, so 8 bits in one dim (1 - rho^2 = 1.5e-5) keeps ~11 digits.
    """
    x, y = _check_pair(x, y)
    if not (shrinkage is None or shrinkage == LEDOIT_WOLF
            or (isinstance(shrinkage, (int, float)) and 0.0 <= shrinkage <= 1.0)):
        raise ValueError(f"shrinkage must be in [0, 1], None (the rule) or {LEDOIT_WOLF!r}, got {shrinkage!r}")
    if min_rows_per_dim <= 0:
        raise ValueError(f"min_rows_per_dim must be > 0, got {min_rows_per_dim}")
    n, dx = x.shape[0], x.shape[1]
    if n < 2:
        raise ValueError(f"the Gaussian closed form needs at least 2 rows, got {n}")
    mean, cov = _moments(x, y)
    std = np.sqrt(np.diagonal(cov))
    keep = std >= _CONSTANT_STD
    kx, ky = int(keep[:dx].sum()), int(keep[dx:].sum())
    if kx == 0 or ky == 0:  # one side has no varying dim: nothing to be informative about
        return GaussianFit(0.0, "constant", 0.0, 0.0, n, kx, ky)
    corr = cov[np.ix_(keep, keep)] / np.outer(std[keep], std[keep])
    if shrinkage is None or shrinkage == 0.0:
        whiten_x, whiten_y = _whitener(corr[:kx, :kx]), _whitener(corr[kx:, kx:])
        rank_x, rank_y = whiten_x.shape[1], whiten_y.shape[1]
        if shrinkage == 0.0 or n >= min_rows_per_dim * (rank_x + rank_y):
            form: Form = "cca_corrected" if bias_correction else "cca_plugin"
            if n - 1 < rank_x + rank_y:  # the sample covariance is singular: no unshrunk value exists
                return GaussianFit(math.nan, form, math.nan, 0.0, n, rank_x, rank_y)
            return _canonical_fit(x.shape[1], y.shape[1], keep, std, mean, whiten_x, corr[:kx, kx:], whiten_y,
                                  form, n)
    if shrinkage is None or shrinkage == LEDOIT_WOLF:
        delta = _ledoit_wolf_from_moments(corr, _fourth_moment(x, y, mean, std, keep), n)
    else:
        delta = float(shrinkage)
    shrunk = (1.0 - delta) * corr
    shrunk[np.diag_indices_from(shrunk)] += delta  # the mean variance of a correlation matrix is 1
    try:
        log_diag_joint = np.log(np.diagonal(np.linalg.cholesky(shrunk)))
        log_diag_y = np.log(np.diagonal(np.linalg.cholesky(shrunk[kx:, kx:])))
    except np.linalg.LinAlgError:
        return GaussianFit(math.nan, "shrunk", 0.0, delta, n, kx, ky)
    # With L the Cholesky factor of the joint matrix, its top-left block is the factor of Sx, so
    # logdet S - logdet Sx = 2 sum log diag L[kx:, kx:], and MI = 1/2 (logdet Sy - (logdet S - logdet Sx)).
    return GaussianFit(float((log_diag_y.sum() - log_diag_joint[kx:].sum()) / math.log(2)), "shrunk", 0.0, delta,
                       n, kx, ky)


def _canonical_fit(dx: int, dy: int, keep: np.ndarray, std: np.ndarray, mean: np.ndarray, whiten_x: np.ndarray,
                   corr_xy: np.ndarray, whiten_y: np.ndarray, form: Form, n: int) -> GaussianFit:
    """The unshrunk forms from each side's whitener and the cross block of the correlation matrix.

    The canonical correlations are the singular values of R = Wx' Cxy Wy. They are taken as the square roots of
    the eigenvalues of the smaller of R'R and RR' instead: eigh costs a fraction of an SVD at 768 dims, and
    1 - rho^2 keeps the same absolute accuracy (~1e-16 x dims), which is what log(1 - rho^2) needs near
    rho = 1. The eigenvectors give one side's canonical variates; the other side's come as R V = rho U, without
    dividing by a rho that may be ~0, which is why one side's variates stay multiplied by rho.
    """
    r = whiten_x.T @ corr_xy @ whiten_y
    scaled_x = r.shape[0] >= r.shape[1]
    if scaled_x:
        lam, vec = np.linalg.eigh(r.T @ r)
        core_x, core_y = whiten_x @ (r @ vec), whiten_y @ vec
    else:
        lam, vec = np.linalg.eigh(r @ r.T)
        core_x, core_y = whiten_x @ vec, whiten_y @ (r.T @ vec)
    rho2 = np.clip(lam, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        plugin = float(-0.5 * np.log1p(-rho2).sum() / math.log(2))
    rank_x, rank_y = whiten_x.shape[1], whiten_y.shape[1]
    bias = wishart_bias_bits(rank_x, rank_y, n) if form == "cca_corrected" else 0.0
    keep_x, keep_y = keep[:dx], keep[dx:]
    map_x, map_y = np.zeros((dx, rho2.size)), np.zeros((dy, rho2.size))
    map_x[keep_x] = core_x / std[:dx][keep_x, None]
    map_y[keep_y] = core_y / std[dx:][keep_y, None]
    return GaussianFit(plugin - bias, form, bias, 0.0, n, rank_x, rank_y, np.sqrt(rho2), mean[:dx], mean[dx:],
                       map_x, map_y, scaled_x)


def wishart_bias_bits(dx: int, dy: int, n: int) -> float:
    """The exact expected excess of the unshrunk plug-in over the true MI, in bits, for n Gaussian rows of
    dx + dy dims (mean estimated), whatever the true covariance.

    With S the ML covariance (mean estimated), n S ~ Wishart_p(n - 1, Sigma), and
    E logdet(n S) = sum_{i=1..p} psi((n - i) / 2) + p log 2 + logdet Sigma. The plug-in MI is
    1/2 (logdet Sx + logdet Sy - logdet S), each block again Wishart with n - 1 degrees of freedom, so the
    p log 2, the log n and the logdet Sigma terms cancel against the truth and
    E[MI_hat] - MI = 1/2 [B(dx) + B(dy) - B(dx + dy)],  B(p) = sum_{i=1..p} psi((n - i) / 2)
    (= 1/2 sum_{i=1..dy} [psi((n - i)/2) - psi((n - dx - i)/2)] > 0; ~ dx dy / (2 n) nats for n >> dx + dy).
    Needs n > dx + dy (psi(0) is -inf); tests/test_gaussian_baseline.py checks it against simulated averages.
    """
    if n <= dx + dy:
        raise ValueError(f"the bias of the unshrunk plug-in is finite only for n > dx + dy, got n={n}, "
                         f"dx={dx}, dy={dy}")
    i = np.arange(1, dy + 1)
    return float(0.5 * (special.digamma((n - i) / 2) - special.digamma((n - dx - i) / 2)).sum() / math.log(2))


def null_variance_bits2(dx: int, dy: int, n: int) -> float:
    """Exact variance (bits^2) of the unshrunk plug-in when X and Y are independent Gaussians.

    Then exp(-2 MI_hat) is Wilks' Lambda(dy, n - 1 - dx, dx), a product of independent Beta((n - dx - i) / 2,
    dx / 2), i = 1..dy, so Var(MI_hat) = 1/4 sum_i [psi'((n - dx - i) / 2) - psi'((n - i) / 2)] nats^2 (its mean
    gives `wishart_bias_bits` again); ~ dx dy / (2 n^2) for n >> dx + dy.
    """
    i = np.arange(1, dy + 1)
    var = 0.25 * (special.polygamma(1, (n - dx - i) / 2) - special.polygamma(1, (n - i) / 2)).sum()
    return float(var / math.log(2) ** 2)


def standard_error_bits(x: np.ndarray, y: np.ndarray, fit: GaussianFit) -> float:
    """Standard error (bits) of an unshrunk fit's value on the rows it was fitted on, from one pass over them.

    The value is f(S) = 1/2 (logdet Sx + logdet Sy - logdet S), whose influence function at a row z is
    1/2 (q(z) - E q) with q(z) = z' Omega z, Omega = diag(Sx^-1, Sy^-1) - S^-1. In canonical variates (u_i, v_i)
    Omega is 2x2 per pair, and q = sum_i [2 rho_i u_i v_i / (1 + rho_i) - rho_i^2 (u_i - v_i)^2 / (1 - rho_i^2)]
    (written so that nothing cancels at rho_i -> 1). The variance of q over the rows, / (4 n), is the delta-method
    (sandwich) variance: for Gaussian rows it is sum_i rho_i^2 / n, and on other data it includes their fourth
    moments, which the Gaussian formula would not.

    Two corrections make it hold at small dependence, where the value is a quadratic, not linear, function of
    the noise (the delta method's blind spot): the sample rho_i^2 carry the noise's share, E sum rho_hat^2 =
    dx dy / (n - 1) under independence, which is subtracted; and the exact variance of the value under
    independence (`null_variance_bits2`) is added. Far from independence the second is negligible; at
    independence the first makes the sandwich ~0 and the second is the exact answer. The delta method is first
    order, and at N = 5 (dx + dy) it understated the seed-to-seed spread by ~10-15% (300 seeds each, 1-16 dims,
    0.5-8 bits); its part is therefore scaled by n / (n - dx - dy), the degrees-of-freedom factor of a
    regression on dx + dy inputs, which brought the ratio of standard error to spread to 0.94-1.0 there and
    coverage of the truth to 0.93-0.95 (0.85 at the edge case of 1 dim on 10 rows).
    """
    rho = fit.rho
    # an unshrunk fit carries its centring and canonical maps (GaussianFit documents which forms do)
    assert fit.mean_x is not None and fit.mean_y is not None and fit.map_x is not None and fit.map_y is not None
    coef_cross = 2.0 / (1.0 + rho)
    with np.errstate(divide="ignore"):
        coef_diff = np.where(rho < 1.0, 1.0 / (1.0 - rho**2), 0.0)
    q = np.empty(fit.n)
    for lo in range(0, fit.n, _CHUNK_ROWS):
        a = (np.asarray(x[lo: lo + _CHUNK_ROWS], dtype=np.float64) - fit.mean_x) @ fit.map_x
        b = (np.asarray(y[lo: lo + _CHUNK_ROWS], dtype=np.float64) - fit.mean_y) @ fit.map_y
        scaled, plain = (a, b) if fit.scaled_x else (b, a)  # scaled = rho_i u_i, plain = v_i
        q[lo: lo + _CHUNK_ROWS] = (scaled * plain) @ coef_cross - ((scaled - rho * plain) ** 2) @ coef_diff
    n, p = fit.n, fit.dims_x + fit.dims_y
    sandwich = float(q.var(ddof=1)) / (4.0 * n) / math.log(2) ** 2
    noise = fit.dims_x * fit.dims_y / (n - 1) / n / math.log(2) ** 2
    signal = max(sandwich - noise, 0.0) * n / (n - p)
    return math.sqrt(signal + null_variance_bits2(fit.dims_x, fit.dims_y, n))


def interval_replicates(
    x: np.ndarray, y: np.ndarray, value: float, shrinkage: float | str | None, n_replicates: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replicates of the estimate `value` on the rows x (n, dx), y (n, dy): a delete-d jackknife with random
    subsets (Shao & Wu 1989), recentred on `value`. Their 2.5-97.5 percentiles are the shrunk form's 95%
    interval. `shrinkage` should name the form (0.0, "ledoit_wolf" or an intensity), not the rule: a subset
    has fewer rows, and the rule could switch form on it.

    Why not the ordinary bootstrap (resampling n rows with replacement): a resample holds only ~0.63 n distinct
    rows, and this estimator depends on the rows' number far more than on their noise: with Ledoit-Wolf,
    duplicated rows make the covariance look better determined and the intensity collapses; without shrinkage
    the plug-in's upward bias grows as the distinct rows get fewer. The resampled values then sat beside the
    estimate instead of around it: 0.04 bits with a bootstrap interval [5.9, 11.7] (60 + 60 dims, 80 rows,
    Ledoit-Wolf), 3.26 bits with [4.05, 5.20] (16 + 16 dims, 160 rows, no shrinkage).

    Here each replicate is the estimator on m = n - d DISTINCT rows (d = `_LEAVE_OUT_FRACTION` x n, drawn
    without replacement). For a smooth statistic the spread of such subsets is sqrt(d / m) times the spread
    at n rows, so deviations from their median are scaled by sqrt(m / d), and added to `value`: the replicates
    describe the sampling spread of the value reported, around that value (which the interval therefore always
    contains, since the median lies between the percentiles). Each replicate recomputes the covariance
    (O(n p^2)), which is why the unshrunk forms use `standard_error_bits` instead.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"an interval needs at least 2 rows to leave some out, got {n}")
    d = min(n - 1, max(1, round(_LEAVE_OUT_FRACTION * n)))
    m = n - d
    raw = np.empty(n_replicates, dtype=np.float64)
    for b in range(n_replicates):
        rows = np.sort(rng.choice(n, m, replace=False))
        raw[b] = gaussian_mi_bits(x[rows], y[rows], shrinkage)
    return value + math.sqrt(m / d) * (raw - np.median(raw))


def ledoit_wolf_shrinkage(z: np.ndarray, cov: np.ndarray | None = None) -> float:
    """Ledoit-Wolf (2004) intensity in [0, 1] for shrinking the covariance of centred rows z (n, p) toward mu I.

    With S = z'z / n, mu = tr S / p and the normalised norm |A|^2 = tr(A A') / p: d^2 = |S - mu I|^2 and
    b^2 = min(d^2, (1/n^2) sum_k |z_k z_k' - S|^2); the intensity is b^2 / d^2 (the formula of
    sklearn.covariance.ledoit_wolf_shrinkage, which is not a dependency here). The sum over k uses
    sum_k |z_k z_k' - S|^2 = sum_k |z_k|^4 / p - n |S|^2, which costs O(n p) instead of O(n p^2).
    """
    n = z.shape[0]
    if cov is None:
        cov = z.T @ z / n
    return _ledoit_wolf_from_moments(cov, float(((z**2).sum(axis=1) ** 2).sum()), n)


def _ledoit_wolf_from_moments(cov: np.ndarray, fourth: float, n: int) -> float:
    """`ledoit_wolf_shrinkage` from S (p, p) and sum_k |z_k|^4 of the n centred rows behind it."""
    p = cov.shape[0]
    mu = np.trace(cov) / p
    sq_norm = float((cov**2).sum()) / p
    d2 = sq_norm - mu**2
    b2 = (fourth / p - n * sq_norm) / n**2
    b2 = min(max(b2, 0.0), d2)
    return b2 / d2 if d2 > 0 else 0.0


def _check_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (N, dx) and (N, dy) arrays with the same N, got {x.shape} and {y.shape}")
    return x, y


def _chunks(x: np.ndarray, y: np.ndarray, mean: np.ndarray | None = None):
    """float64 row chunks of [x, y], centred when `mean` is given (a float32 copy of 50,000 x 1536 is never made
    whole in float64)."""
    for lo in range(0, x.shape[0], _CHUNK_ROWS):
        z = np.concatenate([x[lo: lo + _CHUNK_ROWS], y[lo: lo + _CHUNK_ROWS]], axis=1).astype(np.float64)
        yield z if mean is None else z - mean


def _moments(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, ML covariance) of the rows [x, y] in float64, the centring done before the products (a
    one-pass sum of squares would lose the 1 - rho^2 = 1e-5 of a strongly dependent pair to cancellation)."""
    n = x.shape[0]
    mean = sum(z.sum(axis=0) for z in _chunks(x, y)) / n
    cov = np.zeros((mean.size, mean.size))
    for z in _chunks(x, y, mean):
        cov += z.T @ z
    return mean, cov / n


def _fourth_moment(x: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray, keep: np.ndarray) -> float:
    """sum_k |z_k|^4 over the standardised rows z_k (kept dims) of [x, y], for the Ledoit-Wolf intensity."""
    return float(sum((((z[:, keep] / std[keep]) ** 2).sum(axis=1) ** 2).sum() for z in _chunks(x, y, mean)))


def _whitener(corr: np.ndarray) -> np.ndarray:
    """W (p, r) with W' corr W = I_r, r the numerical rank of the correlation matrix `corr` (see _RANK_TOL)."""
    lam, vec = np.linalg.eigh(corr)
    ok = lam > _RANK_TOL * lam[-1]
    return vec[:, ok] / np.sqrt(lam[ok])


def _normal_scores(k: int, rng: np.random.Generator) -> np.ndarray:
    """k standard-normal quantiles at (i + 1/2) / k, in random order: replicates whose spread is exactly the
    normal one, yet which combine with another estimator's replicates like independent draws."""
    return rng.permutation(stats.norm.ppf((np.arange(k) + 0.5) / k))
