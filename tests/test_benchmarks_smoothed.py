"""benchmarks/smoothed.py --quick runs end to end and writes every ratio and check its README table is built from.

No timing is asserted (the machine is shared). What is checked: the JSON's keys, that the batched call gives the
one-by-one values exactly, that float64 agrees with float32, and how real states are found and tiled.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_benchmarks import _finite_ratio, _load


def test_smoothed_quick_writes_its_ratios(one_torch_thread, tmp_path):
    smoothed = _load("smoothed")
    out = tmp_path / "smoothed_quick"
    smoothed.main(["--quick", "--synthetic", "--repeats", "1", "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    assert set(res) >= {"benchmark", "config", "smoothed_params", "mine_params", "machine", "rows", "ratios", "checks"}
    assert res["config"]["real_states"] is False and res["config"]["states"].startswith("synthetic")
    assert res["machine"]["loadavg_at_start"] and res["machine"]["loadavg_at_end"]
    for key in ["mine_over_smoothed_small", "smoothed_large_over_small", "one_by_one_over_batched_cpu",
                "float64_over_float32_cpu"]:
        _finite_ratio(res["ratios"], key)
    assert "mine_over_smoothed_large" not in res["ratios"]  # MINE at the large N only with --full
    assert res["checks"]["batched_vs_one_by_one_cpu"] == {"max_abs_diff_bits": 0.0, "identical": True}
    assert res["checks"]["float32_vs_float64_cpu"]["max_abs_diff_estimate_bits"] < 1e-3
    sections = {(r["section"], r["estimator"]) for r in res["rows"]}
    assert sections >= {("a", "smoothed"), ("a", "mine-dv"), ("b", "smoothed"), ("d", "smoothed")}
    for row in res["rows"]:
        assert math.isfinite(row["s_per_estimate"]) and row["s_per_estimate"] > 0, row
        if row["section"] in "abd":
            assert row["dim"] == 576 and math.isfinite(row["headline_bits"]), row
    assert "| (a) smoothed vs MINE-DV" in out.with_suffix(".md").read_text()


def test_find_cell_picks_the_macro_cell(tmp_path):
    """A run's state cache holds the macro cell (one row per sample) and micro cells (one row per token)."""
    smoothed = _load("smoothed")
    for key, rows in (("micro", 26), ("macro", 2000)):
        layer = tmp_path / "cache" / "states" / "smollm2-135m" / key / "stream=10"
        layer.mkdir(parents=True)
        (layer / "_COMPLETE.json").write_text(json.dumps({"key": key, "stream": 10, "rows": rows}))
    assert smoothed.find_cell(tmp_path, 10) == tmp_path / "cache" / "states" / "smollm2-135m" / "macro"
    assert smoothed.find_cell(tmp_path, 20) is None


def test_tiled_real_rows_keep_the_originals_and_jitter_the_copies():
    smoothed = _load("smoothed")
    rng = np.random.default_rng(0)
    pre, post = rng.standard_normal((2, 50, 3, 8)).astype(np.float32)
    states = smoothed.BlockStates(pre, post, "real: test", real=True)
    x, y, how = smoothed.last_position(states, 120)
    assert x.shape == y.shape == (120, 8) and "tiled x3" in how
    np.testing.assert_array_equal(x[:50], pre[:, -1])
    copies = x[50:100] - pre[:, -1]
    assert 0 < np.abs(copies).max() < 0.01  # jitter, far below one standard deviation
    assert len(np.unique(x, axis=0)) == 120  # no duplicate rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given on a machine without a GPU")
def test_cuda_without_a_gpu_says_so(tmp_path):
    smoothed = _load("smoothed")
    with pytest.raises(SystemExit, match="torch.cuda.is_available"):
        smoothed.main(["--quick", "--synthetic", "--device", "cuda", "--out", str(tmp_path / "x")])
