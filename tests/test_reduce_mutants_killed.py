"""Behaviours of the reducer's readings (`MineReading`, `EntropyLimitReading`) that the mutation run of
`ie_ray/reduce/` found untested. Each expectation is derived by hand from the documented contract (docstrings,
the `Reading` protocol), never read back from the code under test. No training and no Ray: the MINE estimator and
the GPU planner are replaced by recording fakes where the test is about what the reading hands them."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import ie_ray.estimators
import ie_ray.resources
from ie_ray.errors import ConfigError
from ie_ray.estimators import MINEParams
from ie_ray.reduce import EstimateJob, MineReading, mine_row, reading_flag
from ie_ray.reduce.entropy_limit_reading import EntropyLimitReading
from ie_ray.reduce.jobs import plan_jobs
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.reading import TaskResources

PARAMS = MINEParams(steps=20, batch_size=64, n_bootstrap=10, objective="dv", readout="heldout")
N = 32


def _job(position: int = 0, n_distinct: int = 16, level: str = "macro", ceiling_bits: float = 4.0,
         seed: int = 0) -> EstimateJob:
    return EstimateJob(layer=0, position=position, level=level, seed=seed, ceiling_bits=ceiling_bits,
                       n_distinct=n_distinct, n_samples=N)


def _states(dtype=np.float16) -> LayerStates:
    """Two macro positions (0, 1) of random 4-wide states, stored as `dtype` (float16: as the Parquet shards)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=(N, 2))
    pre = rng.normal(size=(N, 2, 4)).astype(dtype)
    post = rng.normal(size=(N, 2, 4)).astype(dtype)
    return LayerStates(0, ids, (0, 1), pre, post)


class _FakeResult:
    """Stands in for `MIResult`: what `_fit` reads of it (`to_row()` and `bootstrap`)."""

    def __init__(self, mi_bits: float, flag: str, seed: int, bootstrap) -> None:
        self.bootstrap, self._row = bootstrap, dict(
            mi_bits=mi_bits, readout="heldout", heldout_bits=mi_bits, max_train_bits=mi_bits,
            last_train_bits=mi_bits, ci_low=mi_bits - 0.1, ci_high=mi_bits + 0.1, n_samples=N, n_train=24,
            n_heldout=8, steps=20, seed=seed, wall_s=0.0, flag=flag, objective="dv", bound_cap_bits=5.0,
            tau=math.nan, half_sample_bits=math.nan, mc_se_bits=math.nan)

    def to_row(self) -> dict:
        return dict(self._row)


@pytest.fixture
def fake_mine(monkeypatch):
    """Replace `fit_mine_ensemble` by a recorder. `plan[seed]` says the flag a fit with that seed returns (ok
    by default, value 1.0 bit, bootstrap [0.5, 1.0, 1.5] as float32)."""
    calls, plan = [], {}

    def fit(xs, ys, params, seeds):
        calls.append(dict(xs=xs, ys=ys, params=params, seeds=list(seeds)))
        return [_FakeResult(math.nan if plan.get(s) == "nan" else 1.0, plan.get(s, "ok"), s,
                            np.array([0.5, 1.0, 1.5], dtype=np.float32)) for s in seeds]

    monkeypatch.setattr(ie_ray.estimators, "fit_mine_ensemble", fit)
    return SimpleNamespace(calls=calls, plan=plan)


# --- MineReading: construction and cache key -------------------------------------------------------------------


def test_default_estimators_per_task_is_eight():
    """Without `estimators_per_task`, a task holds 8 estimates (the module docstring's "a task with 8
    estimators", and the config's default): 17 fitted jobs make tasks of 8, 8 and 1."""
    jobs = [_job(position=t) for t in range(17)]
    assert [len(t) for t in MineReading(PARAMS).tasks(jobs)] == [8, 8, 1]


