"""Cross-model comparison: IE per layer against relative depth, model-level IE against size, a ranking with the
confidence that one model's IE exceeds another's, and the two small-to-large proxies (ie_ray.proxy).

Built only from a run's tidy tables (layers, models, the manifest's model descriptions), so it runs inside the
sweep's report and later on any finished run directory: `ie-ray compare RUN_DIR`.

Confidence that model A's IE exceeds model B's: a normal approximation from the two 95% intervals,
P(A > B) = Phi((IE_A - IE_B) / sqrt(se_A^2 + se_B^2)) with se = half-width / 1.96. The model-level intervals
are themselves normal-approximation intervals (layer half-widths added in quadrature, ie.model_summary), and
the two models' estimates come from separate estimators, so they are independent. Like every interval here it
carries estimator noise only, not estimator bias or the choice of corpus.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on clusters and CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from ie_ray import store
from ie_ray.errors import ConfigError
from ie_ray.proxy import (
    CONDITION_KEYS,
    ScalingFit,
    TextProxy,
    family_of,
    interval_columns,
    scalable_families,
    scaling_fit,
    standard_error,
    text_proxy,
)

ALL_CONDITIONS = "all conditions"


@dataclass
class RunTables:
    """What the comparison reads from a run: E(l) per layer, model-level IE, and one row per model."""

    run_dir: Path
    layers: pd.DataFrame
    models: pd.DataFrame
    info: pd.DataFrame  # model, architecture, family, n_params, n_layers, hidden_size


def model_info_table(infos: dict, families: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per model from ModelInfo objects or the manifest's dicts of them.

    `architecture` is transformers' model_type (ModelInfo.family); `family` is the scaling family used by
    Proxy B (ie_ray.proxy.family_of, or the explicit `families` mapping).
    """
    families = dict(families or {})
    rows = []
    for name, value in infos.items():
        d = value.to_dict() if hasattr(value, "to_dict") else dict(value)
        rows.append(dict(model=name, architecture=d.get("family", "unknown"),
                         family=families.get(name, family_of(name)), n_params=int(d["n_params"]),
                         n_layers=int(d["n_layers"]), hidden_size=int(d["hidden_size"])))
    return pd.DataFrame(rows).sort_values("n_params").reset_index(drop=True)


def _read(run_dir: Path, stem: str) -> pd.DataFrame:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        if (run_dir / (stem + suffix)).is_file():
            return reader(run_dir / (stem + suffix))
    raise ConfigError(f"{run_dir} has no {stem}.parquet or {stem}.csv; is it the directory of a finished sweep?")


