"""What every benchmark writes besides its own numbers: the machine it ran on, and the JSON + Markdown pair.

A ratio means little without the machine and its load at the time (this one is shared and noisy), so every
benchmark records the same description and prints it the same way.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch


def machine_info(threads: int) -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_threads_requested": threads,
        # glibc malloc tunables change the batched mode's cost at large E (see benchmarks/README.md).
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))},
    }


def machine_line(m: dict) -> str:
    """The Markdown bullet describing `machine_info` (plus `loadavg_at_end` when the benchmark recorded it)."""
    start = [round(v, 1) for v in m["loadavg_at_start"]] if m.get("loadavg_at_start") else None
    line = (f"- machine: {m['cpu_model']}, {m['cpu_count']} CPUs ({m['cpus_usable']} usable), load average at start "
            f"{start}")
    if m.get("loadavg_at_end"):
        line += f", at end {[round(v, 1) for v in m['loadavg_at_end']]}"
    line += f", torch {m['torch']}, Python {m['python']}, {m['platform']}"
    if m.get("malloc_env"):
        line += f", malloc env {m['malloc_env']}"
    return line


def write_outputs(out: Path, res: dict, md: str) -> None:
    """Print the Markdown, then write `<out>.json` (every number) and `<out>.md` (the table people read)."""
    print(md)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)
