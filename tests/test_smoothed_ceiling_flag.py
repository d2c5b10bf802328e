"""The smoothed reading's `above_ceiling` flag: a reading the estimator called ok whose whole 95% interval lies
above the job's entropy ceiling by more than the estimator's tolerance is flagged and stays out of `ok` rows."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ie_ray.estimators.smoothed import SmoothedParams, SmoothedReading, SmoothedResult
from ie_ray.reduce import SmoothedMIReading, plan_jobs
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.scheduler import fit_task
from ie_ray.reduce.smoothed_reading import ceiling_flag

N = 12


def _reading(value: float, low: float, high: float, mc_se: float = 0.01, flag: str = "ok",
             reported: bool = True) -> SmoothedReading:
    return SmoothedReading(tau=0.25, sigma=1.0, mi_bits=value, plugin_bits=value, half_bits=value, mc_se_bits=mc_se,
                           ci_low=low if reported else math.nan, ci_high=high if reported else math.nan,
                           bootstrap=np.zeros(3 if reported else 0), flag=flag, loo_bits=value, reported=reported)


DEFAULT = SmoothedParams()  # tolerance max(0.05 bit, 5% of the ceiling)


@pytest.mark.parametrize(("value", "low", "high", "ceiling", "want"), [
    # ceiling 3 bits: tolerance 0.15, so a reading is over only with its whole interval above 3.15
    (3.30, 3.16, 3.40, 3.0, "above_ceiling"),
    (3.30, 3.15, 3.40, 3.0, "ok"),             # the interval reaches the ceiling plus tolerance
    (3.30, 3.10, 3.40, 3.0, "ok"),
    (3.12, 3.05, 3.14, 3.0, "ok"),             # wholly over the ceiling, but by less than the tolerance
    (2.90, 3.20, 3.40, 3.0, "ok"),             # an estimate under its interval widens it down to itself
    # ceiling 0.5 bit: 5% is 0.025, so the 0.05-bit floor rules: over from 0.55
    (0.70, 0.56, 0.80, 0.5, "above_ceiling"),
    (0.70, 0.54, 0.80, 0.5, "ok"),
    # as in the 20k ICL runs: 25 names fed alone at tau 0.25, the interval just over the sample's plug-in entropy
    (4.6477, 4.6440, 4.6513, 4.6432, "ok"),
])
def test_a_reported_reading_is_above_the_ceiling_when_its_whole_interval_passes_it_by_the_tolerance(
        value, low, high, ceiling, want) -> None:
    assert ceiling_flag(_reading(value, low, high), ceiling, DEFAULT) == want


def test_the_tolerance_follows_the_estimators_convergence_settings() -> None:
    strict = SmoothedParams(convergence_min_bits=0.001, convergence_fraction=0.0)
    assert ceiling_flag(_reading(3.12, 3.05, 3.14), 3.0, strict) == "above_ceiling"
    assert ceiling_flag(_reading(3.12, 3.05, 3.14), 3.0, DEFAULT) == "ok"
    loose = SmoothedParams(convergence_min_bits=0.05, convergence_fraction=0.10)  # 0.3 bit at a 3-bit ceiling
    assert ceiling_flag(_reading(3.30, 3.16, 3.40), 3.0, loose) == "ok"


def test_an_unreported_reading_uses_its_monte_carlo_error() -> None:
    # no replicates: the interval is estimate -+ 1.96 mc_se; 3.30 with mc_se 0.07 reaches down to 3.163 > 3.15
    assert ceiling_flag(_reading(3.30, 0, 0, mc_se=0.07, reported=False), 3.0, DEFAULT) == "above_ceiling"
    assert ceiling_flag(_reading(3.30, 0, 0, mc_se=0.08, reported=False), 3.0, DEFAULT) == "ok"  # reaches 3.143


@pytest.mark.parametrize("flag", ["not_converged", "undersampled", "imprecise", "below_zero", "nan"])
def test_the_estimators_own_flag_is_kept(flag: str) -> None:
    assert ceiling_flag(_reading(9.0, 8.0, 10.0, flag=flag), 3.0, DEFAULT) == flag


class _Above:
    """Stands in for smoothed_mi_batch: every problem reads 2.0 bits [1.9, 2.1] at tau 0.25 (reported) and
    2.0 +- 1.96 x 0.01 at tau 0.5 (not reported), all ok."""

    def __call__(self, xs, ys, params, seeds, scales_x, scales_y, counts=None):
        readings = (_reading(2.0, 1.9, 2.1), SmoothedReading(
            tau=0.5, sigma=2.0, mi_bits=2.0, plugin_bits=2.0, half_bits=2.0, mc_se_bits=0.01, ci_low=math.nan,
            ci_high=math.nan, bootstrap=np.zeros(0), flag="ok", loo_bits=2.0, reported=False))
        return [SmoothedResult(readings, n_samples=N, n_draws=8, d_x=2, d_y=2, seed=s, wall_s=1.0, n_atoms=N)
                for s in seeds]


def test_rows_above_their_jobs_ceiling_are_flagged_and_the_others_not(monkeypatch) -> None:
    import ie_ray.reduce.smoothed_reading as module

    monkeypatch.setattr(module, "smoothed_mi_batch", _Above())
    # 12 sequences of 3 tokens: token 0 one of 2 values, token 1 a constant separator, token 2 all distinct.
    ids = np.stack([np.arange(N) % 2 + 1, np.full(N, 5), np.arange(N) + 10], axis=1)
    rng = np.random.default_rng(0)
    pre, post = rng.normal(size=(2, N, 3, 2)).astype(np.float32)
    unique = np.unique(ids)
    micro = rng.normal(size=(2, len(unique), 2)).astype(np.float32)
    states = LayerStates(4, ids, (0, 1, 2), pre, post, micro[0], micro[1], np.searchsorted(unique, ids))
    jobs = plan_jobs(ids, [4], [0, 1, 2], [0], with_micro=True)
    rows = fit_task(SmoothedMIReading(SmoothedParams(tau=0.25, taus=(0.5,)), "pooled"), states, tuple(jobs)).rows
    # the ceilings by hand: 2 equally likely prefixes up to position 1 (1 bit), 12 at position 2 (log2 12 bits);
    # micro: token 0 alone 1 bit, the separator 0 (a constant row), token 2 alone log2 12. 2.0 bits [1.9, 2.1] is
    # above 1 bit + 0.05 and below log2 12
    want = {("macro", 0): "above_ceiling", ("macro", 1): "above_ceiling", ("macro", 2): "ok",
            ("micro", 0): "above_ceiling", ("micro", 1): "constant", ("micro", 2): "ok"}
    got = {(r.level, r.position, r.tau): r.flag for r in rows}
    assert got == {(level, pos, tau): flag for (level, pos), flag in want.items() for tau in (0.25, 0.5)}
    assert {(r.level, r.position): r.ceiling_bits for r in rows if r.flag != "constant"} == pytest.approx(
        {("macro", 0): 1.0, ("macro", 1): 1.0, ("macro", 2): math.log2(N), ("micro", 0): 1.0,
         ("micro", 2): math.log2(N)})
