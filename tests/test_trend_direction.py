"""The trend rules of benchmarks/trend_direction_real.py (issue 24, item 5) on hand-made calibration rows."""
from __future__ import annotations

import pandas as pd

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