def test_key_dict_of_params_without_key_dict_is_their_attributes():
    """Params objects that have no `key_dict()` (a plain namespace) enter the cache key as their attributes
    (`vars`): written out here by hand."""
    params = SimpleNamespace(objective="nwj", readout="max", steps=5)
    assert MineReading(params, positions="last").key_dict() == dict(
        params={"objective": "nwj", "readout": "max", "steps": 5}, positions="last")


def test_key_dict_of_mine_params_uses_their_key_dict():
    """`MINEParams` enter the cache key through their own `key_dict()` (which drops later-added options at their
    default; compared to the params' own method, the documented source)."""
    assert MineReading(PARAMS).key_dict() == dict(params=PARAMS.key_dict(), positions="all")


# --- MineReading: which jobs are fitted ------------------------------------------------------------------------


def test_two_distinct_inputs_are_fitted_not_constant():
    """Only a position with a single input value (n_distinct <= 1) is constant; two distinct values carry up to
    1 bit and go to a fitted task. Expected tasks written by hand: fitted [two], then the constant task."""
    two, one, none = _job(0, n_distinct=2), _job(1, n_distinct=1), _job(0, n_distinct=0, level="micro")
    assert MineReading(PARAMS).tasks([two, one, none]) == [[two], [one, none]]


def test_fit_layer_fits_a_two_valued_job_and_zeros_a_constant_one(fake_mine):
    """`fit_layer` hands the n_distinct = 2 job to the estimator (one call, its seed) and writes its fitted
    value (1.0 from the fake, flag ok); the n_distinct = 1 job gets the constant row (0 bits, flag constant).
    Exactly one row per job."""
    two, one = _job(0, n_distinct=2, ceiling_bits=1.0), _job(1, n_distinct=1, ceiling_bits=0.0)
    rows = MineReading(PARAMS).fit_layer(_states(), [two, one])
    assert [c["seeds"] for c in fake_mine.calls] == [[two.seed_for_attempt(0)]]
    assert sorted(r.position for r in rows) == [0, 1]  # one row per job
    by_pos = {r.position: r for r in rows}
    assert (by_pos[0].mi_bits, by_pos[0].flag) == (1.0, "ok")
    assert (by_pos[1].mi_bits, by_pos[1].flag) == (0.0, "constant")


# --- MineReading: resources ------------------------------------------------------------------------------------


def test_resources_pass_every_argument_to_the_gpu_planner(monkeypatch):
    """The task's GPU share is `estimator_gpus(num_gpus_per_task, params, estimators_per_task, n_samples, dim)`
    (its documented signature), and the task asks for (num_cpus, that share). The planner is a recorder."""
    seen = []
    monkeypatch.setattr(ie_ray.resources, "estimator_gpus", lambda *a: seen.append(a) or 0.375)
    reading = MineReading(PARAMS, estimators_per_task=3, num_cpus=2.0, num_gpus_per_task="auto")
    assert reading.resources(100, 16) == TaskResources(num_cpus=2.0, num_gpus=0.375)
    assert seen == [("auto", PARAMS, 3, 100, 16)]


def test_resources_with_a_fixed_gpu_share():
    """A numeric `num_gpus_per_task` is the task's GPU share as given (0.25), whatever the sizes."""
    reading = MineReading(PARAMS, num_cpus=3.0, num_gpus_per_task=0.25)
    assert reading.resources(1000, 64) == TaskResources(num_cpus=3.0, num_gpus=0.25)


def test_resources_of_an_empty_cell_ask_for_no_gpu(monkeypatch):
    """With no samples there is nothing to put on a GPU: 0.0 GPUs, and the planner is not consulted."""
    seen = []
    monkeypatch.setattr(ie_ray.resources, "estimator_gpus", lambda *a: seen.append(a) or 0.5)
    reading = MineReading(PARAMS, num_cpus=2.0, num_gpus_per_task=0.25)
    assert reading.resources(0, 16) == TaskResources(num_cpus=2.0, num_gpus=0.0)
    assert seen == []


