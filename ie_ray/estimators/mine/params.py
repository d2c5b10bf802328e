"""The MINE estimators' parameters as data: `MINEParams`, its documented module-level defaults and its checks.

Every hyper-parameter is a field with a DEFAULT_* here (as bmi's neural estimators take them), so a config section,
a cache key and a benchmark row all describe an estimate by the same object.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from ie_ray.estimators.result import Readout

Objective = Literal["dv", "nwj", "infonce", "smile", "mine_ema", "js"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
CriticKind = Literal["joint", "separable", "hybrid"]
CRITICS: tuple[str, ...] = get_args(CriticKind)
Sampling = Literal["random", "epochs"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
Init = Literal["xavier", "torch"]
INITS: tuple[str, ...] = get_args(Init)
Activation = Literal["leaky_relu", "relu"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)

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
#: Steps between two readings of the early-stopping slice (and the last step is always read); None = once per
#: pass over the training split (ceil(n_fit / batch) steps), as epoch-based trainers (torch-mist) validate.
EARLY_STOP_EVERY: int = 20
DEFAULT_EARLY_STOP_EVERY: int | None = EARLY_STOP_EVERY
#: Stop an estimator's training once this many readings of the early-stopping slice since its best one fell more
#: than EARLY_STOP_TOLERANCE_BITS below it (a new best resets the count; a reading within the tolerance is neither);
#: None = never stop, train all `steps` and keep the best checkpoint. torch-mist's rule (patience = 2% of its
#: epochs, at least 1; tolerance 0.001 nats), which ends its SMILE runs after a few epochs instead of at
#: 5,000 iterations. The estimator is frozen from then on; it still ends at its best checkpoint.
DEFAULT_EARLY_STOP_PATIENCE: int | None = None
#: torch-mist's tolerance, 0.001 nats, in bits.
EARLY_STOP_TOLERANCE_BITS: float = 0.001 / math.log(2.0)
#: How minibatches are drawn: "random" (each step draws batch_size pairs of the training split without
#: replacement, independently of other steps) or "epochs" (each estimator reshuffles its training split once
#: per pass and walks it in batches of batch_size, the last one shorter: the DataLoader(shuffle=True) of
#: torch-mist and most trainers, so every pair is seen once per pass).
DEFAULT_SAMPLING: Sampling = "random"
#: Initialisation of the joint critic's Linear layers: "xavier" (Xavier-normal weights, zero biases: ours) or
#: "torch" (nn.Linear's default, weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch-mist's).
DEFAULT_INIT: Init = "xavier"
#: Non-linearity between the joint critic's layers: the reference code's LeakyReLU(0.01) or torch-mist's ReLU.
DEFAULT_ACTIVATION: Activation = "leaky_relu"
#: Width of every hidden layer of the joint critic, instead of the funnel's max(d_in / 2^l, min_width). None =
#: the funnel. torch-mist's README critic is one hidden layer of 128 (n_layers=2, hidden_width=128).
DEFAULT_HIDDEN_WIDTH: int | None = None
#: Clip the held-out marginal scores to [-tau, tau] nats inside the DV log-mean-exp (SMILE's estimate, Song &
#: Ermon 2020: bounded variance, biased for large MI). None = the plain DV bound. Objectives of the DV family only.
DEFAULT_READOUT_CLIP: float | None = None
#: Read the held-out DV bound batch-wise, as torch-mist's `evaluate` does: consecutive held-out rows in batches
#: of this many, each batch's bound with one marginal pair per row (y shifted by one row within the batch), and
#: the mean over batches (the last, shorter batch weighs as much as the others). The log of a 128-pair mean is
#: biased upward for DV (Jensen), so this reads higher than the full-sample readout of the same critic. None =
#: the full-sample readout over `marginal_shifts` shifts. Objectives of the DV family only.
DEFAULT_READOUT_BATCH: int | None = None
#: Where the critic trains and reads out: "cpu", "cuda" or "cuda:N". The random draws (splits, minibatches,
#: initialisation) still come from each estimator's CPU generator, so a seed picks the same rows and the same
#: starting critic on every device; only float rounding differs. Not part of the cache key while "cpu".
DEFAULT_DEVICE: str = "cpu"
#: How each coordinate is presented to the critic: "raw" (as given; then `standardize`) or "rank_gauss" (each
#: coordinate through the train split's empirical CDF and the normal quantile, so every marginal is ~N(0, 1)).
#: MI is unchanged by an invertible map of each coordinate, but a critic is not: heavy tails and warps (bmi's
#: Student-t, half-cube, asinh and wiggly tasks) hide dependence from an MLP that the Gaussianised marginals show.
MARGINALS: tuple[str, ...] = ("raw", "rank_gauss")
DEFAULT_MARGINALS: str = "raw"
#: Marginal shifts when reading the early-stopping slice: a cheap, noisier version of the held-out readout.
EARLY_STOP_SHIFTS: int = 32
#: Parameters that joined MINEParams after estimates were cached: left out of cache keys while they are at
#: their off value, so adding an option never invalidates finished estimates that did not use it.
_KEY_OMITTED_AT_DEFAULT: tuple[str, ...] = (
    "early_stop_fraction", "critic", "embed_dim", "embed_layers", "embed_width", "joint_width",
    "early_stop_every", "early_stop_patience", "sampling", "init", "activation", "hidden_width", "readout_clip",
    "readout_batch", "device", "marginals",
)
#: Objectives whose held-out bound is DV (readout_clip and readout_batch apply to these only).
DV_FAMILY: tuple[str, ...] = ("dv", "smile", "mine_ema", "js")


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
    early_stop_every: int | None = DEFAULT_EARLY_STOP_EVERY
    early_stop_patience: int | None = DEFAULT_EARLY_STOP_PATIENCE
    sampling: Sampling = DEFAULT_SAMPLING
    init: Init = DEFAULT_INIT
    activation: Activation = DEFAULT_ACTIVATION
    hidden_width: int | None = DEFAULT_HIDDEN_WIDTH
    readout_clip: float | None = DEFAULT_READOUT_CLIP
    readout_batch: int | None = DEFAULT_READOUT_BATCH
    device: str = DEFAULT_DEVICE
    marginals: str = DEFAULT_MARGINALS

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
        n_heldout = round(n_samples * self.heldout_fraction)
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
            self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device) is not None,
            f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}",
        )
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
            _require(_positive_int(value), f"{name} must be an integer >= 1, got {value!r}")
        for name in ("early_stop_every", "early_stop_patience", "hidden_width"):
            value = getattr(self, name)
            _require(value is None or _positive_int(value), f"{name} must be an integer >= 1 or None, got {value!r}")
        _require(self.marginals in MARGINALS, f"marginals must be one of {MARGINALS}, got {self.marginals!r}")
        _require(self.readout_batch is None or (_positive_int(self.readout_batch) and self.readout_batch >= 2),
                 f"readout_batch must be an integer >= 2 (a batch scores each row against another) or None, got "
                 f"{self.readout_batch!r}")
        _require(self.readout_clip is None or self.readout_clip > 0,
                 f"readout_clip must be > 0 (nats) or None, got {self.readout_clip}")
        _require(self.sampling in SAMPLINGS, f"sampling must be one of {list(SAMPLINGS)}, got {self.sampling!r}")
        _require(self.init in INITS, f"init must be one of {list(INITS)}, got {self.init!r}")
        _require(self.activation in ACTIVATIONS,
                 f"activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}")
        _require(
            (self.readout_clip is None and self.readout_batch is None) or self.objective in DV_FAMILY,
            f"readout_clip and readout_batch change the DV readout; objective {self.objective!r} does not read DV "
            f"(use one of {list(DV_FAMILY)} or leave them None)",
        )
        _require(self.early_stop_patience is None or self.early_stop_fraction > 0,
                 "early_stop_patience needs an early-stopping slice: set early_stop_fraction (e.g. 0.1)")
        _require((self.init, self.activation, self.hidden_width) == (DEFAULT_INIT, DEFAULT_ACTIVATION, None)
                 or self.critic == "joint",
                 f"init, activation and hidden_width shape the joint critic; critic={self.critic!r} does not use "
                 f"them (set critic='joint' or leave them at their defaults)")
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


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
