"""The scheduler's memory bound: `windowed` never holds more than `window` open items (each one layer's states in
the reducer), whatever number of tasks each item has, returns every task once, marks each item closed exactly
once (on its last task), and works whatever order results come back in."""
from __future__ import annotations

import random

import pytest

from ie_ray.reduce.scheduler import windowed


@pytest.mark.parametrize("window", [1, 2, 3, 10])
def test_windowed_never_exceeds_its_window(window: int) -> None:
    rng = random.Random(window)
    tasks_of = {i: i % 3 + 1 for i in range(7)}  # 1, 2 or 3 tasks per item (readings x chunks)
    open_items: set[int] = set()
    peak = 0

    def open_item(item: int) -> list[str]:
        nonlocal peak
        open_items.add(item)
        peak = max(peak, len(open_items))
        return [f"{item}/{k}" for k in range(tasks_of[item])]

    def wait_one(handles: list[str]) -> tuple[str, str]:
        handle = rng.choice(handles)  # results come back in any order
        return handle, handle.upper()

    results, closed = [], []
    for item, handle, result, is_closed in windowed(list(tasks_of), open_item, wait_one, window):
        assert result == handle.upper()
        results.append(handle)
        if is_closed:
            closed.append(item)
            open_items.discard(item)
    assert sorted(results) == sorted(f"{i}/{k}" for i, n in tasks_of.items() for k in range(n))
    assert sorted(closed) == list(tasks_of)
    assert peak == min(window, len(tasks_of))
    assert not open_items


def test_an_item_without_tasks_closes_at_once() -> None:
    out = list(windowed([1, 2], lambda item: [] if item == 1 else ["h"], lambda hs: (hs[0], "r"), 1))
    assert out == [(1, None, None, True), (2, "h", "r", True)]
