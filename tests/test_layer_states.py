"""`LayerStates` joins macro and micro states and hands a job its states expanded or as weighted atoms. Expected
values are built by hand from the arrays (a Counter of tokens, rows picked by index), not by the code under test."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ie_ray.reduce import EstimateJob
from ie_ray.reduce.layer_states import PREFIX_ATOM_TOLERANCE, LayerStates

N, D = 40, 6


def _states(jitter: float = 0.0) -> LayerStates:
    """Token 0 is one of 3 values, token 1 a constant separator, token 2 one of 20 values; a macro state is a
    function of the prefix (plus optional per-row jitter); a micro state a function of the token."""
    rng = np.random.default_rng(0)
    ids = np.stack([rng.integers(10, 13, N), np.full(N, 5), rng.integers(20, 40, N)], axis=1)
    table = rng.normal(size=(100, D))
    def state(prefix: np.ndarray, salt: int) -> np.ndarray:
        return sum(table[(int(t) * 7 + salt * 13 + k) % 100] * (k + 1) for k, t in enumerate(prefix))
    pre = np.stack([[state(row[: t + 1], 0) for t in range(3)] for row in ids]).astype(np.float32)
    post = np.stack([[state(row[: t + 1], 1) for t in range(3)] for row in ids]).astype(np.float32)
    post[:, 0] += jitter * rng.normal(size=(N, D)).astype(np.float32)
    unique = np.unique(ids)
    mpre = np.stack([table[int(t) % 100] for t in unique]).astype(np.float32)
    mpost = np.stack([table[(int(t) + 50) % 100] for t in unique]).astype(np.float32)
    return LayerStates(4, ids, (0, 1, 2), pre, post, mpre, mpost, np.searchsorted(unique, ids))


def _job(level: str, position: int, states: LayerStates) -> EstimateJob:
    symbols = states.symbols(EstimateJob(4, position, level, 0, 0.0, 0, N))
    return EstimateJob(4, position, level, 0, 0.0, len(np.unique(symbols, axis=0)), N)


def test_micro_atoms_are_the_distinct_tokens_with_their_counts():
    states = _states()
    job = _job("micro", 2, states)
    atoms = states.atoms(job)
    counts = Counter(states.input_ids[:, 2].tolist())
    unique = np.unique(states.input_ids)
    assert atoms.counts.sum() == N and sorted(atoms.counts.tolist()) == sorted(counts.values())
    x, y = states.pair(job)
    for i, token in enumerate(sorted(counts)):  # atoms come in token order
        row = int(np.flatnonzero(unique == token)[0])
        np.testing.assert_array_equal(atoms.x[i], states.micro_pre[row])
        np.testing.assert_array_equal(atoms.y[i], states.micro_post[row])
        assert atoms.counts[i] == counts[token]
        np.testing.assert_array_equal(x[states.input_ids[:, 2] == token][0], states.micro_pre[row])


def test_macro_atoms_only_for_few_prefixes_that_are_functions_of_the_prefix():
    states = _states()
    few = _job("macro", 1, states)  # 3 distinct prefixes (token 0, separator)
    atoms = states.atoms(few)
    assert atoms is not None and atoms.counts.sum() == N and len(atoms.counts) == few.n_distinct == 3
    _, first = np.unique(states.input_ids[:, :2], axis=0, return_index=True)
    np.testing.assert_array_equal(atoms.x, states.macro_pre[first, 1])
    many = _job("macro", 2, states)  # up to 60 prefixes among 40 samples: more than half distinct
    assert many.n_distinct > N / 2 and states.atoms(many) is None


@pytest.mark.parametrize(("jitter", "merged"), [(0.1 * PREFIX_ATOM_TOLERANCE, True), (100 * PREFIX_ATOM_TOLERANCE, False)])
def test_rows_of_one_prefix_are_one_atom_only_within_the_tolerance(jitter, merged):
    states = _states(jitter)
    assert (states.atoms(_job("macro", 0, states)) is not None) == merged


@pytest.mark.parametrize("position", [1, 2])
def test_a_macro_reading_reads_its_own_positions_states(position):
    """The smoothed reading of the macro job at position t reads the states at t, not those of another analysed
    position. At a small tau the plug-in is the entropy of the distinct prefixes (their states are distinct), counted
    here by hand: position 0 has 3 prefixes (1.5 bits), position 1 the same 3, position 2 up to 40 (~5 bits) among
    N = 40. A reading of position 0's states at position 2 is off by ~3.5 bits against a 0.05-bit tolerance; at
    position 1 the entropy is the same, so the test compares the states themselves."""
    from ie_ray.estimators.smoothed import SmoothedParams
    from ie_ray.reduce.smoothed_reading import SmoothedMIReading

    states = _states()
    job = _job("macro", position, states)
    reading = SmoothedMIReading(SmoothedParams(tau=0.02, taus=(), n_draws=400, n_bootstrap=0,
                                               mc_tolerance_fraction=0.0, dtype="float64"), "pooled")
    (row,) = reading.fit_layer(states, [job])
    _, counts = np.unique(states.input_ids[:, : position + 1], axis=0, return_counts=True)
    p = counts / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    assert row.position == position and row.mi_bits == pytest.approx(entropy, abs=0.05), (row.mi_bits, entropy)
    x, y = states.pair(job)
    np.testing.assert_array_equal(x, states.macro_pre[:, position])
    np.testing.assert_array_equal(y, states.macro_post[:, position])
    assert np.abs(x - states.macro_pre[:, 0]).max() > 1.0  # position 0's states are far from these


def test_states_of_another_corpus_are_refused():
    states = _states()
    with pytest.raises(ValueError, match="extracted rows for 39 samples"):
        LayerStates(4, states.input_ids[:-1], (0, 1, 2), states.macro_pre, states.macro_post)


def test_blocks_read_in_order_read_each_shared_stream_once(tmp_path, monkeypatch):
    """Block l's output is block l + 1's input: `LastStreams` hands the second block the array the first read,
    read-only, and the states equal a fresh read."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data._internal.tensor_extensions.arrow import ArrowTensorArray  # the type extraction writes

    from ie_ray import store

    rng = np.random.default_rng(0)
    streams = rng.standard_normal((3, 5, 2, 4)).astype(np.float16)  # 3 streams = blocks 0 and 1
    for s in range(3):
        (tmp_path / f"stream={s}").mkdir()
        tensor = ArrowTensorArray.from_numpy(streams[s])
        pq.write_table(pa.table({"sample_id": np.arange(5)[::-1].copy(), "resid": tensor}),
                       tmp_path / f"stream={s}" / "part.parquet")
    reads = Counter()
    original = store.read_stream_states

    def counting(states_dir, stream, *dtype):
        reads[stream] += 1
        return original(states_dir, stream, *dtype)

    monkeypatch.setattr(store, "read_stream_states", counting)
    reader = store.LastStreams()
    _, pre0, post0 = store.read_layer_states(tmp_path, 0, reader)
    _, pre1, post1 = store.read_layer_states(tmp_path, 1, reader)
    assert reads == {0: 1, 1: 1, 2: 1} and post0 is pre1 and not pre1.flags.writeable
    ids, fresh_pre, fresh_post = store.read_layer_states(tmp_path, 1)
    np.testing.assert_array_equal(ids, np.arange(5))
    np.testing.assert_array_equal(fresh_pre, pre1)
    np.testing.assert_array_equal(fresh_post, streams[2][::-1].astype(np.float32))


