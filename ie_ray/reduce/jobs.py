"""The estimates a cell needs: one `EstimateJob` per (layer, position, level, seed), with its entropy ceiling.

A job is the identity of an estimate (what the cache keys and the rows carry); which reading fits it and how
is the readings' business (`reading.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ie_ray.entropy_limit import entropy_bits

LEVEL_CODES = {"macro": 0, "micro": 1}


@dataclass(frozen=True)
class EstimateJob:
    """One MI estimate to make: which states, which ceiling, which seed."""

    layer: int
    position: int
    level: str
    seed: int
    ceiling_bits: float
    n_distinct: int
    n_samples: int

    @property
    def estimator_seed(self) -> int:
        """Distinct, reproducible seed per estimate (independent critics, same numbers on rerun)."""
        return self.seed_for_attempt(0)

    def seed_for_attempt(self, attempt: int) -> int:
        """Attempt 0 is the estimate's own seed; a retry after NaN/divergence draws a fresh, reproducible one."""
        entropy = [self.seed, self.layer, self.position, LEVEL_CODES[self.level]] + ([attempt] if attempt else [])
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    @property
    def identity(self) -> dict:
        """What names the estimate in a cache key (the ceiling and counts follow from the states)."""
        return dict(layer=self.layer, position=self.position, level=self.level, seed=self.seed)


def plan_jobs(
    input_ids: np.ndarray, layers: list[int], positions: list[int], seeds: list[int], with_micro: bool
) -> list[EstimateJob]:
    """Every estimate a (model, corpus) needs, with its entropy ceiling computed from the token ids.

    Macro estimates at the requested positions; micro estimates at every position 0..max(positions), because
    IE at t averages the micro MI over positions 0..t.
    """
    wanted: list[tuple[str, int]] = [("macro", t) for t in positions]
    if with_micro:
        wanted += [("micro", t) for t in range(max(positions) + 1)]
    jobs = []
    for level, t in wanted:
        symbols = input_ids[:, : t + 1] if level == "macro" else input_ids[:, t]
        ceiling = entropy_bits(symbols)
        n_distinct = len(np.unique(symbols, axis=0))
        for layer in layers:
            for seed in seeds:
                jobs.append(EstimateJob(layer, t, level, seed, ceiling, n_distinct, len(input_ids)))
    return jobs
