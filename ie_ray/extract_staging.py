"""The staging directory of one extraction pass, and what a killed pass left in it that a rerun can keep.

Why this exists: an extraction pass of a 20,000-sequence run writes its states for 15-30 minutes on a CPU. Ray Data
writes them block by block into a staging directory (partitioned by shard and stream) and the pass moves them into
each cell's directory only at its end. A pass killed on the way (a session that ends, a driver that is stopped, a
lost head node) used to leave its staging directory behind under a random name: the rerun started the pass from
its first sample and the orphan held its gigabytes beyond the run's disk bound (5 GiB on the Gemma 3 ICL run).

Here a pass's staging directory is named by the content of the pass (model, shards, positions, streams, storage
dtype), so the rerun of the same pass finds it, and `salvage` keeps exactly the samples that a killed pass wrote
for *every* stream of their shard, in files that read back whole. Everything else is deleted: a truncated file, a
file holding any sample missing from another stream of the same shard (its rows would be written again, twice),
or a directory that belongs to no pass of this run. The rerun extracts only the samples left, into the same
directory, and the sealing step (`ie_ray.cache.CellStates.seal_streams`) still checks that every stream holds
every sample exactly once before a reducer may read it.

A staging directory names its owner (host and process) in `OWNER_FILE`; one whose owner is alive on this host is
another sweep's pass in progress and is never touched (the rerun stops with an error naming it instead).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ie_ray.cache import content_key
from ie_ray.errors import ConfigError
from ie_ray.store import state_files

__all__ = ["OWNER_FILE", "PREFIX", "claim", "clear_orphans", "salvage", "staging_dir"]

PREFIX = ".staging-"
OWNER_FILE = "_owner.json"


def staging_dir(parent: Path, model: Any, shards: Sequence[Any], store_dtype: str) -> Path:
    """The staging directory of one pass: the same for a rerun of the same pass, another for any other pass.
    `shards` are `ie_ray.extract.StateShard`s (their sample ids, positions, streams and target directories)."""
    parts: list[Any] = [str(model), store_dtype]
    for shard in shards:
        ids = np.asarray(shard.table.column("sample_id").to_numpy(), dtype=np.int64)
        parts += [str(shard.out_dir), list(map(int, shard.positions)), list(map(int, shard.streams)), ids]
    return Path(parent) / f"{PREFIX}{content_key(*parts)[:16]}"


def _owner(directory: Path) -> dict | None:
    try:
        return json.loads((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _alive(owner: dict | None) -> bool | None:
    """True / False: the owning process runs / has ended; None: it ran on another host, which cannot be asked."""
    if owner is None:
        return False  # written before owners were recorded, or by a pass killed before it wrote its owner
    if owner.get("host") != socket.gethostname():
        return None
    pid = int(owner.get("pid", -1))
    if pid == os.getpid():
        return False  # this process: an earlier pass of ours that raised, not a concurrent one
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refuse_if_owned(directory: Path) -> None:
    owner = _owner(directory)
    alive = _alive(owner)
    if alive is False:
        return
    who = f"process {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
    state = "is running" if alive else "may still be running (another host: it cannot be checked from here)"
    raise ConfigError(f"{directory} is the staging directory of an extraction pass whose owner, {who}, {state}: "
                      "two sweeps extracting into one cache would corrupt each other's states. Wait for that sweep "
                      "or give this one another --cache-dir; if that sweep is known to have ended, delete the "
                      "directory's _owner.json and rerun (its finished samples are kept)")


def clear_orphans(parent: Path, keep: Path) -> list[Path]:
    """Delete the staging directories under `parent` other than `keep` whose owner has ended (a killed pass of
    other streams, or of an older layout): nothing will ever read them. Returns what was deleted."""
    removed: list[Path] = []
    if not Path(parent).is_dir():
        return removed
    for directory in sorted(Path(parent).glob(f"{PREFIX}*")):
        if directory == Path(keep) or not directory.is_dir() or _alive(_owner(directory)) is not False:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def claim(directory: Path) -> None:
    """Make `directory` this process's staging directory (refused while another live sweep owns it)."""
    directory = Path(directory)
    if directory.exists():
        _refuse_if_owned(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{OWNER_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    os.replace(tmp, directory / OWNER_FILE)


def _ids_of(path: Path) -> np.ndarray | None:
    """The sample ids a state file holds; None when it does not read back whole (the pass died writing it)."""
    try:
        return pq.read_table(path, columns=["sample_id"]).column("sample_id").to_numpy()
    except (pa.ArrowException, OSError, ValueError):  # a truncated footer: ArrowInvalid, OSError, ...
        return None


def salvage(directory: Path, shards: Sequence[Any]) -> list[np.ndarray]:
    """Per shard, the sorted sample ids that `directory` already holds for every one of the shard's streams,
    once each, after deleting every file that cannot be kept (see the module docstring). A shard whose files
    hold a sample twice in one stream is cleared: which copy to trust cannot be told, so it is extracted again."""
    directory = Path(directory)
    done: list[np.ndarray] = []
    for index, shard in enumerate(shards):
        root = directory / f"shard={index}"
        wanted = np.asarray(shard.table.column("sample_id").to_numpy(), dtype=np.int64)
        streams = [int(s) for s in shard.streams]
        for stray in (d for d in root.glob("stream=*") if d.is_dir()):
            if int(stray.name.split("=", 1)[1]) not in streams:
                shutil.rmtree(stray, ignore_errors=True)
        held: dict[int, list[tuple[Path, np.ndarray]]] = {}
        for stream in streams:
            held[stream] = []
            for path in state_files(root / f"stream={stream}"):
                ids = _ids_of(path)
                if ids is None:
                    path.unlink(missing_ok=True)
                else:
                    held[stream].append((path, np.asarray(ids, dtype=np.int64)))
        if any(_has_repeats(files) for files in held.values()):
            shutil.rmtree(root, ignore_errors=True)
            done.append(np.empty(0, dtype=np.int64))
            continue
        while True:  # deleting a file can take samples out of the other streams' common set: repeat until stable
            common = wanted
            for files in held.values():
                common = np.intersect1d(common, np.concatenate([ids for _, ids in files]) if files else [])
            partial = {stream: [(p, ids) for p, ids in files if not np.isin(ids, common).all()]
                       for stream, files in held.items()}
            if not any(partial.values()):
                break
            for stream, files in partial.items():
                gone = {path for path, _ in files}
                for path in gone:
                    path.unlink(missing_ok=True)
                held[stream] = [(p, ids) for p, ids in held[stream] if p not in gone]
        done.append(np.asarray(common, dtype=np.int64))
    return done


def _has_repeats(files: list[tuple[Path, np.ndarray]]) -> bool:
    if not files:
        return False
    ids = np.concatenate([ids for _, ids in files])
    return len(np.unique(ids)) != len(ids)
