"""Reducer stage: fit one MI estimator per (layer, position, level, seed) as Ray tasks, several per task.

Estimates that share a shape are stacked and fitted together by the ensemble estimator (one kernel for E
critics), so a task with 8 estimators costs far less than 8 tasks. Positions where the input variable takes a
single value (e.g. the separator of an ICL list at the micro level) have MI exactly 0 by definition; they are
recorded as such with flag `constant` instead of asking a neural estimator to find nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ie_ray.ie import entropy_bits

LEVEL_CODES = {"macro": 0, "micro": 1}
# Flags that mean "no usable number": refit once with a fresh seed, then keep the flag and a NaN value.
RETRY_FLAGS = ("nan", "diverged")
MAX_RETRIES = 1
# An estimate this far above the entropy ceiling is flagged: the true MI cannot exceed the ceiling.
ABOVE_CEILING_TOLERANCE_BITS = 0.25
# A critic whose best training bound exceeds the entropy ceiling by more than this has memorised its training
# pairs (no critic can find more information than there is): its held-out reading is not a sound number. Not 0:
# the max over steps of a minibatch bound overshoots by noise alone; on the default job's healthy readings
# (held-out within 0.1 bit of the ceiling) it overshot by 1.1-1.9 bits, on the failed ones by 7-20 bits.
MEMORISED_MARGIN_BITS = 3.0
# A held-out reading whose 95% interval is wider than this says nothing at the scale of IE (a few bits).
MAX_INTERVAL_BITS = 4.0


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


def _fit_group(xs: np.ndarray, ys: np.ndarray, params, seeds: list[int], threads: float) -> list[dict]:
    """Ray task body: fit E estimators in one ensemble; returns plain dicts (cheap to ship back)."""
    import torch

    from ie_ray.estimators import fit_mine_ensemble

    torch.set_num_threads(max(1, int(threads)))
    results = fit_mine_ensemble(xs, ys, params, seeds)
    return [dict(**r.to_row(), bootstrap_bits=np.asarray(r.bootstrap, dtype=np.float64)) for r in results]


def fit_jobs(
    jobs: list[EstimateJob],
    states_for: Callable[[EstimateJob], tuple[np.ndarray, np.ndarray]],
    params,
    estimators_per_task: int,
    num_cpus: float,
    num_gpus: float,
    progress_label: str = "estimators",
    cache: EstimateCache | None = None,
) -> pd.DataFrame:
    """Fit all jobs as Ray tasks and return the tidy MI rows (without model/corpus/shots columns).

    With a `cache`, finished estimates are read back instead of refitted and every new row is saved the
    moment its task returns. An estimate that comes back NaN or diverged is refitted once alone with a fresh
    seed; if that fails too, the row keeps its flag (and a NaN value), so it is never averaged as a number.
    """
    import ray
    from tqdm.auto import tqdm

    rows: list[dict] = []
    to_fit = []
    for job in jobs:
        cached = cache.load(job) if cache is not None else None
        if cached is not None:
            rows.append(cached)
        elif job.n_distinct <= 1:
            rows.append(_constant_row(job, params))
        else:
            to_fit.append(job)

    fit_remote = ray.remote(_fit_group).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=2)

    def submit(chunk: list[EstimateJob], attempt: int) -> None:
        pairs = [states_for(job) for job in chunk]
        xs = np.stack([p[0] for p in pairs]).astype(np.float32, copy=False)
        ys = np.stack([p[1] for p in pairs]).astype(np.float32, copy=False)
        seeds = [job.seed_for_attempt(attempt) for job in chunk]
        pending[fit_remote.remote(ray.put(xs), ray.put(ys), params, seeds, num_cpus)] = (chunk, attempt)

    pending: dict = {}
    for start in range(0, len(to_fit), estimators_per_task):
        submit(to_fit[start : start + estimators_per_task], attempt=0)
    with tqdm(total=len(to_fit), desc=progress_label, unit="est") as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            chunk, attempt = pending.pop(done[0])
            for job, result in zip(chunk, ray.get(done[0])):
                row = _job_row(job, result, attempt)
                if row["flag"] in RETRY_FLAGS and attempt < MAX_RETRIES:
                    submit([job], attempt + 1)  # alone: a retry must not depend on its old neighbours
                    continue
                if cache is not None:
                    cache.save(job, row)
                rows.append(row)
                bar.update(1)
    return pd.DataFrame(rows).sort_values(["layer", "position", "level", "seed"]).reset_index(drop=True)


class EstimateCache:
    """Binds the shard cache to one cell: the key of a job is (cell states, job identity, estimator params)."""

    def __init__(self, shards, states_key: str, params: dict, **where) -> None:
        self.shards, self.states_key, self.params, self.where = shards, states_key, params, where
        self._peeked: dict[str, dict] = {}

    def _key(self, job: EstimateJob) -> str:
        return self.shards.estimate_key(self.states_key, job, self.params)

    def _record(self, job: EstimateJob, key: str, status: str) -> None:
        self.shards.record("estimates", status, key, **self.where, layer=job.layer, position=job.position,
                           level=job.level, seed=job.seed)

    def peek(self, job: EstimateJob) -> dict | None:
        """The cached row, without counting it as reused yet; `load` later takes it from memory, so asking
        "is everything cached?" before fitting reads each file once."""
        key = self._key(job)
        row = self.shards.load_estimate(key)
        if row is not None:
            self._peeked[key] = row
        return row

    def load(self, job: EstimateJob) -> dict | None:
        key = self._key(job)
        row = self._peeked.pop(key) if key in self._peeked else self.shards.load_estimate(key)
        if row is not None:
            self._record(job, key, "reused")
        return row

    def save(self, job: EstimateJob, row: dict) -> None:
        key = self._key(job)
        self.shards.save_estimate(key, row)
        self._record(job, key, "computed")


def _job_row(job: EstimateJob, result: dict, attempt: int = 0) -> dict:
    row = dict(
        layer=job.layer,
        position=job.position,
        level=job.level,
        seed=job.seed,
        estimator_seed=job.seed_for_attempt(attempt),
        attempt=attempt,
        ceiling_bits=job.ceiling_bits,
        n_distinct=job.n_distinct,
        **{k: v for k, v in result.items() if k != "seed"},
    )
    row.setdefault("flag", "ok")
    if not np.isfinite(row["mi_bits"]) and row["flag"] == "ok":
        row["flag"] = "nan"  # whatever the estimator said, a non-finite value is never an "ok" number
    if row["flag"] in RETRY_FLAGS:
        row["mi_bits"] = float("nan")
    elif row["flag"] == "ok":
        row["flag"] = reading_flag(row["mi_bits"], row["ci_low"], row["ci_high"], row.get("max_train_bits", math.nan),
                                   job.ceiling_bits)
    return row


def reading_flag(mi_bits: float, ci_low: float, ci_high: float, max_train_bits: float, ceiling_bits: float) -> str:
    """The reducer's flag of a MINE reading that the estimator itself called ok, against the entropy ceiling:
    `above_ceiling` (the value exceeds what any true MI can be), `memorised` (the best training bound exceeds the
    ceiling by more than MEMORISED_MARGIN_BITS), `unstable` (the interval is wider than MAX_INTERVAL_BITS), else
    ok. Any of these keeps every IE figure built on the reading from reading `ok`."""
    if mi_bits > ceiling_bits + ABOVE_CEILING_TOLERANCE_BITS:
        return "above_ceiling"
    if math.isfinite(max_train_bits) and max_train_bits > ceiling_bits + MEMORISED_MARGIN_BITS:
        return "memorised"
    if ci_high - ci_low > MAX_INTERVAL_BITS:
        return "unstable"
    return "ok"


def _constant_row(job: EstimateJob, params) -> dict:
    return dict(
        layer=job.layer,
        position=job.position,
        level=job.level,
        seed=job.seed,
        estimator_seed=job.estimator_seed,
        attempt=0,
        ceiling_bits=0.0,
        n_distinct=job.n_distinct,
        n_samples=job.n_samples,
        mi_bits=0.0,
        readout="exact",
        heldout_bits=0.0,
        max_train_bits=0.0,
        last_train_bits=0.0,
        ci_low=0.0,
        ci_high=0.0,
        wall_s=0.0,
        flag="constant",
        objective=params.objective,
        bound_cap_bits=float("nan"),
        bootstrap_bits=np.zeros(max(1, params.n_bootstrap)),
    )
