"""The readings' configuration, the noise-scale rule, and the flags that keep a failed MINE reading from counting
as `ok` (the default job's block 10, position 5 case from the issue tracker)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ie_ray.config import parse_config
from ie_ray.errors import ConfigError
from ie_ray.estimators.smoothed import Scale
from ie_ray.ie import information_emergence, model_summary
from ie_ray.noise_scale import SINK_NORM_RATIO, block_scale, sink_positions, within_position_scale
from ie_ray.reduce import MAX_INTERVAL_BITS, MEMORISED_MARGIN_BITS, EstimateJob, MIRow, mine_row, reading_flag


def _mine_row(**result) -> MIRow:
    job = EstimateJob(layer=10, position=5, level="macro", seed=0, ceiling_bits=10.82, n_distinct=1853,
                      n_samples=2000)
    base = dict(mi_bits=1.0, ci_low=0.5, ci_high=1.5, max_train_bits=5.0, flag="ok", readout="heldout")
    return mine_row(job, {**base, **result})


def test_the_default_jobs_failed_mine_reading_is_flagged_and_its_ie_is_not_ok():
    # block 10, position 5 of the default job before this check: held-out -9.61 bits, interval [-11.5, 11.8],
    # best training bound 27.8 bits against a 10.8-bit ceiling, flagged ok by the estimator itself
    row = _mine_row(mi_bits=-9.61, ci_low=-11.5, ci_high=11.8, max_train_bits=27.8)
    assert row.flag == "memorised"
    mi = pd.DataFrame([
        dict(model="m", corpus="c", shots=4, layer=10, position=5, level="macro", seed=0, mi_bits=row.mi_bits,
             ceiling_bits=10.82, bootstrap_bits=np.linspace(-11.5, 11.8, 20), flag=row.flag),
        *[dict(model="m", corpus="c", shots=4, layer=10, position=s, level="micro", seed=0, mi_bits=4.6,
               ceiling_bits=4.64, bootstrap_bits=np.full(20, 4.6), flag="ok") for s in range(6)],
        *[dict(model="m", corpus="c", shots=4, layer=10, position=s, level="macro", seed=0, mi_bits=4.6,
               ceiling_bits=4.64, bootstrap_bits=np.full(20, 4.6), flag="ok") for s in range(5)],
    ])
    ie = information_emergence(mi)
    assert ie[ie.position == 5].flag.iloc[0] == "memorised"
    summary = model_summary(ie)
    assert summary.flag.iloc[0] == "memorised" and summary.n_layers_flagged.iloc[0] == 1


@pytest.mark.parametrize("result, flag", [
    (dict(mi_bits=12.0), "above_ceiling"),
    (dict(max_train_bits=10.82 + MEMORISED_MARGIN_BITS + 0.01), "memorised"),
    (dict(max_train_bits=10.82 + MEMORISED_MARGIN_BITS - 0.01), "ok"),
    (dict(ci_low=0.0, ci_high=MAX_INTERVAL_BITS + 0.01), "unstable"),
    (dict(ci_low=0.0, ci_high=MAX_INTERVAL_BITS - 0.01), "ok"),
    (dict(flag="diverged"), "diverged"),
])
def test_mine_reading_flags_at_their_thresholds(result, flag):
    assert _mine_row(**result).flag == flag


def test_reading_flag_ignores_a_missing_training_bound():
    assert reading_flag(1.0, 0.5, 1.5, float("nan"), 4.0) == "ok"


def test_sink_positions_are_found_by_norm_ratio():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(50, 6, 8))
    states[:, 0] *= 100.0  # an attention sink
    states[:, 3] *= SINK_NORM_RATIO * 0.5  # large but not a sink
    sinks, norms = sink_positions(states)
    assert sinks == [0] and norms[0] > SINK_NORM_RATIO * np.median(norms)


def test_within_position_scale_ignores_differences_between_positions():
    rng = np.random.default_rng(1)
    within = rng.normal(size=(400, 2, 3))
    shifted = within + np.array([0.0, 50.0])[None, :, None]  # position 1's mean is far from position 0's
    scale = within_position_scale(shifted)
    np.testing.assert_allclose(scale.spread, np.sqrt(within.var(axis=0).mean(axis=0)), rtol=1e-12)
    assert (scale.spread < 1.5).all()  # a plain pooled std would read ~25 here
    assert (Scale.of(shifted).spread > 20).all()


def test_block_scale_rules():
    rng = np.random.default_rng(2)
    states = rng.normal(size=(300, 4, 5))
    states[:, 0] *= 1000.0
    no_sink = block_scale(states, [0, 1, 2, 3], "pooled_no_sink")
    pooled = block_scale(states, [0, 1, 2, 3], "pooled")
    per = block_scale(states, [0, 1, 2, 3], "per_position")
    assert no_sink.used_positions == (1, 2, 3) and no_sink.sink_positions == (0,)
    assert pooled.used_positions == (0, 1, 2, 3)
    assert (no_sink.for_position(0).spread < 2).all() and (pooled.for_position(0).spread > 100).all()
    assert per.for_position(0) is not per.for_position(2) and (per.for_position(0).spread > 100).all()
    with pytest.raises(ValueError, match="unknown scale rule"):
        block_scale(states, [0, 1, 2, 3], "global")


def test_total_no_sink_rule_is_the_variance_of_the_non_sink_states_pooled_together():
    """The second convention of issue 24: between-position spread counts, the sink still does not. Expected value
    derived independently: numpy's variance of positions 1-3 stacked into one sample."""
    rng = np.random.default_rng(3)
    states = rng.normal(size=(300, 4, 5)) + np.array([0.0, 0.0, 8.0, -4.0])[None, :, None]
    states[:, 0] *= 1000.0
    total = block_scale(states, [0, 1, 2, 3], "total_no_sink")
    within = block_scale(states, [0, 1, 2, 3], "pooled_no_sink")
    assert total.used_positions == (1, 2, 3) and total.sink_positions == (0,)
    stacked = states[:, 1:].transpose(1, 0, 2).reshape(-1, 5)
    np.testing.assert_allclose(total.for_position(2).spread, stacked.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(total.for_position(2).center, stacked.mean(axis=0), rtol=1e-12)
    assert (total.for_position(1).spread > 3 * within.for_position(1).spread).all()


@pytest.mark.parametrize("change, message", [
    ({"readings": []}, "readings must be a non-empty list"),
    ({"readings": ["smoothed", "ksg"]}, "readings must be a non-empty list"),
    ({"smoothed": {"tau": 0}}, "smoothed: smoothed tau values must be finite and > 0"),
    ({"smoothed": {"sigma": 2.0}}, r"unknown smoothed-MI setting\(s\) \['sigma'\]"),
    ({"smoothed": {"scale_rule": "global"}}, "smoothed.scale_rule 'global' is unknown"),
    ({"entropy_limit": {"tolerance": -1}}, "entropy_limit.tolerance must be a number > 0"),
    ({"entropy_limit": {"tol": 1e-3}}, r"unknown key\(s\) \['tol'\] in entropy_limit"),
    ({"mine": {"positions": "first"}}, "mine.positions must be one of"),
])
def test_bad_readings_settings_are_clear_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"models": ["tiny-gpt2"], **change})


def test_readings_defaults_and_headline():
    config = parse_config({"models": ["tiny-gpt2"]})
    assert config.readings == ("smoothed", "entropy_limit", "mine") and config.headline == "smoothed"
    assert parse_config({"models": ["tiny-gpt2"], "readings": ["mine"]}).headline == "mine"
    custom = parse_config({"models": ["tiny-gpt2"], "smoothed": {"tau": 0.5, "taus": [1.0]}})
    assert custom.smoothed_params().grid == (0.5, 1.0)
    # MINE's sample-size checks do not apply when MINE is not run
    parse_config({"models": ["tiny-gpt2"], "readings": ["smoothed"], "estimator": {"batch_size": 512},
                  "corpora": [{"n_samples": 100}]})
