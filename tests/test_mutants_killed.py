"""Tests written against the mutants that survived `benchmarks/mutation.py` (issue 17, item 6; issue 28, item 3).

Each test names the behaviour a surviving mutant changed without any other test noticing: the order and index of
the IE tables, the columns every reading brings, the rows a reading that covers fewer positions or models keeps,
the error messages' advice, MINE-EMA's surrogate staying one value per estimator of the ensemble, the reducer's
row of one estimate (its identity, its default flag, the flag thresholds taken exactly at their limits), and the
capture of blocks that return a tuple (transformers v4), which the installed transformers never exercises.
benchmarks/results/mutation.md lists the mutants that remain, each with the reason it is equivalent to the original.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ie_ray.capture import _first_tensor, absolute_positions, pad_batch
from ie_ray.estimators.bounds import LOG2E, EMADenominator
from ie_ray.estimators.smoothed import (
    DEFAULT_DRAWS,
    Scale,
    SmoothedParams,
    SmoothedReading,
    SmoothedResult,
    _chunk_size,
    smoothed_mi,
)
from ie_ray.ie import (
    GROUP_KEYS,
    TABLE_KEYS,
    ie_by_reading,
    information_emergence,
    layer_summary,
    model_summary,
    models_side_by_side,
    side_by_side,
)
from ie_ray.noise_scale import BlockScale, block_scale, sink_positions
from ie_ray.reduce import (
    ABOVE_CEILING_TOLERANCE_BITS,
    MAX_INTERVAL_BITS,
    MEMORISED_MARGIN_BITS,
    EntropyLimitReading,
    EstimateJob,
    SmoothedMIReading,
    TaskResources,
    mine_row,
    plan_jobs,
    reading_flag,
)
from ie_ray.reduce.layer_states import LayerStates, _max_rms_from_first
from ie_ray.reduce.scheduler import fit_task

MACRO = [1.0, 2.5, 4.0]
MICRO = [0.5, 1.0, 0.0]


def estimates(macro=MACRO, micro=MICRO, *, positions=None, replicates=lambda v: v + np.array([-0.1, 0.0, 0.1]),
              **keys) -> list[dict]:
    """MI rows of one (model, corpus, shots, layer): macro at `positions` (default: all), micro at every position."""
    base = dict(model="m", corpus="c", shots=2, layer=0, seed=0, reading="mine", tau=math.nan)
    base.update(keys)
    rows = []
    for level, values in (("macro", macro), ("micro", micro)):
        for t, value in enumerate(values):
            if level == "macro" and positions is not None and t not in positions:
                continue
            rows.append(dict(base, position=t, level=level, mi_bits=value, ceiling_bits=9.0, flag="ok",
                             bootstrap_bits=replicates(value)))
    return rows


def table(*groups: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in groups for row in rows])


def ie_of(macro: list[float], micro: list[float], t: int) -> float:
    return macro[t] - float(np.mean(micro[: t + 1]))


# --- information_emergence / layer_summary ----------------------------------------------------------------------


def test_ie_table_comes_out_sorted_whatever_order_the_estimates_arrive_in() -> None:
    # the reducer gathers estimates in completion order: the IE table must not depend on it
    groups = [estimates(model="z", layer=1), estimates(model="z", layer=0), estimates(model="a", layer=3)]
    ie = information_emergence(table(*groups))
    assert ie[GROUP_KEYS + ["position"]].equals(ie[GROUP_KEYS + ["position"]].sort_values(GROUP_KEYS + ["position"])
                                                .reset_index(drop=True))
    assert ie.model.tolist()[:3] == ["a"] * 3


def test_missing_micro_error_says_what_to_request() -> None:
    with pytest.raises(ValueError, match=r"at positions \[1\]; request positions 'all' \(IE at t averages the micro "
                                         r"MI of positions 0\.\.t\)$"):
        information_emergence(table(estimates(micro=MICRO[:1])))


def test_macro_mi_is_the_mean_of_point_estimates_not_of_replicates() -> None:
    # replicates skewed away from the estimate (a bootstrap need not be centred): only the interval may see them
    ie = information_emergence(table(estimates(replicates=lambda v: v + np.array([3.0, 4.0, 5.0]))))
    assert ie.mi_macro_bits.tolist() == pytest.approx(MACRO, abs=1e-12)
    assert ie.mi_micro_bits.tolist() == pytest.approx([np.mean(MICRO[: t + 1]) for t in range(3)], abs=1e-12)


def test_layer_summary_rows_are_rows_of_the_ie_table() -> None:
    ie = information_emergence(table(estimates(layer=0), estimates(layer=1)))
    per_layer = layer_summary(ie)
    assert list(per_layer.columns) == list(ie.columns)
    assert per_layer.index.equals(pd.RangeIndex(2))


# --- model_summary ----------------------------------------------------------------------------------------------


def _layers(**columns) -> pd.DataFrame:
    data = dict(model="m", corpus="natural-kjv-start8", shots=0, layer=[0, 1], position=3, ie_bits=[1.0, 3.0],
                ci_low=[0.5, 2.0], ci_high=[1.5, 4.0])
    data.update(columns)
    return pd.DataFrame(data)


def test_model_summary_of_a_table_without_flags_reads_ok() -> None:
    row = model_summary(_layers()).iloc[0]
    assert (row.flag, row.n_layers_flagged) == ("ok", 0)
    assert row.corpus == "natural-kjv-start8"


def test_model_summary_when_every_layer_was_blanked_with_none() -> None:
    # None (not NaN) in every row gives an object column: still "no value", not a crash
    row = model_summary(_layers(ie_bits=pd.Series([None, None], dtype=object))).iloc[0]
    assert (row.n_layers, row.n_layers_missing) == (0, 2)
    assert math.isnan(row.ie_mean_bits) and math.isnan(row.ie_sum_bits)


def test_a_model_row_without_a_value_is_never_ok() -> None:
    # every layer blanked: no reading to average
    row = model_summary(_layers(ie_bits=[math.nan, math.nan])).iloc[0]
    assert math.isnan(row.ie_mean_bits) and row.flag == "no_reading"
    # a sweep with `readings: [entropy_limit]`: the headline (MINE) was never computed, so the model row's IE is
    # NaN; it read `ok` before
    long = ie_by_reading(table(estimates(reading="entropy_limit")))
    models = models_side_by_side(long, "mine", 0.25)
    assert math.isnan(models.ie_mean_bits.iloc[0]) and models.flag.iloc[0] == "no_reading"
    assert models.ie_limit_mean_bits.iloc[0] == pytest.approx(ie_of(MACRO, MICRO, 2), abs=1e-12)


def test_model_summary_ignores_empty_pieces_of_a_flag_list() -> None:
    assert model_summary(_layers(flag=["nan,", "ok"])).flag.tolist() == ["nan"]


# --- several readings -------------------------------------------------------------------------------------------


def readings(mine_positions=None, mine_models=("m",)) -> pd.DataFrame:
    """Smoothed MI at two taus (different values), the entropy limit and MINE, for models m and z."""
    groups = []
    for model in ("m", "z"):
        groups += [estimates(model=model, reading="smoothed", tau=0.25),
                   estimates([v + 1.0 for v in MACRO], model=model, reading="smoothed", tau=0.5),
                   estimates([v + 2.0 for v in MACRO], [v / 2 for v in MICRO], model=model, reading="entropy_limit")]
        if model in mine_models:
            groups.append(estimates([v - 1.0 for v in MACRO], model=model, reading="mine", positions=mine_positions))
    return table(*groups)


def test_long_table_is_the_same_whatever_order_the_estimates_arrive_in() -> None:
    mi = readings()
    long = ie_by_reading(mi)
    shuffled = ie_by_reading(mi.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(long, shuffled)
    assert list(long.columns[:2]) == ["reading", "tau"]
    assert long.index.equals(pd.RangeIndex(len(long)))
    assert ie_by_reading(mi.iloc[:0]).empty


def test_long_table_passes_the_micro_source_on() -> None:
    long = ie_by_reading(readings(), micro_source="macro")
    assert (long[long.position == 0].ie_bits == 0.0).all()  # macro(0) - macro(0)


def test_side_by_side_keeps_positions_a_reading_did_not_cover() -> None:
    # mine.positions: last -> MINE has IE at the last position only; the smoothed and limit readings keep the rest
    wide = side_by_side(ie_by_reading(readings(mine_positions=[2], mine_models=("m", "z"))), "smoothed", 0.25)
    assert len(wide) == 2 * 3
    assert wide.index.equals(pd.RangeIndex(6)) and "index" not in wide.columns
    assert wide.ie_mine_bits.isna().tolist() == [True, True, False] * 2
    last = wide[(wide.model == "m") & (wide.position == 2)].iloc[0]
    assert last.ie_mine_bits == pytest.approx(ie_of([v - 1.0 for v in MACRO], MICRO, 2), abs=1e-12)
    # the entropy limit brings its macro and micro terms (exact counts: no interval, no flag)
    assert last.ie_limit_micro_bits == pytest.approx(np.mean([v / 2 for v in MICRO]), abs=1e-12)
    assert last.ie_limit_macro_bits == pytest.approx(MACRO[2] + 2.0, abs=1e-12)
    assert wide[TABLE_KEYS].equals(wide[TABLE_KEYS].sort_values(TABLE_KEYS).reset_index(drop=True))


def test_models_table_reads_the_headline_tau_and_keeps_models_a_reading_missed() -> None:
    long = ie_by_reading(readings(mine_models=("m",)))
    models = models_side_by_side(long, "smoothed", 0.5)
    assert models.model.tolist() == ["m", "z"]
    expected = float(np.mean([ie_of([v + 1.0 for v in MACRO], MICRO, 2)]))  # tau 0.5, not the mean of both taus
    assert models.ie_sigma_mean_bits.tolist() == pytest.approx([expected, expected], abs=1e-12)
    assert models.ie_mean_bits.tolist() == pytest.approx([expected, expected], abs=1e-12)
    assert models.ie_mine_mean_bits.iloc[0] == pytest.approx(ie_of([v - 1.0 for v in MACRO], MICRO, 2), abs=1e-12)
    assert math.isnan(models.ie_mine_mean_bits.iloc[1])  # model z has no MINE reading: kept, without a value


# --- bounds -----------------------------------------------------------------------------------------------------


def test_moving_average_surrogate_is_one_value_per_estimator() -> None:
    """The trainer drops an estimator whose objective is not finite (mine/training.py: `alive &= isfinite(target)`): one
    diverging critic must not take the other estimators of the ensemble with it."""
    joint = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.0, 1.0], [math.inf, 0.0, 0.0]], dtype=torch.float64)
    marginal = torch.tensor([[0.5, -0.5], [1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    value = EMADenominator(0.1).surrogate_bits(joint, marginal)
    # first batch: the moving average is the batch's own mean of e^T, so each estimator reads E_P[T] - 1
    assert value[:2].tolist() == pytest.approx([(2.0 - 1.0) * LOG2E, (-1.0 - 1.0) * LOG2E], abs=1e-12)
    assert not math.isfinite(value[2].item())


# --- the reducer's row of one estimate --------------------------------------------------------------------------

JOB = EstimateJob(layer=3, position=2, level="micro", seed=1, ceiling_bits=5.0, n_distinct=32, n_samples=200)


def test_job_row_carries_the_jobs_identity_and_never_the_estimators_seed() -> None:
    result = dict(mi_bits=1.0, ci_low=0.5, ci_high=1.5, seed=999, readout="heldout")  # no flag, no max_train_bits
    row = mine_row(JOB, result)
    expected = dict(layer=3, position=2, level="micro", seed=1, estimator_seed=JOB.estimator_seed, attempt=0,
                    ceiling_bits=5.0, n_distinct=32, n_samples=200, mi_bits=1.0, ci_low=0.5, ci_high=1.5,
                    readout="heldout", flag="ok", reading="mine")
    assert {k: getattr(row, k) for k in expected} == expected
    retry = mine_row(JOB, result, attempt=1)
    assert (retry.attempt, retry.estimator_seed) == (1, JOB.seed_for_attempt(1))
    assert JOB.seed_for_attempt(1) != JOB.seed_for_attempt(0)  # a refit draws a fresh critic


def test_job_row_of_a_failed_estimate_has_no_value() -> None:
    row = mine_row(JOB, dict(mi_bits=1.0, ci_low=0.5, ci_high=1.5, flag="diverged"))
    assert row.flag == "diverged" and math.isnan(row.mi_bits)


@pytest.mark.parametrize(("mi_bits", "ci", "max_train_bits", "flag"), [
    (5.0 + ABOVE_CEILING_TOLERANCE_BITS, (4.0, 5.0), 6.0, "ok"),  # at the tolerance: still ok
    (5.0 - ABOVE_CEILING_TOLERANCE_BITS / 2, (4.0, 5.0), 6.0, "ok"),  # near the ceiling but under it
    (5.0 + ABOVE_CEILING_TOLERANCE_BITS + 1e-9, (4.0, 5.0), 6.0, "above_ceiling"),
    (1.0, (0.5, 1.5), 5.0 + MEMORISED_MARGIN_BITS, "ok"),  # at the margin: still ok
    (1.0, (0.5, 1.5), 5.0 + MEMORISED_MARGIN_BITS + 1e-9, "memorised"),
    (1.0, (3.0, 3.0 + MAX_INTERVAL_BITS), 2.0, "ok"),  # as wide as allowed, far from 0: its width counts, not its end
    (1.0, (3.0, 3.0 + MAX_INTERVAL_BITS + 1e-9), 2.0, "unstable"),
])
def test_reading_flag_at_its_limits(mi_bits: float, ci: tuple, max_train_bits: float, flag: str) -> None:
    assert reading_flag(mi_bits, ci[0], ci[1], max_train_bits, 5.0) == flag


# --- capture ----------------------------------------------------------------------------------------------------


def test_block_output_is_the_hidden_states_whatever_the_block_returns() -> None:
    hidden, attention = torch.zeros(2, 3, 4), torch.ones(2, 1, 3, 3)
    assert _first_tensor(hidden) is hidden  # transformers v5: the tensor itself
    assert _first_tensor((hidden, attention)) is hidden  # v4: (hidden_states, attentions, ...)
    assert _first_tensor([hidden, attention]) is hidden


def test_position_out_of_range_says_what_to_request() -> None:
    batch = pad_batch([[5, 6, 7], [8, 9]], pad_id=0)
    with pytest.raises(ValueError, match=r"only 2 tokens; request positions below the shortest sequence length$"):
        absolute_positions(batch, [2])


# --- smoothed MI: scale, parameters, result (issue 28, item 3) --------------------------------------------------


def test_scale_of_flattens_every_leading_axis_and_weights_rows_by_their_counts() -> None:
    states = np.arange(24, dtype=np.float32).reshape(2, 3, 4) ** 1.5  # (N, P, d): 6 rows of 4 dimensions
    rows = states.reshape(6, 4).astype(np.float64)
    scale = Scale.of(states)
    np.testing.assert_allclose(scale.center, rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale.spread, rows.std(axis=0), rtol=1e-12)
    counts = np.array([1, 3, 2, 1, 1, 5])
    weighted = Scale.of(rows, counts)  # the scale of the sample with row i repeated counts[i] times
    expanded = np.repeat(rows, counts, axis=0)
    np.testing.assert_allclose(weighted.center, expanded.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(weighted.spread, expanded.std(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"counts must be one per row \(6,\), got shape \(5,\)"):
        Scale.of(rows, counts[:5])
    empty = Scale.of(np.zeros((0, 3)))
    assert empty.center.shape == empty.spread.shape == (3,) and np.isnan(empty.center).all()


def test_scale_sigma_is_tau_times_root_of_the_live_dimensions_and_never_zero() -> None:
    assert Scale(np.zeros(5), np.array([1.0, 2.0, 0.0, 3.0, 4.0])).sigma(0.5) == 0.5 * 2.0  # 4 live dimensions
    assert Scale(np.zeros(3), np.zeros(3)).sigma(0.5) == 0.5  # no live dimension: one, not zero


def test_scale_apply_standardises_in_float32_with_constant_dimensions_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(size=(2, 2500, 3)) * 7.0 + 3.0  # 5000 rows: more than one row block
    center, spread = np.array([3.0, 100.0, -1.0]), np.array([7.0, 0.0, 2.0])
    z = Scale(center, spread).apply(states)
    assert z.dtype == np.float32 and z.shape == states.shape
    assert (z[..., 1] == 0.0).all()  # a constant dimension cannot separate states, whatever its center
    for k in (0, 2):
        np.testing.assert_allclose(z[..., k], (states[..., k] - center[k]) / spread[k], rtol=1e-6, atol=1e-6)


def test_params_from_dict_reads_tau_lists_as_tuples_of_floats() -> None:
    params = SmoothedParams.from_dict({"tau": 0.25, "taus": [1, 2], "reported_taus": [2]})
    assert params.taus == (1.0, 2.0) and params.reported_taus == (2.0,)
    assert hash(params) == hash(SmoothedParams(tau=0.25, taus=(1.0, 2.0), reported_taus=(2.0,)))


def test_params_key_holds_what_changes_a_number_and_nothing_about_where_it_runs() -> None:
    params = SmoothedParams(tau=0.25, taus=(0.5, 0.1), reported_taus=(0.5,), chunk_draws=7, memory_mb=3.0,
                            device="cpu")
    key = params.key_dict()
    assert not {"chunk_draws", "memory_mb", "device"} & set(key)
    assert key["taus"] == [0.1, 0.25, 0.5] and key["reported_taus"] == [0.25, 0.5]
    assert key == SmoothedParams(tau=0.25, taus=(0.1, 0.5), reported_taus=(0.5,)).key_dict()
    assert key["n_draws"] == DEFAULT_DRAWS and key["dtype"] == "float32"


def _result(taus=(0.25, 0.5), n_samples: int = 64) -> SmoothedResult:
    readings = tuple(SmoothedReading(tau=t, sigma=2 * t, mi_bits=1.0 + t, plugin_bits=1.1 + t, half_bits=0.9 + t,
                                     mc_se_bits=0.01 * t, ci_low=0.5 + t, ci_high=1.5 + t,
                                     bootstrap=np.array([0.7, 1.3]) + t, flag=f"flag{t}") for t in taus)
    return SmoothedResult(readings, n_samples=n_samples, n_draws=40, d_x=3, d_y=3, seed=11, wall_s=2.5)


def test_result_at_finds_the_tau_and_names_the_computed_ones_otherwise() -> None:
    result = _result()
    assert result.at(0.5).mi_bits == 1.5 and result.at(0.25 + 1e-12).mi_bits == 1.25
    with pytest.raises(KeyError, match=r"tau 0.3 was not computed; computed: \[0.25, 0.5\]"):
        result.at(0.3)


def test_result_as_mi_result_carries_every_field_of_the_reading() -> None:
    mi = _result().to_mi_result(0.5)
    assert (mi.mi_bits, mi.heldout_bits, mi.ci_low, mi.ci_high) == (1.5, 1.5, 1.0, 2.0)
    np.testing.assert_array_equal(mi.bootstrap, [1.2, 1.8])
    assert mi.curve.shape == (0,) and (mi.n_samples, mi.n_train, mi.n_heldout, mi.seed) == (64, 64, 0, 11)
    assert (mi.flag, mi.tau, mi.half_sample_bits, mi.mc_se_bits) == ("flag0.5", 0.5, 1.4, 0.005)
    assert mi.readout == mi.objective == "smoothed" and mi.wall_s == 2.5 and mi.bound_cap_bits == 6.0
    assert math.isnan(mi.max_train_bits) and math.isnan(mi.last_train_bits)


def test_chunk_size_fits_the_memory_budget_exactly() -> None:
    # per draw: 11 work rows of N = 1000 and 4 sums per column (101 columns), 4 bytes each: 45,616 bytes
    assert _chunk_size(SmoothedParams(memory_mb=1.0), 1000, 101, 4) == 2**20 // 45_616  # 22 draws
    assert _chunk_size(SmoothedParams(memory_mb=1.0), 1000, 101, 8) == 2**20 // 91_232  # 11 draws
    assert _chunk_size(SmoothedParams(memory_mb=1.0, n_draws=10), 1000, 101, 4) == 10  # never more than drawn
    assert _chunk_size(SmoothedParams(memory_mb=1e-6), 1000, 101, 4) == 1  # at least one draw
    assert _chunk_size(SmoothedParams(chunk_draws=5, memory_mb=1e-6), 1000, 101, 4) == 5


def test_smoothed_mi_defaults_to_seed_zero_and_uses_the_given_output_scale() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    y = x + 0.1 * rng.normal(size=(40, 2))
    params = SmoothedParams(tau=0.25, taus=(), n_draws=20, min_draws=20, n_bootstrap=0)
    default = smoothed_mi(x, y, params)
    assert default.seed == 0 and default.at(0.25).mi_bits == smoothed_mi(x, y, params, seed=0).at(0.25).mi_bits
    own = Scale.of(y)
    blurred = smoothed_mi(x, y, params, scale_y=Scale(own.center, own.spread * 100.0)).at(0.25).mi_bits
    # y shrunk 100-fold in standard units is drowned in the noise: it tells almost nothing about x
    assert blurred < 0.1 < default.at(0.25).mi_bits - 1.0


# --- brackets (issue 28, item 3) ----------------------------------------------------------------------------------

BRACKET_PLUGIN = {("macro", 0): 1.0, ("macro", 1): 4.0, ("micro", 0): 0.5, ("micro", 1): 1.5}
BRACKET_LOO = {("macro", 0): 1.0, ("macro", 1): 2.5, ("micro", 0): 0.4, ("micro", 1): 1.5}


def _bracket_mi(tau: float = 0.25) -> pd.DataFrame:
    """Smoothed rows of two layers; layer 5's macro readings are 1 bit above layer 3's, its micro ones equal."""
    rows = []
    for layer, shift in ((3, 0.0), (5, 1.0)):
        for (level, position), value in BRACKET_PLUGIN.items():
            up = shift if level == "macro" else 0.0
            rows.append(dict(model="m", corpus="c", shots=0, layer=layer, position=position, level=level, seed=0,
                             mi_bits=value + up, loo_bits=BRACKET_LOO[(level, position)] + up, ceiling_bits=5.0,
                             tau=tau, reading="smoothed", flag="ok", bootstrap_bits=np.full(4, value + up)))
    return pd.DataFrame(rows)


def test_brackets_need_leave_one_out_on_the_estimated_rows_not_on_the_constant_ones() -> None:
    from ie_ray.brackets import ie_brackets

    mi = _bracket_mi().assign(loo_bits=np.nan)  # a secondary tau: no leave-one-out reading ...
    constant = mi.level == "micro"
    mi.loc[constant, ["flag", "mi_bits", "loo_bits"]] = ["constant", 0.0, 0.0]  # ... but exact zeros on constants
    with pytest.raises(ValueError, match=r"tau = 0.25 was read without its leave-one-out reading"):
        ie_brackets(mi, tau=0.25)


def test_brackets_csv_has_the_table_columns_only_at_four_decimals(tmp_path) -> None:
    from ie_ray.brackets import write_brackets

    mi = _bracket_mi()
    mi["mi_bits"] += 1e-6  # shows whether the file keeps 4 decimals
    mi.to_parquet(tmp_path / "mi.parquet")
    table = write_brackets(tmp_path, 0.25)
    lines = (tmp_path / "ie_brackets.csv").read_text().splitlines()
    assert lines[0].split(",") == list(table.columns)  # no index column
    assert lines[0].startswith("model,corpus,shots,layer,position,")
    first = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert first["ie_plugin_bits"] == "0.5000" and first["ie_loo_bits"] == "0.6000"


def test_brackets_command_prints_the_layer_means_at_the_default_tau(tmp_path, capsys) -> None:
    from ie_ray.brackets import main

    _bracket_mi().to_parquet(tmp_path / "mi.parquet")
    assert main([str(tmp_path)]) == 0  # --tau defaults to the headline's 0.25
    out = capsys.readouterr().out
    assert out.startswith("mean over the analysed blocks (bits):\n")
    # by hand: IE(0) = macro(0) - micro(0), IE(1) = macro(1) - mean micro(0..1), per layer; layer 5 is 1 bit above
    means = out.split("\n\n")[0].splitlines()[3:]
    table = [line.split()[-3:] for line in means]  # position, plug-in mean, leave-one-out mean
    assert [[float(v) for v in row] for row in table] == [[0, 1.0, 1.1], [1, 3.5, 2.05]]
    # the run's model has no calibration of its own: the committed SmolLM2 band is applied and said to be assumed
    assert "\nm: bias bands calibrated on smollm2-135m (an assumption: no calibration on this model's states)\n" in out
    assert out.endswith(f"\nwrote {tmp_path / 'ie_brackets.csv'}\n")
    _bracket_mi(tau=1.0).to_parquet(tmp_path / "mi.parquet")
    with pytest.raises(ValueError, match=r"no smoothed readings at tau = 0.25 .*\[1.0\]"):
        main([str(tmp_path)])


def test_brackets_command_line_help_names_its_inputs(capsys) -> None:
    from ie_ray.brackets import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: ie-ray brackets [-h] [--tau TAU] [--bands BANDS] run_dir")
    assert "--bands BANDS one bias-bands file for every model (default: each model's own calibration among" in out
    assert "bias_bands.json, SmolLM2's for a model none names" in out
    assert "The bracket around IE_sigma: its plug-in reading and its leave-one-out reading, side by side." in out
    assert "run_dir a finished sweep's run directory (holds mi.parquet)" in out
    assert "--tau TAU the noise fraction to bracket (the headline's)" in out


# --- the readings' task bodies, in-process (issue 28, item 3) --------------------------------------------------

READ_N = 12


def _reading_states() -> LayerStates:
    """12 samples of 3 tokens: token 0 one of 2 values, token 1 a constant separator, token 2 all distinct. A state
    is a function of the prefix; dimension 2 is constant at position 0 (so the per-position scales differ)."""
    ids = np.stack([np.arange(READ_N) % 2 + 1, np.full(READ_N, 5), np.arange(READ_N) + 10], axis=1)
    rng = np.random.default_rng(3)
    table = rng.normal(size=(64, 3))

    def state(prefix: np.ndarray, salt: int) -> np.ndarray:
        value = sum(table[(int(t) * 3 + salt + k) % 64] * (k + 1) for k, t in enumerate(prefix))
        return value * (1.0 if len(prefix) > 1 else np.array([1.0, 1.0, 0.0]))

    pre = np.array([[state(row[: t + 1], 0) for t in range(3)] for row in ids], dtype=np.float32)
    post = np.array([[state(row[: t + 1], 1) for t in range(3)] for row in ids], dtype=np.float32)
    unique = np.unique(ids)
    micro_pre = np.array([table[int(t) % 64] for t in unique], dtype=np.float32)
    micro_post = np.array([table[(int(t) + 7) % 64] for t in unique], dtype=np.float32)
    return LayerStates(4, ids, (0, 1, 2), pre, post, micro_pre, micro_post, np.searchsorted(unique, ids))


def _reading_jobs(states: LayerStates) -> list[EstimateJob]:
    return plan_jobs(states.input_ids, [4], [0, 1, 2], [0], with_micro=True)


class _FakeEstimator:
    """Stands in for smoothed_mi_batch: records what the reading asks and answers with values that name the problem."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, xs, ys, params, seeds, scales_x, scales_y, counts=None):
        self.calls.append(dict(xs=xs, ys=ys, seeds=seeds, scales_x=scales_x, scales_y=scales_y, counts=counts))
        results = []
        for k in range(len(xs)):
            readings = tuple(SmoothedReading(
                tau=t, sigma=10 * t, mi_bits=k + t, plugin_bits=k + t + 0.1, half_bits=k + t + 0.2,
                mc_se_bits=k + t + 0.3, ci_low=k + t - 1, ci_high=k + t + 1,
                bootstrap=np.array([k, t], dtype=np.float32),
                flag=f"flag{k}", loo_bits=k + t + 0.4, reported=t in params.reported, n_draws=7 + k)
                for t in params.grid)
            results.append(SmoothedResult(readings, n_samples=READ_N, n_draws=7, d_x=3, d_y=3, seed=seeds[k],
                                          wall_s=6.0, n_atoms=3 + k))
        return results


