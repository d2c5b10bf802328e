"""MINE-style neural MI estimators, in bits, fitted as an ensemble of independent estimators.

The paper's bound is Donsker-Varadhan (DV), for a critic T and n pairs:
I(X; Y) >= mean_i T(x_i, y_i) - log( (1/n) sum_i exp T(x_i, y_pi(i)) ), maximised over T (Belghazi et al.
2018), multiplied by log2(e) to get bits as the paper does. `MINEParams.objective` swaps in the other bounds of
`bounds.py` (NWJ, InfoNCE, SMILE, MINE's moving-average DV) on the same critic, training loop and readout, so
that they can be compared on equal terms; each is read out on the held-out split with its own bound (SMILE and
the moving-average variant only change the training gradient, so they read out plain DV). `MINEParams.critic`
swaps the critic the same way: the paper's joint MLP, a separable f(x)^T g(y) or a hybrid of both (critic.py).

Differences from the reference code (PAPER.md sections 2 and 5), each a fix, not a change of method:
- the log-mean-exp term uses logsumexp (the reference's naive form overflows to inf/NaN);
- gradient clipping happens after backward (the reference clipped before it, so it never clipped), per
  estimator, so that one estimator's large gradient never rescales another's;
- the default readout is the DV bound of the final critic on held-out pairs; the paper's max over training
  steps of the training-batch bound is kept as `readout="max"` (it starts at -inf, so a run that never goes
  positive returns its best negative value instead of crashing as the reference did);
- a NaN/inf in one estimator freezes and flags that estimator only; the others keep training.

Everything random is drawn, per estimator, from a `torch.Generator` seeded with that estimator's seed
(initialisation, train/held-out split, minibatches, marginal permutations, held-out marginals and InfoNCE
chunks) and a numpy generator from the same seed (bootstrap). Together with per-slice computation this makes
estimator i give the same value whether it is fitted alone or in an ensemble, and the same value twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

import numpy as np
import torch

from ie_ray.estimators.bounds import (
    EMADenominator,
    dv_bound_bits,
    dv_bound_bits_np,
    infonce_bound_bits,
    infonce_row_terms_bits,
    js_objective_bits,
    mean_np,
    nwj_bound_bits,
    nwj_bound_bits_np,
    smile_objective_bits,
)
from ie_ray.estimators.critic import (
    EnsembleCritic,
    EnsembleFunnelCritic,
    EnsembleHybridCritic,
    EnsembleSeparableCritic,
    funnel_widths,
)
from ie_ray.estimators.diagnostics import diagnose
from ie_ray.estimators.result import MIResult, Readout

Objective = Literal["dv", "nwj", "infonce", "smile", "mine_ema", "js"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
CriticKind = Literal["joint", "separable", "hybrid"]
CRITICS: tuple[str, ...] = get_args(CriticKind)

# Defaults, tuned on correlated Gaussians with closed-form MI (d = 1..16, 2-4 bits, 4,000-8,000 pairs: held-out
# estimates land at 0.85-1.02 x truth, typically ~0.94) and on 8-dim Gaussians embedded in 576 dims (n = 2,000),
# and sized so that one estimate on 2,000 pairs of 576-dim hidden states costs ~5 s on a 2-core CPU.
# The paper's settings are MINEParams.paper().

#: Optimiser steps. Each step sees one minibatch. 300 left the d=16 Gaussians at 0.8 x truth; beyond ~600 the
#: held-out value no longer improves (the critic starts to memorise the training split).
DEFAULT_STEPS: int = 500
#: Pairs per minibatch, drawn without replacement from the training split. None = full batch (the paper).
DEFAULT_BATCH_SIZE: int | None = 256
#: Peak Adam learning rate, reached after the warmup. 1e-3 under-trained in 300-500 steps; 1e-2 diverged at times.
DEFAULT_LR: float = 3e-3
#: Learning rate at the last step of the polynomial decay.
DEFAULT_LR_END: float = 1e-7
#: Linear warmup steps (as the paper's `get_polynomial_decay_schedule_with_warmup`).
DEFAULT_WARMUP_STEPS: int = 5
#: Exponent of the polynomial decay (the paper's 3: most of the training happens early, then it settles).
DEFAULT_POWER: float = 3.0
#: Max L2 norm of one estimator's gradient (all its parameters together). None = no clipping.
DEFAULT_GRAD_CLIP: float | None = 1.0
#: Fraction of the pairs kept out of training to read the bound off without memorisation bias.
DEFAULT_HELDOUT_FRACTION: float = 0.2
#: "heldout" (final critic on held-out pairs) or "max" (paper: max over steps of the training-batch bound).
DEFAULT_READOUT: Readout = "heldout"
#: Standardise each dimension with train-split mean/std; MI is invariant to it and optimisation likes it.
DEFAULT_STANDARDIZE: bool = True
#: Linear layers in the funnel critic. The paper has 10; in a few hundred steps the deep funnel trained far more
#: slowly (10 layers reached 0.03-0.3 x truth on 16-dim Gaussians, 3 layers 0.75-0.9, 2 layers 0.9-1.0), and on
#: 576-dim states it gave the same held-out values as 2 layers at the same cost. So: one wide hidden layer.
DEFAULT_N_LAYERS: int = 2
#: Floor of the funnel's halving widths; the paper's net is min_width=1 (it ends ... 12 -> 6 -> 3 -> 1). With
#: 2 layers the hidden width is max(d_in // 2, 512): wide enough to fit the bilinear critic of 16-dim Gaussians,
#: and no extra cost for hidden states (576 = 1152 // 2 already).
DEFAULT_MIN_WIDTH: int = 512
#: Use only the first max_dims dims of x and of y (the paper's 768-dim "segment 0"). None = all dims.
DEFAULT_MAX_DIMS: int | None = None
#: Held-out marginal pairs come from this many cyclic shifts of a random ordering (n_heldout pairs each);
#: capped at n_heldout - 1, i.e. every off-diagonal pair for held-out sets up to 513 rows. Few shifts starve
#: the log-mean-exp term: on SmolLM2 states (block 12, position 7, 400 held-out rows, entropy ceiling 10.96
#: bits) 8 shifts read 13.3 bits [11.3, 20.5], all 399 shifts 9.7 bits [8.1, 12.5], at the same cost, since
#: the critic's first layer is computed once per x and per y.
DEFAULT_MARGINAL_SHIFTS: int = 512
#: Bootstrap replicates for the 95% interval of the held-out estimate.
DEFAULT_N_BOOTSTRAP: int = 200
#: torch intra-op threads while fitting. None = leave torch's setting alone.
DEFAULT_THREADS: int | None = None
#: The bound the critic is trained on (see bounds.py). "dv" is the paper's; the others are for comparison. On
#: correlated Gaussians (d = 8, 2.5 bits, 4,000 pairs, all other defaults) all five read 2.33-2.51 bits on two
#: draws (0.93-1.00 x truth) and |MI| < 0.03 on independent ones, at ~5 s per estimate on one CPU core, except
#: "infonce": it scores all B^2 pairs of each batch, ~B/2 times a DV step (100-190 s per estimate at B = 256),
#: and it can never exceed log2(B) bits (see MIResult.bound_cap_bits), so it needs B >> 2^MI.
DEFAULT_OBJECTIVE: Objective = "dv"
#: SMILE's clip of the marginal scores (nats) inside the log-mean-exp; Song & Ermon's tau = 5. Large tau -> DV.
DEFAULT_SMILE_TAU: float = 5.0
#: Rate of MINE's moving average of E_marg[e^T] (Belghazi et al.'s alpha): ~1/rate steps of memory.
DEFAULT_EMA_RATE: float = 0.01
#: Noise-regularised MI: add isotropic Gaussian noise with std = noise_fraction x the RMS scale of each variable
#: (train split) to x and to y before fitting. Block states are deterministic functions of discrete tokens, so
#: MI(in; out) is the entropy of the inputs whenever the block is injective; with noise the quantity becomes
#: MI(in + N; out + N'), finite and sensitive to the geometry of the map. 0 = off (the plain quantity).
DEFAULT_NOISE_FRACTION: float = 0.0

#: The critic's form (critic.py): "joint" (the paper's MLP on concat[x; y]), "separable" (f(x)^T g(y)) or
#: "hybrid" (separable + a narrow joint MLP). The joint critic stays the default so that cached estimates and
#: published numbers keep their meaning; see benchmarks/results/critics.md for the comparison.
DEFAULT_CRITIC: CriticKind = "joint"
#: k, the dimension of the shared space of f(x) and g(y) (separable and hybrid critics). With linear f, g on
#: 64-dim Gaussians (N = 2,000, early stopping), k = 64 read 0.12/0.38/1.41 bits for 1/2/4, k = 16 0.06/0.20/0.53;
#: k = 128 (MLP f, g) was no better than 64 and 40% slower.
DEFAULT_EMBED_DIM: int = 64
#: Linear layers of f and of g; 1 makes them linear maps, i.e. a rank-k bilinear critic (x A)^T (y B). At
#: d = 64 linear f, g had a lower mean relative error than 2-layer MLPs of width 256 on all three task families
#: (0.78 vs 0.96 Gaussian, 0.73 vs 0.78 low-rank, 0.93 vs 1.00 non-linear) at a third of the cost; at d = 256
#: they read -0.16 to +0.03 bits, the MLPs -0.09 to -0.31.
DEFAULT_EMBED_LAYERS: int = 1
#: Hidden width of f and g when embed_layers > 1 (256 read more than 64 at d = 64, less at d = 256).
DEFAULT_EMBED_WIDTH: int = 256
#: Hidden width of the hybrid critic's joint MLP on concat[x; y] (n_layers Linear layers, as the joint critic):
#: small, so that the separable term carries the bilinear part and the joint one only the rest.
DEFAULT_JOINT_WIDTH: int = 64

#: Early stopping (off by default): the fraction of the TRAINING split held back to choose the checkpoint. Every
#: EARLY_STOP_EVERY steps the critic's bound is read on that slice, and each estimator ends with its best
#: checkpoint; the held-out split stays unseen, so the readout is not biased by the choice. Why: at d >= 256
#: with 2,000 pairs the critic memorises the training pairs within ~100 steps and its final held-out bound
#: falls far below zero (results/validation); the best checkpoint is the one from before that.
DEFAULT_EARLY_STOP_FRACTION: float = 0.0
#: Steps between two readings of the early-stopping slice (and the last step is always read).
EARLY_STOP_EVERY: int = 20
#: Marginal shifts when reading the early-stopping slice: a cheap, noisier version of the held-out readout.
EARLY_STOP_SHIFTS: int = 32
#: Parameters that joined MINEParams after estimates were cached: left out of cache keys while they are at
#: their off value, so adding an option never invalidates finished estimates that did not use it.
_KEY_OMITTED_AT_DEFAULT: tuple[str, ...] = (
    "early_stop_fraction", "critic", "embed_dim", "embed_layers", "embed_width", "joint_width",
)

#: Working-set budget of one ensemble chunk (see `ensemble_chunk_size`): a memory guard, not a cache size.
#: Cache-sized chunks (16 MB, 3 critics) were measured slower than one whole ensemble on the 2-core EPYC
#: (benchmarks/results/estimators.md: 60.3 s vs 49.0 s for 32 paper-preset fits), so chunks only keep a very
#: large ensemble (hundreds of 768-dim critics) from exhausting memory.
ENSEMBLE_CHUNK_BYTES: int = 1 << 30
#: Rows (x estimators) per chunk when scoring held-out pairs, bounding memory on large held-out splits.
_SCORE_CHUNK_ELEMENTS: int = 1 << 24
#: Offset mixed into the seed of the bootstrap generator so it is not the torch stream of the same seed.
_BOOTSTRAP_STREAM: int = 0xB007


@dataclass(frozen=True)
class MINEParams:
    """Every hyper-parameter of the MINE estimators; see the module-level DEFAULT_* for what each means."""

    steps: int = DEFAULT_STEPS
    batch_size: int | None = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    lr_end: float = DEFAULT_LR_END
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    power: float = DEFAULT_POWER
    grad_clip: float | None = DEFAULT_GRAD_CLIP
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION
    readout: Readout = DEFAULT_READOUT
    standardize: bool = DEFAULT_STANDARDIZE
    n_layers: int = DEFAULT_N_LAYERS
    min_width: int = DEFAULT_MIN_WIDTH
    max_dims: int | None = DEFAULT_MAX_DIMS
    marginal_shifts: int = DEFAULT_MARGINAL_SHIFTS
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    threads: int | None = DEFAULT_THREADS
    objective: Objective = DEFAULT_OBJECTIVE
    smile_tau: float = DEFAULT_SMILE_TAU
    ema_rate: float = DEFAULT_EMA_RATE
    noise_fraction: float = DEFAULT_NOISE_FRACTION
    early_stop_fraction: float = DEFAULT_EARLY_STOP_FRACTION
    critic: CriticKind = DEFAULT_CRITIC
    embed_dim: int = DEFAULT_EMBED_DIM
    embed_layers: int = DEFAULT_EMBED_LAYERS
    embed_width: int = DEFAULT_EMBED_WIDTH
    joint_width: int = DEFAULT_JOINT_WIDTH

    @classmethod
    def paper(cls) -> MINEParams:
        """The paper's settings: full batch, 10k steps, lr 1e-4 -> 1e-8, max readout on the training set,
        first 768 dims, raw (unstandardised) states, the exact 1536 -> 768 -> ... -> 3 -> 1 funnel.

        grad_clip is None because the reference code's clipping ran before backward and so never clipped:
        the paper's numbers come from unclipped training.
        """
        return cls(
            steps=10_000,
            batch_size=None,
            lr=1e-4,
            lr_end=1e-8,
            warmup_steps=5,
            power=3.0,
            grad_clip=None,
            heldout_fraction=0.0,
            readout="max",
            standardize=False,
            n_layers=10,
            min_width=1,
            max_dims=768,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MINEParams:
        """Build from a config mapping (missing keys take the defaults), rejecting unknown keys by name."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown MINE parameter(s) {unknown}; valid parameters are {valid}")
        params = cls(**dict(d))
        params.validate()
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """What a cached estimate's key hashes: every setting, except later-added options at their off value,
        so that estimates cached before an option existed stay valid."""
        default = MINEParams()
        return {k: v for k, v in asdict(self).items()
                if not (k in _KEY_OMITTED_AT_DEFAULT and v == getattr(default, k))}

    def split_sizes_with_early_stop(self, n_samples: int) -> tuple[int, int, int]:
        """(pairs trained on, pairs of the early-stopping slice, held-out pairs)."""
        n_train, n_heldout = self.split_sizes(n_samples)
        n_stop = max(round(self.early_stop_fraction * n_train), 2) if self.early_stop_fraction > 0 else 0
        return n_train - n_stop, n_stop, n_heldout

    def split_sizes(self, n_samples: int) -> tuple[int, int]:
        """(n_train, n_heldout) for n_samples pairs."""
        n_heldout = int(round(n_samples * self.heldout_fraction))
        return n_samples - n_heldout, n_heldout

    def validate(self, n_samples: int | None = None) -> None:
        """Raise ValueError naming the bad value and the fix; with n_samples, also check the data size."""
        _require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(
            0 <= self.lr_end <= self.lr,
            f"lr_end must be in [0, lr={self.lr}], got {self.lr_end}",
        )
        _require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _require(self.power > 0, f"power must be > 0, got {self.power}")
        _require(
            self.grad_clip is None or self.grad_clip > 0,
            f"grad_clip must be > 0 or None (no clipping), got {self.grad_clip}",
        )
        _require(
            0 <= self.heldout_fraction < 1,
            f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}",
        )
        _require(
            self.readout in ("heldout", "max"),
            f"readout must be 'heldout' or 'max', got {self.readout!r}",
        )
        _require(
            not (self.readout == "heldout" and self.heldout_fraction == 0),
            "readout='heldout' needs heldout_fraction > 0 (e.g. 0.2); use readout='max' to read the "
            "bound off the training set as the paper does",
        )
        _require(self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}")
        _require(self.min_width >= 1, f"min_width must be >= 1, got {self.min_width}")
        _require(
            self.max_dims is None or self.max_dims >= 1,
            f"max_dims must be >= 1 or None (all dims), got {self.max_dims}",
        )
        _require(
            self.marginal_shifts >= 1, f"marginal_shifts must be >= 1, got {self.marginal_shifts}"
        )
        _require(self.n_bootstrap >= 1, f"n_bootstrap must be >= 1, got {self.n_bootstrap}")
        _require(
            self.threads is None or self.threads >= 1,
            f"threads must be >= 1 or None, got {self.threads}",
        )
        _require(
            self.batch_size is None or self.batch_size >= 2,
            f"batch_size must be >= 2 (every bound scores pairs from different rows of the batch) or None "
            f"for full batch, got {self.batch_size}",
        )
        _require(
            self.objective in OBJECTIVES,
            f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}",
        )
        _require(
            not (self.objective == "infonce" and self.batch_size is None),
            "objective='infonce' scores all B^2 pairs of a batch, so a full batch of n_train pairs costs "
            "n_train^2 critic evaluations per step: set batch_size (e.g. 256)",
        )
        _require(self.smile_tau > 0, f"smile_tau must be > 0, got {self.smile_tau}")
        _require(0 < self.ema_rate <= 1, f"ema_rate must be in (0, 1], got {self.ema_rate}")
        _require(self.noise_fraction >= 0, f"noise_fraction must be >= 0 (0 = no noise), got {self.noise_fraction}")
        _require(0 <= self.early_stop_fraction < 1,
                 f"early_stop_fraction must be in [0, 1) (0 = off, e.g. 0.2), got {self.early_stop_fraction}")
        _require(self.critic in CRITICS, f"critic must be one of {list(CRITICS)}, got {self.critic!r}")
        for name in ("embed_dim", "embed_layers", "embed_width", "joint_width"):
            value = getattr(self, name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                     f"{name} must be an integer >= 1, got {value!r}")
        if n_samples is None:
            return
        n_train, n_heldout = self.split_sizes(n_samples)
        if self.heldout_fraction > 0:
            need = math.ceil(2 / self.heldout_fraction)
            _require(
                n_heldout >= 2,
                f"{n_samples} samples with heldout_fraction={self.heldout_fraction} leave {n_heldout} "
                f"held-out pairs; need at least 2 (i.e. >= {need} samples): give more samples or raise "
                f"heldout_fraction",
            )
        _require(
            n_train >= 2,
            f"{n_samples} samples with heldout_fraction={self.heldout_fraction} leave {n_train} training "
            f"pairs; need at least 2",
        )
        n_fit, _, _ = self.split_sizes_with_early_stop(n_samples)
        _require(
            n_fit >= 2,
            f"{n_samples} samples leave too few training pairs next to early_stop_fraction="
            f"{self.early_stop_fraction}: lower it or give more samples",
        )
        n_train = n_fit
        _require(
            self.batch_size is None or self.batch_size <= n_train,
            f"batch_size={self.batch_size} > n_train={n_train} ({n_samples} samples, "
            f"heldout_fraction={self.heldout_fraction}); lower batch_size or use batch_size=None "
            f"(full batch)",
        )


