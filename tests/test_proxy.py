"""Proxy math on synthetic inputs whose right answers are known: exact lines, textbook prediction intervals,
known correlations, leave-one-out errors, family names, and the refusals."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ie_ray.errors import ConfigError
from ie_ray.proxy import (
    correlate,
    family_of,
    fisher_interval,
    fit_line,
    leave_one_out,
    scalable_families,
    scaling_fit,
    standard_error,
    text_proxy,
)

# --- the line fit and its prediction interval ------------------------------------------------------------------


def test_exact_line_is_recovered_and_predicts_exactly() -> None:
    x = np.log10([1e8, 3e8, 1e9, 3e9])
    y = 2.0 + 1.5 * x
    fit = fit_line(x, y)
    assert fit.slope == pytest.approx(1.5, abs=1e-12)
    assert fit.intercept == pytest.approx(2.0, abs=1e-12)
    assert fit.residual_std == pytest.approx(0.0, abs=1e-12)
    yhat, low, high = fit.predict(np.log10(7e10))
    assert float(yhat) == pytest.approx(2.0 + 1.5 * np.log10(7e10), abs=1e-10)
    assert float(high - low) == pytest.approx(0.0, abs=1e-9)  # no scatter -> no width


def test_prediction_interval_matches_the_textbook_formula() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([0.1, 0.9, 2.2, 2.8, 4.1])
    fit = fit_line(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert (fit.slope, fit.intercept) == (pytest.approx(slope), pytest.approx(intercept))
    resid = y - (intercept + slope * x)
    s = math.sqrt((resid**2).sum() / 3)
    x0 = 7.0
    half = stats.t.ppf(0.975, 3) * s * math.sqrt(1 + 1 / 5 + (x0 - 2.0) ** 2 / 10.0)
    yhat, low, high = fit.predict(x0)
    assert float(low) == pytest.approx(intercept + slope * x0 - half)
    assert float(high) == pytest.approx(intercept + slope * x0 + half)
    # extrapolating further widens the interval
    _, low9, high9 = fit.predict(9.0)
    assert float(high9 - low9) > float(high - low)


def test_prediction_interval_covers_new_points_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    x = np.array([8.0, 8.5, 9.0, 9.5])
    hits = 0
    for _ in range(2000):
        y = 1.0 + 0.5 * x + rng.normal(0, 0.3, size=4)
        _, low, high = fit_line(x, y).predict(10.5)
        hits += bool(low <= 1.0 + 0.5 * 10.5 + rng.normal(0, 0.3) <= high)
    assert hits / 2000 == pytest.approx(0.95, abs=0.02)


def test_two_points_have_no_interval_and_one_x_is_refused() -> None:
    fit = fit_line(np.array([1.0, 2.0]), np.array([3.0, 5.0]))
    yhat, low, high = fit.predict(3.0)
    assert float(yhat) == pytest.approx(7.0) and np.isnan(low) and np.isnan(high)
    with pytest.raises(ConfigError, match="distinct x"):
        fit_line(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))


def test_leave_one_out_on_an_exact_line_has_zero_error() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    loo = leave_one_out(x, 3.0 - 0.5 * x)
    np.testing.assert_allclose(loo.error, 0.0, atol=1e-12)
    assert loo.covered.tolist() == [True] * 4


def test_leave_one_out_error_of_a_known_outlier() -> None:
    # points on y = x except the last, which sits 3 above: refit on the first three predicts it at 4 exactly
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 2.0, 3.0, 7.0])
    loo = leave_one_out(x, y)
    assert loo.predicted.iloc[3] == pytest.approx(4.0)
    assert loo.error.iloc[3] == pytest.approx(-3.0)
    with pytest.raises(ConfigError, match=">= 3 points"):
        leave_one_out(x[:2], y[:2])


# --- Proxy A: correlation ---------------------------------------------------------------------------------------


def test_fisher_interval_formula_and_limits() -> None:
    low, high = fisher_interval(0.5, 28)  # se = 1/5 in z units
    assert low == pytest.approx(math.tanh(math.atanh(0.5) - 1.959964 / 5), abs=1e-6)
    assert high == pytest.approx(math.tanh(math.atanh(0.5) + 1.959964 / 5), abs=1e-6)
    assert all(np.isnan(fisher_interval(0.5, 3)))  # n - 3 = 0: undefined
    assert fisher_interval(1.0, 10) == (1.0, 1.0)


def test_correlation_of_known_bivariate_normal_data() -> None:
    rng = np.random.default_rng(1)
    rho = 0.6
    cov = [[1.0, rho], [rho, 1.0]]
    xy = rng.multivariate_normal([0, 0], cov, size=2000)
    c = correlate(xy[:, 0], xy[:, 1])
    assert c.pearson_r == pytest.approx(rho, abs=0.04)
    assert c.ci_low < rho < c.ci_high
    assert c.boot_low < rho < c.boot_high
    assert c.ci_high - c.ci_low == pytest.approx(2 * 1.96 * (1 - rho**2) / math.sqrt(2000), rel=0.15)


def test_perfect_and_anticorrelated_conditions() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    up = correlate(x, 10 + 2 * x)
    assert up.pearson_r == pytest.approx(1.0) and up.spearman_rho == pytest.approx(1.0)
    assert (up.boot_low, up.boot_high) == (pytest.approx(1.0), pytest.approx(1.0))
    down = correlate(x, -x)
    assert down.pearson_r == pytest.approx(-1.0)


def test_measurement_noise_widens_the_bootstrap_interval() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = x + np.array([0.1, -0.1, 0.05, 0.0, -0.05, 0.1])
    quiet = correlate(x, y)
    noisy = correlate(x, y, x_se=np.full(6, 1.5), y_se=np.full(6, 1.5))
    assert noisy.pearson_r == quiet.pearson_r  # the point estimate ignores the noise ...
    assert noisy.boot_low < quiet.boot_low - 0.3  # ... the interval does not


def test_correlation_needs_three_conditions() -> None:
    with pytest.raises(ConfigError, match=">= 3 paired conditions"):
        correlate(np.array([1.0, 2.0]), np.array([1.0, 3.0]))


def _models_table(values: dict[str, list[float]], half: float = 0.2, n_params: dict[str, int] | None = None):
    """A models.csv-like table: one row per (model, condition), conditions = icl-<k> corpora at 4 shots."""
    rows = []
    for model, ies in values.items():
        for k, ie in enumerate(ies):
            rows.append(dict(model=model, corpus=f"icl-{k}", shots=4, n_layers=4, ie_mean_bits=ie,
                             ie_mean_ci_low=ie - half, ie_mean_ci_high=ie + half, ie_sum_bits=4 * ie,
                             ie_sum_ci_low=4 * ie - 2 * half, ie_sum_ci_high=4 * ie + 2 * half,
                             n_params=(n_params or {}).get(model, 1)))
    return pd.DataFrame(rows)


def test_text_proxy_with_an_affine_target_is_perfect() -> None:
    small = [1.0, 2.0, 4.0, 3.0, 5.0]
    table = _models_table({"small": small, "large": [0.5 + 2.0 * v for v in small]})
    result = text_proxy(table, "small", "large")
    assert result.correlation.n == 5
    assert result.correlation.pearson_r == pytest.approx(1.0)
    assert (result.calibration.slope, result.calibration.intercept) == (pytest.approx(2.0), pytest.approx(0.5))
    assert result.loo_rmse == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(result.table.loo_error_bits, 0.0, atol=1e-9)
    np.testing.assert_allclose(result.table.proxy_se_bits, 0.2 / 1.959964, rtol=1e-5)
    row = result.summary_row()
    assert row["proxy"] == "small" and row["target"] == "large" and row["n_conditions"] == 5


def test_text_proxy_pairs_conditions_by_corpus_and_shots() -> None:
    table = _models_table({"small": [1.0, 2.0, 3.0, 4.0], "large": [1.0, 2.0, 3.0, 4.0]})
    table = table[~((table.model == "large") & (table.corpus == "icl-0"))]  # large misses one condition
    result = text_proxy(table, "small", "large")
    assert result.correlation.n == 3 and list(result.table.corpus) == ["icl-1", "icl-2", "icl-3"]


def test_text_proxy_refusals_name_the_fix() -> None:
    table = _models_table({"small": [1.0, 2.0], "large": [2.0, 3.0]})
    with pytest.raises(ConfigError, match="not in this run"):
        text_proxy(table, "small", "huge")
    with pytest.raises(ConfigError, match="same model"):
        text_proxy(table, "small", "small")
    with pytest.raises(ConfigError, match=">= 3 paired conditions"):
        text_proxy(table, "small", "large")
    with pytest.raises(ConfigError, match="statistic"):
        text_proxy(table, "small", "large", statistic="ie_max")


def test_standard_error_is_half_width_over_z() -> None:
    assert float(standard_error(1.0, 1.0 + 2 * 1.959964)) == pytest.approx(1.0, rel=1e-6)


# --- Proxy B: scaling extrapolation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, family",
    [
        ("gpt2", "gpt2"),
        ("openai-community/gpt2-medium", "gpt2"),
        ("gpt2-xl", "gpt2"),
        ("openlm-research/open_llama_3b", "open-llama"),
        ("openlm-research/open_llama_7b", "open-llama"),
        ("Qwen/Qwen2.5-0.5B", "qwen2.5"),
        ("Qwen/Qwen2.5-7B", "qwen2.5"),
        ("EleutherAI/pythia-410m-deduped", "pythia-deduped"),
        ("smollm2-135m", "smollm2"),
        ("gemma3-270m", "gemma3"),
        ("google/gemma-2b", "gemma"),
    ],
)
def test_family_of_strips_size_tokens(name: str, family: str) -> None:
    assert family_of(name) == family


def _family_table(slope: float = 2.0, intercept: float = -10.0, noise: list[float] | None = None):
    sizes = {"gpt2": 124_000_000, "gpt2-medium": 355_000_000, "gpt2-large": 774_000_000, "gpt2-xl": 1_558_000_000}
    noise = noise or [0.0] * len(sizes)
    values = {m: [intercept + slope * math.log10(n) + e] for (m, n), e in zip(sizes.items(), noise)}
    return _models_table(values, n_params=sizes), sizes


def test_perfectly_linear_family_extrapolates_exactly_with_zero_loo_error() -> None:
    table, sizes = _family_table()
    (fit,) = scaling_fit(table, "gpt2", predict_params=[7e9])
    assert fit.fit.slope == pytest.approx(2.0) and fit.fit.intercept == pytest.approx(-10.0)
    assert fit.predictions.predicted.iloc[0] == pytest.approx(-10.0 + 2.0 * math.log10(7e9))
    assert fit.loo_rmse == pytest.approx(0.0, abs=1e-9)
    assert fit.largest_error == pytest.approx(0.0, abs=1e-9)
    assert fit.loo.largest.tolist() == [False, False, False, True]
    assert fit.summary_row()["n_models"] == 4


def test_noisy_family_reports_its_loo_error_and_a_wider_interval() -> None:
    table, _ = _family_table(noise=[0.0, 0.3, -0.3, 0.0])
    (fit,) = scaling_fit(table, "gpt2", predict_params=[1.5e10])
    assert fit.loo_rmse > 0.1
    x = np.log10(table.sort_values("n_params").n_params.to_numpy(dtype=float))
    y = table.sort_values("n_params").ie_mean_bits.to_numpy()
    # the largest predicted from the three smaller ones, by hand
    slope, intercept = np.polyfit(x[:3], y[:3], 1)
    assert fit.largest_error == pytest.approx(intercept + slope * x[3] - y[3])
    p = fit.predictions.iloc[0]
    assert p.pi_low < p.predicted < p.pi_high


def test_scaling_refuses_fewer_than_three_sizes_and_lists_families() -> None:
    table = _models_table({"smollm2-135m": [1.0], "gemma3-270m": [2.0]},
                          n_params={"smollm2-135m": 134_515_008, "gemma3-270m": 268_098_176})
    with pytest.raises(ConfigError, match=r"needs >= 3 models of different sizes, got 1.*'gemma3': \['gemma3-270m'\]"):
        scaling_fit(table, "smollm2")
    assert scalable_families(table) == {}


def test_explicit_family_mapping_overrides_names() -> None:
    sizes = {"a": 10**6, "b": 10**7, "c": 10**8}
    table = _models_table({m: [float(k)] for k, m in enumerate(sizes)}, n_params=sizes)
    families = {m: "toy" for m in sizes}
    assert scalable_families(table, families) == {"toy": ["a", "b", "c"]}
    (fit,) = scaling_fit(table, "toy", predict_params=[10**9], families=families)
    assert fit.predictions.predicted.iloc[0] == pytest.approx(3.0)  # IE = log10(N) - 6
    with pytest.raises(ConfigError, match="positive"):
        scaling_fit(table, "toy", predict_params=[-1], families=families)


def test_conditions_with_a_failed_estimate_are_left_out() -> None:
    table = _models_table({"small": [1.0, 2.0, 3.0, 4.0], "large": [2.0, float("nan"), 6.0, 8.0]})
    result = text_proxy(table, "small", "large")
    assert result.correlation.n == 3 and result.correlation.pearson_r == pytest.approx(1.0)
    sizes = {"a-1m": 10**6, "a-10m": 10**7, "a-100m": 10**8, "a-1b": 10**9}
    family = _models_table({m: [v] for m, v in zip(sizes, [1.0, 2.0, float("nan"), 4.0])}, n_params=sizes)
    (fit,) = scaling_fit(family, "a")
    assert fit.fit.n == 3 and fit.fit.slope == pytest.approx(1.0)


def test_a_flagged_member_flags_the_scaling_fit_and_its_loo_row() -> None:
    table, _ = _family_table()
    (clean,) = scaling_fit(table, "gpt2")
    assert clean.flag == "ok" and clean.summary_row()["n_members_flagged"] == 0  # no flag column: all ok
    table["flag"] = ["ok", "undersampled", "", "ok"]  # "" = no flag (older tables)
    (fit,) = scaling_fit(table, "gpt2")
    row = fit.summary_row()
    assert (row["flag"], row["n_members_flagged"]) == ("members_flagged", 1)
    assert fit.loo.set_index("model").member_flag.to_dict() == {
        "gpt2": "ok", "gpt2-medium": "undersampled", "gpt2-large": "ok", "gpt2-xl": "ok"}