def test_smoothed_reading_asks_the_estimator_for_each_fitted_jobs_states_atoms_scales_and_seed(monkeypatch) -> None:
    import ie_ray.reduce.smoothed_reading as module

    fake = _FakeEstimator()
    monkeypatch.setattr(module, "smoothed_mi_batch", fake)
    states = _reading_states()
    jobs = _reading_jobs(states)
    assert sorted(j.n_distinct for j in jobs) == [1, 2, 2, 2, 12, 12]  # micro 1 is the constant separator
    reading = SmoothedMIReading(SmoothedParams(tau=0.25, taus=(0.5,), n_bootstrap=3), "per_position")
    output = fit_task(reading, states, tuple(jobs))
    (call,) = fake.calls
    fitted = [j for j in jobs if j.n_distinct >= 2]  # a job with two distinct inputs is estimated, one with one not
    assert call["seeds"] == [j.estimator_seed for j in fitted]
    for k, job in enumerate(fitted):
        x, y = states.pair(job)
        if job.level == "micro" or job.position < 2:  # few distinct inputs: as atoms with their counts
            symbols = states.symbols(job).reshape(READ_N, -1)
            _, first, counts = np.unique(symbols, axis=0, return_index=True, return_counts=True)
            np.testing.assert_array_equal(call["counts"][k], counts)
            np.testing.assert_array_equal(call["xs"][k], x[first])
            np.testing.assert_array_equal(call["ys"][k], y[first])
        else:  # 12 distinct prefixes among 12 samples: every row
            assert call["counts"][k] is None
            np.testing.assert_array_equal(call["xs"][k], x)
            np.testing.assert_array_equal(call["ys"][k], y)
        # per_position: the scale of the job's own position, input side for x and output side for y
        column = {"input": states.macro_pre, "output": states.macro_post}
        for side, scale in (("input", call["scales_x"][k]), ("output", call["scales_y"][k])):
            own = column[side][:, job.position].astype(np.float64)
            np.testing.assert_allclose(scale.center, own.mean(axis=0), rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(scale.spread, own.std(axis=0), rtol=1e-6, atol=1e-9)
    # one row per fitted job and tau, carrying the estimator's reading of that job
    rows = [r for r in output.rows if r.flag != "constant"]
    assert len(rows) == 2 * len(fitted) and len(output.rows) == len(rows) + 2  # the separator: 2 constant rows
    for k, job in enumerate(fitted):
        for tau, row in zip((0.25, 0.5), rows[2 * k: 2 * k + 2]):
            assert (row.reading, row.layer, row.position, row.level) == ("smoothed", 4, job.position, job.level)
            assert (row.tau, row.sigma, row.mi_bits, row.ci_low, row.ci_high) == (tau, 10 * tau, k + tau, k + tau - 1,
                                                                                  k + tau + 1)
            assert (row.plugin_bits, row.half_sample_bits, row.mc_se_bits, row.loo_bits) == pytest.approx(
                (k + tau + 0.1, k + tau + 0.2, k + tau + 0.3, k + tau + 0.4))
            assert row.flag == f"flag{k}" and row.interval == ("bootstrap" if tau == 0.25 else "none")
            assert row.wall_s == 3.0 and row.bound_cap_bits == math.log2(READ_N) and row.scale_rule == "per_position"
            assert row.bootstrap_bits.dtype == np.float64 and row.bootstrap_bits.tolist() == [k, tau]
            assert (row.n_draws, row.n_atoms) == (7.0 + k, 3.0 + k)


def test_a_layer_of_constant_jobs_never_calls_the_estimator(monkeypatch) -> None:
    import ie_ray.reduce.smoothed_reading as module

    fake = _FakeEstimator()
    monkeypatch.setattr(module, "smoothed_mi_batch", fake)
    states = _reading_states()
    constant = [j for j in _reading_jobs(states) if j.n_distinct == 1]
    rows = SmoothedMIReading(SmoothedParams(tau=0.25, taus=(0.5,)), "pooled").fit_layer(states, constant)
    assert fake.calls == [] and len(rows) == 2


@pytest.mark.parametrize(("n_bootstrap", "replicates"), [(3, 3), (0, 1)])
def test_a_constant_job_reads_exactly_zero_at_every_tau(n_bootstrap: int, replicates: int) -> None:
    states = _reading_states()
    (job,) = [j for j in _reading_jobs(states) if j.n_distinct == 1]
    reading = SmoothedMIReading(SmoothedParams(tau=0.25, taus=(0.5, 1.0), reported_taus=(1.0,),
                                               n_bootstrap=n_bootstrap), "pooled")
    rows = reading.fit_layer(states, [job])
    assert [r.tau for r in rows] == [0.25, 0.5, 1.0]
    for row in rows:
        assert (row.mi_bits, row.ci_low, row.ci_high, row.flag, row.readout) == (0.0, 0.0, 0.0, "constant", "exact")
        assert (row.plugin_bits, row.half_sample_bits, row.loo_bits, row.mc_se_bits) == (0.0, 0.0, 0.0, 0.0)
        assert (row.reading, row.position, row.level, row.n_draws, row.n_atoms) == ("smoothed", 1, "micro", 0.0, 1.0)
        assert row.bound_cap_bits == math.log2(READ_N) and row.scale_rule == "pooled" and row.interval == "exact"
        reported = row.tau in (0.25, 1.0)  # replicates where an estimate has them: zeros, never absent
        np.testing.assert_array_equal(row.bootstrap_bits, np.zeros(replicates if reported else 0))


@pytest.mark.parametrize("rule", ["pooled", "per_position"])
def test_smoothed_layer_notes_describe_each_sides_scale(rule: str) -> None:
    states = _reading_states()
    notes = fit_task(SmoothedMIReading(SmoothedParams(), rule), states, ()).notes
    assert [(n["layer"], n["side"], n["rule"]) for n in notes] == [(4, "input", rule), (4, "output", rule)]
    for note, macro in zip(notes, (states.macro_pre, states.macro_post)):
        assert note["used_positions"] == [0, 1, 2] and note["sink_positions"] == []
        norms = [float(np.linalg.norm(macro[:, j].astype(np.float64), axis=1).mean()) for j in range(3)]
        assert note["position_norms"] == pytest.approx(norms)
        # dimension 2 is constant at position 0 only: pooled, every dimension moves; per position, 2 + 3 + 3 live
        # dimensions, whose mean 2.67 is reported as 2
        assert note["d_eff"] == (3 if rule == "pooled" else 2)


def test_entropy_limit_reading_counts_distinct_output_states_per_job() -> None:
    states = _reading_states()
    post = states.macro_post.copy()
    post[:, 2] = post[:, 1]  # at position 2 the block forgets token 2: 12 prefixes, 2 output states
    states = LayerStates(4, states.input_ids, (0, 1, 2), states.macro_pre, post, states.micro_pre, states.micro_post,
                         states.token_row)
    jobs = _reading_jobs(states)
    output = fit_task(EntropyLimitReading(1e-3, "per_position"), states, tuple(jobs))
    assert output.notes == []
    by_job = {(r.level, r.position): r for r in output.rows}
    assert len(output.rows) == len(jobs) == len(by_job)
    for job in jobs:
        row = by_job[(job.level, job.position)]
        # by hand: token 0 (2 values, 6 each) decides every state but the separator's (1 value) and, at macro
        # position 2, nothing else since the block forgot token 2; micro 2 has 12 distinct tokens
        states_seen = {("macro", 0): 2, ("macro", 1): 2, ("macro", 2): 2, ("micro", 0): 2, ("micro", 1): 1,
                       ("micro", 2): 12}[(job.level, job.position)]
        assert row.mi_bits == pytest.approx(math.log2(states_seen))
        assert row.n_states == states_seen and row.n_merged == job.n_distinct - states_seen
        assert row.flag == ("constant" if job.n_distinct == 1 else "ok")
        assert (row.reading, row.readout, row.interval) == ("entropy_limit", "exact_count", "exact")
        assert row.bound_cap_bits == math.log2(READ_N) and row.max_within_prefix_rms == 0.0
        assert row.bootstrap_bits.tolist() == [row.mi_bits] and row.ci_low == row.ci_high == row.mi_bits
        assert 0.0 <= row.wall_s < 60.0


# --- noise scale (issue 28, item 3) ---------------------------------------------------------------------------


def test_per_position_scale_of_an_unanalysed_position_is_the_nearest_analysed_ones() -> None:
    a, b = Scale(np.zeros(2), np.ones(2)), Scale(np.ones(2), np.ones(2))
    block = BlockScale("per_position", None, {0: a, 4: b}, (0, 4), (), (1.0, 1.0))
    assert block.for_position(0) is a and block.for_position(4) is b
    assert block.for_position(1) is a and block.for_position(3) is b and block.for_position(9) is b
    assert block.for_position(2) is a  # a tie goes to the first analysed position


def test_sink_norms_are_taken_in_float64_so_float16_states_do_not_overflow() -> None:
    states = np.full((3, 2, 4), 600.0, dtype=np.float16)  # a row's squared norm, 1.44e6, overflows float16
    sinks, norms = sink_positions(states)
    assert sinks == [] and norms.tolist() == [1200.0, 1200.0]


def test_a_sink_is_strictly_more_than_the_ratio_times_the_median_norm() -> None:
    def block(norms: list[float]) -> np.ndarray:  # one state per sample and position, of exactly these norms
        return np.array([[[v, 0.0] for v in norms]] * 2)

    assert sink_positions(block([1.0, 1.0, 4.0]))[0] == []  # exactly 4 x the median: not a sink
    assert sink_positions(block([1.0, 1.0, 4.5]))[0] == [2]
    assert sink_positions(block([0.1, 0.1, 0.5]))[0] == [2]  # small states have sinks too
    assert sink_positions(block([0.0, 0.0, 5.0]))[0] == []  # a median of 0 says nothing: no sink


def test_a_pooled_block_scale_has_no_per_position_scales() -> None:
    states = np.random.default_rng(0).normal(size=(10, 3, 2))
    for rule in ("pooled", "pooled_no_sink", "total_no_sink"):
        assert block_scale(states, [0, 1, 2], rule).per_position == {}


# --- one layer's states (issue 28, item 3) --------------------------------------------------------------------


def test_a_micro_job_without_micro_states_says_where_they_went() -> None:
    states = _reading_states()
    macro_only = LayerStates(4, states.input_ids, (0, 1, 2), states.macro_pre, states.macro_post)
    job = EstimateJob(4, 2, "micro", 0, 0.0, 12, READ_N)
    with pytest.raises(ValueError, match=r"is a micro job but this cell has no micro states \(micro: full_context\?\)"):
        macro_only.pair(job)


def test_micro_states_need_both_sides() -> None:
    states = _reading_states()
    one_side = LayerStates(4, states.input_ids, (0, 1, 2), states.macro_pre, states.macro_post, states.micro_pre,
                           None, states.token_row)
    job = EstimateJob(4, 2, "micro", 0, 0.0, 12, READ_N)
    with pytest.raises(AssertionError):
        one_side.pair(job)
    with pytest.raises(AssertionError):
        one_side.atoms(job)


def test_micro_symbols_are_the_token_and_micro_atoms_are_exact_however_many() -> None:
    states = _reading_states()
    job = EstimateJob(4, 2, "micro", 0, 0.0, 12, READ_N)  # 12 distinct tokens among 12 samples
    np.testing.assert_array_equal(states.symbols(job), states.input_ids[:, 2])
    atoms = states.atoms(job)
    assert atoms is not None and atoms.counts.tolist() == [1] * 12
    np.testing.assert_array_equal(atoms.x, states.micro_pre[np.sort(states.token_row[:, 2])])


def _two_prefix_states(jitter: float, rule: str = "per_position") -> LayerStates:
    """4 samples, 2 prefixes of 2 rows each at position 0; the output side spreads 1000 times less than the input,
    and rows 1 and 3 of the input differ from their prefix's first row by `jitter` in one coordinate."""
    ids = np.array([[1, 7], [1, 8], [2, 7], [2, 8]])
    pre = np.array([[[0.0, 0.0], [5.0, 1.0]], [[jitter, 0.0], [6.0, 2.0]], [[1.0, 1.0], [7.0, 3.0]],
                    [[1.0 + jitter, 1.0], [8.0, 4.0]]])
    post = pre * 1e-3
    post[:, 0, 0] = [0.0, 0.0, 1e-3, 1e-3]  # the output is exactly a function of the prefix
    return LayerStates(4, ids, (0, 1), pre.astype(np.float32), post.astype(np.float32), scale_rule=rule)


def test_macro_atoms_at_half_the_samples_and_each_side_checked_on_its_own_scale() -> None:
    job = EstimateJob(4, 0, "macro", 0, 1.0, 2, 4)  # 2 prefixes among 4 samples: exactly half
    exact = _two_prefix_states(0.0).atoms(job)
    assert exact is not None and exact.counts.tolist() == [2, 2]
    # a jitter of 1e-5 against the input's own spread (~0.5) is far below the 1e-3 tolerance: one atom per prefix;
    # measured against the output's spread (1000 times smaller) it would not be
    assert _two_prefix_states(1e-5).atoms(job) is not None
    assert _two_prefix_states(1e-2).atoms(job) is None


def test_scales_are_kept_per_side_and_rule() -> None:
    states = _reading_states()
    rule = states.scale("input", "per_position")
    assert rule.rule == "per_position" and states.scale("input", "per_position") is rule
    pooled_in, pooled_out = states.scale("input", "pooled"), states.scale("output", "pooled")
    np.testing.assert_allclose(pooled_in.pooled.center, states.macro_pre.astype(np.float64).mean(axis=(0, 1)),
                               rtol=1e-6)
    np.testing.assert_allclose(pooled_out.pooled.center, states.macro_post.astype(np.float64).mean(axis=(0, 1)),
                               rtol=1e-6)


def test_max_rms_from_first_counts_live_coordinates_in_standard_units() -> None:
    states = np.array([[0.0, 5.0, 1.0], [0.2, 5.0, 1.1], [1.0, 5.0, 3.0]])
    first = np.array([0, 0, 2])  # rows 0 and 1 share a prefix; row 2 is alone
    spread = np.array([2.0, 0.0, 0.5])  # the middle coordinate is constant
    # by hand: row 1 is (0.1, 0.2) standard units from row 0 on the live coordinates: RMS sqrt(0.05 / 2)
    assert _max_rms_from_first(states, first, spread) == pytest.approx(math.sqrt(0.025))
    assert _max_rms_from_first(states, first, np.zeros(3)) == 0.0  # no live coordinate: nothing differs


# --- MINE reading without training (issue 28, item 3) ---------------------------------------------------------


def test_mine_reading_with_every_position_keeps_every_job() -> None:
    from ie_ray.estimators import MINEParams
    from ie_ray.reduce import MineReading

    jobs = _reading_jobs(_reading_states())
    assert MineReading(MINEParams(), "all").select(jobs, [0, 1, 2]) == jobs
    last = MineReading(MINEParams(), "last").select(jobs, [0, 1, 2])
    assert [(j.level, j.position) for j in last] == [(j.level, j.position) for j in jobs
                                                    if j.level == "micro" or j.position == 2]


@pytest.mark.parametrize(("n_bootstrap", "replicates"), [(0, 1), (4, 4)])
def test_mine_constant_job_row_is_exactly_zero(n_bootstrap: int, replicates: int) -> None:
    from ie_ray.estimators import MINEParams
    from ie_ray.reduce import MineReading

    states = _reading_states()
    (job,) = [j for j in _reading_jobs(states) if j.n_distinct == 1]
    params = MINEParams(n_bootstrap=n_bootstrap)
    (row,) = fit_task(MineReading(params, "all"), states, (job,)).rows
    assert (row.reading, row.estimator, row.objective) == ("mine", f"mine-{params.objective}/{params.readout}",
                                                          params.objective)
    assert (row.mi_bits, row.ceiling_bits, row.flag, row.readout, row.interval) == (0.0, 0.0, "constant", "exact",
                                                                                   "exact")
    assert (row.heldout_bits, row.max_train_bits, row.last_train_bits) == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(row.bootstrap_bits, np.zeros(replicates))


def test_readings_from_a_config_take_its_settings() -> None:
    from types import SimpleNamespace

    from ie_ray.estimators import MINEParams
    from ie_ray.reduce import MineReading

    mine_params, smoothed_params = MINEParams(n_bootstrap=3), SmoothedParams(tau=0.5, taus=())
    config = SimpleNamespace(
        estimator_params=lambda: mine_params, mine_positions="last", smoothed_params=lambda: smoothed_params,
        scale_rule="per_position", entropy_tolerance=0.01,
        reduce=SimpleNamespace(estimators_per_task=3, num_cpus_per_task=2.0, num_gpus_per_task=0.25))
    mine = MineReading.from_config(config)
    assert (mine.params, mine.positions, mine.estimators_per_task, mine.num_cpus, mine.num_gpus_per_task) == (
        mine_params, "last", 3, 2.0, 0.25)
    assert mine.key_dict() == dict(params=mine_params.key_dict(), positions="last")
    smoothed = SmoothedMIReading.from_config(config)
    assert (smoothed.params, smoothed.scale_rule, smoothed.num_cpus, smoothed.num_gpus) == (
        smoothed_params, "per_position", 2.0, 0.25)
    assert smoothed.resources(100, 8) == TaskResources(2.0, 0.25) and smoothed.threads() == 2
    assert smoothed.key_dict() == dict(smoothed_params.key_dict(), scale_rule="per_position")
    config.reduce.num_gpus_per_task = "0.5"
    assert SmoothedMIReading.from_config(config).num_gpus == 0.5
    limit = EntropyLimitReading.from_config(config)
    assert (limit.tolerance, limit.scale_rule) == (0.01, "per_position")
    assert limit.key_dict() == dict(tolerance=0.01, scale_rule="per_position")


def test_smoothed_reading_of_an_unknown_scale_rule_names_the_known_ones() -> None:
    from ie_ray.errors import ConfigError

    with pytest.raises(ConfigError, match=r"smoothed.scale_rule 'pooledd' is unknown; use one of \['pooled_no_sink', "):
        SmoothedMIReading(SmoothedParams(), "pooledd")


def test_rows_exactly_at_the_atom_tolerance_are_one_atom(monkeypatch) -> None:
    import ie_ray.reduce.layer_states as module

    monkeypatch.setattr(module, "_max_rms_from_first", lambda *args: module.PREFIX_ATOM_TOLERANCE)
    job = EstimateJob(4, 0, "macro", 0, 1.0, 2, 4)
    assert _two_prefix_states(0.0).atoms(job) is not None  # "within the tolerance" includes the tolerance
    monkeypatch.setattr(module, "_max_rms_from_first", lambda *args: np.nextafter(module.PREFIX_ATOM_TOLERANCE, 1))
    assert _two_prefix_states(0.0).atoms(job) is None


# --- variance command (issue 28, item 3) ----------------------------------------------------------------------


def test_variance_command_passes_its_options_and_prints_both_tables(monkeypatch, capsys) -> None:
    import ie_ray.variance as module

    asked = []
    summary = pd.DataFrame(dict(model=["m"], shot=[3], ie_mean_bits=[1.23456]))
    findings = pd.DataFrame(dict(model=["m"], saturation_shot=[7.0]))

    def fake(run_dir, patience, shot_length):
        asked.append((run_dir, patience, shot_length))
        return module.VarianceResult(pd.DataFrame(), summary, findings)

    monkeypatch.setattr(module, "write_variance", fake)
    assert module.main(["RUN"]) == 0
    assert module.main(["RUN", "--patience", "3", "--shot-length", "2"]) == 0
    assert asked == [(Path("RUN"), 2, None), (Path("RUN"), 3, 2)]
    out = capsys.readouterr().out.split("wrote variance.csv, variance_findings.csv, variance.png in RUN\n")
    assert len(out) == 3 and out[2] == ""
    lines = out[0].splitlines()
    assert lines[0].split() == ["model", "shot", "ie_mean_bits"] and lines[1].split() == ["m", "3", "1.235"]
    assert lines[2] == "" and lines[3].split() == ["model", "m"] and lines[4].split() == ["saturation_shot", "7.0"]


def test_variance_command_line_help_names_its_inputs(capsys) -> None:
    import ie_ray.variance as module

    with pytest.raises(SystemExit):
        module.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: ie-ray variance [-h] [--patience PATIENCE] [--shot-length SHOT_LENGTH] run_dir")
    assert "Variance of IE against the number of shots: where IE stops growing, and where its spread peaks" in out
    assert "run_dir a finished sweep's run directory (holds ie.parquet, mi.parquet)" in out
    assert "--patience PATIENCE non-significant increments in a row = plateau" in out
    assert "--shot-length SHOT_LENGTH tokens per shot of a single long corpus" in out


def test_brackets_carry_the_macro_readings_and_the_command_reads_tau_as_a_number(tmp_path, capsys) -> None:
    from ie_ray.brackets import ie_brackets, main

    mi = _bracket_mi()
    mi.loc[(mi.level == "macro") & (mi.position == 0), "mi_bits"] += 0.0044  # shows the printout's 2 decimals
    table = ie_brackets(mi, 0.25).set_index(["layer", "position"])
    assert table.loc[(3, 1), "macro_plugin_bits"] == 4.0 and table.loc[(5, 1), "macro_plugin_bits"] == 5.0
    assert table.loc[(5, 1), "macro_loo_bits"] == 3.5
    mi.to_parquet(tmp_path / "mi.parquet")
    assert main([str(tmp_path), "--tau", "0.25"]) == 0
    first = capsys.readouterr().out.splitlines()[3].split()
    assert float(first[-2]) == 1.0  # 1.0044 at 2 decimals


def test_smoothed_reading_defaults_to_one_cpu_and_reads_auto_gpus_from_the_cluster(monkeypatch) -> None:
    from types import SimpleNamespace

    from ie_ray import resources

    reading = SmoothedMIReading(SmoothedParams(), "pooled")
    assert (reading.num_cpus, reading.num_gpus) == (1.0, 0.0)
    config = SimpleNamespace(smoothed_params=SmoothedParams, scale_rule="pooled",
                             reduce=SimpleNamespace(num_cpus_per_task=1.0, num_gpus_per_task="auto"))
    monkeypatch.setattr(resources, "gpu_memory_from_cluster", lambda: 0)
    assert SmoothedMIReading.from_config(config).num_gpus == 0.0  # no GPU in the cluster: the task runs on CPUs
    monkeypatch.setattr(resources, "gpu_memory_from_cluster", lambda: 80 * 2**30)
    assert SmoothedMIReading.from_config(config).num_gpus == resources.SMOOTHED_GPU_SHARE > 0


def test_entropy_limit_reading_merges_states_within_its_own_tolerance() -> None:
    states = _reading_states()
    post = states.macro_post.copy()
    # at position 2 the block nearly forgets token 2: its states move by 1e-2 of their spread per token
    post[:, 2] = post[:, 1] + 1e-2 * np.std(post[:, 1], axis=0) * (states.input_ids[:, 2:3] - 15) / 6
    states = LayerStates(4, states.input_ids, (0, 1, 2), states.macro_pre, post, scale_rule="per_position")
    job = next(j for j in _reading_jobs(states) if (j.level, j.position) == ("macro", 2))
    (loose,) = EntropyLimitReading(0.5, "per_position").fit_layer(states, [job])
    (strict,) = EntropyLimitReading(1e-4, "per_position").fit_layer(states, [job])
    assert (loose.n_states, strict.n_states) == (2, 12) and loose.wall_s > 0.0


# --- variance against the number of shots (issue 28, item 3) --------------------------------------------------------


def _variance_table(values: np.ndarray, se: np.ndarray | float, corpus: str = "icl-country") -> pd.DataFrame:
    """One long K-shot corpus of one token per shot: values[layer, k - 1] is E(l) at shot k (position k - 1), with
    standard error se (an array like values, or one number)."""
    from ie_ray.variance import Z_95

    values = np.atleast_2d(np.asarray(values, dtype=float))
    se = np.broadcast_to(np.asarray(se, dtype=float), values.shape)
    rows = [dict(model="m", corpus=corpus, shots=values.shape[1], layer=layer, position=k, ie_bits=values[layer, k],
                 ci_low=values[layer, k] - Z_95 * se[layer, k], ci_high=values[layer, k] + Z_95 * se[layer, k],
                 n_seeds=1, flag="ok")
            for layer in range(values.shape[0]) for k in range(values.shape[1])]
    return pd.DataFrame(rows)


def _variance_mi(n_seeds: int = 2, delta: float = 0.2) -> pd.DataFrame:
    """A 2-shot long corpus (4 positions), 2 layers; macro MI t + 1 + seed * delta, micro 0.5: the layer-mean IE
    of seed s at shot 2 (position 3) is 3.5 + s * delta."""
    return pd.DataFrame([dict(model="m", corpus="icl-color", shots=2, layer=layer, position=t, level=level, seed=seed,
                              mi_bits=value, ceiling_bits=10.0, flag="ok",
                              bootstrap_bits=value + np.linspace(-0.01, 0.01, 20))
                         for seed in range(n_seeds) for layer in (0, 1) for t in range(4)
                         for level, value in (("macro", t + 1 + seed * delta), ("micro", 0.5))])


def _reference_std_replicates(values: np.ndarray, se: np.ndarray, n_boot: int = 2000) -> np.ndarray:
    """The bootstrap of the module docstring, written out: seed 0, layers drawn with replacement, each picked
    estimate redrawn from N(E(l), se(l)), the sample std (ddof 1) across the picked layers."""
    rng = np.random.default_rng(0)
    n_layers = values.shape[0]
    pick = rng.integers(0, n_layers, size=(n_boot, n_layers))
    draws = values[pick] + rng.standard_normal((n_boot, n_layers, values.shape[1])) * se[pick]
    return draws.std(axis=1, ddof=1)


def test_variance_bootstrap_is_the_documented_one_with_seed_zero() -> None:
    """Five layers spread by 0.64, 1 and 0.6 bits per layer at shots 1-3, each estimate with se 0.3: the peak is
    shot 2 in ~95% of the replicates, shot 1 in 2.6% and shot 3 in 2%, so the peak's 95% interval is [1, 3]
    ... at 2.5 and 97.5 percent exactly [1, 2] (2.6% of shot 1 passes the 2.5th percentile, 2% of shot 3 does
    not reach the 97.5th)."""
    from ie_ray.variance import analyse_variance, layer_std_replicates, shot_curve

    values = np.arange(5.0)[:, None] * np.array([0.64, 1.0, 0.6])
    se = np.full(values.shape, 0.3)
    table = _variance_table(values, se)
    reference = _reference_std_replicates(values, se)
    shots, replicates = layer_std_replicates(shot_curve(table))
    assert list(shots) == [1, 2, 3]
    np.testing.assert_allclose(replicates, reference, rtol=1e-9)
    result = analyse_variance(table)
    np.testing.assert_allclose(result.summary.std_layers_ci_low, np.percentile(reference, 2.5, axis=0), rtol=1e-9)
    np.testing.assert_allclose(result.summary.std_layers_ci_high, np.percentile(reference, 97.5, axis=0), rtol=1e-9)
    peaks = np.array([1.0, 2.0, 3.0])[np.argmax(reference, axis=1)]
    assert (np.mean(peaks == 1), np.mean(peaks == 3)) == (pytest.approx(0.026), pytest.approx(0.0195))
    finding = result.findings.iloc[0]
    assert (finding.peak_std_layers_ci_low, finding.peak_std_layers_ci_high) == (1.0, 2.0)


def test_two_layers_have_a_spread_and_resamples_of_one_layer_twice_have_none() -> None:
    """Layers 0 and 3 without estimate noise: std_layers = 3 / sqrt(2); a resample is both layers (std 3 / sqrt(2))
    or one layer twice (std 0), each with probability 1/2."""
    from ie_ray.variance import analyse_variance, layer_std_replicates, shot_curve

    table = _variance_table(np.array([[0.0, 0.0], [3.0, 3.0]]), 0.0)
    _, replicates = layer_std_replicates(shot_curve(table))
    assert set(np.round(replicates.ravel(), 12)) == {0.0, round(3 / np.sqrt(2), 12)}
    assert np.mean(replicates[:, 0] == 0) == pytest.approx(0.5, abs=0.04)  # 2000 draws: sd 0.011
    np.testing.assert_allclose(analyse_variance(table).summary.std_layers, 3 / np.sqrt(2))


def test_one_layer_has_no_spread_and_its_peak_no_interval() -> None:
    """One layer: no std across layers, so every replicate is NaN (as floats), the peak of the std across layers has
    no interval, and no warning reaches the user (the all-NaN percentiles of the replicates would warn)."""
    import warnings

    from ie_ray.variance import _peak_shots, analyse_variance, layer_std_replicates, shot_curve

    table = _variance_table(np.array([[1.0, 2.0, 2.0]]), 0.01)
    shots, replicates = layer_std_replicates(shot_curve(table), n_boot=7)
    assert replicates.shape == (7, 3) and np.isnan(replicates).all()
    peaks = _peak_shots(shots, replicates)
    assert peaks.shape == (7,) and np.isnan(peaks).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = analyse_variance(table)
    summary, finding = result.summary, result.findings.iloc[0]
    assert np.isnan(summary.std_layers.to_numpy()).all() and np.isnan(summary.std_seeds.to_numpy()).all()
    assert (summary.n_seeds == 1).all()
    assert np.isnan(finding.peak_std_layers_ci_low) and np.isnan(finding.peak_std_layers_ci_high)
    assert np.isnan(finding.peak_std_layers_near_saturation_share)


def test_variance_findings_of_a_curve_built_to_saturate_at_three() -> None:
    """Two layers, shots 1-6, layer mean (1, 2, 3, 3, 3, 3) with se 0.01 (0.05 at shot 4), the layers +-0.5 apart at
    shot 5 (+-0.01 elsewhere): IE grows significantly twice and saturates at 3 (3 bits there), the broken stick
    breaks at 3 with slope 1, the estimates' spread peaks at 4 (one shot from saturation) and the layers' at 5 (two
    shots away: not near). With z = 200 no step of 1 bit is significant (200 x 0.01 = 2 bits)."""
    from ie_ray.variance import analyse_variance

    mean = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    half = np.where(np.arange(1, 7) == 5, 0.5, 0.01)
    se = np.where(np.arange(1, 7) == 4, 0.05, 0.01)
    table = _variance_table(np.stack([mean - half, mean + half]), np.stack([se, se]))
    finding = analyse_variance(table).findings.iloc[0]
    assert (finding.model, finding.corpus, finding.unit) == ("m", "icl-country", "shots")
    assert (finding.saturation_shot, finding.saturated, finding.n_significant_increments) == (3.0, True, 2)
    assert (finding.broken_stick_k0, finding.broken_stick_slope_bits) == (3.0, pytest.approx(1.0))
    assert finding.ie_at_saturation_bits == pytest.approx(3.0)
    assert (finding.peak_std_bootstrap, finding.peak_std_bootstrap_near_saturation) == (4.0, True)
    assert (finding.peak_std_layers, finding.peak_std_layers_near_saturation) == (5.0, False)
    assert not finding.peak_std_seeds_near_saturation
    strict = analyse_variance(table, z=200.0).findings.iloc[0]
    assert (strict.saturation_shot, strict.n_significant_increments) == (1.0, 0)


def _patience_table() -> pd.DataFrame:
    """Layer mean (1, 2, 2, 2, 3, 3, 3, 3), se 0.01: significant steps 1->2 and 4->5 only; two flat steps in a row
    first follow shot 2, three first follow shot 5."""
    return _variance_table(np.array([[1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0]]), 0.01)


def test_variance_patience_defaults_to_two_and_is_passed_on(tmp_path) -> None:
    from ie_ray.variance import analyse_variance, write_variance

    table = _patience_table()
    assert analyse_variance(table).findings.saturation_shot.tolist() == [2.0]
    assert analyse_variance(table, patience=3).findings.saturation_shot.tolist() == [5.0]
    table.to_parquet(tmp_path / "ie.parquet")
    assert write_variance(tmp_path).findings.saturation_shot.tolist() == [2.0]
    assert write_variance(tmp_path, patience=3).findings.saturation_shot.tolist() == [5.0]


def test_variance_broken_stick_weights_each_shot_by_its_standard_error() -> None:
    """(0, 1, 2, 3, 3, 3) at se 0.01 then 10 bits at se 100: weighted, the stick breaks at 4 with slope 1 (the
    outlier weighs 1e-8 of the others); unweighted, the outlier pulls the break to the last shot."""
    from ie_ray.variance import analyse_variance

    table = _variance_table(np.array([[0.0, 1.0, 2.0, 3.0, 3.0, 3.0, 10.0]]), np.r_[np.full(6, 0.01), 100.0])
    finding = analyse_variance(table).findings.iloc[0]
    assert (finding.broken_stick_k0, finding.broken_stick_slope_bits) == (4.0, pytest.approx(1.0, abs=1e-6))


def test_variance_shot_length_is_passed_on(tmp_path) -> None:
    """A 4-shot corpus of 3 tokens per shot analysed at positions 0-9 only: 10 positions do not divide into 4 shots,
    so only shot_length = 3 reads shots 1-3 (positions 2, 5, 8)."""
    from ie_ray.variance import analyse_variance, write_variance

    table = _variance_table(np.arange(10.0)[None, :], 0.01)
    table["shots"] = 4
    assert analyse_variance(table, shot_length=3).summary.ie_mean_bits.tolist() == [2.0, 5.0, 8.0]
    table.to_parquet(tmp_path / "ie.parquet")
    assert write_variance(tmp_path, shot_length=3).summary.ie_mean_bits.tolist() == [2.0, 5.0, 8.0]


def test_variance_of_a_corpus_whose_estimates_all_failed_leaves_the_next_corpus_its_findings() -> None:
    from ie_ray.variance import analyse_variance

    failed = _variance_table(np.full((1, 3), np.nan), 0.01, corpus="a-failed")
    fine = _variance_table(np.array([[1.0, 2.0, 2.0]]), 0.01, corpus="b-fine")
    findings = analyse_variance(pd.concat([failed, fine], ignore_index=True)).findings
    assert findings.corpus.tolist() == ["b-fine"] and findings.saturation_shot.tolist() == [2.0]


def test_variance_of_a_single_shot_curve_has_findings() -> None:
    """One shot: nothing to compare, so no saturation in range and the broken stick at that shot."""
    from ie_ray.variance import analyse_variance

    finding = analyse_variance(_variance_table(np.array([[1.5]]), 0.01)).findings.iloc[0]
    assert (finding.unit, finding.saturation_shot, finding.saturated, finding.broken_stick_k0) == ("shots", 1.0,
                                                                                                   False, 1.0)
    assert finding.ie_at_saturation_bits == 1.5


def test_variance_summary_is_sorted_by_shot_when_a_layer_misses_one() -> None:
    from ie_ray.variance import analyse_variance

    table = _variance_table(np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]), 0.01)
    table = table[~((table.layer == 0) & (table.position == 1))]  # layer 0 has no estimate at shot 2
    summary = analyse_variance(table).summary
    assert summary.shot.tolist() == [1, 2, 3, 4] and summary.n_layers.tolist() == [2, 1, 2, 2]


