"""The calibration's own numbers (ie_ray/validate_smoothed_real.py): the Kolchinsky-Tracey bracket, the 1/n fit,
coverage and adoption, each against a value derived independently."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ie_ray.estimators.smoothed import Scale, SmoothedParams, smoothed_mi
from ie_ray.validate_smoothed_real import (
    _fit_intercept,
    adoption,
    kt_bounds_bits,
    summarise,
    synthetic_population,
)


def test_kt_bracket_holds_the_monte_carlo_mixture_mi():
    """Lower <= I_sigma <= upper for the mixture itself (Monte Carlo, many draws, +-4 standard errors)."""
    pop = synthetic_population(4, 60, seed=1)
    taus = (0.1, 0.25, 0.5)
    bounds = kt_bounds_bits(pop.x, pop.y, np.ones(pop.atoms), pop.scale_x, pop.scale_y, taus)
    exact = smoothed_mi(pop.x, pop.y, SmoothedParams(tau=0.1, taus=taus, n_draws=60000, n_bootstrap=0,
                                                     mc_tolerance_fraction=0.0),
                        scale_x=pop.scale_x, scale_y=pop.scale_y, weights=np.ones(pop.atoms))
    for tau in taus:
        low, high = bounds[tau]
        r = exact.at(tau)
        assert low - 4 * r.mc_se_bits <= r.plugin_bits <= high + 4 * r.mc_se_bits, (tau, low, r.plugin_bits, high)
        assert high - low > 0.01  # a real bracket, not a point


def test_kt_bracket_limits_far_apart_and_drowned_components():
    """Components 1,000 noise widths apart: MI = H(S) = log2 K at both ends. Noise far larger than the spread:
    both ends -> 0. Both limits follow from the definitions, not from the code."""
    k = 8
    x = np.eye(k) * 1000.0
    scale = Scale(center=np.zeros(k), spread=np.ones(k))
    (low, high), = kt_bounds_bits(x, x.copy(), np.ones(k), scale, scale, [0.01]).values()
    assert low == pytest.approx(math.log2(k), abs=1e-6) and high == pytest.approx(math.log2(k), abs=1e-6)
    (low, high), = kt_bounds_bits(x / 1000.0, x / 1000.0, np.ones(k), scale, scale, [100.0]).values()
    assert abs(low) < 1e-4 and abs(high) < 1e-4


def test_kt_bracket_weights_are_probabilities():
    """Counts 3 and 1 on two far-apart atoms: MI = H(3/4, 1/4) bits."""
    x = np.array([[0.0], [1000.0]])
    scale = Scale(center=np.zeros(1), spread=np.ones(1))
    (low, high), = kt_bounds_bits(x, x.copy(), np.array([3.0, 1.0]), scale, scale, [0.01]).values()
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert low == pytest.approx(h, abs=1e-6) and high == pytest.approx(h, abs=1e-6)


def test_fit_intercept_recovers_the_limit_and_propagates_errors():
    a, b = 2.5, 40.0
    sizes = [125, 250, 500, 1000]
    value, se, chi2 = _fit_intercept(sizes, [a + b / m for m in sizes], [0.1] * 4)
    assert value == pytest.approx(a, abs=1e-10) and chi2 == pytest.approx(0.0, abs=1e-12)
    # independent: ordinary least squares coefficient of the intercept, c = first row of (D^T D)^-1 D^T
    design = np.array([[1.0, 1.0 / m] for m in sizes])
    c = np.linalg.solve(design.T @ design, design.T)[0]
    assert se == pytest.approx(0.1 * float(np.sqrt((c**2).sum())), rel=1e-10)
    # a curve bent away from a + b / m: residuals against the least-squares line, in units of their error
    bent = [a + b / m + (0.5 if m == 250 else 0.0) for m in sizes]
    _, _, chi2 = _fit_intercept(sizes, bent, [0.1] * 4)
    fitted = design @ np.linalg.lstsq(design, np.array(bent), rcond=None)[0]
    assert chi2 == pytest.approx(float((((np.array(bent) - fitted) / 0.1) ** 2).sum()), rel=1e-9) and chi2 > 5.991


def _table(values, lows, highs, truth):
    n = len(values)
    frame = pd.DataFrame(dict(kind=["real"] * n, tau=0.25, fraction=0.1, truth_bits=truth, truth_se_bits=0.0,
                              population="p", flag="ok"))
    for c in ("plugin", "extrapolate", "loo", "bracket", "bracket_ci", "fit", "fit_checked", "kt"):
        frame[c], frame[f"{c}_low"], frame[f"{c}_high"] = values, lows, highs
    return frame


def test_widened_plugin_adds_one_halving_step_each_side():
    frame = _table([1.0], [0.9], [1.1], 1.25)
    frame["extrapolate"] = 0.8  # one halving step moved the reading by 0.2 bit
    row = summarise(frame).set_index("candidate")
    assert row.loc["plugin", "covered"] == 0 and row.loc["plugin_widened", "covered"] == 1
    assert row.loc["plugin_widened", "width_bits"] == pytest.approx(0.2 + 2 * 0.2)


def test_summary_counts_coverage_and_bias():
    frame = _table([1.0, 1.2, 0.8, 3.0], [0.9, 1.1, 0.5, 2.0], [1.1, 1.3, 1.0, 4.0], 1.0)
    row = summarise(frame).query("candidate == 'plugin'").iloc[0]
    assert row.coverage == pytest.approx(0.5)  # rows 0 and 2 hold 1.0 (row 2 at its edge); rows 1 and 3 do not
    assert row.bias_bits == pytest.approx((0 + 0.2 - 0.2 + 2.0) / 4)
    assert row.width_bits == pytest.approx((0.2 + 0.2 + 0.5 + 2.0) / 4)
    adopt = adoption(summarise(frame))
    assert not adopt.adopted.any()  # 50% coverage, and no synthetic law measured


def test_coverage_allows_for_the_truths_monte_carlo_error():
    """Interval [0.9, 1.1] (half-width 0.1) and truth 1.15 +- se: covered when 0.05 <= sqrt(0.1^2 + (1.96 se)^2)
    - 0.1, i.e. se >= sqrt(0.15^2 - 0.1^2) / 1.96 = 0.0570; strict coverage never."""
    frame = _table([1.0, 1.0], [0.9, 0.9], [1.1, 1.1], 1.15)
    frame["truth_se_bits"] = [0.056, 0.058]
    row = summarise(frame).query("candidate == 'plugin'").iloc[0]
    assert row.covered == 1 and row.coverage == pytest.approx(0.5) and row.coverage_strict == 0.0


def test_adoption_needs_both_kinds_at_ninety_percent():
    real = _table([1.0] * 10, [0.9] * 10, [1.1] * 10, 1.0)
    synthetic = real.assign(kind="synthetic")
    assert adoption(summarise(pd.concat([real, synthetic]))).adopted.all()
    missed = synthetic.copy()
    missed.loc[:1, ["plugin_low"]] = 1.05  # 2 of 10 miss: 80% < 90%
    adopt = adoption(summarise(pd.concat([real, missed]))).set_index("candidate")
    assert not adopt.loc["plugin", "adopted"] and adopt.loc["fit", "adopted"]
    assert adopt.loc["plugin", "worst_synthetic"] == pytest.approx(0.8)


def test_real_runs_take_their_own_cells_on_the_command_line():
    """`--real RUN@B:P,B:P` gives a run its own cells (an ICL run has 24 positions, natural text 8); a bare RUN
    takes --cells; a malformed value is refused naming the form."""
    import argparse

    from ie_ray.validate_smoothed_real import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--real", "runs/natural", "runs/icl@29:23,14:5", "--cells", "29:7", "14:3"])
    from pathlib import Path
    assert args.real == [(Path("runs/natural"), None), (Path("runs/icl"), [(29, 23), (14, 5)])]
    assert args.cells == [(29, 7), (14, 3)]
    for bad in ("runs/icl@", "@29:7", "runs/icl@29"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--real", bad])


def test_calibration_reads_each_runs_own_cells(monkeypatch, tmp_path):
    """run_real_calibration builds the populations (run, block, position) from a run's own cells where given, and
    from --cells otherwise (population reading and fitting stubbed: only the pairing is under test)."""
    import ie_ray.validate_smoothed_real as real

    seen: list[tuple[str, int, int]] = []
    monkeypatch.setattr(real, "real_population", lambda run, b, p, rule: seen.append((str(run), b, p)) or (run, b, p))
    monkeypatch.setattr(real, "run_population", lambda pop, *a, **k: pd.DataFrame({"x": [1]}))
    monkeypatch.setattr(real, "write_report", lambda *a, **k: None)
    from pathlib import Path
    real.run_real_calibration([Path("nat"), (Path("icl"), [(29, 23)])], [(29, 7), (14, 3)], [], tmp_path,
                              log=lambda _: None)
    assert seen == [("nat", 29, 7), ("nat", 14, 3), ("icl", 29, 23)]
