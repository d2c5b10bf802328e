"""Which states set the noise scale of a block's smoothed MI: the scale rule.

I_sigma depends on sigma relative to the spread of the states, so the states that the per-dimension scale is
computed from decide what every reading of the block means. Three rules, measured on SmolLM2's states (README,
"Smoothed MI"):

- `pooled_no_sink` (default): pool the within-position variance of every analysed macro position, except
  positions whose mean state norm is more than SINK_NORM_RATIO times the median position's. In SmolLM2 the first position is an
  attention sink ~100x larger in norm than the rest (block 20: ~25,000 vs ~200); pooled in, its variance sets
  the scale of every dimension and blurs every other position to ~0 bits.
- `pooled`: the within-position variance of every analysed position, sink included.
- `total_no_sink`: the variance of the states of every analysed non-sink position pooled together, so the
  spread BETWEEN positions (an entity's mean state against a comma's) counts as well: the second convention that
  issue 24 checks every verdict against. It is never smaller than `pooled_no_sink` per dimension (total variance
  = mean within-position variance + variance of the position means), so it smooths more: levels drop (the
  default job's E(29): 4.72 bits under `pooled_no_sink`, about 2.4 under the between-inclusive variance).
- `per_position`: each macro position its own scale (micro states take the scale of the macro position with
  the same index). It inflates tiny variations: a token whose state barely moves still spans the whole scale.

Block input (resid_pre) and block output (resid_post) each get their own Scale; macro and micro readings of a
block share them, so IE_sigma = macro - mean micro compares like with like.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ie_ray.estimators.smoothed import Scale

SCALE_RULES: tuple[str, ...] = ("pooled_no_sink", "pooled", "per_position", "total_no_sink")
DEFAULT_SCALE_RULE = "pooled_no_sink"
#: A position whose mean state norm exceeds this multiple of the median position's is a sink (left out).
SINK_NORM_RATIO: float = 4.0


@dataclass(frozen=True)
class BlockScale:
    """The scales of one block side (input or output) and the positions they were computed from."""

    rule: str
    pooled: Scale | None
    per_position: dict[int, Scale]
    used_positions: tuple[int, ...]
    sink_positions: tuple[int, ...]
    position_norms: tuple[float, ...]

    def for_position(self, position: int) -> Scale:
        """The scale of macro position `position` (and of micro states at that index)."""
        if self.rule == "per_position":
            if position in self.per_position:
                return self.per_position[position]
            nearest = min(self.per_position, key=lambda p: abs(p - position))
            return self.per_position[nearest]
        assert self.pooled is not None
        return self.pooled


def sink_positions(states: np.ndarray, ratio: float = SINK_NORM_RATIO) -> tuple[list[int], np.ndarray]:
    """Indices (into axis 1 of `states` (N, P, d)) whose mean norm is > ratio x the median position's, and the
    mean norm of every position."""
    # one position at a time in float64: a (N, P, d) float64 copy of a 20,000-sample block is 4.4 GB per side
    norms = np.array([np.linalg.norm(np.asarray(states[:, j], dtype=np.float64), axis=-1).mean()
                      for j in range(states.shape[1])])
    median = float(np.median(norms))
    sinks = [j for j, v in enumerate(norms) if median > 0 and v > ratio * median]
    return sinks, norms


def within_position_scale(states: np.ndarray, columns: list[int] | None = None,
                          between: bool = False) -> Scale:
    """Per-dimension spread = root mean over positions of each position's variance (N, P, d) -> Scale, over the
    positions `columns` of axis 1 (default: all). Accumulated one position at a time in float64, so the states
    may be stored in float16 and are never copied whole.

    Not the variance of all positions pooled together: that adds the differences BETWEEN positions (an
    entity's state and a comma's state have different means), which are not distances any reading compares:
    every MI is computed at one position. Pooling within-position variances keeps one scale for the block
    while measuring the spread that its readings actually see.

    `between=True` adds exactly those differences (the variance of the position means, each position weighted
    equally), i.e. the variance of all the positions' states pooled together: the `total_no_sink` convention."""
    columns = list(range(states.shape[1])) if columns is None else list(columns)
    variance = np.zeros(states.shape[-1])
    means = []
    for j in columns:
        position = np.asarray(states[:, j], dtype=np.float64)
        variance += position.var(axis=0)
        means.append(position.mean(axis=0))
    center = np.mean(means, axis=0)
    variance /= len(columns)
    if between:
        variance += np.var(np.stack(means), axis=0)
    return Scale(center=center, spread=np.sqrt(variance))


def block_scale(states: np.ndarray, positions: list[int], rule: str = DEFAULT_SCALE_RULE) -> BlockScale:
    """The scale of one block side from its macro states (N, P, d) at the analysed `positions`."""
    if rule not in SCALE_RULES:
        raise ValueError(f"unknown scale rule {rule!r}; choose one of {list(SCALE_RULES)}")
    sinks, norms = sink_positions(states)
    if rule == "per_position":
        per = {p: Scale.of(states[:, j]) for j, p in enumerate(positions)}
        return BlockScale(rule, None, per, tuple(positions), tuple(positions[j] for j in sinks),
                          tuple(float(v) for v in norms))
    keep = [j for j in range(len(positions)) if rule == "pooled" or j not in sinks] or list(range(len(positions)))
    return BlockScale(rule, within_position_scale(states, keep, between=rule == "total_no_sink"), {}, tuple(positions[j] for j in keep),
                      tuple(positions[j] for j in sinks), tuple(float(v) for v in norms))