def test_variance_keeps_corpora_the_mi_table_has_no_seeds_for() -> None:
    """The MI table's corpus has two seeds (std 0.2 / sqrt(2)); an IE row of another corpus stays, without one."""
    from ie_ray.ie import information_emergence
    from ie_ray.variance import analyse_variance, per_seed_ie

    mi = _variance_mi()
    seeds = per_seed_ie(mi)
    assert seeds.index.tolist() == list(range(len(seeds)))
    other = _variance_table(np.array([[1.0, 2.0]]), 0.01, corpus="icl-other")
    summary = analyse_variance(pd.concat([information_emergence(mi), other], ignore_index=True), mi).summary
    assert summary.corpus.tolist() == ["icl-color", "icl-color", "icl-other", "icl-other"]
    np.testing.assert_allclose(summary.std_seeds[:2], 0.2 / np.sqrt(2))
    assert summary.std_seeds[2:].isna().all()


def test_write_variance_reads_the_mi_table_for_seeds_and_writes_no_index(tmp_path) -> None:
    from ie_ray.ie import information_emergence
    from ie_ray.variance import write_variance

    mi = _variance_mi()
    information_emergence(mi).to_parquet(tmp_path / "ie.parquet")
    mi.to_parquet(tmp_path / "mi.parquet")
    result = write_variance(tmp_path)
    written = pd.read_csv(tmp_path / "variance.csv")
    assert written.columns.tolist() == result.summary.columns.tolist()
    assert written.n_seeds.tolist() == [2, 2]
    np.testing.assert_allclose(written.std_seeds, 0.2 / np.sqrt(2))
    findings = pd.read_csv(tmp_path / "variance_findings.csv")
    assert findings.columns.tolist() == result.findings.columns.tolist()


