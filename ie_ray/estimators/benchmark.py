"""Distributions with closed-form MI, to check estimators against the truth (true vs estimated is an output).

Three families, each sampled as n float32 pairs (x, y) of d dims each for a requested MI in bits:

- "gaussian": x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps, so each of the d coordinate pairs has correlation
  rho and MI = -d/2 log2(1 - rho^2) exactly.
- "nonlinear": the same pairs seen through invertible maps, x' = cube(x) Qx and y' = asinh(4 y) Qy with random
  orthogonal Qx, Qy (a per-coordinate monotone map, then a rotation that mixes the coordinates). Invertible maps
  of x and of y leave MI unchanged, so the truth is the Gaussian one; the Gaussian closed form on (x', y') is
  then only a baseline (it sees the covariance of heavy-tailed, mixed coordinates). tanh is avoided: in float32
  it saturates to +-1 and stops being invertible.
- "lowrank": the MI carried by LOWRANK_PAIRS correlated coordinate pairs (the Gaussian construction at that
  width), the other d - LOWRANK_PAIRS dims independent N(0, 1) noise, then a random rotation of x and another of
  y (MI unchanged): dependence in a few directions of a wide state, as in hidden states (whose covariance is far
  from isotropic), and the case a low-dimensional embedding can find. Opt-in (EXTRA_FAMILIES).
- "sparse": like "lowrank" but with SPARSE_PAIRS coordinate pairs whose MI shares fall off as 1/j (pair j
  carries mi / (j H) bits, H the harmonic number), then the random rotations: a few strong directions and a
  tail of weak ones, as in a state whose dependence is concentrated but not equally so. Opt-in.
- "halfcube", "asinh": a "lowrank" sample seen through a per-coordinate monotone warp of every rotated
  coordinate of x and of y, v -> v |v|^0.5 (heavier tails) and v -> asinh(ASINH_GAIN v) (lighter tails).
  A per-coordinate strictly monotone map is invertible, so MI is unchanged: the truth is the lowrank one,
  while the warps bend the few informative directions, which a linear or Gaussian reading cannot undo. Opt-in.
- "resmap": a "lowrank" sample whose y goes through the residual map y -> y + g(y) of the "residual" family
  (g 0.9-Lipschitz, so the map is invertible and MI is unchanged): concentrated MI behind a residual block
  (the "residual" family spreads its MI over all d directions, which at d >= 256 reads ~0 for every neural
  estimator and so cannot rank them). Opt-in.
- "residual": like a residual block with a noisy input, z = (I + B) x + sigma eps (a random linear residual
  branch B, Gaussian x and eps), then y = z + g(z) with g(z) = 0.9 W2 tanh(W1 z), ||W1||_2 = ||W2||_2 = 1.
  g is 0.9-Lipschitz, so z -> z + g(z) is invertible (a contraction argument, as for invertible ResNets) and
  I(x; y) = I(x; z) = 1/2 log2 det(I + A A^T / sigma^2) with A = I + B, in closed form; sigma is solved for
  the requested MI. Here tanh is harmless: the skip connection carries z through unsaturated.

`Task.invert` maps (x', y') back to the Gaussian pair the closed form is about, so tests can check that the
generators give the MI they claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The default validation grid's families (their tasks' seeds and cached parts depend on this order).
FAMILIES: tuple[str, ...] = ("gaussian", "nonlinear", "residual")
#: Families a grid can ask for by name on top (kept out of FAMILIES so the default grid's parts stay valid).
#: New families are appended: `make_tasks` seeds a task from its family's position in the list it is given.
EXTRA_FAMILIES: tuple[str, ...] = ("lowrank", "sparse", "halfcube", "asinh", "resmap")
#: The opt-in families whose MI sits in a few directions (MI concentrated: what can rank neural estimators).
CONCENTRATED_FAMILIES: tuple[str, ...] = EXTRA_FAMILIES
ALL_FAMILIES: tuple[str, ...] = (*FAMILIES, *EXTRA_FAMILIES)
#: Coordinate pairs that carry all of the MI in the "lowrank" family.
LOWRANK_PAIRS: int = 4
#: Coordinate pairs that carry the MI in the "sparse" family (shares falling off as 1/j).
SPARSE_PAIRS: int = 16
#: Lipschitz constant of the residual branch g (< 1 keeps z -> z + g(z) invertible).
RESIDUAL_LIPSCHITZ: float = 0.9
#: Scale of the random linear residual branch B (entries N(0, RESIDUAL_B_SCALE^2 / d)).
RESIDUAL_B_SCALE: float = 0.5
#: Input gain inside asinh for the "nonlinear" family's y map: large enough to bend, small enough for float32.
ASINH_GAIN: float = 4.0


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


@dataclass(frozen=True)
class Task:
    """One synthetic problem: family, dims, the MI it is built to have, and the maps that build it.

    All randomness (maps and samples) comes from `seed`, so `sample` is reproducible and the maps are the same
    for every n.
    """

    family: str
    d: int
    mi_bits: float
    seed: int

    def __post_init__(self) -> None:
        if self.family not in ALL_FAMILIES:
            raise ValueError(f"unknown task family {self.family!r}; choose one of {list(ALL_FAMILIES)}")
        if self.d < 1:
            raise ValueError(f"d must be >= 1, got {self.d}")
        if not self.mi_bits > 0:
            raise ValueError(f"mi_bits must be > 0, got {self.mi_bits}")

    @property
    def name(self) -> str:
        return f"{self.family}-d{self.d}-{self.mi_bits:g}bit"

    def sample(self, n: int, sample_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """n float32 pairs (x, y) with I(X; Y) = mi_bits exactly."""
        rng = np.random.default_rng([self.seed, sample_seed])
        if self.family == "residual":
            return self._sample_residual(n, rng)
        if self.family in EXTRA_FAMILIES:
            return self._sample_concentrated(n, rng)
        rho = math.sqrt(1.0 - 2.0 ** (-2.0 * self.mi_bits / self.d))
        x = rng.standard_normal((n, self.d))
        y = rho * x + math.sqrt(1.0 - rho**2) * rng.standard_normal((n, self.d))
        if self.family == "nonlinear":
            qx, qy = self._rotations()
            x, y = x**3 @ qx, np.arcsinh(ASINH_GAIN * y) @ qy
        return x.astype(np.float32), y.astype(np.float32)

    def invert(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undo the invertible maps: for "nonlinear" the correlated Gaussian pair, for "residual" (x, z) with
        z = A x + sigma eps (y = z + g(z) inverted by fixed-point iteration, which converges because g is a
        contraction); identity for "gaussian". The closed-form MI is exactly the Gaussian MI of the result."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if self.family == "nonlinear":
            qx, qy = self._rotations()
            return np.cbrt(x @ qx.T), np.sinh(y @ qy.T) / ASINH_GAIN
        if self.family in EXTRA_FAMILIES:
            if self.family == "halfcube":
                x, y = _unwarp_halfcube(x), _unwarp_halfcube(y)
            elif self.family == "asinh":
                x, y = np.sinh(x) / ASINH_GAIN, np.sinh(y) / ASINH_GAIN
            elif self.family == "resmap":
                y = self._unresidual(y)
            qx, qy = self._rotations()
            return x @ qx.T, y @ qy.T
        if self.family == "residual":
            return x, self._unresidual(y)
        return x, y

    def pair_mi_bits(self) -> np.ndarray:
        """The MI (bits) each correlated coordinate pair carries before the rotations, for the concentrated
        families: equal shares over LOWRANK_PAIRS pairs, or shares falling off as 1/j over SPARSE_PAIRS."""
        if self.family == "sparse":
            share = 1.0 / np.arange(1, min(SPARSE_PAIRS, self.d) + 1)
        else:
            share = np.ones(min(LOWRANK_PAIRS, self.d))
        return self.mi_bits * share / share.sum()

    def _sample_concentrated(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Correlated pairs (pair_mi_bits) in the first coordinates, independent noise elsewhere, the random
        rotations, then the family's invertible warp. "lowrank" draws exactly what it drew before the other
        concentrated families existed (same calls on the same generator)."""
        rho = np.sqrt(1.0 - 2.0 ** (-2.0 * self.pair_mi_bits()))
        k = rho.size
        x = rng.standard_normal((n, self.d))
        y = rng.standard_normal((n, self.d))
        y[:, :k] = rho * x[:, :k] + np.sqrt(1.0 - rho**2) * y[:, :k]
        qx, qy = self._rotations()
        x, y = x @ qx, y @ qy
        if self.family == "halfcube":
            x, y = x * np.sqrt(np.abs(x)), y * np.sqrt(np.abs(y))
        elif self.family == "asinh":
            x, y = np.arcsinh(ASINH_GAIN * x), np.arcsinh(ASINH_GAIN * y)
        elif self.family == "resmap":
            _, _, w1, w2 = self._residual_maps()
            y = y + RESIDUAL_LIPSCHITZ * np.tanh(y @ w1.T) @ w2.T
        return x.astype(np.float32), y.astype(np.float32)

    def _unresidual(self, y: np.ndarray) -> np.ndarray:
        """z with z + g(z) = y, by fixed-point iteration (converges: g is a contraction)."""
        _, _, w1, w2 = self._residual_maps()
        z = y.copy()
        for _ in range(200):
            z = y - RESIDUAL_LIPSCHITZ * np.tanh(z @ w1.T) @ w2.T
        return z

    def _rotations(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0xA11])
        return _orthogonal(self.d, rng), _orthogonal(self.d, rng)

    def _residual_maps(self) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """(A = I + B, sigma, W1, W2): sigma solved so that 1/2 log2 det(I + A A^T / sigma^2) = mi_bits."""
        rng = np.random.default_rng([self.seed, 0x4E5])
        a = np.eye(self.d) + RESIDUAL_B_SCALE * rng.standard_normal((self.d, self.d)) / math.sqrt(self.d)
        w1 = _unit_spectral_norm(rng.standard_normal((self.d, self.d)))
        w2 = _unit_spectral_norm(rng.standard_normal((self.d, self.d)))
        s2 = np.linalg.svd(a, compute_uv=False) ** 2
        return a, _sigma_for_mi(s2, self.mi_bits), w1, w2

    def _sample_residual(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        a, sigma, w1, w2 = self._residual_maps()
        x = rng.standard_normal((n, self.d))
        z = x @ a.T + sigma * rng.standard_normal((n, self.d))
        y = z + RESIDUAL_LIPSCHITZ * np.tanh(z @ w1.T) @ w2.T
        return x.astype(np.float32), y.astype(np.float32)

    def residual_mi_bits(self) -> float:
        """The closed form 1/2 log2 det(I + A A^T / sigma^2) recomputed from the maps (equals mi_bits up to the
        root solver's tolerance; tests check that)."""
        a, sigma, _, _ = self._residual_maps()
        return _gaussian_channel_bits(np.linalg.svd(a, compute_uv=False) ** 2, sigma)


def make_tasks(dims: list[int], mi_bits: list[float], families: list[str], seed: int = 0) -> list[Task]:
    """Every (family, d, MI) combination, each with its own seed derived from `seed` and its position."""
    return [
        Task(f, d, mi, int(np.random.SeedSequence([seed, i, j, k]).generate_state(1)[0]))
        for i, f in enumerate(families)
        for j, d in enumerate(dims)
        for k, mi in enumerate(mi_bits)
    ]


def _gaussian_channel_bits(s2: np.ndarray, sigma: float) -> float:
    """I(x; A x + sigma eps) for x ~ N(0, I), from the squared singular values s2 of A."""
    return float(0.5 * np.log2(1.0 + s2 / sigma**2).sum())


def _sigma_for_mi(s2: np.ndarray, mi_bits: float) -> float:
    """Bisection on log sigma (the MI decreases monotonically in sigma) to 1e-12 relative."""
    lo, hi = -30.0, 30.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _gaussian_channel_bits(s2, math.exp(mid)) > mi_bits:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-random orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _unwarp_halfcube(v: np.ndarray) -> np.ndarray:
    """The inverse of v -> v |v|^0.5: sign(v) |v|^(2/3)."""
    return np.sign(v) * np.abs(v) ** (2.0 / 3.0)


def _unit_spectral_norm(w: np.ndarray) -> np.ndarray:
    return w / np.linalg.norm(w, 2)
