"""Fast in-process coverage of the reducer's bookkeeping: rows, the row cache, the scheduler, loading a layer's
states and the `Reading` defaults.

Why this file exists: these functions were otherwise reached only by the whole-sweep tests of
test_reading_registry.py (85 s a mutant), which the mutation run of `ie_ray/reduce/` leaves out. Here every one
of them runs on a 6-sample cell written to a temporary directory, so mutation testing sees each mutant in
seconds. Only the test of `_fit_missing` and `layers_in_flight` needs Ray (the session's in-process `ray_local`,
2 CPUs); everything else runs without it.

Expected values are derived by hand from the arrays written here (means of the stored states, entropies and
seeds from `collections.Counter` and `numpy.random.SeedSequence`), never by calling the code under test.
"""
from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ie_ray import store
from ie_ray.cache import ShardCache, code_version, content_key
from ie_ray.reduce import (
    COLUMNS,
    EstimateJob,
    MIRow,
    Reading,
    TaskResources,
    reading_class,
    reading_names,
    register_reading,
    rows_frame,
    scheduler,
    table_prefixes,
    unregister_reading,
)
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.row_cache import RowCache, TaskOutput
from ie_ray.reduce.scheduler import (
    CellWork,
    Unit,
    fit_task,
    layers_in_flight,
    layers_to_compute,
    plan_units,
    reduce_cell,
)

# ---------------------------------------------------------------------------------------------------------------
# A tiny cell: 6 samples of 3 tokens, macro states at positions 1 and 2, blocks 0..3 (residual streams 0..4).
# State values are small multiples of 0.5, exact in float16 (the stored dtype the reducer keeps), and macro
# (0..452) and micro (500..941) ranges never overlap, so a swapped array shows up in every mean.
# ---------------------------------------------------------------------------------------------------------------
IDS = np.array([[7, 3, 9], [7, 3, 5], [8, 3, 9], [8, 3, 9], [7, 3, 5], [9, 3, 5]])
N = len(IDS)
POSITIONS = [1, 2]
SEEDS = [4, 5]
UNIQUE = np.array([3, 5, 7, 8, 9])
TOKEN_ROW = {3: 0, 5: 1, 7: 2, 8: 3, 9: 4}  # the row of each token in UNIQUE, by hand
N_STREAMS = 5
MACRO = np.fromfunction(lambda s, i, j, d: 100 * s + 10 * i + j + 0.5 * d, (N_STREAMS, N, 2, 2)).astype(np.float16)
MICRO = np.fromfunction(lambda s, u, _, d: 500 + 100 * s + 10 * u + 0.5 * d,
                        (N_STREAMS, len(UNIQUE), 1, 2)).astype(np.float16)
SCALE_RULE = "per_position"  # not the default, so a dropped argument shows
LEVEL_CODE = {"macro": 0, "micro": 1}


class MeanReading(Reading):
    """Reads the mean of a job's block input (plus `offset`), the mean of its output as a one-draw bootstrap,
    and the mean of each macro side as the layer's notes (output first: the scheduler sorts them)."""

    name = "units_mean"
    section = "units_mean"
    table_prefix = "ie_units_mean"
    sources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    @classmethod
    def from_config(cls, config: Any) -> Reading:
        return cls()

    def key_dict(self) -> dict[str, Any]:
        return {"offset": self.offset}

    def fit_layer(self, states: LayerStates, jobs: list[EstimateJob]) -> list[MIRow]:
        rows = []
        for job in jobs:
            x, y = states.pair(job)
            rows.append(MIRow.for_job(job, self.name, mi_bits=float(x.astype(np.float64).mean()) + self.offset,
                                      bootstrap_bits=np.array([y.astype(np.float64).mean()])))
        return rows

    def layer_notes(self, states: LayerStates) -> list[dict[str, Any]]:
        return [dict(layer=states.layer, side=side, mean=float(a.astype(np.float64).mean()))
                for side, a in (("output", states.macro_post), ("input", states.macro_pre))]


class LastMeanReading(MeanReading):
    """The same numbers for the last analysed position only, one Ray task per job, two CPUs a task, no notes."""

    name = "units_last_mean"
    section = "units_last_mean"
    table_prefix = "ie_units_last_mean"

    def select(self, jobs: list[EstimateJob], positions: list[int]) -> list[EstimateJob]:
        return [job for job in jobs if job.position == positions[-1]]

    def tasks(self, jobs: list[EstimateJob]) -> list[list[EstimateJob]]:
        return [[job] for job in jobs]

    def resources(self, n_samples: int, dim: int) -> TaskResources:
        return TaskResources(num_cpus=2.0)

    def layer_notes(self, states: LayerStates) -> list[dict[str, Any]]:
        return []


class BareReading(Reading):
    """Only what the protocol requires: every default of `Reading` applies."""

    name = "units_bare"
    section = "units_bare"
    table_prefix = "ie_units_bare"

    @classmethod
    def from_config(cls, config: Any) -> Reading:
        return cls()

    def key_dict(self) -> dict[str, Any]:
        return {}

    def fit_layer(self, states: LayerStates, jobs: list[EstimateJob]) -> list[MIRow]:
        return []


@pytest.fixture()
def readings() -> Iterator[tuple[MeanReading, LastMeanReading]]:
    """Both example readings registered (and Ray workers able to unpickle them), unregistered afterwards."""
    import ray.cloudpickle

    register_reading(MeanReading)
    register_reading(LastMeanReading)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    try:
        yield MeanReading(), LastMeanReading()
    finally:
        unregister_reading(MeanReading.name)
        unregister_reading(LastMeanReading.name)
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _write_streams(directory: Path, streams: np.ndarray) -> None:
    """`streams` (S, n, P, d) as the extraction lays them out: `stream=<s>/*.parquet` with a `sample_id` column
    and the states as Ray's Arrow tensor column, written with the project's atomic writer (ids reversed, as
    Ray Data may write them: the reader sorts)."""
    from ray.data._internal.tensor_extensions.arrow import ArrowTensorArray  # the type extraction writes

    for s, states in enumerate(streams):
        order = np.arange(len(states))[::-1]
        table = pa.table({"sample_id": order.copy(), "resid": ArrowTensorArray.from_numpy(states[order].copy())})
        store.write_arrow(directory / f"stream={s}" / "part-0.parquet", table)


