"""The paper's reading: MINE (Donsker-Varadhan and the other neural bounds), several estimators per Ray task.

Estimates that share a shape are stacked and fitted together by the ensemble estimator (one kernel for E
critics; each result equals its solo fit, `fit_mine_ensemble`), so a task with 8 estimators costs far less than
8 tasks. Positions where the input takes a single value (the separator fed alone) have MI exactly 0: recorded
with flag `constant`, not handed to a critic to find nothing. An estimate that comes back NaN or diverged is
refitted once alone with a fresh seed; if that fails too it keeps its flag and a NaN value.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ie_ray.errors import ConfigError
from ie_ray.reduce.jobs import EstimateJob
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.reading import Reading, TaskResources, register_reading
from ie_ray.reduce.row import MIRow

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
MINE_POSITIONS = ("all", "last")


@register_reading
class MineReading(Reading):
    name = "mine"
    section = "estimator"
    table_prefix = "ie_mine"
    # "estimators/mine" is the package directory: every module of it (cache.code_version hashes them all).
    sources = ("reduce/mine_reading.py", "reduce/layer_states.py", "estimators/mine", "estimators/critic.py",
               "estimators/bounds.py", "estimators/diagnostics.py", "estimators/result.py")

    def __init__(self, params, positions: str = "all", estimators_per_task: int = 8, num_cpus: float = 1.0,
                 num_gpus_per_task: float | str = 0.0):
        if positions not in MINE_POSITIONS:
            raise ConfigError(f"mine.positions must be one of {list(MINE_POSITIONS)}, got {positions!r}")
        if estimators_per_task < 1:
            raise ConfigError("reduce.estimators_per_task must be >= 1")
        self.params, self.positions, self.estimators_per_task = params, positions, int(estimators_per_task)
        self.num_cpus, self.num_gpus_per_task = num_cpus, num_gpus_per_task

    @classmethod
    def from_config(cls, config) -> MineReading:
        return cls(config.estimator_params(), config.mine_positions, config.reduce.estimators_per_task,
                   config.reduce.num_cpus_per_task, config.reduce.num_gpus_per_task)

    @property
    def label(self) -> str:
        """The `estimator` column: bound and readout (e.g. mine-dv/heldout)."""
        return f"mine-{self.params.objective}/{self.params.readout}"

    def key_dict(self) -> dict[str, Any]:
        return dict(params=self.params.key_dict() if hasattr(self.params, "key_dict") else vars(self.params),
                    positions=self.positions)

    def select(self, jobs: list[EstimateJob], positions: list[int]) -> list[EstimateJob]:
        """`last`: E(l) only, the last macro position and the micro terms it averages (all of 0..T-1)."""
        if self.positions == "all":
            return jobs
        last = max(positions)
        return [j for j in jobs if j.level == "micro" or j.position == last]

    def tasks(self, jobs: list[EstimateJob]) -> list[list[EstimateJob]]:
        fit = [j for j in jobs if j.n_distinct > 1]
        chunks = [fit[i : i + self.estimators_per_task] for i in range(0, len(fit), self.estimators_per_task)]
        constant = [j for j in jobs if j.n_distinct <= 1]
        return chunks + ([constant] if constant else [])

    def resources(self, n_samples: int, dim: int) -> TaskResources:
        from ie_ray.resources import estimator_gpus

        gpus = estimator_gpus(self.num_gpus_per_task, self.params, self.estimators_per_task, n_samples, dim) \
            if n_samples else 0.0
        return TaskResources(self.num_cpus, gpus)

    def fit_layer(self, states: LayerStates, jobs: list[EstimateJob]) -> list[MIRow]:
        rows = [self._constant_row(j) for j in jobs if j.n_distinct <= 1]
        todo, attempt = [j for j in jobs if j.n_distinct > 1], 0
        while todo:
            results = self._fit(states, todo, attempt)
            retry = []
            for job, result in zip(todo, results):
                row = mine_row(job, result, attempt, estimator=self.label)
                if row.flag in RETRY_FLAGS and attempt < MAX_RETRIES:
                    retry.append(job)
                else:
                    rows.append(row)
            todo, attempt = retry, attempt + 1
        return rows

    def _fit(self, states: LayerStates, jobs: list[EstimateJob], attempt: int) -> list[dict[str, Any]]:
        from ie_ray.estimators import fit_mine_ensemble

        pairs = [states.pair(job) for job in jobs]
        xs = np.stack([p[0] for p in pairs]).astype(np.float32, copy=False)
        ys = np.stack([p[1] for p in pairs]).astype(np.float32, copy=False)
        seeds = [job.seed_for_attempt(attempt) for job in jobs]
        # a retry is fitted alone: it must not depend on its old neighbours (ensembles are independent anyway)
        results = fit_mine_ensemble(xs, ys, self.params, seeds)
        return [dict(**r.to_row(), bootstrap_bits=np.asarray(r.bootstrap, dtype=np.float64)) for r in results]

    def _constant_row(self, job: EstimateJob) -> MIRow:
        """MI of a constant input is exactly 0, and so is its ceiling."""
        return MIRow.for_job(job, self.name, mi_bits=0.0, flag="constant", readout="exact",
                             objective=self.params.objective, estimator=self.label, ceiling_bits=0.0,
                             heldout_bits=0.0, max_train_bits=0.0, last_train_bits=0.0, interval="exact",
                             bootstrap_bits=np.zeros(max(1, self.params.n_bootstrap)))


def mine_row(job: EstimateJob, result: dict[str, Any], attempt: int = 0, estimator: str = "mine") -> MIRow:
    """The row of one MINE fit (`MIResult.to_row()` plus `bootstrap_bits`), with the reducer's flag: a
    non-finite value is never `ok`; a failed fit (NaN, diverged) has no value; an `ok` fit is checked against
    the entropy ceiling (`reading_flag`)."""
    mi_bits = float(result["mi_bits"])
    flag = result.get("flag", "ok")
    if not np.isfinite(mi_bits) and flag == "ok":
        flag = "nan"  # whatever the estimator said, a non-finite value is never an "ok" number
    if flag in RETRY_FLAGS:
        mi_bits = math.nan
    elif flag == "ok":
        flag = reading_flag(mi_bits, result.get("ci_low", math.nan), result.get("ci_high", math.nan),
                            result.get("max_train_bits", math.nan), job.ceiling_bits)
    extras = {k: float(result[k]) for k in ("heldout_bits", "max_train_bits", "last_train_bits", "n_train",
                                             "n_heldout", "steps", "wall_s", "bound_cap_bits", "tau",
                                             "half_sample_bits", "mc_se_bits") if k in result}
    return MIRow.for_job(job, "mine", mi_bits=mi_bits, flag=flag, ci_low=result.get("ci_low", math.nan),
                         ci_high=result.get("ci_high", math.nan), readout=result.get("readout", "heldout"),
                         objective=result.get("objective", "dv"), estimator=estimator, attempt=attempt,
                         interval="bootstrap",
                         bootstrap_bits=np.asarray(result.get("bootstrap_bits", []), dtype=np.float64), **extras)


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
