"""The calibrated interval of an undersampled smoothed reading (ie_ray/bias_band.py): the band's numbers against
hand-derived values, its leave-one-population-out fit, and its coverage of the truth on small synthetic laws over
seeds (where the bare plug-in, the interval without the correction, misses)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray.bias_band import (
    SCALE_FLOOR_BITS,
    BiasBand,
    band_interval,
    fit_bands,
    leave_one_population_out,
    load_bands,
    relative_offset,
    save_bands,
)


def _rows(population: str, plugin: list[float], truth: float, flag: str = "undersampled", tau: float = 0.25,
          fraction: float = 0.1) -> pd.DataFrame:
    return pd.DataFrame(dict(population=population, tau=tau, fraction=fraction, flag=flag, plugin=plugin,
                             loo=0.0, truth_bits=truth))


def test_offset_is_relative_to_the_reading_with_a_floor():
    # 5.5 read for a 5.0 truth: +0.5 / 5.5; 0.03 read for 0.01: +0.02 / 0.1 (the floor), not +0.02 / 0.03
    assert relative_offset(np.array([5.5, 0.03]), np.array([5.0, 0.01])) == pytest.approx([0.5 / 5.5, 0.2])
    assert SCALE_FLOOR_BITS == 0.1


def test_band_interval_inverts_the_offset():
    """A reading whose offset is exactly the band's high (low) end has its truth at the interval's low (high) end."""
    band = BiasBand(0.25, low=-0.1, high=0.2, samples=3, populations=1)
    low, high = band_interval(np.array([10.0, 0.05]), band)
    assert low.tolist() == pytest.approx([10.0 - 2.0, 0.05 - 0.02])  # 0.2 * 10; 0.2 * the 0.1 floor
    assert high.tolist() == pytest.approx([10.0 + 1.0, 0.05 + 0.01])
    truth_high_end = 10.0 - 0.2 * 10.0  # offset (10 - 8) / 10 = 0.2 = band.high
    assert relative_offset(np.array([10.0]), np.array([truth_high_end]))[0] == pytest.approx(band.high)


def test_fit_bands_is_a_random_effects_prediction_interval_per_tau():
    """Offsets of laws a (0.10, 0.12), b (-0.02, 0.00), c (0.04): law means 0.11, -0.01, 0.04, grand mean 0.0467;
    s_between^2 = var of the means (ddof 1); s_within^2 = pooled within-law variance, (2 x 0.01^2 + 2 x 0.01^2) /
    (5 - 3); t(2) quantile 4.3027. Rows that are not undersampled, or below the n/K range, are left out."""
    table = pd.concat([
        _rows("a", [10 / 0.9, 10 / 0.88], 10.0),          # offsets (p - 10) / p = 0.10, 0.12
        _rows("b", [10 / 1.02, 10.0], 10.0),              # -0.02, 0.00
        _rows("c", [10 / 0.96], 10.0),                    # 0.04
        _rows("b", [20.0], 10.0, flag="not_converged"),   # left out: still moving with n
        _rows("b", [30.0], 10.0, fraction=0.01),          # left out: below the n/K range
        _rows("a", [2.0], 1.0, tau=0.5),                  # one law at tau 0.5: no band there
    ], ignore_index=True)
    bands = fit_bands(table)
    assert set(bands) == {0.25}
    means = np.array([0.11, -0.01, 0.04])
    spread = np.sqrt(means.var(ddof=1) * (1 + 1 / 3) + (4 * 0.01**2) / 2)
    assert bands[0.25].low == pytest.approx(means.mean() - 4.302653 * spread, abs=1e-5)
    assert bands[0.25].high == pytest.approx(means.mean() + 4.302653 * spread, abs=1e-5)
    assert (bands[0.25].samples, bands[0.25].populations, bands[0.25].kind) == (5, 3, "relative")


def test_band_interval_adds_the_readings_own_interval():
    band = BiasBand(0.25, low=-0.1, high=0.2, samples=3, populations=2)
    low, high = band_interval(np.array([10.0]), band, ci_low=np.array([9.7]), ci_high=np.array([10.5]))
    assert (low[0], high[0]) == pytest.approx((10.0 - 2.0 - 0.3, 10.0 + 1.0 + 0.5))


def test_leave_one_population_out_never_uses_the_population_itself():
    """Laws a, b, c, d with offsets 0.3, 0.0, 0.02, -0.02: d is read with the band of a, b and c, whose spread is
    wide (a's shift), while a is read with the band of b, c and d, which is narrow and misses a's own +30%."""
    table = pd.concat([_rows("a", [10 / 0.7, 10 / 0.7], 10.0), _rows("b", [10.0, 10.0], 10.0),
                       _rows("c", [10 / 0.98, 10 / 0.98], 10.0), _rows("d", [10 / 1.02, 10 / 1.02], 10.0),
                       _rows("d", [12.0], 10.0, flag="ok")], ignore_index=True)
    out = leave_one_population_out(table)
    a = out[out.population == "a"].iloc[0]
    assert not a.band_low <= 10.0 <= a.band_high
    expected = fit_bands(table[table.population != "a"])[0.25]
    assert (a.band_low, a.band_high) == pytest.approx(tuple(x[0] for x in band_interval(np.array([10 / 0.7]),
                                                                                         expected)))
    d = out[(out.population == "d") & (out.flag == "undersampled")].iloc[0]
    assert d.band_low <= 10.0 <= d.band_high and d.band_high - d.band_low > a.band_high - a.band_low
    assert out[out.flag == "ok"].band_abstained.all() and not out[out.flag != "ok"].band_abstained.any()


def test_bands_round_trip_and_a_missing_file_names_the_fix(tmp_path):
    bands = {("relative", 0.25): BiasBand(0.25, -0.05, 0.12, 40, 4),
             ("bracket", 0.25): BiasBand(0.25, 0.8, 1.02, 40, 4, "bracket")}
    save_bands(bands, tmp_path / "b.json", source="test")
    assert load_bands(tmp_path / "b.json") == bands
    with pytest.raises(FileNotFoundError, match="validate --smoothed --real"):
        load_bands(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def small_laws() -> pd.DataFrame:
    """Four uniform 200-atom laws in d = 8 (the calibration's synthetic family), each with its population value
    from all atoms, and 4 samples at each of n/K = 0.25 and 0.5: their plug-in readings, intervals and flags at
    tau 0.25. (At d = 8 the plug-in's own interval covers 8 of the 12 undersampled samples: its bias is the
    larger error.)"""
    from ie_ray.estimators.smoothed import SmoothedParams, smoothed_mi
    from ie_ray.validate_smoothed_real import population_truth, synthetic_population

    params = SmoothedParams(tau=0.25, taus=(0.25,), reported_taus=(0.25,), n_bootstrap=20)
    rows = []
    for law in range(4):
        pop = synthetic_population(8, 200, seed=law)
        truth = float(population_truth(pop, (0.25,), n_draws=3000).truth_bits.iloc[0])
        for fraction in (0.25, 0.5):
            for seed in range(4):
                x, y = pop.sample(round(200 * fraction), seed)
                r = smoothed_mi(x, y, params, seed=seed, scale_x=pop.scale_x, scale_y=pop.scale_y).at(0.25)
                rows.append(dict(population=f"law{law}", tau=0.25, fraction=fraction, seed=seed, flag=r.flag,
                                 plugin=r.plugin_bits, loo=r.loo_bits, plugin_low=r.ci_low,
                                 plugin_high=r.ci_high, truth_bits=truth))
    return pd.DataFrame(rows)


def test_band_covers_laws_it_was_not_fitted_on(small_laws, monkeypatch):
    """Out-of-population coverage >= 90% of the undersampled samples, for both parametrisations; with the
    correction removed (a zero band: the plug-in's own interval alone) the same samples are covered <= 75%."""
    from ie_ray import bias_band

    for kind in ("relative", "bracket"):
        out = leave_one_population_out(small_laws, kind)
        answered = out[~out.band_abstained]
        assert len(answered) >= 8, small_laws.flag.value_counts()
        covered = (answered.band_low <= answered.truth_bits) & (answered.truth_bits <= answered.band_high)
        assert covered.mean() >= 0.9, (kind, answered[["population", "plugin", "band_low", "band_high",
                                                         "truth_bits"]])

    real_fit = bias_band.fit_bands
    zero = {"relative": 0.0, "bracket": 1.0}  # no offset / the truth at the plug-in: the bare reading
    monkeypatch.setattr(bias_band, "fit_bands", lambda t, kind="relative": {
        tau: BiasBand(tau, zero[kind], zero[kind], b.samples, b.populations, kind)
        for tau, b in real_fit(t, kind).items()})
    bare = bias_band.leave_one_population_out(small_laws)
    bare = bare[~bare.band_abstained]
    assert ((bare.band_low <= bare.truth_bits) & (bare.truth_bits <= bare.band_high)).mean() <= 0.75