@pytest.fixture(scope="module")
def state_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(macro_dir, micro_dir) of the tiny cell, written once for the module."""
    root = tmp_path_factory.mktemp("units-states")
    _write_streams(root / "macro", MACRO)
    _write_streams(root / "micro", MICRO)
    return root / "macro", root / "micro"


def _cell(dirs: tuple[Path, Path], cache: RowCache, micro: bool = True, seeds: list[int] = SEEDS,
          cls: type[CellWork] = CellWork) -> CellWork:
    macro_dir, micro_dir = dirs
    return cls("tiny", "icl-country", 2, IDS, list(POSITIONS), list(seeds), macro_dir, micro_dir if micro else None,
               UNIQUE if micro else None, SCALE_RULE, cache)


def _pair_by_hand(layer: int, level: str, position: int) -> tuple[np.ndarray, np.ndarray]:
    """A job's (input, output) states picked from the written arrays by index, float64."""
    if level == "macro":
        j = POSITIONS.index(position)
        return MACRO[layer, :, j].astype(np.float64), MACRO[layer + 1, :, j].astype(np.float64)
    rows = [TOKEN_ROW[int(t)] for t in IDS[:, position]]
    return MICRO[layer, rows, 0].astype(np.float64), MICRO[layer + 1, rows, 0].astype(np.float64)


def _job(layer: int, level: str, position: int, seed: int) -> EstimateJob:
    """The job as `plan_jobs` should make it: ceiling and distinct count from a Counter of the symbols."""
    symbols = [tuple(row[: position + 1]) for row in IDS.tolist()] if level == "macro" else IDS[:, position].tolist()
    counts = Counter(symbols)
    p = np.array([counts[k] for k in sorted(counts)]) / N
    return EstimateJob(layer, position, level, seed, float(-(p * np.log2(p)).sum()), len(counts), N)


def _layer_jobs(layer: int, micro: bool = True, seeds: list[int] = SEEDS) -> list[EstimateJob]:
    """A layer's jobs in planning order: macro positions, then micro positions 0..max, each over the seeds."""
    wanted = [("macro", t) for t in POSITIONS] + ([("micro", t) for t in range(max(POSITIONS) + 1)] if micro else [])
    return [_job(layer, level, t, seed) for level, t in wanted for seed in seeds]


