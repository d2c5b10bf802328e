"""The run directory: where every artefact of a sweep lives, written atomically, read back by layer.

Layout of a run directory:
    config.yaml, manifest.json, mi.parquet, ie.parquet, ie.csv, layers.csv, models.csv, report.md, ie_*.png
    states/<model>/<corpus>/<shots>shot/{macro,micro}/layer=<l>/*.parquet   (block states, tensor columns)
    corpora/<model>/<corpus>-<shots>shot.parquet                          (token ids + text)
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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


def _atomic(path: Path, write) -> None:
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
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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


def read_layer_states(states_dir: Path, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample_id, resid_pre, resid_post) of one layer, sorted by sample id; states are float32 (N, P, H).

    Files are read one by one, not as one dataset: when a Ray Data block mixed rows of cells with different
    numbers of positions, Ray stores that block's states as a *variable-shaped* tensor column, and Arrow refuses
    to unify it with the fixed-shape files of the same layer. Per file, both types convert to dense arrays.
    """
    import ray.data  # noqa: F401  (registers Ray's Arrow tensor extension types for reading)

    layer_dir = states_dir / f"layer={layer}"
    files = sorted(f for f in layer_dir.rglob("*.parquet") if not f.name.startswith((".", "_")))
    if not files:
        raise FileNotFoundError(f"no extracted states for layer {layer} under {states_dir}")
    parts = [pq.read_table(f, columns=["sample_id", "resid_pre", "resid_post"]) for f in files]
    parts = [t for t in parts if t.num_rows]
    ids = np.concatenate([t.column("sample_id").to_numpy() for t in parts])
    order = np.argsort(ids, kind="stable")
    pre = np.concatenate([_tensor_to_numpy(t.column("resid_pre")) for t in parts])[order]
    post = np.concatenate([_tensor_to_numpy(t.column("resid_post")) for t in parts])[order]
    return ids[order], pre.astype(np.float32, copy=False), post.astype(np.float32, copy=False)