def estimate_mine(x: np.ndarray, y: np.ndarray, params: MINEParams | None = None, seed: int = 0) -> MIResult:
    """MI(X; Y) in bits from paired samples x (N, dx), y (N, dy): the ensemble fit with E = 1."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"x and y must be (N, d) arrays, got shapes {x.shape} and {y.shape}")
    return fit_mine_ensemble(x[None], y[None], params or MINEParams(), [seed])[0]


def fit_mine_ensemble(
    xs: np.ndarray, ys: np.ndarray, params: MINEParams, seeds: Sequence[int], chunk_size: int | None = None
) -> list[MIResult]:
    """Fit E independent MINE estimators (bound: `params.objective`) in one set of batched kernels.

    xs (E, N, dx) and ys (E, N, dy) hold E problems with the same sample count and dims; seeds gives one seed
    per problem. Result i equals `estimate_mine(xs[i], ys[i], params, seeds[i])` up to float rounding: the
    ensemble is only a way of using the hardware, never a change of the estimate.

    The E estimators are trained `chunk_size` at a time (default: `ensemble_chunk_size`, which bounds one
    chunk's working set by ENSEMBLE_CHUNK_BYTES so that a large ensemble cannot exhaust memory). Chunking
    cannot change a value, for the same reason the ensemble cannot.
    """
    xs, ys = np.asarray(xs), np.asarray(ys)
    if xs.ndim != 3 or ys.ndim != 3 or xs.shape[:2] != ys.shape[:2]:
        raise ValueError(
            f"xs and ys must be (E, N, dx) and (E, N, dy) with the same E and N, got {xs.shape} and {ys.shape}"
        )
    if len(seeds) != xs.shape[0]:
        raise ValueError(f"need one seed per estimator: {xs.shape[0]} estimators, {len(seeds)} seeds")
    params.validate(n_samples=xs.shape[1])
    e = xs.shape[0]
    chunk = ensemble_chunk_size(params, xs.shape[1], xs.shape[2], ys.shape[2]) if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk}")
    start = time.perf_counter()
    fits: list[MIResult] = []
    with _torch_threads(params.threads):
        for lo in range(0, e, chunk):
            fits += _fit(xs[lo : lo + chunk], ys[lo : lo + chunk], params, [int(s) for s in seeds[lo : lo + chunk]])
    wall_s = (time.perf_counter() - start) / len(seeds)
    return [replace(fit, wall_s=wall_s) for fit in fits]


def ensemble_chunk_size(params: MINEParams, n_samples: int, dx: int, dy: int) -> int:
    """How many estimators to train as one ensemble so that a step's working set stays near
    `ENSEMBLE_CHUNK_BYTES`: the first layer's activations on joint + marginal rows (forward and backward, the
    bulk of the traffic) plus the first layer's weights with their gradient and two Adam moments."""
    d_in = min(dx, params.max_dims or dx) + min(dy, params.max_dims or dy)
    width = _first_layer_width(params, d_in)
    rows = params.batch_size or params.split_sizes(n_samples)[0]
    per_estimator = 4 * (4 * 2 * rows * width + 4 * d_in * width)
    return max(1, ENSEMBLE_CHUNK_BYTES // per_estimator)


def _first_layer_width(params: MINEParams, d_in: int) -> int:
    """Units of the critic's first layer(s) that every row of x and of y goes through."""
    if params.critic == "joint":
        return funnel_widths(d_in, params.n_layers, params.min_width)[0]
    embed = params.embed_width if params.embed_layers > 1 else params.embed_dim
    return embed + (params.joint_width if params.critic == "hybrid" else 0)


def make_critic(params: MINEParams, dx: int, dy: int, generators: Sequence[torch.Generator]) -> EnsembleCritic:
    """The ensemble critic `params.critic` names, one per generator."""
    if params.critic == "joint":
        return EnsembleFunnelCritic(dx, dy, params.n_layers, params.min_width, generators)
    separable = EnsembleSeparableCritic(
        dx, dy, params.embed_layers, params.embed_width, params.embed_dim, generators
    )
    if params.critic == "separable":
        return separable
    widths = [*([params.joint_width] * (params.n_layers - 1)), 1]
    return EnsembleHybridCritic(separable, EnsembleFunnelCritic(dx, dy, params.n_layers, 1, generators, widths))


def poly_decay_with_warmup(step: int, params: MINEParams) -> float:
    """LR multiplier at `step`, the formula of transformers' `get_polynomial_decay_schedule_with_warmup`."""
    if step < params.warmup_steps:
        return step / max(1, params.warmup_steps)
    if step > params.steps:
        return params.lr_end / params.lr
    decay_steps = max(1, params.steps - params.warmup_steps)
    remaining = 1.0 - (step - params.warmup_steps) / decay_steps
    return ((params.lr - params.lr_end) * remaining**params.power + params.lr_end) / params.lr


@dataclass(frozen=True)
class _Split:
    """Per-estimator train/held-out tensors, (E, n_part, d), already standardised."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor


def _fit(xs: np.ndarray, ys: np.ndarray, params: MINEParams, seeds: list[int]) -> list[MIResult]:
    e, n = xs.shape[:2]
    d = params.max_dims
    # Arrays from Ray's object store are read-only views; torch needs writable memory, so copy once here.
    x = torch.from_numpy(np.array(xs[..., :d], dtype=np.float32, order="C", copy=True))
    y = torch.from_numpy(np.array(ys[..., :d], dtype=np.float32, order="C", copy=True))
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    critic = make_critic(params, x.shape[2], y.shape[2], gens)
    split, stop_slice = _carve_early_stop(_split(x, y, params, gens), params)
    curve, alive = _train(critic, split, params, gens, stop_slice)
    n_heldout = split.x_heldout.shape[1]
    with torch.no_grad():
        samples = _heldout_samples(critic, split, params, gens)
    heldout = _HELDOUT_BOUND[params.objective](*samples) if n_heldout else torch.full((e,), math.nan)
    cap = _bound_cap_bits(params, split.x_train.shape[1], n_heldout)
    curve_np = curve.numpy()
    results = []
    for i, seed in enumerate(seeds):
        finite = curve_np[np.isfinite(curve_np[:, i]), i]
        max_train = float(finite.max()) if finite.size else math.nan
        last_train = float(finite[-1]) if finite.size else math.nan
        held = float(heldout[i])
        value = held if params.readout == "heldout" else max_train
        if n_heldout:
            boot = _bootstrap([s[i].double().numpy() for s in samples], params, seed)
            ci_low, ci_high = np.percentile(boot, [2.5, 97.5]) if np.isfinite(boot).all() else (math.nan,) * 2
        else:
            boot = np.full(params.n_bootstrap, value, dtype=np.float64)
            ci_low, ci_high = value, value
        results.append(
            MIResult(
                mi_bits=value,
                readout=params.readout,
                heldout_bits=held,
                max_train_bits=max_train,
                last_train_bits=last_train,
                ci_low=float(ci_low),
                ci_high=float(ci_high),
                bootstrap=boot,
                curve=curve_np[:, i].astype(np.float32),
                n_samples=n,
                n_train=split.x_train.shape[1],
                n_heldout=n_heldout,
                seed=seed,
                wall_s=math.nan,
                # A critic that stayed finite can still score held-out rows that are not (bad data there).
                flag=diagnose(
                    value,
                    curve_np[:, i],
                    heldout_ci_high=float(ci_high) if n_heldout else math.nan,
                    bound_cap_bits=cap,
                    finite_training=bool(alive[i]),
                ),
                objective=params.objective,
                bound_cap_bits=cap,
            )
        )
    return results


def _split(x: torch.Tensor, y: torch.Tensor, params: MINEParams, gens: list[torch.Generator]) -> _Split:
    """Random train/held-out split per estimator, then standardisation with train statistics only (so the
    held-out pairs stay unseen)."""
    n_train, _ = params.split_sizes(x.shape[1])
    order = torch.stack([torch.randperm(x.shape[1], generator=g) for g in gens])
    train, heldout = order[:, :n_train], order[:, n_train:]
    x_tr, y_tr, x_ho, y_ho = _take(x, train), _take(y, train), _take(x, heldout), _take(y, heldout)
    if params.noise_fraction > 0:
        x_tr, x_ho = _add_isotropic_noise(x_tr, x_ho, params.noise_fraction, gens)
        y_tr, y_ho = _add_isotropic_noise(y_tr, y_ho, params.noise_fraction, gens)
    if params.standardize:
        x_tr, x_ho = _standardize(x_tr, x_ho)
        y_tr, y_ho = _standardize(y_tr, y_ho)
    return _Split(x_tr, y_tr, x_ho, y_ho)


def _carve_early_stop(split: _Split, params: MINEParams) -> tuple[_Split, _Split | None]:
    """Take the early-stopping slice off the end of the (already shuffled) training split: (what is trained
    on, the slice as a _Split whose held-out part is the slice); None when early stopping is off."""
    n_train = split.x_train.shape[1]
    n_fit, n_stop, _ = params.split_sizes_with_early_stop(n_train + split.x_heldout.shape[1])
    if n_stop == 0:
        return split, None
    fit = _Split(split.x_train[:, :n_fit], split.y_train[:, :n_fit], split.x_heldout, split.y_heldout)
    stop = _Split(fit.x_train, fit.y_train, split.x_train[:, n_fit:], split.y_train[:, n_fit:])
    return fit, stop


def _add_isotropic_noise(
    train: torch.Tensor, heldout: torch.Tensor, fraction: float, gens: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fixed noise draw per estimator (its own generator), std = fraction x the RMS of the centred train
    states over samples and dims: isotropic, so the noise does not favour any direction of the state space."""
    centred = train - train.mean(dim=1, keepdim=True)
    scale = centred.pow(2).mean(dim=(1, 2), keepdim=True).sqrt() * fraction
    noise_tr = torch.stack([torch.randn(train.shape[1:], generator=g) for g in gens])
    noise_ho = torch.stack([torch.randn(heldout.shape[1:], generator=g) for g in gens])
    return train + scale * noise_tr, heldout + scale * noise_ho


def _standardize(train: torch.Tensor, heldout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-estimator, per-dim z-score from the train split; the 1e-6 std floor keeps constant dims (common in
    hidden states) at zero instead of dividing by zero."""
    mean = train.mean(dim=1, keepdim=True)
    std = train.std(dim=1, keepdim=True, unbiased=False).clamp_min(1e-6)
    return (train - mean) / std, (heldout - mean) / std


def _train(
    critic: EnsembleCritic,
    split: _Split,
    params: MINEParams,
    gens: list[torch.Generator],
    stop_slice: _Split | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise the objective; return the training-batch bound per step (steps, E) (the bound that is read out,
    which for SMILE and MINE-EMA is plain DV, not the surrogate they follow) and which estimators stayed finite.

    With a `stop_slice`, each estimator's critic ends at its checkpoint with the best bound on that slice."""
    e, n_train = split.x_train.shape[:2]
    batch = params.batch_size or n_train
    full_batch = params.batch_size is None or params.batch_size == n_train
    plist = list(critic.parameters())
    # Not fused=True: ~10% faster on CPU, but its vectorised kernel rounds tensor tails differently depending
    # on the tensor's size, i.e. on E, which broke ensemble == one-by-one for the paper's tiny last layers.
    optimizer = torch.optim.Adam(plist, lr=params.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_decay_with_warmup(s, params))
    alive = torch.ones(e, dtype=torch.bool)
    curve = torch.full((params.steps, e), math.nan)
    ema = EMADenominator(params.ema_rate)
    best: tuple[torch.Tensor, list[torch.Tensor]] | None = None
    for step in range(params.steps):
        if full_batch:
            xb, yb = split.x_train, split.y_train
        else:
            rows = torch.stack([torch.randperm(n_train, generator=g)[:batch] for g in gens])
            xb, yb = _take(split.x_train, rows), _take(split.y_train, rows)
        xw, yw = critic.project(xb, yb)
        if params.objective == "infonce":
            bound = target = infonce_bound_bits(critic.pair_scores(xw, yw))
        else:
            perm = torch.stack([torch.randperm(batch, generator=g) for g in gens])
            # Joint and marginal rows are scored as one (E, 2B) batch; marginal rows reuse the y embeddings.
            scores = critic.scores(torch.cat([xw, xw], dim=1), torch.cat([yw, _take(yw, perm)], dim=1))
            bound, target = _pair_objective(scores[:, :batch], scores[:, batch:], params, ema)
        alive &= torch.isfinite(bound.detach()) & torch.isfinite(target.detach())
        optimizer.zero_grad(set_to_none=True)
        (-torch.where(alive, target, 0.0).sum()).backward()
        alive &= _mask_and_clip(plist, alive, params.grad_clip)
        curve[step] = torch.where(alive, bound.detach(), math.nan)
        _step_frozen_aware(optimizer, plist, alive)
        schedule.step()
        if stop_slice is not None and ((step + 1) % EARLY_STOP_EVERY == 0 or step + 1 == params.steps):
            best = _keep_best_checkpoint(critic, stop_slice, params, gens, alive, best)
    if stop_slice is not None and best is not None:
        with torch.no_grad():
            for p, kept in zip(plist, best[1]):
                p.copy_(kept)
    return curve, alive


def _keep_best_checkpoint(
    critic: EnsembleCritic,
    stop_slice: _Split,
    params: MINEParams,
    gens: list[torch.Generator],
    alive: torch.Tensor,
    best: tuple[torch.Tensor, list[torch.Tensor]] | None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Read the bound on the early-stopping slice; where it beats an estimator's best so far, copy that
    estimator's parameters. Returns (best value per estimator, best parameters)."""
    plist = list(critic.parameters())
    with torch.no_grad():
        samples = _heldout_samples(critic, stop_slice, replace(params, marginal_shifts=EARLY_STOP_SHIFTS), gens)
        value = _HELDOUT_BOUND[params.objective](*samples)
    value = torch.where(alive & torch.isfinite(value), value, -math.inf)
    if best is None:
        return value, [p.detach().clone() for p in plist]
    better = value > best[0]
    with torch.no_grad():
        for kept, p in zip(best[1], plist):
            kept.copy_(torch.where(_bcast(better, p), p.detach(), kept))
    return torch.where(better, value, best[0]), best[1]


def _pair_objective(
    joint: torch.Tensor, marginal: torch.Tensor, params: MINEParams, ema: EMADenominator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(bound read out, objective maximised) from one batch's joint and permuted-marginal scores (E, B)."""
    if params.objective == "nwj":
        bound = nwj_bound_bits(joint, marginal)
        return bound, bound
    bound = dv_bound_bits(joint, marginal)
    if params.objective == "smile":
        return bound, smile_objective_bits(joint, marginal, params.smile_tau)
    if params.objective == "mine_ema":
        return bound, ema.surrogate_bits(joint, marginal)
    if params.objective == "js":
        return bound, js_objective_bits(joint, marginal)
    return bound, bound


def _mask_and_clip(plist: list[torch.Tensor], alive: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Zero dead estimators' gradients, clip each live one's to max_norm; return which had finite gradients.

    torch.where, not multiplication: a dead slice can hold NaN gradients (0 * inf in the backward matmul), and
    NaN * 0 is still NaN.
    """
    all_alive = bool(alive.all())
    sq = torch.zeros(alive.shape[0])
    for p in plist:
        if not all_alive:
            p.grad = torch.where(_bcast(alive, p.grad), p.grad, 0.0)
        # Sum the last axis, then the next: a single flat sum per estimator would be split across threads
        # when E = 1 but not when E > 1, rounding differently (see critic._batched_linear for why it matters).
        sq += p.grad.pow(2).sum(dim=-1).sum(dim=-1)
    norm = sq.sqrt()
    finite = torch.isfinite(norm)
    if not bool(finite.all()):
        for p in plist:
            p.grad = torch.where(_bcast(finite, p.grad), p.grad, 0.0)
    if max_norm is not None:
        # Same coefficient as torch.nn.utils.clip_grad_norm_, but one per estimator.
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        coef = torch.where(finite, coef, 0.0)
        for p in plist:
            p.grad.mul_(_bcast(coef, p.grad))
    return finite


def _step_frozen_aware(optimizer: torch.optim.Optimizer, plist: list[torch.Tensor], alive: torch.Tensor) -> None:
    """Adam step that leaves dead estimators where they were.

    A zero gradient is not enough: Adam keeps moving a parameter along its momentum. The live estimators'
    update is untouched (Adam is elementwise), so freezing one estimator never changes another.
    """
    if bool(alive.all()):
        optimizer.step()
        return
    frozen = [p.detach()[~alive].clone() for p in plist]
    optimizer.step()
    with torch.no_grad():
        for p, old in zip(plist, frozen):
            p[~alive] = old


def _heldout_samples(
    critic: EnsembleCritic, split: _Split, params: MINEParams, gens: list[torch.Generator]
) -> tuple[torch.Tensor, ...]:
    """What the held-out bound is computed from (and the bootstrap resamples), each (E, m): the joint and
    marginal scores for the DV family and NWJ, the per-row terms for InfoNCE."""
    if params.objective == "infonce":
        return (_heldout_infonce_terms(critic, split, params, gens),)
    return _heldout_scores(critic, split, params, gens)


def _heldout_infonce_terms(
    critic: EnsembleCritic, split: _Split, params: MINEParams, gens: list[torch.Generator]
) -> torch.Tensor:
    """Per-row InfoNCE terms (E, n_h) in bits of the final critic on the held-out split.

    The held-out rows are shuffled and cut into near-equal chunks of at most batch_size rows, and each chunk is
    scored all-pairs as a training batch is: every held-out pair is used, and no chunk is larger than what the
    critic was trained to contrast (a larger one would read a higher cap, log2 of its size, than training saw).
    """
    e, n_h = split.x_heldout.shape[:2]
    if n_h == 0:
        return torch.empty(e, 0)
    xw, yw = critic.project(split.x_heldout, split.y_heldout)
    order = torch.stack([torch.randperm(n_h, generator=g) for g in gens])
    sizes = _infonce_chunk_sizes(n_h, params.batch_size or split.x_train.shape[1])
    terms = []
    for rows in torch.split(order, sizes, dim=1):
        terms.append(infonce_row_terms_bits(critic.pair_scores(_take(xw, rows), _take(yw, rows))))
    return torch.cat(terms, dim=1)


def _infonce_chunk_sizes(n: int, batch: int) -> list[int]:
    """Near-equal chunk sizes (differing by at most 1), each <= batch, that add up to n."""
    k = math.ceil(n / batch)
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def _bound_cap_bits(params: MINEParams, n_train: int, n_heldout: int) -> float:
    """The largest value the reported bound can take for any critic: log2 of the contrasted batch for InfoNCE
    (the row-weighted mean of log2 chunk size on the held-out split), unbounded for the others."""
    if params.objective != "infonce":
        return math.inf
    batch = params.batch_size or n_train
    if params.readout == "max" or n_heldout == 0:
        return math.log2(batch)
    sizes = _infonce_chunk_sizes(n_heldout, batch)
    return sum(m * math.log2(m) for m in sizes) / n_heldout


def _heldout_scores(
    critic: EnsembleCritic, split: _Split, params: MINEParams, gens: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Final-critic scores on held-out joint pairs (E, n_h) and marginal pairs (E, K * n_h).

    Marginal pairs (x_o(i), y_o(i+s)) use a random ordering o and K distinct cyclic shifts s in 1..n_h-1:
    unlike a random permutation, a shift never maps i to itself, so no joint pair is scored as a marginal
    one, and every x and every y appears exactly K times (a balanced design, lower variance than K random
    permutations).
    """
    e, n_h = split.x_heldout.shape[:2]
    if n_h == 0:
        empty = torch.empty(e, 0)
        return empty, empty
    xw, yw = critic.project(split.x_heldout, split.y_heldout)
    identity = torch.arange(n_h).expand(e, n_h)
    joint = _score_pairs(critic, xw, yw, identity, identity)
    k = min(params.marginal_shifts, n_h - 1)
    order = torch.stack([torch.randperm(n_h, generator=g) for g in gens])
    shifts = torch.stack([torch.randperm(n_h - 1, generator=g)[:k] + 1 for g in gens])
    marginal = []
    for j in range(k):
        shifted = torch.gather(order, 1, (torch.arange(n_h) + shifts[:, j : j + 1]) % n_h)
        marginal.append(_score_pairs(critic, xw, yw, order, shifted))
    return joint, torch.cat(marginal, dim=1)


def _score_pairs(
    critic: EnsembleCritic, xw: torch.Tensor, yw: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor
) -> torch.Tensor:
    """Scores of pairs (x_ix, y_iy) from the critic's precomputed embeddings, in row chunks to bound memory."""
    e, m = ix.shape
    chunk = max(1, _SCORE_CHUNK_ELEMENTS // (e * xw.shape[2]))
    parts = [
        critic.scores(_take(xw, ix[:, s : s + chunk]), _take(yw, iy[:, s : s + chunk]))
        for s in range(0, m, chunk)
    ]
    return torch.cat(parts, dim=1)


#: The held-out bound of each objective, on the tensors of `_heldout_samples` (E, m) -> (E,).
_HELDOUT_BOUND: dict[str, Callable[..., torch.Tensor]] = {
    "dv": dv_bound_bits,
    "nwj": nwj_bound_bits,
    "infonce": lambda terms: terms.mean(dim=1),
    "smile": dv_bound_bits,
    "mine_ema": dv_bound_bits,
    "js": dv_bound_bits,
}
#: The same bounds on one estimator's float64 samples, for the bootstrap.
_BOOTSTRAP_BOUND: dict[str, Callable[..., float]] = {
    "dv": dv_bound_bits_np,
    "nwj": nwj_bound_bits_np,
    "infonce": mean_np,
    "smile": dv_bound_bits_np,
    "mine_ema": dv_bound_bits_np,
    "js": dv_bound_bits_np,
}


def _bootstrap(samples: list[np.ndarray], params: MINEParams, seed: int) -> np.ndarray:
    """Percentile-bootstrap replicates of the held-out bound: each sample is resampled with replacement,
    separately (joint and marginal scores are two samples of the two expectations in DV and NWJ).

    InfoNCE's per-row terms share their chunk's log-sum-exp, so they are not quite independent; resampling
    them as if they were ignores that coupling, which is weak for chunks of hundreds of rows.
    """
    bound = _BOOTSTRAP_BOUND[params.objective]
    rng = np.random.default_rng([seed, _BOOTSTRAP_STREAM])
    out = np.empty(params.n_bootstrap, dtype=np.float64)
    for b in range(params.n_bootstrap):
        out[b] = bound(*(s[rng.integers(0, s.size, s.size)] for s in samples))
    return out


def _take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per-estimator row selection: t (E, n, d), rows (E, m) -> (E, m, d)."""
    return t[torch.arange(t.shape[0])[:, None], rows]


def _bcast(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(E,) -> (E, 1, ..., 1) to broadcast over one estimator's slice of a parameter."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the fit only (a Ray worker may share the machine with others)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
