"""Property tests (hypothesis) of the pure functions every reported figure goes through: the IE formula and its
aggregates, entropy counting, the smoothed reading's convergence flag, and config round trips.

Each property is checked against an expectation computed here from the inputs (a mean, a quantile, a count),
never against the module's own helpers, on tables that hypothesis draws: arbitrary finite MI values, any
number of positions, seeds, layers and flags.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ie_ray.config import READINGS, parse_config
from ie_ray.entropy_limit import distinct_states
from ie_ray.estimators.smoothed import convergence_flag
from ie_ray.ie import (
    entropy_bits,
    ie_by_reading,
    information_emergence,
    model_summary,
    models_side_by_side,
    side_by_side,
)

#: Few examples and no deadline: the whole file runs in seconds on a shared CPU, and pandas' first call is slow.
FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
#: The side-by-side tables run pandas merges per example: fewer examples keep the file fast.
SLOW = settings(FAST, max_examples=10)

#: MI values large enough to be arbitrary, small enough that a sum of a few of them keeps ~1e-9 relative precision.
VALUES = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
FLAGS = ("ok", "constant", "nan", "not_converged", "memorised")


def close(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, scale))


# --- hand-built MI tables ---------------------------------------------------------------------------------------


@st.composite
def centred_offsets(draw) -> np.ndarray:
    """Bootstrap offsets symmetric around 0 (d and -d, and 0): replicates centred on their estimate."""
    half = draw(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=6))
    return np.array(sorted([-h for h in half] + [0.0] + half))


@st.composite
def mi_tables(draw, n_seeds: int | None = None, with_flags: bool = False) -> dict:
    """One (model, corpus, shots, layer) group: macro/micro MI per seed and position, as the reducer writes them.

    Macro replicates are value + offsets and micro replicates value - offsets, so IE replicates are
    IE + 2 * offsets (the micro offsets average to -offsets over positions 0..t)."""
    n_pos = draw(st.integers(1, 4))
    seeds = draw(st.integers(1, 3)) if n_seeds is None else n_seeds
    macro = [[draw(VALUES) for _ in range(n_pos)] for _ in range(seeds)]
    micro = [[draw(VALUES) for _ in range(n_pos)] for _ in range(seeds)]
    flags = {}
    if with_flags:
        for level in ("macro", "micro"):
            for t in range(n_pos):
                flags[level, t] = draw(st.sampled_from(FLAGS))
    return dict(macro=macro, micro=micro, offsets=draw(centred_offsets()), flags=flags,
                ceiling=[draw(st.floats(0.0, 20.0)) for _ in range(n_pos)])


def mi_frame(table: dict, shift: float = 0.0, layer: int = 0, **keys) -> pd.DataFrame:
    rows = []
    offsets = table["offsets"]
    for seed, (macro, micro) in enumerate(zip(table["macro"], table["micro"])):
        for level, values, sign in (("macro", macro, 1.0), ("micro", micro, -1.0)):
            for t, value in enumerate(values):
                rows.append(dict(
                    model=keys.get("model", "m"), corpus=keys.get("corpus", "c"), shots=keys.get("shots", 2),
                    layer=layer, position=t, level=level, seed=seed, mi_bits=value + shift,
                    ceiling_bits=table["ceiling"][t] if level == "macro" else -1.0,
                    flag=table["flags"].get((level, t), "ok"),
                    bootstrap_bits=value + shift + sign * offsets,
                ))
    return pd.DataFrame(rows)


def ie_by_hand(table: dict, seed: int, t: int) -> float:
    return table["macro"][seed][t] - float(np.mean(table["micro"][seed][: t + 1]))


# --- information_emergence ----------------------------------------------------------------------------------------


@FAST
@given(mi_tables())
def test_ie_is_macro_minus_mean_micro_averaged_over_seeds(table: dict) -> None:
    ie = information_emergence(mi_frame(table))
    seeds, n_pos = len(table["macro"]), len(table["macro"][0])
    assert ie.position.tolist() == list(range(n_pos))
    for row in ie.itertuples():
        t = row.position
        expected = float(np.mean([ie_by_hand(table, s, t) for s in range(seeds)]))
        assert close(row.ie_bits, expected, 1e4), (row.ie_bits, expected)
        assert close(row.mi_macro_bits, float(np.mean([m[t] for m in table["macro"]])), 1e4)
        assert close(row.mi_micro_bits, float(np.mean([np.mean(m[: t + 1]) for m in table["micro"]])), 1e4)
        assert row.macro_ceiling_bits == table["ceiling"][t]
        assert row.n_seeds == seeds
        assert (row.model, row.corpus, row.shots, row.layer, row.flag) == ("m", "c", 2, 0, "ok")


@FAST
@given(mi_tables(), st.floats(min_value=-1e3, max_value=1e3))
def test_adding_a_constant_to_every_mi_leaves_ie_and_its_interval_unchanged(table: dict, c: float) -> None:
    base = information_emergence(mi_frame(table))
    shifted = information_emergence(mi_frame(table, shift=c))
    for a, b in zip(base.itertuples(), shifted.itertuples()):
        for name in ("ie_bits", "ci_low", "ci_high"):
            assert math.isclose(getattr(a, name), getattr(b, name), rel_tol=1e-9, abs_tol=1e-7), name
        assert math.isclose(b.mi_macro_bits, a.mi_macro_bits + c, rel_tol=1e-9, abs_tol=1e-7)
        assert math.isclose(b.mi_micro_bits, a.mi_micro_bits + c, rel_tol=1e-9, abs_tol=1e-7)


@FAST
@given(mi_tables())
def test_interval_of_the_difference_is_the_quantiles_of_the_differenced_replicates(table: dict) -> None:
    """Centred replicates: the interval is the 2.5/97.5% quantiles of every seed's IE + 2 * offsets, pooled,
    and so it holds every seed's IE and their mean."""
    ie = information_emergence(mi_frame(table))
    seeds = len(table["macro"])
    for row in ie.itertuples():
        per_seed = [ie_by_hand(table, s, row.position) for s in range(seeds)]
        pooled = np.concatenate([e + 2 * table["offsets"] for e in per_seed])
        assert close(row.ci_low, float(np.quantile(pooled, 0.025)), 1e4)
        assert close(row.ci_high, float(np.quantile(pooled, 0.975)), 1e4)
        slack = 1e-9 * max(1.0, abs(row.ie_bits))
        assert row.ci_low - slack <= min(per_seed) <= row.ie_bits + slack
        assert row.ie_bits - slack <= max(per_seed) <= row.ci_high + slack


