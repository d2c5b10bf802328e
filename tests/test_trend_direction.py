"""The trend rules of benchmarks/trend_direction_real.py (issue 24, item 5) on hand-made calibration rows, and those
of benchmarks/trend_direction.py (the same question on synthetic laws of a set Delta) on hand-made readings."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from benchmark_loader import load_benchmark  # tests/ is on sys.path

trend = load_benchmark("trend_direction_real")


def _row(population: str, seed: int, plugin: float, loo: float, truth: float, flag: str = "undersampled",
         half: float = 0.1) -> dict:
    return dict(population=population, tau=0.25, fraction=0.1, seed=seed, flag=flag, plugin=plugin, loo=loo,
                plugin_low=plugin - half, plugin_high=plugin + half, truth_bits=truth)


def test_rules_read_a_rise_whose_leave_one_out_end_falls():
    """Truth 5 -> 6. Plug-in 5.5 -> 6.6 (intervals +-0.1, disjoint), leave-one-out 2.0 -> 1.5: the bracket rule
    calls it undetermined (its ends disagree), the plug-in's intervals a rise, and the band of three calibration
    laws (offsets 0, +0.1, -0.05: t(2) = 4.3 times their spread, about +-0.5 of the reading) undetermined."""
    rows = [_row("run block 29 position 1", 0, 5.5, 2.0, 5.0), _row("run block 29 position 2", 0, 6.6, 1.5, 6.0)]
    for i, offset in enumerate((0.0, 0.1, -0.05)):
        truth = 4.0
        rows += [_row(f"c{i}", s, truth / (1 - offset) + 0.001 * s, 1.0, truth) for s in range(3)]
    decisions = trend.pair_decisions(pd.DataFrame(rows))
    assert len(decisions) == 1
    d = decisions.iloc[0]
    assert (d.truth, d.bracket, d.plugin_ci, d.band) == ("rises", "undetermined", "rises", "undetermined")


def test_band_decides_when_the_calibration_laws_agree_and_both_ends_fall():
    """Calibration laws with offsets 0.02, 0.03, 0.025 (a band of a few % of the reading): truth 7 -> 3, read
    7.2 -> 3.1 (loo 3 -> 1): every rule calls the fall; the summary counts it right for each."""
    rows = [_row("run block 5 position 3", 1, 7.2, 3.0, 7.0), _row("run block 5 position 9", 1, 3.1, 1.0, 3.0)]
    for i, offset in enumerate((0.02, 0.03, 0.025)):
        rows += [_row(f"c{i}", s, 4.0 / (1 - offset) + 0.0005 * s, 1.0, 4.0) for s in range(3)]
    decisions = trend.pair_decisions(pd.DataFrame(rows))
    assert decisions.iloc[0][["truth", "bracket", "plugin_ci", "band"]].tolist() == ["falls"] * 4
    table = trend.summary(decisions).set_index("rule")
    assert (table.right == 1.0).all() and (table.wrong == 0.0).all()


# --- benchmarks/trend_direction.py: the same question on synthetic laws of a set Delta ----------------------------

synthetic = load_benchmark("trend_direction")


def _reading(plugin: float, loo: float, half: float, flag: str = "ok", seed: int = 0):
    return synthetic.Reading(law="hand", role="hand", atoms=1, factor=1.0, n=1, seed=seed, plugin=plugin, loo=loo,
                             ci_low=plugin - half, ci_high=plugin + half, flag=flag)


def test_bracket_rule_needs_both_ends_and_a_plugin_move_beyond_both_half_widths():
    """Short 5.0 +- 0.1 (loo 4.0). Long 6.0 +- 0.2 with loo 1.0: the plug-in rises by 1.0 > 0.3 but the
    leave-one-out end falls: bracket undetermined, plug-in intervals ([5.8, 6.2] above [4.9, 5.1]) a rise. Long
    4.0 +- 0.2, loo 1.0: both ends fall, by 1.0 > 0.3: a fall for all three; with loo 4.5 (rising) a fall for the
    plug-in alone. Long 5.25 +- 0.2, loo 4.2: both ends
    rise but the plug-in by 0.25 < 0.1 + 0.2: bracket undetermined, signs alone a rise, intervals overlapping
    ([5.05, 5.45] vs [4.9, 5.1]) undetermined. Long 5.35 +- 0.2, loo 4.2: 0.35 > 0.3, a rise for all three."""
    short = _reading(5.0, 4.0, 0.1)
    cases = [((6.0, 1.0), ("undetermined", "undetermined", "rise")),
             ((4.0, 1.0), ("fall", "fall", "fall")),
             ((4.0, 4.5), ("undetermined", "undetermined", "fall")),
             ((5.25, 4.2), ("undetermined", "rise", "undetermined")),
             ((5.35, 4.2), ("rise", "rise", "rise"))]
    for (plugin, loo), expected in cases:
        long = _reading(plugin, loo, 0.2)
        got = (synthetic.bracket_rule(short, long), synthetic.bracket_sign_rule(short, long),
               synthetic.plugin_ci_rule(short, long))
        assert got == expected, (plugin, loo)
    nan = _reading(float("nan"), 1.0, 0.2)
    assert synthetic.bracket_rule(short, nan) == synthetic.plugin_ci_rule(short, nan) == "undetermined"


def test_band_rules_use_the_band_where_undersampled_the_own_interval_where_ok_and_nothing_else():
    """Relative band [0, 0.2] (the plug-in reads 0-20% high): a long `undersampled` 6.6 +- 0.1 reads
    [6.6 - 0.2 x 6.6 - 0.1, 6.6 + 0.1] = [5.18, 6.7], above the short `ok` [4.9, 5.1]: a rise; 6.4 +- 0.1 reads
    [5.02, 6.5], overlapping it: undetermined; a `not_converged` long reading has no interval: undetermined.
    Bracket band [0.5, 1] (the truth in the upper half of [loo, plug-in]): loo 5.8 under plug-in 6.6 reads
    [6.2 - 0.1, 6.6 + 0.1], a rise; loo 1.0 under 6.4 reads [3.7 - 0.1, 6.5]: undetermined."""
    bands = {"relative": synthetic.BiasBand(0.25, 0.0, 0.2, 10, 3, "relative"),
             "bracket": synthetic.BiasBand(0.25, 0.5, 1.0, 10, 3, "bracket")}
    short = [_reading(5.0, 4.0, 0.1, "ok")]
    long = [_reading(6.6, 5.8, 0.1, "undersampled", 1), _reading(6.4, 1.0, 0.1, "undersampled", 2),
            _reading(8.0, 7.9, 0.1, "not_converged", 3)]
    rows = synthetic.decide_pair(7, 1.0, 1.02, 0.05, short, long, bands)
    assert [(d.seed_long, d.band_relative, d.band_bracket) for d in rows] == [
        (1, "rise", "rise"), (2, "undetermined", "undetermined"), (3, "undetermined", "undetermined")]
    assert all(d.truth == "rise" and d.pair == 7 for d in rows)
    # without a band (too few calibration laws) an undersampled reading has no interval
    none = synthetic.decide_pair(7, 1.0, 1.02, 0.05, short, long[:1], {"relative": None, "bracket": None})
    assert (none[0].band_relative, none[0].band_bracket) == ("undetermined", "undetermined")


def test_summary_counts_right_wrong_and_the_null_pairs_calls():
    """Rise pair 0: rise, rise, undetermined, fall -> right 0.5, wrong 0.25. Null pair 1: rise, fall,
    undetermined x 2 -> wrong 0.5 (either direction), right_by_pair = share undetermined 0.5."""
    said = ["rise", "rise", "undetermined", "fall", "rise", "fall", "undetermined", "undetermined"]
    frame = pd.DataFrame(dict(pair=[0] * 4 + [1] * 4, delta_target=[0.5] * 4 + [0.0] * 4,
                              truth=["rise"] * 4 + ["null"] * 4,
                              **{rule: said for rule in synthetic.RULES}))
    table = synthetic.summary(frame)
    assert len(table) == 2 * len(synthetic.RULES)
    rise = table[(table.rule == "bracket") & (table.truth == "rise")].iloc[0]
    assert (rise.right, rise.wrong, rise.undetermined, rise.decisions) == (0.5, 0.25, 0.25, 4)
    null = table[(table.rule == "bracket") & (table.truth == "null")].iloc[0]
    assert (null.said_rise, null.said_fall, null.wrong, null.right_by_pair) == (0.25, 0.25, 0.5, "0.50")


def test_quick_run_writes_every_decision_and_resumes_from_its_parts(tmp_path, monkeypatch):
    """--quick end to end (three pairs of tiny laws, Delta -1, 0, +1; two samples a law): 3 x 2 x 2 decisions, the
    truth set to within its tolerance plus Monte Carlo error; a second run computes nothing (every reading is a
    cached part) and reads the same decisions; another design in the same directory is refused."""
    out = tmp_path / "td"
    assert synthetic.main(["--quick", "--out", str(out)]) == 0
    decisions = pd.read_parquet(out / "decisions.parquet")
    assert len(decisions) == 12 and set(decisions.truth) == {"rise", "fall", "null"}
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert ((pairs.delta_bits - pairs.delta_target).abs() < 0.05 + 4 * pairs.delta_se_bits).all()
    assert (out / "README.md").read_text().count("`bracket`") >= 2

    def no_compute(*args, **kwargs):
        raise AssertionError("a cached piece was computed again")

    monkeypatch.setattr(synthetic, "read_sample", no_compute)
    monkeypatch.setattr(synthetic, "truth_bits", no_compute)
    again = synthetic.run(synthetic.Design.quick(), out, log=lambda _: None)
    pd.testing.assert_frame_equal(again.decisions, decisions)
    with pytest.raises(SystemExit, match="another design"):
        synthetic.run(replace(synthetic.Design.quick(), seeds=3), out, log=lambda _: None)
