"""Human-facing outputs of a run: PNG plots and report.md, built only from the tidy tables."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on clusters and CI
import matplotlib.pyplot as plt
import pandas as pd

from ie_ray import store

#: Up to this many blocks a figure names each block in its legend; above it (30 for SmolLM2) the entries would cover
#: the curves, so the blocks' colours get a colour bar instead and the legend keeps only the other lines.
MAX_BLOCK_LEGEND = 8


def block_colors(layers, cmap: str = "viridis") -> dict:
    """One colour per block, shallow to deep along `cmap`, so depth reads from the colour in every figure."""
    ordered = sorted(layers)
    colormap = plt.get_cmap(cmap)
    return {layer: colormap(k / max(1, len(ordered) - 1)) for k, layer in enumerate(ordered)}


def label_blocks(ax, layers, prefix: str = "block ", cmap: str = "viridis", **legend_kw) -> None:
    """Legend for a figure with one line per block: each block named when there are few, a colour bar of block
    numbers (and a legend of the remaining lines) when there are many. Lines drawn for blocks carry labels that
    start with `prefix`; `legend_kw` go to `ax.legend`."""
    legend_kw = {"fontsize": 7, **legend_kw}
    layers = sorted(layers)
    if len(layers) <= MAX_BLOCK_LEGEND:
        ax.legend(**legend_kw)
        return
    handles, labels = ax.get_legend_handles_labels()
    others = [(h, label) for h, label in zip(handles, labels) if not label.startswith(prefix)]
    if others:
        ax.legend([h for h, _ in others], [label for _, label in others], **legend_kw)
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(layers[0], layers[-1]), cmap=plt.get_cmap(cmap))
    ax.figure.colorbar(mappable, ax=ax, pad=0.01, fraction=0.04, label=prefix.strip())


def draw_ie_by_position(ax, ie: pd.DataFrame, title: str) -> None:
    """IE vs position, one line per layer with its 95% band: where emergence appears along the sequence."""
    colors = block_colors(ie.layer.unique())
    for layer, color in colors.items():
        part = ie[ie.layer == layer].sort_values("position")
        ax.plot(part.position, part.ie_bits, marker="o", color=color, label=f"block {layer}")
        ax.fill_between(part.position, part.ci_low, part.ci_high, color=color, alpha=0.15)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("position t (IE of the prefix ending at t)")
    ax.set_ylabel("IE (bits)")
    ax.set_title(title, fontsize=10)
    label_blocks(ax, colors, ncol=2)


def draw_ie_vs_tau(ax, readings: pd.DataFrame, title: str) -> None:
    """E(l) (IE at the last position) against the noise fraction tau, one line per layer, with the entropy
    limit as a dashed line: tau -> 0 climbs to the count, large tau falls to 0; where a layer sits in between
    is the geometry of its map."""
    smoothed = readings[readings.reading == "smoothed"]
    limit = readings[readings.reading == "entropy_limit"]
    colors = block_colors(smoothed.layer.unique())
    last = smoothed.position.max()
    for layer, color in colors.items():
        part = smoothed[(smoothed.layer == layer) & (smoothed.position == last)].sort_values("tau")
        ax.plot(part.tau, part.ie_bits, marker="o", color=color, label=f"block {layer}")
        ax.fill_between(part.tau, part.ci_low, part.ci_high, color=color, alpha=0.15)
        lim = limit[(limit.layer == layer) & (limit.position == last)]
        if len(lim):
            ax.axhline(float(lim.ie_bits.iloc[0]), color=color, ls="--", lw=0.8)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("tau (noise std per coordinate / sqrt(d), standardised states)")
    ax.set_ylabel(f"IE_sigma at position {last} (bits)")
    ax.set_title(title + " (dashed: entropy limit)", fontsize=10)
    label_blocks(ax, colors, ncol=2)


def _save_drawing(draw, frame: pd.DataFrame, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    draw(ax, frame, title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ie_by_position(ie: pd.DataFrame, path: Path, title: str) -> None:
    _save_drawing(draw_ie_by_position, ie, path, title)


def plot_ie_vs_tau(readings: pd.DataFrame, path: Path, title: str) -> None:
    _save_drawing(draw_ie_vs_tau, readings, path, title)


def _cells(ie: pd.DataFrame, readings: pd.DataFrame | None):
    """(title stem, file stem, IE rows, reading rows or None) per (model, corpus, shots): one plot pair each."""
    with_tau = readings is not None and (readings.reading == "smoothed").any()
    for (model, corpus, shots), part in ie.groupby(["model", "corpus", "shots"], sort=True):
        sel = readings[(readings.model == model) & (readings.corpus == corpus) & (readings.shots == shots)] \
            if with_tau and readings is not None else None
        yield f"{model} · {corpus} · {shots} shots", f"{model}_{corpus}_{shots}shot", part, sel


def figure_of_run(ie: pd.DataFrame, readings: pd.DataFrame | None = None):
    """The report's plots of a run as one matplotlib Figure, a row per (model, corpus, shots): IE by position
    (left) and E(l) against tau (right, when smoothed readings exist). What `Measurement.plot()` shows."""
    cells = list(_cells(ie, readings))
    columns = 2 if any(sel is not None for *_, sel in cells) else 1
    fig, axes = plt.subplots(len(cells), columns, figsize=(7.5 * columns, 4.5 * len(cells)), squeeze=False)
    for row, (title, _, part, sel) in zip(axes, cells):
        draw_ie_by_position(row[0], part, f"{title} · {part.headline.iloc[0]}")
        if sel is not None:
            draw_ie_vs_tau(row[1], sel, title)
    fig.tight_layout()
    return fig


#: Columns of the per-layer view, in reading order: headline with interval, entropy limit, MINE with interval.
LAYER_VIEW = ["model", "corpus", "shots", "layer", "position", "ie_bits", "ci_low", "ci_high", "flag",
              "ie_sigma_cal_low", "ie_sigma_cal_high",
              "ie_limit_bits", "ie_mine_bits", "ie_mine_ci_low", "ie_mine_ci_high", "ie_mine_flag"]
MODEL_VIEW = ["model", "corpus", "shots", "n_layers", "ie_mean_bits", "ie_mean_ci_low", "ie_mean_ci_high", "flag",
              "ie_limit_mean_bits", "ie_mine_mean_bits", "ie_mine_mean_ci_low", "ie_mine_mean_ci_high", "ie_mine_flag"]


def layer_view(layers_table: pd.DataFrame) -> pd.DataFrame:
    """E(l) per layer: the headline reading and its interval, the entropy limit, the MINE reading."""
    return layers_table[[c for c in LAYER_VIEW if c in layers_table.columns]]


def model_view(models_table: pd.DataFrame) -> pd.DataFrame:
    return models_table[[c for c in MODEL_VIEW if c in models_table.columns]]


def _markdown(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def _cross_model_lines(run_dir: Path, layers_table, models_table, infos: dict) -> list[str]:
    """The cross-model and proxy sections (ie_ray.compare), written under run_dir/compare/."""
    from ie_ray.compare import RunTables, compare_tables, model_info_table, write_cross_model_section

    tables = RunTables(run_dir, layers_table, models_table, model_info_table(infos))
    return write_cross_model_section(compare_tables(tables), run_dir)


def write_plots(run_dir: Path, ie: pd.DataFrame, readings: pd.DataFrame | None = None) -> list[str]:
    """The run's PNGs, one pair per (model, corpus, shots): IE by position and, with smoothed readings, E(l)
    against tau. Built from the tidy tables alone, so a finished run's figures can be re-drawn from its
    `ie.parquet` and `ie_readings.parquet`. Returns the file names written."""
    plots = []
    for title, stem, part, sel in _cells(ie, readings):
        name = store.safe_name(f"ie_{stem}") + ".png"
        plot_ie_by_position(part, Path(run_dir) / name, f"{title} · {part.headline.iloc[0]}")
        plots.append(name)
        if sel is not None:
            name = store.safe_name(f"ie_vs_tau_{stem}") + ".png"
            plot_ie_vs_tau(sel, Path(run_dir) / name, title)
            plots.append(name)
    return plots


def write_report(run_dir: Path, config, mi, ie, layers_table, models_table, infos: dict, timings: dict,
                 readings: pd.DataFrame | None = None, scales: pd.DataFrame | None = None) -> None:
    """Write the plots and report.md of a run directory."""
    plots = write_plots(run_dir, ie, readings)
    flags = mi.flag.value_counts().to_dict()
    model_rows = pd.DataFrame([
        dict(model=i.name, family=i.family, params_M=i.n_params / 1e6, layers=i.n_layers, hidden=i.hidden_size,
             dtype=i.dtype, bos=i.bos_prepended, revision=i.revision[:23])
        for i in infos.values()
    ])
    mine = mi[mi.reading == "mine"]
    fitted = mine[mine.flag != "constant"]
    smoothed = mi[(mi.reading == "smoothed") & (mi.flag != "constant")]
    lines = [
        f"# IE report: {config.name}",
        "",
        "Information Emergence (arXiv 2405.12617): IE(l, t) = MI(block-l output; block-l input) of the prefix's "
        "last token (macro) minus the mean over positions 0..t of the same MI with each token fed alone (micro). "
        "Bits. Intervals are 95% bootstrap intervals (pooled over seeds).",
        "",
        "## Three readings of every IE figure",
        f"- **Headline: {ie.headline.iloc[0]}** (`ie_bits`, `ie_sigma_*`): IE of the smoothed MI "
        "I_sigma = MI(in + sigma Z; out + sigma Z') of the empirical joint, sigma = tau * sqrt(d) per coordinate "
        "after per-dimension standardisation (tau is the noise relative to the typical distance between states). "
        "Well-posed and finite: it counts how many (input, output) configurations stay distinguishable at that "
        "noise. Flag `not_converged`: the reading on half the samples differs from the full one by more than "
        "max(0.05 bit, 5%) (the plug-in still moves with N: more samples); `imprecise`: its Monte Carlo error "
        "alone exceeds that tolerance (more draws); `undersampled`: plug-in and leave-one-out part (the bracket, "
        "`ie-ray brackets`); `below_zero`: the whole 95% interval lies below 0, which no MI can (a bias larger "
        "than the stated uncertainty); `above_ceiling`: the whole 95% interval lies above the entropy ceiling by "
        "more than that tolerance.",
        "- **Entropy limit** (`ie_limit_bits`): what a perfect estimator of the paper's MI would return: block "
        "states are deterministic functions of the prefix, so MI(in; out) = H(out), counted exactly from "
        "distinct states (tolerance in `manifest.json`). Capped at log2 N by the plug-in.",
        "- **MINE** (`ie_mine_*`): the paper's neural bound (held-out readout). A reading whose critic memorised "
        "(best training bound more than 3 bits above the entropy ceiling) or whose interval is wider than 4 bits "
        "is flagged and never counts as ok.",
        "",
        "## Models",
        _markdown(model_rows),
        "",
        "## Model-level IE (mean and sum over the analysed layers of E(l) = IE at the last position)",
        _markdown(model_view(models_table)),
        "",
        "Full table with sums and every reading's interval: `models.csv`.",
        "",
        "## Per-layer E(l)",
        _markdown(layer_view(layers_table)),
        "",
        "## IE by position (bits)",
        _markdown(ie.pivot_table(index=["model", "corpus", "shots", "position"], columns="layer",
                                 values="ie_bits").reset_index()),
        "",
        *[f"![{p}]({p})" for p in plots],
        "",
        *(_cross_model_lines(run_dir, layers_table, models_table, infos) if len(infos) >= 2 else []),
        "## How far to trust these numbers",
        f"- {len(mi)} MI rows: {len(smoothed)} smoothed readings (every tau of the grid), "
        f"{int((mi.reading == 'entropy_limit').sum())} entropy-limit counts, {len(fitted)} MINE estimates "
        f"fitted with `{fitted.estimator.iloc[0] if len(fitted) else 'mine'}`; exact zeros where the input takes "
        "one value (the list separator fed alone).",
        f"- Flags (all readings): {flags}. `above_ceiling` marks a MINE estimate more than 0.25 bit above the "
        "entropy of the inputs, which no true MI can exceed (a smoothed reading: its whole interval, by more than its tolerance); `memorised` and `unstable` mark MINE readings whose "
        "critic memorised or whose interval is too wide to mean anything.",
        f"- Mean MINE estimate / ceiling: {fitted.mi_bits.mean():.2f} / {fitted.ceiling_bits.mean():.2f} bits."
        if len(fitted) else "- No MINE estimates (readings without `mine`: no critic was trained).",
        *(_scale_lines(scales) if scales is not None and not scales.empty else []),
        "- Neural MI estimates of high-dimensional states on a few thousand samples can fall below the ceiling "
        "(the critic did not find all the structure) or overshoot it (held-out noise of the DV bound); compare "
        "IE across layers, positions and models measured with the same settings, not against the paper's "
        "absolute numbers.",
        "",
        "## Timings (s)",
        _markdown(pd.DataFrame([dict(stage=k, seconds=v) for k, v in timings.items()]), floatfmt=".1f"),
        "",
        "Files: `mi.parquet` (one row per estimate and reading), `ie.parquet`/`ie.csv` (one row per layer x "
        "position, readings side by side), `ie_readings.csv` (every reading and tau, long), `scales.csv`, "
        "`layers.csv`, `models.csv`, `manifest.json` (versions, hashes, timings), `config.yaml`.",
        "",
    ]
    store.write_text(run_dir / "report.md", "\n".join(lines))


def _scale_lines(scales: pd.DataFrame) -> list[str]:
    """How the smoothed MI's noise scale was set, per block side: the rule and which positions were left out."""
    from ie_ray.noise_scale import SINK_NORM_RATIO

    rule = scales.rule.iloc[0]
    sinks = sorted({p for v in scales.sink_positions for p in list(v)})
    return [f"- Noise scale: rule `{rule}`, one per block input and output, shared by macro and micro readings; "
            f"positions found to be attention sinks (mean norm > {SINK_NORM_RATIO:g}x the median position's): "
            f"{sinks or 'none'}"
            + (" (left out of the scale)." if rule == "pooled_no_sink" and sinks else ".")]
