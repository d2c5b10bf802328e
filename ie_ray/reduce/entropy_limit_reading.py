"""The entropy limit as a reading: what a perfect estimator of the paper's MI returns, counted exactly.

Block states are deterministic functions of the prefix, so MI(in; out) of an injective block is the entropy of
its distinct states (PAPER.md section 6). Distinct is decided in the block's standardised output coordinates
(the smoothed reading's scale rule), so the two readings look at the same geometry.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ie_ray.entropy_limit import distinct_states
from ie_ray.errors import ConfigError
from ie_ray.reduce.jobs import EstimateJob
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.reading import Reading, register_reading
from ie_ray.reduce.row import MIRow


@register_reading
class EntropyLimitReading(Reading):
    name = "entropy_limit"
    section = "entropy_limit"
    table_prefix = "ie_limit"
    sources = ("reduce/entropy_limit_reading.py", "reduce/layer_states.py", "noise_scale.py", "entropy_limit.py")
    exact = True

    def __init__(self, tolerance: float, scale_rule: str):
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
            raise ConfigError(f"entropy_limit.tolerance must be a number > 0 (RMS per standardised coordinate), "
                              f"got {tolerance!r}")
        self.tolerance, self.scale_rule = float(tolerance), scale_rule

    @classmethod
    def from_config(cls, config) -> EntropyLimitReading:
        return cls(config.entropy_tolerance, config.scale_rule)

    def key_dict(self) -> dict[str, Any]:
        return dict(tolerance=self.tolerance, scale_rule=self.scale_rule)

    def fit_layer(self, states: LayerStates, jobs: list[EstimateJob]) -> list[MIRow]:
        scale_out = states.scale("output", self.scale_rule)
        rows = []
        for job in jobs:
            start = time.perf_counter()
            _, y = states.pair(job)
            counted = distinct_states(y, states.symbols(job), spread=scale_out.for_position(job.position).spread,
                                      tolerance=self.tolerance)
            value = float(counted.entropy_bits)
            rows.append(MIRow.for_job(
                job, self.name, mi_bits=value, flag="constant" if job.n_distinct <= 1 else "ok",
                readout="exact_count", bound_cap_bits=counted.cap_bits, n_states=float(counted.n_states),
                n_merged=float(counted.n_merged), max_within_prefix_rms=counted.max_within_prefix_rms,
                interval="exact", bootstrap_bits=np.full(1, value), wall_s=time.perf_counter() - start))
        return rows
