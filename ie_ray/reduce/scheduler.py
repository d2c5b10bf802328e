"""The one scheduler of the reduce stage: every reading's tasks, each layer's states loaded once, a bounded window.

For each layer of a cell it asks every reading which jobs it fits and how they split into tasks, reads the
finished ones from the cache (`row_cache.py`), and only for layers with something left loads the states once,
puts them in the object store once, and submits every reading's tasks on them. At most `window` layers are
open (states alive in the driver and the object store) at a time: Ray's "limit pending tasks" pattern
(`ray.wait` on the in-flight refs), the same for MINE, the smoothed MI and the entropy limit, so the memory
bound cannot lapse on one path. Rows are cached the moment their task returns; `on_layer_done(layer)` fires
when every reading of a layer is cached (the sweep deletes that layer's states there, unless told to keep them).
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ie_ray import store
from ie_ray.reduce.jobs import EstimateJob, plan_jobs
from ie_ray.reduce.layer_states import LayerStates
from ie_ray.reduce.reading import Reading
from ie_ray.reduce.row import rows_frame
from ie_ray.reduce.row_cache import RowCache, TaskOutput


@dataclass
class CellWork:
    """One (model, corpus, shots) cell as the reducer sees it: token ids, positions, where its states live."""

    model: str
    corpus: str
    shots: int
    input_ids: np.ndarray
    positions: list[int]
    seeds: list[int]
    macro_dir: Path
    micro_dir: Path | None  # None: no micro states (micro: full_context)
    unique_tokens: np.ndarray | None
    scale_rule: str
    cache: RowCache
    #: the last streams read (macro and micro): blocks are opened in order and neighbours share a stream. Kept in
    #: the stored dtype (float16 by default): a 20,000-sample block is then 1.1 GB in the object store, not 2.2
    #: (three open blocks in float32 spilled 4 GB to disk here); `LayerStates.pair` converts what a job reads
    streams: store.LastStreams = field(default_factory=lambda: store.LastStreams(size=4, dtype=None), repr=False)

    @property
    def label(self) -> str:
        return f"{self.model} {self.corpus}-{self.shots}shot"

    def load(self, layer: int) -> LayerStates:
        return LayerStates.load(layer, self.input_ids, self.positions, self.macro_dir, self.micro_dir,
                                self.unique_tokens, self.scale_rule, read_stream=self.streams)


@dataclass(frozen=True)
class Unit:
    """One Ray task of one reading: some jobs of one layer."""

    reading: Reading
    layer: int
    jobs: tuple[EstimateJob, ...]


@dataclass
class CellReduction:
    """What the reducer made of one cell: MI rows of every reading, and the per-layer notes (noise scales)."""

    mi: pd.DataFrame
    scales: pd.DataFrame
    computed_layers: list[int] = field(default_factory=list)


def plan_units(cell: CellWork, readings: Iterable[Reading], layers: Iterable[int]) -> dict[int, list[Unit]]:
    """Every task of every reading, by layer. The jobs of all layers are planned in one call: a job's ceiling and
    distinct count depend on the token ids only, so they are counted once per (level, position), not per layer
    (at 20,000 x 24 tokens, counting per layer cost minutes)."""
    readings, layers = list(readings), list(layers)
    by_layer: dict[int, list[EstimateJob]] = {layer: [] for layer in layers}
    for job in plan_jobs(cell.input_ids, layers, list(cell.positions), list(cell.seeds),
                         with_micro=cell.micro_dir is not None) if layers else []:
        by_layer[job.layer].append(job)
    return {layer: [Unit(r, layer, tuple(task)) for r in readings
                    for task in r.tasks(r.select(jobs, list(cell.positions)))]
            for layer, jobs in by_layer.items()}


def layers_to_compute(cell: CellWork, readings: Iterable[Reading], layers: Iterable[int]) -> list[int]:
    """Layers with at least one reading task not in the cache: the ones whose states are needed."""
    units = plan_units(cell, readings, layers)
    return [layer for layer, us in units.items() if any(not cell.cache.contains(u.reading, list(u.jobs))
                                                        for u in us)]


def fit_task(reading: Reading, states: LayerStates, jobs: tuple[EstimateJob, ...]) -> TaskOutput:
    """The Ray task body: one reading's rows for some jobs of one layer (runs in-process in tests)."""
    import torch

    from ie_ray.fault_gate import hold

    hold("fit")  # a no-op unless a fault test set IE_RAY_FAULT_GATE
    torch.set_num_threads(reading.threads())
    return TaskOutput(reading.fit_layer(states, list(jobs)), reading.layer_notes(states))


