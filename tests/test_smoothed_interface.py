"""`estimate(x, y, "smoothed")`: the one-call interface returns the headline reading as an MIResult."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ie_ray.estimators import ALL_ESTIMATORS, MINEParams, SmoothedParams, estimate, smoothed_mi


def _pairs(n: int = 400, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    return x, x + 0.3 * rng.normal(size=(n, d))


def test_estimate_smoothed_is_the_reading_at_tau():
    x, y = _pairs()
    params = SmoothedParams(tau=0.5, taus=(0.25, 1.0), n_draws=200, n_bootstrap=20)
    result = estimate(x, y, "smoothed", params, seed=3)
    direct = smoothed_mi(x, y, params, seed=3).at(0.5)
    assert "smoothed" in ALL_ESTIMATORS
    assert result.readout == "smoothed" and result.objective == "smoothed" and result.tau == 0.5
    assert result.mi_bits == direct.mi_bits and result.half_sample_bits == direct.half_bits
    assert result.ci_low <= result.mi_bits <= result.ci_high
    assert result.bound_cap_bits == pytest.approx(math.log2(400))
    assert result.to_row()["tau"] == 0.5 and result.flag in ("ok", "not_converged", "undersampled", "imprecise")
    # a mapping of fields works like the dataclass
    again = estimate(x, y, "smoothed", dict(tau=0.5, taus=[0.25, 1.0], n_draws=200, n_bootstrap=20), seed=3)
    assert again.mi_bits == result.mi_bits


def test_estimate_smoothed_rejects_other_params():
    x, y = _pairs(50)
    with pytest.raises(ValueError, match="takes SmoothedParams"):
        estimate(x, y, "smoothed", MINEParams())
    with pytest.raises(ValueError, match="takes MINEParams, not SmoothedParams"):
        estimate(x, y, "dv", SmoothedParams())
    with pytest.raises(ValueError, match="unknown smoothed-MI setting"):
        estimate(x, y, "smoothed", {"noise": 1.0})


def test_batch_names_the_problem_with_bad_states():
    from ie_ray.estimators import smoothed_mi_batch

    x, y = _pairs(30)
    broken = y.copy()
    broken[4, 0] = np.nan
    with pytest.raises(ValueError, match=r"problem 1\): y has NaN/inf in rows \[4\]"):
        smoothed_mi_batch([x, x], [y, broken], SmoothedParams(n_draws=20), [0, 1])
    with pytest.raises(ValueError, match="one of each per problem"):
        smoothed_mi_batch([x, x], [y], SmoothedParams(n_draws=20), [0, 1])


def test_mi_result_keeps_the_flag_and_the_diagnostics():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    params = SmoothedParams(tau=0.05, taus=(), n_draws=100, n_bootstrap=10)
    result = smoothed_mi(x, x + 0.01 * rng.normal(size=x.shape), params, seed=0)
    reading, mi = result.at(0.05), result.to_mi_result(0.05)
    assert reading.flag != "ok"  # tau -> 0 on 300 distinct states: capped at log2 N, so not converged
    assert (mi.flag, mi.half_sample_bits, mi.mc_se_bits) == (reading.flag, reading.half_bits, reading.mc_se_bits)


def test_a_reading_whose_interval_lies_below_zero_is_flagged_below_zero():
    """MI is never negative: a reading that passes the convergence rules but whose whole 95% interval is below 0
    is flagged (the 20k ICL run had such rows flagged `ok`); one whose interval reaches 0 stays `ok`."""
    from ie_ray.estimators.smoothed import _reading

    params = SmoothedParams(tau=0.5)
    rng = np.random.default_rng(0)
    spread = rng.normal(0.0, 0.01, size=200)
    # plug-in -0.10, N/2 -0.11: converged (0.01 < 0.05), extrapolated value -0.09, interval ~ +-0.04
    low = _reading(params, 0.5, 1.0, np.r_[-0.10, -0.11, -0.10 + spread], 0.001, -0.10)
    assert low.flag == "below_zero" and low.ci_high < 0
    near = _reading(params, 0.5, 1.0, np.r_[-0.01, -0.02, -0.01 + spread], 0.001, -0.01)
    assert near.flag == "ok" and near.ci_high >= 0
    # a secondary tau (no replicates): the estimate plus 1.96 Monte Carlo errors
    assert _reading(params, 0.5, 1.0, np.r_[-0.10, -0.11], 0.001, -0.10, reported=False).flag == "below_zero"
    assert _reading(params, 0.5, 1.0, np.r_[-0.01, -0.02], 0.01, -0.01, reported=False).flag == "ok"
