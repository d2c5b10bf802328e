"""End-to-end: a whole sweep on a tiny random-init model, through Ray Data extraction and Ray estimator tasks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ie_ray.brackets import with_calibrated_interval
from ie_ray.config import parse_config
from ie_ray.ie import ie_by_reading, information_emergence, side_by_side
from ie_ray.sweep import run_sweep

TINY_SWEEP = {
    "name": "tiny-e2e",
    "models": ["tiny-llama", "tiny-gpt2"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8, "n_samples": 240}],
    "shots": [2],
    "layers": [0, -1],
    "positions": "all",
    "estimator": {"steps": 40, "batch_size": 64, "n_bootstrap": 50},
    "extract": {"batch_size": 50, "keep_states": True},  # kept: the state files are what some tests inspect
    "reduce": {"estimators_per_task": 4},
}


@pytest.fixture(scope="module")
def tiny_run(ray_local, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    return run_sweep(parse_config(TINY_SWEEP), run_dir)


def test_run_directory_holds_every_artefact(tiny_run):
    run_dir = tiny_run.run_dir
    for name in ["config.yaml", "manifest.json", "mi.parquet", "ie.parquet", "ie.csv", "layers.csv",
                 "models.csv", "report.md", "ie_readings.csv", "scales.csv"]:
        assert (run_dir / name).is_file(), name
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    assert len(pngs) == 4  # per (model, corpus, shots): IE by position, and IE against tau
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["models"]) == {"tiny-llama", "tiny-gpt2"}
    assert manifest["models"]["tiny-llama"]["n_layers"] == 4
    assert manifest["models"]["tiny-llama"]["hidden_size"] == 64
    assert manifest["models"]["tiny-llama"]["n_params"] > 0
    assert {"extract tiny-llama", "reduce tiny-llama", "report"} <= set(manifest["timings_s"])
    report = (run_dir / "report.md").read_text()
    assert "Per-layer E(l)" in report and "tiny-gpt2" in report


def test_mi_table_schema_and_counts(tiny_run):
    every = pd.read_parquet(tiny_run.run_dir / "mi.parquet")
    for column in ["model", "corpus", "shots", "layer", "position", "level", "mi_bits", "n_samples", "estimator",
                   "seed", "ceiling_bits", "ci_low", "ci_high", "flag", "reading", "tau"]:
        assert column in every.columns, column
    # per model and reading: 2 layers x (4 macro positions + 4 micro positions) x 1 seed, x 5 taus when smoothed
    counts = every.groupby(["model", "reading"]).size().to_dict()
    assert counts == {(m, r): n for m in ("tiny-gpt2", "tiny-llama")
                      for r, n in (("entropy_limit", 16), ("mine", 16), ("smoothed", 80))}
    mi = every[every.reading == "mine"]
    assert set(mi.level) == {"macro", "micro"}
    assert (mi.n_samples == 240).all()
    # layers resolved from [0, -1] on a 4-block model
    assert sorted(mi.layer.unique()) == [0, 3]
    # the separator (odd positions) fed alone is one constant token: MI is exactly 0, not an estimate
    sep = mi[(mi.level == "micro") & (mi.position % 2 == 1)]
    assert (sep.mi_bits == 0).all() and (sep.flag == "constant").all()
    fitted = mi[mi.flag != "constant"]
    assert np.isfinite(fitted.mi_bits).all()
    assert (fitted.ci_low <= fitted.ci_high).all()
    # ceilings: 8 entities at position 0 -> at most log2(8) = 3 bits; prefix of 2 entities: at most log2(56)
    macro0 = mi[(mi.level == "macro") & (mi.position == 0)].ceiling_bits
    assert (macro0 <= 3.0 + 1e-9).all() and (macro0 > 2.5).all()


def test_ie_table_follows_the_formula(tiny_run):
    mi = pd.read_parquet(tiny_run.run_dir / "mi.parquet")
    ie = pd.read_parquet(tiny_run.run_dir / "ie.parquet")
    assert len(ie) == 2 * 2 * 4  # models x layers x positions
    recomputed = with_calibrated_interval(side_by_side(ie_by_reading(mi), "smoothed", 0.25), mi, 0.25)
    pd.testing.assert_frame_equal(ie.reset_index(drop=True), recomputed.reset_index(drop=True))
    # the calibrated interval's columns are there (a band is adopted at tau 0.25), empty: the band was measured on
    # SmolLM2-135M's laws, not on these tiny models'
    assert ie.ie_sigma_cal_low.isna().all() and ie.ie_sigma_cal_high.isna().all()
    assert (ie.headline == "smoothed tau=0.25").all()
    row = ie[(ie.model == "tiny-llama") & (ie.layer == 3) & (ie.position == 3)].iloc[0]
    sel = mi[(mi.model == "tiny-llama") & (mi.layer == 3)]

    def by_hand(reading: str, tau: float | None = None) -> float:
        part = sel[sel.reading == reading]
        if tau is not None:
            part = part[np.isclose(part.tau, tau)]
        macro = part[(part.level == "macro") & (part.position == 3)].mi_bits.iloc[0]
        micro = part[(part.level == "micro") & (part.position <= 3)].sort_values("position").mi_bits
        assert len(micro) == 4
        return macro - micro.mean()

    assert row.ie_bits == pytest.approx(by_hand("smoothed", 0.25)) and row.ie_bits == row.ie_sigma_bits
    assert row.ie_limit_bits == pytest.approx(by_hand("entropy_limit"))
    assert row.ie_mine_bits == pytest.approx(by_hand("mine"))
    assert row.ci_low <= row.ie_bits <= row.ci_high or row.flag != "ok"
    mine_only = information_emergence(mi[mi.reading == "mine"])
    np.testing.assert_allclose(ie.ie_mine_bits.to_numpy(), mine_only.ie_bits.to_numpy())
    # every smoothed tau of the grid has its own IE rows in the long table
    readings = pd.read_parquet(tiny_run.run_dir / "ie_readings.parquet")
    assert sorted(readings[readings.reading == "smoothed"].tau.unique()) == [0.05, 0.1, 0.25, 0.5, 1.0]
    csv = pd.read_csv(tiny_run.run_dir / "ie.csv")
    assert len(csv) == len(ie)


def test_states_are_written_as_arrow_tensor_parquet(tiny_run):
    manifest = json.loads((tiny_run.run_dir / "manifest.json").read_text())
    states = Path(manifest["corpora"]["tiny-llama/icl-country-2shot"]["states"])
    assert states.is_relative_to(tiny_run.run_dir / "cache")
    # blocks 0 and 3 are residual streams 0, 1 (block 0's input and output) and 3, 4: each stored once
    stream_dirs = sorted(p.name for p in states.iterdir() if p.is_dir())
    assert stream_dirs == ["stream=0", "stream=1", "stream=3", "stream=4"]
    table = pq.read_table(states / "stream=3")
    assert table.num_rows == 240
    assert tuple(table.schema.field("resid").type.shape) == (4, 64)
    micro = Path(manifest["models"]["tiny-llama"]["micro_states"]) / "stream=0"
    # one row per UNIQUE token id: 8 entities + the separator
    assert pq.read_table(micro).num_rows == 9


def test_same_config_gives_the_same_numbers(tiny_run, ray_local, tmp_path):
    config = dict(TINY_SWEEP, models=["tiny-llama"])
    again = run_sweep(parse_config(config), tmp_path)
    first = tiny_run.mi[tiny_run.mi.model == "tiny-llama"].reset_index(drop=True)
    np.testing.assert_allclose(again.mi.mi_bits.to_numpy(), first.mi_bits.to_numpy(), atol=1e-6)


def test_full_context_micro_variant_uses_macro_estimates(ray_local, tmp_path):
    """The reference code's variant: micro term at s = full-context MI at s; no single-token states needed."""
    config = dict(TINY_SWEEP, models=["tiny-gemma"], layers=[2], micro="full_context", positions=[3],
                  readings=["mine"])
    result = run_sweep(parse_config(config), tmp_path)
    assert set(result.mi.level) == {"macro"} and set(result.mi.reading) == {"mine"}
    assert sorted(result.mi.position.unique()) == [0, 1, 2, 3]  # all s <= 3 are needed for IE at 3
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "micro_states" not in manifest["models"]["tiny-gemma"]
    assert len(list((tmp_path / "cache" / "states" / "tiny-gemma").iterdir())) == 1  # the macro cell only
    macro = result.mi.set_index("position").mi_bits
    row = result.ie[result.ie.position == 3].iloc[0]
    assert row.ie_bits == pytest.approx(macro[3] - macro[[0, 1, 2, 3]].mean())


def test_too_few_single_token_entities_is_a_clear_error_before_ray(tmp_path):
    from ie_ray.errors import ConfigError

    config = dict(TINY_SWEEP, models=["tiny-gpt2"], corpora=[{"task": "color", "n_samples": 100,
                                                               "n_entities": 3}], shots=[5])
    with pytest.raises(ConfigError, match=r"fewer than shots k=5.*ie-ray/tiny-bpe|ie-ray/tiny-bpe.*k=5"):
        run_sweep(parse_config(config), tmp_path)