@FAST
@given(mi_tables(), st.randoms(use_true_random=False))
def test_row_order_of_the_mi_table_does_not_matter(table: dict, rng) -> None:
    frame = mi_frame(table)
    order = list(range(len(frame)))
    rng.shuffle(order)
    a = information_emergence(frame)
    b = information_emergence(frame.iloc[order].reset_index(drop=True))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-9)


@FAST
@given(mi_tables())
def test_reference_variant_reads_zero_at_position_zero(table: dict) -> None:
    """micro_source='macro' (the reference code's variant): IE(t) = macro(t) - mean macro(0..t); the micro rows
    are ignored, so IE(0) = 0 whatever the values."""
    ie = information_emergence(mi_frame(table), micro_source="macro")
    for row in ie.itertuples():
        t = row.position
        expected = float(np.mean([m[t] - np.mean(m[: t + 1]) for m in table["macro"]]))
        assert close(row.ie_bits, expected, 1e4)
    assert ie.ie_bits.iloc[0] == 0.0


@FAST
@given(mi_tables(with_flags=True))
def test_ie_flag_is_the_set_of_problems_of_the_estimates_it_uses(table: dict) -> None:
    ie = information_emergence(mi_frame(table))
    for row in ie.itertuples():
        t = row.position
        used = [table["flags"]["macro", t]] + [table["flags"]["micro", s] for s in range(t + 1)]
        problems = sorted({f for f in used if f not in ("ok", "constant")})
        assert row.flag == (",".join(problems) if problems else "ok")


@FAST
@given(mi_tables(n_seeds=1), mi_tables(n_seeds=1))
def test_groups_never_mix(a: dict, b: dict) -> None:
    """Two layers (and two models) in one table give exactly the IE each gives alone."""
    together = information_emergence(pd.concat([mi_frame(a, layer=0), mi_frame(b, layer=1, model="z")]))
    alone_a, alone_b = information_emergence(mi_frame(a)), information_emergence(mi_frame(b, layer=1, model="z"))
    expected = pd.concat([alone_a, alone_b], ignore_index=True)
    pd.testing.assert_frame_equal(together, expected, check_exact=False, rtol=1e-12, atol=1e-9)


