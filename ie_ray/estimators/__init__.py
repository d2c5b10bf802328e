"""Mutual-information estimators: MINE-style neural bounds (DV, NWJ, InfoNCE, SMILE, MINE's moving-average DV)
fitted as batched ensembles, the closed-form Gaussian baseline, and the smoothed MI I_sigma of the empirical joint
(the headline reading of a sweep)."""

from ie_ray.estimators.bounds import dv_bound_bits, infonce_bound_bits, nwj_bound_bits
from ie_ray.estimators.critic import (
    EnsembleFunnelCritic,
    EnsembleHybridCritic,
    EnsembleSeparableCritic,
    funnel_widths,
)
from ie_ray.estimators.diagnostics import FLAGS, diagnose
from ie_ray.estimators.gaussian import (
    GaussianMIResult,
    GaussianParams,
    estimate_gaussian,
    gaussian_mi_bits,
    ledoit_wolf_shrinkage,
)
from ie_ray.estimators.interface import ALL_ESTIMATORS, ESTIMATORS, estimate
from ie_ray.estimators.mine import CRITICS, OBJECTIVES, MINEParams, estimate_mine, fit_mine_ensemble
from ie_ray.estimators.result import MIResult
from ie_ray.estimators.smoothed import Scale, SmoothedParams, SmoothedResult, smoothed_mi, smoothed_mi_batch

__all__ = [
    "ALL_ESTIMATORS",
    "CRITICS",
    "ESTIMATORS",
    "FLAGS",
    "OBJECTIVES",
    "EnsembleFunnelCritic",
    "EnsembleHybridCritic",
    "EnsembleSeparableCritic",
    "GaussianMIResult",
    "GaussianParams",
    "MINEParams",
    "MIResult",
    "Scale",
    "SmoothedParams",
    "SmoothedResult",
    "diagnose",
    "dv_bound_bits",
    "estimate",
    "estimate_gaussian",
    "estimate_mine",
    "fit_mine_ensemble",
    "funnel_widths",
    "gaussian_mi_bits",
    "infonce_bound_bits",
    "ledoit_wolf_shrinkage",
    "nwj_bound_bits",
    "smoothed_mi",
    "smoothed_mi_batch",
]
