"""Resource planning: GPU shares and splits from model size, batch sizes from memory, estimator GPU shares."""
from __future__ import annotations

import pytest

from ie_ray.config import parse_config
from ie_ray.errors import ConfigError
from ie_ray.estimators import MINEParams
from ie_ray.resources import (
    CONTEXT_BYTES,
    GIB,
    MAX_ACTORS_PER_GPU,
    USABLE_FRACTION,
    batch_size_for,
    critic_params,
    estimator_gpus,
    estimator_task_bytes,
    forward_bytes_per_sample,
    micro_batch_size,
    plan_estimator_gpus,
    plan_extract,
    weight_bytes,
)

H100 = 80 * GIB


def test_weight_bytes_follow_the_dtype():
    assert weight_bytes(1_000, "float32") == 4_000
    assert weight_bytes(1_000, "bfloat16") == 2_000
    with pytest.raises(ValueError, match="int8"):
        weight_bytes(1, "int8")


def test_small_models_share_a_gpu_and_get_large_batches():
    plan = plan_extract(124_000_000, 768, 9, "float32", H100)  # GPT-2 small
    assert plan.num_gpus == pytest.approx(1 / MAX_ACTORS_PER_GPU)
    assert plan.device_map is None
    # each actor's share holds its weights, its CUDA context and a batch of this size (with the 2x margin)
    share = USABLE_FRACTION * H100 * plan.num_gpus
    assert plan.weight_bytes + CONTEXT_BYTES + 2 * plan.batch_size * forward_bytes_per_sample(768, 9, "float32") <= share


def test_a_model_that_fits_once_gets_one_whole_gpu():
    plan = plan_extract(13_000_000_000, 5120, 9, "bfloat16", H100)  # 26 GB: fits, but not twice with headroom
    assert plan.num_gpus == 1.0 and plan.device_map is None


def test_a_model_larger_than_one_gpu_is_split_with_a_device_map():
    plan = plan_extract(70_000_000_000, 8192, 9, "bfloat16", H100)  # 140 GB of weights
    assert plan.device_map == "auto"
    assert plan.num_gpus in (2.0, 4.0, 8.0)
    assert plan.num_gpus * USABLE_FRACTION * H100 > plan.weight_bytes
    assert plan.batch_size >= 8


def test_a_model_beyond_one_node_is_a_clear_error():
    with pytest.raises(ValueError, match="8 GPUs of one node"):
        plan_extract(405_000_000_000, 16384, 9, "float32", H100)


def test_no_gpu_means_cpu_actors_with_the_cpu_batch_size():
    plan = plan_extract(124_000_000, 768, 9, "float32", None, cpu_batch_size=32)
    assert plan.num_gpus == 0 and plan.batch_size == 32 and plan.device_map is None


def test_batch_size_grows_with_free_memory_and_stays_in_bounds():
    per_sample = forward_bytes_per_sample(4096, 17, "bfloat16")
    small, large = batch_size_for(1 * GIB, per_sample), batch_size_for(20 * GIB, per_sample)
    assert 8 <= small < large <= 4096 and small % 8 == 0
    assert batch_size_for(0, per_sample) == 8  # never below the minimum: the actor splits further if it must
    assert micro_batch_size(1 * GIB, per_sample, requested=10_000) < 10_000
    assert micro_batch_size(10**15, per_sample, requested=64) == 64
    assert micro_batch_size(0, per_sample, requested=64) == 1


def test_critic_size_matches_the_paper_funnel():
    # PAPER.md: the 1536 -> 768 -> ... -> 3 -> 1 funnel has about 1.57M parameters
    assert critic_params(768, 10, 1) == pytest.approx(1.57e6, rel=0.01)


def test_estimator_tasks_take_a_fraction_of_a_gpu():
    params = MINEParams()
    task = estimator_task_bytes(8, 2000, 576, params.n_layers, params.min_width, params.batch_size)
    share = plan_estimator_gpus(task, H100)
    assert 0 < share < 1 and (1 / share).is_integer()
    assert plan_estimator_gpus(task, None) == 0.0
    # the paper's full batch (300k pairs, 768 dims, activations of 600k rows kept for backward): 2 estimators
    # (~31 GB) get a half GPU, 4 (~62 GB) a whole one, 8 do not fit one and the error says what to lower
    paper = MINEParams.paper()
    assert plan_estimator_gpus(estimator_task_bytes(2, 300_000, 768, paper.n_layers, paper.min_width, None), H100) == 0.5
    assert plan_estimator_gpus(estimator_task_bytes(4, 300_000, 768, paper.n_layers, paper.min_width, None), H100) == 1.0
    with pytest.raises(ValueError, match="estimators_per_task"):
        plan_estimator_gpus(estimator_task_bytes(8, 300_000, 768, paper.n_layers, paper.min_width, None), H100)


def test_estimator_gpus_auto_reads_the_gpu_memory_override(monkeypatch):
    monkeypatch.setenv("IE_RAY_GPU_MEMORY_GB", "80")
    share = estimator_gpus("auto", MINEParams(), 8, 2000, 576)
    assert 0 < share <= 1
    assert estimator_gpus(0.5, MINEParams(), 8, 2000, 576) == 0.5


def test_config_accepts_auto_and_rejects_bad_resources():
    base = {"models": ["tiny-gpt2"], "corpora": [{"task": "country", "n_samples": 400}]}
    config = parse_config({**base, "extract": {"num_gpus": "auto", "batch_size": "auto", "resources": {"gpu_node": 1}},
                           "reduce": {"num_gpus_per_task": "auto"}})
    assert config.extract.num_gpus == "auto" and config.extract.resources == {"gpu_node": 1}
    for bad in ({"num_gpus": "many"}, {"num_gpus": -1}, {"batch_size": "big"}, {"resources": {"gpu_node": 0}}):
        with pytest.raises(ConfigError, match="extract"):
            parse_config({**base, "extract": bad})


SPILL_SCRIPT = """
import os
from pathlib import Path

import numpy as np
import ray

from ie_ray.sweep import init_ray

init_ray(num_cpus=1)
store = ray.cluster_resources()["object_store_memory"]
refs = [ray.put(np.full(40 * 2**20, i, dtype=np.uint8)) for i in range(4)]  # 160 MB through a 100 MB store
spilled = sum(f.stat().st_size for f in Path(os.environ["IE_RAY_SPILL_DIR"]).rglob("*") if f.is_file())
assert all(int(ray.get(ref)[0]) == i for i, ref in enumerate(refs))
print(store, spilled)
"""


@pytest.mark.slow
def test_in_process_ray_takes_its_object_store_size_and_spill_directory_from_the_environment(tmp_path):
    """Block states flow through the object store; when they outgrow it, Ray must spill where we said."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # keeps conftest's Ray auth token
    env.update(PYTHONPATH=str(repo), IE_RAY_OBJECT_STORE_GB="0.1", IE_RAY_SPILL_DIR=str(tmp_path / "spill"))
    proc = subprocess.run([sys.executable, "-c", SPILL_SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store, spilled = map(float, proc.stdout.split()[-2:])
    assert store == pytest.approx(0.1 * GIB, rel=0.01)
    assert spilled >= 40 * 2**20  # at least one 40 MB object went to our directory
