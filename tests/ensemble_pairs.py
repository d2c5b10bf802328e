"""Three correlated-Gaussian problems fitted as one ensemble and one by one, for the tests that check the batched
trainer equals independent fits (bit for bit for the separable critics, to float tolerance for the joint one)."""
from __future__ import annotations

import numpy as np

from ie_ray.estimators import MINEParams, estimate_mine, fit_mine_ensemble
from ie_ray.estimators.benchmark import correlated_gaussians


def ensemble_and_alone(params: MINEParams) -> list[tuple]:
    """[(ensemble member's result, the same problem fitted alone)] for 1, 2 and 3 bits at d = 16, N = 400."""
    problems = [correlated_gaussians(16, 1.0 + i, 400, seed=i) for i in range(3)]
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    seeds = [11, 12, 13]
    together = fit_mine_ensemble(xs, ys, params, seeds)
    return [(joint, estimate_mine(x, y, params, seed=seed)) for (x, y), seed, joint in zip(problems, seeds, together)]
