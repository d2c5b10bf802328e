"""The streaming reducer's memory bound: `bounded_map` never holds more than `max_in_flight` submitted items
(each one layer's states in the sweep), returns every item once, and works whatever order results come back in."""
from __future__ import annotations

import random

import pytest

from ie_ray.sweep import bounded_map


@pytest.mark.parametrize("max_in_flight", [1, 2, 3, 10])
def test_bounded_map_never_exceeds_its_window(max_in_flight: int) -> None:
    rng = random.Random(max_in_flight)
    alive: set[int] = set()
    peak = 0

    def submit(item: int) -> str:
        nonlocal peak
        alive.add(item)
        peak = max(peak, len(alive))
        return f"h{item}"

    def wait_one(handles: list[str]) -> tuple[str, int]:
        handle = rng.choice(handles)  # results come back in any order
        item = int(handle[1:])
        alive.discard(item)
        return handle, item * item

    items = list(range(7))
    out = dict(bounded_map(items, submit, wait_one, max_in_flight))
    assert out == {i: i * i for i in items}
    assert peak == min(max_in_flight, len(items))
    assert not alive
