"""`ie-ray validate --smoothed --quick`: the table has its columns, its errors are against the exact values
(re-derived here for one cell), the outputs are written, and a second run resumes from parts/."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ie_ray.validate_smoothed import (
    TARGET_FLOOR_BITS,
    TARGET_FRACTION,
    DiscreteResidualLaw,
    main,
    run_smoothed_validation,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TAUS = (0.1, 0.5)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoothed_validation")
    return out, run_smoothed_validation(out, taus=TAUS, quick=True, log=lambda _: None)


def test_table_has_the_expected_columns_and_rows(quick) -> None:
    out, table = quick
    expected = {"d", "support", "n_samples", "tau", "sigma", "repeat", "entropy_bits", "cap_bits", "exact_bits",
                "exact_se_bits", "mi_bits", "mc_se_bits", "ci_low", "ci_high", "half_bits", "flag", "error_bits",
                "abs_error_bits", "rel_error", "population_scale_bits", "population_scale_error_bits",
                "extrapolated_bits", "extrapolated_error_bits", "extrapolated_rel_error", "tolerance_bits",
                "accurate", "flagged", "meets_target", "extrapolated_accurate", "covered", "seconds_per_estimate",
                "exact_seconds"}
    assert expected <= set(table.columns)
    assert len(table) == 2 * 2 * len(TAUS)  # quick: d in (4, 8) x K in (8, 100) x taus, one repeat
    for name in ("smoothed_validation.parquet", "smoothed_validation.csv", "smoothed_validation.png", "README.md"):
        assert (out / name).stat().st_size > 0
    assert pd.read_parquet(out / "smoothed_validation.parquet").shape == table.shape
    assert "Target" in (out / "README.md").read_text()


def test_errors_are_against_the_exact_value(quick) -> None:
    _, table = quick
    row = table[(table.d == 8) & (table.support == 100) & (table.tau == 0.5)].iloc[0]
    # the exact value, recomputed: the law's own atoms at the population scale (quick: 600 draws, seed 0)
    exact = DiscreteResidualLaw(8, 100, seed=0).exact(TAUS, n_draws=600, seed=0).at(0.5)
    assert row.exact_bits == pytest.approx(exact.mi_bits, abs=1e-9)
    assert row.error_bits == pytest.approx(row.mi_bits - exact.mi_bits, abs=1e-12)
    assert row.rel_error == pytest.approx((row.mi_bits - exact.mi_bits) / exact.mi_bits, rel=1e-9)
    assert row.extrapolated_bits == pytest.approx(2 * row.mi_bits - row.half_bits, abs=1e-12)
    tol = max(TARGET_FRACTION * exact.mi_bits, TARGET_FLOOR_BITS)
    assert row.tolerance_bits == pytest.approx(tol)
    assert row.meets_target == (abs(row.error_bits) <= tol or row.flag != "ok")
    assert np.allclose(table.error_bits, table.mi_bits - table.exact_bits)
    assert (table.entropy_bits == np.log2(table.support)).all() and (table.cap_bits == math.log2(150)).all()


def test_a_second_run_resumes_from_the_parts(quick, capsys) -> None:
    out, table = quick
    assert main(["--quick", "--out", str(out), "--taus", *map(str, TAUS)]) == 0
    assert capsys.readouterr().out.count("reusing") == 4
    again = pd.read_parquet(out / "smoothed_validation.parquet")
    pd.testing.assert_frame_equal(again, table)
