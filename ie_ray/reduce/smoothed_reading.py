"""The headline reading: smoothed MI I_sigma of each job's states, every tau of the grid in one pass per job.

Why per layer: a block's noise scale is computed once from its macro states (the scale rule, `noise_scale.py`)
and shared by every macro and micro job of the block, so one task holds exactly the states it needs and fits all
(position, level, seed) problems of the block in one `smoothed_mi_batch` call. Jobs whose states repeat
(micro tokens, short prefixes) go in as weighted atoms (`LayerStates.atoms`), which the estimator treats as the
same sample of N, at the cost of the distinct states only.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ie_ray.errors import ConfigError
from ie_ray.estimators.smoothed import SmoothedParams, SmoothedReading, SmoothedResult, smoothed_mi_batch
from ie_ray.noise_scale import SCALE_RULES
from ie_ray.reduce.jobs import EstimateJob
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.reading import Reading, TaskResources, register_reading
from ie_ray.reduce.row import MIRow


def ceiling_flag(reading: SmoothedReading, ceiling_bits: float, params: SmoothedParams) -> str:
    """The estimator's flag, or "above_ceiling" where a reading it called ok lies materially above the ceiling.

    Flagged when the whole 95% interval (without replicates: estimate - 1.96 mc_se) lies above the job's entropy
    ceiling by more than the estimator's own tolerance, max(convergence_min_bits, convergence_fraction *
    ceiling) (0.05 bit, or 5%: the precision every other flag holds a reading to).
    Why a tolerance, where "below_zero" has none: 0 bounds every MI, but the ceiling is the plug-in entropy of
    this sample's prefixes, itself low by about (K - 1) / (2 N ln 2), and the extrapolated 2 I(N) - I(N/2) corrects
    towards the population's value, which may lie above it. Seen in the 20k ICL runs: micro readings of 25 names
    at tau 0.25 read 4.647-4.651 bits against a 4.643-bit ceiling, intervals +-0.004 bit, 6 of ~9,000 rows with the
    whole interval over (by at most 0.003 bit). Flagging those would drop a whole block's IE rows from `ok` for
    0.1% of one term. A reading over by more than the tolerance is a failed estimate and stays out of `ok`
    aggregates. The smoothed MI of the empirical law itself cannot exceed the ceiling (the input state is a
    function of the prefix), so the plug-in passes it only by Monte Carlo error.
    """
    if reading.flag != "ok":
        return reading.flag
    low = reading.ci_low if reading.reported else reading.mi_bits - 1.96 * reading.mc_se_bits
    tolerance = max(params.convergence_min_bits, params.convergence_fraction * abs(ceiling_bits))
    return "above_ceiling" if min(low, reading.mi_bits) > ceiling_bits + tolerance else "ok"


@register_reading
class SmoothedMIReading(Reading):
    name = "smoothed"
    section = "smoothed"
    table_prefix = "ie_sigma"
    sources = ("reduce/smoothed_reading.py", "reduce/layer_states.py", "noise_scale.py", "estimators/smoothed.py")
    has_tau = True

    def __init__(self, params: SmoothedParams, scale_rule: str, num_cpus: float = 1.0, num_gpus: float = 0.0):
        if scale_rule not in SCALE_RULES:
            raise ConfigError(f"smoothed.scale_rule {scale_rule!r} is unknown; use one of {list(SCALE_RULES)}")
        self.params, self.scale_rule = params, scale_rule
        self.num_cpus, self.num_gpus = num_cpus, num_gpus

    @classmethod
    def from_config(cls, config) -> SmoothedMIReading:
        from ie_ray.resources import smoothed_gpus

        gpus = config.reduce.num_gpus_per_task
        return cls(config.smoothed_params(), config.scale_rule, config.reduce.num_cpus_per_task,
                   smoothed_gpus(gpus) if gpus == "auto" else float(gpus))

    def key_dict(self) -> dict[str, Any]:
        return dict(self.params.key_dict(), scale_rule=self.scale_rule)

    def resources(self, n_samples: int, dim: int) -> TaskResources:
        return TaskResources(self.num_cpus, self.num_gpus)

    @property
    def reported_taus(self) -> set[float]:
        """Taus with an interval and a leave-one-out reading: the headline and any the config reports."""
        return {float(t) for t in self.params.reported}

    def fit_layer(self, states: LayerStates, jobs: list[EstimateJob]) -> list[MIRow]:
        scale_in, scale_out = states.scale("input", self.scale_rule), states.scale("output", self.scale_rule)
        fit = [j for j in jobs if j.n_distinct > 1]
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        counts: list[np.ndarray | None] = []
        for job in fit:
            atoms = states.atoms(job)
            if atoms is None:
                x, y = states.pair(job)
                xs.append(x)
                ys.append(y)
                counts.append(None)
            else:
                xs.append(atoms.x)
                ys.append(atoms.y)
                counts.append(atoms.counts)
        results = smoothed_mi_batch(xs, ys, self.params, [j.estimator_seed for j in fit],
                                    [scale_in.for_position(j.position) for j in fit],
                                    [scale_out.for_position(j.position) for j in fit], counts=counts) if fit else []
        rows = [row for job, result in zip(fit, results) for row in self._rows(job, result)]
        rows += [row for job in jobs if job.n_distinct <= 1 for row in self._constant_rows(job)]
        return rows

    def _rows(self, job: EstimateJob, result: SmoothedResult) -> list[MIRow]:
        rows = []
        for r in result.readings:
            reported = bool(r.reported)
            rows.append(MIRow.for_job(
                job, self.name, mi_bits=r.mi_bits, ci_low=r.ci_low, ci_high=r.ci_high,
                flag=ceiling_flag(r, job.ceiling_bits, self.params),
                tau=r.tau, sigma=r.sigma, plugin_bits=r.plugin_bits, half_sample_bits=r.half_bits,
                loo_bits=r.loo_bits, mc_se_bits=r.mc_se_bits, wall_s=result.wall_s / len(result.readings),
                bound_cap_bits=math.log2(job.n_samples), scale_rule=self.scale_rule,
                bootstrap_bits=np.asarray(r.bootstrap, dtype=np.float64),
                n_draws=float(r.n_draws), n_atoms=float(result.n_atoms),
                interval="bootstrap" if reported else "none"))
        return rows

    def _constant_rows(self, job: EstimateJob) -> list[MIRow]:
        """The input takes one value (the separator fed alone): MI is exactly 0 at every noise level. Replicates
        are zeros at reported taus and absent elsewhere, like the estimated rows they are averaged with."""
        replicates = max(1, self.params.n_bootstrap)
        return [MIRow.for_job(job, self.name, mi_bits=0.0, flag="constant", readout="exact", tau=tau,
                              plugin_bits=0.0, half_sample_bits=0.0, loo_bits=0.0, mc_se_bits=0.0,
                              bound_cap_bits=math.log2(job.n_samples), scale_rule=self.scale_rule, n_draws=0.0,
                              n_atoms=1.0, interval="exact",
                              bootstrap_bits=np.zeros(replicates if tau in self.reported_taus else 0))
                for tau in self.params.grid]

    def layer_notes(self, states: LayerStates) -> list[dict[str, Any]]:
        """The scale of each block side: rule, positions used, attention sinks left out (scales.parquet)."""
        notes = []
        for side in ("input", "output"):
            s = states.scale(side, self.scale_rule)
            d_eff = s.pooled.d_eff if s.pooled is not None else int(np.mean([v.d_eff for v in s.per_position.values()]))
            notes.append(dict(layer=states.layer, side=side, rule=s.rule, used_positions=list(s.used_positions),
                              sink_positions=list(s.sink_positions), position_norms=list(s.position_norms),
                              d_eff=d_eff))
        return notes
