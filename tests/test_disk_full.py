"""A run directory on a disk that fills: one clear error naming the path and the space needed, no half-written
shard that a rerun would trust, and a rerun with space that recomputes exactly the unfinished shards.

The realistic case runs the sweep on a real, small tmpfs that another writer fills while the sweep runs (the
Parquet writes of Ray Data's workers then hit ENOSPC, as on a shared scratch disk). Mounting needs root; where the
mount is refused that test is skipped with the reason, and the other tests (the free-space check before a pass,
ENOSPC in an atomic write, ENOSPC raised inside a Ray worker) still run: they need no mount.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ie_ray import store, sweep
from ie_ray.cache import MARKER, ShardCache
from ie_ray.config import parse_config
from ie_ray.errors import StorageError
from ie_ray.reduce.row import ROW_ORDER
from ie_ray.sweep import run_sweep

HIDDEN, FLOAT32 = 64, 4  # tiny-gpt2
N_SAMPLES, POSITIONS, UNIQUE_TOKENS = 240, 4, 9  # 8 entities + the separator
STREAM_BYTES = (N_SAMPLES * POSITIONS + UNIQUE_TOKENS) * HIDDEN * FLOAT32  # macro + micro states of one stream
SWEEP = {
    "name": "disk-full",
    "models": ["tiny-gpt2"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8,
                 "n_samples": N_SAMPLES}],
    "shots": [2],
    "layers": [0, 1],
    "positions": "all",
    "readings": ["smoothed", "entropy_limit"],
    # two streams per pass: one block per extraction pass, reduced (and its streams deleted) before the next
    "extract": {"batch_size": 60, "max_states_gb": 2.5 * STREAM_BYTES / 1024**3},
}


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB tmpfs, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=False,
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def _fill(disk: Path, leave: int = 8192) -> Path:
    """Another writer takes all but `leave` bytes of the disk."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, max(store.free_bytes(disk) - leave, 1))
    return ballast


def _trusted_shards(cache: Path) -> tuple[set, set]:
    """What a rerun would trust: sealed streams (each checked: its files hold the rows its marker says) and
    estimate files (each must parse)."""
    streams = set()
    for marker in (cache / "states").rglob(MARKER):
        sealed = json.loads(marker.read_text())
        ids = store.read_stream_ids(marker.parent.parent, sealed["stream"])
        assert len(ids) == len(set(ids)) == sealed["rows"], f"{marker.parent} is sealed but its files disagree"
        streams.add((sealed["key"], sealed["stream"]))
    estimates = {path.stem for path in (cache / "estimates").rglob("*.json")}
    for path in (cache / "estimates").rglob("*.json"):
        json.loads(path.read_text())
    assert not [p for p in cache.rglob("*.tmp")], "a temp file of an atomic write was left behind"
    return streams, estimates


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert not got.duplicated(ROW_ORDER).any()
    got, want = (f.sort_values(ROW_ORDER).reset_index(drop=True).drop(columns="wall_s") for f in (got, want))
    pd.testing.assert_frame_equal(got, want, check_exact=True)


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_fails_clearly_and_the_rerun_redoes_only_the_unfinished(
        small_disk, ray_local, tmp_path, monkeypatch, capfd):
    config = parse_config(SWEEP)
    run_dir = small_disk / "run"
    real_extract = sweep.extract_shards
    calls = []

    def disk_fills_during_the_second_pass(*args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 2:  # after the pass's free-space check passed: someone else fills the disk
            _fill(small_disk)
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(sweep, "extract_shards", disk_fills_during_the_second_pass)
    with pytest.raises(StorageError) as failure:
        run_sweep(config, run_dir)
    message = str(failure.value)
    with capfd.disabled():  # what the user reads (docs/resuming-and-faults.md quotes it); pytest -s shows it
        print(f"ie-ray: error: {message}")
    assert str(run_dir / "cache" / "states") in message and "needs ~" in message and " free" in message
    assert "extracting 2 residual streams of tiny-gpt2" in message  # stream 2, macro and micro (1 is sealed)
    assert not (run_dir / "mi.parquet").exists()
    assert "Logging error" not in capfd.readouterr().err  # ray.log on the full disk drops records quietly
    sealed, estimates = _trusted_shards(run_dir / "cache")
    assert len(sealed) == 2 and len(estimates) == 2  # stream 1 (block 0's output, block 1's input); block 0 read
    unsealed = [d for d in (run_dir / "cache" / "states").rglob("stream=*") if not (d / MARKER).is_file()]
    assert not unsealed, "the failed pass left unsealed stream directories filling the disk"

    monkeypatch.setattr(sweep, "extract_shards", real_extract)
    (small_disk / "ballast").unlink()
    resumed = run_sweep(config, run_dir)
    log = pd.read_parquet(run_dir / "shards.parquet")
    reused = log[log.status == "reused"]
    assert set(reused[reused.kind == "estimates"].key) == estimates
    computed = log[log.status == "computed"]
    extracted = {(key, int(stream)) for key, stream in
                 computed[computed.kind == "extraction_streams"][["key", "stream"]].itertuples(index=False)}
    assert {s for _, s in extracted} == {2} and len(extracted) == 2  # macro and micro; stream 1 was sealed
    assert not extracted & sealed and not set(computed.key) & estimates  # nothing finished is done twice
    undisturbed = run_sweep(config, tmp_path / "undisturbed")
    _same_rows(resumed.mi, undisturbed.mi)
    pd.testing.assert_frame_equal(resumed.ie, undisturbed.ie, check_exact=True)


def test_a_pass_that_cannot_fit_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    free = int(1.5 * STREAM_BYTES)  # less than the first pass's two streams
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: SimpleNamespace(total=10 * free, used=9 * free, free=free))
    monkeypatch.setattr(sweep, "extract_shards", lambda *a, **k: pytest.fail("extraction started on a full disk"))
    with pytest.raises(StorageError) as failure:
        run_sweep(parse_config(SWEEP), tmp_path)
    message = str(failure.value)
    need = sweep.STATE_FILE_OVERHEAD * 2 * STREAM_BYTES
    assert f"needs ~{store.human_bytes(need)} under {tmp_path / 'cache' / 'states'}" in message
    assert f"which has {store.human_bytes(free)} free" in message and need > free
    assert "--cache-dir" in message and "extract.max_states_gb" in message and "rerun" in message