def test_saturation_shot_defaults_to_patience_two() -> None:
    """The _patience_table curve, given straight to saturation_shot: two flat steps in a row first follow shot 2."""
    from ie_ray.variance import saturation_shot

    shots, ie = np.arange(1, 9), np.array([1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    assert saturation_shot(shots, ie, np.full(8, 0.01)).shot == 2.0
    assert saturation_shot(shots, ie, np.full(8, 0.01), patience=3).shot == 5.0


def test_an_increment_is_significant_only_above_z_times_the_root_sum_of_both_squared_errors() -> None:
    """se (3, 4, 3) and z = 1: each step must exceed sqrt(3^2 + 4^2) = 5 exactly. A step of 5.25 does, one of 5 does
    not (strictly greater), so IE saturates at shot 2; with two shots, the one step of 5 is not significant."""
    from ie_ray.variance import Saturation, saturation_shot

    assert saturation_shot([1, 2, 3], [0.0, 5.25, 10.25], [3.0, 4.0, 3.0], z=1.0) == Saturation(2.0, True,
                                                                                                 (True, False))
    assert saturation_shot([1, 2], [0.0, 5.0], [3.0, 4.0], z=1.0) == Saturation(1.0, True, (False,))


def test_saturation_of_no_shots_is_nan_and_of_growth_to_the_end_is_the_last_shot_unsaturated() -> None:
    from ie_ray.variance import saturation_shot

    empty = saturation_shot([], [], [])
    assert np.isnan(empty.shot) and empty.saturated is False and empty.significant == ()
    growing = saturation_shot([1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0], np.full(4, 0.01))
    assert (growing.shot, growing.significant) == (4.0, (True, True, True)) and growing.saturated is False


def test_broken_stick_weights_are_one_over_the_squared_standard_error() -> None:
    """Shots 1-3, y = (0, 1, 1.44), se = (1, 1, 2), so weights (1, 1, 1/4). The break at 2 fits shot 1 exactly and
    leaves the contrast y3 - y2 = 0.44: SSE 0.44^2 / (1/w2 + 1/w3) = 0.1936 / 5; the line (break at 3) leaves
    y1 - 2 y2 + y3 = -0.56: SSE 0.3136 / (1/w1 + 4/w2 + 1/w3) = 0.3136 / 9, the smaller. The weighted line through
    the three points (sums of w: 2.25, wx: 3.75, wy: 1.36, wx^2: 7.25, wxy: 3.08) has slope 1.83 / 2.25 and
    intercept -1.69 / 2.25. (Weights 1/se^3 would make the break at 2 the better fit: 0.1936 / 9 < 0.3136 / 13.)"""
    from ie_ray.variance import broken_stick

    k0, a, b = broken_stick([1, 2, 3], [0.0, 1.0, 1.44], [1.0, 1.0, 2.0])
    assert (k0, a, b) == (3.0, pytest.approx(-1.69 / 2.25), pytest.approx(1.83 / 2.25))


@pytest.mark.parametrize(("gap", "expected_k0"), [(0.75e-12, 2.0), (1.25e-12, 3.0)])
def test_broken_stick_moves_the_break_later_only_for_a_fit_better_by_more_than_1e_12(gap: float,
                                                                                       expected_k0: float) -> None:
    """Shots 1-3, y = (0, 1, 1 + d), unit weights: a break at 2 leaves SSE d^2 / 2, the line (break at 3)
    (d - 1)^2 / 6, the difference (2 d^2 + 2 d - 1) / 6. With d chosen to make it `gap`, the line wins only when
    it is better by more than the 1e-12 that absorbs rounding; the fits' coefficients follow from the same sums."""
    from ie_ray.variance import broken_stick

    d = (-1.0 + np.sqrt(3.0 + 12.0 * gap)) / 2.0
    expected = {2.0: (-(1 + d / 2), 1 + d / 2), 3.0: ((-1 - 2 * d) / 3, (1 + d) / 2)}[expected_k0]
    for se in (None, np.ones(3)):
        k0, a, b = broken_stick([1, 2, 3], [0.0, 1.0, 1.0 + d], se)
        assert (k0, a, b) == (expected_k0, pytest.approx(expected[0]), pytest.approx(expected[1]))


def test_shot_sweep_curve_reads_each_corpus_at_its_last_position_with_the_documented_columns() -> None:
    """A sweep over shots 1 and 2 (one corpus each, 2 tokens per shot, positions 0..2k-1), two layers, IE 10 k +
    position + 100 layer: the curve reads IE at position 2k - 1, in unit `shots`, as a table of the nine documented
    columns with a fresh index."""
    from ie_ray.variance import Z_95, shot_curve

    rows = [dict(model="m", corpus="icl-country", shots=k, layer=layer, position=p, ie_bits=10.0 * k + p + 100 * layer,
                 ci_low=10.0 * k + p + 100 * layer - Z_95, ci_high=10.0 * k + p + 100 * layer + Z_95, n_seeds=1,
                 flag="ok")
            for k in (1, 2) for layer in (0, 1) for p in range(2 * k)]
    curve = shot_curve(pd.DataFrame(rows))
    assert curve.columns.tolist() == ["model", "corpus", "layer", "shot", "unit", "ie_bits", "ci_low", "ci_high",
                                      "se_bits"]
    assert curve.index.tolist() == [0, 1, 2, 3]
    assert curve.layer.tolist() == [0, 0, 1, 1] and curve.shot.tolist() == [1, 2, 1, 2]
    assert curve.ie_bits.tolist() == [11.0, 23.0, 111.0, 123.0] and curve.unit.tolist() == ["shots"] * 4
    np.testing.assert_allclose(curve.se_bits, 1.0)


def test_a_long_corpus_curve_stops_at_its_last_shot_when_positions_run_on() -> None:
    """A 2-shot corpus of 2 tokens per shot with positions 0..5 (a query follows the shots): shots 1 and 2 end at
    positions 1 and 3; position 5 is no shot."""
    from ie_ray.variance import shot_curve

    table = _variance_table(np.arange(6.0)[None, :], 0.01)
    table["shots"] = 2
    curve = shot_curve(table, shot_length=2)
    assert curve.shot.tolist() == [1, 2] and curve.ie_bits.tolist() == [1.0, 3.0]


def test_shot_curve_names_the_first_corpus_in_sorted_order_whatever_the_row_order() -> None:
    from ie_ray.variance import shot_curve

    unreadable = [_variance_table(np.zeros((1, 10)), 0.01, corpus=c).assign(shots=4) for c in ("b", "a")]
    with pytest.raises(ValueError, match=r"^m/a: cannot infer tokens per shot from 10 positions and 4 shots"):
        shot_curve(pd.concat(unreadable, ignore_index=True))


@pytest.mark.parametrize(("spread_at", "share_near"), [(8, 1.0), (9, 0.0)])
def test_share_of_replicate_peaks_near_saturation_counts_a_peak_exactly_one_shot_away(spread_at: int,
                                                                                       share_near: float) -> None:
    """Five layers, IE min(k, 7) + (i - 2) x (3 bits at shot `spread_at`, 0.1 elsewhere), se 0.01: IE saturates at
    7 and every replicate peaks at `spread_at` but the ~1/625 that pick one layer five times. A peak at 8 is within
    one shot of saturation (share ~1), one at 9 is not (share ~0)."""
    from ie_ray.variance import analyse_variance

    shots = np.arange(1, 13)
    spread = np.where(shots == spread_at, 3.0, 0.1)
    values = np.stack([np.minimum(shots, 7) + (i - 2) * spread for i in range(5)])
    finding = analyse_variance(_variance_table(values, 0.01)).findings.iloc[0]
    assert (finding.saturation_shot, finding.peak_std_layers) == (7.0, spread_at)
    assert finding.peak_std_layers_near_saturation_share == pytest.approx(share_near, abs=0.01)


# --- the entropy limit's counting (issue 28, item 3) ----------------------------------------------------------------


def test_entropy_limit_ie_without_micro_terms_says_what_it_needs() -> None:
    from ie_ray.entropy_limit import entropy_limit_ie

    with pytest.raises(ValueError, match=r"^micro_bits is empty: IE at position t needs the micro entropy of"):
        entropy_limit_ie(1.0, [])


def test_column_std_is_exactly_zero_on_a_constant_column_next_to_a_varying_one() -> None:
    """0.1 three times: its float64 mean is 0.10000000000000002, so only the min/max test gives exactly 0; the
    varying column (0, 1, 2) has population std sqrt(2/3)."""
    from ie_ray.entropy_limit import _column_std

    states = np.array([[0.1, 0.0], [0.1, 1.0], [0.1, 2.0]])
    std = _column_std(states)
    assert std[0] == 0.0 and std[1] == pytest.approx(math.sqrt(2 / 3), rel=1e-15)


def test_column_std_of_float32_states_is_taken_in_float64_whatever_the_chunks(monkeypatch) -> None:
    """float32 states around 1000: a float32 running sum loses ~1e-4 of the mean, which the float64 reference
    (numpy's std of the float64 copy) does not; with a 64-byte budget every chunk is two rows."""
    from ie_ray import entropy_limit

    states = (1000.0 + np.random.default_rng(0).standard_normal((2000, 2))).astype(np.float32)
    reference = np.std(states.astype(np.float64), axis=0)
    np.testing.assert_allclose(entropy_limit._column_std(states), reference, rtol=1e-12)
    monkeypatch.setattr(entropy_limit, "_MEMORY_BUDGET_BYTES", 64)
    few = states[:20]
    np.testing.assert_allclose(entropy_limit._column_std(few), np.std(few.astype(np.float64), axis=0), rtol=1e-12)


def test_a_pair_at_exactly_the_tolerance_is_one_state_even_far_from_the_first_state() -> None:
    """One dimension of spread 1: states 0 and 2 are exactly 2 apart, one state at tolerance 2; 1e8 is far from
    both, so 2 states of 3 prefixes. Its norm 1e8 makes the rounding margin (~1e-7) larger than the window's
    relative 1e-9 widening: the margin must widen the window, never narrow it. States 0 and 2 alone are one state."""
    from ie_ray.entropy_limit import distinct_states

    result = distinct_states(np.array([[0.0], [2.0], [1e8]]), np.arange(3), spread=np.ones(1), tolerance=2.0)
    assert (result.n_prefixes, result.n_states) == (3, 2)
    assert result.entropy_bits == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    # without the far state the margin is ~3e-15: only the window's own widening keeps the pair at 2
    pair = distinct_states(np.array([[0.0], [2.0]]), np.arange(2), spread=np.ones(1), tolerance=2.0)
    assert (pair.n_prefixes, pair.n_states) == (2, 1)


def test_states_with_colliding_hashes_are_told_apart_by_their_values(monkeypatch) -> None:
    """Every hash forced equal: the hash only proposes copies, the values decide. States 0, 1 and 5 (spread 1) at
    tolerance 0.5 are three states, 0 and 0 (two prefixes) one; state 1 is exactly 1.0 from state 0."""
    from ie_ray import entropy_limit

    def colliding(*args, **kwargs):
        sketch = real(*args, **kwargs)
        return entropy_limit._Sketch(sketch.projections, np.zeros_like(sketch.hashes), sketch.max_norm)

    real = entropy_limit._sketch
    monkeypatch.setattr(entropy_limit, "_sketch", colliding)
    states = np.array([[0.0], [1.0], [5.0], [0.0]])
    result = entropy_limit.distinct_states(states, np.arange(4), spread=np.ones(1), tolerance=0.5)
    assert (result.n_prefixes, result.n_states) == (4, 3)
    assert result.entropy_bits == pytest.approx(1.5)  # classes of 2, 1 and 1 prefixes


def test_constant_states_count_as_one_state_with_no_difference_within_a_prefix() -> None:
    """No dimension kept (every one constant, or every spread 0): one state, and no difference within a prefix."""
    from ie_ray.entropy_limit import distinct_states

    for states, spread in ((np.full((4, 3), 2.5), None), (np.arange(12.0).reshape(4, 3), np.zeros(3))):
        result = distinct_states(states, np.array([0, 0, 1, 2]), spread=spread)
        assert (result.n_prefixes, result.n_states, result.entropy_bits) == (3, 1, 0.0)
        assert result.max_within_prefix_rms == 0.0 and isinstance(result.max_within_prefix_rms, float)


def test_integer_states_are_counted_like_float_ones() -> None:
    """Integer states 0, 3, 0 (three prefixes): the two zeros are one state, so classes of 2 and 1 samples."""
    from ie_ray.entropy_limit import distinct_states

    result = distinct_states(np.array([[0], [3], [0]]), np.arange(3))
    assert (result.n_prefixes, result.n_states) == (3, 2)
    assert result.entropy_bits == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))


