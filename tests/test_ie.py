"""The IE formula on hand-made MI tables with known answers, its intervals and aggregates, the entropy ceiling,
and the reducer's job plan (ceilings, constant positions, micro positions, estimator seeds)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ie_ray.ie import entropy_bits, information_emergence, layer_summary, model_summary
from ie_ray.reduce import EstimateJob, plan_jobs

# --- entropy_bits --------------------------------------------------------------------------------------------


def test_entropy_uniform_over_four_rows_is_two_bits() -> None:
    rows = np.array([[0, 1], [1, 0], [2, 2], [3, 3]] * 5)
    assert entropy_bits(rows) == pytest.approx(2.0, abs=1e-12)


def test_entropy_constant_is_zero() -> None:
    assert entropy_bits(np.full((10, 3), 7)) == 0.0
    assert entropy_bits(np.full(10, 7)) == 0.0


def test_entropy_of_values_and_skewed_distribution() -> None:
    assert entropy_bits(np.array([0, 0, 1, 1])) == pytest.approx(1.0, abs=1e-12)
    # p = (1/2, 1/4, 1/4) -> 1.5 bits
    assert entropy_bits(np.array([5, 5, 6, 7])) == pytest.approx(1.5, abs=1e-12)


def test_entropy_counts_whole_rows_not_columns() -> None:
    # every column alone is uniform on {0,1} (1 bit) but only 2 distinct rows exist -> 1 bit, not 2
    assert entropy_bits(np.array([[0, 0], [1, 1], [0, 0], [1, 1]])) == pytest.approx(1.0, abs=1e-12)
    # 4 distinct rows -> 2 bits although column 0 alone has 1 bit
    assert entropy_bits(np.array([[0, 0], [0, 1], [1, 0], [1, 1]])) == pytest.approx(2.0, abs=1e-12)


# --- information_emergence -----------------------------------------------------------------------------------

#: Replicate offsets: symmetric around 0. Macro replicates get +OFFSETS, micro replicates -OFFSETS, so IE
#: replicates are IE + 2 * OFFSETS: centred on the point estimate and not cancelling out.
OFFSETS = np.linspace(-0.2, 0.2, 41)

MACRO = {0: 1.0, 1: 2.0, 2: 3.5, 3: 5.0}
MICRO = {0: 0.5, 1: 0.0, 2: 1.5, 3: 0.0}
CEILING = {0: 2.0, 1: 2.0, 2: 3.58, 3: 3.58}


def mi_rows(
    macro: dict[int, float],
    micro: dict[int, float],
    *,
    model: str = "m",
    corpus: str = "icl-country",
    shots: int = 2,
    layer: int = 0,
    seed: int = 0,
    flags: dict[tuple[str, int], str] | None = None,
) -> list[dict]:
    flags = flags or {}
    rows = []
    for level, values, sign in (("macro", macro, 1.0), ("micro", micro, -1.0)):
        for position, value in values.items():
            rows.append(
                dict(
                    model=model,
                    corpus=corpus,
                    shots=shots,
                    layer=layer,
                    position=position,
                    level=level,
                    seed=seed,
                    mi_bits=value,
                    ceiling_bits=CEILING.get(position, 1.0) if level == "macro" else 1.0,
                    flag=flags.get((level, position), "ok"),
                    bootstrap_bits=value + sign * OFFSETS,
                )
            )
    return rows


def frame(*row_lists: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in row_lists for row in rows])


def expected_ie(macro: dict[int, float], micro: dict[int, float], t: int) -> float:
    return macro[t] - float(np.mean([micro[s] for s in range(t + 1)]))


def test_ie_is_macro_minus_mean_micro_up_to_t() -> None:
    ie = information_emergence(frame(mi_rows(MACRO, MICRO)))
    assert list(ie.position) == [0, 1, 2, 3]
    assert ie.ie_bits.tolist() == pytest.approx([0.5, 1.75, 3.5 - 2.0 / 3.0, 4.5], abs=1e-12)
    for row in ie.itertuples():
        assert row.ie_bits == pytest.approx(expected_ie(MACRO, MICRO, row.position), abs=1e-12)
        assert row.mi_macro_bits == pytest.approx(MACRO[row.position], abs=1e-12)
        assert row.mi_micro_bits == pytest.approx(np.mean([MICRO[s] for s in range(row.position + 1)]), abs=1e-12)
        assert row.macro_ceiling_bits == CEILING[row.position]
    assert set(ie.n_seeds) == {1}
    assert (ie.model == "m").all() and (ie.corpus == "icl-country").all() and (ie.shots == 2).all()
    assert set(ie.flag) == {"ok"}


def test_ie_intervals_contain_point_estimate() -> None:
    ie = information_emergence(frame(mi_rows(MACRO, MICRO)))
    for row in ie.itertuples():
        replicates = row.ie_bits + 2 * OFFSETS
        assert row.ci_low == pytest.approx(np.quantile(replicates, 0.025), abs=1e-12)
        assert row.ci_high == pytest.approx(np.quantile(replicates, 0.975), abs=1e-12)
        assert row.ci_low < row.ie_bits < row.ci_high
        # the interval has the width of the replicate spread (not zero: macro and micro noise do not cancel)
        assert row.ci_high - row.ci_low == pytest.approx(2 * 0.95 * 0.4, abs=1e-9)


def test_ie_only_at_requested_macro_positions() -> None:
    ie = information_emergence(frame(mi_rows({3: 5.0}, MICRO)))
    assert ie.position.tolist() == [3]
    assert ie.ie_bits.iloc[0] == pytest.approx(4.5, abs=1e-12)


def test_two_seeds_are_averaged() -> None:
    macro1 = {t: v + 1.0 for t, v in MACRO.items()}
    micro1 = {t: v + 0.2 for t, v in MICRO.items()}
    ie = information_emergence(frame(mi_rows(MACRO, MICRO, seed=0), mi_rows(macro1, micro1, seed=1)))
    assert len(ie) == 4
    assert set(ie.n_seeds) == {2}
    for row in ie.itertuples():
        t = row.position
        e0, e1 = expected_ie(MACRO, MICRO, t), expected_ie(macro1, micro1, t)
        assert e1 - e0 == pytest.approx(0.8)
        assert row.ie_bits == pytest.approx((e0 + e1) / 2, abs=1e-12)
        assert row.mi_macro_bits == pytest.approx(MACRO[t] + 0.5, abs=1e-12)
        # pooled replicates of both seeds: the interval covers both seeds' estimates and their mean
        pooled = np.concatenate([e0 + 2 * OFFSETS, e1 + 2 * OFFSETS])
        assert row.ci_low == pytest.approx(np.quantile(pooled, 0.025), abs=1e-12)
        assert row.ci_high == pytest.approx(np.quantile(pooled, 0.975), abs=1e-12)
        assert row.ci_low < e0 < row.ie_bits < e1 < row.ci_high


def test_micro_source_macro_uses_full_context_mi() -> None:
    # the micro rows are deliberately absurd: they must be ignored in this variant
    mi = frame(mi_rows(MACRO, {t: 100.0 for t in MICRO}))
    ie = information_emergence(mi, micro_source="macro")
    expected = [expected_ie(MACRO, MACRO, t) for t in range(4)]
    assert expected[0] == 0.0
    assert ie.ie_bits.tolist() == pytest.approx(expected, abs=1e-12)
    assert ie.mi_micro_bits.tolist() == pytest.approx([np.mean([MACRO[s] for s in range(t + 1)]) for t in range(4)])


def test_micro_source_macro_needs_no_micro_rows() -> None:
    mi = frame(mi_rows(MACRO, {}))
    ie = information_emergence(mi, micro_source="macro")
    assert ie.ie_bits.tolist() == pytest.approx([expected_ie(MACRO, MACRO, t) for t in range(4)], abs=1e-12)


def test_missing_micro_position_is_an_error() -> None:
    micro = {t: v for t, v in MICRO.items() if t != 1}
    with pytest.raises(ValueError, match=r"position 1\) needs micro MI at positions \[1\]"):
        information_emergence(frame(mi_rows(MACRO, micro)))
    # ... also when only the last position was requested: IE at 3 averages micro 0..3
    with pytest.raises(ValueError, match=r"needs micro MI at positions \[1\]"):
        information_emergence(frame(mi_rows({3: 5.0}, micro)))


def test_micro_missing_for_one_seed_is_an_error() -> None:
    mi = frame(mi_rows(MACRO, MICRO, seed=0), mi_rows(MACRO, {0: 0.5}, seed=1))
    with pytest.raises(ValueError, match=r"needs micro MI at positions \[1\]"):
        information_emergence(mi)


def test_groups_are_kept_apart() -> None:
    macro_b = {t: 2 * v for t, v in MACRO.items()}
    mi = frame(
        mi_rows(MACRO, MICRO, layer=0),
        mi_rows(macro_b, MICRO, layer=1),
        mi_rows(MACRO, MICRO, model="other", layer=0),
        mi_rows(MACRO, MICRO, shots=3, layer=0),
    )
    ie = information_emergence(mi)
    assert len(ie) == 16
    layer1 = ie[(ie.model == "m") & (ie.layer == 1) & (ie.shots == 2)]
    assert layer1.ie_bits.tolist() == pytest.approx([expected_ie(macro_b, MICRO, t) for t in range(4)], abs=1e-12)
    for _, part in ie[ie.layer == 0].groupby(["model", "shots"]):
        assert part.ie_bits.tolist() == pytest.approx([expected_ie(MACRO, MICRO, t) for t in range(4)], abs=1e-12)


def test_flags_propagate_to_later_positions_only() -> None:
    flags = {("micro", 2): "nan", ("micro", 1): "constant"}
    ie = information_emergence(frame(mi_rows(MACRO, MICRO, flags=flags)))
    assert ie.flag.tolist() == ["ok", "ok", "nan", "nan"]  # 'constant' is not a problem


def test_flag_of_an_earlier_macro_estimate_does_not_taint_ie() -> None:
    ie = information_emergence(frame(mi_rows(MACRO, MICRO, flags={("macro", 1): "nan"})))
    # IE(1) uses macro(1): flagged; IE(2) = macro(2) - mean micro(0..2) uses no flagged estimate
    assert ie.flag.tolist() == ["ok", "nan", "ok", "ok"]


# --- layer_summary / model_summary ---------------------------------------------------------------------------


def test_layer_summary_picks_the_last_position() -> None:
    macro_b = {t: 2 * v for t, v in MACRO.items()}
    ie = information_emergence(frame(mi_rows(MACRO, MICRO, layer=0), mi_rows(macro_b, MICRO, layer=1)))
    per_layer = layer_summary(ie)
    assert len(per_layer) == 2
    assert per_layer.layer.tolist() == [0, 1]
    assert per_layer.position.tolist() == [3, 3]
    assert per_layer.ie_bits.tolist() == pytest.approx([4.5, 10.0 - 0.5], abs=1e-12)


def test_layer_summary_position_order_does_not_matter() -> None:
    ie = pd.DataFrame(
        dict(model="m", corpus="c", shots=1, layer=[0, 0, 0], position=[5, 7, 2], ie_bits=[1.0, 2.0, 3.0],
             ci_low=0.0, ci_high=4.0)
    )
    per_layer = layer_summary(ie)
    assert per_layer.position.tolist() == [7]
    assert per_layer.ie_bits.tolist() == [2.0]


def test_model_summary_mean_and_sum() -> None:
    ie = pd.DataFrame(
        dict(
            model="m",
            corpus="c",
            shots=4,
            layer=[0, 0, 1, 1, 2, 2],
            position=[0, 1, 0, 1, 0, 1],
            ie_bits=[9.0, 1.0, 9.0, 3.0, 9.0, 5.0],  # position 0 must be ignored (not the last position)
            ci_low=[0.0, 0.5, 0.0, 2.0, 0.0, 4.0],
            ci_high=[20.0, 1.5, 20.0, 4.0, 20.0, 6.0],  # half-widths at the last position: 0.5, 1, 1
        )
    )
    summary = model_summary(ie)
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row.n_layers == 3
    assert row.ie_mean_bits == pytest.approx(3.0, abs=1e-12)
    assert row.ie_sum_bits == pytest.approx(9.0, abs=1e-12)
    half_sum = math.sqrt(0.5**2 + 1.0**2 + 1.0**2)  # = 1.5, in quadrature
    assert row.ie_sum_ci_low == pytest.approx(9.0 - half_sum, abs=1e-12)
    assert row.ie_sum_ci_high == pytest.approx(9.0 + half_sum, abs=1e-12)
    assert row.ie_mean_ci_low == pytest.approx(3.0 - half_sum / 3, abs=1e-12)
    assert row.ie_mean_ci_high == pytest.approx(3.0 + half_sum / 3, abs=1e-12)


def test_model_summary_leaves_out_a_blanked_layer_and_says_so() -> None:
    ie = pd.DataFrame(
        dict(model="m", corpus="c", shots=0, layer=[0, 1, 2], position=3, ie_bits=[2.0, math.nan, 4.0],
             ci_low=[1.0, 4.0, 3.0], ci_high=[3.0, 10.0, 5.0])  # the blanked layer's interval must not count
    )
    row = model_summary(ie).iloc[0]
    assert row.n_layers == 2 and row.n_layers_missing == 1
    assert row.ie_mean_bits == pytest.approx(3.0)
    assert row.ie_mean_ci_high - row.ie_mean_bits == pytest.approx(math.sqrt(2.0) / 2)
    assert math.isnan(row.ie_sum_bits)  # a sum over 2 of 3 layers is not comparable with full sums

    # every layer blanked (e.g. all estimates of a tiny model failed): a row of NaNs, not a crash
    none = model_summary(ie.assign(ie_bits=math.nan)).iloc[0]
    assert none.n_layers == 0 and none.n_layers_missing == 3
    assert all(math.isnan(none[c]) for c in ("ie_mean_bits", "ie_mean_ci_low", "ie_sum_bits", "ie_sum_ci_high"))


def test_model_summary_one_row_per_model_corpus_shots() -> None:
    macro_b = {t: 2 * v for t, v in MACRO.items()}
    mi = frame(
        mi_rows(MACRO, MICRO, layer=0),
        mi_rows(macro_b, MICRO, layer=1),
        mi_rows(MACRO, MICRO, model="z", layer=5),
    )
    summary = model_summary(information_emergence(mi))
    assert summary.model.tolist() == ["m", "z"]
    assert summary.n_layers.tolist() == [2, 1]
    assert summary.ie_mean_bits.tolist() == pytest.approx([(4.5 + 9.5) / 2, 4.5], abs=1e-12)
    assert summary.ie_sum_bits.tolist() == pytest.approx([14.0, 4.5], abs=1e-12)


# --- plan_jobs -----------------------------------------------------------------------------------------------

ENTITY_IDS = [11, 12, 13, 14]
COMMA = 9


@pytest.fixture(scope="module")
def icl_ids() -> np.ndarray:
    """All 12 ordered pairs of 4 entities, ICL layout [e1, ',', e2, ',']."""
    rows = [[a, COMMA, b, COMMA] for a, b in itertools.permutations(ENTITY_IDS, 2)]
    return np.array(rows, dtype=np.int64)


def _by_key(jobs: list[EstimateJob]) -> dict[tuple[str, int], list[EstimateJob]]:
    out: dict[tuple[str, int], list[EstimateJob]] = {}
    for job in jobs:
        out.setdefault((job.level, job.position), []).append(job)
    return out


def test_plan_jobs_ceilings_and_distinct_counts(icl_ids: np.ndarray) -> None:
    jobs = plan_jobs(icl_ids, layers=[0, 2], positions=[0, 1, 2, 3], seeds=[0], with_micro=True)
    by_key = _by_key(jobs)
    expected = {
        ("macro", 0): (4, 2.0),
        ("macro", 1): (4, 2.0),  # the comma adds nothing
        ("macro", 2): (12, math.log2(12)),
        ("macro", 3): (12, math.log2(12)),
        ("micro", 0): (4, 2.0),
        ("micro", 1): (1, 0.0),  # constant separator
        ("micro", 2): (4, 2.0),  # each entity is second in 3 of the 12 rows: uniform
        ("micro", 3): (1, 0.0),
    }
    assert set(by_key) == set(expected)
    for key, (n_distinct, ceiling) in expected.items():
        group = by_key[key]
        assert sorted(j.layer for j in group) == [0, 2]
        for job in group:
            assert job.n_distinct == n_distinct, key
            assert job.ceiling_bits == pytest.approx(ceiling, abs=1e-12), key
            assert job.n_samples == 12


def test_plan_jobs_micro_at_every_position_up_to_max(icl_ids: np.ndarray) -> None:
    jobs = plan_jobs(icl_ids, layers=[1], positions=[3], seeds=[0, 1], with_micro=True)
    assert sorted({(j.level, j.position) for j in jobs}) == [
        ("macro", 3), ("micro", 0), ("micro", 1), ("micro", 2), ("micro", 3),
    ]
    assert len(jobs) == 5 * 2  # (1 macro + 4 micro) x 1 layer x 2 seeds
    assert sorted(j.seed for j in jobs if j.level == "macro") == [0, 1]


def test_plan_jobs_without_micro(icl_ids: np.ndarray) -> None:
    jobs = plan_jobs(icl_ids, layers=[0, 1, 2], positions=[1, 3], seeds=[0], with_micro=False)
    assert {j.level for j in jobs} == {"macro"}
    assert sorted({j.position for j in jobs}) == [1, 3]
    assert len(jobs) == 2 * 3


def test_plan_jobs_constant_first_token() -> None:
    ids = np.array([[7, 1], [7, 2], [7, 3], [7, 1]])
    jobs = _by_key(plan_jobs(ids, layers=[0], positions=[0, 1], seeds=[0], with_micro=True))
    assert jobs[("macro", 0)][0].n_distinct == 1 and jobs[("macro", 0)][0].ceiling_bits == 0.0
    assert jobs[("micro", 0)][0].n_distinct == 1
    assert jobs[("macro", 1)][0].n_distinct == 3
    assert jobs[("macro", 1)][0].ceiling_bits == pytest.approx(1.5, abs=1e-12)  # p = (1/2, 1/4, 1/4)


def test_estimator_seeds_distinct_and_stable(icl_ids: np.ndarray) -> None:
    jobs = plan_jobs(icl_ids, layers=[0, 1, 2, 3], positions=[0, 1, 2, 3], seeds=[0, 1, 2], with_micro=True)
    assert len(jobs) == 8 * 4 * 3
    seeds = [j.estimator_seed for j in jobs]
    assert len(set(seeds)) == len(jobs)
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)
    # stable: the same job, planned again or built by hand, has the same seed
    again = plan_jobs(icl_ids, layers=[0, 1, 2, 3], positions=[0, 1, 2, 3], seeds=[0, 1, 2], with_micro=True)
    assert [j.estimator_seed for j in again] == seeds
    job = EstimateJob(layer=2, position=3, level="micro", seed=1, ceiling_bits=0.0, n_distinct=1, n_samples=12)
    assert job.estimator_seed == int(np.random.SeedSequence([1, 2, 3, 1]).generate_state(1)[0])
    # the seed depends on what is estimated, not on the data-derived fields
    same = EstimateJob(layer=2, position=3, level="micro", seed=1, ceiling_bits=5.0, n_distinct=9, n_samples=99)
    assert same.estimator_seed == job.estimator_seed
    # macro and micro at the same (layer, position, seed) get different critics
    macro = EstimateJob(layer=2, position=3, level="macro", seed=1, ceiling_bits=0.0, n_distinct=1, n_samples=12)
    assert macro.estimator_seed != job.estimator_seed
