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
