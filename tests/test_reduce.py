"""The MINE reading never writes a failed estimate as a plain number: NaN is refitted once with a fresh seed, and
flagged (with a NaN value) if the refit fails too. The task body runs in-process (`fit_task`), so a mutant of the
reading is seen by these tests, not hidden in a Ray worker."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray.estimators import MINEParams
from ie_ray.ie import information_emergence
from ie_ray.reduce import MAX_RETRIES, EstimateJob, MineReading, mine_row, rows_frame
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.scheduler import fit_task

PARAMS = MINEParams(steps=20, batch_size=64, n_bootstrap=10)
N = 256


def _jobs() -> list[EstimateJob]:
    return [EstimateJob(layer=0, position=t, level=level, seed=0, ceiling_bits=4.0, n_distinct=16, n_samples=N)
            for level in ("macro", "micro") for t in (0, 1)]


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 8)).astype(np.float32)
    return x, x + 0.5 * rng.normal(size=x.shape).astype(np.float32)


def _poisoned(x: np.ndarray) -> np.ndarray:
    bad = x.copy()
    bad[::7] = np.nan
    return bad


class _States(LayerStates):
    """States whose pair() can be poisoned per (level, position) and per call (a transient fault)."""

    def __init__(self, poison) -> None:
        ids = np.tile(np.arange(2), (N, 1))
        x, y = _pair(0)
        super().__init__(0, ids, (0, 1), np.stack([x, x], 1), np.stack([y, y], 1))
        self.poison, self.calls = poison, {}

    def pair(self, job):
        key = (job.level, job.position)
        self.calls[key] = self.calls.get(key, 0) + 1
        x, y = _pair(job.position)
        return (_poisoned(x), y) if self.poison(key, self.calls[key]) else (x, y)


def _fit(poison) -> pd.DataFrame:
    reading = MineReading(PARAMS, estimators_per_task=4)
    (task,) = reading.tasks(_jobs())
    return rows_frame(fit_task(reading, _States(poison), tuple(task)).rows)


def test_a_nan_estimate_is_refitted_once_with_a_fresh_seed():
    rows = _fit(lambda key, call: key == ("macro", 1) and call == 1)  # only the first attempt sees broken states
    retried = rows[(rows.level == "macro") & (rows.position == 1)].iloc[0]
    assert retried.attempt == 1 and retried.flag == "ok" and np.isfinite(retried.mi_bits)
    assert retried.estimator_seed == _jobs()[1].seed_for_attempt(1) != _jobs()[1].estimator_seed
    others = rows.drop(retried.name)
    assert (others.attempt == 0).all() and (others.flag == "ok").all()
    assert len(rows) == 4 and not rows.duplicated(["level", "position"]).any()


def test_an_estimate_that_stays_nan_is_flagged_not_written_as_a_number():
    rows = _fit(lambda key, call: key == ("micro", 0))
    failed = rows[(rows.level == "micro") & (rows.position == 0)].iloc[0]
    assert failed.flag == "nan" and failed.attempt == MAX_RETRIES and np.isnan(failed.mi_bits)

    # and the IE that depends on it carries the flag and no number
    mi = rows.assign(model="m", corpus="c", shots=1)
    ie = information_emergence(mi)
    at1 = ie[ie.position == 1].iloc[0]
    assert "nan" in at1.flag and np.isnan(at1.ie_bits)


def test_constant_jobs_are_zero_without_a_fit_and_split_from_the_fitted_tasks():
    reading = MineReading(PARAMS, estimators_per_task=2)
    constant = EstimateJob(layer=0, position=1, level="micro", seed=0, ceiling_bits=0.0, n_distinct=1, n_samples=N)
    tasks = reading.tasks(_jobs()[:3] + [constant])
    assert [len(t) for t in tasks] == [2, 1, 1] and tasks[-1] == [constant]
    (row,) = fit_task(reading, _States(lambda *_: True), (constant,)).rows  # poisoned states are never read
    assert (row.mi_bits, row.flag, row.ceiling_bits, row.interval) == (0.0, "constant", 0.0, "exact")


def test_last_position_only_keeps_every_micro_term():
    reading = MineReading(PARAMS, positions="last")
    picked = reading.select(_jobs(), positions=[0, 1])
    assert {(j.level, j.position) for j in picked} == {("macro", 1), ("micro", 0), ("micro", 1)}


@pytest.mark.parametrize("flag", ["nan", "diverged"])
def test_retry_flags_blank_the_value(flag):
    row = mine_row(_jobs()[0], dict(mi_bits=3.0, flag=flag, bootstrap_bits=np.zeros(3)), attempt=1)
    assert np.isnan(row.mi_bits) and row.flag == flag


def test_a_non_finite_value_is_never_ok():
    row = mine_row(_jobs()[0], dict(mi_bits=float("inf"), flag="ok", bootstrap_bits=np.zeros(3)))
    assert row.flag == "nan" and np.isnan(row.mi_bits)
    assert isinstance(rows_frame([row]).mi_bits.iloc[0], float)