def load_run(run_dir: Path, families: dict[str, str] | None = None) -> RunTables:
    """Read a finished run directory (layers, models, manifest.json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist; pass the --out directory of a sweep")
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{run_dir} has no manifest.json; is it the directory of a finished sweep?")
    manifest = json.loads(manifest_path.read_text())
    return RunTables(run_dir, _read(run_dir, "layers"), _read(run_dir, "models"),
                     model_info_table(manifest.get("models", {}), families))


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------


def relative_depth(layer: np.ndarray | int, n_layers: np.ndarray | int) -> np.ndarray:
    """(l + 1) / L: the fraction of the block stack that has run when block l's output is read. The last block
    is 1.0 in every model, and config `layers: {depths: [...]}` picks blocks by the same convention."""
    return (np.asarray(layer, dtype=float) + 1.0) / np.asarray(n_layers, dtype=float)


def layer_table(layers: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """E(l) per model and layer with the model's depth, width and size, and the layer's relative depth."""
    merged = layers.merge(info[["model", "n_layers", "hidden_size", "n_params"]], on="model", how="left")
    if merged.n_layers.isna().any():
        missing = sorted(set(merged.model[merged.n_layers.isna()]))
        raise ConfigError(f"models {missing} are in the layer table but not in the manifest's model list")
    merged["relative_depth"] = relative_depth(merged.layer, merged.n_layers)
    keep = ["model", "corpus", "shots", "layer", "n_layers", "relative_depth", "ie_bits", "ci_low", "ci_high",
            "hidden_size", "n_params", "flag"]
    return merged[[c for c in keep if c in merged.columns]].sort_values(
        ["corpus", "shots", "model", "layer"]).reset_index(drop=True)


def depth_aligned(layers: pd.DataFrame, grid: list[float] | np.ndarray) -> pd.DataFrame:
    """E at common relative depths: each model's E(l) (and interval bounds) linearly interpolated in relative
    depth onto `grid`; nan outside the depths that model measured (no extrapolation). Models of different
    depth then line up column by column."""
    grid = np.asarray(grid, dtype=float)
    frames = []
    for (model, corpus, shots), part in layers.groupby(["model"] + CONDITION_KEYS, sort=True):
        part = part.sort_values("relative_depth")
        d = part.relative_depth.to_numpy()
        inside = (grid >= d.min() - 1e-9) & (grid <= d.max() + 1e-9)
        frame = pd.DataFrame(dict(model=model, corpus=corpus, shots=int(shots), relative_depth=grid))
        for column in ("ie_bits", "ci_low", "ci_high"):
            frame[column] = np.where(inside, np.interp(grid, d, part[column].to_numpy()), np.nan)
        frames.append(frame)
    columns = ["model", "corpus", "shots", "relative_depth", "ie_bits", "ci_low", "ci_high"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def model_table(models: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """Model-level IE (mean and sum over layers, intervals) with parameters, hidden size and depth."""
    merged = models.merge(info, on="model", how="left", suffixes=("", "_model"))
    if "n_layers_model" in merged:  # models.csv's n_layers counts ANALYSED layers; keep both
        merged = merged.rename(columns={"n_layers": "n_layers_analysed", "n_layers_model": "n_layers"})
    merged["log10_params"] = np.log10(merged.n_params.astype(float))
    return merged.sort_values(CONDITION_KEYS + ["n_params"]).reset_index(drop=True)


def pool_conditions(table: pd.DataFrame, statistic: str = "ie_mean_bits") -> pd.DataFrame:
    """One row per model: the statistic averaged over every condition the model was measured in, its interval
    from the conditions' half-widths in quadrature (separate estimators, independent noise)."""
    low_col, high_col = interval_columns(statistic)
    rows = []
    for model, part in table.groupby("model", sort=False):
        half = ((part[high_col] - part[low_col]) / 2.0).to_numpy()
        mean = float(part[statistic].mean())
        pooled_half = float(np.sqrt((half**2).sum())) / len(part)
        rows.append({"model": model, "corpus": ALL_CONDITIONS, "shots": 0, statistic: mean,
                     low_col: mean - pooled_half, high_col: mean + pooled_half,
                     "n_params": part.n_params.iloc[0], "n_conditions": len(part)})
    return pd.DataFrame(rows)


def prob_greater(mean_a: float, se_a: float, mean_b: float, se_b: float) -> float:
    """P(IE_A > IE_B) for independent normal estimates; 0.5 for equal means, -> 1 as A pulls clear of B."""
    scale = math.sqrt(se_a**2 + se_b**2)
    if scale == 0:
        return 0.5 if mean_a == mean_b else float(mean_a > mean_b)
    return float(stats.norm.cdf((mean_a - mean_b) / scale))


def _with_pooled(table: pd.DataFrame, statistic: str) -> pd.DataFrame:
    n_conditions = len(table.groupby(CONDITION_KEYS))
    return pd.concat([table, pool_conditions(table, statistic)], ignore_index=True) if n_conditions > 1 else table