def test_auto_gpu_share_is_sized_from_the_task(monkeypatch):
    """`auto` sizes the share from the task against the GPU memory named by IE_RAY_GPU_MEMORY_GB (8 GiB, of which
    85% = 6.8 GiB usable; each task also holds a 1 GiB context). One critic on 256 pairs of 64 dims needs a few MB
    beyond the context, so int(6.8 / 1.00x) = 6 tasks share a GPU: 1/6. Eight critics on 10^6 pairs hold
    8 * 10^6 * 2 * 64 * 4 bytes = 3.8 GiB of states alone, 4.8 GiB with the context: more than half the usable
    memory, so a whole GPU. One critic on those 10^6 pairs: 0.48 GiB + 1 GiB, int(6.8 / 1.48) = 4 per GPU."""
    monkeypatch.setenv("IE_RAY_GPU_MEMORY_GB", "8")
    small = MineReading(PARAMS, estimators_per_task=1, num_cpus=1.0, num_gpus_per_task="auto")
    big = MineReading(PARAMS, estimators_per_task=8, num_cpus=1.0, num_gpus_per_task="auto")
    assert small.resources(256, 64) == TaskResources(num_cpus=1.0, num_gpus=round(1 / 6, 6))
    assert big.resources(1_000_000, 64) == TaskResources(num_cpus=1.0, num_gpus=1.0)
    # one critic on 10^6 pairs: 0.48 GiB of states + 1 GiB context; int(6.8 / 1.48) = 4 tasks per GPU
    assert small.resources(1_000_000, 64).num_gpus == 0.25


# --- MineReading: what the estimator is handed, and the rows it gives ------------------------------------------


def test_a_retry_is_fitted_with_the_attempt_seed(fake_mine):
    """A NaN estimate is refitted alone with `seed_for_attempt(1)` (a fresh seed, not the first one): the first
    call gets both jobs' attempt-0 seeds, the second only the failed job's attempt-1 seed, and its row says
    attempt 1."""
    a, b = _job(0), _job(1)
    fake_mine.plan[a.seed_for_attempt(0)] = "nan"
    rows = MineReading(PARAMS).fit_layer(_states(), [a, b])
    assert [c["seeds"] for c in fake_mine.calls] == [[a.seed_for_attempt(0), b.seed_for_attempt(0)],
                                                     [a.seed_for_attempt(1)]]
    assert a.seed_for_attempt(1) != a.seed_for_attempt(0)
    retried = next(r for r in rows if r.position == 0)
    assert (retried.attempt, retried.flag, retried.mi_bits) == (1, "ok", 1.0)


def test_the_estimator_is_handed_float32_states(fake_mine):
    """States stored as float16 (or float32) reach the estimator stacked as float32 (E, N, d) arrays, the same
    numbers as `states.pair` gives (float16 -> float32 is exact)."""
    states, jobs = _states(np.float16), [_job(0), _job(1)]
    MineReading(PARAMS).fit_layer(states, jobs)
    (call,) = fake_mine.calls
    assert call["xs"].dtype == np.float32 and call["ys"].dtype == np.float32
    assert call["xs"].shape == (2, N, 4) and call["params"] is PARAMS
    np.testing.assert_array_equal(call["xs"][1], states.macro_pre[:, 1].astype(np.float32))
    np.testing.assert_array_equal(call["ys"][0], states.macro_post[:, 0].astype(np.float32))


def test_float32_states_stay_float32(fake_mine):
    """States already stored as float32 also reach the estimator as float32 (no silent upcast to float64)."""
    MineReading(PARAMS).fit_layer(_states(np.float32), [_job(0)])
    (call,) = fake_mine.calls
    assert call["xs"].dtype == np.float32 and call["ys"].dtype == np.float32


