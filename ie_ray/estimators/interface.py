"""One call for every estimator: `estimate(x, y, estimator="dv", params=None, seed=0) -> MIResult`.

The shape of bmi's estimator interface (STYLE.md): a name picks the estimator, its parameters are a validated
dataclass (or a plain mapping from a config), and the rich MIResult comes back. The neural names are the
objectives of the ensemble trainer; "gaussian" is the closed form; "smoothed" is I_sigma, the MI of the
Gaussian-smoothed empirical joint (`smoothed.py`, the headline reading of a sweep). For many problems of the same shape, call
`fit_mine_ensemble` directly: that is the batched path the reducer and `ie-ray validate` use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from typing import Any, cast

import numpy as np

from ie_ray.estimators.gaussian import GaussianParams, estimate_gaussian
from ie_ray.estimators.mine import OBJECTIVES, MINEParams, Objective, estimate_mine
from ie_ray.estimators.result import MIResult
from ie_ray.estimators.smoothed import SmoothedParams, smoothed_mi

#: The suite of estimators of MI between continuous variables (the neural objectives, then the closed form),
#: validated together on continuous tasks by `ie-ray validate`.
ESTIMATORS: tuple[str, ...] = (*OBJECTIVES, "gaussian")
#: Every name `estimate` accepts: the suite plus the smoothed MI of the empirical joint.
ALL_ESTIMATORS: tuple[str, ...] = (*ESTIMATORS, "smoothed")


def estimate(
    x: np.ndarray,
    y: np.ndarray,
    estimator: str = "dv",
    params: MINEParams | GaussianParams | SmoothedParams | Mapping[str, Any] | None = None,
    seed: int = 0,
) -> MIResult:
    """MI(X; Y) in bits from paired samples x (N, dx), y (N, dy) with the named estimator.

    For a neural estimator, `params` is a MINEParams or a mapping of its fields (None = the defaults); its
    `objective` is set to `estimator`, so `estimate(x, y, "nwj", MINEParams(steps=200))` is NWJ with 200 steps.
    For "gaussian", `params` is a GaussianParams or a mapping of its fields; the result is a GaussianMIResult,
    which also says which form of the closed form was used and its bias correction. For "smoothed", a
    SmoothedParams or a mapping of its fields; the result is the reading at `params.tau` (call `smoothed_mi` for
    the whole tau grid of one pass).
    """
    if estimator not in ALL_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {list(ALL_ESTIMATORS)}")
    if estimator == "smoothed":
        if params is not None and not isinstance(params, (SmoothedParams, Mapping)):
            raise ValueError(f"estimator='smoothed' takes SmoothedParams (tau, taus, n_draws, ...), "
                             f"not {type(params).__name__}")
        s = params if isinstance(params, SmoothedParams) else SmoothedParams.from_dict(params or {})
        return smoothed_mi(x, y, s, seed=seed).to_mi_result(s.tau)
    if estimator == "gaussian":
        if isinstance(params, (MINEParams, SmoothedParams)):
            names = ", ".join(f.name for f in fields(GaussianParams))
            raise ValueError(f"estimator='gaussian' takes GaussianParams ({names}), not {type(params).__name__}")
        g = params if isinstance(params, GaussianParams) else GaussianParams.from_dict(params or {})
        return estimate_gaussian(x, y, **asdict(g), seed=seed)
    if isinstance(params, (GaussianParams, SmoothedParams)):
        # ValueError like every other bad argument of estimate() (callers and tests catch that one)
        raise ValueError(f"estimator={estimator!r} takes MINEParams, not {type(params).__name__}")  # noqa: TRY004
    p = params if isinstance(params, MINEParams) else MINEParams.from_dict(params or {})
    return estimate_mine(x, y, replace(p, objective=cast(Objective, estimator)), seed=seed)  # one of OBJECTIVES
