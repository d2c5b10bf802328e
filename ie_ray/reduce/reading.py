"""The `Reading` protocol and its registry: what every way of reading MI(block in; block out) provides.

A reading (smoothed MI, entropy limit, MINE, or one you add) is one class and one registry entry. The config's
`readings:` list, the section holding its settings, the prefix of its columns in the IE tables and the key of
its cached rows all come from the registered class, never from string literals spread over modules.

This module is the stable centre (as bmi's `interface.py`): it imports nothing of the package but the row and
job types the protocol speaks in; implementations depend on it, never the reverse.

Adding a reading (full example: `tests/test_reading_registry.py`):

    @register_reading
    class MeanNormReading(Reading):
        name = "mean_norm"; section = "mean_norm"; table_prefix = "ie_norm"; sources = ()

        @classmethod
        def from_config(cls, config): return cls()
        def key_dict(self): return {}
        def fit_layer(self, states, jobs):
            return [MIRow.for_job(job, self.name, mi_bits=float(np.linalg.norm(states.pair(job)[1], axis=1).mean()))
                    for job in jobs]

and `readings: [smoothed, mean_norm]` in a config.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ie_ray.reduce.jobs import EstimateJob
from ie_ray.reduce.row import MIRow

if TYPE_CHECKING:  # types only: the protocol never imports the config or the states at run time
    from ie_ray.config import SweepConfig
    from ie_ray.reduce.layer_states import LayerStates


@dataclass(frozen=True)
class TaskResources:
    """What one Ray task of a reading asks the scheduler for."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


class Reading(abc.ABC):
    """One way of reading MI(block input; block output) for every (position, level, seed) job of a layer.

    Class attributes:
    - `name`: the value of the `reading` column and the entry of the config's `readings:` list;
    - `section`: the config section that holds its settings (`smoothed`, `entropy_limit`, `estimator`);
    - `table_prefix`: the prefix of its columns in ie.parquet (`ie_sigma_bits`, ...);
    - `sources`: the package modules (or package directories) whose source changes its numbers (part of its
      cache key);
    - `exact`: True when the reading is an exact count (no interval, no flag of its own in the tables);
    - `has_tau`: True when rows carry a noise fraction `tau` and the tables pick the headline tau.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    table_prefix: ClassVar[str]
    sources: ClassVar[tuple[str, ...]] = ()
    exact: ClassVar[bool] = False
    has_tau: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: SweepConfig) -> Reading:
        """The reading with the settings of `config` (its `section`), validated: a ConfigError names the key."""

    @abc.abstractmethod
    def key_dict(self) -> dict[str, Any]:
        """Every setting that changes a number (the cache key); nothing about where or how fast it runs."""

    def select(self, jobs: list[EstimateJob], positions: list[int]) -> list[EstimateJob]:
        """The jobs of one layer this reading fits (default: all). MINE fits only the last position if told."""
        return jobs

    def tasks(self, jobs: list[EstimateJob]) -> list[list[EstimateJob]]:
        """How one layer's jobs are split into Ray tasks (default: one task per layer, the states travel once)."""
        return [jobs] if jobs else []

    def resources(self, n_samples: int, dim: int) -> TaskResources:
        """Resources of one task with `n_samples` states of width `dim` (default: one CPU)."""
        return TaskResources()

    def threads(self) -> int:
        """torch intra-op threads inside a task (default: its CPUs)."""
        return max(1, int(self.resources(0, 0).num_cpus))

    @abc.abstractmethod
    def fit_layer(self, states: LayerStates, jobs: list[EstimateJob]) -> list[MIRow]:
        """The rows of `jobs`, all of one layer, from that layer's states. Runs inside a Ray task."""

    def layer_notes(self, states: LayerStates) -> list[dict[str, Any]]:
        """Per-layer facts worth a table of their own (the smoothed MI's noise scales); default none."""
        return []


_REGISTRY: dict[str, type[Reading]] = {}


def register_reading(cls: type[Reading]) -> type[Reading]:
    """Class decorator: make `cls` available to configs, tables and the cache under `cls.name`."""
    for attr in ("name", "section", "table_prefix"):
        if not isinstance(getattr(cls, attr, None), str):
            raise TypeError(f"reading {cls.__name__} needs a class attribute {attr!r} (a string)")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a reading named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_reading(name: str) -> None:
    """Remove a reading (tests that register an example reading clean up with this)."""
    _REGISTRY.pop(name, None)


def reading_names() -> tuple[str, ...]:
    """Registered reading names, in registration order (the built-in ones first)."""
    return tuple(_REGISTRY)


def reading_class(name: str) -> type[Reading]:
    """The registered class of `name`, or a ValueError listing the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown reading {name!r}; registered readings: {list(_REGISTRY)}") from None


def table_prefixes() -> dict[str, str]:
    """{reading name: its column prefix in the IE tables}."""
    return {name: cls.table_prefix for name, cls in _REGISTRY.items()}