def test_fitted_rows_carry_the_reading_label(fake_mine):
    """The `estimator` column of a fitted row is the reading's label, mine-<objective>/<readout>: for dv with
    the held-out readout, "mine-dv/heldout" (not the bare reading name)."""
    (row,) = MineReading(PARAMS).fit_layer(_states(), [_job(0)])
    assert row.estimator == "mine-dv/heldout"
    nwj = MINEParams(steps=20, batch_size=64, n_bootstrap=10, objective="nwj", readout="max")
    (row,) = MineReading(nwj).fit_layer(_states(), [_job(0)])
    assert row.estimator == "mine-nwj/max"


def test_fitted_rows_keep_the_bootstrap_as_float64(fake_mine):
    """A fitted row's `bootstrap_bits` are the estimator's bootstrap replicates ([0.5, 1.0, 1.5] from the fake,
    exact in float32), as float64."""
    (row,) = MineReading(PARAMS).fit_layer(_states(), [_job(0)])
    assert row.bootstrap_bits.dtype == np.float64
    np.testing.assert_array_equal(row.bootstrap_bits, [0.5, 1.0, 1.5])


# --- MineReading: the constant row -----------------------------------------------------------------------------


def test_constant_row_is_an_exact_zero_with_zero_ceiling():
    """The row of a constant input is exactly 0 ("MI of a constant input is exactly 0, and so is its ceiling"):
    value, ceiling and every MINE diagnostic 0.0 (not NaN), interval "exact", flag "constant", the reading's
    label, and n_bootstrap zero replicates. The job's own ceiling (1.5 here) is not copied."""
    job = _job(1, n_distinct=1, ceiling_bits=1.5)
    (row,) = MineReading(PARAMS).fit_layer(_states(), [job])
    assert (row.mi_bits, row.ci_low, row.ci_high, row.ceiling_bits) == (0.0, 0.0, 0.0, 0.0)
    assert (row.heldout_bits, row.max_train_bits, row.last_train_bits) == (0.0, 0.0, 0.0)
    assert (row.flag, row.readout, row.objective, row.interval, row.estimator) == (
        "constant", "exact", "dv", "exact", "mine-dv/heldout")
    assert row.attempt == 0 and row.estimator_seed == job.seed_for_attempt(0)
    np.testing.assert_array_equal(row.bootstrap_bits, np.zeros(10))


def test_constant_row_has_one_replicate_without_bootstrap():
    """With n_bootstrap = 0 the constant row still carries one (zero) replicate: max(1, n_bootstrap)."""
    params = SimpleNamespace(objective="dv", readout="heldout", n_bootstrap=0)
    (row,) = MineReading(params).fit_layer(_states(), [_job(1, n_distinct=1, ceiling_bits=0.0)])
    np.testing.assert_array_equal(row.bootstrap_bits, np.zeros(1))


def test_constant_row_of_a_planned_constant_position_has_a_plus_zero_ceiling():
    """`plan_jobs` computes a constant position's ceiling as the plug-in entropy -(1 * log2 1) = -0.0; the
    constant row writes its own ceiling, +0.0 (so no table shows "-0.0 bits")."""
    job = next(j for j in plan_jobs(np.array([[5, 1], [5, 2], [5, 1]]), [0], [0, 1], [0], True)
               if j.level == "macro" and j.position == 0)
    assert job.n_distinct == 1 and math.copysign(1.0, job.ceiling_bits) == -1.0  # the planned -0.0
    (row,) = MineReading(PARAMS).fit_layer(_states(), [job])
    assert row.ceiling_bits == 0.0 and math.copysign(1.0, row.ceiling_bits) == 1.0


# --- MineReading: settings -------------------------------------------------------------------------------------


def test_unknown_positions_setting_is_a_config_error_naming_the_choices():
    """`mine.positions` is "all" or "last"; anything else is a ConfigError that names the key, the choices and
    the value given."""
    with pytest.raises(ConfigError) as err:
        MineReading(PARAMS, positions="first")
    assert str(err.value) == "mine.positions must be one of ['all', 'last'], got 'first'"


