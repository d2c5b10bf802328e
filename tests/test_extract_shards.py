"""One extraction actor serving several shards: a batch that mixes shards with different positions and streams
gives each row exactly the states a batch of its own shard gives (no Ray needed: the actor class is called
directly), and the extraction plan falls back to CPU actors when there is no GPU."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from ie_ray.config import ExtractConfig
from ie_ray.extract import BlockStateExtractor, resolve_plan
from ie_ray.models import ModelSpec

SPEC = ModelSpec(name="tiny-llama")


@pytest.fixture(scope="module")
def extractor(one_torch_thread):
    # shard 0: 4-token sequences, positions 0..3, streams 0 and 2; shard 1: single tokens, position 0, stream 3
    return BlockStateExtractor(asdict(SPEC), shard_streams=[[0, 2], [3]], shard_positions=[[0, 1, 2, 3], [0]],
                               store_dtype="float32", device="cpu")


def _batch(shards: list[int], ids: list[list[int]]) -> dict:
    input_ids = np.empty(len(ids), dtype=object)
    input_ids[:] = [np.asarray(i, dtype=np.int64) for i in ids]
    return {"shard": np.asarray(shards), "sample_id": np.arange(len(ids)), "input_ids": input_ids}


def test_a_mixed_batch_equals_one_batch_per_shard(extractor):
    sequences = [[5, 9, 11, 7], [3, 4, 5, 6], [12], [13], [8, 8, 9, 10]]
    shards = [0, 0, 1, 1, 0]
    mixed = extractor(_batch(shards, sequences))
    # rows: shard 0 (3 samples x 2 streams) then shard 1 (2 samples x 1 stream), sample-major within a shard
    assert mixed["shard"].tolist() == [0] * 6 + [1] * 2
    assert mixed["stream"].tolist() == [0, 2, 0, 2, 0, 2, 3, 3]
    assert mixed["sample_id"].tolist() == [0, 0, 1, 1, 4, 4, 2, 3]
    assert [t.shape for t in mixed["resid"]] == [(4, 64)] * 6 + [(1, 64)] * 2  # ragged: Ray stores both
    alone0 = extractor(_batch([0, 0, 0], [sequences[i] for i in (0, 1, 4)]))
    alone1 = extractor(_batch([1, 1], [sequences[i] for i in (2, 3)]))
    np.testing.assert_allclose(np.stack(list(mixed["resid"][:6])), alone0["resid"], atol=1e-6)
    np.testing.assert_allclose(np.stack(list(mixed["resid"][6:])), alone1["resid"], atol=1e-6)
    assert alone0["resid"].dtype == np.float32 and alone0["resid"].shape == (6, 4, 64)
    assert not np.allclose(alone0["resid"][0], alone0["resid"][1])  # stream 0 and stream 2 of one sample


def test_auto_resources_without_a_gpu_mean_cpu_actors(monkeypatch):
    monkeypatch.delenv("IE_RAY_GPU_MEMORY_GB", raising=False)
    plan = resolve_plan(SPEC, ExtractConfig(num_gpus="auto", batch_size="auto"), seq_len=9)
    assert plan.num_gpus == 0 and plan.device_map is None and plan.batch_size == 64
    assert plan.weight_bytes > 0
    fixed = resolve_plan(SPEC, ExtractConfig(num_gpus=2, batch_size=16), seq_len=9)
    assert fixed.num_gpus == 2 and fixed.device_map == "auto" and fixed.batch_size == 16


def test_an_extractor_holding_every_cpu_is_refused_with_the_fix() -> None:
    """The parquet writes of the same pipeline need a CPU: 1 actor x 2 CPUs on a 2-CPU cluster would stall."""
    from ie_ray.config import ExtractConfig
    from ie_ray.errors import ConfigError
    from ie_ray.extract import check_writer_cpu

    with pytest.raises(ConfigError, match="threads: 2"):
        check_writer_cpu(ExtractConfig(num_cpus=2), cluster_cpus=2)
    with pytest.raises(ConfigError, match="hold all 4"):
        check_writer_cpu(ExtractConfig(num_cpus=2, concurrency=2), cluster_cpus=4)
    check_writer_cpu(ExtractConfig(num_cpus=1, threads=2), cluster_cpus=2)
    check_writer_cpu(ExtractConfig(num_cpus=1, concurrency=3), cluster_cpus=4)
