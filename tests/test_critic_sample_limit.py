"""The closed-form "best learnable critic" behind the README's d = 768 statement (benchmarks/critic_sample_limit.py):
its DV value must be exact for the true critic, and the fitted critic must behave as the first-order law says."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ie_ray.estimators.benchmark import Task

from benchmark_loader import load_benchmark  # tests/ is on sys.path

csl = load_benchmark("critic_sample_limit")


@pytest.mark.parametrize("d, mi", [(1, 2.0), (8, 4.0), (64, 1.0)])
def test_true_critic_reads_the_true_mi_exactly(d: int, mi: float) -> None:
    rho = math.sqrt(1 - 2 ** (-2 * mi / d))
    const, m = csl.critic_quadratic(np.full(d, rho))
    true_cov = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
    value = csl.population_dv_bits(const, m, np.zeros(2 * d), true_cov, np.eye(2 * d))
    assert value == pytest.approx(mi, abs=1e-9)
    # a critic of the wrong strength reads less (DV is maximised by the true log ratio)
    const2, m2 = csl.critic_quadratic(np.full(d, 0.5 * rho))
    assert csl.population_dv_bits(const2, m2, np.zeros(2 * d), true_cov, np.eye(2 * d)) < mi - 1e-3


def test_fitted_critic_follows_the_first_order_law() -> None:
    # d = 64, 4 bits: the law predicts the best shrunk critic reads MI S/(S+E); the ML plug-in reads less, and
    # with 10x the pairs both approach the truth.
    small = csl.readings(Task("gaussian", 64, 4.0, seed=5), 2000)
    large = csl.readings(Task("gaussian", 64, 4.0, seed=5), 20000)
    assert small["ml_plugin_bits"] < small["oracle_shrink_bits"] <= 4.0
    assert small["oracle_shrink_bits"] == pytest.approx(small["predicted_oracle_bits"], rel=0.1)
    assert 3.6 < large["ml_plugin_bits"] <= large["oracle_shrink_bits"] <= 4.0
    # below 2 d training rows the ML fit is singular: no plug-in reading, and the law says almost nothing is left
    tiny = csl.readings(Task("gaussian", 768, 4.0, seed=5), 1000)
    assert math.isnan(tiny["ml_plugin_bits"]) and tiny["predicted_oracle_bits"] < 0.1