def layers_in_flight(num_cpus_per_task: float) -> int:
    """How many layers the scheduler keeps open: as many tasks as can run at once, plus one so a core never
    idles while the driver reads the next layer's states."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    # true division with a relative slack, not //: 1.0 // 0.1 is 9.0 (0.1 is stored a little above 0.1), while
    # Ray fits ten 0.1-CPU tasks on one CPU
    return max(1, math.floor(cpus / max(num_cpus_per_task, 1e-6) * (1 + 1e-9))) + 1


def windowed(items: list, open_item: Callable, wait_one: Callable, window: int):
    """Open `items` in order (`open_item(item) -> list of handles`), never more than `window` open items at once;
    yield (item, handle, result, closed) per finished handle, `closed` True on an item's last one. The memory
    bound of the reducer (an open item holds one layer's states), kept testable without Ray."""
    queue = deque(items)
    pending: dict = {}
    remaining: dict = {}
    while queue or pending:
        while queue and len(remaining) < window:
            item = queue.popleft()
            handles = list(open_item(item))
            if not handles:
                yield item, None, None, True
                continue
            remaining[id(item)] = len(handles)
            for handle in handles:
                pending[handle] = item
        if not pending:
            continue
        handle, result = wait_one(list(pending))
        item = pending.pop(handle)
        remaining[id(item)] -= 1
        closed = remaining[id(item)] == 0
        if closed:
            del remaining[id(item)]
        yield item, handle, result, closed


def reduce_cell(cell: CellWork, readings: list[Reading], layers: list[int], window: int | None = None,
                on_layer_done: Callable[[int], None] | None = None) -> CellReduction:
    """Every reading of `layers` of one cell: cached tasks read back, the rest fitted as Ray tasks."""
    units = plan_units(cell, readings, layers)
    outputs: list[TaskOutput] = []
    missing: dict[int, list[Unit]] = {}
    for layer, layer_units in units.items():
        for unit in layer_units:
            cached = cell.cache.load(unit.reading, list(unit.jobs))
            if cached is None:
                missing.setdefault(layer, []).append(unit)
            else:
                outputs.append(cached)
    if missing:
        outputs += _fit_missing(cell, missing, window, on_layer_done)
    for layer in layers:
        if layer not in missing and on_layer_done is not None:
            on_layer_done(layer)
    rows = [row.in_cell(cell.model, cell.corpus, cell.shots) for out in outputs for row in out.rows]
    notes = [dict(model=cell.model, corpus=cell.corpus, shots=cell.shots, **n) for out in outputs for n in out.notes]
    scales = pd.DataFrame(notes).sort_values(["layer", "side"]).reset_index(drop=True) if notes else pd.DataFrame()
    return CellReduction(rows_frame(rows), scales, sorted(missing))


def _fit_missing(cell: CellWork, missing: dict[int, list[Unit]], window: int | None,
                 on_layer_done: Callable[[int], None] | None) -> list[TaskOutput]:
    import ray
    from tqdm.auto import tqdm

    from ie_ray.ray_start import init_ray

    init_ray()
    remote = ray.remote(fit_task)
    n_cpus = max(u.reading.resources(0, 0).num_cpus for us in missing.values() for u in us)
    window = window or layers_in_flight(n_cpus)

    def open_layer(layer: int) -> list:
        states = cell.load(layer)
        ref = ray.put(states)
        handles = []
        for unit in missing[layer]:
            res = unit.reading.resources(states.n_samples, states.dim)
            handle = remote.options(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=2).remote(
                unit.reading, ref, unit.jobs)
            handles.append((handle, unit))
        return handles

    def wait_one(handles: list):
        refs = {h[0]: h for h in handles}
        ready, _ = ray.wait(list(refs), num_returns=1)
        return refs[ready[0]], ray.get(ready[0])

    outputs = []
    n_tasks = sum(len(us) for us in missing.values())
    with tqdm(total=n_tasks, desc=f"readings {cell.label}", unit="task") as bar:
        for layer, handle, output, closed in windowed(sorted(missing), open_layer, wait_one, window):
            _, unit = handle
            cell.cache.save(unit.reading, list(unit.jobs), output)
            outputs.append(output)
            bar.update(1)
            if closed and on_layer_done is not None:
                on_layer_done(layer)
    return outputs