@pytest.mark.parametrize("bad", [0, -1])
def test_estimators_per_task_below_one_is_a_config_error(bad):
    """A task holds at least one estimate: 0 or fewer is a ConfigError naming `reduce.estimators_per_task`."""
    with pytest.raises(ConfigError, match=r"^reduce\.estimators_per_task must be >= 1$"):
        MineReading(PARAMS, estimators_per_task=bad)


def test_one_estimator_per_task_is_allowed():
    """estimators_per_task = 1 (the smallest allowed) gives one task per fitted job."""
    jobs = [_job(position=t) for t in range(3)]
    assert MineReading(PARAMS, estimators_per_task=1).tasks(jobs) == [[j] for j in jobs]


def test_estimators_per_task_is_kept_as_an_int():
    """A whole float from a config (2.0) is kept as the int 2: tasks of 2, 2 and 1 for 5 jobs."""
    reading = MineReading(PARAMS, estimators_per_task=2.0)
    assert reading.estimators_per_task == 2 and isinstance(reading.estimators_per_task, int)
    assert [len(t) for t in reading.tasks([_job(position=t) for t in range(5)])] == [2, 2, 1]


def test_default_settings_fit_every_position_on_one_cpu_without_gpu():
    """Defaults: positions "all" (select keeps every job), 1 CPU and no GPU per task."""
    reading = MineReading(PARAMS)
    jobs = [_job(0), _job(1), _job(0, level="micro")]
    assert reading.positions == "all" and reading.select(jobs, [0, 1]) == jobs
    assert reading.resources(100, 8) == TaskResources(num_cpus=1.0, num_gpus=0.0)


# --- mine_row and reading_flag ---------------------------------------------------------------------------------

FULL_RESULT = dict(mi_bits=2.0, ci_low=1.5, ci_high=2.5, readout="max", objective="nwj", flag="ok",
                   heldout_bits=1.75, max_train_bits=3.0, last_train_bits=2.25, n_train=24, n_heldout=8, steps=20,
                   wall_s=0.5, bound_cap_bits=5.5, tau=0.125, half_sample_bits=1.875, mc_se_bits=0.0625,
                   bootstrap_bits=np.array([1.5, 2.0, 2.5], dtype=np.float32))


def test_mine_row_carries_every_value_of_the_fit():
    """Every number of a fit goes to its column, as a float (n_train 24 -> 24.0); readout and objective as the
    estimator says; the interval is "bootstrap"; the bootstrap replicates as float64. Values written by hand."""
    job = _job(2, level="micro", ceiling_bits=4.0, seed=3)
    row = mine_row(job, dict(FULL_RESULT), attempt=1, estimator="mine-nwj/max")
    expected = dict(reading="mine", estimator="mine-nwj/max", layer=0, position=2, level="micro", seed=3,
                    estimator_seed=job.seed_for_attempt(1), attempt=1, ceiling_bits=4.0, n_distinct=16,
                    n_samples=N, mi_bits=2.0, ci_low=1.5, ci_high=2.5, flag="ok", readout="max", objective="nwj",
                    interval="bootstrap", heldout_bits=1.75, max_train_bits=3.0, last_train_bits=2.25, n_train=24.0,
                    n_heldout=8.0, steps=20.0, wall_s=0.5, bound_cap_bits=5.5, tau=0.125, half_sample_bits=1.875,
                    mc_se_bits=0.0625)
    assert {k: getattr(row, k) for k in expected} == expected
    assert all(type(getattr(row, k)) is float for k in ("n_train", "n_heldout", "steps", "mi_bits"))
    assert row.bootstrap_bits.dtype == np.float64
    np.testing.assert_array_equal(row.bootstrap_bits, [1.5, 2.0, 2.5])