def _seed(job: EstimateJob, attempt: int = 0) -> int:
    """A job's estimator seed from its documented entropy (seed, layer, position, level code [, attempt])."""
    entropy = [job.seed, job.layer, job.position, LEVEL_CODE[job.level]] + ([attempt] if attempt else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _ids(jobs: list[EstimateJob] | tuple[EstimateJob, ...]) -> list[tuple[int, str, int, int]]:
    return [(j.layer, j.level, j.position, j.seed) for j in jobs]


def _assert_same_row(actual: MIRow, expected: MIRow) -> None:
    """Field by field (NaN equals NaN, the bootstrap compared by value and dtype)."""
    np.testing.assert_equal(asdict(actual), asdict(expected))
    assert np.asarray(actual.bootstrap_bits).dtype == np.float64


# ---------------------------------------------------------------------------------------------------------------
# row.py
# ---------------------------------------------------------------------------------------------------------------
JOB = EstimateJob(layer=3, position=2, level="micro", seed=7, ceiling_bits=2, n_distinct=4, n_samples=10)


def test_for_job_defaults_come_from_the_job_and_the_reading_name() -> None:
    """Every default written out: the reading name stands for estimator/readout/objective, the interval collapses
    to the value, the ceiling is the job's (as float), the seed is SeedSequence([7, 3, 2, 1]) by hand, the cell
    columns are empty and the reading-specific columns NaN."""
    row = MIRow.for_job(JOB, "r", mi_bits=1)
    expected = dict(model="", corpus="", shots=0, reading="r", estimator="r", layer=3, position=2, level="micro",
                    seed=7, estimator_seed=_seed(JOB), attempt=0, ceiling_bits=2.0, n_distinct=4, n_samples=10,
                    mi_bits=1.0, ci_low=1.0, ci_high=1.0, flag="ok", readout="r", objective="r", wall_s=0.0)
    assert {k: getattr(row, k) for k in expected} == expected
    assert all(type(getattr(row, k)) is float for k in ("mi_bits", "ci_low", "ci_high", "ceiling_bits"))
    assert math.isnan(row.tau) and math.isnan(row.heldout_bits) and row.interval == "" and row.scale_rule == ""
    assert row.bootstrap_bits.shape == (0,) and JOB.estimator_seed == _seed(JOB)


def test_for_job_takes_every_given_value() -> None:
    """Given values win over the defaults (zeros included: they are not "missing"); the seed of attempt 2 is
    SeedSequence([7, 3, 2, 1, 2]); extra keywords fill the reading's own columns."""
    row = MIRow.for_job(JOB, "r", mi_bits=np.float32(0.5), flag="nan", ci_low=0.0, ci_high=0.75, readout="dv",
                        objective="nwj", estimator="mine-dv", attempt=2, ceiling_bits=0.0, tau=0.125,
                        interval="exact", bootstrap_bits=np.array([0.25]))
    assert (row.mi_bits, row.ci_low, row.ci_high, row.flag) == (0.5, 0.0, 0.75, "nan")
    assert type(row.mi_bits) is float
    assert (row.readout, row.objective, row.estimator, row.reading) == ("dv", "nwj", "mine-dv", "r")
    assert (row.attempt, row.estimator_seed, row.ceiling_bits) == (2, _seed(JOB, 2), 0.0)
    assert row.estimator_seed != _seed(JOB)
    assert (row.tau, row.interval, row.bootstrap_bits.tolist()) == (0.125, "exact", [0.25])


def test_in_cell_sets_the_cell_columns_and_nothing_else() -> None:
    """model, corpus and shots (as a Python int) are set; every other field is the original's."""
    row = MIRow.for_job(JOB, "r", mi_bits=0.5, tau=0.25)
    placed = row.in_cell("m", "c", np.int64(3))
    assert (placed.model, placed.corpus, placed.shots) == ("m", "c", 3) and type(placed.shots) is int
    before, after = asdict(row), asdict(placed)
    for key in ("model", "corpus", "shots"):
        before.pop(key), after.pop(key)
    np.testing.assert_equal(after, before)
    assert (row.model, row.shots) == ("", 0)  # the original is unchanged


TRICKY_FLOATS: dict[str, Any] = dict(mi_bits=0.1 + 0.2, ci_low=1 / 3, ci_high=1e300, tau=5e-324, sigma=-0.0, wall_s=2.0**-52)


def test_to_record_is_plain_json_that_round_trips_exactly() -> None:
    """Every field, in schema order, as plain Python (numpy scalars converted, the bootstrap a list of floats even
    from ints); `json.dumps` works and `from_record(json.loads(...))` gives back the same row bit for bit."""
    job = replace(JOB, n_distinct=np.int64(4))
    row = MIRow.for_job(job, "r", **TRICKY_FLOATS, bootstrap_bits=[1, 2], n_draws=np.float32(0.5))
    record = row.to_record()
    assert list(record) == [f.name for f in fields(MIRow)]
    assert record["bootstrap_bits"] == [1.0, 2.0] and all(type(v) is float for v in record["bootstrap_bits"])
    assert type(record["n_distinct"]) is int and type(record["n_draws"]) is float and record["n_draws"] == 0.5
    assert not any(isinstance(v, (np.generic, np.ndarray)) for v in record.values())
    back = MIRow.from_record(json.loads(json.dumps(record)))
    for key, value in TRICKY_FLOATS.items():
        assert getattr(back, key) == value and math.copysign(1, getattr(back, key)) == math.copysign(1, value)
    _assert_same_row(back, replace(row, bootstrap_bits=np.array([1.0, 2.0])))


def test_from_record_inverts_to_record_and_refuses_other_schemas() -> None:
    """The inverse: an equal row with a float64 bootstrap (from a list of ints too); no bootstrap gives an empty
    float64 array; an unknown or a missing column is a TypeError (another schema wrote it)."""
    row = MIRow.for_job(JOB, "r", mi_bits=0.5, bootstrap_bits=np.array([0.5, 1.5]), heldout_bits=0.25)
    _assert_same_row(MIRow.from_record(row.to_record()), row)
    record = row.to_record()
    assert MIRow.from_record({**record, "bootstrap_bits": [1, 2]}).bootstrap_bits.dtype == np.float64
    without = {k: v for k, v in record.items() if k != "bootstrap_bits"}
    empty = MIRow.from_record(without).bootstrap_bits
    assert empty.shape == (0,) and empty.dtype == np.float64
    with pytest.raises(TypeError):
        MIRow.from_record({**record, "new_column": 1.0})
    with pytest.raises(TypeError):
        MIRow.from_record({k: v for k, v in record.items() if k != "flag"})


def test_rows_frame_of_no_rows_has_exactly_the_schema_columns() -> None:
    frame = rows_frame([])
    assert list(frame.columns) == [f.name for f in fields(MIRow)] and len(frame) == 0


def test_rows_frame_sorts_by_cell_reading_and_estimate_nan_tau_first_and_stable() -> None:
    """Rows numbered (mi_bits) in the order written out by hand: each row sorts after the previous one on one
    column of model, corpus, shots, reading, layer, position, level, seed, tau while every less significant column
    goes the other way, so each column's priority matters; NaN tau comes first; the tied rows 11 and 12 keep
    their input order. The frame has the schema's columns and a fresh index."""
    base = MIRow.for_job(EstimateJob(0, 0, "macro", 0, 1.0, 2, 4), "a", mi_bits=0.0)
    spec = [  # model, corpus, shots, reading, layer, position, level, seed, tau
        ("a", "a", 1, "a", 0, 0, "macro", 0, math.nan),
        ("a", "a", 1, "a", 0, 0, "macro", 0, 0.1),
        ("a", "a", 1, "a", 0, 0, "macro", 0, 0.2),
        ("a", "a", 1, "a", 0, 0, "macro", 1, math.nan),
        ("a", "a", 1, "a", 0, 0, "micro", 0, 0.3),
        ("a", "a", 1, "a", 0, 1, "macro", 0, 0.3),
        ("a", "a", 1, "a", 1, 0, "micro", 1, 0.3),
        ("a", "a", 1, "b", 0, 1, "micro", 1, 0.3),
        ("a", "a", 2, "a", 1, 1, "micro", 1, 0.3),
        ("a", "b", 1, "b", 1, 1, "micro", 1, 0.3),
        ("b", "a", 2, "b", 1, 1, "micro", 1, 0.3),
        ("b", "b", 1, "a", 0, 0, "macro", 0, math.nan),
        ("b", "b", 1, "a", 0, 0, "macro", 0, math.nan),
    ]
    names = ["model", "corpus", "shots", "reading", "layer", "position", "level", "seed", "tau"]
    rows = [replace(base, mi_bits=float(rank), **dict[str, Any](zip(names, values))) for rank, values in enumerate(spec)]
    frame = rows_frame([rows[i] for i in (11, 10, 3, 0, 7, 5, 1, 9, 2, 8, 4, 12, 6)])  # the tie: 11 before 12
    assert frame.mi_bits.tolist() == [float(r) for r in range(len(spec))]
    assert list(frame.columns) == list(COLUMNS) and frame.index.tolist() == list(range(len(spec)))


# ---------------------------------------------------------------------------------------------------------------
# row_cache.py
# ---------------------------------------------------------------------------------------------------------------
JOBS = [EstimateJob(3, 1, "macro", 0, 1.5, 3, 6), EstimateJob(3, 0, "micro", 1, 2.0, 4, 6)]


class _Sourced(MeanReading):
    """The mean reading with one more source module: same name and settings, other code."""

    sources = ("reduce/reading.py",)


def test_row_cache_key_is_the_documented_recipe_and_only_identity_matters() -> None:
    """The key is content_key over the version tag, the source hash of the reading's and the common modules, the
    states key, the reading's name and settings and the jobs' identities (written out by hand). It changes with
    each of those, job order included, and not with a job's ceiling or counts nor with where it runs."""
    cache = RowCache(None, "states-A", model="m")
    reading = MeanReading()
    key = cache.key(reading, JOBS)
    identities = [dict(layer=3, position=1, level="macro", seed=0), dict(layer=3, position=0, level="micro", seed=1)]
    assert key == content_key("reading-rows-v2", code_version(("reduce/row.py", "reduce/jobs.py")), "states-A",
                              "units_mean", {"offset": 0.0}, identities)
    changed = [RowCache(None, "states-B").key(reading, JOBS), cache.key(MeanReading(offset=1.0), JOBS),
               cache.key(LastMeanReading(), JOBS), cache.key(_Sourced(), JOBS), cache.key(reading, JOBS[::-1]),
               cache.key(reading, JOBS[:1])]
    identity_changes: list[dict[str, Any]] = [dict(layer=4), dict(position=2), dict(level="micro"), dict(seed=9)]
    changed += [cache.key(reading, [replace(JOBS[0], **change), JOBS[1]]) for change in identity_changes]
    assert len({key, *changed}) == len(changed) + 1
    same = [cache.key(reading, [replace(JOBS[0], ceiling_bits=9.0, n_distinct=99, n_samples=7), JOBS[1]]),
            RowCache(ShardCache(Path("/nonexistent")), "states-A", model="x", cell="y").key(reading, JOBS)]
    assert same == [key, key]


def test_row_cache_save_then_load_gives_the_rows_back_and_records_both(tmp_path: Path) -> None:
    """contains is False before the save and True after; load returns equal rows (bootstrap values and dtype) and
    notes; the shard log holds "computed" then "reused" with the `where` keywords, the reading's name, the first
    job's layer (3) and the number of jobs (2), and the counters agree."""
    shards = ShardCache(tmp_path)
    cache = RowCache(shards, "states-A", model="m", cell="c-2shot")
    reading = MeanReading()
    rows = [MIRow.for_job(JOBS[0], reading.name, mi_bits=0.1 + 0.2, bootstrap_bits=np.array([1.0, 2.5]), tau=0.5),
            MIRow.for_job(JOBS[1], reading.name, mi_bits=1 / 3, flag="nan")]
    notes = [dict(layer=3, side="input", spread=0.5)]
    assert not cache.contains(reading, JOBS)
    cache.save(reading, JOBS, TaskOutput(rows, notes))
    assert cache.contains(reading, JOBS) and not cache.contains(reading, JOBS[:1])
    loaded = cache.load(reading, JOBS)
    assert loaded is not None and loaded.notes == notes and len(loaded.rows) == 2
    for got, want in zip(loaded.rows, rows):
        _assert_same_row(got, want)
    key = cache.key(reading, JOBS)
    where = dict(kind="estimates", key=key, model="m", cell="c-2shot", reading="units_mean", layer=3, n_jobs=2)
    assert shards.log == [dict(status="computed", **where), dict(status="reused", **where)]
    assert (shards.computed["estimates"], shards.reused["estimates"]) == (1, 1)


def test_row_cache_of_a_task_without_jobs_records_layer_minus_one(tmp_path: Path) -> None:
    shards = ShardCache(tmp_path)
    cache = RowCache(shards, "states-A")
    cache.save(MeanReading(), [], TaskOutput([], []))
    loaded = cache.load(MeanReading(), [])
    assert loaded is not None and (loaded.rows, loaded.notes) == ([], [])
    assert [(e["status"], e["layer"], e["n_jobs"]) for e in shards.log] == [("computed", -1, 0), ("reused", -1, 0)]


def test_row_cache_without_shards_caches_nothing() -> None:
    """shards=None: contains is False, load None, and save a no-op (no error)."""
    cache = RowCache(None, "states-A")
    cache.save(MeanReading(), JOBS, TaskOutput([MIRow.for_job(JOBS[0], "units_mean", mi_bits=1.0)], []))
    assert not cache.contains(MeanReading(), JOBS) and cache.load(MeanReading(), JOBS) is None


@pytest.mark.parametrize("bad", ["rows-not-a-list", "unknown-column", "missing-column", "no-rows"])
def test_row_cache_refuses_unreadable_payloads_and_records_nothing(tmp_path: Path, bad: str) -> None:
    """A payload another schema wrote (or none at all) is None, to be refitted, and counts as nothing."""
    shards = ShardCache(tmp_path)
    cache = RowCache(shards, "states-A")
    reading = MeanReading()
    record = MIRow.for_job(JOBS[0], reading.name, mi_bits=1.0).to_record()
    payloads: dict[str, dict[str, Any]] = {"rows-not-a-list": dict(rows={"not": "a list"}, notes=[]),
               "unknown-column": dict(rows=[{**record, "new_column": 1.0}], notes=[]),
               "missing-column": dict(rows=[{k: v for k, v in record.items() if k != "flag"}], notes=[]),
               "no-rows": dict(notes=[])}
    payload = payloads[bad]
    assert cache.load(reading, JOBS) is None  # absent
    shards.save_estimate(cache.key(reading, JOBS), payload)
    assert cache.contains(reading, JOBS) and cache.load(reading, JOBS) is None
    assert shards.log == [] and shards.reused["estimates"] == 0


def test_row_cache_reads_a_payload_without_notes_as_no_notes(tmp_path: Path) -> None:
    shards = ShardCache(tmp_path)
    cache = RowCache(shards, "states-A")
    row = MIRow.for_job(JOBS[0], "units_mean", mi_bits=1.0)
    shards.save_estimate(cache.key(MeanReading(), JOBS[:1]), dict(rows=[row.to_record()]))
    loaded = cache.load(MeanReading(), JOBS[:1])
    assert loaded is not None and loaded.notes == [] and loaded.rows[0].mi_bits == 1.0


# ---------------------------------------------------------------------------------------------------------------
# reading.py
# ---------------------------------------------------------------------------------------------------------------
def test_reading_defaults() -> None:
    """By default a reading fits every job, in one task holding them all (none for no jobs), asks one CPU and no
    GPU, uses as many torch threads as CPUs (at least one) and has no notes."""
    reading = BareReading()
    jobs = _layer_jobs(0)
    assert reading.select(jobs, [0]) is jobs
    assert reading.tasks(jobs) == [jobs] and reading.tasks([]) == []
    assert reading.resources(100, 8) == TaskResources(1.0, 0.0) and reading.threads() == 1
    assert reading.layer_notes(None) == []  # type: ignore[arg-type]
    assert LastMeanReading().threads() == 2

    class Half(BareReading):
        def resources(self, n_samples: int, dim: int) -> TaskResources:
            return TaskResources(num_cpus=0.5)

    assert Half().threads() == 1


def test_register_and_unregister_reading() -> None:
    """Registering adds the name (last) with its prefix; the same class again is fine, another class under the
    name or a class without the string attributes is refused; unregistering removes it and an unknown name is a
    no-op; an unknown name's lookup lists the registered ones."""
    before = reading_names()
    assert BareReading.name not in before
    try:
        assert register_reading(BareReading) is BareReading and register_reading(BareReading) is BareReading
        assert reading_names() == (*before, "units_bare") and reading_class("units_bare") is BareReading
        assert table_prefixes()["units_bare"] == "ie_units_bare"
        impostor = type("Impostor", (BareReading,), {})
        with pytest.raises(ValueError, match="'units_bare' is already registered"):
            register_reading(impostor)
        for attr in ("name", "section", "table_prefix"):
            nameless = type("Nameless", (BareReading,), {attr: None})
            with pytest.raises(TypeError, match=attr):
                register_reading(nameless)
    finally:
        unregister_reading("units_bare")
    assert reading_names() == before and "units_bare" not in table_prefixes()
    unregister_reading("units_bare")  # unknown now: nothing happens
    unregister_reading("never-registered")
    assert reading_names() == before
    with pytest.raises(ValueError, match="unknown reading 'units_bare'.*'smoothed'"):
        reading_class("units_bare")


# ---------------------------------------------------------------------------------------------------------------
# layer_states.py and CellWork
# ---------------------------------------------------------------------------------------------------------------
def _counting_reader(reads: list[tuple[str, int]]) -> store.StreamReader:
    """The default reader in the stored dtype, logging (directory name, stream) per call."""
    def read(states_dir: Path, stream: int) -> tuple[np.ndarray, np.ndarray]:
        reads.append((Path(states_dir).name, stream))
        return store.read_stream_states(states_dir, stream, None)
    return read


def test_layer_states_load_macro_only(state_dirs: tuple[Path, Path]) -> None:
    """Block 2's input is stream 2 and its output stream 3, sorted back to sample order, float32 from the default
    reader; no micro states; the positions and the scale rule are the ones given."""
    macro_dir, _ = state_dirs
    states = LayerStates.load(2, IDS, POSITIONS, macro_dir, scale_rule=SCALE_RULE)
    assert (states.layer, states.positions, states.scale_rule) == (2, (1, 2), SCALE_RULE)
    assert states.input_ids is IDS and states.macro_pre.dtype == np.float32
    np.testing.assert_array_equal(states.macro_pre, MACRO[2].astype(np.float32))
    np.testing.assert_array_equal(states.macro_post, MACRO[3].astype(np.float32))
    assert states.micro_pre is None and states.micro_post is None and states.token_row is None
    assert LayerStates.load(2, IDS, POSITIONS, macro_dir).scale_rule == "pooled_no_sink"  # the default


def test_layer_states_load_with_micro_states(state_dirs: tuple[Path, Path]) -> None:
    """Micro rows are each token's row in `unique_tokens` (looked up by hand), the micro arrays drop their
    position axis, the given reader reads every stream (macro 1, 2 then micro 1, 2) in the stored float16."""
    macro_dir, micro_dir = state_dirs
    reads: list[tuple[str, int]] = []
    states = LayerStates.load(1, IDS, POSITIONS, macro_dir, micro_dir, UNIQUE, SCALE_RULE,
                              read_stream=_counting_reader(reads))
    assert reads == [("macro", 1), ("macro", 2), ("micro", 1), ("micro", 2)]
    assert states.macro_pre.dtype == np.float16 and states.scale_rule == SCALE_RULE
    assert states.token_row is not None
    assert states.token_row.tolist() == [[TOKEN_ROW[t] for t in row] for row in IDS.tolist()]
    np.testing.assert_array_equal(states.macro_pre, MACRO[1])
    np.testing.assert_array_equal(states.macro_post, MACRO[2])
    np.testing.assert_array_equal(states.micro_pre, MICRO[1, :, 0])
    np.testing.assert_array_equal(states.micro_post, MICRO[2, :, 0])


def test_layer_states_load_needs_unique_tokens_for_micro_states(state_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="unique_tokens"):
        LayerStates.load(1, IDS, POSITIONS, *state_dirs)


def test_cell_work_label_and_load(state_dirs: tuple[Path, Path]) -> None:
    """The label is "model corpus-<shots>shot"; `load` is LayerStates.load with the cell's ids, positions,
    directories, tokens and scale rule, read through the cell's stream reader (float16 kept as stored)."""
    cell = _cell(state_dirs, RowCache(None, "s"))
    assert cell.label == "tiny icl-country-2shot"
    states = cell.load(3)
    assert (states.layer, states.positions, states.scale_rule, states.input_ids is IDS) == (3, (1, 2), SCALE_RULE,
                                                                                             True)
    assert states.macro_pre.dtype == np.float16 and states.token_row is not None
    np.testing.assert_array_equal(states.macro_pre, MACRO[3])
    np.testing.assert_array_equal(states.macro_post, MACRO[4])
    np.testing.assert_array_equal(states.micro_post, MICRO[4, :, 0])
    assert _cell(state_dirs, RowCache(None, "s"), micro=False).load(0).token_row is None


# ---------------------------------------------------------------------------------------------------------------
# scheduler.py without Ray
# ---------------------------------------------------------------------------------------------------------------
def test_plan_units_uses_each_readings_select_and_tasks(readings: tuple[MeanReading, LastMeanReading],
                                                         state_dirs: tuple[Path, Path]) -> None:
    """Per layer: the mean reading's one task with all 10 jobs in planning order (macro 1, 2, micro 0, 1, 2, each
    over seeds 4, 5), then one task per job of the last position (macro 2, micro 2). Ceilings and distinct counts
    are the Counter entropies of the prefixes (macro) or tokens (micro)."""
    mean, last = readings
    units = plan_units(_cell(state_dirs, RowCache(None, "s")), [mean, last], [3, 0])
    assert list(units) == [3, 0]
    for layer, layer_units in units.items():
        assert [u.reading for u in layer_units] == [mean, last, last, last, last]
        assert all(isinstance(u, Unit) and u.layer == layer and isinstance(u.jobs, tuple) for u in layer_units)
        assert _ids(layer_units[0].jobs) == _ids(_layer_jobs(layer))
        assert [_ids(u.jobs) for u in layer_units[1:]] == [[(layer, "macro", 2, 4)], [(layer, "macro", 2, 5)],
                                                           [(layer, "micro", 2, 4)], [(layer, "micro", 2, 5)]]
        for got, want in zip(layer_units[0].jobs, _layer_jobs(layer)):
            assert (got.n_distinct, got.n_samples) == (want.n_distinct, N)
            assert got.ceiling_bits == pytest.approx(want.ceiling_bits, rel=1e-12)
    # macro position 1: prefixes (7,3) x3, (8,3) x2, (9,3) x1 -> H(1/2, 1/3, 1/6) bits
    assert units[0][0].jobs[0].ceiling_bits == pytest.approx(
        -(0.5 * math.log2(0.5) + math.log2(1 / 3) / 3 + math.log2(1 / 6) / 6), rel=1e-12)
    assert (units[0][0].jobs[4].n_distinct, units[0][0].jobs[4].ceiling_bits) == (3, units[0][0].jobs[0].ceiling_bits)


def test_plan_units_without_micro_states_plans_no_micro_jobs(readings: tuple[MeanReading, LastMeanReading],
                                                             state_dirs: tuple[Path, Path]) -> None:
    mean, last = readings
    cell = _cell(state_dirs, RowCache(None, "s"), micro=False)
    units = plan_units(cell, [mean, last], [1])
    assert [_ids(u.jobs) for u in units[1]] == [_ids(_layer_jobs(1, micro=False)), [(1, "macro", 2, 4)],
                                                [(1, "macro", 2, 5)]]
    assert plan_units(cell, [mean, last], []) == {}


def _cache_by_hand(cache: RowCache, layer: int, mean: MeanReading, last: LastMeanReading | None,
                   seeds: list[int] = SEEDS) -> dict[tuple, float]:
    """Cache the layer's tasks with made-up values (100 * layer + k for the mean reading's k-th job, minus that for
    the last-position reading) under jobs built by hand; returns {(reading, layer, level, position, seed): value}.
    The mean reading's notes: input mean 1000 + layer, output mean 2000 + layer."""
    values = {}
    jobs = _layer_jobs(layer, seeds=seeds)
    rows = []
    for k, job in enumerate(jobs):
        rows.append(MIRow.for_job(job, mean.name, mi_bits=100.0 * layer + k, bootstrap_bits=np.array([k / 2])))
        values[(mean.name, layer, job.level, job.position, job.seed)] = 100.0 * layer + k
    notes = [dict(layer=layer, side="output", mean=2000.0 + layer), dict(layer=layer, side="input", mean=1000.0 + layer)]
    cache.save(mean, jobs, TaskOutput(rows, notes))
    if last is not None:
        for k, job in enumerate(j for j in jobs if j.position == POSITIONS[-1]):
            cache.save(last, [job], TaskOutput([MIRow.for_job(job, last.name, mi_bits=-100.0 * layer - k)], []))
            values[(last.name, layer, job.level, job.position, job.seed)] = -100.0 * layer - k
    return values


def test_layers_to_compute_lists_layers_with_an_uncached_task(tmp_path: Path,
                                                                readings: tuple[MeanReading, LastMeanReading],
                                                                state_dirs: tuple[Path, Path]) -> None:
    """Layer 0 fully cached: skipped; layer 1 with only the mean reading's task cached and layer 2 with nothing
    cached: both listed, in the order asked."""
    mean, last = readings
    cache = RowCache(ShardCache(tmp_path), "states-A")
    _cache_by_hand(cache, 0, mean, last)
    _cache_by_hand(cache, 1, mean, None)
    cell = _cell(state_dirs, cache)
    assert layers_to_compute(cell, [mean, last], [2, 1, 0]) == [2, 1]
    assert layers_to_compute(cell, [mean, last], [0]) == [] and layers_to_compute(cell, [mean], [1, 0]) == []


def _refuse_ray(*args: Any, **kwargs: Any) -> list:
    raise AssertionError("a fully cached cell must not fit anything")


def _frame_values(frame: pd.DataFrame) -> dict[tuple, float]:
    return {(r.reading, r.layer, r.level, r.position, r.seed): r.mi_bits for r in frame.itertuples()}


def test_reduce_cell_with_everything_cached_reads_the_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 readings: tuple[MeanReading, LastMeanReading],
                                                                 state_dirs: tuple[Path, Path]) -> None:
    """No task is fitted and no state read (the states directory does not exist): the rows are the cached values,
    with the cell's model, corpus and shots, sorted by reading, layer, position, level, seed; the scales frame is
    the notes with the cell columns, sorted by layer then side; no layer is computed; `on_layer_done` fires for
    each layer in the order asked; the log counts every task as reused."""
    monkeypatch.setattr(scheduler, "_fit_missing", _refuse_ray)
    mean, last = readings
    shards = ShardCache(tmp_path)
    cache = RowCache(shards, "states-A")
    values = {**_cache_by_hand(cache, 2, mean, last), **_cache_by_hand(cache, 0, mean, last)}
    cell = _cell((tmp_path / "absent", tmp_path / "absent-micro"), cache)
    done: list[int] = []
    result = reduce_cell(cell, [mean, last], [2, 0], on_layer_done=done.append)
    assert done == [2, 0] and result.computed_layers == []
    assert list(result.mi.columns) == list(COLUMNS) and len(result.mi) == len(values) == 2 * (10 + 4)
    assert _frame_values(result.mi) == values
    assert set(zip(result.mi.model, result.mi.corpus, result.mi.shots)) == {("tiny", "icl-country", 2)}
    order = sorted(values, key=lambda k: (k[0], k[1], k[3], k[2], k[4]))
    assert list(_frame_values(result.mi)) == order
    assert result.scales.to_dict("records") == [
        dict(model="tiny", corpus="icl-country", shots=2, layer=layer, side=side, mean=base + layer)
        for layer in (0, 2) for side, base in (("input", 1000.0), ("output", 2000.0))]
    assert {e["status"] for e in shards.log[10:]} == {"reused"} and len(shards.log) == 20