def test_states_kept_in_float16_reach_the_readings_as_the_same_float32_numbers():
    """The reducer keeps a block's states as stored (float16: half the object store); a job's pair is float32
    and equal to the float32 states, and the noise scale does not depend on the storage dtype."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, size=(40, 3))
    pre16, post16 = rng.standard_normal((2, 40, 3, 8)).astype(np.float16)
    wide = LayerStates(0, ids, (0, 1, 2), pre16.astype(np.float32), post16.astype(np.float32))
    half = LayerStates(0, ids, (0, 1, 2), pre16, post16)
    job = EstimateJob(layer=0, position=1, level="macro", seed=0, ceiling_bits=5.0, n_distinct=40, n_samples=40)
    for a, b in zip(half.pair(job), wide.pair(job)):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    for side in ("input", "output"):
        np.testing.assert_allclose(half.scale(side).pooled.spread, wide.scale(side).pooled.spread, rtol=1e-12)
        np.testing.assert_allclose(half.scale(side).pooled.center, wide.scale(side).pooled.center, rtol=1e-12)
    x = pre16[:, [0, 1, 2]].astype(np.float64)  # the rule by hand: mean over positions of each one's variance
    np.testing.assert_allclose(half.scale("input", "pooled").pooled.spread ** 2, x.var(axis=0).mean(axis=0),
                               rtol=1e-10)