def test_mine_row_of_a_bare_result_takes_the_documented_defaults():
    """A result with only `mi_bits`: flag ok, no interval (NaN ends, so not "unstable"), readout "heldout",
    objective "dv", estimator "mine", attempt 0, no bootstrap (empty float64), the MINE diagnostics NaN."""
    row = mine_row(_job(0), dict(mi_bits=1.0))
    assert (row.mi_bits, row.flag, row.readout, row.objective, row.estimator, row.attempt, row.interval) == (
        1.0, "ok", "heldout", "dv", "mine", 0, "bootstrap")
    assert math.isnan(row.ci_low) and math.isnan(row.ci_high)
    assert row.bootstrap_bits.dtype == np.float64 and row.bootstrap_bits.shape == (0,)
    for k in ("heldout_bits", "max_train_bits", "last_train_bits", "n_train", "n_heldout", "steps",
              "bound_cap_bits", "tau", "half_sample_bits", "mc_se_bits"):
        assert math.isnan(getattr(row, k)), k
    assert row.wall_s == 0.0  # the schema's default, not a diagnostic


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_non_finite_ok_value_becomes_a_nan_flag(value):
    """A non-finite value the estimator called ok (or did not flag at all) is flagged "nan" with a NaN value."""
    for result in (dict(mi_bits=value, flag="ok"), dict(mi_bits=value)):
        row = mine_row(_job(0), result)
        assert row.flag == "nan" and math.isnan(row.mi_bits)


def test_an_estimator_flag_other_than_the_retry_ones_is_kept_with_its_value():
    """A flag the estimator raised itself (not nan/diverged, e.g. "not_converged") stays, and so does the value,
    unchecked against the ceiling (12 bits over a 4-bit ceiling is not re-flagged above_ceiling)."""
    row = mine_row(_job(0, ceiling_bits=4.0), dict(mi_bits=12.0, flag="not_converged"))
    assert (row.flag, row.mi_bits) == ("not_converged", 12.0)


def test_an_ok_fit_is_checked_against_the_jobs_ceiling():
    """The ok check uses the job's ceiling and the result's interval and training bound: 4.5 bits over a
    4-bit ceiling (more than 0.25 above) is above_ceiling; a training bound 3.5 bits over is memorised; an
    interval 4.5 bits wide is unstable; all within limits is ok."""
    job = _job(0, ceiling_bits=4.0)
    base = dict(mi_bits=3.0, ci_low=2.5, ci_high=3.5, max_train_bits=4.5)
    assert mine_row(job, dict(base)).flag == "ok"
    assert mine_row(job, dict(base, mi_bits=4.5)).flag == "above_ceiling"
    assert mine_row(job, dict(base, max_train_bits=7.5)).flag == "memorised"
    assert mine_row(job, dict(base, ci_low=0.0, ci_high=4.5)).flag == "unstable"
    assert mine_row(_job(0, ceiling_bits=8.0), dict(base, mi_bits=4.5, max_train_bits=7.5)).flag == "ok"


@pytest.mark.parametrize(("args", "flag"), [
    ((4.25, 4.0, 4.5, 5.0, 4.0), "ok"),  # exactly 0.25 above the ceiling: within tolerance
    ((4.2500001, 4.0, 4.5, 5.0, 4.0), "above_ceiling"),
    ((1.0, 0.5, 1.5, 7.0, 4.0), "ok"),  # training bound exactly 3 bits over: within the margin
    ((1.0, 0.5, 1.5, 7.0000001, 4.0), "memorised"),
    ((1.0, 0.0, 4.0, 5.0, 4.0), "ok"),  # interval exactly 4 bits wide
    ((1.0, 0.0, 4.0000001, 5.0, 4.0), "unstable"),
    ((9.0, -5.0, 5.0, 20.0, 4.0), "above_ceiling"),  # all three: above_ceiling first
    ((1.0, -5.0, 5.0, 20.0, 4.0), "memorised"),  # memorised before unstable
    ((1.0, 0.5, 1.5, math.nan, 4.0), "ok"),  # no training bound: not memorised
    ((1.0, -5.0, 5.0, math.nan, 4.0), "unstable"),
    ((1.0, math.nan, math.nan, 5.0, 4.0), "ok"),  # no interval: not unstable
])
def test_reading_flag_limits_and_precedence(args, flag):
    """`reading_flag(mi, ci_low, ci_high, max_train, ceiling)`: above_ceiling when mi > ceiling + 0.25, else
    memorised when max_train > ceiling + 3 (a NaN bound never is), else unstable when ci_high - ci_low > 4, else
    ok: the limits and order from its docstring and constants, at and just past each limit."""
    assert reading_flag(*args) == flag