def pairwise_confidence(table: pd.DataFrame, statistic: str = "ie_mean_bits") -> pd.DataFrame:
    """P(IE of model A > IE of model B) for every ordered pair, per condition and pooled over conditions."""
    low_col, high_col = interval_columns(statistic)
    rows = []
    for (corpus, shots), part in _with_pooled(table, statistic).groupby(CONDITION_KEYS, sort=False):
        se = standard_error(part[low_col], part[high_col])
        values = part[statistic].to_numpy()
        names = part.model.to_numpy()
        for i in range(len(part)):
            for j in range(len(part)):
                if i != j:
                    rows.append(dict(corpus=corpus, shots=int(shots), model_a=names[i], model_b=names[j],
                                     ie_a=values[i], ie_b=values[j], difference=values[i] - values[j],
                                     p_a_greater=prob_greater(values[i], se[i], values[j], se[j])))
    return pd.DataFrame(rows)


def ranking(table: pd.DataFrame, statistic: str = "ie_mean_bits") -> pd.DataFrame:
    """Models ranked by IE per condition (and pooled), with P(this model's IE > the next-ranked model's)."""
    low_col, high_col = interval_columns(statistic)
    rows = []
    for (corpus, shots), part in _with_pooled(table, statistic).groupby(CONDITION_KEYS, sort=False):
        part = part.sort_values(statistic, ascending=False).reset_index(drop=True)
        se = standard_error(part[low_col], part[high_col])
        for k in range(len(part)):
            nxt = prob_greater(part[statistic][k], se[k], part[statistic][k + 1], se[k + 1]) \
                if k + 1 < len(part) else float("nan")
            rows.append(dict(corpus=corpus, shots=int(shots), rank=k + 1, model=part.model[k],
                             n_params=int(part.n_params[k]), ie_bits=part[statistic][k], ci_low=part[low_col][k],
                             ci_high=part[high_col][k], p_above_next=nxt))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------
# Everything together
# --------------------------------------------------------------------------------------------------------------


