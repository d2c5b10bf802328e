"""Distributions with closed-form MI, to check estimators against the truth (true vs estimated is an output).

Correlated Gaussians: x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps, so each of the d coordinate pairs has
correlation rho and MI = -d/2 log2(1 - rho^2) bits. Any invertible map of x or of y leaves the MI unchanged.
"""

from __future__ import annotations

import math

import numpy as np


def correlated_gaussians(d: int, mi_bits: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n float32 pairs (x, y) of d dims each, with rho chosen so that MI = mi_bits exactly.

    MI = -d/2 log2(1 - rho^2)  =>  rho^2 = 1 - 2^(-2 mi / d).
    """
    rho = math.sqrt(1.0 - 2.0 ** (-2.0 * mi_bits / d))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1.0 - rho**2) * rng.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.float32)


def independent_gaussians(d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n float32 pairs of independent N(0, I_d) vectors: MI = 0."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)