# --- EstimateJob seeds -----------------------------------------------------------------------------------------


def test_estimator_seeds_are_pinned():
    """An estimate's critic seed is part of its reproducibility (rows carry `estimator_seed`; a rerun or a
    newer version must draw the same critic): SeedSequence of (seed, layer, position, level code: micro = 1),
    first 32-bit word, with the attempt appended only for a retry. Values recorded from NumPy's SeedSequence:
    (5, 3, 2, micro) -> 520765992 for attempt 0, and the retry's entropy (5, 3, 2, 1, 1) gives another seed."""
    job = EstimateJob(layer=3, position=2, level="micro", seed=5, ceiling_bits=1.0, n_distinct=2, n_samples=4)
    assert job.estimator_seed == job.seed_for_attempt(0) == 520765992
    assert job.seed_for_attempt(1) == int(np.random.SeedSequence([5, 3, 2, 1, 1]).generate_state(1)[0])
    assert job.seed_for_attempt(1) != 520765992


# --- EntropyLimitReading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, True, False, "0.1", -0.5, None])
def test_entropy_tolerance_must_be_a_positive_number(bad):
    """The tolerance is an RMS per standardised coordinate: a number > 0. Zero, booleans (True is an int in
    Python but not a tolerance), strings, None and negatives are a ConfigError naming the key and the value."""
    with pytest.raises(ConfigError) as err:
        EntropyLimitReading(bad, "pooled")
    assert "entropy_limit.tolerance" in str(err.value) and repr(bad) in str(err.value)


@pytest.mark.parametrize("good", [0.5, 1, 1e-3])
def test_entropy_tolerance_accepts_positive_numbers(good):
    """Positive ints and floats are accepted and kept as a float."""
    reading = EntropyLimitReading(good, "pooled")
    assert reading.tolerance == float(good) and isinstance(reading.tolerance, float)


def _prefix_states() -> tuple[LayerStates, EstimateJob]:
    """4 equiprobable two-token prefixes (8 samples, 2 each); the block output of prefix k is the 1-wide state
    (k,), so the 4 states are 1 apart. Macro position 1 (the whole prefix)."""
    prefixes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    ids = np.repeat(prefixes, 2, axis=0)
    k = np.repeat(np.arange(4.0), 2)
    post = np.stack([np.zeros(8), k], axis=1)[:, :, None].astype(np.float32)  # (8, 2 positions, 1)
    states = LayerStates(0, ids, (0, 1), post.copy(), post, scale_rule="pooled_no_sink")
    return states, EstimateJob(layer=0, position=1, level="macro", seed=0, ceiling_bits=2.0, n_distinct=4,
                               n_samples=8)


def _spread_scale(spread: float, seen: list):
    """A `LayerStates.scale` stand-in: records (side, rule) and gives `spread` at every position."""
    def scale(side, rule=None):
        seen.append((side, rule))
        return SimpleNamespace(for_position=lambda t: SimpleNamespace(spread=np.array([spread])))
    return scale


def test_entropy_limit_uses_its_own_scale_rule_on_the_output_side():
    """The reading standardises the block output with its own scale rule ("per_position"), not the states'
    default ("pooled_no_sink"): it asks `states.scale("output", "per_position")`."""
    states, job = _prefix_states()
    seen = []
    states.scale = _spread_scale(1.0, seen)
    EntropyLimitReading(0.05, "per_position").fit_layer(states, [job])
    assert seen == [("output", "per_position")]


