"""The Information Emergence formula, its intervals and its aggregates. The IE formula lives here and only here.

    IE(l, t) = MI_macro(l, t) - (1 / (t + 1)) * sum_{s=0..t} MI_micro(l, s)

MI_macro(l, t): MI between block l's input and output at position t of the full-context forward (the last
token of the prefix ending at t). MI_micro(l, s): the same MI when the token at position s is fed alone.
The paper's per-layer E(l) is IE(l, T-1). Intervals come from bootstrap replicates of each MI estimate
(and, with several seeds, from the pooled replicates of every seed), so a difference of two noisy estimates
never travels without its own uncertainty.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ie_ray.entropy_limit import entropy_bits  # noqa: F401  (re-exported: the ceiling beside every estimate)
from ie_ray.reduce.reading import reading_class, table_prefixes

GROUP_KEYS = ["model", "corpus", "shots", "layer"]
CI_LEVEL = 0.95


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    alpha = (1.0 - CI_LEVEL) / 2.0
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1.0 - alpha))


def information_emergence(mi: pd.DataFrame, micro_source: str = "micro") -> pd.DataFrame:
    """Assemble the IE table from the tidy MI table.

    `mi` has one row per estimate with columns model, corpus, shots, layer, position, level, seed, mi_bits,
    ceiling_bits and `bootstrap_bits` (an array of replicates). `micro_source="macro"` is the reference
    code's variant, where the micro term at position s is the full-context MI at s (what its MINE script
    actually computed), instead of the single-token MI.
    """
    rows = []
    for keys, group in mi.groupby(GROUP_KEYS, sort=True):
        macro = group[group.level == "macro"]
        micro = group[group.level == micro_source]
        positions = sorted(macro.position.unique())
        seeds = sorted(macro.seed.unique())
        # per seed: arrays indexed by position -> (value, replicates)
        def table(frame: pd.DataFrame, seed: int) -> dict[int, tuple[float, np.ndarray]]:
            part = frame[frame.seed == seed]
            return {int(r.position): (float(r.mi_bits), np.asarray(r.bootstrap_bits)) for r in part.itertuples()}

        per_seed = {s: (table(macro, s), table(micro, s)) for s in seeds}
        for t in positions:
            values, replicates, micro_means = [], [], []
            for seed in seeds:
                macro_t, micro_t = per_seed[seed]
                needed = range(int(t) + 1)
                missing = [s for s in needed if s not in micro_t]
                if t not in macro_t or missing:
                    raise ValueError(
                        f"IE({keys}, position {t}) needs micro MI at positions {missing}; "
                        "request positions 'all' (IE at t averages the micro MI of positions 0..t)"
                    )
                micro_value = float(np.mean([micro_t[s][0] for s in needed]))
                values.append(macro_t[t][0] - micro_value)
                micro_means.append(micro_value)
                terms = [macro_t[t][1], *(micro_t[s][1] for s in needed)]
                if all(len(r) for r in terms):
                    micro_reps = np.mean(np.broadcast_arrays(*terms[1:]), axis=0)
                    replicates.append(terms[0] - micro_reps)
                else:  # a secondary tau of the lean pass: estimates without replicates, so IE has no interval
                    replicates.append(np.zeros(0))
            pooled = np.concatenate(replicates) if all(r.size for r in replicates) else np.zeros(0)
            low, high = _interval(pooled) if pooled.size else (math.nan, math.nan)
            ceiling = float(macro[(macro.position == t)].ceiling_bits.iloc[0])
            model, corpus, shots, layer = keys
            rows.append(
                dict(
                    model=model,
                    corpus=corpus,
                    shots=int(shots),
                    layer=int(layer),
                    position=int(t),
                    mi_macro_bits=float(np.mean([per_seed[s][0][t][0] for s in seeds])),
                    mi_micro_bits=float(np.mean(micro_means)),
                    ie_bits=float(np.mean(values)),
                    ci_low=low,
                    ci_high=high,
                    macro_ceiling_bits=ceiling,
                    n_seeds=len(seeds),
                    flag=_worst_flag(pd.concat([macro[macro.position == t], micro[micro.position <= t]])),
                )
            )
    return pd.DataFrame(rows)


def _worst_flag(frame: pd.DataFrame) -> str:
    """An IE value inherits any problem of the estimates it is made of."""
    flags = [f for f in frame.flag.unique() if f not in ("ok", "constant")]
    return ",".join(sorted(flags)) if flags else "ok"


def layer_summary(ie: pd.DataFrame) -> pd.DataFrame:
    """Per-layer E(l) as in the paper: IE at the last analysed position (macro = the whole sequence)."""
    last = ie.loc[ie.groupby(GROUP_KEYS).position.idxmax()]
    return last.reset_index(drop=True)


def model_summary(ie: pd.DataFrame) -> pd.DataFrame:
    """Model-level IE: mean and sum over the analysed layers of E(l) (the paper does not say which it used).

    Intervals of the mean/sum assume independent layer estimates (each layer has its own estimators), so the
    half-widths combine in quadrature.

    A layer whose E(l) has no value (its estimates failed and were blanked) is left out and counted in
    `n_layers_missing`: the mean is then over the layers that have one (`n_layers`), and the sum is NaN,
    because a sum over fewer layers is not comparable with a sum over all of them. A layer whose E(l) carries a
    flag (not converged, memorised critic, ...) is kept in the mean but its flag becomes the row's `flag`
    (`n_layers_flagged` counts them), so no aggregate of a failed reading reads `ok`. A row without a value
    is never `ok` either: `no_reading` when no layer has one (e.g. the headline reading was not computed:
    `readings: [entropy_limit]` has MINE as its headline and no MINE row), `nan` if the mean is not finite.
    """
    per_layer = layer_summary(ie)
    rows = []
    for (model, corpus, shots), group in per_layer.groupby(["model", "corpus", "shots"], sort=True):
        valid = group[np.isfinite(group.ie_bits.to_numpy(dtype=float))]
        half = ((valid.ci_high - valid.ci_low) / 2.0).to_numpy()
        n, missing = len(valid), len(group) - len(valid)
        mean = float(valid.ie_bits.mean()) if n else math.nan
        total = float(valid.ie_bits.sum()) if n and not missing else math.nan
        spread = float(np.sqrt((half**2).sum()))  # quadrature half-width of the sum
        # an aggregate is only as sound as its layers: any flagged layer's flag travels with it
        layer_flags = valid["flag"] if "flag" in valid.columns else pd.Series("ok", index=valid.index)
        flags = sorted({f for v in layer_flags for f in str(v).split(",") if f not in ("ok", "constant", "")})
        if not math.isfinite(mean):
            flags = ["no_reading" if n == 0 else "nan", *flags]
        rows.append(
            dict(
                model=model,
                corpus=corpus,
                shots=int(shots),
                n_layers=n,
                n_layers_missing=missing,
                ie_mean_bits=mean,
                ie_mean_ci_low=mean - spread / n if n else math.nan,
                ie_mean_ci_high=mean + spread / n if n else math.nan,
                ie_sum_bits=total,
                ie_sum_ci_low=total - spread,
                ie_sum_ci_high=total + spread,
                n_layers_flagged=int(sum(str(v) not in ("ok", "constant", "") for v in layer_flags)),
                flag=",".join(flags) if flags else "ok",
            )
        )
    return pd.DataFrame(rows)


# --- several readings of one quantity, side by side -------------------------------------------------------------

TABLE_KEYS = ["model", "corpus", "shots", "layer", "position"]


def ie_by_reading(mi: pd.DataFrame, micro_source: str = "micro") -> pd.DataFrame:
    """IE for every reading of the MI table (one `information_emergence` per (reading, tau)), stacked long.

    `mi` carries `reading` ("smoothed", "entropy_limit", "mine") and `tau` (the smoothed MI's noise fraction,
    NaN for the others). Every reading goes through the one IE formula above, so they differ only in their MI.
    """
    frames = []
    for (reading, tau), part in mi.groupby(["reading", "tau"], dropna=False, sort=True):
        ie = information_emergence(part, micro_source=micro_source)
        ie.insert(0, "tau", tau)
        ie.insert(0, "reading", reading)
        frames.append(ie)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def side_by_side(long: pd.DataFrame, headline: str, tau: float) -> pd.DataFrame:
    """The IE table users read: the headline reading as `ie_bits` / `ci_low` / `ci_high` / `flag` (what
    every aggregate and comparison uses), and each reading in its own columns next to it:
    `ie_sigma_*` (smoothed MI at the headline tau), `ie_limit_*` (entropy limit), `ie_mine_*` (MINE)."""
    def pick(reading: str) -> pd.DataFrame:
        part = long[long.reading == reading]
        if reading_class(reading).has_tau:
            part = part[np.isclose(part.tau.astype(float), tau)]
        return part

    head = pick(headline)
    table = head[TABLE_KEYS + ["mi_macro_bits", "mi_micro_bits", "ie_bits", "ci_low", "ci_high",
                               "macro_ceiling_bits", "n_seeds", "flag"]].copy()
    table.insert(len(TABLE_KEYS), "headline", f"smoothed tau={tau:g}" if headline == "smoothed" else headline)
    for reading, prefix in table_prefixes().items():
        part = pick(reading)
        if part.empty:
            continue
        cols = {"ie_bits": f"{prefix}_bits", "ci_low": f"{prefix}_ci_low", "ci_high": f"{prefix}_ci_high",
                "flag": f"{prefix}_flag", "mi_macro_bits": f"{prefix}_macro_bits",
                "mi_micro_bits": f"{prefix}_micro_bits"}
        if reading_class(reading).exact:  # exact counts: no interval, no flag of its own
            cols = {k: v for k, v in cols.items() if k in ("ie_bits", "mi_macro_bits", "mi_micro_bits")}
        table = table.merge(part[TABLE_KEYS + list(cols)].rename(columns=cols), on=TABLE_KEYS, how="outer")
    if "smoothed" in set(long.reading):
        table["tau"] = tau
    return table.sort_values(TABLE_KEYS).reset_index(drop=True)


def models_side_by_side(long: pd.DataFrame, headline: str, tau: float) -> pd.DataFrame:
    """models.csv: model-level IE of the headline reading (`ie_mean_bits`, ...) and of every reading next to it
    (`ie_sigma_mean_bits`, `ie_limit_mean_bits`, `ie_mine_mean_bits`, with intervals and flags)."""
    table = model_summary(side_by_side(long, headline, tau))
    keys = ["model", "corpus", "shots"]
    for reading, prefix in table_prefixes().items():
        part = long[long.reading == reading]
        if reading_class(reading).has_tau:
            part = part[np.isclose(part.tau.astype(float), tau)]
        if part.empty:
            continue
        summary = model_summary(part)
        wanted = ["ie_mean_bits", "ie_mean_ci_low", "ie_mean_ci_high", "flag"]
        renamed = {c: c.replace("ie_", f"{prefix}_", 1) if c.startswith("ie_") else f"{prefix}_{c}"
                   for c in wanted}
        table = table.merge(summary[keys + wanted].rename(columns=renamed), on=keys, how="left")
    return table
