"""ie_ray.fault_gate: a no-op unless asked, and a holder goes on only when released or when its point opens."""
from __future__ import annotations

import os
import threading
import time

import pytest

from ie_ray import fault_gate


def _hold_in_thread(point: str) -> threading.Thread:
    thread = threading.Thread(target=fault_gate.hold, args=(point,), daemon=True)
    thread.start()
    return thread


def _held_file(directory, point: str, timeout: float = 10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(directory.glob(f"{point}.{os.getpid()}.*.held"))
        if found:
            return found[-1]
        time.sleep(0.01)
    raise AssertionError(f"nothing held at {point!r}")


def test_hold_is_a_no_op_without_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(fault_gate.ENV, raising=False)
    start = time.perf_counter()
    fault_gate.hold("fit")
    assert time.perf_counter() - start < 0.01
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("how", ["release", "open"])
def test_a_holder_waits_until_released_or_opened(monkeypatch, tmp_path, how):
    monkeypatch.setenv(fault_gate.ENV, str(tmp_path))
    thread = _hold_in_thread("fit")
    held = _held_file(tmp_path, "fit")
    thread.join(0.5)
    assert thread.is_alive()  # still holding
    (tmp_path / "extract.open").touch()  # another point's opening does not release it
    thread.join(0.3)
    assert thread.is_alive()
    if how == "release":
        held.with_name(held.name + ".go").touch()
    else:
        (tmp_path / "fit.open").touch()
    thread.join(5)
    assert not thread.is_alive()


def test_an_open_point_lets_every_later_holder_through(monkeypatch, tmp_path):
    monkeypatch.setenv(fault_gate.ENV, str(tmp_path))
    (tmp_path / "fit.open").touch()
    start = time.perf_counter()
    fault_gate.hold("fit")
    fault_gate.hold("fit")
    assert time.perf_counter() - start < 1


def test_the_setup_hook_makes_extraction_batches_hold_once(monkeypatch, tmp_path):
    from ie_ray.extract import BlockStateExtractor

    original = BlockStateExtractor.__call__
    monkeypatch.setattr(BlockStateExtractor, "__call__", original)  # restored after the test
    monkeypatch.setenv(fault_gate.ENV, str(tmp_path))
    calls = []
    monkeypatch.setattr(fault_gate, "hold", calls.append)
    fault_gate.hold_extraction_batches()
    fault_gate.hold_extraction_batches()  # a second run of the hook does not wrap twice
    held = BlockStateExtractor.__call__
    assert held is not original and held.__wrapped__ is original
    with pytest.raises((KeyError, AttributeError, TypeError)):
        held(object.__new__(BlockStateExtractor), {})  # an empty batch fails in the real call, after the hold
    assert calls == ["extract"]
