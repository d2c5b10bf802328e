"""`ie-ray controls`: a trained run's IE next to its controls, block by block, and trends decided by the calibrated
interval in each. Expected values are written out by hand from the frames below."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray import cli
from ie_ray.control_comparison import (
    CELL,
    READING_COLUMNS,
    RunReading,
    load_run,
    pattern_agreement,
    side_by_side,
    step_of,
    trends,
    versus_trained,
)
from ie_ray.errors import ConfigError

NAN = np.nan


def _run(label: str, cells: dict[tuple[int, int], tuple[float, float, float, float]], tau: float = 0.25,
         model: str = "m") -> RunReading:
    """cells: (layer, position) -> (plug-in IE, leave-one-out IE, band low, band high)."""
    rows = [dict(layer=layer, position=position, ie_bits=ie, ci_low=ie - 0.1, ci_high=ie + 0.1, flag="ok",
                 ie_loo_bits=loo, band_low=low, band_high=high, ie_limit_bits=5.0)
            for (layer, position), (ie, loo, low, high) in cells.items()]
    frame = pd.DataFrame(rows)[CELL + READING_COLUMNS]
    return RunReading(label=label, run_dir=f"runs/{label}", model=model, corpus="c", shots=0, tau=tau,
                      band_measured_here=label == "trained", frame=frame)


#: Two blocks, two tokens. Trained: block 0 rises (intervals [0, 1] -> [2, 3]), block 1 falls ([2, 3] -> [0, 1]).
TRAINED = _run("trained", {(0, 0): (0.5, 0.4, 0.0, 1.0), (0, 1): (2.5, 2.0, 2.0, 3.0),
                           (1, 0): (2.5, 2.5, 2.0, 3.0), (1, 1): (0.5, 0.0, 0.0, 1.0)})
#: Control: block 0 undetermined ([0, 1] -> [0.5, 1.5]), block 1 rises ([0, 1] -> [2, 3]): the opposite of trained.
CONTROL = _run("shuffled", {(0, 0): (0.5, 0.5, 0.0, 1.0), (0, 1): (1.0, 0.8, 0.5, 1.5),
                            (1, 0): (0.5, 0.5, 0.0, 1.0), (1, 1): (2.5, 1.5, 2.0, 3.0)})
#: A second control with one reading still moving with the sample size (no interval) at block 1, token 2.
MOVING = _run("random-init", {(0, 0): (3.0, 3.0, 2.5, 3.5), (0, 1): (1.0, 1.0, 0.5, 1.5),
                              (1, 0): (3.0, 3.0, 2.5, 3.5), (1, 1): (1.0, 1.0, NAN, NAN)})


def test_a_step_is_read_at_the_position_it_ends() -> None:
    np.testing.assert_array_equal(step_of(np.arange(4), 1), [1, 2, 3, 4])
    np.testing.assert_array_equal(step_of(np.arange(6), 2), [NAN, 1, NAN, 2, NAN, 3])
    np.testing.assert_array_equal(step_of(np.arange(6), 3), [NAN, NAN, 1, NAN, NAN, 2])


def test_side_by_side_keeps_every_run_on_the_trained_grid() -> None:
    table = side_by_side(TRAINED, [CONTROL, MOVING])
    assert table.label.tolist() == ["trained"] * 4 + ["shuffled"] * 4 + ["random-init"] * 4
    assert table.role.tolist() == ["trained"] * 4 + ["control"] * 8
    shuffled = table[table.label == "shuffled"].set_index(CELL)
    assert shuffled.loc[(1, 1), "ie_bits"] == 2.5 and shuffled.loc[(1, 1), "step"] == 2


def test_versus_trained_by_hand() -> None:
    versus = versus_trained(side_by_side(TRAINED, [CONTROL, MOVING])).set_index(["label"] + CELL)
    # shuffled - trained, plug-in and leave-one-out
    assert versus.loc[("shuffled", 0, 1), "difference_bits"] == pytest.approx(1.0 - 2.5)
    assert versus.loc[("shuffled", 1, 1), "difference_loo_bits"] == pytest.approx(1.5 - 0.0)
    said = versus.control_versus_trained
    assert said[("shuffled", 0, 0)] == "overlap"      # the same interval
    assert said[("shuffled", 0, 1)] == "below"        # [0.5, 1.5] under [2, 3]
    assert said[("shuffled", 1, 0)] == "below"        # [0, 1] under [2, 3]
    assert said[("shuffled", 1, 1)] == "above"        # [2, 3] over [0, 1]
    assert said[("random-init", 0, 0)] == "above"     # [2.5, 3.5] over [0, 1]
    assert said[("random-init", 1, 0)] == "overlap"   # [2.5, 3.5] against [2, 3]
    assert said[("random-init", 1, 1)] == "no interval"


def test_trends_per_block_and_for_the_mean_by_hand() -> None:
    table = trends(side_by_side(TRAINED, [CONTROL, MOVING]), [(1, 2)]).set_index(["label", "block"])
    verdict = table.verdict
    assert verdict[("trained", "0")] == "rises" and verdict[("trained", "1")] == "falls"
    assert verdict[("shuffled", "0")] == "undetermined" and verdict[("shuffled", "1")] == "rises"
    assert verdict[("random-init", "0")] == "falls" and verdict[("random-init", "1")] == "no interval"
    # the trained mean: token 1 (0.5 + 2.5) / 2 = 1.5, token 2 (2.5 + 0.5) / 2 = 1.5; interval [1, 2] -> [1, 2]
    mean = table.loc[("trained", "mean")]
    assert (mean.from_bits, mean.to_bits, mean.change_bits) == pytest.approx((1.5, 1.5, 0.0))
    assert mean.change_loo_bits == pytest.approx((2.0 + 0.0) / 2 - (0.4 + 2.5) / 2)
    assert (mean.from_low, mean.from_high, mean.to_low, mean.to_high) == pytest.approx((1.0, 2.0, 1.0, 2.0))
    assert mean.verdict == "undetermined"
    # shuffled's mean: [0, 1] -> [(0.5 + 2) / 2, (1.5 + 3) / 2] = [1.25, 2.25]: rises
    assert table.loc[("shuffled", "mean"), "verdict"] == "rises"
    assert table.loc[("shuffled", "mean"), "to_low"] == pytest.approx(1.25)
    # one block without an interval leaves the mean without one (skipping it would bias the mean)
    assert table.loc[("random-init", "mean"), "verdict"] == "no interval"
    assert np.isnan(table.loc[("random-init", "mean"), "to_low"])
    assert table.loc[("random-init", "mean"), "change_bits"] == pytest.approx(1.0 - 3.0)


def test_pattern_agreement_counts_the_controls_blocks_where_the_trained_trend_is_decided() -> None:
    agreement = pattern_agreement(trends(side_by_side(TRAINED, [CONTROL, MOVING]), [(1, 2)])).set_index("label")
    shuffled = agreement.loc["shuffled"]
    assert (shuffled.trained_decided, shuffled.trained_rises, shuffled.trained_falls) == (2, 1, 1)
    # block 0: trained rises, shuffled undetermined; block 1: trained falls, shuffled rises (opposite)
    assert (shuffled.control_same, shuffled.control_opposite, shuffled.control_undetermined) == (0, 1, 1)
    assert (shuffled.control_rises_anywhere, shuffled.control_falls_anywhere) == (1, 0)
    moving = agreement.loc["random-init"]
    # block 0: trained rises, random-init falls (opposite); block 1: no interval
    assert (moving.control_same, moving.control_opposite, moving.control_no_interval) == (0, 1, 1)


def test_a_control_that_agrees_is_counted_as_the_same_pattern() -> None:
    agreement = pattern_agreement(trends(side_by_side(TRAINED, [_run("copy", {
        cell: tuple(v + 0.01 for v in values) for cell, values in
        zip(map(tuple, TRAINED.frame[CELL].to_numpy().tolist()),
            TRAINED.frame[["ie_bits", "ie_loo_bits", "band_low", "band_high"]].itertuples(index=False))})]),
        [(1, 2)]))
    assert agreement.control_same.tolist() == [2] and agreement.control_opposite.tolist() == [0]


def test_what_cannot_be_compared_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"tau 0\.5.*smoothed\.tau to 0\.25"):
        side_by_side(TRAINED, [_run("other-tau", {(0, 0): (0, 0, 0, 0), (0, 1): (0, 0, 0, 0), (1, 0): (0, 0, 0, 0),
                                                  (1, 1): (0, 0, 0, 0)}, tau=0.5)])
    with pytest.raises(ConfigError, match=r"lacks 2 of the trained run's .*block 1 position 0.*layers and positions"):
        side_by_side(TRAINED, [_run("fewer", {(0, 0): (0, 0, 0, 0), (0, 1): (0, 0, 0, 0)})])
    with pytest.raises(ConfigError, match="labels must differ"):
        side_by_side(TRAINED, [TRAINED])
    with pytest.raises(ConfigError, match="shot_length is 0"):
        side_by_side(TRAINED, [CONTROL], shot_length=0)
    with pytest.raises(ConfigError, match=r"--trend 1:5: step 5 is not in these runs \(steps 1-2"):
        trends(side_by_side(TRAINED, [CONTROL]), [(1, 5)])


# --- from run directories, through the command line -------------------------------------------------------------


def _write_run(run_dir, model: str, corpus: str, plugin: dict, loo: dict, tau: float = 0.25) -> None:
    """A finished run's two tables: mi.parquet (smoothed readings, macro and micro) and ie.parquet (its headline)."""
    rows = []
    for layer in (0, 1):
        for (level, position), value in plugin.items():
            rows.append(dict(model=model, corpus=corpus, shots=0, layer=layer, position=position, level=level, seed=0,
                             mi_bits=value + layer, loo_bits=loo[(level, position)] + layer, ceiling_bits=9.0,
                             tau=tau, reading="smoothed", flag="ok", ci_low=value + layer - 0.1,
                             ci_high=value + layer + 0.1, bootstrap_bits=np.full(4, value + layer)))
    mi = pd.DataFrame(rows)
    run_dir.mkdir(parents=True)
    mi.to_parquet(run_dir / "mi.parquet")
    ie = []
    for layer in (0, 1):
        for position in (0, 1):
            macro = plugin[("macro", position)] + layer
            micro = np.mean([plugin[("micro", p)] + layer for p in range(position + 1)])
            ie.append(dict(model=model, corpus=corpus, shots=0, layer=layer, position=position, ie_bits=macro - micro,
                           ci_low=macro - micro - 0.2, ci_high=macro - micro + 0.2, flag="ok", ie_limit_bits=3.0,
                           tau=tau))
    pd.DataFrame(ie).to_parquet(run_dir / "ie.parquet")


