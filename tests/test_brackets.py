"""IE from the plug-in and from the leave-one-out smoothed readings, each by the one IE formula."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray.brackets import ie_brackets, write_brackets

PLUGIN = {("macro", 0): 1.0, ("macro", 1): 4.0, ("micro", 0): 0.5, ("micro", 1): 1.5}
LOO = {("macro", 0): 1.0, ("macro", 1): 2.5, ("micro", 0): 0.4, ("micro", 1): 1.5}


def _mi(tau: float = 0.25) -> pd.DataFrame:
    rows = []
    for (level, position), value in PLUGIN.items():
        rows.append(dict(model="m", corpus="c", shots=0, layer=3, position=position, level=level, seed=0,
                         mi_bits=value, loo_bits=LOO[(level, position)], ceiling_bits=5.0, tau=tau,
                         reading="smoothed", flag="undersampled" if value != LOO[(level, position)] else "ok",
                         bootstrap_bits=np.full(10, value)))
    # an entropy-limit row of the same cell must not enter the bracket
    rows.append(dict(rows[0], reading="entropy_limit", tau=np.nan, mi_bits=9.0, loo_bits=np.nan))
    return pd.DataFrame(rows)


def test_both_readings_follow_macro_minus_mean_micro() -> None:
    table = ie_brackets(_mi(), tau=0.25).set_index("position")
    # by hand: IE(t) = macro(t) - mean of micro(0..t)
    assert table.loc[0, "ie_plugin_bits"] == pytest.approx(1.0 - 0.5)
    assert table.loc[1, "ie_plugin_bits"] == pytest.approx(4.0 - (0.5 + 1.5) / 2)
    assert table.loc[0, "ie_loo_bits"] == pytest.approx(1.0 - 0.4)
    assert table.loc[1, "ie_loo_bits"] == pytest.approx(2.5 - (0.4 + 1.5) / 2)
    assert table.loc[1, "gap_bits"] == pytest.approx(3.0 - 1.55)
    assert table.loc[1, "macro_flag"] == "undersampled" and table.loc[1, "macro_loo_bits"] == 2.5


def test_an_absent_tau_names_the_taus_there(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"tau = 0.5.*\[0.25\]"):
        ie_brackets(_mi(), tau=0.5)
    _mi().to_parquet(tmp_path / "mi.parquet")
    written = write_brackets(tmp_path, 0.25)
    assert (tmp_path / "ie_brackets.csv").exists() and len(written) == 2


def test_a_secondary_tau_without_leave_one_out_says_how_to_report_it() -> None:
    secondary = _mi().assign(loo_bits=np.nan)  # the lean pass computes no leave-one-out at a secondary tau
    with pytest.raises(ValueError, match=r"tau = 0.25 .*reported_taus"):
        ie_brackets(secondary, tau=0.25)


def test_calibrated_interval_of_ie_by_hand(tmp_path) -> None:
    """Relative band [-0.1, 0.2] and bracket band [0.5, 1.0] at tau 0.25. Readings (plug-in, loo, ci): macro(0)
    1.0 ok [0.9, 1.1]; macro(1) 4.0 undersampled (loo 2.5, ci [3.8, 4.1]); micro(0) 0.5 undersampled (loo 0.4,
    ci [0.45, 0.55]); micro(1) 1.5 ok [1.4, 1.6]. IE low = macro low - mean micro high; high the other way."""
    from ie_ray.bias_band import BiasBand, save_bands

    mi = _mi()
    ci = {("macro", 0): (0.9, 1.1), ("macro", 1): (3.8, 4.1), ("micro", 0): (0.45, 0.55), ("micro", 1): (1.4, 1.6)}
    mi["ci_low"] = [ci.get((r.level, r.position), (np.nan, np.nan))[0] for r in mi.itertuples()]
    mi["ci_high"] = [ci.get((r.level, r.position), (np.nan, np.nan))[1] for r in mi.itertuples()]
    bands = {("relative", 0.25): BiasBand(0.25, -0.1, 0.2, 9, 3),
             ("bracket", 0.25): BiasBand(0.25, 0.5, 1.0, 9, 3, "bracket"),
             ("relative", 1.0): BiasBand(1.0, -5.0, 5.0, 9, 3)}  # another tau: not used at 0.25
    table = ie_brackets(mi, 0.25, bands).set_index("position")
    # relative: undersampled p -> [p - 0.2 p - (p - ci_low), p + 0.1 p + (ci_high - p)]
    macro1 = (4.0 - 0.8 - 0.2, 4.0 + 0.4 + 0.1)
    micro0 = (0.5 - 0.1 - 0.05, 0.5 + 0.05 + 0.05)   # the 0.1-bit floor: s = max(0.5, 0.1) = 0.5
    assert table.loc[0, "ie_band_low"] == pytest.approx(0.9 - micro0[1])
    assert table.loc[0, "ie_band_high"] == pytest.approx(1.1 - micro0[0])
    assert table.loc[1, "ie_band_low"] == pytest.approx(macro1[0] - (micro0[1] + 1.6) / 2)
    assert table.loc[1, "ie_band_high"] == pytest.approx(macro1[1] - (micro0[0] + 1.4) / 2)
    # bracket: [loo + 0.5 gap, loo + gap] widened by the ci: macro(1) [3.25 - 0.2, 4.0 + 0.1]
    micro0_b = (0.45 - 0.05, 0.5 + 0.05)
    assert table.loc[1, "ie_bandb_low"] == pytest.approx(3.05 - (micro0_b[1] + 1.6) / 2)
    assert table.loc[1, "ie_bandb_high"] == pytest.approx(4.1 - (micro0_b[0] + 1.4) / 2)
    # a constant reading (a state that never varies) is exact: its value is its interval
    constant = mi.assign(flag=np.where((mi.level == "micro") & (mi.position == 1), "constant", mi.flag))
    assert ie_brackets(constant, 0.25, bands).set_index("position").loc[1, "ie_band_low"] == pytest.approx(
        macro1[0] - (micro0[1] + 1.5) / 2)
    # a reading still moving with n has no interval, and neither has its IE
    moving = mi.assign(flag=np.where((mi.level == "micro") & (mi.position == 0), "not_converged", mi.flag))
    assert ie_brackets(moving, 0.25, bands).ie_band_low.isna().all()
    # write_brackets reads the bands from a file, and runs without one
    mi.to_parquet(tmp_path / "mi.parquet")
    save_bands(bands, tmp_path / "bands.json", "test")
    assert "ie_band_low" in write_brackets(tmp_path, 0.25, tmp_path / "bands.json")
    assert "ie_band_low" not in write_brackets(tmp_path, 0.25, tmp_path / "nothing.json")


def _with_ci(mi: pd.DataFrame) -> pd.DataFrame:
    ci = {("macro", 0): (0.9, 1.1), ("macro", 1): (3.8, 4.1), ("micro", 0): (0.45, 0.55), ("micro", 1): (1.4, 1.6)}
    return mi.assign(ci_low=[ci.get((r.level, r.position), (np.nan, np.nan))[0] for r in mi.itertuples()],
                     ci_high=[ci.get((r.level, r.position), (np.nan, np.nan))[1] for r in mi.itertuples()])


def test_the_headline_carries_the_adopted_band_for_the_calibrated_models_only(tmp_path) -> None:
    """A sweep's IE table gets `ie_sigma_cal_*` where the calibration adopted the relative band at the headline
    tau: the same numbers as the by-hand test above (macro(1) [3.0, 4.5], micro(0) [0.35, 0.6]), for the model
    the band was calibrated on; another model's rows stay NaN."""
    from ie_ray.bias_band import BiasBand, save_bands
    from ie_ray.brackets import with_calibrated_interval
    from ie_ray.ie import ie_by_reading, side_by_side

    one = _with_ci(_mi()).query("reading == 'smoothed'")  # its entropy-limit row has no micro rows
    mi = pd.concat([one, one.assign(model="other")], ignore_index=True)
    ie = side_by_side(ie_by_reading(mi, micro_source="micro"), "smoothed", 0.25)
    bands = {("relative", 0.25): BiasBand(0.25, -0.1, 0.2, 9, 3)}
    path = tmp_path / "bands.json"
    save_bands(bands, path, "test", models=["m"], headline_taus=[0.25])
    got = with_calibrated_interval(ie, mi, 0.25, path).set_index(["model", "position"])
    assert got.loc[("m", 1), "ie_sigma_cal_low"] == pytest.approx(3.0 - (0.6 + 1.6) / 2)
    assert got.loc[("m", 1), "ie_sigma_cal_high"] == pytest.approx(4.5 - (0.35 + 1.4) / 2)
    assert got.loc[("m", 0), "ie_sigma_cal_low"] == pytest.approx(0.9 - 0.6)
    assert got.loc["other", ["ie_sigma_cal_low", "ie_sigma_cal_high"]].isna().all().all()
    assert len(got) == len(ie) and (got.ie_bits.to_numpy() == ie.set_index(["model", "position"]).ie_bits.to_numpy()).all()
    # not adopted at this tau, no model named, or no file: the table is returned as it was
    save_bands(bands, path, "test", models=["m"], headline_taus=[0.5])
    assert "ie_sigma_cal_low" not in with_calibrated_interval(ie, mi, 0.25, path)
    save_bands(bands, path, "test", models=[], headline_taus=[0.25])
    assert "ie_sigma_cal_low" not in with_calibrated_interval(ie, mi, 0.25, path)
    assert "ie_sigma_cal_low" not in with_calibrated_interval(ie, mi, 0.25, tmp_path / "nothing.json")
    # only other models in the run: the columns are there, empty
    save_bands(bands, path, "test", models=["m"], headline_taus=[0.25])
    others = mi[mi.model == "other"]
    alone = with_calibrated_interval(side_by_side(ie_by_reading(others, micro_source="micro"), "smoothed", 0.25), others, 0.25, path)
    assert alone.ie_sigma_cal_low.isna().all()


