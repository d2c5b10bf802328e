"""A killed extraction pass costs only what was in flight: its rerun keeps every sample written for all of its
shard's streams, deletes what cannot be trusted, extracts the rest, and ends with the states of an undisturbed pass.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ie_ray import store
from ie_ray.config import ExtractConfig
from ie_ray.corpora.icl import build_icl_corpus
from ie_ray.corpora.tokenizers import tiny_tokenizer
from ie_ray.errors import ConfigError
from ie_ray.extract import StateShard, extract_states
from ie_ray.extract_staging import OWNER_FILE, PREFIX, claim, clear_orphans, salvage, staging_dir
from ie_ray.models import ModelSpec


def _shard(ids, streams=(0, 1), out_dir="cell"):
    return SimpleNamespace(table=pa.table({"sample_id": np.asarray(ids, dtype=np.int64)}), positions=[0, 1],
                           streams=list(streams), out_dir=Path(out_dir))


def _file(staging: Path, shard: int, stream: int, name: str, ids) -> Path:
    path = staging / f"shard={shard}" / f"stream={stream}" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"sample_id": np.asarray(ids, dtype=np.int64),
                             "resid": np.zeros(len(ids), dtype=np.float32)}), path)
    return path


def _left(staging: Path) -> set[str]:
    return {str(p.relative_to(staging)) for p in staging.rglob("*.parquet")}


def test_salvage_keeps_the_samples_of_every_stream_and_deletes_the_rest(tmp_path):
    staging = tmp_path / "staging"
    _file(staging, 0, 0, "a", range(10))
    _file(staging, 0, 0, "b", range(10, 20))  # stream 1 never got 10-19: would be written twice
    _file(staging, 0, 1, "a", range(10))
    torn = staging / "shard=0" / "stream=1" / "torn.parquet"
    torn.write_bytes(b"PAR1 the pass died here")
    done = salvage(staging, [_shard(range(30))])
    np.testing.assert_array_equal(done[0], np.arange(10))
    assert _left(staging) == {"shard=0/stream=0/a.parquet", "shard=0/stream=1/a.parquet"}


def test_salvage_repeats_until_no_file_holds_a_sample_another_stream_lacks(tmp_path):
    staging = tmp_path / "staging"
    _file(staging, 0, 0, "a", [0, 1])
    _file(staging, 0, 0, "d", [2, 3])
    _file(staging, 0, 1, "b", [0, 1])
    _file(staging, 0, 1, "c", [2, 3, 4])  # 4 is in no stream-0 file: c goes, so 2 and 3 leave stream 1, so d goes
    done = salvage(staging, [_shard(range(5))])
    np.testing.assert_array_equal(done[0], [0, 1])
    assert _left(staging) == {"shard=0/stream=0/a.parquet", "shard=0/stream=1/b.parquet"}


def test_salvage_with_one_empty_stream_keeps_nothing(tmp_path):
    staging = tmp_path / "staging"
    _file(staging, 0, 0, "a", range(8))
    assert len(salvage(staging, [_shard(range(8))])[0]) == 0
    assert _left(staging) == set()


def test_salvage_clears_a_shard_with_a_repeated_sample_and_strays(tmp_path):
    staging = tmp_path / "staging"
    _file(staging, 0, 0, "a", [0, 1, 2])
    _file(staging, 0, 0, "b", [2, 3])  # sample 2 twice in one stream: which copy is right cannot be told
    _file(staging, 0, 1, "a", [0, 1, 2, 3])
    _file(staging, 1, 0, "a", [7, 8, 99])  # 99 is not a sample of shard 1
    _file(staging, 1, 1, "a", [7, 8, 99])
    _file(staging, 1, 1, "b", [9])
    _file(staging, 1, 5, "a", [7])  # a stream shard 1 does not extract
    done = salvage(staging, [_shard(range(4)), _shard([7, 8, 9])])
    assert len(done[0]) == 0 and not (staging / "shard=0").exists()
    assert len(done[1]) == 0  # the only file of stream 0 held the stranger 99: deleted, so nothing is common
    assert _left(staging) == set()


def test_salvage_of_a_shard_across_files_of_different_cuts(tmp_path):
    staging = tmp_path / "staging"
    _file(staging, 0, 0, "a", [0, 1, 2, 3])
    _file(staging, 0, 1, "a", [0, 1])
    _file(staging, 0, 1, "b", [2, 3])
    _file(staging, 1, 0, "a", [5])
    _file(staging, 1, 1, "a", [5])
    done = salvage(staging, [_shard(range(6)), _shard([5, 6])])
    np.testing.assert_array_equal(done[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(done[1], [5])
    assert len(_left(staging)) == 5


def test_the_staging_directory_is_named_by_the_pass():
    one = staging_dir(Path("/c"), "m", [_shard(range(4))], "float16")
    assert one == staging_dir(Path("/c"), "m", [_shard(range(4))], "float16")
    assert one.name.startswith(PREFIX) and one.parent == Path("/c")
    others = [staging_dir(Path("/c"), "m", [_shard(range(4), streams=(0, 2))], "float16"),
              staging_dir(Path("/c"), "m", [_shard(range(5))], "float16"),
              staging_dir(Path("/c"), "m", [_shard(range(4), out_dir="other")], "float16"),
              staging_dir(Path("/c"), "m2", [_shard(range(4))], "float16"),
              staging_dir(Path("/c"), "m", [_shard(range(4))], "float32")]
    assert len({one, *others}) == 6


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _owned_by(directory: Path, pid: int, host: str | None = None) -> Path:
    import socket

    directory.mkdir(parents=True)
    (directory / OWNER_FILE).write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid}))
    return directory


def test_a_pass_owned_by_a_live_sweep_is_never_touched(tmp_path, live_process):
    live = _owned_by(tmp_path / f"{PREFIX}live", live_process)
    _file(live, 0, 0, "a", [0])
    with pytest.raises(ConfigError, match=f"process {live_process}.*is running.*--cache-dir"):
        claim(live)
    elsewhere = _owned_by(tmp_path / f"{PREFIX}elsewhere", 1, host="another-host")
    with pytest.raises(ConfigError, match="another host"):
        claim(elsewhere)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    ended = _owned_by(tmp_path / f"{PREFIX}ended", int(dead.stdout))
    ownerless = tmp_path / f"{PREFIX}0123abcd"  # the random names of passes before owners were recorded
    _file(ownerless, 0, 0, "a", [0])
    mine = tmp_path / f"{PREFIX}mine"
    claim(mine)
    claim(mine)  # this process's own earlier pass (one that raised) is resumed, not refused
    assert set(clear_orphans(tmp_path, keep=mine)) == {ended, ownerless}
    assert live.is_dir() and elsewhere.is_dir() and mine.is_dir()
    claim(ended)  # a staging directory whose owner ended is this process's to resume
    assert json.loads((ended / OWNER_FILE).read_text())["pid"] != int(dead.stdout)


def test_a_rerun_keeps_an_interrupted_pass_and_ends_as_an_undisturbed_one(ray_local, one_torch_thread, tmp_path,
                                                                         capsys):
    spec = ModelSpec(name="tiny-gpt2")
    corpus = build_icl_corpus("country", tiny_tokenizer(), shots=2, n_samples=240, seed=0, n_entities=8)
    table = corpus.to_arrow()
    settings = ExtractConfig(batch_size=40)
    layers, positions, streams = [0, 1], [1, 3], [0, 1, 2]
    extract_states(table, spec, layers, positions, settings, tmp_path / "undisturbed")

    # What a pass killed mid-way leaves: all of stream 0's blocks, the first two of streams 1 and 2, a torn file
    target = tmp_path / "resumed"
    shard = StateShard(table.select(["sample_id", "input_ids"]), positions, streams, target)
    staging = staging_dir(tmp_path, spec, [shard], settings.store_dtype)
    # (cut out of the undisturbed pass's files: Ray writes one file per output block, and how many blocks one
    # actor's output makes is Ray's choice; these cuts are 80-sample blocks)
    blocks = [np.arange(0, 80), np.arange(80, 160), np.arange(160, 240)]
    for s in streams:
        (written,) = (tmp_path / "undisturbed" / f"stream={s}").glob("*.parquet")
        states = pq.read_table(written)
        for i, block in enumerate(blocks if s == 0 else blocks[:2]):
            rows = pa.array(np.isin(states.column("sample_id").to_numpy(), block))
            path = staging / "shard=0" / f"stream={s}" / f"block-{i}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(states.filter(rows), path)
    (staging / "shard=0" / "stream=2" / "torn.parquet").write_bytes(b"PAR1")
    orphan = tmp_path / f"{PREFIX}0123abcd"
    orphan.mkdir()
    kept = len(blocks[0]) + len(blocks[1])

    report = extract_states(table, spec, layers, positions, settings, target)
    said = capsys.readouterr().out
    assert f"the states of {kept} of 240 sequences kept from an interrupted pass" in said
    assert sum(actor.rows for actor in report.actors) == 240 - kept  # only the rest went through the model
    assert not staging.exists() and not orphan.exists()
    for layer in layers:
        ids, pre, post = store.read_layer_states(target, layer)
        ids2, pre2, post2 = store.read_layer_states(tmp_path / "undisturbed", layer)
        np.testing.assert_array_equal(ids, np.arange(240))  # every sample exactly once
        np.testing.assert_array_equal(ids, ids2)
        np.testing.assert_allclose(pre, pre2, rtol=0, atol=1e-5)
        np.testing.assert_allclose(post, post2, rtol=0, atol=1e-5)
