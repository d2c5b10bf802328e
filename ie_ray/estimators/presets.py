"""Named MINE settings: the package default, the paper's, and the critic variants the validation grid scores.

Why names: a sweep config and `ie-ray validate` should be able to say "the estimator the validation table
recommends for this regime" in one word (`estimator: {preset: dv-sep}`), and the validation table should label
each row with exactly that word, so a reader can go from a table row to a config without translating settings.
Each preset is a set of `MINEParams` overrides on top of the package default (or, for "paper", the paper's
settings); the variants are those measured in benchmarks/results/critics.md and results/validation/.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ie_ray.estimators.mine import OBJECTIVES, MINEParams

#: Early stopping on a 20% slice of the training split: without it a critic on a few thousand pairs memorises
#: them within ~100 steps and its held-out reading falls (benchmarks/results/critics.md, "+es" rows).
_ES: dict[str, Any] = dict(early_stop_fraction=0.2)
#: The rank-k linear separable critic (x A)^T (y B) with k = 64: the cheapest critic that read as well as the
#: joint MLP at d = 64 (critics.md), and the standard form for InfoNCE in high dimension.
_SEP: dict[str, Any] = dict(critic="separable", embed_layers=1, **_ES)

#: torch-mist 0.2.17's SMILE as `estimate_mi(..., estimator="smile", hidden_dims=[128])` runs it, difference by
#: difference (benchmarks/smile_dissection.py documents each default and where in its source it is): JS training,
#: epochs of batch 128, Adam 5e-4 constant, no clipping, nn.Linear's initialisation, one hidden layer of 128 ReLU
#: on concat[x; y], raw inputs, a 10% validation slice read each epoch with patience 1 (up to 5,000 steps), and
#: the SMILE readout (DV with marginal scores clipped to +-5 nats, per batch of 128 held-out rows).
_SMILE_TM: dict[str, Any] = dict(
    objective="js", batch_size=128, lr=5e-4, lr_end=5e-4, warmup_steps=0, grad_clip=None, steps=5000,
    sampling="epochs", early_stop_fraction=0.1, early_stop_every=None, early_stop_patience=1, init="torch",
    hidden_width=128, activation="relu", standardize=False, readout_clip=5.0, readout_batch=128,
)

#: preset name -> MINEParams overrides of the package default. The plain objective names (dv, nwj, infonce,
#: smile, mine_ema) are presets too: the default joint critic trained on that bound.
VARIANTS: dict[str, dict[str, Any]] = {
    "dv-es": dict(objective="dv", **_ES),
    "js-es": dict(objective="js", **_ES),
    "js-sep": dict(objective="js", **_SEP),
    "dv-sep": dict(objective="dv", **_SEP),
    "infonce-sep": dict(objective="infonce", **_SEP),
    "smile-sep": dict(objective="smile", **_SEP),
    "nwj-sep": dict(objective="nwj", **_SEP),
    "smile-tm": dict(_SMILE_TM),
    # torch-mist's recipe on Gaussianised marginals (MINEParams.marginals): for low-d data with warped or
    # heavy-tailed coordinates (bmi's tasks)
    "smile-tm-rank": dict(_SMILE_TM, marginals="rank_gauss"),
}
PRESETS: tuple[str, ...] = ("default", "paper", *OBJECTIVES, *VARIANTS)


def preset_params(name: str, **overrides: Any) -> MINEParams:
    """The MINEParams a preset names, with `overrides` (any MINEParams field) on top; ValueError names the
    choices when the preset is unknown."""
    if name == "paper":
        base = asdict(MINEParams.paper())
    elif name == "default":
        base = asdict(MINEParams())
    elif name in OBJECTIVES:
        base = {**asdict(MINEParams()), "objective": name}
    elif name in VARIANTS:
        base = {**asdict(MINEParams()), **VARIANTS[name]}
    else:
        raise ValueError(f"unknown estimator preset {name!r}; choose one of {list(PRESETS)}")
    return MINEParams.from_dict({**base, **overrides})
