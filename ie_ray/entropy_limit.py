"""The entropy limit: what a perfect MI estimator would read from one block's states.

A block state is a deterministic function of the token prefix, so MI(block input; block output) is exactly the
entropy of the output states. Two prefixes whose states coincide (the block no longer tells them apart) are
one outcome, not two. The limit is therefore the plug-in entropy of the states counted as distinct up to a float
tolerance. It lies between 0 and the prefix entropy (the ceiling `ie_ray.ie.entropy_bits` records), and never
above log2 N, the most a plug-in can read from N samples.

"The same state" means an RMS difference per standardised coordinate of at most `tolerance`. We standardise
each dimension by its own spread so that one dimension with a huge scale (residual streams have a few) cannot
hide differences in all the others. The relation "within tolerance" is not transitive. We merge its
transitive closure (single linkage): if a~b and b~c, then a, b and c form one class even when a and c are
further apart than the tolerance. That way the classes are well defined and do not depend on the order of the
rows. For float noise (differences far below the tolerance) the closure changes nothing.

We search for near pairs without all-pairs distances, which would take 10^10 of them at N = 10^5. Two rows that
match have standardised difference ||a - b||_2 <= tolerance * sqrt(d_eff), and so does every orthonormal
projection of that difference. We sort the representatives by one seeded random direction and compare each
only with the sorted neighbours inside that window, one offset at a time, vectorised. A few more orthogonal
directions screen those candidates before the exact d-dimensional check, so in 8k dimensions the expensive
check runs almost only on true matches. Every step keeps the pairs that can match, so the seed changes the run
time and never the answer.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["DEFAULT_TOLERANCE", "DistinctStates", "distinct_states", "entropy_limit_ie"]

DEFAULT_TOLERANCE: float = 1e-3
# Screening directions beyond the sort direction: in high dimension, near pairs in the 1-D window are
# mostly far apart, and 8 coordinates reject almost all of them for 8 flops instead of d.
_N_PROJECTIONS = 8
# Largest temporary array (bytes) any step allocates. Inputs and per-row outputs are not counted.
_MEMORY_BUDGET_BYTES = 128 * 2**20
_SHOWN_ROWS = 5


def entropy_bits(symbols: np.ndarray) -> float:
    """Entropy (bits) of the empirical distribution of rows of `symbols` (n, k) or values (n,).

    Block states are deterministic functions of the token sequence, so MI(block in; block out) can never
    exceed this: it is the ceiling recorded next to every estimate.
    """
    symbols = np.asarray(symbols)
    if symbols.ndim == 1:
        symbols = symbols[:, None]
    _, counts = np.unique(symbols, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())



@dataclass(frozen=True)
class DistinctStates:
    """How many distinct states one block produced, and the entropy a perfect estimator would read from them."""

    n_samples: int
    n_prefixes: int
    n_states: int
    entropy_bits: float
    prefix_entropy_bits: float
    max_within_prefix_rms: float
    tolerance: float

    @property
    def n_merged(self) -> int:
        """Prefix classes that the block mapped onto another prefix's state."""
        return self.n_prefixes - self.n_states

    @property
    def cap_bits(self) -> float:
        """log2(n_samples): with N samples a plug-in entropy cannot exceed this, however many states exist."""
        return math.log2(self.n_samples)

    def to_row(self) -> dict[str, float | int]:
        """Scalars for one row of a results table."""
        return {
            "n_samples": self.n_samples,
            "n_prefixes": self.n_prefixes,
            "n_states": self.n_states,
            "n_merged": self.n_merged,
            "entropy_bits": self.entropy_bits,
            "prefix_entropy_bits": self.prefix_entropy_bits,
            "max_within_prefix_rms": self.max_within_prefix_rms,
            "tolerance": self.tolerance,
            "cap_bits": self.cap_bits,
        }


