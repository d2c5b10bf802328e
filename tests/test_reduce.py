"""The reducer never writes a failed estimate as a plain number: NaN is refitted once with a fresh seed, and
flagged (with a NaN value) if the refit fails too."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray.estimators import MINEParams
from ie_ray.ie import information_emergence
from ie_ray.reduce import MAX_RETRIES, EstimateJob, fit_jobs

PARAMS = MINEParams(steps=20, batch_size=64, n_bootstrap=10)


def _jobs() -> list[EstimateJob]:
    return [EstimateJob(layer=0, position=t, level=level, seed=0, ceiling_bits=4.0, n_distinct=16, n_samples=256)
            for level in ("macro", "micro") for t in (0, 1)]


def _clean(job: EstimateJob) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(job.position)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    return x, x + 0.5 * rng.normal(size=x.shape).astype(np.float32)


def _poisoned(x: np.ndarray) -> np.ndarray:
    bad = x.copy()
    bad[::7] = np.nan
    return bad


def test_a_nan_estimate_is_refitted_once_with_a_fresh_seed(ray_local):
    calls: dict[tuple, int] = {}

    def states_for(job: EstimateJob):
        key = (job.level, job.position)
        calls[key] = calls.get(key, 0) + 1
        x, y = _clean(job)
        if key == ("macro", 1) and calls[key] == 1:  # only the first attempt sees broken states
            return _poisoned(x), y
        return x, y

    rows = fit_jobs(_jobs(), states_for, PARAMS, estimators_per_task=4, num_cpus=1, num_gpus=0)
    retried = rows[(rows.level == "macro") & (rows.position == 1)].iloc[0]
    assert retried.attempt == 1 and retried.flag == "ok" and np.isfinite(retried.mi_bits)
    assert retried.estimator_seed == _jobs()[1].seed_for_attempt(1) != _jobs()[1].estimator_seed
    others = rows.drop(retried.name)
    assert (others.attempt == 0).all() and (others.flag == "ok").all()
    assert len(rows) == 4 and not rows.duplicated(["level", "position"]).any()


def test_an_estimate_that_stays_nan_is_flagged_not_written_as_a_number(ray_local):
    def states_for(job: EstimateJob):
        x, y = _clean(job)
        return (_poisoned(x), y) if job.level == "micro" and job.position == 0 else (x, y)

    rows = fit_jobs(_jobs(), states_for, PARAMS, estimators_per_task=4, num_cpus=1, num_gpus=0)
    failed = rows[(rows.level == "micro") & (rows.position == 0)].iloc[0]
    assert failed.flag == "nan" and failed.attempt == MAX_RETRIES and np.isnan(failed.mi_bits)

    # and the IE that depends on it carries the flag and no number
    mi = rows.assign(model="m", corpus="c", shots=1)
    ie = information_emergence(mi)
    at1 = ie[ie.position == 1].iloc[0]
    assert "nan" in at1.flag and np.isnan(at1.ie_bits)


@pytest.mark.parametrize("flag", ["nan", "diverged"])
def test_retry_flags_blank_the_value(flag):
    from ie_ray.reduce import _job_row

    job = _jobs()[0]
    row = _job_row(job, dict(mi_bits=3.0, flag=flag, bootstrap_bits=np.zeros(3)), attempt=1)
    assert np.isnan(row["mi_bits"]) and row["flag"] == flag


def test_a_non_finite_value_is_never_ok():
    from ie_ray.reduce import _job_row

    row = _job_row(_jobs()[0], dict(mi_bits=float("inf"), flag="ok", bootstrap_bits=np.zeros(3)))
    assert row["flag"] == "nan" and np.isnan(row["mi_bits"])
    assert isinstance(pd.DataFrame([row]).mi_bits.iloc[0], float)