def test_entropy_limit_counts_states_at_the_scale_it_is_given():
    """States 1 apart merge when the spread is 100 (RMS difference 0.01 <= tolerance 0.05: one state, 0 bits)
    and stay apart at spread 0.5 (RMS 2: four equiprobable states, log2 4 = 2 bits). Were the rows' own std
    used instead (sqrt(1.25) ~ 1.12, RMS ~ 0.89), both would read 2 bits."""
    for spread, bits, n_states in ((100.0, 0.0, 1), (0.5, 2.0, 4)):
        states, job = _prefix_states()
        states.scale = _spread_scale(spread, [])
        (row,) = EntropyLimitReading(0.05, "pooled").fit_layer(states, [job])
        assert (row.mi_bits, row.n_states, row.flag) == (bits, n_states, "ok")


# ---------------------------------------------------------------------------------------------------------------
# scheduler.layers_in_flight and LayerStates' checks: survivors of the reduce package's full run (2026-12-05)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("resources", "cpus_per_task", "window"), [
    ({}, 1, 2),                 # a cluster reporting no CPU counts as one CPU: one task at a time, plus one
    ({}, 0.5, 3),
    ({"CPU": 1.0}, 0.1, 11),    # ten 0.1-CPU tasks fit one CPU (1.0 // 0.1 would say nine)
    ({"CPU": 3.0}, 2, 2),       # one 2-CPU task at a time on 3 CPUs
    ({"CPU": 0.5}, 1, 2),       # at least one task
])
def test_layers_in_flight_from_the_clusters_cpus(monkeypatch, resources, cpus_per_task, window):
    import ray

    from ie_ray.reduce.scheduler import layers_in_flight

    monkeypatch.setattr(ray, "cluster_resources", lambda: dict(resources))
    assert layers_in_flight(cpus_per_task) == window


def _layer_states(n_pre: int = 4, n_post: int = 4, **micro) -> LayerStates:
    ids = np.arange(8).reshape(4, 2)
    return LayerStates(3, ids, (0, 1), np.zeros((n_pre, 2, 5), np.float32), np.zeros((n_post, 2, 5), np.float32),
                       **micro)


@pytest.mark.parametrize(("n_pre", "n_post", "rows"), [(5, 4, 5), (4, 5, 4), (3, 3, 3)])
def test_states_of_another_corpus_are_refused_with_the_row_counts(n_pre, n_post, rows):
    """Either side with a row count other than the corpus's is refused (an `and` would let one side through), and
    the message names the extracted rows (axis 0, not the position axis) and the fix."""
    want = (f"layer 3: {rows} extracted rows for 4 samples; the states do not belong to this corpus "
            "(rerun the extraction)")
    with pytest.raises(ValueError) as caught:
        _layer_states(n_pre, n_post)
    assert str(caught.value) == want


@pytest.mark.parametrize("micro", [dict(micro_pre=np.zeros((3, 5), np.float32)),
                                   dict(token_row=np.zeros((4, 2), np.int64))])
def test_micro_states_without_their_token_rows_are_refused(micro):
    with pytest.raises(ValueError) as caught:
        _layer_states(**micro)
    assert str(caught.value) == "micro states and their token rows come together"


def test_loading_micro_states_without_the_unique_tokens_says_what_is_missing(monkeypatch, tmp_path):
    from ie_ray import store

    monkeypatch.setattr(store, "read_layer_states",
                        lambda directory, layer, read=None: (None, np.zeros((4, 2, 5), np.float32),
                                                             np.zeros((4, 2, 5), np.float32)))
    with pytest.raises(ValueError) as caught:
        LayerStates.load(3, np.arange(8).reshape(4, 2), [0, 1], tmp_path, micro_dir=tmp_path)
    assert str(caught.value) == "micro states need `unique_tokens`, the token fed alone at each of their rows"
