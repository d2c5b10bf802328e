"""Human-facing outputs of a run: PNG plots and report.md, built only from the tidy tables."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ie_ray import store  # noqa: E402


def plot_ie_by_position(ie: pd.DataFrame, path: Path, title: str) -> None:
    """IE vs position, one line per layer with its 95% band: where emergence appears along the sequence."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    cmap = plt.get_cmap("viridis")
    layers = sorted(ie.layer.unique())
    for k, layer in enumerate(layers):
        part = ie[ie.layer == layer].sort_values("position")
        color = cmap(k / max(1, len(layers) - 1))
        ax.plot(part.position, part.ie_bits, marker="o", color=color, label=f"block {layer}")
        ax.fill_between(part.position, part.ci_low, part.ci_high, color=color, alpha=0.15)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("position t (IE of the prefix ending at t)")
    ax.set_ylabel("IE (bits)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def _cross_model_lines(run_dir: Path, layers_table, models_table, infos: dict) -> list[str]:
    """The cross-model and proxy sections (ie_ray.compare), written under run_dir/compare/."""
    from ie_ray.compare import RunTables, compare_tables, model_info_table, write_cross_model_section

    tables = RunTables(run_dir, layers_table, models_table, model_info_table(infos))
    return write_cross_model_section(compare_tables(tables), run_dir)


def write_report(run_dir: Path, config, mi, ie, layers_table, models_table, infos: dict, timings: dict) -> None:
    """Write the plots and report.md of a run directory."""
    plots = []
    for (model, corpus, shots), part in ie.groupby(["model", "corpus", "shots"], sort=True):
        name = store.safe_name(f"ie_{model}_{corpus}_{shots}shot") + ".png"
        plot_ie_by_position(part, run_dir / name, f"{model} · {corpus} · {shots} shots")
        plots.append(name)
    flags = mi.flag.value_counts().to_dict()
    model_rows = pd.DataFrame([
        dict(model=i.name, family=i.family, params_M=i.n_params / 1e6, layers=i.n_layers, hidden=i.hidden_size,
             dtype=i.dtype, bos=i.bos_prepended, revision=i.revision[:23])
        for i in infos.values()
    ])
    layer_view = layers_table[["model", "corpus", "shots", "layer", "position", "mi_macro_bits", "mi_micro_bits",
                               "ie_bits", "ci_low", "ci_high", "macro_ceiling_bits", "flag"]]
    fitted = mi[mi.flag != "constant"]
    lines = [
        f"# IE report: {config.name}",
        "",
        "Information Emergence (arXiv 2405.12617): IE(l, t) = MI(block-l output; block-l input) of the prefix's "
        "last token (macro) minus the mean over positions 0..t of the same MI with each token fed alone (micro). "
        "Bits. Intervals are 95% bootstrap intervals of the held-out estimates (pooled over seeds).",
        "",
        "## Models",
        _markdown(model_rows),
        "",
        "## Model-level IE (mean and sum over the analysed layers of E(l) = IE at the last position)",
        _markdown(models_table),
        "",
        "## Per-layer E(l)",
        _markdown(layer_view),
        "",
        "## IE by position (bits)",
        _markdown(ie.pivot_table(index=["model", "corpus", "shots", "position"], columns="layer",
                                 values="ie_bits").reset_index()),
        "",
        *[f"![{p}]({p})" for p in plots],
        "",
        *(_cross_model_lines(run_dir, layers_table, models_table, infos) if len(infos) >= 2 else []),
        "## How far to trust these numbers",
        f"- {len(mi)} MI estimates: {len(fitted)} fitted with `{mi.estimator.iloc[0]}`, "
        f"{len(mi) - len(fitted)} exact zeros (the input takes one value, e.g. the list separator at the micro level).",
        f"- Flags: {flags}. `above_ceiling` marks an estimate more than 0.25 bit above the entropy of the inputs, "
        "which no true MI can exceed (block states are deterministic functions of the tokens).",
        f"- Mean fitted estimate / ceiling: {fitted.mi_bits.mean():.2f} / {fitted.ceiling_bits.mean():.2f} bits."
        if len(fitted) else "- No fitted estimates.",
        "- Neural MI estimates of high-dimensional states on a few thousand samples can fall below the ceiling "
        "(the critic did not find all the structure) or overshoot it (held-out noise of the DV bound); compare "
        "IE across layers, positions and models measured with the same settings, not against the paper's "
        "absolute numbers.",
        "",
        "## Timings (s)",
        _markdown(pd.DataFrame([dict(stage=k, seconds=v) for k, v in timings.items()]), floatfmt=".1f"),
        "",
        "Files: `mi.parquet` (one row per estimate), `ie.parquet`/`ie.csv` (one row per layer x position), "
        "`layers.csv`, `models.csv`, `manifest.json` (versions, hashes, timings), `config.yaml`.",
        "",
    ]
    store.write_text(run_dir / "report.md", "\n".join(lines))
