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

Layout (the way bmi splits its neural estimators):
- `params.py`: `MINEParams`, every default (DEFAULT_*) and the checks;
- `data.py`: each estimator's train / held-out split, early-stopping slice, noise and standardisation;
- `critics.py`: which critic of `ie_ray/estimators/critic.py` the parameters name;
- `training.py`: the training loop (schedule, per-estimator clipping and freezing, early stopping);
- `readout.py`: the held-out bound of each objective, its cap and the bootstrap interval;
- `fit.py`: `fit_mine_ensemble` / `estimate_mine`, which put those together into `MIResult`s.
The bounds themselves are `ie_ray/estimators/bounds.py`, shared with the tests that check them on known scores.
"""

from ie_ray.estimators.mine.critics import make_critic
from ie_ray.estimators.mine.fit import ENSEMBLE_CHUNK_BYTES, ensemble_chunk_size, estimate_mine, fit_mine_ensemble
from ie_ray.estimators.mine.params import (
    CRITICS,
    DEFAULT_ACTIVATION,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CRITIC,
    DEFAULT_EARLY_STOP_EVERY,
    DEFAULT_EARLY_STOP_FRACTION,
    DEFAULT_EARLY_STOP_PATIENCE,
    DEFAULT_EMA_RATE,
    DEFAULT_EMBED_DIM,
    DEFAULT_EMBED_LAYERS,
    DEFAULT_EMBED_WIDTH,
    DEFAULT_GRAD_CLIP,
    DEFAULT_HELDOUT_FRACTION,
    DEFAULT_HIDDEN_WIDTH,
    DEFAULT_INIT,
    DEFAULT_JOINT_WIDTH,
    DEFAULT_LR,
    DEFAULT_LR_END,
    DEFAULT_MARGINAL_SHIFTS,
    DEFAULT_MAX_DIMS,
    DEFAULT_MIN_WIDTH,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_N_LAYERS,
    DEFAULT_NOISE_FRACTION,
    DEFAULT_OBJECTIVE,
    DEFAULT_POWER,
    DEFAULT_READOUT,
    DEFAULT_READOUT_BATCH,
    DEFAULT_READOUT_CLIP,
    DEFAULT_SAMPLING,
    DEFAULT_SMILE_TAU,
    DEFAULT_STANDARDIZE,
    DEFAULT_STEPS,
    DEFAULT_THREADS,
    DEFAULT_WARMUP_STEPS,
    EARLY_STOP_EVERY,
    EARLY_STOP_SHIFTS,
    EARLY_STOP_TOLERANCE_BITS,
    OBJECTIVES,
    CriticKind,
    MINEParams,
    Objective,
)
from ie_ray.estimators.mine.training import poly_decay_with_warmup

__all__ = [
    "CRITICS",
    "DEFAULT_ACTIVATION",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CRITIC",
    "DEFAULT_EARLY_STOP_EVERY",
    "DEFAULT_EARLY_STOP_FRACTION",
    "DEFAULT_EARLY_STOP_PATIENCE",
    "DEFAULT_EMA_RATE",
    "DEFAULT_EMBED_DIM",
    "DEFAULT_EMBED_LAYERS",
    "DEFAULT_EMBED_WIDTH",
    "DEFAULT_GRAD_CLIP",
    "DEFAULT_HELDOUT_FRACTION",
    "DEFAULT_HIDDEN_WIDTH",
    "DEFAULT_INIT",
    "DEFAULT_JOINT_WIDTH",
    "DEFAULT_LR",
    "DEFAULT_LR_END",
    "DEFAULT_MARGINAL_SHIFTS",
    "DEFAULT_MAX_DIMS",
    "DEFAULT_MIN_WIDTH",
    "DEFAULT_NOISE_FRACTION",
    "DEFAULT_N_BOOTSTRAP",
    "DEFAULT_N_LAYERS",
    "DEFAULT_OBJECTIVE",
    "DEFAULT_POWER",
    "DEFAULT_READOUT",
    "DEFAULT_READOUT_BATCH",
    "DEFAULT_READOUT_CLIP",
    "DEFAULT_SAMPLING",
    "DEFAULT_SMILE_TAU",
    "DEFAULT_STANDARDIZE",
    "DEFAULT_STEPS",
    "DEFAULT_THREADS",
    "DEFAULT_WARMUP_STEPS",
    "EARLY_STOP_EVERY",
    "EARLY_STOP_SHIFTS",
    "EARLY_STOP_TOLERANCE_BITS",
    "ENSEMBLE_CHUNK_BYTES",
    "OBJECTIVES",
    "CriticKind",
    "MINEParams",
    "Objective",
    "ensemble_chunk_size",
    "estimate_mine",
    "fit_mine_ensemble",
    "make_critic",
    "poly_decay_with_warmup",
]