PLUGIN = {("macro", 0): 1.0, ("macro", 1): 4.0, ("micro", 0): 0.5, ("micro", 1): 1.5}
LOO = {("macro", 0): 1.0, ("macro", 1): 2.5, ("micro", 0): 0.4, ("micro", 1): 1.5}


def test_load_run_reads_the_headline_and_the_leave_one_out_end(tmp_path) -> None:
    _write_run(tmp_path / "trained", "m", "c", PLUGIN, LOO)
    run = load_run("trained", tmp_path / "trained", bands_path=None)
    assert (run.model, run.corpus, run.shots, run.tau, run.band_measured_here) == ("m", "c", 0, 0.25, False)
    frame = run.frame.set_index(CELL)
    # IE(position 1) = macro(1) - mean micro(0..1), the leave-one-out end from the loo readings (layer adds 0)
    assert frame.loc[(0, 1), "ie_bits"] == pytest.approx(4.0 - (0.5 + 1.5) / 2)
    assert frame.loc[(0, 1), "ie_loo_bits"] == pytest.approx(2.5 - (0.4 + 1.5) / 2)
    assert frame.band_low.isna().all()  # no bands: no calibrated interval


def test_load_run_refuses_a_run_of_several_conditions_and_a_missing_table(tmp_path) -> None:
    _write_run(tmp_path / "two", "m", "c", PLUGIN, LOO)
    ie = pd.read_parquet(tmp_path / "two" / "ie.parquet")
    pd.concat([ie, ie.assign(corpus="d")]).to_parquet(tmp_path / "two" / "ie.parquet")
    with pytest.raises(ConfigError, match=r"holds 2 conditions \(m/c/0-shot, m/d/0-shot\)"):
        load_run("two", tmp_path / "two", bands_path=None)
    with pytest.raises(ConfigError, match=r"ie\.parquet is missing"):
        load_run("none", tmp_path / "absent", bands_path=None)


