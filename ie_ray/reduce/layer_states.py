"""One layer's block states, macro and micro joined: the only place that knows how a job finds its states.

Macro states are (N, P, d) at the analysed positions; micro states are (U, d), one per unique token fed alone,
and `token_row` (N, T) says which micro row each sample's token uses. Readings ask for a job's states either
expanded (N paired rows: MINE, the entropy limit) or as weighted atoms (distinct rows with their counts: the
smoothed MI), so identical states are never estimated N times: a micro reading has as many atoms as the
position has distinct tokens (26 for the 25-country task), a macro reading at position t at most as many as
distinct prefixes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ie_ray import store
from ie_ray.noise_scale import DEFAULT_SCALE_RULE, BlockScale, block_scale
from ie_ray.reduce.jobs import EstimateJob

#: Macro states are merged by prefix only when the prefixes are this much fewer than the samples: above it the
#: atoms save little and the estimator's own exact deduplication handles the rest.
PREFIX_ATOM_FRACTION: float = 0.5
#: Rows of one prefix may differ by float noise (batch composition, padding); they are one atom only when every
#: row is within this RMS per standardised coordinate of its prefix's first row (the entropy limit's default
#: tolerance). Otherwise the states are not a function of the prefix and the rows stay separate.
PREFIX_ATOM_TOLERANCE: float = 1e-3


@dataclass(frozen=True)
class Atoms:
    """Distinct paired states and how many samples each stands for (sum(counts) = N)."""

    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray


@dataclass
class LayerStates:
    """Block `layer`'s input and output states for every job of one cell."""

    layer: int
    input_ids: np.ndarray  # (N, T) token ids of the cell
    positions: tuple[int, ...]  # analysed macro positions: axis 1 of the macro arrays
    macro_pre: np.ndarray  # (N, P, d), float32 or as stored (float16): `pair` hands out float32
    macro_post: np.ndarray  # (N, P, d)
    micro_pre: np.ndarray | None = None  # (U, d) each unique token fed alone
    micro_post: np.ndarray | None = None
    token_row: np.ndarray | None = None  # (N, T) row of each sample's token in the micro arrays
    scale_rule: str = DEFAULT_SCALE_RULE  # which states set the noise scale (`noise_scale.py`)
    _scales: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if self.macro_pre.shape[0] != n or self.macro_post.shape[0] != n:
            raise ValueError(f"layer {self.layer}: {self.macro_pre.shape[0]} extracted rows for {n} samples; the "
                             "states do not belong to this corpus (rerun the extraction)")
        if (self.micro_pre is None) != (self.token_row is None):
            raise ValueError("micro states and their token rows come together")

    @property
    def n_samples(self) -> int:
        return len(self.input_ids)

    @property
    def dim(self) -> int:
        return int(self.macro_pre.shape[-1])

    @property
    def nbytes(self) -> int:
        arrays = (self.macro_pre, self.macro_post, self.micro_pre, self.micro_post)
        return int(sum(a.nbytes for a in arrays if a is not None))

    def _micro_rows(self, job: EstimateJob) -> np.ndarray:
        if self.token_row is None:
            raise ValueError(f"{job} is a micro job but this cell has no micro states (micro: full_context?)")
        return self.token_row[:, job.position]

    def pair(self, job: EstimateJob) -> tuple[np.ndarray, np.ndarray]:
        """The job's (x, y) = (block input, block output), one row per sample (N, d) each, float32."""
        if job.level == "macro":
            j = self.positions.index(job.position)
            return _float32(self.macro_pre[:, j]), _float32(self.macro_post[:, j])
        rows = self._micro_rows(job)
        assert self.micro_pre is not None and self.micro_post is not None  # they come with token_row
        return _float32(self.micro_pre[rows]), _float32(self.micro_post[rows])

    def symbols(self, job: EstimateJob) -> np.ndarray:
        """The token prefix (macro) or token (micro) that determines the job's states, one row per sample."""
        return self.input_ids[:, : job.position + 1] if job.level == "macro" else self.input_ids[:, job.position]

    def atoms(self, job: EstimateJob) -> Atoms | None:
        """The job's states as weighted atoms, or None when they are (close to) all distinct.

        Micro: the distinct tokens at the position, exactly (one forward per unique token). Macro: one atom per
        distinct prefix when prefixes are few (PREFIX_ATOM_FRACTION) and every row of a prefix equals its first
        row within PREFIX_ATOM_TOLERANCE; the first row stands for the prefix.
        """
        if job.level == "micro":
            rows, counts = np.unique(self._micro_rows(job), return_counts=True)
            assert self.micro_pre is not None and self.micro_post is not None  # they come with token_row
            return Atoms(self.micro_pre[rows], self.micro_post[rows], counts)
        if job.n_distinct > PREFIX_ATOM_FRACTION * self.n_samples:
            return None
        _, first, inverse, counts = np.unique(self.symbols(job), axis=0, return_index=True, return_inverse=True,
                                              return_counts=True)
        inverse = inverse.reshape(-1)
        x, y = self.pair(job)
        for side, states in (("input", x), ("output", y)):
            spread = self.scale(side).for_position(job.position).spread
            if _max_rms_from_first(states, first[inverse], spread) > PREFIX_ATOM_TOLERANCE:
                return None
        return Atoms(x[first], y[first], counts)

    def scale(self, side: str, rule: str | None = None) -> BlockScale:
        """The noise scale of one block side from its macro states (computed once per rule)."""
        rule = rule or self.scale_rule
        key = (side, rule)
        if key not in self._scales:
            states = self.macro_pre if side == "input" else self.macro_post
            self._scales[key] = block_scale(states, list(self.positions), rule)
        return self._scales[key]

    @classmethod
    def load(cls, layer: int, input_ids: np.ndarray, positions: list[int], macro_dir: Path,
             micro_dir: Path | None = None, unique_tokens: np.ndarray | None = None,
             scale_rule: str = DEFAULT_SCALE_RULE, read_stream: store.StreamReader | None = None) -> LayerStates:
        """Read one layer's states from the run's Parquet shards (macro, and micro when `micro_dir` is given).
        `read_stream`: how a residual stream is read (`store.LastStreams` reads the stream two blocks share once)."""
        _, pre, post = store.read_layer_states(macro_dir, layer, read_stream)
        if micro_dir is None:
            return cls(layer, input_ids, tuple(positions), pre, post, scale_rule=scale_rule)
        if unique_tokens is None:
            raise ValueError("micro states need `unique_tokens`, the token fed alone at each of their rows")
        _, mpre, mpost = store.read_layer_states(micro_dir, layer, read_stream)
        token_row = np.searchsorted(unique_tokens, input_ids)
        return cls(layer, input_ids, tuple(positions), pre, post, mpre[:, 0], mpost[:, 0], token_row, scale_rule)


def _float32(states: np.ndarray) -> np.ndarray:
    """Float32 states (float16 -> float32 is exact, so a reading sees the same numbers whatever the storage)."""
    return states if states.dtype == np.float32 else states.astype(np.float32)


def _max_rms_from_first(states: np.ndarray, representative: np.ndarray, spread: np.ndarray) -> float:
    """Largest RMS (per live standardised coordinate) between a row and its prefix's first row."""
    live = spread > 0
    if not live.any():
        return 0.0
    diff = (states[:, live] - states[representative][:, live]) / spread[live]
    return float(np.sqrt((diff.astype(np.float64) ** 2).mean(axis=1)).max())
