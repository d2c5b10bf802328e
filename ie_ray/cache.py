"""Content-addressed cache of finished shards, so a rerun after a crash (or after a config edit) redoes only
what is missing or changed.

Two kinds of shard:
- an extraction shard is (model, corpus cell, residual stream): the states of one stream (block s's input,
  block s - 1's output) for every sample of one (corpus, shots) cell. Its directory is named by a key over
  everything that determines its bytes: the model's exact weights (ModelInfo.revision is the GGUF sha256 or the
  hub commit), the token ids, the extracted positions, the stored dtype and the source of the code that
  produces states. A stream is finished when its `_COMPLETE.json` marker exists; the marker is written only
  after the files were read back and hold exactly the expected sample ids, so a truncated or duplicated write
  is detected and redone.
- an estimate shard is the output of one reading task (`ie_ray/reduce/row_cache.py`: some jobs of one layer
  under one reading). Its key adds the reading's settings and source; its rows (bootstrap replicates included)
  are one JSON file written atomically the moment its Ray task returns, so a killed driver loses only tasks
  still in flight.

Why source hashes and not the git commit: a README commit must not invalidate hours of GPU work, and an
installed package has no git. Why JSON for estimate rows: `repr` of a float round-trips exactly, and the
files are small and human-readable; nothing in the cache is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ie_ray import store

PACKAGE_ROOT = Path(__file__).resolve().parent
# Modules whose source determines the bytes of each kind of shard.
EXTRACTION_SOURCES = ("capture.py", "extract.py", "models.py")
MARKER = "_COMPLETE.json"  # leading underscore: pyarrow's dataset reader skips it


@cache
def code_version(sources: tuple[str, ...]) -> str:
    """sha256 over the source files (or package directories) that produce a kind of shard."""
    digest = hashlib.sha256()
    for name in sources:
        path = PACKAGE_ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(PACKAGE_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def content_key(*parts: Any) -> str:
    """Stable hex key over JSON-able parts and numpy arrays (hashed by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"ndarray:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True)
class CellStates:
    """Where one cell's residual-stream states live in the cache, and which streams are finished.

    Block l reads stream l and writes stream l + 1 (`capture.py`), so a block's states are complete when both
    streams are sealed, and neighbouring blocks share a stream."""

    directory: Path
    key: str

    def stream_dir(self, stream: int) -> Path:
        return self.directory / f"stream={stream}"

    def is_complete(self, stream: int) -> bool:
        return (self.stream_dir(stream) / MARKER).is_file()

    def missing_streams(self, streams: Iterable[int]) -> list[int]:
        return [stream for stream in streams if not self.is_complete(stream)]

    def clear_streams(self, streams: Iterable[int]) -> None:
        """Remove stream directories: unfinished ones before they are recomputed (a crash may have left files),
        finished ones once no reading needs them."""
        for stream in streams:
            shutil.rmtree(self.stream_dir(stream), ignore_errors=True)

    def seal_streams(self, streams: Iterable[int], expected_ids: np.ndarray) -> None:
        """Write each stream's marker after checking that its files hold every expected sample exactly once."""
        expected = np.sort(np.asarray(expected_ids))
        for stream in streams:
            ids = np.sort(store.read_stream_ids(self.directory, stream))
            if len(ids) != len(expected) or not np.array_equal(ids, expected):
                raise RuntimeError(
                    f"extraction of residual stream {stream} into {self.directory} wrote {len(ids)} rows for "
                    f"{len(expected)} samples ({len(np.unique(ids))} distinct ids); refusing to mark it finished"
                )
            store.write_json(self.stream_dir(stream) / MARKER, dict(key=self.key, stream=stream, rows=len(ids)))


class ShardCache:
    """The cache root: `states/<model>/<cell key>/stream=<s>/` and `estimates/<kk>/<key>.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.reused: dict[str, int] = {"extraction_streams": 0, "estimates": 0}
        self.computed: dict[str, int] = {"extraction_streams": 0, "estimates": 0}
        self.log: list[dict] = []  # one row per shard touched by this run: which were reused, which computed

    def record(self, kind: str, status: str, key: str, **where: Any) -> None:
        """Count a shard as reused or computed and remember which one it was (for the run's shards table)."""
        counts = self.reused if status == "reused" else self.computed
        counts[kind] += 1
        self.log.append(dict(kind=kind, status=status, key=key, **where))

    def cell_states(
        self, model_fingerprint: dict, input_ids: np.ndarray, positions: list[int], store_dtype: str
    ) -> CellStates:
        key = content_key(
            "states-v2", code_version(EXTRACTION_SOURCES), model_fingerprint, np.asarray(input_ids, dtype=np.int64),
            list(positions), store_dtype,
        )
        slug = store.safe_name(str(model_fingerprint.get("name", "model")))
        return CellStates(self.root / "states" / slug / key[:24], key)

    def _estimate_path(self, key: str) -> Path:
        return self.root / "estimates" / key[:2] / f"{key}.json"

    def has_estimate(self, key: str) -> bool:
        return self._estimate_path(key).is_file()

    def load_estimate(self, key: str) -> dict | None:
        path = self._estimate_path(key)
        if not path.is_file():
            return None
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # unreadable: recompute rather than trust it
        row["bootstrap_bits"] = np.asarray(row.get("bootstrap_bits", []), dtype=np.float64)
        return row

    def save_estimate(self, key: str, row: dict) -> None:
        serialisable = {k: (v.tolist() if isinstance(v, np.ndarray) else _plain(v)) for k, v in row.items()}
        store.write_text(self._estimate_path(key), json.dumps(serialisable, sort_keys=True) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so JSON keeps full float precision (repr round-trips)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