def test_the_command_writes_the_tables_plots_and_report(tmp_path, capsys) -> None:
    _write_run(tmp_path / "trained", "m", "c", PLUGIN, LOO)
    # the control's macro at token 2 is 2 bits lower: its IE there is 2 bits lower in every block
    _write_run(tmp_path / "control", "m-random0", "c", {**PLUGIN, ("macro", 1): 2.0}, LOO)
    out = tmp_path / "out"
    assert cli.main(["controls", str(tmp_path / "trained"), "--control", f"random-init={tmp_path / 'control'}",
                     "--trend", "1:2", "--out", str(out), "--bands", str(tmp_path / "no-bands.json")]) == 0
    for name in ("controls.md", "controls.csv", "controls_versus_trained.csv", "controls_trends.csv",
                 "controls_pattern.csv", "controls_block_means.csv", "controls_by_block.png", "controls_by_step.png"):
        assert (out / name).is_file(), name
    versus = pd.read_csv(out / "controls_versus_trained.csv")
    at_token_2 = versus[versus.position == 1]
    np.testing.assert_allclose(at_token_2.difference_bits, [-2.0, -2.0])
    np.testing.assert_allclose(versus[versus.position == 0].difference_bits, [0.0, 0.0])
    means = pd.read_csv(out / "controls_block_means.csv").set_index(["label", "step"])
    assert means.loc[("trained", 2), "ie_bits"] == pytest.approx(np.mean([4.0 - 1.0, 5.0 - 2.0]))
    report = (out / "controls.md").read_text()
    assert "| random-init |" in report and "![controls_by_block](controls_by_block.png)" in report
    assert "written to" in capsys.readouterr().out


@pytest.mark.parametrize("argument, message", [(["--control", "no-equals-sign"], "must look like LABEL=RUN_DIR"),
                                               (["--control", "x=y", "--trend", "3-12"], "must look like A:B")])
def test_malformed_arguments_are_named(tmp_path, capsys, argument, message) -> None:
    _write_run(tmp_path / "trained", "m", "c", PLUGIN, LOO)
    assert cli.main(["controls", str(tmp_path / "trained"), "--out", str(tmp_path / "out"), *argument]) != 0
    assert message in capsys.readouterr().err
