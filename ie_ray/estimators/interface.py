"""One call for every estimator: `estimate(x, y, estimator="dv", params=None, seed=0) -> MIResult`.

The shape of bmi's estimator interface (STYLE.md): a name picks the estimator, its parameters are a validated
dataclass (or a plain mapping from a config), and the rich MIResult comes back. The neural names are the
objectives of the ensemble trainer; "gaussian" is the closed form. For many problems of the same shape, call
`fit_mine_ensemble` directly: that is the batched path the reducer and `ie-ray validate` use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ie_ray.estimators.gaussian import GaussianParams, estimate_gaussian
from ie_ray.estimators.mine import OBJECTIVES, MINEParams, estimate_mine
from ie_ray.estimators.result import MIResult

#: Every estimator name `estimate` accepts: the neural objectives, then the closed form.
ESTIMATORS: tuple[str, ...] = (*OBJECTIVES, "gaussian")


def estimate(
    x: np.ndarray,
    y: np.ndarray,
    estimator: str = "dv",
    params: MINEParams | GaussianParams | Mapping[str, Any] | None = None,
    seed: int = 0,
) -> MIResult:
    """MI(X; Y) in bits from paired samples x (N, dx), y (N, dy) with the named estimator.

    For a neural estimator, `params` is a MINEParams or a mapping of its fields (None = the defaults); its
    `objective` is set to `estimator`, so `estimate(x, y, "nwj", MINEParams(steps=200))` is NWJ with 200 steps.
    For "gaussian", `params` is a GaussianParams or a mapping of its fields.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
    if estimator == "gaussian":
        if isinstance(params, MINEParams):
            raise ValueError("estimator='gaussian' takes GaussianParams (shrinkage, heldout_fraction, n_bootstrap), "
                             "not MINEParams")
        g = params if isinstance(params, GaussianParams) else GaussianParams.from_dict(params or {})
        return estimate_gaussian(x, y, g.shrinkage, heldout_fraction=g.heldout_fraction,
                                 n_bootstrap=g.n_bootstrap, seed=seed)
    if isinstance(params, GaussianParams):
        raise ValueError(f"estimator={estimator!r} takes MINEParams, not GaussianParams")
    p = params if isinstance(params, MINEParams) else MINEParams.from_dict(params or {})
    return estimate_mine(x, y, replace(p, objective=estimator), seed=seed)
