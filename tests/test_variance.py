"""Variance analysis (PAPER.md 4.2-4.3) on synthetic IE curves whose saturation shot and std peak are known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray.variance import (
    Z_95,
    analyse_variance,
    broken_stick,
    per_seed_ie,
    saturation_shot,
    shot_curve,
    std_peak,
    write_variance,
)

SHOTS = np.arange(1, 13)


def test_saturation_of_a_clean_step_curve() -> None:
    sat = saturation_shot(SHOTS, np.minimum(SHOTS, 7).astype(float), np.full(12, 0.05))
    assert sat.shot == 7 and sat.saturated
    assert sat.significant == (True,) * 6 + (False,) * 5


def test_saturation_with_noise_is_still_found() -> None:
    rng = np.random.default_rng(0)
    y = 0.8 * np.minimum(SHOTS, 7) + rng.normal(0, 0.05, 12)
    assert saturation_shot(SHOTS, y, np.full(12, 0.05)).shot == 7


def test_one_noisy_dip_is_not_a_plateau_with_patience() -> None:
    y = np.cumsum([0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0]).astype(float)  # growth stalls once at 3 -> 4
    se = np.full(12, 0.05)
    assert saturation_shot(SHOTS, y, se, patience=2).shot == 7
    assert saturation_shot(SHOTS, y, se, patience=1).shot == 3


def test_linear_growth_has_not_saturated_and_flat_saturates_at_once() -> None:
    growing = saturation_shot(SHOTS, SHOTS * 0.5, np.full(12, 0.05))
    assert not growing.saturated and growing.shot == 12
    flat = saturation_shot(SHOTS, np.zeros(12), np.full(12, 0.05))
    assert flat.saturated and flat.shot == 1


def test_wide_intervals_make_small_steps_insignificant() -> None:
    y = 0.1 * np.minimum(SHOTS, 7)
    assert saturation_shot(SHOTS, y, np.full(12, 0.01)).shot == 7
    assert saturation_shot(SHOTS, y, np.full(12, 1.0)).shot == 1  # nothing is significant at this noise


def test_broken_stick_recovers_the_break() -> None:
    k0, a, b = broken_stick(SHOTS, 2.0 + 0.5 * np.minimum(SHOTS, 6))
    assert (k0, a, b) == (6.0, pytest.approx(2.0), pytest.approx(0.5))


def test_std_peak_first_on_ties_and_nan() -> None:
    assert std_peak(SHOTS, np.r_[np.arange(7), np.full(5, 6.0)]) == 7
    assert np.isnan(std_peak(SHOTS, np.full(12, np.nan)))


def _ie_rows(model: str, corpus: str, shots: int, layer: int, position: int, value: float, se: float) -> dict:
    half = Z_95 * se
    return dict(model=model, corpus=corpus, shots=shots, layer=layer, position=position, ie_bits=value,
                ci_low=value - half, ci_high=value + half, n_seeds=1, flag="ok")


def _shot_sweep_table() -> pd.DataFrame:
    """shots 1..12, one corpus each, positions 0..2k-1; three layers; IE = scale * min(k, 7); se peaks at 7."""
    rows = []
    for k in SHOTS:
        se = 0.02 + 0.2 * np.exp(-0.5 * (k - 7) ** 2)
        for layer, scale in enumerate([0.5, 1.0, 1.5]):
            for position in range(2 * k):
                value = scale * min(k, 7) if position == 2 * k - 1 else 0.0
                rows.append(_ie_rows("m", "icl-country", int(k), layer, position, value, se))
    return pd.DataFrame(rows)


def test_analysis_of_a_shot_sweep_finds_saturation_and_peak() -> None:
    result = analyse_variance(_shot_sweep_table())
    summary = result.summary
    assert list(summary.shot) == list(SHOTS) and (summary.n_layers == 3).all()
    np.testing.assert_allclose(summary.ie_mean_bits, np.minimum(SHOTS, 7))
    np.testing.assert_allclose(summary.std_layers, 0.5 * np.minimum(SHOTS, 7))  # std of (0.5, 1, 1.5) * x
    finding = result.findings.iloc[0]
    assert finding.saturation_shot == 7 and finding.saturated and finding.broken_stick_k0 == 7
    assert finding.peak_std_bootstrap == 7 and finding.peak_std_bootstrap_near_saturation
    assert finding.peak_std_layers == 7  # first of the tied maxima 7..12
    assert np.isnan(finding.peak_std_seeds) and not finding.peak_std_seeds_near_saturation


def test_single_long_corpus_reads_shots_at_shot_ends() -> None:
    rows = [_ie_rows("m", "icl-animal", 12, 0, p, float(p // 2 + 1), 0.05) for p in range(24)]
    curve = shot_curve(pd.DataFrame(rows))
    assert list(curve.shot) == list(SHOTS) and list(curve.ie_bits) == list(map(float, SHOTS))
    multi = [_ie_rows("m", "icl-animal-2tok", 4, 0, p, float(p), 0.05) for p in range(12)]
    assert list(shot_curve(pd.DataFrame(multi)).ie_bits) == [2.0, 5.0, 8.0, 11.0]  # 3 tokens per shot
    with pytest.raises(ValueError, match="pass shot_length"):
        shot_curve(pd.DataFrame(multi[:11]))


def test_natural_text_curve_is_over_tokens() -> None:
    rows = [_ie_rows("m", "natural-pydoc-start8", 0, 0, p, float(p), 0.05) for p in range(8)]
    curve = shot_curve(pd.DataFrame(rows))
    assert list(curve.shot) == list(range(1, 9)) and set(curve.unit) == {"tokens"}


def _mi_table(n_seeds: int, delta: float) -> pd.DataFrame:
    """A 2-shot long corpus (4 positions), 2 layers; macro MI grows with t and shifts by seed * delta."""
    rows = []
    for seed in range(n_seeds):
        for layer in (0, 1):
            for t in range(4):
                for level, value in (("macro", t + 1 + seed * delta), ("micro", 0.5)):
                    rows.append(dict(model="m", corpus="icl-color", shots=2, layer=layer, position=t, level=level,
                                     seed=seed, mi_bits=value, ceiling_bits=10.0, flag="ok",
                                     bootstrap_bits=value + np.linspace(-0.01, 0.01, 20)))
    return pd.DataFrame(rows)


def test_std_across_seeds_from_the_mi_table() -> None:
    mi = _mi_table(n_seeds=2, delta=0.2)
    seeds = per_seed_ie(mi)
    assert sorted(seeds.seed.unique()) == [0, 1]
    row = seeds[(seeds.seed == 1) & (seeds.layer == 0) & (seeds.position == 3)].iloc[0]
    assert row.ie_bits == pytest.approx(4.2 - 0.5)
    from ie_ray.ie import information_emergence

    result = analyse_variance(information_emergence(mi), mi)
    np.testing.assert_allclose(result.summary.std_seeds, 0.2 / np.sqrt(2))
    assert (result.summary.n_seeds == 2).all()


def test_write_variance_writes_tables_and_one_figure(tmp_path) -> None:
    _shot_sweep_table().to_parquet(tmp_path / "ie.parquet")
    result = write_variance(tmp_path)
    for name in ("variance.csv", "variance_findings.csv", "variance.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "variance.png").read_bytes()[:4] == b"\x89PNG"
    findings = pd.read_csv(tmp_path / "variance_findings.csv")
    assert findings.saturation_shot.tolist() == [7.0] and len(result.summary) == 12


def test_a_failed_estimate_drops_its_shot_instead_of_averaging_fewer_layers() -> None:
    table = _shot_sweep_table()
    failed = (table.shots == 3) & (table.layer == 2) & (table.position == 5)
    table.loc[failed, "ie_bits"] = np.nan
    result = analyse_variance(table)
    assert np.isnan(result.summary.set_index("shot").ie_mean_bits[3])
    assert result.findings.iloc[0].saturation_shot == 7


def _layer_table(values_by_layer: dict[int, np.ndarray], se: float) -> pd.DataFrame:
    """One long 12-shot corpus (2 tokens per shot): layer -> IE at shots 1..12, read at positions 2k-1."""
    rows = []
    for layer, values in values_by_layer.items():
        for k, value in zip(SHOTS, values):
            rows.append(_ie_rows("m", "icl-country", 12, layer, int(2 * k - 1), float(value), se))
            rows.append(_ie_rows("m", "icl-country", 12, layer, int(2 * k - 2), 0.0, se))
    return pd.DataFrame(rows)


def test_interval_on_the_std_across_layers_is_the_layer_resampling_law() -> None:
    """Layers (0, 0, 10) with no estimate noise: a resample of 3 is all-equal (std 0) with probability
    (2/3)^3 + (1/3)^3 = 1/3, else two-and-one (std = sd of (0, 0, 10) = 10/sqrt(3)); the 95% interval is
    [0, 10/sqrt(3)]. Identical layers have [0, 0]."""
    spike = np.where(SHOTS == 5, 10.0, 0.0)
    table = _layer_table({0: np.zeros(12), 1: np.zeros(12), 2: spike}, se=0.0)
    summary = analyse_variance(table).summary
    at5 = summary[summary.shot == 5].iloc[0]
    assert at5.std_layers == pytest.approx(10 / np.sqrt(3))
    assert (at5.std_layers_ci_low, at5.std_layers_ci_high) == (pytest.approx(0.0), pytest.approx(10 / np.sqrt(3)))
    flat = summary[summary.shot != 5]
    assert (flat.std_layers_ci_low == 0).all() and (flat.std_layers_ci_high == 0).all()


def test_interval_on_the_std_across_layers_carries_the_estimates_own_noise() -> None:
    """Five identical layers whose estimates each have se 0.5: a replicate's std is the sample std of five
    N(0, 0.25) draws, so its 95% interval is 0.5 * sqrt(chi2_4 quantiles / 4)."""
    from scipy.stats import chi2

    table = _layer_table({layer: np.full(12, 3.0) for layer in range(5)}, se=0.5)
    summary = analyse_variance(table).summary
    expected_low, expected_high = 0.5 * np.sqrt(chi2.ppf([0.025, 0.975], 4) / 4)
    np.testing.assert_allclose(summary.std_layers_ci_low, expected_low, rtol=0.15)
    np.testing.assert_allclose(summary.std_layers_ci_high, expected_high, rtol=0.08)


def test_std_peak_gets_an_interval_and_a_share_near_saturation() -> None:
    """IE = min(k, 7) in every layer; the layers spread by 3 bits at shot 7 and 0.1 elsewhere: the peak is shot 7
    in every replicate but the ~1/625 that pick one layer five times."""
    spread = np.where(SHOTS == 7, 3.0, 0.1)
    table = _layer_table({i: np.minimum(SHOTS, 7) + (i - 2) * spread for i in range(5)}, se=0.01)
    finding = analyse_variance(table).findings.iloc[0]
    assert finding.saturation_shot == 7 and finding.peak_std_layers == 7
    assert (finding.peak_std_layers_ci_low, finding.peak_std_layers_ci_high) == (7, 7)
    assert finding.peak_std_layers_near_saturation_share > 0.99
    moved = analyse_variance(_layer_table({i: np.minimum(SHOTS, 7) + (i - 2) * np.where(SHOTS == 12, 3.0, 0.1)
                                           for i in range(5)}, se=0.01)).findings.iloc[0]
    assert moved.peak_std_layers == 12 and moved.peak_std_layers_near_saturation_share < 0.01
