"""A test-only pause point, so a fault test lands its fault while a piece of work is provably in flight.

Off (one environment lookup) unless IE_RAY_FAULT_GATE names a directory. Then `hold(point)` writes
`<dir>/<point>.<pid>.<token>.held` (the pid lets the test find the node the holder runs on) and waits until the
test creates `<dir>/<point>.open` (every holder of that point goes on, now and later) or `<that file>.go` (this
holder only). tests/test_node_loss.py sets it per job (`ray job submit --runtime-env-json`) and kills a node
while an extraction batch or a reading task is held there, instead of racing a sweep that takes seconds on an
idle machine and minutes on a loaded one (a race that lost in CI: every reading had ended before the kill).

Reading tasks hold at "fit" (`scheduler.fit_task`). Extraction batches hold at "extract" only when the job also
names `hold_extraction_batches` as its `worker_process_setup_hook`: a call inside `extract.py` would change the
source hash that keys every cached residual stream, so every existing cache would be extracted again once.
"""
from __future__ import annotations

import functools
import os
import time
import uuid
from pathlib import Path

ENV = "IE_RAY_FAULT_GATE"
POLL_S = 0.05


def hold(point: str) -> None:
    """Wait at `point` while the gate directory says so; returns at once when IE_RAY_FAULT_GATE is unset."""
    gate = os.environ.get(ENV)
    if not gate:
        return
    held = Path(gate) / f"{point}.{os.getpid()}.{uuid.uuid4().hex[:8]}.held"
    held.touch()
    go, opened = held.with_name(held.name + ".go"), Path(gate) / f"{point}.open"
    while not (opened.exists() or go.exists()):
        time.sleep(POLL_S)


def hold_extraction_batches() -> None:
    """Ray worker setup hook: every extraction batch of the job first holds at "extract"."""
    from ie_ray.extract import BlockStateExtractor

    call = BlockStateExtractor.__call__
    if getattr(call, "held_at", None):
        return

    @functools.wraps(call)
    def held_call(self, batch):
        hold("extract")
        return call(self, batch)

    held_call.held_at = "extract"  # type: ignore[attr-defined]
    BlockStateExtractor.__call__ = held_call  # type: ignore[method-assign]