@pytest.mark.parametrize(("states", "symbols", "message"), [
    (np.zeros((2, 3), dtype=np.complex128), np.arange(2),
     r"^states has dtype complex128; pass real numbers \(float16/32/64\)$"),
    (np.zeros((2, 3), dtype=bool), np.arange(2), r"^states has dtype bool; pass real numbers \(float16/32/64\)$"),
    (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), r"^states has no rows: there is nothing to count$"),
    (np.zeros((4, 3)), np.zeros((4, 0), dtype=np.int64),
     r"^symbols has shape \(4, 0\); it must be \(N,\) or \(N, k\) token ids, the prefix of each row$"),
    (np.zeros((4, 3)), np.zeros((4, 2, 1), dtype=np.int64),
     r"^symbols has shape \(4, 2, 1\); it must be \(N,\) or \(N, k\) token ids, the prefix of each row$"),
    (np.zeros((4, 3)), np.arange(5),
     r"^states has 4 rows but symbols has 5: pass the token prefix of every state row, row for row$"),
])
def test_distinct_states_error_messages_in_full(states: np.ndarray, symbols: np.ndarray, message: str) -> None:
    from ie_ray.entropy_limit import distinct_states

    with pytest.raises(ValueError, match=message):
        distinct_states(states, symbols)