def test_enospc_in_an_atomic_write_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "estimates" / "ke" / "key.json"  # estimates/<first two characters of the key>/

    def half_then_full(self, text, encoding=None):
        with open(self, "w", encoding=encoding) as handle:
            handle.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(StorageError) as failure:
        ShardCache(tmp_path).save_estimate("key", {"rows": [1.0] * 100})
    size = len(json.dumps({"rows": [1.0] * 100}, sort_keys=True)) + 1
    assert f"writing key.json needs ~{size} bytes under {target.parent}" in str(failure.value)
    assert isinstance(failure.value.__cause__, OSError) and failure.value.__cause__.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []  # no half file, no temp file: a rerun refits the estimate


def test_enospc_raised_in_a_ray_worker_is_recognised(ray_local):
    def write_on_a_full_disk():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/scratch/states/part-0.parquet")

    with pytest.raises(Exception) as failure:
        ray_local.get(ray_local.remote(write_on_a_full_disk).options(max_retries=0).remote())
    assert store.is_out_of_space(failure.value)
    assert not store.is_out_of_space(RuntimeError("some other failure"))


class _Stop(Exception):
    """Ends a fake extraction pass where the test has seen what it needs."""


def test_a_resumed_pass_counts_only_what_it_still_has_to_write(ray_local, tmp_path, monkeypatch):
    """An interrupted pass's staging files stay on disk and the rerun keeps them: the free-space check must not
    count them twice, or a resume that fits on a nearly full disk would be refused."""
    from ie_ray.extract_staging import staging_dir

    seen = []

    def interrupted_pass(shards, model, settings):  # writes what an interrupted pass leaves, where extract.py would
        staging = staging_dir(shards[0].out_dir.parent, model, shards, settings.store_dtype)
        staging.mkdir(parents=True)
        (staging / "part-0.parquet").write_bytes(b"\0" * STREAM_BYTES)
        seen.append(staging)
        raise _Stop

    monkeypatch.setattr(sweep, "extract_shards", interrupted_pass)
    with pytest.raises(_Stop):
        run_sweep(parse_config(SWEEP), tmp_path)
    # the pass needs 2.2 streams; 1.5 are free and 1 is written already: the rerun fits
    free = int(1.5 * STREAM_BYTES)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: SimpleNamespace(total=10 * free, used=9 * free, free=free))
    resumed = []

    def resumed_pass(shards, model, settings):
        resumed.append(staging_dir(shards[0].out_dir.parent, model, shards, settings.store_dtype))
        raise _Stop

    monkeypatch.setattr(sweep, "extract_shards", resumed_pass)
    with pytest.raises(_Stop):
        run_sweep(parse_config(SWEEP), tmp_path)
    assert resumed == seen  # the same pass, so the same staging directory
    shutil.rmtree(seen[0])  # without the interrupted pass's files the same check refuses the pass
    with pytest.raises(StorageError):
        run_sweep(parse_config(SWEEP), tmp_path)
