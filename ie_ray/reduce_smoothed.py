"""Reducer stage for the well-posed readings: smoothed MI I_sigma and the entropy limit, one Ray task per layer.

Why per layer: a block's noise scale is computed once from its macro states (the scale rule, `noise_scale.py`)
and shared by every macro and micro reading of that block, so one task holds exactly the states it needs and
fits all (position, level, seed) problems of the block in one call (`smoothed_mi_batch`): thousands of
estimates per model cost a few dozen tasks, not thousands. Each task's rows are cached as one shard (one JSON
per (cell, layer, settings)), so a rerun refits nothing that finished.

Rows follow the MINE reducer's columns (`reduce.py`), with `reading` = "smoothed" (one row per tau) or
"entropy_limit", so `ie.information_emergence` turns each reading into IE the same way.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ie_ray.entropy_limit import distinct_states
from ie_ray.estimators.smoothed import SmoothedParams, smoothed_mi_batch
from ie_ray.noise_scale import block_scale
from ie_ray.reduce import EstimateJob


@dataclass(frozen=True)
class LayerProblem:
    """Everything one layer's task needs besides the states: which readings, positions, seeds, settings."""

    layer: int
    positions: tuple[int, ...]
    micro_positions: tuple[int, ...]
    seeds: tuple[int, ...]
    readings: tuple[str, ...]
    scale_rule: str
    tolerance: float

    def key_dict(self) -> dict:
        return asdict(self)


def plan_layer_jobs(input_ids: np.ndarray, problem: LayerProblem) -> list[EstimateJob]:
    """The (position, level, seed) jobs of one layer, with their entropy ceilings (as `reduce.plan_jobs`)."""
    from ie_ray.reduce import plan_jobs

    jobs = plan_jobs(input_ids, [problem.layer], list(problem.positions), list(problem.seeds),
                     with_micro=bool(problem.micro_positions))
    return [j for j in jobs if j.level == "macro" or j.position in problem.micro_positions]


def reduce_layer(
    problem: LayerProblem,
    params: SmoothedParams,
    input_ids: np.ndarray,
    macro_pre: np.ndarray,
    macro_post: np.ndarray,
    micro_pre: np.ndarray | None,
    micro_post: np.ndarray | None,
    token_row: np.ndarray | None,
    threads: float = 1.0,
) -> dict:
    """Ray task body: the smoothed and entropy-limit rows of one layer, and the scales used.

    macro_pre/post (N, P, d): states at the analysed positions; micro_pre/post (U, d): each unique token fed
    alone; token_row (N, T): row of each sample's token in the micro arrays.
    """
    import torch

    torch.set_num_threads(max(1, int(threads)))
    positions = list(problem.positions)
    scale_in = block_scale(macro_pre, positions, problem.scale_rule)
    scale_out = block_scale(macro_post, positions, problem.scale_rule)
    jobs = plan_layer_jobs(input_ids, problem)

    def states(job: EstimateJob) -> tuple[np.ndarray, np.ndarray]:
        if job.level == "macro":
            j = positions.index(job.position)
            return macro_pre[:, j], macro_post[:, j]
        rows = token_row[:, job.position]
        return micro_pre[rows], micro_post[rows]

    rows: list[dict] = []
    if "entropy_limit" in problem.readings:
        for job in jobs:
            x, y = states(job)
            symbols = input_ids[:, : job.position + 1] if job.level == "macro" else input_ids[:, job.position]
            counted = distinct_states(y, symbols, spread=scale_out.for_position(job.position).spread,
                                      tolerance=problem.tolerance)
            rows.append(_limit_row(job, counted, params.n_bootstrap))
    if "smoothed" in problem.readings:
        fit = [j for j in jobs if j.n_distinct > 1]
        results = smoothed_mi_batch(
            [states(j)[0] for j in fit], [states(j)[1] for j in fit], params, [j.estimator_seed for j in fit],
            [scale_in.for_position(j.position) for j in fit], [scale_out.for_position(j.position) for j in fit])
        for job, result in zip(fit, results):
            rows.extend(_smoothed_rows(job, result, problem.scale_rule))
        for job in (j for j in jobs if j.n_distinct <= 1):
            rows.extend(_constant_smoothed_rows(job, params, problem.scale_rule))
    scales = [dict(layer=problem.layer, side=side, rule=s.rule, used_positions=list(s.used_positions),
                   sink_positions=list(s.sink_positions), position_norms=list(s.position_norms),
                   d_eff=(s.pooled.d_eff if s.pooled is not None else int(np.mean([v.d_eff for v in
                                                                                   s.per_position.values()]))))
              for side, s in (("input", scale_in), ("output", scale_out))]
    return dict(rows=rows, scales=scales)


def _base(job: EstimateJob) -> dict:
    return dict(layer=job.layer, position=job.position, level=job.level, seed=job.seed,
                estimator_seed=job.estimator_seed, attempt=0, ceiling_bits=job.ceiling_bits,
                n_distinct=job.n_distinct, n_samples=job.n_samples)


def _smoothed_rows(job: EstimateJob, result, scale_rule: str) -> list[dict]:
    rows = []
    for r in result.readings:
        rows.append(dict(
            **_base(job), reading="smoothed", readout="smoothed", objective="smoothed", tau=r.tau, sigma=r.sigma,
            mi_bits=r.mi_bits, plugin_bits=r.plugin_bits, heldout_bits=r.mi_bits, half_sample_bits=r.half_bits,
            loo_bits=r.loo_bits,
            mc_se_bits=r.mc_se_bits, max_train_bits=math.nan, last_train_bits=math.nan, ci_low=r.ci_low,
            ci_high=r.ci_high, wall_s=result.wall_s / len(result.readings), flag=r.flag,
            bound_cap_bits=math.log2(job.n_samples), scale_rule=scale_rule,
            bootstrap_bits=np.asarray(r.bootstrap, dtype=np.float64)))
    return rows


def _constant_smoothed_rows(job: EstimateJob, params: SmoothedParams, scale_rule: str) -> list[dict]:
    """The input takes one value (the separator fed alone): MI is exactly 0 at every noise level."""
    return [dict(**_base(job), reading="smoothed", readout="exact", objective="smoothed", tau=tau, sigma=math.nan,
                 mi_bits=0.0, plugin_bits=0.0, heldout_bits=0.0, half_sample_bits=0.0, loo_bits=0.0, mc_se_bits=0.0,
                 max_train_bits=math.nan, last_train_bits=math.nan, ci_low=0.0, ci_high=0.0, wall_s=0.0,
                 flag="constant", bound_cap_bits=math.log2(job.n_samples), scale_rule=scale_rule,
                 bootstrap_bits=np.zeros(max(1, params.n_bootstrap)))
            for tau in params.grid]


def _limit_row(job: EstimateJob, counted, n_bootstrap: int) -> dict:
    """The entropy limit of one (layer, position, level): exact, so its interval is a point."""
    value = float(counted.entropy_bits)
    return dict(**_base(job), reading="entropy_limit", readout="exact_count", objective="entropy_limit",
                tau=math.nan, mi_bits=value, heldout_bits=value, max_train_bits=math.nan, last_train_bits=math.nan,
                ci_low=value, ci_high=value, wall_s=0.0, flag="constant" if job.n_distinct <= 1 else "ok",
                bound_cap_bits=counted.cap_bits, n_states=counted.n_states, n_merged=counted.n_merged,
                max_within_prefix_rms=counted.max_within_prefix_rms,
                bootstrap_bits=np.full(max(1, n_bootstrap), value))


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(["reading", "layer", "position", "level", "seed", "tau"],
                                          na_position="first").reset_index(drop=True)