_NOT_FINITE = "; block states must be finite: look for fp16 overflow or a masked/padded position in the capture"


@pytest.mark.parametrize("budget", [None, 6])
def test_rows_with_nan_and_inf_are_named_by_their_row_in_the_whole_array(monkeypatch, budget: int | None) -> None:
    """NaN in row 2, inf in rows 1 and 3 of four rows of 3 values: named by their row in the whole array, first in
    one chunk and then with a budget of 6 bytes (2 per value), which puts every row in a chunk of its own (as a
    large capture spreads its rows over many chunks)."""
    from ie_ray import entropy_limit

    if budget is not None:
        monkeypatch.setattr(entropy_limit, "_MEMORY_BUDGET_BYTES", budget)
    states = np.zeros((4, 3))
    states[2, 1] = np.nan
    states[1, 0], states[3, 2] = np.inf, -np.inf
    expected = "states has NaN in 1 rows (first: [2]) and inf in 2 rows (first: [1, 3])" + _NOT_FINITE
    with pytest.raises(ValueError) as error:
        entropy_limit.distinct_states(states, np.arange(4))
    assert str(error.value) == expected


def test_a_float32_spread_is_taken_in_float64() -> None:
    """Two rows of one prefix 1.0 apart with spread 3 (given as float32, as a float32 capture's std comes): the
    RMS difference is 1/3 to float64 precision, not 1/3 rounded to float32 (off by 3e-8)."""
    from ie_ray.entropy_limit import distinct_states

    result = distinct_states(np.array([[0.0], [1.0]]), np.array([0, 0]), spread=np.array([3.0], dtype=np.float32))
    assert result.max_within_prefix_rms == pytest.approx(1 / 3, rel=1e-14)