# --- model_summary ------------------------------------------------------------------------------------------------


@st.composite
def ie_tables(draw) -> pd.DataFrame:
    """An IE table: a few (model, shots) groups of layers, several positions each, some E(l) blanked (NaN)."""
    rows = []
    for model, corpus, shots in draw(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["c", "d"]),
                                                        st.integers(1, 3)), min_size=1, max_size=3, unique=True)):
        for layer in range(draw(st.integers(1, 5))):
            n_pos = draw(st.integers(1, 3))
            for t in range(n_pos):
                value = draw(st.one_of(VALUES, st.just(math.nan)) if t == n_pos - 1 else VALUES)
                half = draw(st.floats(0.0, 10.0))
                rows.append(dict(model=model, corpus=corpus, shots=shots, layer=layer, position=t, ie_bits=value,
                                 ci_low=(value if math.isfinite(value) else 0.0) - half,
                                 ci_high=(value if math.isfinite(value) else 0.0) + half,
                                 flag=draw(st.sampled_from(FLAGS + ("nan,not_converged",)))))
    return pd.DataFrame(rows)


@FAST
@given(ie_tables())
def test_model_summary_is_the_mean_of_e_l_and_ok_only_if_every_layer_is(ie: pd.DataFrame) -> None:
    summary = model_summary(ie)
    groups = ie.groupby(["model", "corpus", "shots"], sort=True)
    assert len(summary) == groups.ngroups
    for row, ((model, corpus, shots), group) in zip(summary.itertuples(), groups):
        assert (row.model, row.corpus, row.shots) == (model, corpus, shots)
        last = group.loc[group.groupby("layer").position.idxmax()]  # E(l): IE at the last position
        valid = last[np.isfinite(last.ie_bits)]
        n, missing = len(valid), len(last) - len(valid)
        assert (row.n_layers, row.n_layers_missing) == (n, missing)
        half = math.sqrt(float((((valid.ci_high - valid.ci_low) / 2) ** 2).sum()))
        if n:
            mean = float(valid.ie_bits.sum()) / n
            assert close(row.ie_mean_bits, mean, 1e4)
            assert close(row.ie_mean_ci_low, mean - half / n, 1e4)
            assert close(row.ie_mean_ci_high, mean + half / n, 1e4)
            assert row.ie_mean_ci_low <= row.ie_mean_bits <= row.ie_mean_ci_high
        else:
            assert math.isnan(row.ie_mean_bits) and math.isnan(row.ie_mean_ci_low)
        if n and not missing:
            assert close(row.ie_sum_bits, float(valid.ie_bits.sum()), 1e5)
            assert close(row.ie_sum_ci_high - row.ie_sum_ci_low, 2 * half, 1e5)
        else:
            assert math.isnan(row.ie_sum_bits)  # a sum over fewer layers is not comparable
        problems = sorted({p for f in valid.flag for p in f.split(",") if p not in ("ok", "constant")})
        if not n:  # no layer has a value: the row has none either, and says so instead of reading ok
            problems = ["no_reading", *problems]
        assert row.flag == (",".join(problems) if problems else "ok")
        assert (row.flag == "ok") == (n > 0 and all(f in ("ok", "constant") for f in valid.flag))
        assert row.n_layers_flagged == sum(f not in ("ok", "constant") for f in valid.flag)


# --- several readings side by side --------------------------------------------------------------------------------


@st.composite
def reading_tables(draw, with_smoothed: bool = True) -> tuple[pd.DataFrame, dict]:
    """One MI table holding every reading: smoothed MI at two taus, the entropy limit and MINE."""
    parts, tables = [], {}
    readings = [("smoothed", 0.25), ("smoothed", 0.5)] if with_smoothed else []
    readings += [("entropy_limit", math.nan), ("mine", math.nan)]
    n_pos = draw(st.integers(1, 3))
    for reading, tau in readings:
        for layer in range(2):
            table = draw(mi_tables(n_seeds=1, with_flags=True).filter(lambda t: len(t["macro"][0]) >= n_pos))
            table = dict(table, macro=[table["macro"][0][:n_pos]], micro=[table["micro"][0][:n_pos]])
            tables[reading, None if math.isnan(tau) else tau, layer] = table
            parts.append(mi_frame(table, layer=layer).assign(reading=reading, tau=tau))
    return pd.concat(parts, ignore_index=True), tables