def distinct_states(
    states: np.ndarray,
    symbols: np.ndarray,
    spread: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> DistinctStates:
    """Count the states of `states` (N, d) as distinct up to `tolerance`, grouped by token prefix `symbols`.

    `symbols` (N, k) or (N,) are integer token prefixes, one row per state row. `spread` (d,) is the scale of
    each dimension. With None, each dimension's own std over the N rows is used. Dimensions with zero spread
    are ignored. RMS difference = sqrt(mean over the kept dimensions of ((a - b) / spread)^2).

    We compare one representative state per prefix (its first row), because a state is a function of its
    prefix. `max_within_prefix_rms` checks that assumption: it is the largest RMS difference between a row
    and its prefix's representative, and anything above float noise means the capture is not deterministic
    (padding or batching changed the state). It is 0.0 when every prefix occurs once.
    """
    states, symbols = _validated(states, symbols, tolerance)
    scale = _scale(states, spread)
    _, first, inverse, counts = np.unique(
        symbols, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)  # numpy 2.0.0 returned (N, 1) here
    if scale.d_eff == 0:  # every kept coordinate is constant: all states coincide
        labels = np.zeros(len(first), dtype=np.int64)
        within = 0.0
    else:
        labels = _state_classes(states, first, scale, tolerance, seed)
        within = _max_within_prefix_rms(states, first, inverse, scale)
    n_states = int(labels.max()) + 1
    class_counts = np.zeros(n_states, dtype=np.int64)
    np.add.at(class_counts, labels, counts)
    return DistinctStates(
        n_samples=len(states),
        n_prefixes=len(first),
        n_states=n_states,
        entropy_bits=_entropy_bits(class_counts),
        prefix_entropy_bits=_entropy_bits(counts),
        max_within_prefix_rms=within,
        tolerance=float(tolerance),
    )


def entropy_limit_ie(macro_bits: float, micro_bits: Sequence[float]) -> float:
    """IE that a perfect estimator of the paper's MI would return: macro_bits - mean(micro_bits).

    Feed it `DistinctStates.entropy_bits` values. Each term is a plug-in entropy, so it is capped at log2 N
    of its own sample. When the macro prefixes outnumber the samples, the macro term reads log2 N and this
    limit describes the sample size, not the model.
    """
    micro = [float(m) for m in micro_bits]
    if not micro:
        raise ValueError("micro_bits is empty: IE at position t needs the micro entropy of positions 0..t")
    return float(macro_bits) - float(np.mean(micro))


# --- input and scale ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """Which state dimensions count (positive spread) and 1 / spread on them."""

    kept: np.ndarray
    inverse: np.ndarray
    n_dims: int

    @property
    def d_eff(self) -> int:
        return int(self.kept.size)

    def take(self, states: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Raw kept coordinates of `rows` as a C-contiguous float64 block (copied, so callers may view it)."""
        block = states[rows] if self.d_eff == self.n_dims else states[np.ix_(rows, self.kept)]
        return np.ascontiguousarray(block, dtype=np.float64)


def _validated(states: np.ndarray, symbols: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    states = np.asarray(states)
    if states.ndim != 2:
        raise ValueError(
            f"states has shape {states.shape}; it must be 2-D (N rows, d dimensions), one row per sample"
        )
    if not (np.issubdtype(states.dtype, np.floating) or np.issubdtype(states.dtype, np.integer)):
        raise ValueError(f"states has dtype {states.dtype}; pass real numbers (float16/32/64)")
    if len(states) == 0:
        raise ValueError("states has no rows: there is nothing to count")
    symbols = np.asarray(symbols)
    if symbols.ndim == 1:
        symbols = symbols[:, None]
    if symbols.ndim != 2 or symbols.shape[1] == 0:
        raise ValueError(
            f"symbols has shape {symbols.shape}; it must be (N,) or (N, k) token ids, the prefix of each row"
        )
    if not np.issubdtype(symbols.dtype, np.integer):
        raise ValueError(
            f"symbols has dtype {symbols.dtype}; pass integer token ids (did you swap states and symbols?)"
        )
    if len(symbols) != len(states):
        raise ValueError(
            f"states has {len(states)} rows but symbols has {len(symbols)}: pass the token prefix of every "
            "state row, row for row"
        )
    if not (isinstance(tolerance, (int, float, np.floating, np.integer)) and math.isfinite(tolerance)
            and tolerance > 0):
        raise ValueError(f"tolerance is {tolerance!r}; it must be a finite number > 0 (default {DEFAULT_TOLERANCE})")
    _check_finite(states)
    return states, symbols


def _check_finite(states: np.ndarray) -> None:
    """Name the rows with NaN or inf: a distance to NaN compares false, so the row would silently stay apart."""
    nan_rows, inf_rows = [], []
    for part in _row_chunks(len(states), states.shape[1] * 2):
        block = states[part]
        nan_rows.append(np.flatnonzero(np.isnan(block).any(axis=1)) + part.start)
        inf_rows.append(np.flatnonzero(np.isinf(block).any(axis=1)) + part.start)
    problems = []
    for name, rows in (("NaN", np.concatenate(nan_rows)), ("inf", np.concatenate(inf_rows))):
        if rows.size:
            problems.append(f"{name} in {rows.size} rows (first: {rows[:_SHOWN_ROWS].tolist()})")
    if problems:
        raise ValueError(
            f"states has {' and '.join(problems)}; block states must be finite: look for fp16 overflow or "
            "a masked/padded position in the capture"
        )


def _scale(states: np.ndarray, spread: np.ndarray | None) -> _Scale:
    n_dims = states.shape[1]
    if spread is None:
        spread = _column_std(states)
    else:
        spread = np.asarray(spread, dtype=np.float64)
        if spread.shape != (n_dims,):
            raise ValueError(f"spread has shape {spread.shape}; it must be ({n_dims},), one scale per dimension")
        if not np.isfinite(spread).all() or (spread < 0).any():
            raise ValueError("spread must be finite and >= 0 (0 ignores a dimension); got "
                             f"{spread[~(np.isfinite(spread) & (spread >= 0))][:_SHOWN_ROWS].tolist()}")
    kept = np.flatnonzero(spread > 0)
    return _Scale(kept=kept, inverse=1.0 / spread[kept], n_dims=n_dims)


def _column_std(states: np.ndarray) -> np.ndarray:
    """Per-dimension std over all rows, in chunks, with constant columns exactly 0.

    A float64 mean of identical values can round to a different value, which would give a constant column
    a spread of ~1e-16. We compare min and max instead, so a constant column is ignored and does not dilute
    the RMS.
    """
    n, d = states.shape
    total = np.zeros(d)
    low = np.full(d, np.inf)
    high = np.full(d, -np.inf)
    for part in _row_chunks(n, d * 8 * 2):
        block = np.asarray(states[part], dtype=np.float64)
        total += block.sum(axis=0)
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
    mean = total / n
    squares = np.zeros(d)
    for part in _row_chunks(n, d * 8 * 2):
        deviation = np.asarray(states[part], dtype=np.float64) - mean
        squares += np.einsum("ij,ij->j", deviation, deviation)
    return np.where(high > low, np.sqrt(squares / n), 0.0)


def _row_chunks(n_rows: int, row_bytes: int) -> Iterator[slice]:
    """Slices of at most the rows whose temporaries (`row_bytes` each) fit the memory budget."""
    step = max(1, _MEMORY_BUDGET_BYTES // max(1, row_bytes))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _rms_between(states: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, scale: _Scale) -> np.ndarray:
    """Standardised RMS difference of each pair (rows_a[i], rows_b[i]), computed exactly in float64."""
    out = np.empty(len(rows_a))
    for part in _row_chunks(len(rows_a), scale.d_eff * 8 * 3):
        diff = (scale.take(states, rows_a[part]) - scale.take(states, rows_b[part])) * scale.inverse
        out[part] = np.sqrt(np.einsum("ij,ij->i", diff, diff) / scale.d_eff)
    return out


def _max_within_prefix_rms(states: np.ndarray, first: np.ndarray, inverse: np.ndarray, scale: _Scale) -> float:
    representative = first[inverse]
    rows = np.flatnonzero(representative != np.arange(len(states)))
    if rows.size == 0:
        return 0.0
    return float(_rms_between(states, rows, representative[rows], scale).max())


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


# --- classes of coinciding states -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sketch:
    """Per representative: projections on an orthonormal basis (column 0 sorts) and a hash of its raw bits."""

    projections: np.ndarray
    hashes: np.ndarray
    max_norm: float


def _state_classes(
    states: np.ndarray, first: np.ndarray, scale: _Scale, tolerance: float, seed: int
) -> np.ndarray:
    """Class label (0..n_states-1) of each prefix: connected components of "RMS difference <= tolerance"."""
    n = len(first)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    n_proj = min(_N_PROJECTIONS, scale.d_eff)
    basis, _ = np.linalg.qr(rng.standard_normal((scale.d_eff, n_proj)))
    hash_keys = rng.integers(0, np.iinfo(np.uint64).max, size=scale.d_eff, dtype=np.uint64, endpoint=True)
    sketch = _sketch(states, first, scale, basis, hash_keys | np.uint64(1))
    labels = _identical_leaders(states, first, scale, sketch.hashes)
    leaders = np.flatnonzero(labels == np.arange(n))
    # The projections carry rounding of order d * eps * ||z|| per coordinate. Widen the window by a bound on
    # it, so that no pair at exactly the tolerance is screened out by rounding.
    rounding = 2.0 * math.sqrt(n_proj) * (scale.d_eff + 2) * np.finfo(np.float64).eps * sketch.max_norm
    window = tolerance * math.sqrt(scale.d_eff) * (1.0 + 1e-9) + rounding
    labels = _link_near(states, first, scale, sketch.projections[leaders], leaders, labels, window, tolerance)
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _sketch(
    states: np.ndarray, first: np.ndarray, scale: _Scale, basis: np.ndarray, hash_keys: np.ndarray
) -> _Sketch:
    """One pass over the representatives: projections, norms and hashes.

    The rows are centred on the first representative before projecting, because the rounding of a projection
    grows with the row's norm. Centring makes that norm the size of state differences, not of the mean state.
    """
    n = len(first)
    projections = np.empty((n, basis.shape[1]))
    hashes = np.empty(n, dtype=np.uint64)
    centre = scale.take(states, first[:1])[0]
    max_norm = 0.0
    for part in _row_chunks(n, scale.d_eff * 8 * 3):
        raw = scale.take(states, first[part])
        # Linear hash of the float64 bits, wrapping mod 2**64. Equal hashes are only candidates:
        # _identical_leaders verifies them.
        hashes[part] = (raw.view(np.uint64) * hash_keys).sum(axis=1, dtype=np.uint64)
        z = (raw - centre) * scale.inverse
        projections[part] = z @ basis
        max_norm = max(max_norm, float(np.sqrt(np.einsum("ij,ij->i", z, z).max())))
    return _Sketch(projections=projections, hashes=hashes, max_norm=max_norm)


def _identical_leaders(states: np.ndarray, first: np.ndarray, scale: _Scale, hashes: np.ndarray) -> np.ndarray:
    """For each representative, the first representative with bit-identical kept coordinates (else itself).

    Exact copies make a degenerate window: thousands of prefixes mapped onto one state all project to
    the same point, and comparing them pairwise would be quadratic. Collapsing them first costs one hash
    per row and one verification per copy.
    """
    n = len(first)
    _, head, group = np.unique(hashes, return_index=True, return_inverse=True)
    leader = head[group.reshape(-1)]
    copies = np.flatnonzero(leader != np.arange(n))
    if copies.size:
        collided = _rms_between(states, first[copies], first[leader[copies]], scale) != 0.0
        leader[copies[collided]] = copies[collided]  # a hash collision (or -0.0 vs 0.0): the window decides
    return leader


class _Components:
    """Connected components built up from edges, with the edge buffer bounded.

    A dense cluster of near-identical states can have a quadratic number of matching pairs. The pending
    edges are folded into the labels once they reach a fraction of the node count. Callers also skip pairs
    that are already connected, so each cluster is linked about once, not once per pair.
    """

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels.astype(np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_pending = 0
        self._fold_at = max(1024, len(labels) // 8)

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.size == 0:
            return
        self._pending.append((a, b))
        self._n_pending += a.size
        if self._n_pending >= self._fold_at:
            self._fold()

    def finish(self) -> np.ndarray:
        self._fold()
        return self.labels

    def _fold(self) -> None:
        if not self._pending:
            return
        a = self.labels[np.concatenate([p[0] for p in self._pending])]
        b = self.labels[np.concatenate([p[1] for p in self._pending])]
        n = len(self.labels)
        graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        self.labels = component[self.labels]
        self._pending, self._n_pending = [], 0


def _link_near(
    states: np.ndarray,
    first: np.ndarray,
    scale: _Scale,
    projections: np.ndarray,
    leaders: np.ndarray,
    labels: np.ndarray,
    window: float,
    tolerance: float,
) -> np.ndarray:
    """Merge the leaders whose states lie within `tolerance`, checking only pairs inside the projection window.

    Sorted by projection 0, leader i can only match i+1 .. i+reach[i]. For offset k we compare every i whose
    reach is >= k with i+k. Those i are a prefix of the leaders ordered by decreasing reach, so each offset
    costs only its own pairs. The memory per offset is O(n_leaders * n_proj), however wide the window.
    """
    order = np.argsort(projections[:, 0], kind="stable")
    line = projections[order]
    nodes = leaders[order]
    ends = np.searchsorted(line[:, 0], line[:, 0] + window, side="right")
    reach = ends - np.arange(len(line)) - 1
    by_reach = np.argsort(-reach, kind="stable")
    descending = -reach[by_reach]  # ascending, for searchsorted
    graph = _Components(labels)
    for k in range(1, int(reach.max(initial=0)) + 1):
        i = by_reach[: np.searchsorted(descending, -k, side="right")]
        j = i + k
        a, b = nodes[i], nodes[j]
        open_ = graph.labels[a] != graph.labels[b]
        gap = line[i[open_]] - line[j[open_]]
        close = np.einsum("ij,ij->i", gap, gap) <= window * window
        a, b = a[open_][close], b[open_][close]
        if a.size:
            near = _rms_between(states, first[a], first[b], scale) <= tolerance
            graph.add(a[near], b[near])
    return graph.finish()