def test_the_committed_bands_name_their_model_and_the_headline_tau() -> None:
    """The calibration records what the sweep needs: SmolLM2-135M's laws, the band adopted at tau 0.25 only."""
    from ie_ray.bias_band import headline_band
    from ie_ray.brackets import DEFAULT_BANDS
    from ie_ray.store import REPO_ROOT

    found = headline_band(REPO_ROOT / DEFAULT_BANDS, 0.25)
    assert found is not None and found[1] == ["smollm2-135m"]
    assert found[0].kind == "relative" and found[0].low < 0 < found[0].high
    assert headline_band(REPO_ROOT / DEFAULT_BANDS, 0.5) is None


def _two_calibrations(root, models_a: list[str], models_b: list[str]) -> None:
    """Two committed calibrations under `root`: SmolLM2's place (relative band [-0.1, 0.2], bracket [0.5, 1.0])
    and a second model's beside it (relative [0.0, 0.1] only), both adopted at tau 0.25."""
    from ie_ray.bias_band import BiasBand, save_bands

    validation = root / "results" / "validation"
    save_bands({("relative", 0.25): BiasBand(0.25, -0.1, 0.2, 9, 3),
                ("bracket", 0.25): BiasBand(0.25, 0.5, 1.0, 9, 3, "bracket")},
               validation / "smoothed-real" / "bias_bands.json", "a", models=models_a, headline_taus=[0.25])
    save_bands({("relative", 0.25): BiasBand(0.25, 0.0, 0.1, 9, 3)},
               validation / "smoothed-real-b" / "bias_bands.json", "b", models=models_b, headline_taus=[0.25])