def test_reduce_cell_without_notes_or_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               readings: tuple[MeanReading, LastMeanReading],
                                               state_dirs: tuple[Path, Path]) -> None:
    """A reading without notes gives an empty scales frame; no callback is fine; no layers give empty frames."""
    monkeypatch.setattr(scheduler, "_fit_missing", _refuse_ray)
    mean, last = readings
    cache = RowCache(ShardCache(tmp_path), "states-A")
    values = _cache_by_hand(cache, 1, mean, last)
    cell = _cell((tmp_path / "absent", tmp_path / "absent-micro"), cache)
    result = reduce_cell(cell, [last], [1])
    assert result.scales.empty and list(result.scales.columns) == [] and result.computed_layers == []
    assert _frame_values(result.mi) == {k: v for k, v in values.items() if k[0] == last.name}
    nothing = reduce_cell(cell, [mean, last], [])
    assert list(nothing.mi.columns) == list(COLUMNS) and nothing.mi.empty and nothing.scales.empty


def test_fit_task_runs_the_reading_in_process_with_its_threads(state_dirs: tuple[Path, Path]) -> None:
    """The task body returns the reading's rows (the mean of each job's input, by hand) and its notes, with torch
    set to the reading's threads (2 for the two-CPU reading)."""
    import torch

    states = _cell(state_dirs, RowCache(None, "s")).load(1)
    jobs = tuple(_layer_jobs(1))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        output = fit_task(LastMeanReading(offset=0.5), states, jobs)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert output.notes == [] and [r.reading for r in output.rows] == ["units_last_mean"] * len(jobs)
    for row, job in zip(output.rows, jobs):
        x, y = _pair_by_hand(1, job.level, job.position)
        assert _ids([job]) == [(row.layer, row.level, row.position, row.seed)]
        assert row.mi_bits == pytest.approx(x.mean() + 0.5, rel=1e-12)
        assert row.bootstrap_bits.tolist() == pytest.approx([y.mean()], rel=1e-12)
    notes = fit_task(MeanReading(), states, jobs[:1]).notes
    assert notes == [dict(layer=1, side="output", mean=pytest.approx(MACRO[2].astype(np.float64).mean())),
                     dict(layer=1, side="input", mean=pytest.approx(MACRO[1].astype(np.float64).mean()))]


