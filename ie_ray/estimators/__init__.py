"""Mutual-information estimators: MINE with the Donsker-Varadhan bound, fitted as batched ensembles."""

from ie_ray.estimators.critic import EnsembleFunnelCritic, funnel_widths
from ie_ray.estimators.mine import MINEParams, dv_bound_bits, estimate_mine, fit_mine_ensemble
from ie_ray.estimators.result import MIResult

__all__ = [
    "EnsembleFunnelCritic",
    "MIResult",
    "MINEParams",
    "dv_bound_bits",
    "estimate_mine",
    "fit_mine_ensemble",
    "funnel_widths",
]