@SLOW
@given(reading_tables())
def test_each_reading_goes_through_the_one_ie_formula(data: tuple[pd.DataFrame, dict]) -> None:
    mi, _ = data
    long = ie_by_reading(mi)
    rows = 0
    for (reading, tau), part in mi.groupby(["reading", "tau"], dropna=False):
        mine = long[(long.reading == reading) & ((long.tau == tau) | (long.tau.isna() & math.isnan(tau)))]
        direct = information_emergence(part)
        pd.testing.assert_frame_equal(mine.drop(columns=["reading", "tau"]).reset_index(drop=True), direct,
                                      check_exact=False, rtol=1e-12, atol=1e-9)
        rows += len(direct)
    assert len(long) == rows


@SLOW
@given(reading_tables(), st.sampled_from([0.25, 0.5]))
def test_side_by_side_puts_each_reading_in_its_own_columns(data: tuple[pd.DataFrame, dict], tau: float) -> None:
    mi, tables = data
    table = side_by_side(ie_by_reading(mi), "smoothed", tau)
    assert (table.headline == f"smoothed tau={tau:g}").all() and (table.tau == tau).all()
    keys = ["model", "corpus", "shots", "layer", "position"]
    assert table[keys].equals(table[keys].sort_values(keys).reset_index(drop=True))
    assert not any(c.startswith("ie_limit_ci") or c == "ie_limit_flag" for c in table.columns)  # exact counts
    for row in table.itertuples():
        t, layer = row.position, row.layer
        for prefix, reading, key in (("ie_sigma", "smoothed", tau), ("ie_limit", "entropy_limit", None),
                                     ("ie_mine", "mine", None)):
            source = tables[reading, key, layer]
            assert close(getattr(row, f"{prefix}_bits"), ie_by_hand(source, 0, t), 1e4), prefix
            assert close(getattr(row, f"{prefix}_macro_bits"), source["macro"][0][t], 1e4), prefix
            assert close(getattr(row, f"{prefix}_micro_bits"), float(np.mean(source["micro"][0][: t + 1])), 1e4)
        assert row.ie_bits == row.ie_sigma_bits  # the headline is the smoothed reading at the headline tau
        assert (row.ci_low, row.ci_high, row.flag) == (row.ie_sigma_ci_low, row.ie_sigma_ci_high, row.ie_sigma_flag)


