"""Tests written against the mutants that survived `benchmarks/mutation.py` (issue 17, item 6).

Each test names the behaviour a surviving mutant changed without any other test noticing: the order and index of
the IE tables, the columns every reading brings, the rows a reading that covers fewer positions or models keeps,
the error messages' advice, MINE-EMA's surrogate staying one value per estimator of the ensemble, the reducer's
row of one estimate (its identity, its default flag, the flag thresholds taken exactly at their limits), and the
capture of blocks that return a tuple (transformers v4), which the installed transformers never exercises.
benchmarks/results/mutation.md lists the mutants that remain, each with the reason it is equivalent to the original.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ie_ray.capture import _first_tensor, absolute_positions, pad_batch
from ie_ray.estimators.bounds import LOG2E, EMADenominator
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
from ie_ray.reduce import (
    ABOVE_CEILING_TOLERANCE_BITS,
    MAX_INTERVAL_BITS,
    MEMORISED_MARGIN_BITS,
    EstimateJob,
    mine_row,
    reading_flag,
)

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
