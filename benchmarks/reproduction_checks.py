"""Every figure that `results/REPRODUCTION.md` states beyond the run reports, recomputed from the committed tables.

    python benchmarks/reproduction_checks.py            # writes results/reproduction_checks.md

Why it exists: an independent read of the report against the committed tables (issue 24, point 6) found figures
that no committed file held and summaries that the tables contradict. Each section below recomputes one such
figure from `results/*/{ie.csv, ie_readings.parquet, mi.parquet, manifest.json, ...}` with the package's own IE
formula (`ie_ray.ie`, `ie_ray.brackets`, `ie_ray.variance`), and the last section re-reads every verdict at each
tau the runs stored, at both ends of the bracket ("holds under"). Nothing here needs the runs' caches: it reads
only what is committed, in seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ie_ray.brackets import (  # noqa: E402
    committed_bands_files,
    ie_brackets,
    ie_brackets_by_model,
    with_calibrated_interval,
)
from ie_ray.control_comparison import MEAN_BLOCK, step_of, trends  # noqa: E402
from ie_ray.estimators.diagnostics import NEGATIVE_MARGIN_BITS  # noqa: E402
from ie_ray.ie import ie_by_reading, layer_summary, model_summary  # noqa: E402
from ie_ray.reduce.mine_reading import MEMORISED_MARGIN_BITS  # noqa: E402
from ie_ray.variance import analyse_variance, saturation_shot  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "results"
TAUS = (0.25, 1.0)
#: The runs behind each 10k ICL verdict, and their tokens per shot (shot k ends at position k * m - 1).
ICL_RUNS = {"icl-shots-10k": 2, "icl-animal-10k": 2, "icl-2token-10k": 3}


def _md(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def _mi(run: str) -> pd.DataFrame:
    return pd.read_parquet(RESULTS / run / "mi.parquet")


def ie_at(run: str, tau: float, end: str = "plugin") -> pd.DataFrame:
    """The IE table of one run at one stored tau, from the plug-in (`mi_bits`, with its bootstrap interval) or
    the leave-one-out end of the bracket (`loo_bits`; its interval is the plug-in's, shifted)."""
    mi = _mi(run)
    smoothed = mi[(mi.reading == "smoothed") & np.isclose(mi.tau.astype(float), tau)]
    ie = ie_by_reading(smoothed)
    if end == "loo":
        loo = ie_brackets(mi, tau)[["model", "corpus", "shots", "layer", "position", "ie_loo_bits"]]
        ie = ie.merge(loo, on=["model", "corpus", "shots", "layer", "position"])
        shift = ie.ie_loo_bits - ie.ie_bits
        ie = ie.assign(ie_bits=ie.ie_loo_bits, ci_low=ie.ci_low + shift, ci_high=ie.ci_high + shift)
    return ie


def shot_ends(ie: pd.DataFrame, m: int) -> pd.DataFrame:
    """Block x shot table of IE at the shot ends (position k * m - 1)."""
    ends = ie[(ie.position + 1) % m == 0].assign(shot=lambda f: (f.position + 1) // m)
    return ends.pivot_table(index="layer", columns="shot", values="ie_bits")


# --- point 6 of issue 24 --------------------------------------------------------------------------------------


def sawtooth() -> list[str]:
    """Entity token (position 2k-2) minus the separator that ends the shot (2k-1), per block, at each stored tau."""
    lines = []
    for tau in TAUS:
        ie = ie_at("icl-shots-10k", tau)
        table = ie.pivot_table(index="layer", columns="position", values="ie_bits")
        rows = []
        for layer, row in table.iterrows():
            diff = np.array([row[2 * k - 2] - row[2 * k - 1] for k in range(1, 13)])
            rows.append(dict(block=layer, shot1=diff[0], min_shots_2_12=diff[1:].min(),
                             max_shots_2_12=diff[1:].max(), min_shots_3_12=diff[2:].min(), max_shots_3_12=diff[2:].max()))
        lines += [f"## Sawtooth: entity token minus the separator of the same shot (icl-shots-10k, tau {tau:g}, bits)",
                  "", _md(pd.DataFrame(rows)), ""]
    ie = pd.read_csv(RESULTS / "icl-shots-10k" / "ie.csv")
    table = ie.pivot_table(index="layer", columns="position", values="ie_sigma_bits")
    micro0 = ie[ie.position == 0].set_index("layer").ie_sigma_micro_bits
    entity = table.loc[29, [2 * k - 2 for k in range(1, 13)]].to_numpy()
    return lines + ["Block 29 at the entity tokens, shots 1-12 (tau 0.25): " + ", ".join(f"{v:.2f}" for v in entity), "",
                    "One entity's own smoothed MI (micro term at position 0, tau 0.25): "
                    + ", ".join(f"block {k} {v:.2f}" for k, v in micro0.items()), ""]


def per_block_saturation() -> list[str]:
    """Per block of each ICL run: the shot where IE stops growing (significance rule on that block alone), the
    shot of its maximum, and the change from the maximum to the last shot, plug-in and leave-one-out end."""
    lines = ["## Saturation per block (tau 0.25)", "",
             "Significance rule of `ie_ray.variance` on each block's own curve (se from its 95% interval).", ""]
    for run, m in ICL_RUNS.items():
        plug, loo = ie_at(run, 0.25), ie_at(run, 0.25, "loo")
        rows = []
        for layer in sorted(plug.layer.unique()):
            curves = {}
            for name, ie in (("plug-in", plug), ("leave-one-out", loo)):
                part = ie[(ie.layer == layer) & ((ie.position + 1) % m == 0)].sort_values("position")
                shots = (part.position.to_numpy() + 1) // m
                y = part.ie_bits.to_numpy()
                se = ((part.ci_high - part.ci_low) / (2 * 1.959964)).to_numpy()
                curves[name] = (shots, y, se)
            shots, y, se = curves["plug-in"]
            _, y_loo, _ = curves["leave-one-out"]
            rows.append(dict(block=layer, saturation=saturation_shot(shots, y, se).shot, last_minus_max=y[-1] - y.max(),
                             max_at=int(shots[np.argmax(y)]), max_bits=y.max(), last_bits=y[-1],
                             loo_max_at=int(shots[np.argmax(y_loo)]), loo_last_minus_max=y_loo[-1] - y_loo.max()))
        lines += [f"### {run}", "", _md(pd.DataFrame(rows)), ""]
    return lines


def natural_flags() -> list[str]:
    mi = _mi("natural-10k")
    smoothed = mi[mi.reading == "smoothed"]
    counts = smoothed.groupby(["tau", "level"]).flag.apply(lambda f: f"{(f == 'undersampled').sum()} of {len(f)}")
    ie = pd.read_csv(RESULTS / "natural-10k" / "ie.csv")
    late = ie[ie.position >= 1]  # tokens 2-8
    macro = smoothed[np.isclose(smoothed.tau.astype(float), 0.25) & (smoothed.level == "macro") & (smoothed.position >= 1)]
    flagged = late[late.ie_sigma_flag != "ok"]
    by_token = flagged.groupby(flagged.position + 1).size()
    return ["## natural-10k flags", "",
            "`undersampled` smoothed readings per (tau, level): "
            + "; ".join(f"tau {t:g} {lvl}: {c}" for (t, lvl), c in counts.items()),
            f"of {len(mi)} rows of mi.parquet (every tau and the entropy limit).", "",
            f"ie.csv rows at tokens 2-8 whose IE_sigma is flagged: {len(flagged)} of {len(late)}; per token: "
            + ", ".join(f"{t}: {n}" for t, n in by_token.items())
            + f"; at every token: {(ie.ie_sigma_flag != 'ok').sum()} of {len(ie)}", "",
            "macro readings at tau 0.25, tokens 2-8, not `ok`: "
            + f"{(macro.flag != 'ok').sum()} of {len(macro)}", ""]


def distinct_windows() -> list[str]:
    rows = []
    for run in ("gen-vs-human-1500", "natural-10k", "icl-shots-10k", "icl-animal-10k", "icl-2token-10k"):
        manifest = json.loads((RESULTS / run / "manifest.json").read_text())
        for cell, c in manifest["corpora"].items():
            rows.append(dict(run=run, cell=cell, n_samples=c["n_samples"], n_distinct=c["n_distinct_sequences"]))
    readings = pd.read_parquet(RESULTS / "gen-vs-human-1500" / "ie_readings.parquet")
    limit = readings[(readings.reading == "entropy_limit")]
    limit = limit[limit.position == limit.position.max()].groupby(["model", "corpus"]).mi_macro_bits.mean()
    return ["## Distinct windows (manifest.json `n_distinct_sequences`)", "", _md(pd.DataFrame(rows)), "",
            "gen-vs-human-1500, macro entropy limit at the last token (log2 1,500 = 10.55): "
            + ", ".join(f"{m}/{c} {v:.2f}" for (m, c), v in limit.items()), ""]


def mine_checks() -> list[str]:
    findings = pd.read_csv(RESULTS / "icl-shots-small" / "variance_findings.csv").iloc[0]
    mi = _mi("cross-model-small")
    bad = mi[mi.mi_bits < -3]
    layers = pd.read_csv(RESULTS / "cross-model-small" / "layers.csv")
    stored = layers[layers.ie_bits < -3]
    rows = bad[["model", "corpus", "shots", "layer", "position", "level", "mi_bits", "ci_low", "ci_high",
                "max_train_bits", "ceiling_bits", "flag"]].copy()
    rows["held-out interval below -margin"] = rows.ci_high < -NEGATIVE_MARGIN_BITS
    rows["max train > ceiling + margin"] = rows.max_train_bits > rows.ceiling_bits + MEMORISED_MARGIN_BITS
    return ["## MINE", "",
            f"icl-shots-small, std peak shot {findings.peak_std_layers:g}, interval "
            f"[{findings.peak_std_layers_ci_low:g}, {findings.peak_std_layers_ci_high:g}]", "",
            "cross-model-small: the two failed Gemma estimates against today's rules "
            f"(NEGATIVE_MARGIN_BITS = {NEGATIVE_MARGIN_BITS}, MEMORISED_MARGIN_BITS = {MEMORISED_MARGIN_BITS}):", "",
            _md(rows), "",
            "Their E(l) rows in the committed layers.csv carry the flags: "
            + ", ".join(f"block {r.layer}: {r.ie_bits:.2f} bits, `{r.flag}`" for r in stored.itertuples()), ""]


#: MINE at 20,000 lists (issue 25 item 1, paper comparison): blocks 5/15/25/29, the last position only.
MINE_20K_RUN = "icl-country-20k-mine"


def mine_at_20k() -> list[str]:
    """E(l) at the last position of the 12-shot country lists from the three readings side by side: MINE (the
    paper's bound, held-out readout, with its flag), IE_sigma at tau 0.25 and the entropy limit, with the macro
    MI each reads and its ceiling."""
    path = RESULTS / MINE_20K_RUN / "ie_readings.csv"
    if not path.is_file():
        return [f"## MINE at 20,000 lists: {MINE_20K_RUN} is not committed yet", ""]
    readings = pd.read_csv(path)
    last = readings.position.max()
    part = readings[(readings.position == last) & ((readings.reading != "smoothed")
                                                   | np.isclose(readings.tau.fillna(-1.0), 0.25))]
    columns = ["layer", "reading", "mi_macro_bits", "mi_micro_bits", "ie_bits", "ci_low", "ci_high",
               "macro_ceiling_bits", "flag"]
    table = part[columns].sort_values(["layer", "reading"])
    return [f"## MINE at 20,000 lists ({MINE_20K_RUN}, position {last}: the end of the last shot)", "",
            "E(l) = macro MI - mean micro MI per reading (smoothed at tau 0.25); `macro_ceiling_bits`: log2 of the "
            "distinct prefixes (the entropy limit's cap, and MINE's where the critic memorises).", "",
            _md(table), ""]


def timings() -> list[str]:
    rows = []
    for manifest_path in sorted(RESULTS.glob("*/manifest.json")) + sorted(RESULTS.glob("*/*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        seconds = manifest.get("timings_s")
        if not seconds:
            continue
        run = str(manifest_path.parent.relative_to(RESULTS))
        row = dict(run=run, extract_min=sum(v for k, v in seconds.items() if k.startswith("extract")) / 60,
                   reduce_min=sum(v for k, v in seconds.items() if k.startswith("reduce")) / 60,
                   total_min=sum(seconds.values()) / 60)
        mi_path = manifest_path.parent / "mi.parquet"
        if mi_path.exists():
            mi = pd.read_parquet(mi_path)
            smoothed = mi[(mi.reading == "smoothed") & (mi.flag != "constant")] if "reading" in mi else mi[:0]
            if len(smoothed) and "wall_s" in smoothed:
                row["median_wall_s_smoothed"] = float(smoothed.wall_s.median())
        usage = manifest.get("usage") or {}
        row["peak_memory_gb"] = usage.get("peak_memory_gb", np.nan)
        row["peak_states_disk_gb"] = usage.get("peak_states_disk_gb", np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    generated = {p.parent.name: json.loads(p.read_text()).get("seconds", np.nan) / 60
                 for p in sorted((RESULTS / "generated").glob("*/provenance.json"))}
    cited = ["cross-model-small", "icl-shots-small", "natural-small", "text-proxy-small", "gen-vs-human-small",
             "gen-vs-human-1500", "icl-shots-10k", "icl-animal-10k", "icl-2token-10k", "natural-10k", "family-kjv/ie"]
    recorded = table[table.run.isin(cited)].total_min.sum() + sum(generated.values())
    everything = table.total_min.sum() + sum(generated.values())
    # float16 states the reducer reads: N x positions x blocks x 2 sides x width x 2 bytes
    natural_gib = 10_000 * 8 * 14 * 2 * 576 * 2 / 2**30
    shots_gib = 10_000 * 24 * 7 * 2 * 576 * 2 / 2**30
    return ["## Timings and sizes that the committed manifests hold", "", _md(table), "",
            "Generation (provenance.json `seconds`), min: " + ", ".join(f"{k} {v:.1f}" for k, v in generated.items()),
            "", f"Sum of the recorded times of the runs the first report cited (before the 30-block runs), "
            f"generation included: {recorded:.0f} min ({recorded / 60:.1f} h); of every run in the table above, "
            f"generation included: {everything:.0f} min ({everything / 60:.1f} h). Not recorded: natural-10k's "
            "extraction and its first reduction pass, the family's training.", "",
            f"float16 states by arithmetic (N x positions x blocks x 2 sides x 576 x 2 bytes): natural-10k "
            f"{natural_gib:.2f} GiB, icl-shots-10k {shots_gib:.2f} GiB", ""]


# --- "holds under": every verdict at every stored tau, both ends of the bracket --------------------------------


def icl_shape(run: str, m: int, tau: float, end: str) -> dict:
    """Block-mean curve at the shot ends: saturation shot (significance rule), its maximum, the fall after it,
    and the late block's rise over shots 1-3; plus the std peak across blocks and its interval."""
    ie = ie_at(run, tau, end)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyse_variance(ie, shot_length=m)
    s, f = result.summary, result.findings.iloc[0]
    y = s.ie_mean_bits.to_numpy()
    late = shot_ends(ie, m).loc[29].to_numpy()
    return dict(run=run, tau=tau, end=end, saturation=f.saturation_shot,
                mean_first=y[0], mean_max=y.max(), mean_last=y[-1], block29_shots_1_3=late[:3].round(2).tolist(),
                block29_last=late[-1], std_peak=f.peak_std_layers,
                std_peak_ci=f"[{f.peak_std_layers_ci_low:g}, {f.peak_std_layers_ci_high:g}]",
                near_share=f.peak_std_layers_near_saturation_share)


def natural_shape(tau: float, end: str) -> dict:
    ie = ie_at("natural-10k", tau, end)
    b29 = ie[ie.layer == 29].sort_values("position").ie_bits.to_numpy()
    mean = ie.groupby("position").ie_bits.mean().to_numpy()
    return dict(tau=tau, end=end, block29_tokens_1_3=b29[:3].round(2).tolist(), block29_token8=b29[7],
                mean_tokens_1_3=mean[:3].round(2).tolist(), mean_token8=mean[7])


def model_level(run: str, tau: float, end: str) -> pd.DataFrame:
    return model_summary(layer_summary(ie_at(run, tau, end)))[["model", "corpus", "shots", "ie_mean_bits",
                                                              "ie_mean_ci_low", "ie_mean_ci_high"]]


def family(tau: float) -> dict:
    readings = pd.read_parquet(RESULTS / "family-kjv" / "ie" / "ie_readings.parquet")
    part = readings[(readings.reading == "smoothed") & np.isclose(readings.tau.astype(float), tau)]
    models = model_summary(part).pivot_table(index=["corpus", "shots"], columns="model", values="ie_mean_bits")
    order = [f"family-kjv-{s}" for s in ("xs", "s", "m", "l", "xl")]
    models = models[order]
    highest = models[order[:4]].idxmax(axis=1).str.replace("family-kjv-", "")
    r = {f"{p}->{t}": np.corrcoef(models[f"family-kjv-{p}"], models[f"family-kjv-{t}"])[0, 1]
         for p, t in (("xs", "l"), ("s", "l"), ("m", "l"), ("xs", "xl"), ("s", "xl"), ("m", "xl"), ("l", "xl"))}
    return dict(tau=tau, highest_of_xs_l=", ".join(highest), proxy_a_r=", ".join(f"{k} {v:.2f}" for k, v in r.items()))


def gen_rows(run: str, tau: float, end: str) -> list[dict]:
    """Claims 1 and 5 from a generated-vs-human run: per measuring model, the human text's model-level IE and
    each source's difference from it."""
    levels = model_level(run, tau, end)
    table = levels.pivot_table(index="model", columns="corpus", values="ie_mean_bits")
    human = levels[levels.corpus == "human-kjv"]
    cis = {r.model: f"[{r.ie_mean_ci_low:.2f}, {r.ie_mean_ci_high:.2f}]" for r in human.itertuples()}
    return [dict(tau=tau, end=end, measuring=model, human=row["human-kjv"], human_ci=cis[model],
                 own_minus_human=row[f"generated-{'smollm2' if 'smollm2' in model else 'gemma3'}"] - row["human-kjv"],
                 smollm2_text_minus_human=row["generated-smollm2"] - row["human-kjv"],
                 gemma_text_minus_human=row["generated-gemma3"] - row["human-kjv"])
            for model, row in table.iterrows()]


#: Claim 5 at >= 2,000 windows per source, every block of both measuring models (issue 25 item 4), under the
#: default scale rule and the second one (the same config with `scale_rule: total_no_sink`).
GEN_2000 = "gen-vs-human-2000"
GEN_2000_TOTAL = "convention-gen-vs-human-2000-total"


def block_order(ie: pd.DataFrame, source: str, reference: str = "human-kjv",
                low: str = "ci_low", high: str = "ci_high") -> dict[str, int]:
    """Per block at the last token: how many blocks read `source` above / below `reference` with disjoint
    intervals (`low`, `high`), how many overlap, and how many lack an interval. Why per block: a model-level mean
    can hide blocks that disagree."""
    last = layer_summary(ie).set_index(["model", "corpus", "layer"])
    a, b = last.xs(source, level="corpus"), last.xs(reference, level="corpus")
    a, b = a.align(b, join="inner", axis=0)
    lacking = a[low].isna() | a[high].isna() | b[low].isna() | b[high].isna()
    above = int(((a[low] > b[high]) & ~lacking).sum())
    below = int(((a[high] < b[low]) & ~lacking).sum())
    return dict(above=above, below=below, overlap=len(a) - above - below - int(lacking.sum()),
                no_interval=int(lacking.sum()))


def gen_vs_human_2000(run: str = GEN_2000, rule: str = "pooled_no_sink") -> list[str]:
    """Claims 5 and 1 at 2,000 windows per source, all blocks: the model-level difference from human text at every
    stored tau and both ends, the per-block order, and the entropy limit (the token-diversity confound). `rule`
    names the run's noise-scale rule in the heading, so the two conventions' sections read side by side."""
    if not (RESULTS / run / "mi.parquet").is_file():
        return [f"## Generated vs human at 2,000 windows ({rule}): {run} is not committed yet", ""]
    taus = stored_taus(run)
    levels = pd.DataFrame([row for tau in taus for end in ("plugin", "loo") for row in gen_rows(run, tau, end)])
    blocks = []
    for tau in taus:
        for end in ("plugin", "loo"):
            ie = ie_at(run, tau, end)
            for model, part in ie.groupby("model", sort=True):
                for source in ("generated-smollm2", "generated-gemma3"):
                    blocks.append(dict(tau=tau, end=end, measuring=model, source=source,
                                       blocks=part.layer.nunique(), **block_order(part, source)))
    # tau 0.25 with the calibrated interval of every committed calibration (what a rerun's tables would carry: the
    # run's ie.parquet may predate a model's calibration, Gemma 3's was added on 2026-12-06)
    headline = pd.read_parquet(RESULTS / run / "ie.parquet")
    headline = with_calibrated_interval(headline, _mi(run), float(headline.tau.iloc[0]))
    for model, part in headline.groupby("model", sort=True):
        for source in ("generated-smollm2", "generated-gemma3"):
            blocks.append(dict(tau=float(part.tau.iloc[0]), end="calibrated", measuring=model, source=source,
                               blocks=part.layer.nunique(), **block_order(part, source, low="ie_sigma_cal_low",
                                                                          high="ie_sigma_cal_high")))
    readings = pd.read_parquet(RESULTS / run / "ie_readings.parquet")
    limit = readings[readings.reading == "entropy_limit"]
    limit = (limit[limit.position == limit.position.max()].groupby(["model", "corpus"])
             [["ie_bits", "mi_macro_bits", "mi_micro_bits"]].mean().reset_index())
    manifest = json.loads((RESULTS / run / "manifest.json").read_text())
    sizes = ", ".join(f"{cell} {c['n_samples']} ({c['n_distinct_sequences']} distinct)"
                      for cell, c in manifest["corpora"].items())
    return [f"## Generated vs human at 2,000 windows per source ({run}, scale rule {rule}), every block", "",
            f"Windows: {sizes}. Model-level: the mean over every block of the run of E(l) at the last token, "
            "interval in quadrature; `*_minus_human`: a source's mean minus the human text's.",
            "", _md(levels), "",
            "Per block (E(l) at the last token): blocks where the source reads above / below human KJV text with "
            "disjoint bootstrap intervals (the leave-one-out end's interval is the plug-in's, shifted); `calibrated`: "
            "the calibrated interval of the headline table, each model with the bias band measured on its own states "
            "(`results/validation/smoothed-real*/`; a model without one reads `no_interval`).", "",
            _md(pd.DataFrame(blocks)), "",
            "The entropy limit at the last token, mean over blocks: IE, its macro term (log2 of the distinct "
            "windows at most) and its micro term (the mean single-token entropy: lower for less diverse tokens).", "",
            _md(limit), ""]


def holds_under() -> list[str]:
    icl = pd.DataFrame([icl_shape(run, m, tau, end) for run, m in ICL_RUNS.items() for tau in TAUS
                        for end in ("plugin", "loo")])
    natural = pd.DataFrame([natural_shape(tau, end) for tau in TAUS for end in ("plugin", "loo")])
    gen = [row for tau in TAUS for end in ("plugin", "loo") for row in gen_rows("gen-vs-human-1500", tau, end)]
    fam = pd.DataFrame([family(tau) for tau in TAUS])
    proxy_b = pd.read_csv(RESULTS / "family-kjv" / "ie" / "compare" / "proxy_b_loo.csv")
    width = (proxy_b.pi_high - proxy_b.pi_low)
    return ["## Holds under: each verdict's statistic at every stored tau, at both ends of the bracket", "",
            "Scale rule: these runs stored `pooled_no_sink` (mi.parquet `scale_rule`); the second rule is read in "
            "the sections \"Conventions\", \"ICL seeds and conventions\" and \"Second scale rule\" below.", "",
            "### Claims 2a, 2b, 3 (block mean and block 29 at the shot ends; std across blocks)", "", _md(icl), "",
            "### Claim 4 (natural-10k)", "", _md(natural), "",
            "### Claims 1 and 5 (gen-vs-human-1500, model-level mean over 5 blocks)", "", _md(pd.DataFrame(gen)), "",
            "### Claims 1 and 6 (family-kjv, model-level; the largest of xs..l per condition, proxy A r)", "",
            _md(fam), "",
            f"Proxy B leave-one-out 95% prediction intervals: {width.min():.1f}-{width.max():.1f} bits wide "
            f"({len(proxy_b)} predictions, each from 3 members)", ""]


#: Natural-text runs read under each scale convention (run directory -> its rule), where committed.
CONVENTION_RUNS = {"natural-kjv-start8-all": "pooled_no_sink", "convention-natural-kjv-start8-total": "total_no_sink"}
CONVENTION_TAUS = (0.25, 0.5, 1.0)


def token_growth(run: str, tau: float, end: str) -> dict:
    """Does IE grow token by token? Block 29 and the mean over blocks at each token (`ie_ray.variance` with one
    token per "shot": its mean and standard error), the token where growth stops (its significance rule), and
    token 8 against token 3 (z = difference / combined standard error; "rises"/"falls" beyond 1.96)."""
    ie = ie_at(run, tau, end)
    b29 = ie[ie.layer == ie.layer.max()].sort_values("position")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyse_variance(ie, shot_length=1)
    summary, finding = result.summary.sort_values("shot"), result.findings.iloc[0]
    m, se = summary.ie_mean_bits.to_numpy(), summary.se_mean_bits.to_numpy()
    z = (m[-1] - m[2]) / max(float(np.hypot(se[-1], se[2])), 1e-12)
    return dict(run=run, rule=CONVENTION_RUNS[run], tau=tau, end=end, blocks=ie.layer.nunique(),
                block29_tokens=", ".join(f"{v:.2f}" for v in b29.ie_bits),
                mean_tokens=", ".join(f"{v:.2f}" for v in m), growth_stops_at_token=int(finding.saturation_shot),
                token8_vs_3=f"{m[-1] - m[2]:+.2f} ({'rises' if z > 1.96 else 'falls' if z < -1.96 else 'flat'})",
                not_ok=f"{int((ie.flag != 'ok').sum())} of {len(ie)}")


def conventions() -> list[str]:
    """Claim 4's statistics at every stored tau, both ends of the bracket, under each scale rule (issue 24)."""
    rows = [token_growth(run, tau, end) for run in CONVENTION_RUNS if (RESULTS / run / "mi.parquet").is_file()
            for tau in CONVENTION_TAUS for end in ("plugin", "loo")]
    if not rows:
        return ["## Conventions (claim 4): no run of CONVENTION_RUNS is committed yet", ""]
    return ["## Conventions: claim 4 at tau 0.25, 0.5, 1.0, both ends of the bracket, both scale rules", "",
            "Block mean over every block per token; `growth_stops_at_token`: the significance rule of `ie-ray variance` "
            "with one token per step; `token8_vs_3`: the block mean's change, rises/falls beyond 1.96 standard errors.",
            "",
            _md(pd.DataFrame(rows)), ""]


#: The country task at 20,000 12-shot lists: one run per corpus seed (different sampled lists), and seed 1 again
#: under the second scale rule (read from its kept states). Run directory -> (corpus seed, scale rule).
ICL_SEED_RUNS = {"icl-country-20k": (0, "pooled_no_sink"), "icl-country-20k-seed1": (1, "pooled_no_sink"),
                 "icl-country-20k-seed2": (2, "pooled_no_sink"),
                 "convention-icl-country-20k-seed1-total": (1, "total_no_sink")}


def stored_taus(run: str) -> list[float]:
    """The noise fractions a run's smoothed readings were computed at (every tau is stored, reported or not)."""
    mi = _mi(run)
    return sorted(float(t) for t in mi[mi.reading == "smoothed"].tau.dropna().unique())


def pool_seeds(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """IE pooled over independent corpus seeds, per (model, corpus, shots, layer, position): the mean of the seeds'
    IE, its 95% interval half-width the seeds' half-widths added in quadrature over their count (the draws are
    independent), flag `ok` only where every seed's is."""
    keys = ["model", "corpus", "shots", "layer", "position"]
    both = pd.concat(frames, ignore_index=True).assign(
        half=lambda f: (f.ci_high - f.ci_low) / 2, ok=lambda f: f.flag == "ok")
    pooled = both.groupby(keys, as_index=False).agg(ie_bits=("ie_bits", "mean"), half=("half", lambda h: float(
        np.sqrt((h ** 2).sum()) / len(h))), ok=("ok", "all"), n=("ie_bits", "size"))
    if (pooled.n != len(frames)).any():
        raise ValueError("the seeds' runs do not share their (block, position) cells: pool runs of one grid")
    return pooled.assign(ci_low=pooled.ie_bits - pooled.half, ci_high=pooled.ie_bits + pooled.half,
                         flag=np.where(pooled.ok, "ok", "flagged")).drop(columns=["half", "ok", "n"])


#: The other tasks at 20,000 12-shot lists, one run per corpus seed (issue 25 item 1), read as the country task.
ICL_TASK_SEED_RUNS = {"animal": {f"icl-animal-20k-seed{k}": (k, "pooled_no_sink") for k in range(3)},
                      "colour": {f"icl-color-20k-seed{k}": (k, "pooled_no_sink") for k in range(3)}}
#: A second model on the country task (issue 25 item 2), read as SmolLM2's seed-0 run beside it.
SECOND_MODEL_RUNS = {"Gemma 3 270M": {"icl-country-20k-gemma3": (0, "pooled_no_sink")},
                     "SmolLM2-135M": {"icl-country-20k": (0, "pooled_no_sink")}}


def icl_task_seeds() -> list[str]:
    """The animal and colour tasks per corpus seed and pooled, where their runs are committed."""
    out = []
    for task, runs in ICL_TASK_SEED_RUNS.items():
        if any((RESULTS / run / "mi.parquet").is_file() for run in runs):
            out += icl_seeds(runs, f"the {task} task")
    return out or ["## ICL seeds, other tasks: no animal or colour run at 20,000 lists is committed yet", ""]


def second_model() -> list[str]:
    """Claims 2a, 2b and 3 on the country task read on Gemma 3 270M (18 blocks) next to SmolLM2 (30), same seed."""
    if not (RESULTS / "icl-country-20k-gemma3" / "mi.parquet").is_file():
        return ["## Second model: icl-country-20k-gemma3 is not committed yet", ""]
    out = []
    for model, runs in SECOND_MODEL_RUNS.items():
        out += icl_seeds(runs, f"the country task on {model} (corpus seed 0)")
    return out


def icl_seeds(runs: dict[str, tuple[int, str]] | None = None, task: str = "the country task") -> list[str]:
    """Claims 2a, 2b and 3 per corpus seed and under each scale rule (issue 25 item 1, issue 24 item 3): the block
    mean at every shot end, the saturation shot (significance rule and broken-stick knee), the std peak with its
    interval; then the spread of those over the corpus seeds under the default rule."""
    runs = ICL_SEED_RUNS if runs is None else runs
    rows = []
    per_seed: dict[tuple[float, str], list[pd.DataFrame]] = {}
    cases = [(run, seed, rule, tau, end, ie_at(run, tau, end)) for run, (seed, rule) in runs.items()
             if (RESULTS / run / "mi.parquet").is_file() for tau in stored_taus(run) for end in ("plugin", "loo")]
    for run, seed, rule, tau, end, ie in cases:
        if rule == "pooled_no_sink":
            per_seed.setdefault((tau, end), []).append(ie)
    n_default = len({seed for _, seed, rule, *_ in cases if rule == "pooled_no_sink"})
    # pooled over the corpus seeds: where every seed stored this tau, the mean of their IE per cell
    cases += [("pooled", "pooled", "pooled_no_sink", tau, end, pool_seeds(frames))
              for (tau, end), frames in per_seed.items() if len(frames) == n_default > 1]
    for run, seed, rule, tau, end, ie in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = analyse_variance(ie, shot_length=2)
        curve, f = result.summary.sort_values("shot"), result.findings.iloc[0]
        rows.append(dict(seed=seed, rule=rule, tau=tau, end=end, blocks=ie.layer.nunique(),
                         block_mean_at_shots=", ".join(f"{v:.2f}" for v in curve.ie_mean_bits),
                         saturation=int(f.saturation_shot), knee=f.broken_stick_k0,
                         fall_after_max=curve.ie_mean_bits.iloc[-1] - curve.ie_mean_bits.max(),
                         std_peak=f.peak_std_layers,
                         std_peak_ci=f"[{f.peak_std_layers_ci_low:g}, {f.peak_std_layers_ci_high:g}]",
                         near_share=f.peak_std_layers_near_saturation_share))
    if not rows:
        return ["## ICL seeds and conventions: no run of ICL_SEED_RUNS is committed yet", ""]
    frame = pd.DataFrame(rows)
    default = frame[(frame.rule == "pooled_no_sink") & (frame.seed != "pooled")]
    spread = (default.groupby(["tau", "end"])
              .agg(seeds=("seed", lambda s: ", ".join(map(str, s))),
                   saturation=("saturation", lambda s: ", ".join(map(str, s))),
                   knee=("knee", lambda s: ", ".join(f"{v:g}" for v in s)),
                   std_peak=("std_peak", lambda s: ", ".join(f"{v:g}" for v in s)),
                   fall_after_max_mean=("fall_after_max", "mean"), fall_after_max_sd=("fall_after_max", "std"))
              .reset_index())
    spread_lines = (["Spread over the corpus seeds (default rule; the values listed in seed order):", "", _md(spread), ""]
                    if n_default > 1 else [f"One corpus seed (seed {default.seed.iloc[0]}): no spread over seeds to show.", ""])
    return [f"## ICL seeds and conventions: {task} at 20,000 lists, per corpus seed and scale rule", "",
            "Every block, every stored tau, both ends of the bracket. `block_mean_at_shots`: the mean over blocks at "
            "shots 1-12; `saturation`: the significance rule of `ie-ray variance`, `knee`: its broken-stick knee; "
            "`fall_after_max`: the block mean at shot 12 minus its maximum; `std_peak`: the shot where the std across "
            "blocks peaks, with its bootstrap interval and the share of replicates within one shot of saturation. "
            "Seed `pooled`: the seeds' IE averaged per block and shot (`pool_seeds`), where every seed stored the tau.",
            "", _md(frame), "", *spread_lines]


def cross_run_tau1() -> list[str]:
    """The block mean at the shot ends at tau 1.0 (the readings every 10k run computed and the report omitted)."""
    rows = []
    for run, m in ICL_RUNS.items():
        ends = shot_ends(ie_at(run, 1.0), m)
        rows.append(dict(run=run, blocks=len(ends), **{f"shot {k}": v for k, v in ends.mean().items()}))
    return ["## Block mean at the shot ends, tau 1.0 (plug-in)", "", _md(pd.DataFrame(rows)), ""]


#: The smaller runs re-run under the second scale rule (issue 24): original -> its re-run.
SECOND_RULE_RUNS = {"icl-2token-10k": "convention-icl-2token-10k-total",
                    "gen-vs-human-1500": "convention-gen-vs-human-1500-total"}


def gen_vs_human_2000_second_rule() -> list[str]:
    """Claim 5 at 2,000 windows under the second scale rule (`total_no_sink`): the same tables as the default's."""
    return gen_vs_human_2000(GEN_2000_TOTAL, "total_no_sink")


def second_rule_small_runs() -> list[str]:
    """Claims 2c, 5 and 1 (SmolLM2 vs Gemma on human text) under both scale rules, every stored tau, both ends."""
    have = {k: v for k, v in SECOND_RULE_RUNS.items() if (RESULTS / v / "mi.parquet").is_file()}
    if not have:
        return ["## Second scale rule, claims 2c, 5, 1: no re-run committed yet", ""]
    out = ["## Second scale rule, claims 2c, 5 and 1: the 10k and 1,500-window runs under both rules", "",
           "Same configs except `scale_rule` (`pooled_no_sink` = the default, `total_no_sink` = between-position "
           "spread in); states re-extracted.", ""]
    if "icl-2token-10k" in have:
        icl = pd.DataFrame([dict(rule=rule, **icl_shape(run, ICL_RUNS["icl-2token-10k"], tau, end))
                            for rule, run in (("pooled_no_sink", "icl-2token-10k"),
                                              ("total_no_sink", have["icl-2token-10k"]))
                            for tau in TAUS for end in ("plugin", "loo")])
        out += ["### Claim 2c (icl-2token-10k: block mean and block 29 at the shot ends)", "", _md(icl), ""]
    if "gen-vs-human-1500" in have:
        gen = pd.DataFrame([dict(rule=rule, **row) for rule, run in (("pooled_no_sink", "gen-vs-human-1500"),
                                                                    ("total_no_sink", have["gen-vs-human-1500"]))
                            for tau in TAUS for end in ("plugin", "loo") for row in gen_rows(run, tau, end)])
        out += ["### Claims 5 and 1 (gen-vs-human-1500, model-level mean over 5 blocks)", "", _md(gen), ""]
    return out


#: The bias bands of the calibrations on laws of known truth (issue 24; `ie-ray validate --smoothed --real`), one
#: per model: SmolLM2's in results/validation/smoothed-real, Gemma 3's in smoothed-real-gemma3.
BANDS = RESULTS / "validation" / "smoothed-real" / "bias_bands.json"
#: Claims read with the calibrated interval: run -> (claim, label of a step, the two steps compared, tokens per
#: step: a step is a token (natural text, 1: token k at position k - 1) or a shot end (ICL, 2: shot k ends at 2k - 1)).
BAND_CLAIMS = [("natural-kjv-start8-all", "4", "token", (3, 8), 1),
               ("natural-kjv-end8-all", "4", "token", (3, 8), 1),
               ("natural-kjv-start16-all", "4", "token", (3, 8), 1),
               ("natural-kjv-start16-all", "4", "token", (8, 16), 1),
               ("natural-kjv-end16-all", "4", "token", (3, 8), 1),
               ("natural-kjv-end16-all", "4", "token", (8, 16), 1),
               ("icl-country-20k", "2b", "shot", (3, 12), 2),
               *[(f"icl-animal-20k-seed{k}", "2b", "shot", (2, 12), 2) for k in range(3)],
               *[(f"icl-color-20k-seed{k}", "2b", "shot", (2, 12), 2) for k in range(3)],
               ("icl-country-20k-seed1", "2b", "shot", (3, 12), 2),
               ("icl-country-20k-seed2", "2b", "shot", (3, 12), 2),
               # Gemma 3's own band where its calibration is committed (`calibrated_on` says whose band a row reads)
               ("icl-country-20k-gemma3", "2a", "shot", (1, 2), 2),   # its rise is one shot long
               ("icl-country-20k-gemma3", "2b", "shot", (2, 12), 2),
               # tokens shuffled within each list: "shot k" is only the position 2k - 1 of the ordered lists
               ("control-icl-country-20k-shuffled", "2b", "shot", (3, 12), 2),
               ("convention-natural-kjv-start8-total", "4", "token", (3, 8), 1),
               ("convention-icl-country-20k-seed1-total", "2b", "shot", (3, 12), 2)]


def band_verdicts() -> list[str]:
    """Claims 2b and 4 (and Gemma's one-shot rise, 2a) re-read with the calibrated interval (issue 24): IE's band
    interval (`ie_ray.brackets`) of block 29 and of the mean over blocks at two steps, and whether the two are
    disjoint, by the package's trend
    rule (`ie_ray.control_comparison.trends`: the block mean's interval runs from the mean of the low ends to the
    mean of the high ends, NaN if any block lacks one), for each band kind the model's bands file holds (its own
    calibration, else SmolLM2's as an assumption: `ie_ray.brackets.ie_brackets_by_model`)."""
    from ie_ray.bias_band import bands_models, load_bands

    if not BANDS.is_file():
        return ["## Calibrated interval: no bias bands committed yet", ""]
    rows, brackets = [], {}  # a run read for two claims is bracketed once
    for run, claim, step, (a, b), shot_length in BAND_CLAIMS:
        if not (RESULTS / run / "mi.parquet").is_file():
            continue
        if run not in brackets:
            brackets[run] = ie_brackets_by_model(_mi(run), 0.25)
        table = brackets[run]
        for kind, prefix in (("relative", "ie_band"), ("bracket", "ie_bandb")):
            if f"{prefix}_low" not in table:
                continue
            readings = table.rename(columns={"ie_plugin_bits": "ie_bits", f"{prefix}_low": "band_low",
                                             f"{prefix}_high": "band_high"})
            readings = readings.assign(label=run, role="trained", step=step_of(readings.position, shot_length))
            trend = trends(readings, [(a, b)]).set_index("block")
            at_steps = readings[readings.step.isin([a, b])]
            lacking = int(at_steps.band_low.isna().sum())
            said = trend.drop(index=MEAN_BLOCK).verdict.tolist()
            counts = ", ".join(f"{v} {said.count(v)}" for v in ("rises", "falls", "undetermined", "no interval")
                               if said.count(v))
            last = int(readings.layer.max())  # block 29 of SmolLM2, block 17 of Gemma 3
            for what, key in ((f"block {last}", str(last)), ("mean of blocks", MEAN_BLOCK)):
                r = trend.loc[key]
                rows.append(dict(claim=claim, run=run, band=kind, calibrated_on=table.band_calibrated_on.iloc[0],
                                 what=what, steps=f"{step}s {a} -> {b}",
                                 lacking=lacking if key == MEAN_BLOCK else int(
                                     at_steps[at_steps.layer == last].band_low.isna().sum()),
                                 blocks=counts if key == MEAN_BLOCK else "",
                                 first=f"{r.from_bits:.2f} [{r.from_low:.2f}, {r.from_high:.2f}]",
                                 second=f"{r.to_bits:.2f} [{r.to_low:.2f}, {r.to_high:.2f}]",
                                 verdict=r.verdict))
    bands_text = "; ".join(
        f"`{path.relative_to(RESULTS.parent).as_posix()}` ({', '.join(bands_models(path))}): " + ", ".join(
            f"{b.kind} tau {b.tau:g}: [{b.low:.3f}, {b.high:.3f}] ({b.populations} laws)"
            for b in load_bands(path).values()) for path in committed_bands_files())
    return ["## Calibrated interval: claims 2a, 2b and 4 read with the bias band (tau 0.25)", "",
            f"Bands, one calibration per model: {bands_text}. `calibrated_on`: the model whose laws the run's band was "
            "measured on (another model's band is an assumption). Plug-in IE and its calibrated interval "
            "at each step; `verdict`: rises / falls when the two intervals are disjoint; `lacking`: readings (block x "
            "step) without an interval (a reading flagged `not_converged`, `imprecise` or `below_zero`), which leave "
            "the mean without one; `blocks`: the verdict of each block on its own. Natural text: token k is position k - 1; ICL: shot k ends at position 2k - 1.", "",
            _md(pd.DataFrame(rows)) if rows else "(no run committed)", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sections = {section.__name__: section for section in (
        sawtooth, per_block_saturation, natural_flags, distinct_windows, mine_checks, mine_at_20k, timings,
        cross_run_tau1, holds_under, conventions, icl_seeds, icl_task_seeds, second_model, gen_vs_human_2000,
        gen_vs_human_2000_second_rule, second_rule_small_runs, band_verdicts)}
    parser.add_argument("--out", default=str(RESULTS / "reproduction_checks.md"))
    parser.add_argument("--section", action="append", choices=sorted(sections), default=None,
                        help="print only this section (repeatable) and leave --out as it is: the whole file takes "
                             "about 10 CPU-minutes, one run's sections a fraction of that")
    args = parser.parse_args(argv)
    lines = ["# Checks behind results/REPRODUCTION.md", "",
             "`python benchmarks/reproduction_checks.py` (reads only committed tables; bits unless said).", ""]
    for name, section in sections.items():
        if args.section is None or name in args.section:
            lines += section()
    if args.section is None:
        Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
