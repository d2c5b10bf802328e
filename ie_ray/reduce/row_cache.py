"""Caching as a wrapper around the readings: look up what is cached, fit the rest, store each task's rows.

The unit is one Ray task of one reading (a layer's jobs, or a chunk of them for MINE): its rows and notes are
one JSON file, written atomically the moment the task returns, so a killed driver loses only tasks in flight.
Its key covers the cell's states, the reading's name, settings and source, and the jobs' identities; nothing
about where or how fast it ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ie_ray.cache import ShardCache, code_version, content_key
from ie_ray.reduce.jobs import EstimateJob
from ie_ray.reduce.reading import Reading
from ie_ray.reduce.row import MIRow

#: Modules every reading's rows depend on besides its own sources.
COMMON_SOURCES = ("reduce/row.py", "reduce/jobs.py")


@dataclass(frozen=True)
class TaskOutput:
    """What one reading task returns: its rows and its per-layer notes (e.g. the smoothed MI's scales)."""

    rows: list[MIRow]
    notes: list[dict[str, Any]]


class RowCache:
    """The shard cache bound to one cell's states: (reading, jobs) -> cached TaskOutput."""

    def __init__(self, shards: ShardCache | None, states_key: str, **where: Any) -> None:
        self.shards, self.states_key, self.where = shards, states_key, where

    def key(self, reading: Reading, jobs: list[EstimateJob]) -> str:
        return content_key("reading-rows-v2", code_version(tuple(reading.sources) + COMMON_SOURCES),
                           self.states_key, reading.name, reading.key_dict(), [j.identity for j in jobs])

    def contains(self, reading: Reading, jobs: list[EstimateJob]) -> bool:
        """Whether this task's rows are cached (without reading or counting them)."""
        return self.shards is not None and self.shards.has_estimate(self.key(reading, jobs))

    def load(self, reading: Reading, jobs: list[EstimateJob]) -> TaskOutput | None:
        """The cached output of this task, counted as reused; None when absent or unreadable (refit it)."""
        if self.shards is None:
            return None
        key = self.key(reading, jobs)
        payload = self.shards.load_estimate(key)
        if payload is None or not isinstance(payload.get("rows"), list):
            return None
        try:
            rows = [MIRow.from_record(r) for r in payload["rows"]]
        except (TypeError, KeyError):
            return None  # written by another schema: recompute rather than trust it
        self._record(reading, jobs, key, "reused")
        return TaskOutput(rows, list(payload.get("notes", [])))

    def save(self, reading: Reading, jobs: list[EstimateJob], output: TaskOutput) -> None:
        if self.shards is None:
            return
        key = self.key(reading, jobs)
        self.shards.save_estimate(key, dict(rows=[r.to_record() for r in output.rows], notes=output.notes))
        self._record(reading, jobs, key, "computed")

    def _record(self, reading: Reading, jobs: list[EstimateJob], key: str, status: str) -> None:
        assert self.shards is not None  # load and save return before this without a cache
        self.shards.record("estimates", status, key, **self.where, reading=reading.name,
                           layer=jobs[0].layer if jobs else -1, n_jobs=len(jobs))