@SLOW
@given(reading_tables(with_smoothed=False))
def test_without_smoothed_mi_the_headline_is_mine(data: tuple[pd.DataFrame, dict]) -> None:
    mi, _ = data
    long = ie_by_reading(mi)
    table = side_by_side(long, "mine", 0.25)
    assert (table.headline == "mine").all() and "tau" not in table.columns
    assert "ie_sigma_bits" not in table.columns
    np.testing.assert_array_equal(table.ie_bits.to_numpy(), table.ie_mine_bits.to_numpy())
    models = models_side_by_side(long, "mine", 0.25)
    mine_only = model_summary(long[long.reading == "mine"])
    np.testing.assert_allclose(models.ie_mean_bits.to_numpy(), mine_only.ie_mean_bits.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(models.ie_mine_mean_bits.to_numpy(), mine_only.ie_mean_bits.to_numpy(), rtol=1e-12)
    limit = model_summary(long[long.reading == "entropy_limit"])
    np.testing.assert_allclose(models.ie_limit_mean_bits.to_numpy(), limit.ie_mean_bits.to_numpy(), rtol=1e-12)
    assert models.ie_mine_flag.tolist() == mine_only.flag.tolist()


# --- entropy counting ---------------------------------------------------------------------------------------------

SYMBOL_ROWS = st.integers(1, 4).flatmap(
    lambda k: st.lists(st.lists(st.integers(0, 3), min_size=k, max_size=k), min_size=1, max_size=40))


def relabelled(symbols: np.ndarray, seed: int) -> np.ndarray:
    """The same rows with every token id replaced through one bijection of the ids (sparse, far apart)."""
    ids = np.unique(symbols)
    new = np.random.default_rng(seed).permutation(10 * len(ids) + 100)[: len(ids)] * 7919
    return new[np.searchsorted(ids, symbols)]


def plug_in_bits(rows: list) -> float:
    counts = np.array(list(pd.Series([tuple(r) for r in rows]).value_counts()))
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@FAST
@given(SYMBOL_ROWS, st.integers(0, 2**16))
def test_entropy_is_invariant_to_row_order_and_relabelling(rows: list, seed: int) -> None:
    symbols = np.array(rows, dtype=np.int64)
    h = entropy_bits(symbols)
    assert close(h, plug_in_bits(rows))
    assert close(entropy_bits(symbols[np.random.default_rng(seed).permutation(len(symbols))]), h)
    assert close(entropy_bits(relabelled(symbols, seed)), h)
    assert -1e-12 <= h <= math.log2(len(symbols)) + 1e-12


@FAST
@given(st.integers(1, 60), st.integers(1, 3))
def test_entropy_of_distinct_rows_is_log2_of_their_count(n: int, k: int) -> None:
    rows = np.array([[i * (j + 1) for j in range(k)] for i in range(n)], dtype=np.int64)
    assert close(entropy_bits(rows), math.log2(n))
    assert close(entropy_bits(rows[:, 0]), math.log2(n))


@st.composite
def prefix_states(draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of (symbols, states, state class): each prefix maps to one of a few well-separated states, so several
    prefixes can share a state (the block merged them) and a state is a function of its prefix."""
    rows = np.array(draw(SYMBOL_ROWS), dtype=np.int64)
    _, prefix = np.unique(rows, axis=0, return_inverse=True)
    prefix = prefix.reshape(-1)
    n_prefixes = int(prefix.max()) + 1
    state_of_prefix = np.array(draw(st.lists(st.integers(0, 5), min_size=n_prefixes, max_size=n_prefixes)))
    centres = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal((6, 5)) * 10
    return rows, centres[state_of_prefix[prefix]], state_of_prefix[prefix]


@FAST
@given(prefix_states(), st.integers(0, 2**16))
def test_distinct_states_counts_and_invariances(data: tuple, seed: int) -> None:
    symbols, states, classes = data
    result = distinct_states(states, symbols, seed=0)
    n = len(symbols)
    assert result.n_states == len(np.unique(classes))
    assert result.n_prefixes == len(np.unique(symbols, axis=0))
    assert result.n_states <= result.n_prefixes
    assert close(result.entropy_bits, plug_in_bits(classes[:, None].tolist()))
    assert close(result.prefix_entropy_bits, entropy_bits(symbols))
    assert -1e-12 <= result.entropy_bits <= result.prefix_entropy_bits + 1e-12 <= math.log2(n) + 2e-12
    order = np.random.default_rng(seed).permutation(n)
    for other in (distinct_states(states[order], symbols[order], seed=0),
                  distinct_states(states, relabelled(symbols, seed), seed=0),
                  distinct_states(states, symbols, seed=seed)):  # the seed changes the run time, never the answer
        assert (other.n_states, other.n_prefixes) == (result.n_states, result.n_prefixes)
        assert close(other.entropy_bits, result.entropy_bits)
        assert close(other.prefix_entropy_bits, result.prefix_entropy_bits)


@FAST
@given(st.integers(2, 50), st.integers(1, 6), st.integers(0, 2**16))
def test_distinct_prefixes_with_distinct_states_read_log2_n(n: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # state i = i * a (a has no zero entry), rows shuffled: consecutive states lie sqrt(12) / n > 0.07 standardised
    # units apart, far beyond the 1e-3 tolerance, so no two prefixes may merge
    direction = rng.uniform(0.5, 5.0, d) * rng.choice([-1.0, 1.0], d)
    order = rng.permutation(n)
    states = order[:, None] * direction
    result = distinct_states(states, np.arange(n, dtype=np.int64))
    assert (result.n_states, result.n_prefixes, result.n_merged) == (n, n, 0)
    assert close(result.entropy_bits, math.log2(n))
    assert close(result.entropy_bits, result.cap_bits)


# --- convergence_flag ---------------------------------------------------------------------------------------------

BITS = st.floats(min_value=-20.0, max_value=20.0)
GAPS = st.floats(min_value=0.0, max_value=5.0)


@FAST
@given(BITS, GAPS, GAPS, st.one_of(st.none(), GAPS), st.floats(0.0, 0.2), st.sampled_from([1.0, -1.0]))
def test_a_larger_gap_never_turns_a_flag_back_to_ok(full: float, gap: float, more: float, loo_gap, mc_se: float,
                                                    sign: float) -> None:
    loo = None if loo_gap is None else full - sign * loo_gap
    small = convergence_flag(full, full + sign * gap, mc_se_bits=mc_se, loo_bits=loo)
    large = convergence_flag(full, full + sign * (gap + more), mc_se_bits=mc_se, loo_bits=loo)
    assert small in ("ok", "not_converged", "undersampled", "imprecise")
    if small != "ok":
        assert large != "ok"
    if small == "not_converged":
        assert large == "not_converged"
    # the same for the leave-one-out gap and the Monte Carlo error
    if loo is not None:
        wider_loo = convergence_flag(full, full + sign * gap, mc_se_bits=mc_se, loo_bits=loo - sign * more)
        assert small == "ok" or wider_loo != "ok"
    noisier = convergence_flag(full, full + sign * gap, mc_se_bits=mc_se + more, loo_bits=loo)
    assert small == "ok" or noisier != "ok"


@FAST
@given(BITS, st.floats(-20.0, 20.0), st.floats(0.0, 0.2), st.one_of(st.none(), st.floats(-20.0, 20.0)))
def test_flag_is_ok_exactly_when_every_gap_is_within_the_tolerance(full: float, half: float, mc_se: float,
                                                                   loo) -> None:
    tolerance = max(0.05, 0.05 * abs(full))
    within = abs(full - half) <= tolerance and (loo is None or abs(full - loo) <= tolerance) \
        and 1.96 * mc_se <= tolerance
    assert (convergence_flag(full, half, mc_se_bits=mc_se, loo_bits=loo) == "ok") == within
    assert convergence_flag(math.nan, half) == "nan" and convergence_flag(full, math.inf) == "nan"
    assert convergence_flag(full, half, mc_se_bits=math.nan) == "nan"


# --- config round trips -------------------------------------------------------------------------------------------


@st.composite
def config_dicts(draw) -> dict:
    """Valid configs over a small space: the dict a user writes in YAML."""
    layers = draw(st.one_of(
        st.just("all"),
        st.lists(st.integers(-3, 3), min_size=1, max_size=3),
        st.builds(lambda d: {"depths": d}, st.lists(st.floats(0.01, 1.0), min_size=1, max_size=3)),
    ))
    positions = draw(st.one_of(st.just("all"), st.just("last"), st.lists(st.integers(0, 6), min_size=1, max_size=3)))
    smoothed = {"tau": draw(st.floats(0.01, 2.0, exclude_min=True, exclude_max=True))}
    if draw(st.booleans()):
        smoothed["taus"] = draw(st.lists(st.floats(0.01, 2.0, exclude_min=True), min_size=1, max_size=3))
    corpus = draw(st.one_of(
        st.builds(lambda task, n: {"kind": "icl", "task": task, "n_entities": n},
                  st.sampled_from(["country", "animal", "color"]), st.integers(2, 8)),
        st.builds(lambda anchor, length: {"kind": "natural", "anchor": anchor, "length": length},
                  st.sampled_from(["start", "end"]), st.integers(2, 10)),
    ))
    return dict(
        name=draw(st.sampled_from(["sweep", "props"])),
        models=draw(st.lists(st.sampled_from(["tiny-gpt2", "tiny-llama"]), min_size=1, max_size=2, unique=True)),
        corpora=[corpus],
        shots=draw(st.lists(st.integers(1, 8), min_size=1, max_size=3)),
        layers=layers,
        positions=positions,
        seeds=draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)),
        readings=draw(st.lists(st.sampled_from(READINGS), min_size=1, max_size=3, unique=True)),
        smoothed=smoothed,
        entropy_limit={"tolerance": draw(st.floats(1e-6, 1e-1))},
        mine={"positions": draw(st.sampled_from(["all", "last"]))},
    )


@FAST
@given(config_dicts())
def test_config_survives_its_own_dict_and_the_runs_config_yaml(data: dict) -> None:
    """`to_dict()` is what a run writes to its config.yaml: parsing it (or the YAML) gives the same config back."""
    config = parse_config(data)
    for dumped in (config.to_dict(), yaml.safe_load(yaml.safe_dump(config.to_dict(), sort_keys=False))):
        again = parse_config(dumped)
        assert again == config
        assert again.content_hash() == config.content_hash()