def test_each_model_takes_its_own_calibration_and_an_uncalibrated_one_is_labelled(tmp_path, monkeypatch) -> None:
    """Models m (first file), g (second file) and u (no file). By hand, position 1 (macro 4.0 undersampled, ci
    [3.8, 4.1]; micro(0) 0.5 undersampled, ci [0.45, 0.55]; micro(1) ok [1.4, 1.6]): band [-0.1, 0.2] gives
    macro [3.0, 4.5], micro(0) [0.35, 0.6]; band [0.0, 0.1] gives macro [4.0 - 0.4 - 0.2, 4.0 + 0.1] = [3.4, 4.1],
    micro(0) [0.5 - 0.05 - 0.05, 0.5 + 0.05] = [0.4, 0.55]. IE low = macro low - mean micro high."""
    from ie_ray import store
    from ie_ray.brackets import ie_brackets_by_model, with_calibrated_interval
    from ie_ray.ie import ie_by_reading, side_by_side

    monkeypatch.setattr(store, "REPO_ROOT", tmp_path)
    _two_calibrations(tmp_path, ["m"], ["g"])
    one = _with_ci(_mi()).query("reading == 'smoothed'")
    mi = pd.concat([one, one.assign(model="g"), one.assign(model="u")], ignore_index=True)
    table = ie_brackets_by_model(mi, 0.25).set_index(["model", "position"])
    own_m, own_g = (3.0 - (0.6 + 1.6) / 2, 4.5 - (0.35 + 1.4) / 2), (3.4 - (0.55 + 1.6) / 2, 4.1 - (0.4 + 1.4) / 2)
    assert tuple(table.loc[("m", 1), ["ie_band_low", "ie_band_high"]]) == pytest.approx(own_m)
    assert tuple(table.loc[("g", 1), ["ie_band_low", "ie_band_high"]]) == pytest.approx(own_g)
    assert np.isnan(table.loc[("g", 1), "ie_bandb_low"])  # g's calibration has no bracket band
    assert tuple(table.loc[("u", 1), ["ie_band_low", "ie_band_high"]]) == pytest.approx(own_m)  # assumed: SmolLM2's
    assert table.band_calibrated_on.to_dict() == {(m, p): {"u": "m"}.get(m, m) for m, p in table.index}
    # one file for every model when asked
    forced = ie_brackets_by_model(mi, 0.25, tmp_path / "results/validation/smoothed-real-b/bias_bands.json")
    assert set(forced.band_calibrated_on) == {"g"} and "ie_bandb_low" not in forced
    assert tuple(forced.set_index(["model", "position"]).loc[("m", 1), ["ie_band_low", "ie_band_high"]]) == \
        pytest.approx(own_g)
    # the headline: own band per model, none for the model no calibration names
    ie = side_by_side(ie_by_reading(mi, micro_source="micro"), "smoothed", 0.25)
    got = with_calibrated_interval(ie, mi, 0.25).set_index(["model", "position"])
    assert tuple(got.loc[("m", 1), ["ie_sigma_cal_low", "ie_sigma_cal_high"]]) == pytest.approx(own_m)
    assert tuple(got.loc[("g", 1), ["ie_sigma_cal_low", "ie_sigma_cal_high"]]) == pytest.approx(own_g)
    assert got.loc["u", ["ie_sigma_cal_low", "ie_sigma_cal_high"]].isna().all().all()
    assert len(got) == len(ie)


