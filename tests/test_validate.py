"""`ie-ray validate` and what it stands on: the synthetic tasks have the closed-form MI they claim, the one-call
`estimate` interface reaches every estimator, the diagnostic flags fire on constructed failures (and only
there), and the command runs end to end in quick mode, writing the table, the plot and the summary."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ie_ray.cli import main
from ie_ray.estimators import (
    ESTIMATORS,
    GaussianParams,
    MINEParams,
    diagnose,
    estimate,
    estimate_gaussian,
    estimate_mine,
    gaussian_mi_bits,
)
from ie_ray.estimators.benchmark import ALL_FAMILIES, FAMILIES, Task, correlated_gaussians, independent_gaussians, make_tasks
from ie_ray.estimators.diagnostics import NEGATIVE_MARGIN_BITS
from ie_ray.validate import ValidationConfig, median_errors, recommend, run_validation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the tasks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize(("d", "mi"), [(1, 0.1), (1, 6.0), (4, 2.0)])
def test_inverted_samples_have_the_claimed_gaussian_mi(family: str, d: int, mi: float) -> None:
    # Undoing the invertible maps leaves a jointly Gaussian pair, whose plug-in Gaussian MI on 100k rows is the
    # truth to ~0.01 bit: the generator builds what it claims, and the maps keep MI (they are invertible).
    task = Task(family, d, mi, seed=3)
    x, y = task.sample(100_000)
    xi, yi = task.invert(x, y)
    assert gaussian_mi_bits(xi, yi, shrinkage=0.0) == pytest.approx(mi, abs=0.02 + 0.005 * mi)


def test_nonlinear_maps_hide_the_dependence_from_the_gaussian_closed_form() -> None:
    # Same MI, but the Gaussian fit of the mapped pair sees far less of it: the family really is non-linear.
    x, y = Task("nonlinear", 1, 4.0, seed=0).sample(50_000)
    assert gaussian_mi_bits(x, y, shrinkage=0.0) < 2.0


def test_residual_closed_form_is_the_gaussian_channel_formula() -> None:
    # Independently of the root solver: the MI of the population covariance of (x, z = A x + sigma eps).
    task = Task("residual", 5, 3.0, seed=1)
    a, sigma, _, _ = task._residual_maps()
    cov = np.block([[np.eye(5), a.T], [a, a @ a.T + sigma**2 * np.eye(5)]])
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    exact = 0.5 * (logdet(cov[:5, :5]) + logdet(cov[5:, 5:]) - logdet(cov)) / math.log(2)
    assert exact == pytest.approx(3.0, abs=1e-9)
    assert task.residual_mi_bits() == pytest.approx(3.0, abs=1e-9)


def test_tasks_are_reproducible_and_distinct() -> None:
    tasks = make_tasks([2, 3], [1.0, 2.0], list(FAMILIES), seed=0)
    assert len(tasks) == 12 and len({t.seed for t in tasks}) == 12
    a, b = tasks[0].sample(50), tasks[0].sample(50)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].dtype == np.float32 and a[0].shape == (50, 2)
    with pytest.raises(ValueError, match="unknown task family 'spiral'"):
        Task("spiral", 2, 1.0, 0)


# --- one-call interface ----------------------------------------------------------------------------------------


def test_estimate_reaches_every_estimator_with_the_same_numbers() -> None:
    x, y = correlated_gaussians(3, 1.0, 400, seed=0)
    quick = MINEParams(steps=10, batch_size=64, n_bootstrap=10, marginal_shifts=16)
    assert set(ESTIMATORS) == {"dv", "nwj", "infonce", "smile", "mine_ema", "js", "gaussian"}
    via = estimate(x, y, "nwj", quick, seed=2)
    direct = estimate_mine(x, y, MINEParams(objective="nwj", steps=10, batch_size=64, n_bootstrap=10,
                                            marginal_shifts=16), seed=2)
    assert via.objective == "nwj" and via.mi_bits == direct.mi_bits
    from_mapping = estimate(x, y, "dv", {"steps": 10, "batch_size": 64, "n_bootstrap": 10, "marginal_shifts": 16})
    assert from_mapping.objective == "dv" and math.isfinite(from_mapping.mi_bits)
    g = estimate(x, y, "gaussian", {"n_bootstrap": 20}, seed=1)
    assert g.mi_bits == estimate_gaussian(x, y, n_bootstrap=20, seed=1).mi_bits
    assert estimate(x, y, "gaussian", GaussianParams(shrinkage=0.0)).mi_bits == pytest.approx(
        gaussian_mi_bits(*(a[np.random.default_rng(0).permutation(400)[:320]] for a in (x, y)), 0.0))
    with pytest.raises(ValueError, match="unknown estimator 'mine'"):
        estimate(x, y, "mine")
    with pytest.raises(ValueError, match="takes GaussianParams"):
        estimate(x, y, "gaussian", quick)
    with pytest.raises(ValueError, match="unknown Gaussian parameter"):
        estimate(x, y, "gaussian", {"steps": 3})


# --- diagnostic flags ------------------------------------------------------------------------------------------


def test_flag_rules_on_constructed_curves() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.3, 400)
    plateau = np.minimum(np.arange(400) / 50, 2.0) + noise  # rises, then flat: converged
    assert diagnose(2.0, plateau) == "ok"
    assert diagnose(math.nan, plateau) == "nan"
    assert diagnose(2.0, np.where(np.arange(400) > 300, np.nan, plateau)) == "nan"
    assert diagnose(2.0, plateau, finite_training=False) == "nan"
    # Held-out interval entirely below zero: the critic memorised; straddling zero (MI ~ 0) is fine.
    assert diagnose(-0.5, plateau, heldout_ci_high=-0.2) == "diverged"
    assert diagnose(-0.02, plateau, heldout_ci_high=NEGATIVE_MARGIN_BITS / 2) == "ok"
    # Above the bound's cap (InfoNCE: log2 B) is impossible arithmetic.
    assert diagnose(6.5, plateau, bound_cap_bits=6.0) == "diverged"
    # Collapse: climbs to 4 bits then crashes to ~0 at the end.
    crash = np.concatenate([np.linspace(0, 4, 300), np.full(100, 0.2)]) + noise
    assert diagnose(0.2, crash) == "diverged"
    # Still rising: a steady ramp to the last step, well above its noise.
    ramp = np.linspace(0, 3, 400) + noise
    assert diagnose(3.0, ramp) == "not_converged"
    # A small drift inside the noise is not flagged, nor is a curve too short to judge.
    assert diagnose(2.0, 2.0 + 0.0002 * np.arange(400) + noise) == "ok"
    assert diagnose(2.0, np.linspace(0, 3, 10)) == "ok"
    # No curve (closed form): only the value is judged.
    assert diagnose(1.0, np.empty(0)) == "ok"


def test_flags_fire_on_real_fits() -> None:
    # Memorisation: 240 training pairs of independent 32-dim vectors, full batch, 300 steps: the training bound
    # climbs to ~2.5 bits while the held-out bound is significantly negative.
    x, y = independent_gaussians(32, 300, seed=0)
    memorised = estimate_mine(x, y, MINEParams(steps=300, batch_size=None, min_width=64, n_bootstrap=50), seed=0)
    assert memorised.flag == "diverged" and memorised.ci_high < 0 < memorised.max_train_bits, memorised.to_row()
    assert not memorised.ok and memorised.to_row()["flag"] == "diverged"
    # Under-trained: a small constant learning rate leaves the bound climbing at the last step.
    x, y = correlated_gaussians(8, 6.0, 2000, seed=0)
    rising = estimate_mine(x, y, MINEParams(steps=150, batch_size=128, lr=1e-3, lr_end=1e-3, min_width=64,
                                            n_bootstrap=20), seed=0)
    assert rising.flag == "not_converged", rising.to_row()
    # A NaN in the data: the estimator freezes and says so.
    x, y = correlated_gaussians(4, 2.0, 600, seed=0)
    x[3, 1] = np.nan
    assert estimate_mine(x, y, MINEParams(steps=20, batch_size=128, n_bootstrap=10), seed=0).flag == "nan"


# --- the command -----------------------------------------------------------------------------------------------


def test_validate_quick_runs_end_to_end_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "validation"
    assert main(["validate", "--quick", "--out", str(out), "--threads", "1"]) == 0
    for name in ("validation.parquet", "validation.csv", "validation.png", "recommendations.csv", "README.md",
                 "config.json"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_parquet(out / "validation.parquet")
    quick = ValidationConfig.quick()
    expected = len(quick.dims) * len(quick.mi_bits) * len(quick.families) * len(quick.estimators)
    assert len(table) == expected
    assert set(table.estimator) == set(quick.estimators) and set(table.family) == set(FAMILIES)
    assert np.allclose(table.error_bits, table.mi_bits - table.true_mi_bits)
    # The Gaussian closed form is exact in distribution on the gaussian family: near the truth even at N=600.
    exact = table[(table.estimator == "gaussian") & (table.family == "gaussian")]
    assert (exact.abs_error_bits < 0.3 * exact.true_mi_bits + 0.1).all(), exact
    assert pd.read_csv(out / "validation.csv").shape[0] == expected
    recs = pd.read_csv(out / "recommendations.csv")
    assert sorted(recs.d) == sorted(quick.dims) and set(recs.recommended) <= set(quick.estimators)
    assert "## Recommended estimator per regime" in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["validate", "--quick", "--out", str(out), "--threads", "1"]) == 0
    assert capsys.readouterr().out.count("reusing") == len(quick.dims) * len(quick.estimators)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "validation.parquet"), table)


def test_recommendation_picks_the_lowest_mean_absolute_error() -> None:
    rows = [dict(d=4, n_samples=100, estimator=e, abs_error_bits=err, rel_error=err, flag="ok")
            for e, err in [("dv", 0.5), ("dv", 0.7), ("nwj", 0.2), ("nwj", 0.3), ("gaussian", 0.1),
                           ("gaussian", 0.1)]]
    rec = recommend(pd.DataFrame(rows)).iloc[0]
    assert (rec.recommended, rec.recommended_neural) == ("gaussian", "nwj")
    assert rec.recommended_neural_mean_abs_error_bits == pytest.approx(0.25)


def test_bad_validate_options_are_config_errors(tmp_path, capsys) -> None:
    assert main(["validate", "--quick", "--estimators", "dv", "mine", "--out", str(tmp_path)]) == 2
    assert "unknown estimator(s) ['mine']" in capsys.readouterr().err
    assert main(["validate", "--quick", "--samples", "50", "--out", str(tmp_path)]) == 2
    assert "50 samples do not fit the MINE settings" in capsys.readouterr().err
    assert main(["validate", "--quick", "--early-stop", "1.5", "--out", str(tmp_path)]) == 2
    assert "early_stop_fraction must be in [0, 1)" in capsys.readouterr().err


def test_recommendation_never_picks_a_peer_and_a_peer_cannot_hide_our_best() -> None:
    rows = [dict(d=4, n_samples=100, estimator=e, abs_error_bits=err, rel_error=err, flag="ok")
            for e, err in [("dv", 0.5), ("peer:torch-mist-smile", 0.01), ("nwj", 0.2), ("gaussian", 0.3)]]
    rec = recommend(pd.DataFrame(rows)).iloc[0]
    assert (rec.recommended, rec.recommended_neural) == ("nwj", "nwj")
    assert rec["mae_peer:torch-mist-smile"] == pytest.approx(0.01)  # shown, not chosen


def test_median_errors_by_hand() -> None:
    rows = [dict(d=8, n_samples=100, estimator="dv", task=f"t{i}", rel_error=r, wall_s=w, flag=f)
            for i, (r, w, f) in enumerate([(-0.5, 1.0, "ok"), (0.1, 3.0, "ok"), (0.2, 2.0, "diverged")])]
    got = median_errors(pd.DataFrame(rows)).iloc[0]
    # |rel| = 0.5, 0.1, 0.2 -> median 0.2; within 15%: 1 of 3; seconds median 2.0; one flagged
    assert (got.tasks, got.median_abs_rel_error, got.median_s_per_estimate, got.flagged) == (3, 0.2, 2.0, 1)
    assert got.within_15pct == pytest.approx(1 / 3)


def test_variants_and_peer_rows_join_the_grid(tmp_path) -> None:
    """A critic variant runs like an objective (its own part, its preset's settings), and peer rows written by
    benchmarks/peers.py under <out>/peers appear in the tables for this grid's regimes only."""
    out = tmp_path / "validation"
    quick = ValidationConfig.quick()
    config = replace(quick, dims=(4,), mi_bits=(1.0,), families=("gaussian",), estimators=("dv-sep", "gaussian"))
    assert config.params_for("dv-sep").critic == "separable"
    assert config.params_for("dv-sep").steps == quick.params.steps  # the grid's shared settings stay
    peer = pd.DataFrame([dict(family="gaussian", d=d, n_samples=600, true_mi_bits=1.0, task=f"gaussian-d{d}-1bit",
                              estimator="peer:fake", mi_bits=0.9, rel_error=-0.1, abs_error_bits=0.1, flag="ok",
                              wall_s=2.0) for d in (4, 99)])
    (out / "peers").mkdir(parents=True)
    peer.to_parquet(out / "peers" / "fake_n600.parquet")
    result = run_validation(config, out, log=lambda _: None)
    table = result.table
    assert set(table.estimator) == {"dv-sep", "gaussian", "peer:fake"}
    assert table[table.estimator == "peer:fake"].d.tolist() == [4]  # d = 99 is not in this grid
    assert set(result.recommendations.recommended_neural) == {"dv-sep"}
    text = (out / "README.md").read_text()
    assert "peer:fake" in text and "## Median relative error" in text
    assert pd.read_csv(out / "median_errors.csv").estimator.tolist().count("peer:fake") == 1


def test_lowrank_dependence_lives_in_a_few_directions() -> None:
    # All of the MI sits in LOWRANK_PAIRS canonical pairs: the sample canonical correlations show exactly that
    # many large values, and each carries MI / LOWRANK_PAIRS bits (rho^2 = 1 - 2^(-2 MI / k)).
    from ie_ray.estimators.benchmark import LOWRANK_PAIRS

    x, y = Task("lowrank", 16, 4.0, seed=2).sample(50_000)
    x, y = x - x.mean(0), y - y.mean(0)
    wx = np.linalg.inv(np.linalg.cholesky(np.cov(x.T)))
    wy = np.linalg.inv(np.linalg.cholesky(np.cov(y.T)))
    rho = np.linalg.svd(wx @ (x.T @ y / len(x)) @ wy.T, compute_uv=False)
    expected = math.sqrt(1 - 2 ** (-2 * 4.0 / LOWRANK_PAIRS))
    assert rho[:LOWRANK_PAIRS] == pytest.approx([expected] * LOWRANK_PAIRS, abs=0.01)
    assert rho[LOWRANK_PAIRS:].max() < 0.05


def test_run_dims_fits_a_subset_without_changing_the_tasks(tmp_path) -> None:
    out = tmp_path / "v"
    config = replace(ValidationConfig.quick(), estimators=("gaussian",))
    part = run_validation(config, out, log=lambda _: None, run_dims=(8,))
    assert set(part.table.d) == {8}
    assert "NOT RUN" in (out / "README.md").read_text()
    whole = run_validation(config, tmp_path / "w", log=lambda _: None)
    again = run_validation(config, out, log=lambda _: None)  # fills d = 1, reuses d = 8
    pd.testing.assert_frame_equal(again.table.sort_values("task").reset_index(drop=True)[["task", "mi_bits"]],
                                  whole.table.sort_values("task").reset_index(drop=True)[["task", "mi_bits"]])