def test_a_bad_spread_error_lists_the_offending_values_in_order() -> None:
    from ie_ray.entropy_limit import distinct_states

    spread = np.array([2.0, -1.0, np.inf, 0.0, 0.5, np.nan])
    with pytest.raises(ValueError, match=r"^spread must be finite and >= 0 \(0 ignores a dimension\); got "
                                         r"\[-1\.0, inf, nan\]$"):
        distinct_states(np.zeros((2, 6)), np.arange(2), spread=spread)


def test_row_chunks_hold_as_many_rows_as_fit_the_budget_and_at_least_one() -> None:
    """Budget B bytes: rows of B // 4 bytes go 4 to a chunk; rows of 1 byte (or 0: states with no column) B to a
    chunk; a row larger than B goes alone."""
    from ie_ray.entropy_limit import _MEMORY_BUDGET_BYTES as B
    from ie_ray.entropy_limit import _row_chunks

    assert list(_row_chunks(10, B // 4)) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    for row_bytes in (0, 1):
        assert list(_row_chunks(B + 5, row_bytes)) == [slice(0, B), slice(B, B + 5)]
    assert list(_row_chunks(3, B + 1)) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert list(_row_chunks(0, 8)) == []


def test_a_class_without_samples_adds_nothing_to_the_entropy() -> None:
    """Counts (2, 0, 2): 0 log 0 = 0, so 1 bit, as for (2, 2)."""
    from ie_ray.entropy_limit import _entropy_bits

    assert _entropy_bits(np.array([2, 0, 2])) == 1.0


def _emulate_numpy_2_0_0_column_inverse(monkeypatch) -> None:
    """np.unique(axis=0, return_inverse=True) returns its inverse as (N, 1), as numpy 2.0.0 did (numpy>=1.26 is
    allowed)."""
    real = np.unique

    def column_inverse(*args, **kwargs):
        out = real(*args, **kwargs)
        if kwargs.get("axis") == 0 and kwargs.get("return_inverse"):
            out = (*out[:2], out[2].reshape(-1, 1), *out[3:])
        return out

    monkeypatch.setattr(np, "unique", column_inverse)


def test_prefix_lookup_survives_numpy_2_0_0s_column_shaped_inverse(monkeypatch) -> None:
    """numpy 2.0.0's np.unique(axis=0) returned the inverse as (N, 1) (numpy>=1.26 is allowed): emulated here, the
    rows of each prefix must still be compared with their own representative. Prefix 0's rows are 1.0 apart
    (spread 1), prefix 1's coincide: RMS 1.0, two states."""
    from ie_ray.entropy_limit import distinct_states

    _emulate_numpy_2_0_0_column_inverse(monkeypatch)
    result = distinct_states(np.array([[0.0], [1.0], [5.0], [5.0]]), np.array([0, 0, 1, 1]), spread=np.ones(1))
    assert (result.n_prefixes, result.n_states, result.max_within_prefix_rms) == (2, 2, 1.0)


def test_projection_rounding_up_to_the_dot_product_bound_never_splits_a_pair_at_the_tolerance(monkeypatch) -> None:
    """A pair exactly at the tolerance (1, spread 1, every coordinate of 8 differing by 1) far from the first state
    (coordinates +-2**26, norm ~1.9e8). Each projection is a dot product of length d = 8, whose rounding is at most
    d * u * ||z|| (u = eps / 2, Higham's bound). Here it is injected at that size in the direction that lengthens
    the pair's projected gap, by about 7e-7, far beyond the window's own relative widening (1e-9 of 2 sqrt(2)): the
    window's rounding margin must absorb it, so the pair stays one state whatever the seed. States: the origin
    alone and the pair, so classes of 1 and 2 samples."""
    from ie_ray import entropy_limit

    real = entropy_limit._sketch
    d = 8

    def worst_rounding(*args, **kwargs):
        sketch = real(*args, **kwargs)
        p = sketch.projections.copy()
        lengthen = np.sign(p[2] - p[1])
        bound = d * np.finfo(np.float64).eps / 2
        p[1] -= lengthen * bound * np.linalg.norm(far)
        p[2] += lengthen * bound * np.linalg.norm(far + 1.0)
        return entropy_limit._Sketch(p, sketch.hashes, sketch.max_norm)

    monkeypatch.setattr(entropy_limit, "_sketch", worst_rounding)
    far = np.array([1, -1, 1, 1, -1, 1, -1, -1]) * 2.0**26
    states = np.array([np.zeros(d), far, far + 1.0])
    for seed in range(4):
        result = entropy_limit.distinct_states(states, np.arange(3), spread=np.ones(d), tolerance=1.0, seed=seed)
        assert (result.n_prefixes, result.n_states) == (3, 2)
        assert result.entropy_bits == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))