# ---------------------------------------------------------------------------------------------------------------
# scheduler.py with Ray (the session's in-process Ray, 2 CPUs)
# ---------------------------------------------------------------------------------------------------------------
def _ray_cpus(ray: Any) -> float:
    return float(ray.cluster_resources()["CPU"])


@pytest.mark.parametrize(("cpus_per_task", "window"), [(1, 3), (0.5, 5), (2, 2), (4, 2), (0, 2_000_001)])
def test_layers_in_flight(ray_local: Any, cpus_per_task: float, window: int) -> None:
    """As many tasks as the 2 CPUs run at once (at least one), plus one; a task asking no CPU counts as 1e-6 of
    one (2 / 1e-6 = 2,000,000), never a division by zero."""
    if _ray_cpus(ray_local) != 2:
        pytest.skip("the windows are worked out for the 2-CPU Ray of `ray_local`; another test started Ray first")
    assert layers_in_flight(cpus_per_task) == window


class _CountingCell(CellWork):
    """A cell that logs the layers it loads and the layers done (its `on_layer_done`), so a test sees the
    scheduler's window: `peak` is the most layers loaded and not yet done, counted when one is done (the window
    opens layers only before waiting on a task, so a count taken at every close sees the largest)."""

    def watch(self) -> _CountingCell:
        self.loaded: list[int] = []
        self.done: list[int] = []
        self.peak = 0
        return self

    def load(self, layer: int) -> LayerStates:
        self.loaded.append(layer)
        return super().load(layer)

    def on_layer_done(self, layer: int) -> None:
        if layer in self.loaded:  # a cached layer was never open
            self.peak = max(self.peak, len(self.loaded) - len([d for d in self.done if d in self.loaded]))
        self.done.append(layer)