@dataclass
class CrossModel:
    """The cross-model section of a run: tables, proxy results and notes on what could not be computed."""

    info: pd.DataFrame
    layers: pd.DataFrame
    depth_grid: pd.DataFrame
    models: pd.DataFrame
    ranking: pd.DataFrame
    pairwise: pd.DataFrame
    statistic: str
    text_proxies: list[TextProxy] = field(default_factory=list)
    scaling: list[ScalingFit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _short_names(tables: RunTables) -> RunTables:
    """Models named by a local path ('/data/ckpt/gpt2-xl') are shown by their last component when those are
    unique: tables and plots stay readable and a committed result does not carry the machine's paths."""
    names = list(tables.info.model)
    local = {n: Path(n).name for n in names if n.startswith(("/", "~", "."))}
    short = [local.get(n, n) for n in names]
    if not local or len(set(short)) != len(short):
        return tables
    rename = {"model": local}
    return RunTables(tables.run_dir, tables.layers.replace(rename), tables.models.replace(rename),
                     tables.info.replace(rename))


def default_proxy_pairs(info: pd.DataFrame) -> list[tuple[str, str]]:
    """The smallest model as the measuring instrument for every larger one (the paper's use of a proxy)."""
    ordered = info.sort_values("n_params").model.tolist()
    return [(ordered[0], target) for target in ordered[1:]]


def compare_tables(
    tables: RunTables,
    statistic: str = "ie_mean_bits",
    proxy_pairs: list[tuple[str, str]] | None = None,
    families: dict[str, str] | None = None,
    predict_params: list[float] | None = None,
    depth_grid: list[float] | None = None,
) -> CrossModel:
    """Build every cross-model table; proxies that the run cannot support are explained in `notes`."""
    interval_columns(statistic)
    tables = _short_names(tables)
    layers = layer_table(tables.layers, tables.info)
    # default grid: measured depths rounded to 0.1, so 8/30 (SmolLM2) and 5/18 (Gemma 3) share the row 0.3
    grid = depth_grid if depth_grid is not None else sorted(set(np.round(layers.relative_depth, 1)))
    aligned = depth_aligned(layers, grid)
    measured = aligned.groupby("relative_depth").ie_bits.transform(lambda v: v.notna().any())
    models = model_table(tables.models, tables.info)
    result = CrossModel(tables.info, layers, aligned[measured].reset_index(drop=True), models,
                        ranking(models, statistic), pairwise_confidence(models, statistic), statistic)
    explicit_pairs = proxy_pairs is not None
    for proxy, target in (proxy_pairs if proxy_pairs is not None else default_proxy_pairs(tables.info)):
        try:
            result.text_proxies.append(text_proxy(models, proxy, target, statistic))
        except ConfigError as exc:
            if explicit_pairs:
                raise
            result.notes.append(f"Proxy A ({proxy} measuring {target}) not computed: {exc}")
    families = dict(families or {})
    scalable = scalable_families(models, families)
    if not scalable:
        found = tables.info.groupby("family").model.apply(list).to_dict()
        result.notes.append(
            "Proxy B (scaling extrapolation) not computed: it needs >= 3 sizes of one family, and this run has "
            f"{ {f: list(m) for f, m in found.items()} }. It cannot be validated on a run like this one."
        )
    for family, members in scalable.items():
        largest = int(models[models.model == members[-1]].n_params.iloc[0])
        targets = list(predict_params) if predict_params else [10.0 * largest]
        result.scaling.extend(scaling_fit(models, family, targets, statistic, families))
    return result


# --------------------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------------------


def _conditions(frame: pd.DataFrame) -> list[tuple[str, int]]:
    return [(c, int(s)) for c, s in frame[CONDITION_KEYS].drop_duplicates().sort_values(CONDITION_KEYS).itertuples(
        index=False)]


def _model_colors(models: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(k % 10) for k, m in enumerate(models)}


def plot_ie_vs_depth(layers: pd.DataFrame, path: Path) -> None:
    """E(l) against relative depth, one line (and 95% band) per model, one panel per condition."""
    conditions = _conditions(layers)
    cols = min(3, len(conditions))
    rows = math.ceil(len(conditions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False, sharex=True)
    order = layers.drop_duplicates("model").sort_values("n_params").model.tolist()
    colors = _model_colors(order)
    for ax, (corpus, shots) in zip(axes.ravel(), conditions):
        part = layers[(layers.corpus == corpus) & (layers.shots == shots)]
        for model in order:
            m = part[part.model == model].sort_values("relative_depth")
            if m.empty:
                continue
            ax.plot(m.relative_depth, m.ie_bits, marker="o", color=colors[model], label=model)
            ax.fill_between(m.relative_depth, m.ci_low, m.ci_high, color=colors[model], alpha=0.15)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{corpus} · {shots} shots", fontsize=9)
        ax.set_xlim(0, 1.02)
    for ax in axes.ravel()[len(conditions):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("relative depth (l + 1) / L")
    for ax in axes[:, 0]:
        ax.set_ylabel("E(l) = IE at last position (bits)")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ie_vs_params(models: pd.DataFrame, statistic: str, path: Path, scaling: Sequence[ScalingFit] = ()) -> None:
    """Model-level IE against parameters (log axis), one series per condition; Proxy B fits drawn on top."""
    low_col, high_col = interval_columns(statistic)
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    cmap = plt.get_cmap("tab10")
    conditions = _conditions(models)
    for k, (corpus, shots) in enumerate(conditions):
        part = models[(models.corpus == corpus) & (models.shots == shots)].sort_values("n_params")
        color = cmap(k % 10)
        ax.errorbar(part.n_params, part[statistic],
                    yerr=[part[statistic] - part[low_col], part[high_col] - part[statistic]],
                    marker="o", capsize=3, color=color, label=f"{corpus} · {shots} shots", alpha=0.85)
        for fit in (f for f in scaling if f.corpus == corpus and f.shots == shots):
            xs = np.linspace(fit.members.log10_params.min(), fit.predictions.log10_params.max()
                             if len(fit.predictions) else fit.members.log10_params.max(), 50)
            yhat, low, high = fit.fit.predict(xs)
            ax.plot(10**xs, yhat, ls="--", color=color, lw=1)
            ax.fill_between(10**xs, low, high, color=color, alpha=0.08)
            ax.errorbar(fit.predictions.n_params, fit.predictions.predicted,
                        yerr=[fit.predictions.predicted - fit.predictions.pi_low,
                              fit.predictions.pi_high - fit.predictions.predicted],
                        marker="*", ms=10, ls="none", color=color, capsize=3)
    for model, n in models.drop_duplicates("model")[["model", "n_params"]].itertuples(index=False):
        ax.annotate(model, (n, ax.get_ylim()[0]), fontsize=7, rotation=90, va="bottom", ha="right", color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"model-level IE, {'mean' if 'mean' in statistic else 'sum'} over layers (bits)")
    ax.set_title("model-level IE vs size (stars: Proxy B predictions with 95% prediction intervals)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_text_proxy(proxy: TextProxy, path: Path) -> None:
    """Proxy A: the measuring model's IE against the target's own IE per condition, with the calibration line."""
    t = proxy.table
    z = 1.959963984540054
    fig, ax = plt.subplots(figsize=(5.2, 4.5))
    ax.errorbar(t.proxy_ie_bits, t.target_ie_bits, xerr=z * t.proxy_se_bits, yerr=z * t.target_se_bits,
                marker="o", ls="none", capsize=3)
    for row in t.itertuples():
        ax.annotate(f"{row.corpus}·{row.shots}", (row.proxy_ie_bits, row.target_ie_bits), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    xs = np.linspace(t.proxy_ie_bits.min(), t.proxy_ie_bits.max(), 20)
    ax.plot(xs, proxy.calibration.intercept + proxy.calibration.slope * xs, ls="--", color="grey")
    c = proxy.correlation
    ax.set_title(f"r = {c.pearson_r:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}], LOO RMSE {proxy.loo_rmse:.2f} bits",
                 fontsize=9)
    ax.set_xlabel(f"IE measured by {proxy.proxy_model} (bits)")
    ax.set_ylabel(f"IE of {proxy.target_model} itself (bits)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def _md(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt) if len(frame) else "(empty)"


def write_cross_model_section(cross: CrossModel, run_dir: Path, subdir: str = "compare") -> list[str]:
    """Write the comparison's CSV tables and PNG plots under run_dir/subdir and return the Markdown section
    (links relative to run_dir), which report.md embeds and `ie-ray compare` writes as compare.md."""
    out = store.inside(run_dir, subdir)
    out.mkdir(parents=True, exist_ok=True)
    store.write_table(out / "models_info.parquet", cross.info, csv=True)
    store.write_table(out / "layers_by_depth.parquet", cross.layers, csv=True)
    store.write_table(out / "depth_aligned.parquet", cross.depth_grid, csv=True)
    store.write_table(out / "models.parquet", cross.models, csv=True)
    store.write_table(out / "ranking.parquet", cross.ranking, csv=True)
    store.write_table(out / "pairwise.parquet", cross.pairwise, csv=True)
    plot_ie_vs_depth(cross.layers, out / "ie_vs_depth.png")
    plot_ie_vs_params(cross.models, cross.statistic, out / "ie_vs_params.png", cross.scaling)
    wide = cross.depth_grid.pivot_table(index=["corpus", "shots", "relative_depth"], columns="model",
                                        values="ie_bits", dropna=False).reset_index()
    wide.columns.name = None
    model_view = cross.models[["model", "corpus", "shots", "n_params", "hidden_size", "n_layers",
                               "ie_mean_bits", "ie_mean_ci_low", "ie_mean_ci_high", "ie_sum_bits", "ie_sum_ci_low",
                               "ie_sum_ci_high"]]
    lines = [
        "## Cross-model comparison",
        "",
        f"Statistic ranked: `{cross.statistic}`. P(A > B) is a normal approximation from the two 95% intervals "
        "(se = half-width / 1.96; separate estimators, so independent); it carries estimator noise only.",
        "",
        "### Models",
        _md(cross.info, ".0f"),
        "",
        "### Model-level IE (bits)",
        _md(model_view),
        "",
        "### Ranking (p_above_next = P(this model's IE > the next-ranked model's))",
        _md(cross.ranking),
        "",
        "### E(l) at common relative depths (bits; linear interpolation in (l + 1) / L, no extrapolation)",
        _md(wide),
        "",
        f"![IE vs relative depth]({subdir}/ie_vs_depth.png)",
        "",
        f"![model-level IE vs parameters]({subdir}/ie_vs_params.png)",
        "",
        "## Proxy estimates",
        "",
        "### Proxy A: a small measuring model's IE as a proxy for a larger model's",
        "",
        "Conditions are (corpus, shots) pairs measured by both models; for human vs generated text the corpus names "
        "the text source. r: Pearson correlation across conditions with a Fisher-z 95% interval and a bootstrap "
        "interval that resamples conditions and draws every IE value from its own interval. LOO: the target's IE "
        "on each condition predicted from the proxy's by a line fitted on the other conditions.",
        "",
    ]
    if cross.text_proxies:
        summary = pd.DataFrame([p.summary_row() for p in cross.text_proxies])
        store.write_table(out / "proxy_a.parquet", summary, csv=True)
        lines += [_md(summary), ""]
        for p in cross.text_proxies:
            name = store.safe_name(f"proxy_a_{p.proxy_model}_vs_{p.target_model}")
            plot_text_proxy(p, out / f"{name}.png")
            store.write_table(out / f"{name}.parquet", p.table, csv=True)
            lines += [f"{p.proxy_model} measuring, {p.target_model} target:", "", _md(p.table), "",
                      f"![{name}]({subdir}/{name}.png)", ""]
    lines += ["### Proxy B: scaling extrapolation in log10(parameters)", ""]
    if cross.scaling:
        summary = pd.DataFrame([f.summary_row() for f in cross.scaling])
        store.write_table(out / "proxy_b.parquet", summary, csv=True)
        predictions = pd.concat([f.predictions.assign(family=f.family, corpus=f.corpus, shots=f.shots)
                                 for f in cross.scaling], ignore_index=True)
        loo = pd.concat([f.loo.assign(family=f.family, corpus=f.corpus, shots=f.shots) for f in cross.scaling],
                        ignore_index=True)
        store.write_table(out / "proxy_b_predictions.parquet", predictions, csv=True)
        store.write_table(out / "proxy_b_loo.parquet", loo, csv=True)
        lines += [
            "OLS of model-level IE on log10(parameters) per family and condition; 95% t prediction intervals "
            "(t with n - 2 degrees of freedom: very wide with 3 sizes). LOO: each size predicted from the others; "
            "`largest_loo_error_bits` is the extrapolation test (largest size predicted from the smaller ones). "
            "`flag` is `members_flagged` when any member's model-level reading is flagged (a layer's reading "
            "failed, is undersampled or not converged): such a fit is shown, but it is not a validated result.",
            "", _md(summary), "", "Predictions:", "", _md(predictions, ".4g"), "", "Leave-one-out:", "", _md(loo),
            "",
        ]
    notes = [f"- {n}" for n in cross.notes]
    if notes:
        lines += ["### Not computed", "", *notes, ""]
    return lines


def compare_run(run_dir: Path, statistic: str = "ie_mean_bits", proxy_pairs: list[tuple[str, str]] | None = None,
                families: dict[str, str] | None = None, predict_params: list[float] | None = None) -> CrossModel:
    """`ie-ray compare RUN_DIR`: read a finished run, write run_dir/compare/ and run_dir/compare.md."""
    tables = load_run(run_dir, families)
    if tables.info.model.nunique() < 2:
        raise ConfigError(f"{run_dir} holds one model ({tables.info.model.tolist()}); a comparison needs >= 2")
    cross = compare_tables(tables, statistic, proxy_pairs, families, predict_params)
    lines = write_cross_model_section(cross, Path(run_dir))
    store.write_text(Path(run_dir) / "compare.md", "\n".join([f"# Cross-model IE: {Path(run_dir).name}", "",
                                                             *lines]))
    return cross
