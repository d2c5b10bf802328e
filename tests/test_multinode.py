"""A sweep on a simulated multi-node Ray cluster: actors spread over nodes, one model load per actor, and the
same numbers as a single-node run of the same config.

The cluster (ray.cluster_utils.Cluster: a head and two worker nodes, each worker declaring one unit of the
custom resource `extract_slot`) runs in a subprocess (tests/multinode_sweep.py), because a second Ray in the
pytest process would clash with the session's in-process Ray. Asking one `extract_slot` per extraction actor
is how a real cluster pins actors to GPU nodes (`num_gpus`), with a resource every CPU machine can simulate.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ie_ray.config import parse_config
from ie_ray.sweep import run_sweep

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SWEEP = {
    "name": "multinode",
    "models": ["tiny-gpt2"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8, "n_samples": 240}],
    "shots": [2],
    "layers": [0, -1],
    "positions": "all",
    "estimator": {"steps": 30, "batch_size": 64, "n_bootstrap": 50},
    "extract": {"batch_size": 40, "concurrency": 2, "num_cpus": 1, "resources": {"extract_slot": 1}},
    "reduce": {"estimators_per_task": 4},
}


@pytest.fixture(scope="module")
def multinode(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multinode")
    config_file = out / "config.json"
    config_file.write_text(json.dumps(SWEEP))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # keeps conftest's Ray auth token
    env["PYTHONPATH"] = str(REPO)
    # Ray Data starts the whole actor pool before it hands out batches, so both actors exist (and register
    # where they run) even when one of them could process every batch alone.
    env["RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S"] = "300"
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "multinode_sweep.py"), str(config_file), str(out)],
                          env=env, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, (proc.stdout[-2000:] + proc.stderr[-4000:])
    return out


@pytest.fixture(scope="module")
def placement(multinode) -> dict:
    return json.loads((multinode / "placement.json").read_text())


def test_the_cluster_had_a_head_and_two_slotted_workers(placement):
    slots = sorted(res.get("extract_slot", 0) for res in placement["nodes"].values())
    assert slots == [0, 1, 1]
    assert placement["head_node_id"] not in placement["worker_node_ids"]


def test_one_actor_pool_per_model_with_actors_on_different_nodes(placement):
    (extraction,) = placement["extractions"]  # macro cell + micro states: one pool, not one per shard
    assert len(extraction["shards"]) == 2
    actors = extraction["actors"]
    assert len(actors) == SWEEP["extract"]["concurrency"]
    assert sorted(a["node_id"] for a in actors) == sorted(placement["worker_node_ids"])  # one per worker node
    assert all(a["loads"] == 1 for a in actors)  # each actor loaded its model exactly once
    assert len({(a["node_id"], a["pid"]) for a in actors}) == len(actors)
    unique_tokens = 8 + 1  # entities + the separator
    assert sum(a["rows"] for a in actors) == SWEEP["corpora"][0]["n_samples"] + unique_tokens


def test_results_equal_a_single_node_run(multinode, ray_local, tmp_path):
    single = dict(SWEEP, extract=dict(SWEEP["extract"], concurrency=1, resources={}))
    reference = run_sweep(parse_config(single), tmp_path / "single")
    keys = ["model", "corpus", "shots", "layer", "position", "level", "seed"]
    multi_mi = pd.read_parquet(multinode / "run" / "mi.parquet").sort_values(keys).reset_index(drop=True)
    single_mi = reference.mi.sort_values(keys).reset_index(drop=True)
    assert len(multi_mi) == len(single_mi) > 0
    pd.testing.assert_frame_equal(multi_mi[keys], single_mi[keys])
    np.testing.assert_allclose(multi_mi.mi_bits.to_numpy(), single_mi.mi_bits.to_numpy(), atol=1e-6)
    multi_ie = pd.read_parquet(multinode / "run" / "ie.parquet")
    np.testing.assert_allclose(multi_ie.ie_bits.to_numpy(), reference.ie.ie_bits.to_numpy(), atol=1e-6)