def test_reduce_cell_fits_the_missing_layers_as_ray_tasks_and_caches_them(
        ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        readings: tuple[MeanReading, LastMeanReading], state_dirs: tuple[Path, Path]) -> None:
    """Layer 1 fully cached, layer 2 with only the mean reading's task cached, layers 0 and 3 not at all. The
    missing tasks run as Ray tasks: their rows are the means of the written states (by hand, with the Counter
    ceilings and SeedSequence seeds), the cached ones the made-up values; exactly layers 0, 2, 3 are computed and
    loaded (in that order, at most 2 open at once: the window of the larger, 2-CPU tasks on 2 CPUs, 2 // 2 + 1,
    not 3 as for the 1-CPU tasks); `on_layer_done` fires once per layer; the progress bar, named after the cell,
    counts the 8 missing tasks (layers 0 and 3: 1 + 2 each, layer 2: 2); every fitted task is in the cache, so a
    rerun fits nothing and gives the same table."""
    mean, last = readings
    shards = ShardCache(tmp_path / "cache")
    cache = RowCache(shards, "states-A", model="tiny")
    seeds = [4]
    cached = {**_cache_by_hand(cache, 1, mean, last, seeds), **_cache_by_hand(cache, 2, mean, None, seeds)}
    cell = _cell(state_dirs, cache, seeds=seeds, cls=_CountingCell)
    assert isinstance(cell, _CountingCell)
    cell.watch()
    result = reduce_cell(cell, [mean, last], [0, 1, 2, 3], on_layer_done=cell.on_layer_done)
    assert result.computed_layers == [0, 2, 3] and cell.loaded == [0, 2, 3]
    assert sorted(cell.done) == [0, 1, 2, 3] and cell.peak == min(3, int(_ray_cpus(ray_local) // 2) + 1)  # 2 CPUs
    err = capsys.readouterr().err
    finished = re.findall(r"readings tiny icl-country-2shot: +100%\|[^|\r]*\| (\d+)/(\d+) \[[^]\r]*(task/s|s/task)\]", err)
    assert [done_total for *done_total, _ in finished] == [["8", "8"]], err  # one finished bar: 8 of 8 tasks

    expected = dict(cached)
    for layer in (0, 2, 3):
        for job in _layer_jobs(layer, seeds=seeds):
            x, y = _pair_by_hand(layer, job.level, job.position)
            if layer != 2:
                expected[(mean.name, layer, job.level, job.position, job.seed)] = x.mean()
            if job.position == POSITIONS[-1]:
                expected[(last.name, layer, job.level, job.position, job.seed)] = x.mean()
    got = _frame_values(result.mi)
    assert got.keys() == expected.keys() and list(got.values()) == pytest.approx([expected[k] for k in got],
                                                                                rel=1e-12)
    fitted = result.mi[result.mi.layer.isin([0, 3]) | (result.mi.reading == last.name) & (result.mi.layer == 2)]
    for row in fitted.itertuples():
        job = _job(row.layer, row.level, row.position, row.seed)
        _, y = _pair_by_hand(row.layer, row.level, row.position)
        assert row.ceiling_bits == pytest.approx(job.ceiling_bits, rel=1e-12)
        assert (row.n_distinct, row.n_samples, row.estimator_seed) == (job.n_distinct, N, _seed(job))
        assert (row.model, row.corpus, row.shots, row.flag) == ("tiny", "icl-country", 2, "ok")
        assert row.bootstrap_bits.tolist() == pytest.approx([y.mean()], rel=1e-12)
    assert [(s.layer, s.side) for s in result.scales.itertuples()] == [
        (layer, side) for layer in range(4) for side in ("input", "output")]
    assert result.scales[result.scales.layer == 3].set_index("side")["mean"].to_dict() == pytest.approx(
        dict(input=MACRO[3].astype(np.float64).mean(), output=MACRO[4].astype(np.float64).mean()))

    computed = Counter((e["reading"], e["layer"], e["n_jobs"]) for e in shards.log if e["status"] == "computed")
    hand_made = {(mean.name, 1, 5): 1, (last.name, 1, 1): 2, (mean.name, 2, 5): 1}
    assert computed == Counter({**hand_made, (mean.name, 0, 5): 1, (last.name, 0, 1): 2, (last.name, 2, 1): 2,
                                (mean.name, 3, 5): 1, (last.name, 3, 1): 2})
    assert all(e["model"] == "tiny" for e in shards.log)
    rerun_done: list[int] = []
    again = reduce_cell(cell, [mean, last], [0, 1, 2, 3], on_layer_done=rerun_done.append)
    assert again.computed_layers == [] and cell.loaded == [0, 2, 3] and rerun_done == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(again.mi, result.mi)

    # an explicit window holds: one layer open at a time (macro states only, the mean reading, a fresh cache)
    narrow = _cell(state_dirs, RowCache(ShardCache(tmp_path / "cache-2"), "states-A"), micro=False, seeds=seeds,
                   cls=_CountingCell)
    assert isinstance(narrow, _CountingCell)
    narrow.watch()
    one = reduce_cell(narrow, [mean], [2, 0], window=1, on_layer_done=narrow.on_layer_done)
    assert one.computed_layers == [0, 2] and narrow.loaded == narrow.done == [0, 2] and narrow.peak == 1
    assert _frame_values(one.mi) == pytest.approx(
        {(mean.name, layer, "macro", t, 4): _pair_by_hand(layer, "macro", t)[0].mean() for layer in (0, 2)
         for t in POSITIONS}, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# `_fit_missing` without Ray: a synchronous stand-in for the four Ray calls it makes, so the task options it
# passes (which a CPU-only in-process Ray cannot tell apart) are seen, and the fault gate of `fit_task`.
# ---------------------------------------------------------------------------------------------------------------


class _SizedReading(MeanReading):
    """The mean reading with a GPU share that depends on the task's states, as MINE's `auto` share does: it
    records every `resources(n_samples, dim)` it is asked."""

    name = "units_sized_mean"
    section = "units_sized_mean"
    table_prefix = "ie_units_sized_mean"

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[Any, Any]] = []

    def resources(self, n_samples: int, dim: int) -> TaskResources:
        self.asked.append((n_samples, dim))
        return TaskResources(num_cpus=1.5, num_gpus=0.001 * n_samples * dim if n_samples else 0.0)


class _Ref:
    def __init__(self, value: Any) -> None:
        self.value = value


class _SynchronousRay:
    """ray.remote / put / wait / get run in the calling thread; `options` are recorded per task."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    def remote(self, function: Any) -> Any:
        ray_like = self

        class Remote:
            def options(self, **options: Any) -> Any:
                ray_like.options.append(options)
                return self

            def remote(self, reading: Any, states: _Ref, jobs: Any) -> _Ref:
                return _Ref(function(reading, states.value, jobs))

        return Remote()

    @staticmethod
    def put(value: Any) -> _Ref:
        return _Ref(value)

    @staticmethod
    def wait(refs: list[_Ref], num_returns: int = 1) -> tuple[list[_Ref], list[_Ref]]:
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref: _Ref) -> Any:
        return ref.value


def test_missing_tasks_ask_for_the_resources_of_their_own_states(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_dirs: tuple[Path, Path]) -> None:
    """Each missing task is submitted with the CPUs and GPU share its reading asks for *the layer's states*
    (N = 6 samples of d = 2, so 0.012 GPU here: MINE's `auto` share is sized this way) and two retries, the
    figures Ray schedules it by; its rows are the means of the states, by hand. A task sized on no states (or
    on None) would ask for no GPU, or fail."""
    import ray

    from ie_ray import ray_start

    fake = _SynchronousRay()
    for name in ("remote", "put", "wait", "get"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    monkeypatch.setattr(ray_start, "init_ray", lambda *a, **k: None)
    reading = _SizedReading()
    cell = _cell(state_dirs, RowCache(ShardCache(tmp_path / "cache"), "states-A"), micro=False, seeds=[4])
    result = reduce_cell(cell, [reading], [0, 3], window=1)
    d = MACRO.shape[-1]
    assert [a for a in reading.asked if a != (0, 0)] == [(N, d), (N, d)]  # one task per layer, sized on its states
    assert fake.options == [dict(num_cpus=1.5, num_gpus=pytest.approx(0.001 * N * d), max_retries=2)] * 2
    assert result.computed_layers == [0, 3]
    got = result.mi.set_index(["layer", "position"]).mi_bits.to_dict()
    for layer in (0, 3):
        for position in POSITIONS:
            assert got[(layer, position)] == pytest.approx(_pair_by_hand(layer, "macro", position)[0].mean())


def test_a_reading_task_waits_at_the_fit_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With IE_RAY_FAULT_GATE set, `fit_task` marks itself held at the point named "fit" (the name the node-loss
    tests open) and goes on only when `fit.open` appears: the pause that lets a fault land while a reading task
    is provably in flight."""
    import threading

    monkeypatch.setenv("IE_RAY_FAULT_GATE", str(tmp_path))
    states = LayerStates(0, IDS, tuple(POSITIONS), MACRO[0].astype(np.float32), MACRO[1].astype(np.float32))
    done: list[TaskOutput] = []
    worker = threading.Thread(target=lambda: done.append(fit_task(MeanReading(), states, ())), daemon=True)
    worker.start()
    deadline = 50
    while not list(tmp_path.glob("fit.*.held")) and deadline:
        worker.join(0.1)
        deadline -= 1
    assert [p.name.split(".")[0] for p in tmp_path.glob("*.held")] == ["fit"]
    assert not done  # held
    (tmp_path / "fit.open").touch()
    worker.join(10)
    assert done and done[0].rows == []