def test_two_calibrations_of_one_model_are_refused(tmp_path, monkeypatch) -> None:
    from ie_ray import store
    from ie_ray.brackets import ie_brackets_by_model, with_calibrated_interval

    monkeypatch.setattr(store, "REPO_ROOT", tmp_path)
    _two_calibrations(tmp_path, ["m"], ["g", "m"])
    mi = _with_ci(_mi()).query("reading == 'smoothed'")
    with pytest.raises(ValueError, match=r"smoothed-real/bias_bands.json and .*smoothed-real-b/bias_bands.json both "
                                         r"hold bias bands calibrated on m"):
        ie_brackets_by_model(mi, 0.25)
    with pytest.raises(ValueError, match="both hold bias bands calibrated on m"):
        with_calibrated_interval(mi, mi, 0.25)


def test_band_transfer_counts_coverage_of_one_models_band_on_the_others_samples(tmp_path) -> None:
    """benchmarks/band_transfer.py: model a's relative band [-0.1, 0.2] on b's two undersampled samples, by hand.
    Sample 1: plug-in 4.0, ci [3.8, 4.1] -> [4.0 - 0.8 - 0.2, 4.0 + 0.4 + 0.1] = [3.0, 4.5], truth 3.2: covered.
    Sample 2: plug-in 2.0, ci [1.9, 2.1] -> [2.0 - 0.4 - 0.1, 2.0 + 0.2 + 0.1] = [1.5, 2.3], truth 1.4 (se 0):
    missed. An `ok` sample is not the band's to answer."""
    from benchmark_loader import load_benchmark
    from ie_ray.bias_band import BiasBand, save_bands

    transfer = load_benchmark("band_transfer")
    files = []
    for model, band in (("a", BiasBand(0.25, -0.1, 0.2, 9, 3)), ("b", BiasBand(0.25, -0.5, 0.5, 9, 3))):
        path = tmp_path / model / "bias_bands.json"
        save_bands({("relative", 0.25): band}, path, "test", models=[model], headline_taus=[0.25])
        files.append(path)
    own = [np.nan, np.nan, np.nan]  # the samples' own leave-one-law-out intervals (not under test here)
    pd.DataFrame(dict(population=["p", "q", "q"], kind="real", tau=0.25, flag=["undersampled", "undersampled", "ok"],
                      plugin=[4.0, 2.0, 1.0], plugin_low=[3.8, 1.9, 0.9], plugin_high=[4.1, 2.1, 1.1],
                      loo=[3.0, 1.5, 1.0], truth_bits=[3.2, 1.4, 1.0], truth_se_bits=0.0,
                      band_low=own, band_high=own, band_bracket_low=own, band_bracket_high=own)
                 ).to_parquet(tmp_path / "b" / "calibration.parquet")
    pd.DataFrame(columns=["population", "kind", "tau", "flag"]).to_parquet(tmp_path / "a" / "calibration.parquet")
    rows = transfer.transfer_rows(files)
    a_on_b = rows[(rows.band_of == "a") & (rows.samples_of == "b")].iloc[0]
    assert a_on_b.samples == 2 and a_on_b.populations == 2
    assert a_on_b.coverage == pytest.approx(0.5) and a_on_b.strict == pytest.approx(0.5)
    assert a_on_b.mean_width_bits == pytest.approx(((4.5 - 3.0) + (2.3 - 1.5)) / 2)
    b_on_b = rows[(rows.band_of == "b") & (rows.samples_of == "b")].iloc[0]
    assert b_on_b.coverage == pytest.approx(1.0)  # [-0.5, 0.5]: sample 2 -> [0.9, 3.1] holds 1.4
