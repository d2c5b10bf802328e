"""Sweep = direct: every smoothed-MI and entropy-limit row of a sweep equals the estimator run by hand on the
stored states, with the documented noise scale and the row's own seed; and a sweep without MINE trains no critic."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ie_ray import store
from ie_ray.config import parse_config
from ie_ray.entropy_limit import distinct_states
from ie_ray.estimators.smoothed import smoothed_mi
from ie_ray.noise_scale import block_scale
from ie_ray.sweep import run_sweep

NO_MINE = {
    "name": "tiny-readings",
    "models": ["tiny-llama"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8, "n_samples": 200}],
    "shots": [2],
    "layers": [1, 3],
    "positions": "all",
    "readings": ["smoothed", "entropy_limit"],
    "smoothed": {"tau": 0.25, "taus": [0.1, 0.5], "n_draws": 300, "n_bootstrap": 20},
    "extract": {"batch_size": 50, "keep_states": True},  # the tests recompute every row from the stored states
}


@pytest.fixture(scope="module")
def no_mine_run(ray_local, tmp_path_factory):
    from ie_ray.reduce.mine_reading import MineReading

    def no_critic(*args, **kwargs):
        raise AssertionError("a sweep without `mine` in its readings must not build a MINE reading")

    original, MineReading.from_config = MineReading.from_config, no_critic
    try:
        run_dir = tmp_path_factory.mktemp("readings")
        return run_sweep(parse_config(NO_MINE), run_dir)
    finally:
        MineReading.from_config = original


def _stored_states(run_dir: Path, layer: int):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    macro_dir = Path(manifest["corpora"]["tiny-llama/icl-country-2shot"]["states"])
    micro_dir = Path(manifest["models"]["tiny-llama"]["micro_states"])
    _, pre, post = store.read_layer_states(macro_dir, layer)
    _, mpre, mpost = store.read_layer_states(micro_dir, layer)
    corpus = pd.read_parquet(run_dir / "corpora" / "tiny-llama" / "icl-country-2shot.parquet")
    input_ids = np.stack(corpus.input_ids.to_numpy())
    return pre, post, mpre[:, 0], mpost[:, 0], input_ids


def test_no_mine_reading_trains_no_critic_and_headline_is_smoothed(no_mine_run):
    mi = no_mine_run.mi
    assert set(mi.reading) == {"smoothed", "entropy_limit"}
    assert "ie_mine_bits" not in no_mine_run.ie.columns
    assert (no_mine_run.ie.headline == "smoothed tau=0.25").all()
    assert np.isfinite(no_mine_run.ie.ie_bits).all() and np.isfinite(no_mine_run.ie.ie_limit_bits).all()


def test_every_smoothed_row_equals_a_direct_estimate_on_the_stored_states(no_mine_run):
    import torch

    torch.set_num_threads(1)  # the reducer's tasks run with one thread: same summation order, same bits
    config = parse_config(NO_MINE)
    params = config.smoothed_params()
    mi = no_mine_run.mi
    smoothed = mi[(mi.reading == "smoothed") & (mi.flag != "constant")]
    assert len(smoothed) > 0
    for layer in NO_MINE["layers"]:
        pre, post, mpre, mpost, input_ids = _stored_states(no_mine_run.run_dir, layer)
        positions = list(range(pre.shape[1]))
        scale_in = block_scale(pre, positions, config.scale_rule).for_position(0)
        scale_out = block_scale(post, positions, config.scale_rule).for_position(0)
        unique = np.unique(input_ids)
        for (position, level), rows in smoothed[smoothed.layer == layer].groupby(["position", "level"]):
            # the documented atoms: a micro job's distinct tokens; a macro job's distinct prefixes when they are
            # at most half the samples (the first row of each stands for it); else every row
            if level == "macro":
                _, first, counts = np.unique(input_ids[:, : position + 1], axis=0, return_index=True,
                                             return_counts=True)
                if len(first) <= len(input_ids) / 2:
                    x, y = pre[first, position], post[first, position]
                else:
                    x, y, counts = pre[:, position], post[:, position], None
            else:
                tokens, counts = np.unique(input_ids[:, position], return_counts=True)
                r = np.searchsorted(unique, tokens)
                x, y = mpre[r], mpost[r]
            seed = int(rows.estimator_seed.iloc[0])
            direct = smoothed_mi(x, y, params, seed=seed, scale_x=scale_in, scale_y=scale_out, counts=counts)
            for row in rows.itertuples():
                reading = direct.at(row.tau)
                assert row.mi_bits == reading.mi_bits, (layer, position, level, row.tau)
                assert row.half_sample_bits == reading.half_bits
                np.testing.assert_array_equal([row.ci_low, row.ci_high], [reading.ci_low, reading.ci_high])
                assert (row.interval == "bootstrap") == reading.reported  # NaN interval at a secondary tau


def test_entropy_limit_rows_equal_direct_counts_and_the_ceiling(no_mine_run):
    config = parse_config(NO_MINE)
    mi = no_mine_run.mi
    limit = mi[mi.reading == "entropy_limit"]
    layer = 3
    pre, post, mpre, mpost, input_ids = _stored_states(no_mine_run.run_dir, layer)
    spread = block_scale(post, list(range(post.shape[1])), config.scale_rule).for_position(0).spread
    for row in limit[limit.layer == layer].itertuples():
        if row.level == "macro":
            counted = distinct_states(post[:, row.position], input_ids[:, : row.position + 1], spread=spread)
        else:
            r = np.searchsorted(np.unique(input_ids), input_ids[:, row.position])
            counted = distinct_states(mpost[r], input_ids[:, row.position], spread=spread)
        assert row.mi_bits == counted.entropy_bits
        # a random-init block is injective on these prefixes: the limit is the prefix entropy (the ceiling)
        assert row.mi_bits == pytest.approx(row.ceiling_bits, abs=1e-9)
        assert row.n_merged == 0
    assert (limit.mi_bits <= np.log2(NO_MINE["corpora"][0]["n_samples"]) + 1e-9).all()
    assert (limit.wall_s > 0).all()  # the count's own seconds, so a run shows what each reading costs


def test_ie_limit_is_macro_count_minus_mean_micro_count(no_mine_run):
    ie, mi = no_mine_run.ie, no_mine_run.mi
    limit = mi[(mi.reading == "entropy_limit") & (mi.layer == 1)].set_index(["level", "position"]).mi_bits
    row = ie[(ie.layer == 1) & (ie.position == 3)].iloc[0]
    expected = limit[("macro", 3)] - np.mean([limit[("micro", s)] for s in range(4)])
    assert row.ie_limit_bits == pytest.approx(expected)
    # the separator fed alone is one token: its micro count is exactly 0 bits
    assert limit[("micro", 1)] == 0.0 and math.isclose(limit[("micro", 0)], limit[("macro", 0)])


def test_scales_table_names_the_rule_and_sinks(no_mine_run):
    scales = pd.read_csv(no_mine_run.run_dir / "scales.csv")
    assert set(scales.side) == {"input", "output"} and set(scales.layer) == set(NO_MINE["layers"])
    assert (scales.rule == "pooled_no_sink").all() and (scales.d_eff > 0).all()
    report = (no_mine_run.run_dir / "report.md").read_text()
    assert "Three readings of every IE figure" in report and "No MINE estimates" in report


def test_real_population_is_the_distinct_stored_states_of_the_cell_with_counts(no_mine_run):
    """The calibration's population (ie_ray/validate_smoothed_real.py) read back independently: numpy's unique
    rows of the stored block input/output at that position, their counts, and the sweep's block scale."""
    from ie_ray.validate_smoothed_real import real_population, run_population

    pre, post, _, _, _ = _stored_states(no_mine_run.run_dir, 3)
    position = pre.shape[1] - 1
    pop = real_population(no_mine_run.run_dir, 3, position)
    rows = np.concatenate([pre[:, position], post[:, position]], axis=1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    assert pop.atoms == len(unique) and pop.counts.sum() == len(pre)
    got = np.concatenate([pop.x, pop.y], axis=1)
    order = np.lexsort(got.T[::-1])
    np.testing.assert_array_equal(got[order], unique)
    np.testing.assert_array_equal(pop.counts[order], counts)
    scale = block_scale(pre, list(range(pre.shape[1])), "pooled_no_sink").for_position(position)
    np.testing.assert_allclose(pop.scale_x.spread, scale.spread, rtol=1e-6)
    table = run_population(pop, no_mine_run.run_dir / "calibration", [0.5], 1, [0.25, 1.0], truth_draws=400,
                           log=lambda _: None)
    assert len(table) == 2 and table.truth_bits.notna().all() and (table.n == round(pop.atoms * 0.5)).all()
    assert (table.kt_low <= table.kt_high).all()
