"""Smoothed mutual information I_sigma = MI(X + sigma Z1; Y + sigma Z2) of the empirical joint of paired states.

Why this estimator exists: block states are deterministic functions of a discrete token prefix, so the paper's
MI(block in; block out) equals the entropy of the prefixes whenever the block is injective (PAPER.md section 6).
A perfect estimator of it returns a count, and the neural bounds on 2,000 pairs at d = 576 return noise. Goldfeld
et al. (ICML 2019, arXiv 1810.05728) made the same quantity well-posed for deterministic networks by adding
isotropic Gaussian noise to both sides: the smoothed law of N paired states is a Gaussian mixture with one
component per pair, and its MI is

    I_sigma = h(X') + h(Y') - h(X', Y')          X' = X + sigma Z1, Y' = Y + sigma Z2,

estimated by Monte Carlo ("sample propagation"): draw k picks its own component i_k and noise z_k, and

    pmi_k = log p(x'_k, y'_k) - log p(x'_k) - log p(y'_k)
          = log sum_j e^{a_kj + b_kj} - log sum_j e^{a_kj} - log sum_j e^{b_kj} + log N,

with a_kj = -||x'_k - x_j||^2 / (2 sigma^2) (b likewise for y). The Gaussian normalising constants cancel
between the three entropies; I_sigma = mean_k pmi_k. It lies in [0, log2 N]: the mixture MI can never exceed
the entropy of the component index, which is why small noise reads log2 N (the entropy limit's cap).

Numerical choices (each one a reason, not a habit):
- Scale. States are standardised per dimension first (massive-activation dimensions must not set the scale),
  then sigma = tau * sqrt(d_eff) per coordinate, d_eff = number of non-constant dimensions. Two independent
  standardised states lie sqrt(2 d_eff) apart on average (E||x_i - x_j||^2 = 2 tr Cov = 2 d_eff exactly), i.e.
  sqrt(2) / tau noise standard deviations, whatever the width: one tau means the same at d = 64 and 4,096.
- One pass for the tau grid. With x'_k = x_{i_k} + sigma z_k,
  ||x'_k - x_j||^2 - sigma^2 ||z_k||^2 = D_{i_k j} + 2 sigma G_kj,  D = squared distances between states,
  G_kj = z_k . (x_{i_k} - x_j). D and G come from one matmul per side; every tau is then elementwise work.
  Exponents are taken relative to the draw's own component (a_k,i_k = 0 after the shift), so every sum holds a
  term equal to 1: no log(0), no overflow (a shifted exponent exceeds ~12 only with vanishing probability, and
  is clipped at 80 anyway).
- Weights, not copies. A weight vector w over components gives the plug-in of the reweighted mixture:
  I(w) = sum_k w_{i_k} pmi_k(w) / sum_k w_{i_k}, with sums sum_j w_j e^{...}. One matmul per tau computes it for
  many w at once: all ones (the estimate), a random half of the components (the N/2 reading behind the
  convergence flag and the 1/N extrapolation), and multinomial bootstrap counts (the interval).
- Float32 is enough: the expansion's cancellation error in D relative to sigma^2 is ~1e-7 / tau^2, independent
  of d, so it stays below 1e-3 nats for tau >= 0.01 (tested against float64).

Finite-sample bias (measured in `ie-ray validate --smoothed`): the plug-in is capped at log2 N when tau is small,
and reads high when the support is much larger than N at moderate tau. Both show as a gap between the N/2
reading and the N reading; the estimate is flagged `not_converged` when that gap exceeds
max(CONVERGENCE_MIN_BITS, CONVERGENCE_FRACTION * |I_N|), and `imprecise` when its Monte Carlo error alone
(95% half-width) exceeds that tolerance (`convergence_flag`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ie_ray.estimators.result import MIResult

LN2 = math.log(2.0)
#: The headline noise fraction (see the README's "Smoothed MI" section for the measurement behind it).
DEFAULT_TAU: float = 0.25
#: The tau grid computed in the same pass as the headline (cheap: elementwise work per tau).
DEFAULT_TAUS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0)
#: Monte Carlo draws per estimate. 4,000 (not 2,000) because at 2,000 the Monte Carlo error alone passed the 5%
#: tolerance on 4 of the default job's 48 readings at the headline tau (1-2 bit readings, se 0.03-0.05 bit).
DEFAULT_DRAWS: int = 4000
#: The estimate is `not_converged` when |I(N) - I(N/2)| exceeds max(this many bits, ...
CONVERGENCE_MIN_BITS: float = 0.05
#: ... this fraction of |I(N)|).
CONVERGENCE_FRACTION: float = 0.05
#: Shifted exponents are clipped here: exp(80) is far from float32 overflow and never reached in practice.
MAX_EXPONENT: float = 80.0
CORRECTIONS: tuple[str, ...] = ("none", "extrapolate")
#: N-long work arrays alive per Monte Carlo draw at the peak of one chunk (see `_chunk_size`).
WORK_ARRAYS_PER_DRAW: int = 14


@dataclass(frozen=True)
class Scale:
    """Per-dimension standardisation: (states - center) / spread, constant dimensions set to 0.

    The sweep computes one Scale per block side from the macro states (positions chosen by its scale rule) and
    applies it to macro and micro states alike, so the two readings of IE compare like with like.
    """

    center: np.ndarray
    spread: np.ndarray

    @classmethod
    def of(cls, states: np.ndarray) -> Scale:
        """The scale of `states` (..., d): per-dimension mean and standard deviation over all leading axes."""
        flat = np.asarray(states, dtype=np.float64).reshape(-1, np.shape(states)[-1])
        return cls(center=flat.mean(axis=0), spread=flat.std(axis=0))

    @property
    def d_eff(self) -> int:
        """Non-constant dimensions: the ones that carry distance between states."""
        return int((self.spread > 0).sum())

    def sigma(self, tau: float) -> float:
        """Per-coordinate noise std in standardised units: tau * sqrt(d_eff)."""
        return float(tau) * math.sqrt(max(1, self.d_eff))

    def apply(self, states: np.ndarray) -> np.ndarray:
        """Standardised float32 copy; constant dimensions become exactly 0 (they cannot separate states)."""
        live = self.spread > 0
        z = (np.asarray(states, dtype=np.float64) - self.center) / np.where(live, self.spread, 1.0)
        z[..., ~live] = 0.0
        return z.astype(np.float32)


@dataclass(frozen=True)
class SmoothedParams:
    """Parameters of the smoothed-MI estimator (data, validated; a config's `smoothed:` section maps onto it).

    `tau` is the headline noise fraction and is always computed; `taus` is the grid computed in the same pass.
    `n_draws` Monte Carlo draws are stratified over the components (each component in turn, in a seeded random
    order). `correction`: "none" reports the plug-in; "extrapolate" reports 2 I(N) - I(N/2) (linear in 1/N).
    `chunk_draws` bounds memory: draws are processed in chunks of this many (0 = from `memory_mb`).
    """

    tau: float = DEFAULT_TAU
    taus: tuple[float, ...] = DEFAULT_TAUS
    n_draws: int = DEFAULT_DRAWS
    n_bootstrap: int = 100
    correction: str = "none"
    convergence_min_bits: float = CONVERGENCE_MIN_BITS
    convergence_fraction: float = CONVERGENCE_FRACTION
    chunk_draws: int = 0
    memory_mb: float = 512.0
    dtype: str = "float32"
    device: str = "auto"

    @property
    def grid(self) -> tuple[float, ...]:
        """Every tau computed: the grid plus the headline, sorted, without repeats."""
        return tuple(sorted({float(t) for t in (*self.taus, self.tau)}))

    def validate(self) -> None:
        if not all(math.isfinite(t) and t > 0 for t in self.grid):
            raise ValueError(f"smoothed tau values must be finite and > 0, got tau={self.tau}, taus={list(self.taus)}")
        if self.n_draws < 10:
            raise ValueError(f"smoothed n_draws must be >= 10 Monte Carlo draws, got {self.n_draws}")
        if self.n_bootstrap < 0:
            raise ValueError(f"smoothed n_bootstrap must be >= 0, got {self.n_bootstrap}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"smoothed correction must be one of {list(CORRECTIONS)}, got {self.correction!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"smoothed dtype must be float32 or float64, got {self.dtype!r}")
        if self.chunk_draws < 0 or self.memory_mb <= 0:
            raise ValueError("smoothed chunk_draws must be >= 0 (0 = automatic) and memory_mb > 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmoothedParams:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown smoothed-MI setting(s) {unknown}; valid: {sorted(valid)}")
        values = dict(data)
        if "taus" in values:
            values["taus"] = tuple(float(t) for t in values["taus"])
        params = cls(**values)
        params.validate()
        return params

    def key_dict(self) -> dict[str, Any]:
        """What changes a number (cache key): everything but where and in what chunks it runs."""
        d = asdict(self)
        for k in ("chunk_draws", "memory_mb", "device"):
            d.pop(k)
        d["taus"] = list(self.grid)
        return d


@dataclass(frozen=True)
class SmoothedReading:
    """I_sigma at one tau: the estimate, its N/2 reading, interval and flag (bits)."""

    tau: float
    sigma: float
    mi_bits: float
    plugin_bits: float
    half_bits: float
    mc_se_bits: float
    ci_low: float
    ci_high: float
    bootstrap: np.ndarray = field(repr=False)
    flag: str = "ok"
    loo_bits: float = math.nan


@dataclass(frozen=True)
class SmoothedResult:
    """Every tau of one (x, y) problem, from one pass."""

    readings: tuple[SmoothedReading, ...]
    n_samples: int
    n_draws: int
    d_x: int
    d_y: int
    seed: int
    wall_s: float

    def at(self, tau: float) -> SmoothedReading:
        for r in self.readings:
            if math.isclose(r.tau, tau, rel_tol=1e-9):
                return r
        raise KeyError(f"tau {tau} was not computed; computed: {[r.tau for r in self.readings]}")

    def to_mi_result(self, tau: float) -> MIResult:
        """The reading at `tau` as the package's common MIResult (readout "smoothed", no training curve)."""
        r = self.at(tau)
        return MIResult(
            mi_bits=r.mi_bits, readout="smoothed", heldout_bits=r.mi_bits, max_train_bits=math.nan,
            last_train_bits=math.nan, ci_low=r.ci_low, ci_high=r.ci_high, bootstrap=r.bootstrap,
            curve=np.zeros(0), n_samples=self.n_samples, n_train=self.n_samples, n_heldout=0, seed=self.seed,
            wall_s=self.wall_s, flag=r.flag, objective="smoothed", bound_cap_bits=math.log2(self.n_samples),
            tau=r.tau, half_sample_bits=r.half_bits, mc_se_bits=r.mc_se_bits,
        )


def convergence_flag(full_bits: float, half_bits: float, min_bits: float = CONVERGENCE_MIN_BITS,
                     fraction: float = CONVERGENCE_FRACTION, mc_se_bits: float = 0.0,
                     loo_bits: float | None = None) -> str:
    """The flag of one reading, with tolerance = max(min_bits, fraction * |I(N)|):

    - "nan": the reading is not finite;
    - "not_converged": the N/2 and N readings differ by more than the tolerance: the plug-in still moves with
      the sample size (capped at log2 N, or a support much larger than N). More samples are the remedy;
    - "undersampled": the plug-in and the leave-one-out reading differ by more than the tolerance: at this
      noise most samples are islands that no other sample overlaps, so the sample does not determine the
      smoothed law (the plug-in reads high, leave-one-out low, the truth lies between: measured in
      `ie-ray validate --smoothed`). More samples or a larger tau are the remedy;
    - "imprecise": the 95% Monte Carlo half-width 1.96 * mc_se exceeds the tolerance: the reading is within the
      tolerance of its own expectation only by luck. More draws (`n_draws`) are the remedy;
    - "ok" otherwise."""
    if not (math.isfinite(full_bits) and math.isfinite(half_bits) and math.isfinite(mc_se_bits)):
        return "nan"
    tolerance = max(min_bits, fraction * abs(full_bits))
    if abs(full_bits - half_bits) > tolerance:
        return "not_converged"
    if loo_bits is not None and abs(full_bits - loo_bits) > tolerance:
        return "undersampled"
    return "imprecise" if 1.96 * mc_se_bits > tolerance else "ok"


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _chunk_size(params: SmoothedParams, n: int, n_columns: int, itemsize: int) -> int:
    """Draws per chunk so that the (chunk x N) work arrays and the (chunk x columns) sums fit in `memory_mb`:
    bounded memory at N = 100,000 whatever the number of draws. Per draw: the (2, N) matmul rows, D and G of
    each side (4), the exponents, exponentials and their product for one tau (5), the leave-one-out
    temporaries (3)."""
    if params.chunk_draws:
        return params.chunk_draws
    per_draw = (WORK_ARRAYS_PER_DRAW * n + 4 * n_columns) * itemsize
    return int(max(1, min(params.n_draws, params.memory_mb * 2**20 // per_draw)))


def smoothed_mi(
    x: np.ndarray,
    y: np.ndarray,
    params: SmoothedParams | None = None,
    seed: int = 0,
    scale_x: Scale | None = None,
    scale_y: Scale | None = None,
    weights: np.ndarray | None = None,
) -> SmoothedResult:
    """I_sigma(X; Y) in bits at every tau of `params.grid`, from paired states x (N, dx), y (N, dy).

    `scale_x`/`scale_y` standardise each side (None = the sample's own per-dimension scale); pass a shared scale
    to compare several problems at one noise level (the sweep's macro and micro readings of a block).
    `weights` (N,) > 0 make the mixture a weighted one (e.g. K known atoms with their probabilities): used for
    exact values of known laws; draws are then allocated to components in proportion to the weights.
    """
    params = params or SmoothedParams()
    params.validate()
    return smoothed_mi_batch([x], [y], params, [seed], [scale_x], [scale_y], weights=weights)[0]


def _check_pair(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Paired, 2-D, finite states, or a ValueError naming the problem (and the rows) and the fix."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"smoothed_mi{where} needs paired 2-D states x (N, dx), y (N, dy); got {x.shape} and "
                         f"{y.shape}")
    if len(x) < 4:
        raise ValueError(f"smoothed_mi{where} needs at least 4 paired samples, got {len(x)}")
    for name, a in (("x", x), ("y", y)):
        if not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a).all(axis=1))[:5]
            raise ValueError(f"smoothed_mi{where}: {name} has NaN/inf in rows {bad.tolist()}...; drop or repair "
                             "them first (a NaN state usually means the model overflowed in its dtype)")
    return x, y


def smoothed_mi_batch(
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    params: SmoothedParams,
    seeds: Sequence[int],
    scales_x: Sequence[Scale | None] | None = None,
    scales_y: Sequence[Scale | None] | None = None,
    weights: np.ndarray | None = None,
) -> list[SmoothedResult]:
    """Many problems in one call (one Ray task, one device, one set of threads): the reducer's batched path.

    Each problem is computed exactly as `smoothed_mi` would compute it alone (same seed, same draws), so batching
    never changes a number; the batch only saves task overhead and device set-up.
    """
    import torch

    params.validate()
    device = _device(params.device)
    dtype = torch.float32 if params.dtype == "float32" else torch.float64
    scales_x = list(scales_x) if scales_x is not None else [None] * len(xs)
    scales_y = list(scales_y) if scales_y is not None else [None] * len(xs)
    if not len(xs) == len(ys) == len(seeds) == len(scales_x) == len(scales_y):
        raise ValueError(f"smoothed_mi_batch: {len(xs)} x, {len(ys)} y, {len(seeds)} seeds, {len(scales_x)} and "
                         f"{len(scales_y)} scales; give one of each per problem")
    out = []
    for k, (x, y, seed, sx, sy) in enumerate(zip(xs, ys, seeds, scales_x, scales_y)):
        x, y = _check_pair(x, y, f" (problem {k})" if len(xs) > 1 else "")
        start = time.perf_counter()
        sx = sx if sx is not None else Scale.of(x)
        sy = sy if sy is not None else Scale.of(y)
        readings = _one_problem(sx.apply(x), sy.apply(y), sx, sy, params, int(seed), weights, device, dtype)
        out.append(SmoothedResult(readings, len(x), params.n_draws, x.shape[1], y.shape[1], int(seed),
                                  time.perf_counter() - start))
    return out


def _weight_columns(n: int, rng: np.random.Generator, n_bootstrap: int, base: np.ndarray) -> np.ndarray:
    """Columns of component weights: [the estimate, a random half, bootstrap resamples...] (N, 2 + B)."""
    half = np.zeros(n)
    half[rng.permutation(n)[: n // 2]] = 1.0
    cols = [base, base * half]
    p = base / base.sum()
    for _ in range(n_bootstrap):
        cols.append(rng.multinomial(n, p).astype(np.float64))
    return np.stack(cols, axis=1)


def _draw_components(n: int, n_draws: int, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """Stratified draws: every component in turn (seeded order), or in proportion to its weight."""
    if np.all(base == base[0]):
        order = rng.permutation(n)
        return np.resize(order, n_draws)
    counts = np.floor(base / base.sum() * n_draws).astype(np.int64)
    rest = n_draws - counts.sum()
    if rest > 0:
        counts[rng.choice(n, size=rest, replace=True, p=base / base.sum())] += 1
    return rng.permutation(np.repeat(np.arange(n), counts))


def _one_problem(zx: np.ndarray, zy: np.ndarray, sx: Scale, sy: Scale, params: SmoothedParams, seed: int,
                 weights: np.ndarray | None, device, dtype) -> tuple[SmoothedReading, ...]:
    import torch

    n = len(zx)
    rng = np.random.default_rng(seed)
    base = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if base.shape != (n,) or not (base > 0).all():
        raise ValueError(f"weights must be ({n},) and > 0, got shape {base.shape}")
    own = _draw_components(n, params.n_draws, rng, base)
    noise_seed = int(rng.integers(2**63 - 1))
    W = _weight_columns(n, rng, params.n_bootstrap, base)
    taus = params.grid
    sig_x = [sx.sigma(t) for t in taus]
    sig_y = [sy.sigma(t) for t in taus]

    X = torch.as_tensor(zx, dtype=dtype, device=device)
    Y = torch.as_tensor(zy, dtype=dtype, device=device)
    Wt = torch.as_tensor(W, dtype=dtype, device=device)
    log_total = torch.log(Wt.sum(0))  # (C,)
    sqx, sqy = (X * X).sum(1), (Y * Y).sum(1)
    n_cols = Wt.shape[1]
    num = torch.zeros(len(taus), n_cols, dtype=torch.float64, device=device)
    den = torch.zeros(n_cols, dtype=torch.float64, device=device)
    pmi_sq = torch.zeros(len(taus), dtype=torch.float64, device=device)
    loo_sum = torch.zeros(len(taus), dtype=torch.float64, device=device)
    log_base = None if weights is None else torch.log(torch.as_tensor(base, dtype=dtype, device=device))
    base_t = torch.as_tensor(base, dtype=torch.float64, device=device)
    chunk = _chunk_size(params, n, n_cols, 4 if dtype == torch.float32 else 8)
    draw_weight = Wt / torch.as_tensor(base, dtype=dtype, device=device)[:, None]
    for start in range(0, len(own), chunk):
        idx = torch.as_tensor(own[start : start + chunk], device=device)
        m = len(idx)
        nx = _noise(noise_seed, 0, start, m, X.shape[1]).to(device=device, dtype=dtype)
        ny = _noise(noise_seed, 1, start, m, Y.shape[1]).to(device=device, dtype=dtype)
        Dx, Gx = _distances(X, sqx, idx, nx)
        Dy, Gy = _distances(Y, sqy, idx, ny)
        # (m, C): how much each draw counts in each column. Draws are allocated in proportion to `base`, so a
        # column's weights enter as their ratio to it (1 for the estimate, 0/1 for the half, counts/base for a
        # bootstrap resample): importance weights, not the column's weights themselves.
        w_own = draw_weight[idx]
        den += w_own.sum(0).to(torch.float64)
        rows = torch.arange(m, device=device)
        log_rest = torch.log(base_t.sum() - base_t[idx])  # (m,): normaliser without the own component
        for t in range(len(taus)):
            lx = _shifted_exponent(Dx, Gx, sig_x[t])
            ly = _shifted_exponent(Dy, Gy, sig_y[t])
            ex, ey = torch.exp(lx), torch.exp(ly)
            s_x, s_y, s_xy = ex @ Wt, ey @ Wt, (ex * ey) @ Wt
            pmi = torch.log(s_xy) - torch.log(s_x) - torch.log(s_y) + log_total
            pmi = torch.where(w_own > 0, pmi, torch.zeros_like(pmi))  # a draw of a resampled-away component
            num[t] += (w_own * pmi).sum(0).to(torch.float64)
            pmi_sq[t] += (pmi[:, 0].to(torch.float64) ** 2).sum()
            loo_sum[t] += _leave_one_out_pmi(lx, ly, log_base, rows, idx, log_rest).to(torch.float64).sum()
    values = (num / den).cpu().numpy() / LN2  # (T, C) bits
    mean_sq = pmi_sq.cpu().numpy() / (len(own) * LN2**2)
    mc_se = np.sqrt(np.maximum(mean_sq - values[:, 0] ** 2, 0.0) / len(own))
    loo = loo_sum.cpu().numpy() / (len(own) * LN2)
    return tuple(_reading(params, tau, sx_, values[t], mc_se[t], float(loo[t]), rng)
                 for t, (tau, sx_) in enumerate(zip(taus, sig_x)))


def _leave_one_out_pmi(lx, ly, log_base, rows, idx, log_rest):
    """Per draw: log p_-i(x', y') - log p_-i(x') - log p_-i(y'), the densities of the mixture WITHOUT the draw's
    own component i (log-sum-exp with the own entry at -inf, so an isolated draw gives a very negative term,
    not a log of 0). Where the plug-in reads high because every sample is its own island at this noise, this
    reads low: the gap between the two says whether N samples pin the smoothed law down."""
    import torch

    if log_base is None:  # equal weights: nothing to add
        lx, ly = lx.clone(), ly.clone()
        lx[rows, idx] = -torch.inf
        ly[rows, idx] = -torch.inf
        joint = torch.logsumexp(lx + ly, 1)
    else:
        lx, ly = lx + log_base, ly + log_base
        lx[rows, idx] = -torch.inf
        ly[rows, idx] = -torch.inf
        joint = torch.logsumexp(lx + ly - log_base, 1)
    return joint - torch.logsumexp(lx, 1) - torch.logsumexp(ly, 1) + log_rest


#: Noise is generated in blocks of this many draws, each from its own seeded generator, so the noise of draw k
#: does not depend on how the draws are chunked (memory_mb, chunk_draws, N) or on the device.
NOISE_BLOCK: int = 256


def _noise(seed: int, side: int, start: int, m: int, d: int):
    """Standard normal noise (m, d) of draws start .. start + m - 1 for one side (0 = x, 1 = y), float64 on
    the CPU: a pure function of (seed, side, draw index)."""
    import torch

    first, last = start // NOISE_BLOCK, (start + m - 1) // NOISE_BLOCK
    blocks = []
    for b in range(first, last + 1):
        block_seed = int(np.random.SeedSequence([seed, side, b]).generate_state(1, dtype=np.uint64)[0] >> 1)
        gen = torch.Generator(device="cpu").manual_seed(block_seed)
        blocks.append(torch.randn(NOISE_BLOCK, d, generator=gen, dtype=torch.float64))
    noise = torch.cat(blocks)
    offset = start - first * NOISE_BLOCK
    return noise[offset : offset + m]


def _distances(A, sq, idx, noise):
    """D[k, j] = ||a_{i_k} - a_j||^2 and G[k, j] = z_k . (a_{i_k} - a_j), exactly 0 at j = i_k."""
    import torch

    own = A[idx]
    prod = torch.cat([own, noise]) @ A.T  # one matmul for both: (2m, N)
    m = len(idx)
    D = (sq[idx, None] + sq[None, :] - 2.0 * prod[:m]).clamp_min_(0.0)
    G = (noise * own).sum(1, keepdim=True) - prod[m:]
    rows = torch.arange(m, device=A.device)
    D[rows, idx] = 0.0
    G[rows, idx] = 0.0
    return D, G


def _shifted_exponent(D, G, sigma: float):
    """a_kj - a_k,own = -(D + 2 sigma G) / (2 sigma^2): 0 at the draw's own component, clipped at MAX_EXPONENT."""
    return (-(D + (2.0 * sigma) * G) / (2.0 * sigma * sigma)).clamp_max_(MAX_EXPONENT)


def _reading(params: SmoothedParams, tau: float, sigma: float, cols: np.ndarray, mc_se: float, loo: float,
             rng: np.random.Generator) -> SmoothedReading:
    """The estimate at one tau from its weight columns: plug-in, N/2, correction, interval, flag.

    The bootstrap replicates are recentred on the estimate: resampling with replacement duplicates components,
    which lowers a mixture's MI by itself, so the replicates' mean is shifted; their spread is the sampling
    uncertainty. Monte Carlo error is added to each replicate as independent Gaussian noise, so the interval
    carries both, and IE built from replicate differences inherits both.
    """
    plugin, half = float(cols[0]), float(cols[1])
    value = plugin if params.correction == "none" else 2.0 * plugin - half
    boot = cols[2:]
    if boot.size:
        # the extrapolated value 2 I(N) - I(N/2) has about twice the plug-in's spread (measured: the plug-in's
        # spread alone covered 0.8x), so its replicates are widened by 2: approximate, on the safe side
        widen = 1.0 if params.correction == "none" else 2.0
        reps = value + widen * (boot - boot.mean()) + mc_se * rng.standard_normal(boot.size)
    else:
        reps = np.full(1, value)
    low, high = np.quantile(reps, [0.025, 0.975])
    flag = convergence_flag(plugin, half, params.convergence_min_bits, params.convergence_fraction, mc_se, loo)
    return SmoothedReading(tau=float(tau), sigma=float(sigma), mi_bits=value, plugin_bits=plugin, half_bits=half,
                           mc_se_bits=float(mc_se), ci_low=float(min(low, value)), ci_high=float(max(high, value)),
                           bootstrap=reps, flag=flag, loo_bits=loo)
