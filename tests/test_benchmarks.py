"""The benchmarks' --quick modes run end to end on tiny-gpt2 and write JSON with every ratio they promise.

No timing is asserted (the machine is shared); what is checked is that each benchmark still runs against the
current pipeline and reports the fields its README table is built from.
"""
from __future__ import annotations

import json
import math

import pytest

from benchmark_loader import load_benchmark as _load  # tests/ is on sys.path


def _finite_ratio(ratios: dict, key: str) -> None:
    assert key in ratios, f"missing ratio {key}: {sorted(ratios)}"
    assert ratios[key] is not None and math.isfinite(ratios[key]) and ratios[key] > 0, (key, ratios[key])


def test_extraction_quick_writes_its_ratios(ray_local, one_torch_thread, tmp_path):
    extraction = _load("extraction")
    out = tmp_path / "extraction_quick"
    extraction.main(["--quick", "--samples", "128", "--max-actors", "1", "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    for key in ["pipeline_over_bare_base", "pipeline_over_bare_lm", "in_process_over_bare_base",
                "micro_per_sample_over_unique", "bytes_float32_over_float16", "float16_over_float32_throughput",
                "no_dictionary_over_dictionary_x1",
                "bytes_dictionary_over_no_dictionary", "read_back_dictionary_over_no_dictionary", "scaling_1_actors"]:
        _finite_ratio(res["ratios"], key)
    assert "pipeline_steady_over_bare_base" in res["ratios"]
    # the unique-token micro states are the per-(sample, position) ones, exactly
    assert res["micro"]["max_abs_diff_same_token"] == 0.0
    assert res["micro"]["unique_rows"] < res["micro"]["per_sample_rows"] == 128 * 4
    # float16 halves the state columns: fewer bytes than float32, never more
    assert res["bytes_per_sample"]["float16"] < res["bytes_per_sample"]["float32"]
    # every row went through some actor, in every pipeline run
    for mode in res["modes"]:
        if mode["name"].startswith("ray"):
            assert sum(mode["actor_rows"]) == 128, mode
    assert "| bare-base |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_sweep_quick_first_run_and_rerun(tmp_path):
    """Two child processes (each starts its own Ray): the rerun reuses every shard and computes none."""
    sweep = _load("sweep")
    out = tmp_path / "sweep_quick"
    sweep.main(["--quick", "--work-dir", str(tmp_path), "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    for key in ["first_over_rerun_process", "first_over_rerun_run_sweep", "slowest_stage_share_first_run"]:
        _finite_ratio(res["ratios"], key)
    assert set(res["first"]["groups_s"]) >= {"plan", "corpora", "ray start", "extract", "store", "reduce",
                                              "tables + report"}
    assert res["rerun"]["shards"]["computed"] == {"extraction_streams": 0, "estimates": 0}
    assert res["rerun"]["shards"]["reused"]["estimates"] == res["first"]["shards"]["computed"]["estimates"] > 0
    assert res["rerun"]["groups_s"]["extract"] == 0.0  # nothing extracted again
