"""Readings are pluggable: a fourth reading is one class and one registry entry, and then flows through config
validation, the scheduler, the cache and the IE tables like the built-in ones. Also: the states of a layer are
deleted once its readings are cached (unless kept), extraction runs in passes that fit the disk budget, and a
rerun reuses every cached row without reading a state."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ie_ray import store
from ie_ray.config import parse_config
from ie_ray.errors import ConfigError
from ie_ray.reduce import MIRow, Reading, reading_names, register_reading, table_prefixes, unregister_reading
from ie_ray.sweep import layer_passes, run_sweep


class InputNormReading(Reading):
    """The example of the docs: the mean norm of the block input (not an MI; a shape check of the protocol).
    Its expected value is computed independently below from the stored states."""

    name = "input_norm"
    section = "input_norm"
    table_prefix = "ie_norm"
    sources = ()
    exact = True

    @classmethod
    def from_config(cls, config):
        return cls()

    def key_dict(self):
        return {}

    def fit_layer(self, states, jobs):
        return [MIRow.for_job(job, self.name, mi_bits=float(np.linalg.norm(states.pair(job)[0], axis=1).mean()),
                              bootstrap_bits=np.zeros(1)) for job in jobs]


@pytest.fixture()
def example_reading():
    import ray.cloudpickle

    register_reading(InputNormReading)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    yield InputNormReading
    unregister_reading(InputNormReading.name)
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


SWEEP = {
    "name": "tiny-fourth-reading",
    "models": ["tiny-llama"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8, "n_samples": 120}],
    "shots": [2],
    "layers": [0, 1, 3],
    "positions": "all",
    "readings": ["entropy_limit", "input_norm"],
    "extract": {"batch_size": 60, "keep_states": True},
}


def test_a_fourth_reading_is_one_class_and_one_registry_entry(example_reading, ray_local, tmp_path):
    assert reading_names()[:3] == ("smoothed", "entropy_limit", "mine") and "input_norm" in reading_names()
    assert table_prefixes()["input_norm"] == "ie_norm"
    result = run_sweep(parse_config(SWEEP), tmp_path / "run", cache_dir=tmp_path / "cache")
    rows = result.mi[result.mi.reading == "input_norm"]
    assert len(rows) == 3 * (4 + 4)  # 3 layers x (4 macro + 4 micro positions)
    assert "ie_norm_bits" in result.ie.columns and "ie_limit_bits" in result.ie.columns
    # the value is what the class computes from the stored states, and IE is macro - mean micro of it
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    _, pre, _ = store.read_layer_states(Path(manifest["corpora"]["tiny-llama/icl-country-2shot"]["states"]), 1)
    macro = rows[(rows.layer == 1) & (rows.level == "macro")].set_index("position").mi_bits
    assert macro[2] == pytest.approx(np.linalg.norm(pre[:, 2].astype(np.float64), axis=1).mean(), rel=1e-5)
    with pytest.raises(ConfigError, match="input_normm"):
        parse_config({**SWEEP, "readings": ["input_normm"]})


def test_states_are_deleted_when_their_readings_are_cached_and_a_rerun_reads_none(ray_local, tmp_path):
    config = {**SWEEP, "readings": ["entropy_limit"], "extract": {"batch_size": 60},
              "smoothed": {"n_draws": 100, "n_bootstrap": 5}}
    first = run_sweep(parse_config(config), tmp_path / "run", cache_dir=tmp_path / "cache")
    states = list((tmp_path / "cache" / "states").rglob("*.parquet"))
    assert states == []  # every layer's readings are cached: its states are gone
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["usage"]["peak_states_disk_bytes"] > 0 and manifest["usage"]["peak_memory_bytes"] > 0
    again = run_sweep(parse_config(config), tmp_path / "run", cache_dir=tmp_path / "cache")
    shards = pd.read_csv(tmp_path / "run" / "shards.csv")
    assert (shards.status == "reused").all() and "extraction_streams" not in set(shards.kind)
    pd.testing.assert_frame_equal(first.mi, again.mi)


def test_extraction_passes_fit_the_disk_budget(ray_local, tmp_path, capsys):
    # one residual stream of this cell is 120 x 4 x 64 x 4 bytes (+ micro); a block reads two. A budget of 2.5
    # streams forces one block per pass: 3 passes for blocks 0, 1, 3, with stream 1 kept from the first to the
    # second, so at most 2 streams are ever on disk (4 with both levels' files counted as one stream's bytes)
    per_stream = (120 * 4 + 9) * 64 * 4
    config = {**SWEEP, "readings": ["entropy_limit"],
              "extract": {"batch_size": 60, "max_states_gb": 2.5 * per_stream / 1024**3}}
    # states an interrupted run left under an older code version: named, kept, and not this run's peak
    stale = tmp_path / "cache" / "states" / "tiny-llama" / ("0" * 24) / "stream=3"
    stale.mkdir(parents=True)
    (stale / "part-0.parquet").write_bytes(b"\0" * 10 * per_stream)
    result = run_sweep(parse_config(config), tmp_path / "run", cache_dir=tmp_path / "cache")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert 0 < manifest["usage"]["peak_states_disk_bytes"] <= 2 * per_stream * 1.2  # + parquet overhead
    out = capsys.readouterr().out
    assert "3 layers in 3 extraction passes" in out
    assert manifest["untracked_states_bytes"] == {str(stale.parent): 10 * per_stream}
    assert f"holds {store.human_bytes(10 * per_stream)} of block states this run does not read ({stale.parent})" in out
    assert (stale / "part-0.parquet").is_file()
    unbounded = run_sweep(parse_config({**config, "extract": {"batch_size": 60}}), tmp_path / "run2",
                          cache_dir=tmp_path / "cache2")
    pd.testing.assert_frame_equal(result.mi.drop(columns=["wall_s"]), unbounded.mi.drop(columns=["wall_s"]))


@pytest.mark.parametrize(("layers", "per_stream", "budget", "expected"), [
    ([3, 0, 1, 2], 10.0, 35.0, [[0, 1], [2, 3]]),  # 3 streams a pass: blocks 0-1 are streams 0, 1, 2
    ([3, 0, 1, 2], 10.0, 25.0, [[0], [1], [2], [3]]),
    ([0, 1, 2], 10.0, None, [[0, 1, 2]]),
    ([0, 1, 2], 10.0, 5.0, [[0], [1], [2]]),  # a block larger than the budget still gets a pass of its own
    ([0, 3, 4], 10.0, 30.0, [[0], [3, 4]]),  # sparse blocks share no stream: 0 is 2 streams, 3-4 are 3
    ([], 10.0, 25.0, []),
])
def test_layer_passes(layers, per_stream, budget, expected):
    assert layer_passes(layers, per_stream, budget) == expected
