"""The run directory: where every artefact of a sweep lives, written atomically, read back by layer.

Layout of a run directory:
    config.yaml, manifest.json, mi.parquet, ie.parquet, ie.csv, layers.csv, models.csv, report.md, ie_*.png
    states/<model>/<corpus>/<shots>shot/{macro,micro}/layer=<l>/*.parquet   (block states, tensor columns)
    corpora/<model>/<corpus>-<shots>shot.parquet                          (token ids + text)
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ie_ray.errors import StorageError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """The user cache (converted models, trained family members); IE_RAY_CACHE overrides ~/.cache/ie_ray."""
    return Path(os.environ.get("IE_RAY_CACHE", Path.home() / ".cache" / "ie_ray")).expanduser()


def runs_root() -> Path:
    """results/runs/ in a checkout, else a user cache (an installed package has no results/ folder)."""
    return REPO_ROOT / "results" / "runs" if (REPO_ROOT / "results").is_dir() else (
        Path.home() / ".cache" / "ie_ray" / "runs"
    )


def run_dir_for(name: str, config_hash: str, base: Path | None = None) -> Path:
    """The default run directory of a config: the same config always maps to the same directory.

    That is what makes "run the same command again" the way to resume a crashed sweep: the rerun finds the
    finished shards in the directory's cache. A changed config gets a new directory.
    """
    path = (base or runs_root()) / f"{safe_name(name)}-{config_hash[:8]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def safe_name(text: str) -> str:
    """File-system-safe slug for model ids like 'org/model' or local paths; never escapes the run dir."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return slug or "unnamed"


def inside(run_dir: Path, *parts: str) -> Path:
    """Join path parts under run_dir and refuse anything that would land outside it."""
    path = (run_dir / Path(*parts)).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise ValueError(f"refusing to write {path}: outside the run directory {run_dir}")
    return path


def _file_mode() -> int:
    """The mode a plain `open()` would give under the process umask (mkstemp alone gives 0600, which hides
    results from the other users of a shared cluster volume)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def free_bytes(path: Path) -> int:
    """Free bytes of the filesystem that holds `path` (or would: its nearest existing ancestor)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human_bytes(n_bytes: float) -> str:
    """'512 bytes', '3.4 KiB', '250.0 MiB', '1.2 GiB'."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def no_room(path: Path, need: float, what: str) -> StorageError:
    """The one out-of-space error, whether a check refused the work or a write failed half-way."""
    needed = f" needs ~{human_bytes(need)}" if need else ""
    return StorageError(
        f"out of disk space: {what}{needed} under {path}, which has {human_bytes(free_bytes(path))} free. Make room there, "
        "or point the shard cache at a larger disk (--cache-dir DIR or IE_RAY_CACHE_DIR), or lower "
        "extract.max_states_gb to extract fewer layers per pass; then rerun the same command: finished shards "
        "are kept and nothing half-written is trusted")


def require_space(path: Path, need: float, what: str) -> None:
    """Refuse `what` before it starts when the filesystem of `path` has less than `need` bytes free."""
    if need > free_bytes(path):
        raise no_room(path, need, what)


def is_out_of_space(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT anywhere in an exception's chain. A write that failed in a Ray worker reaches the driver
    wrapped (RayTaskError keeps the original as `cause`; Ray Data re-raises with the text only), so the text
    counts too."""
    stack: list[object] = [exc]
    seen: set[int] = set()
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(err) for text in ("No space left on device", "Disk quota exceeded")):
            return True
        stack += [err.__cause__, err.__context__, getattr(err, "cause", None)]
    return False