# --- IE's calibrated interval in `ie-ray brackets` (issue 24; mutants of the band columns) ----------------------


def _band_mi() -> pd.DataFrame:
    """Two positions of one block: macro 1.0 (ok, [0.9, 1.1]) and 4.0 (undersampled, loo 2.5, [3.8, 4.1]); micro
    0.5 (undersampled, loo 0.4, [0.45, 0.55]) and 1.5 (ok, [1.4, 1.6])."""
    rows = []
    for level, position, value, loo, low, high, flag in (("macro", 0, 1.0, 1.0, 0.9, 1.1, "ok"),
                                                         ("macro", 1, 4.0, 2.5, 3.8, 4.1, "undersampled"),
                                                         ("micro", 0, 0.5, 0.4, 0.45, 0.55, "undersampled"),
                                                         ("micro", 1, 1.5, 1.5, 1.4, 1.6, "ok")):
        rows.append(dict(model="m", corpus="c", shots=0, layer=3, position=position, level=level, seed=0,
                         mi_bits=value, loo_bits=loo, ci_low=low, ci_high=high, ceiling_bits=5.0, tau=0.25,
                         reading="smoothed", flag=flag, bootstrap_bits=np.full(10, value)))
    return pd.DataFrame(rows)


def test_band_columns_accept_nullable_float_columns_and_a_table_without_intervals() -> None:
    """pandas' nullable Float64 columns (what a table read with dtype_backend gives) convert to float; a table
    without ci columns gives ok readings no interval instead of failing."""
    from ie_ray.bias_band import BiasBand
    from ie_ray.brackets import ie_brackets

    bands = {("relative", 0.25): BiasBand(0.25, -0.1, 0.2, 9, 3)}
    plain = ie_brackets(_band_mi(), 0.25, bands).set_index("position")
    nullable = _band_mi().astype({"mi_bits": "Float64", "loo_bits": "Float64", "ci_low": "Float64",
                                  "ci_high": "Float64"})
    again = ie_brackets(nullable, 0.25, bands).set_index("position")
    assert again.ie_band_low.tolist() == pytest.approx(plain.ie_band_low.tolist())
    # macro(1) low = 4 - 0.2 * 4 - 0.2; micro high: 0.5 + 0.05 + 0.05 and 1.6 -> 3.0 - (0.6 + 1.6) / 2
    assert plain.loc[1, "ie_band_low"] == pytest.approx(3.0 - 1.1)
    bare = ie_brackets(_band_mi().drop(columns=["ci_low", "ci_high"]), 0.25, bands)
    assert bare.ie_band_low.isna().all()


def test_brackets_command_reads_the_bands_it_is_given_and_names_a_missing_file(tmp_path, capsys) -> None:
    from ie_ray.bias_band import BiasBand, save_bands
    from ie_ray.brackets import main

    _band_mi().to_parquet(tmp_path / "mi.parquet")
    save_bands({("relative", 0.25): BiasBand(0.25, -0.1, 0.2, 9, 3)}, tmp_path / "bands.json", "test")
    assert main([str(tmp_path), "--bands", str(tmp_path / "bands.json")]) == 0
    written = pd.read_csv(tmp_path / "ie_brackets.csv").set_index("position")
    assert written.loc[1, "ie_band_low"] == pytest.approx(1.9, abs=1e-4)
    missing = tmp_path / "nothing.json"
    with pytest.raises(SystemExit, match=r"--bands .*nothing.json: no such file \(ie-ray validate --smoothed --real"):
        main([str(tmp_path), "--bands", str(missing)])
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("SmolLM2's for a model none names, said in `band_calibrated_on`); the calibrated interval of IE is "
            "added per band kind") in help_text


def test_macro_atoms_survive_numpy_2_0_0s_column_shaped_inverse(monkeypatch) -> None:
    """`LayerStates.atoms` checks each row against its prefix's first row through np.unique(axis=0)'s inverse, which
    numpy 2.0.0 returned as (N, 1) (numpy>=1.26 is allowed). Emulated here: rows of one prefix that differ by more
    than the tolerance must still refuse the atoms (an (N, 1) inverse indexes (N, 1, d) rows, broadcast against
    (N, d): a wrong comparison), and exact prefixes must still give the same atoms as with a 1-D inverse."""
    from ie_ray.reduce import EstimateJob
    from ie_ray.reduce.layer_states import PREFIX_ATOM_TOLERANCE, LayerStates

    rng = np.random.default_rng(3)
    n, d = 30, 4
    ids = np.stack([rng.integers(10, 13, n), np.full(n, 5)], axis=1)
    table = rng.normal(size=(20, d)).astype(np.float32)
    pre = np.stack([table[ids[:, 0] - 10], table[ids[:, 0]]], axis=1)
    post = pre + 1.0
    jittered = post.copy()
    jittered[:, 0] += (100 * PREFIX_ATOM_TOLERANCE * rng.normal(size=(n, d))).astype(np.float32)
    job = EstimateJob(4, 0, "macro", 0, 0.0, 3, n)
    exact_1d = LayerStates(4, ids, (0, 1), pre, post).atoms(job)
    assert exact_1d is not None and LayerStates(4, ids, (0, 1), pre, jittered).atoms(job) is None

    _emulate_numpy_2_0_0_column_inverse(monkeypatch)
    exact = LayerStates(4, ids, (0, 1), pre, post).atoms(job)
    assert exact is not None
    np.testing.assert_array_equal(exact.x, exact_1d.x)
    np.testing.assert_array_equal(exact.counts, exact_1d.counts)
    assert LayerStates(4, ids, (0, 1), pre, jittered).atoms(job) is None
