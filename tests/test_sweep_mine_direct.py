"""Sweep = direct for MINE: every MINE row of a sweep's mi.parquet equals `estimate_mine` run by hand on the stored
states of its (layer, position, level) with the row's own `estimator_seed` and the sweep's MINEParams, and every
`ie_mine_*` figure of ie.parquet equals the IE formula applied by hand to those rows.

The reducer fits several estimates as one ensemble (`estimators_per_task`); `fit_mine_ensemble` documents estimate
i as equal to `estimate_mine(xs[i], ...)` "up to float rounding" (bitwise on this CPU build at these dims, see
test_mine.py), so values are compared to 1e-6 bits, not bit for bit. What is compared is everything a user reads:
the value, the held-out and training readings, the interval, the bootstrap replicates, the flag and the entropy
ceiling. The states a row must use are rebuilt here from the run's manifest: block l's input/output at column
`position` of the full-context states for macro rows; for micro rows the single-token states, joined back to
each sample by the token id at that position.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ie_ray import store
from ie_ray.config import parse_config
from ie_ray.estimators import estimate_mine
from ie_ray.reduce import reading_flag
from ie_ray.sweep import run_sweep
from test_sweep import TINY_SWEEP

#: test_sweep.py's tiny sweep, one model, two blocks, MINE only.
MINE_ONLY = dict(TINY_SWEEP, name="tiny-mine-direct", models=["tiny-llama"], layers=[1, 3], readings=["mine"])
#: Bits. Ensemble vs one-by-one agree to float rounding (measured: exactly, at these shapes).
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def mine_run(ray_local, tmp_path_factory):
    return run_sweep(parse_config(MINE_ONLY), tmp_path_factory.mktemp("mine-direct"))


def _states(run_dir: Path):
    """{layer: (pre (N, P, d), post (N, P, d), micro pre (V, d), micro post (V, d))} and the corpus ids (N, P)."""
    config = parse_config(MINE_ONLY)
    cell = f"{config.corpora[0].label}-{config.shots[0]}shot"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    macro_dir = Path(manifest["corpora"][f"tiny-llama/{cell}"]["states"])
    micro_dir = Path(manifest["models"]["tiny-llama"]["micro_states"])
    corpus = pd.read_parquet(run_dir / "corpora" / "tiny-llama" / f"{cell}.parquet")
    input_ids = np.stack(corpus.input_ids.to_numpy())
    states = {}
    for layer in MINE_ONLY["layers"]:
        ids, pre, post = store.read_layer_states(macro_dir, layer)
        assert ids.tolist() == list(range(len(input_ids)))
        _, mpre, mpost = store.read_layer_states(micro_dir, layer)
        states[layer] = (pre, post, mpre[:, 0], mpost[:, 0])
    return states, input_ids


def _entropy_bits(symbols) -> float:
    """Plug-in entropy of the rows, counted with a Counter (not the package's `entropy_bits`)."""
    counts = np.array(list(Counter(map(tuple, np.atleast_2d(symbols.T).T)).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_every_mine_row_equals_a_direct_estimate_on_the_stored_states(mine_run, one_torch_thread):
    # the reducer's tasks fit with torch threads = num_cpus_per_task = 1: same summation order here
    params = parse_config(MINE_ONLY).estimator_params()
    mi = mine_run.mi
    assert set(mi.reading) == {"mine"}
    states, input_ids = _states(mine_run.run_dir)
    n_positions = input_ids.shape[1]
    vocabulary = np.unique(input_ids)  # the micro states' rows: one per distinct token id, in sorted order
    # 2 layers x (every macro position + every micro position)
    assert len(mi) == 2 * 2 * n_positions
    fitted = 0
    for row in mi.itertuples():
        pre, post, mpre, mpost = states[row.layer]
        if row.level == "macro":
            x, y = pre[:, row.position], post[:, row.position]
            symbols = input_ids[:, : row.position + 1]
        else:
            rows = np.searchsorted(vocabulary, input_ids[:, row.position])
            assert (vocabulary[rows] == input_ids[:, row.position]).all()
            x, y = mpre[rows], mpost[rows]
            symbols = input_ids[:, row.position]
        where = (row.layer, row.position, row.level)
        assert row.ceiling_bits == pytest.approx(_entropy_bits(symbols), abs=1e-12), where
        if row.flag == "constant":
            # one input value: MI is exactly 0 by definition, and no estimator is run
            assert len(np.unique(symbols)) == 1 and row.mi_bits == 0.0, where
            continue
        assert len(np.unique(symbols, axis=0)) > 1, where
        direct = estimate_mine(x, y, params, seed=int(row.estimator_seed))
        fitted += 1
        for column in ("mi_bits", "heldout_bits", "max_train_bits", "last_train_bits", "ci_low", "ci_high"):
            assert getattr(row, column) == pytest.approx(getattr(direct, column), abs=TOLERANCE), (where, column)
        np.testing.assert_allclose(row.bootstrap_bits, direct.bootstrap, rtol=0, atol=TOLERANCE, err_msg=str(where))
        assert (row.n_samples, row.n_heldout) == (direct.n_samples, direct.n_heldout), where
        expected_flag = direct.flag if direct.flag != "ok" else reading_flag(
            direct.mi_bits, direct.ci_low, direct.ci_high, direct.max_train_bits, row.ceiling_bits)
        assert row.flag == expected_flag, where
    assert fitted >= 2 * n_positions  # every macro row at least (separators fed alone are constant)


def test_ie_mine_is_macro_minus_mean_micro_by_hand(mine_run):
    mi = pd.read_parquet(mine_run.run_dir / "mi.parquet")
    ie = pd.read_parquet(mine_run.run_dir / "ie.parquet")
    assert (ie.headline == "mine").all()
    assert len(ie) == 2 * mi.position.nunique()
    for row in ie.itertuples():
        part = mi[mi.layer == row.layer]
        macro = part[(part.level == "macro") & (part.position == row.position)]
        micro = part[(part.level == "micro") & (part.position <= row.position)].sort_values("position")
        assert len(macro) == 1 and micro.position.tolist() == list(range(row.position + 1))
        macro_bits = float(macro.mi_bits.iloc[0])
        micro_bits = float(sum(micro.mi_bits)) / (row.position + 1)
        assert row.ie_mine_bits == pytest.approx(macro_bits - micro_bits, abs=1e-12)
        assert row.ie_mine_macro_bits == pytest.approx(macro_bits, abs=1e-12)
        assert row.ie_mine_micro_bits == pytest.approx(micro_bits, abs=1e-12)
        assert row.ie_bits == row.ie_mine_bits  # MINE is the headline when it is the only reading
        # the interval: 2.5 and 97.5 percentiles of the replicate-wise difference
        reps = np.asarray(macro.bootstrap_bits.iloc[0]) - np.mean(np.stack(micro.bootstrap_bits.to_numpy()), axis=0)
        low, high = np.quantile(reps, [0.025, 0.975])
        assert (row.ie_mine_ci_low, row.ie_mine_ci_high) == pytest.approx((low, high), abs=1e-12)
        flags = {f for f in pd.concat([macro, micro]).flag if f not in ("ok", "constant")}
        assert row.ie_mine_flag == (",".join(sorted(flags)) if flags else "ok")
    assert all(math.isfinite(v) for v in ie.ie_mine_bits)