@contextmanager
def room_for(path: Path, need: float, what: str) -> Iterator[None]:
    """Turn running out of space inside the block into the same StorageError a `require_space` check raises."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        if is_out_of_space(exc):
            raise no_room(path, need, what) from exc
        raise


def _atomic(path: Path, write, size: int = 0) -> None:
    with room_for(path.parent, size, f"writing {path.name}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), len(text.encode("utf-8")))


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_table(path: Path, frame: pd.DataFrame, csv: bool = False) -> None:
    """Parquet (and optionally CSV, without array columns) written atomically."""
    _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if csv:
        scalar = frame[[c for c in frame.columns if not isinstance(frame[c].iloc[0] if len(frame) else 0, np.ndarray)]]
        _atomic(path.with_suffix(".csv"), lambda tmp: scalar.to_csv(tmp, index=False, float_format="%.4f"))


def write_arrow(path: Path, table: pa.Table) -> None:
    _atomic(path, lambda tmp: pq.write_table(table, tmp))


def _tensor_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """Ray writes ndarray columns as its Arrow tensor extension type; turn one back into a dense array."""
    chunks = [chunk.to_numpy() if hasattr(chunk.type, "shape") else np.stack(chunk.to_numpy(zero_copy_only=False))
              for chunk in column.chunks]
    return np.concatenate(chunks) if chunks else np.empty((0,))


def state_files(directory: Path) -> list[Path]:
    """The Parquet files of states under `directory`, in a stable order, without the hidden or metadata files
    (`.`/`_` prefixes: temp files of a writer, markers) that are not states."""
    return sorted(f for f in Path(directory).rglob("*.parquet") if not f.name.startswith((".", "_")))


def read_stream_states(states_dir: Path, stream: int,
                       dtype: np.dtype | type | None = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(sample_id, states) of one residual stream, sorted by sample id; states (N, P, H) in `dtype` (None: as
    stored, e.g. float16, half the memory of float32 for a reader that converts what it uses).

    Files are read one by one, not as one dataset: when a Ray Data block mixed rows of cells with different
    numbers of positions, Ray stores that block's states as a *variable-shaped* tensor column, and Arrow refuses
    to unify it with the fixed-shape files of the same stream. Per file, both types convert to dense arrays.
    """
    import ray.data  # noqa: F401  (registers Ray's Arrow tensor extension types for reading)

    stream_dir = states_dir / f"stream={stream}"
    files = state_files(stream_dir)
    if not files:
        raise FileNotFoundError(f"no extracted states for residual stream {stream} under {states_dir}")
    parts = [pq.read_table(f, columns=["sample_id", "resid"]) for f in files]
    parts = [t for t in parts if t.num_rows]
    ids = np.concatenate([t.column("sample_id").to_numpy() for t in parts])
    order = np.argsort(ids, kind="stable")
    states = np.concatenate([_tensor_to_numpy(t.column("resid")) for t in parts])[order]
    return ids[order], states if dtype is None else states.astype(dtype, copy=False)


def read_stream_ids(states_dir: Path, stream: int) -> np.ndarray:
    """The sample ids one stream's files hold, unsorted, without reading the states (sealing checks them)."""
    files = state_files(states_dir / f"stream={stream}")
    if not files:
        raise FileNotFoundError(f"no extracted states for residual stream {stream} under {states_dir}")
    return np.concatenate([pq.read_table(f, columns=["sample_id"]).column("sample_id").to_numpy() for f in files])


StreamReader = Callable[[Path, int], "tuple[np.ndarray, np.ndarray]"]


def read_layer_states(states_dir: Path, layer: int,
                      read_stream: StreamReader | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample_id, resid_pre, resid_post) of block `layer`: residual streams `layer` and `layer + 1`, sorted by
    sample id, float32 (N, P, H). `read_stream` (default `read_stream_states`) lets a caller that walks the
    blocks in order read each shared stream once (`LastStreams`)."""
    read_stream = read_stream or read_stream_states
    ids, pre = read_stream(states_dir, layer)
    post_ids, post = read_stream(states_dir, layer + 1)
    if not np.array_equal(ids, post_ids):
        raise RuntimeError(f"streams {layer} and {layer + 1} under {states_dir} hold different samples "
                           f"({len(ids)} vs {len(post_ids)} rows); delete the directory and rerun to re-extract")
    return ids, pre, post


class LastStreams:
    """A stream reader that remembers the last `size` streams it read. Why: block l's output is block l + 1's
    input, and the reducer opens blocks in order, so each stream would otherwise be read (and converted to
    float32) twice. The arrays it hands out are read-only, because two blocks' states then share them. `dtype`
    as in `read_stream_states`."""

    def __init__(self, size: int = 2, dtype: np.dtype | type | None = np.float32) -> None:
        self.size, self.dtype = size, dtype
        self._held: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, states_dir: Path, stream: int) -> tuple[np.ndarray, np.ndarray]:
        key = (str(states_dir), stream)
        if key not in self._held:
            ids, states = read_stream_states(states_dir, stream, self.dtype)
            states.flags.writeable = False
            self._held[key] = (ids, states)
            while len(self._held) > self.size:
                self._held.pop(next(iter(self._held)))
        return self._held[key]
