"""Peak memory and disk of a run, for its manifest: what a user must provision to rerun it.

Memory is sampled (every `interval_s`) as the summed proportional set size (PSS) of the driver and all its
descendants (in-process Ray's raylet, object store and workers): a shared page counts once in the sum, split
over the processes that map it. Summed RSS would count the object store once per worker that reads it
(measured on the 20k ICL run: 37.7 GB summed RSS on a 24 GB machine that never swapped). Where PSS cannot be
read (not Linux), RSS is summed and the manifest says so. Disk is the size of the run's own state directories,
measured where it peaks: after each extraction pass.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

GIB = 1024**3


def directory_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                pass  # deleted while walking (a layer's states freed by the reducer)
    return total


def tree_memory_bytes() -> tuple[int, str]:
    """Memory of this process and all its descendants: (bytes, "pss") where PSS is readable, else (.., "rss")."""
    import psutil

    me = psutil.Process()
    total, kind = 0, "pss"
    for proc in [me, *me.children(recursive=True)]:
        try:
            info = proc.memory_full_info() if kind == "pss" else proc.memory_info()
            if kind == "pss" and not hasattr(info, "pss"):
                kind, info = "rss", proc.memory_info()
            total += getattr(info, kind)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, kind


def untracked_states(states_root: Path, own: list[Path]) -> dict[str, int]:
    """Bytes of each state directory under `states_root` (`<model>/<key>`) that is not one of `own`.

    Why: a cell's states directory is keyed by the extraction code's version, so states left by a run
    interrupted before an upgrade are never read again, and a cache shared between configs holds other runs'
    kept states. Neither is this run's to delete (kept states feed `ie-ray validate --real`); the sweep names
    them so that the user can, and leaves them out of the run's peak disk. Staging directories of unfinished
    passes are the extraction's to clean (`ie_ray.extract_staging`)."""
    mine = {Path(d).resolve() for d in own}
    found = {}
    for directory in sorted(Path(states_root).glob("*/*")):
        if directory.is_dir() and not directory.name.startswith(".") and directory.resolve() not in mine:
            found[str(directory)] = directory_bytes(directory)
    return found


class PeakUsage:
    """A background sampler of memory, and the peak disk of the run's own state directories measured on demand.

    Only the directories given to `track` count: the peak is what the run needs, not what else shares its cache
    (`untracked_states`)."""

    def __init__(self, disk_path: Path, interval_s: float = 2.0) -> None:
        self.disk_path, self.interval_s = Path(disk_path), interval_s
        self.disk_dirs: list[Path] = []
        self.peak_memory = 0
        self.memory_kind = "pss"
        self.peak_disk = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.measure_disk()
        self._thread = threading.Thread(target=self._run, name="ie-ray-usage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            used, self.memory_kind = tree_memory_bytes()
            self.peak_memory = max(self.peak_memory, used)
            self._stop.wait(self.interval_s)

    def track(self, directories: list[Path]) -> None:
        """Count these state directories (the run's cells and micro states) in the peak disk."""
        self.disk_dirs += [Path(d) for d in directories if Path(d) not in self.disk_dirs]

    def measure_disk(self) -> None:
        self.peak_disk = max(self.peak_disk, sum(directory_bytes(d) for d in self.disk_dirs))

    def stop(self) -> None:
        self.measure_disk()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self) -> dict:
        return dict(peak_memory_gb=round(self.peak_memory / GIB, 3), peak_states_disk_gb=round(self.peak_disk / GIB, 3),
                    peak_memory_bytes=int(self.peak_memory), peak_states_disk_bytes=int(self.peak_disk),
                    memory_note=f"summed {self.memory_kind.upper()} of the driver and its descendants (Ray "
                                f"workers, object store), sampled every {self.interval_s:g} s",
                    disk_note=f"size of this run's state directories under {self.disk_path} after each "
                              "extraction pass (its peak); other directories there are not counted")
