"""A trained model's IE next to its controls, block by block: does a control show the same pattern?

Why this exists (issue 25 item 5): apparent emergence can come from the metric (Schaeffer et al. 2023). The two
controls, a randomly initialised model of the same architecture and tokenizer and the same windows with their
tokens shuffled, are separate sweeps; a verdict needs them read *at every block* next to the trained run, and a
trend ("IE rises from step a to step b") decided the same way in each run. This module puts finished runs side
by side from their committed tables only (`ie.parquet`, `mi.parquet`), so it runs on any machine in seconds:

    ie-ray controls results/icl-country-20k --control random-init=results/control-icl-country-20k-random-init \
        --control shuffled=results/control-icl-country-20k-shuffled --shot-length 2 --trend 3:12 \
        --out results/controls-icl-country-20k

Per run and (block, position) it reads the headline IE (the smoothed plug-in at the run's headline tau, with its
bootstrap interval and flag), the leave-one-out end of the bracket and the calibrated interval (`ie_ray.brackets`,
relative band), and the entropy limit. Then:

* **versus the trained run**, per cell: the control's IE minus the trained IE (plug-in and leave-one-out), and
  `above` / `below` when the two calibrated intervals are disjoint, `overlap` when not, `no interval` where either
  reading is still moving with the sample size;
* **trends** (`--trend a:b`), per run and block and for the mean over blocks: the change from step a to step b and
  `rises` / `falls` when the two calibrated intervals are disjoint, else `undetermined` (the rule of
  `benchmarks/reproduction_checks.py`; the block mean's interval is the mean of the low ends to the mean of the
  high ends, NaN if any block lacks one);
* **pattern agreement**: over the blocks where the trained run's trend is decided, how many blocks of each control
  show the same direction, the opposite one, or none.

A step is a token (natural text, `--shot-length 1`: token k at position k - 1) or a shot end (ICL with m tokens
per shot: shot k at position k * m - 1). On shuffled-token corpora "shot k" only names a position.

The calibrated band was measured on the trained model's states (results/validation/smoothed-real/); on a control's
states the same band is an assumption, and the runs table says which runs were calibrated (`band_measured_here`).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on clusters and CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ie_ray import store
from ie_ray.bias_band import headline_band, load_bands
from ie_ray.brackets import DEFAULT_BANDS, ie_brackets
from ie_ray.errors import ConfigError

__all__ = [
    "RunReading",
    "load_run",
    "pattern_agreement",
    "side_by_side",
    "trends",
    "versus_trained",
    "write_comparison",
]

CELL = ["layer", "position"]
#: What one run contributes per (block, position), in the order of the side-by-side table.
READING_COLUMNS = ["ie_bits", "ci_low", "ci_high", "flag", "ie_loo_bits", "band_low", "band_high", "ie_limit_bits"]
MEAN_BLOCK = "mean"


@dataclass(frozen=True)
class RunReading:
    """One finished run reduced to the columns a comparison needs (one condition: model x corpus x shots)."""

    label: str
    run_dir: Path
    model: str
    corpus: str
    shots: int
    tau: float
    band_measured_here: bool
    frame: pd.DataFrame  # CELL + READING_COLUMNS


def _one_condition(ie: pd.DataFrame, run_dir: Path) -> tuple[str, str, int]:
    conditions = ie[["model", "corpus", "shots"]].drop_duplicates()
    if len(conditions) != 1:
        listed = ", ".join(f"{r.model}/{r.corpus}/{r.shots}-shot" for r in conditions.itertuples())
        raise ConfigError(f"{run_dir} holds {len(conditions)} conditions ({listed}); a control comparison reads one "
                          "condition per run: run each model and corpus as its own sweep, or filter first")
    row = conditions.iloc[0]
    return str(row.model), str(row.corpus), int(row.shots)


def _headline_tau(ie: pd.DataFrame, run_dir: Path) -> float:
    taus = ie["tau"].dropna().unique() if "tau" in ie else np.array([])
    if len(taus) != 1:
        raise ConfigError(f"{run_dir}/ie.parquet has no single smoothed headline tau (found {taus.tolist()}); "
                          "controls are read on the smoothed reading: add `smoothed` to the run's readings")
    return float(taus[0])


def load_run(label: str, run_dir: Path, bands_path: Path | None = DEFAULT_BANDS) -> RunReading:
    """A finished run's headline IE, its bracket's leave-one-out end and calibrated interval, its entropy limit.

    `bands_path`: the bias bands (used when the file exists; None: no calibrated interval, the band columns NaN).
    """
    run_dir = Path(run_dir)
    for name in ("ie.parquet", "mi.parquet"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir / name} is missing: point at a finished sweep's run directory")
    ie = pd.read_parquet(run_dir / "ie.parquet")
    model, corpus, shots = _one_condition(ie, run_dir)
    tau = _headline_tau(ie, run_dir)
    bands_file = Path(bands_path) if bands_path is not None else None
    bands = load_bands(bands_file) if bands_file is not None and bands_file.is_file() else None
    bracket = ie_brackets(pd.read_parquet(run_dir / "mi.parquet"), tau, bands)
    bracket = bracket.rename(columns={"ie_band_low": "band_low", "ie_band_high": "band_high"})
    for column in ("band_low", "band_high"):
        if column not in bracket:
            bracket[column] = np.nan
    if "ie_limit_bits" not in ie:
        ie = ie.assign(ie_limit_bits=np.nan)
    frame = ie[CELL + ["ie_bits", "ci_low", "ci_high", "flag", "ie_limit_bits"]].merge(
        bracket[CELL + ["ie_loo_bits", "band_low", "band_high"]], on=CELL, how="left")
    found = headline_band(bands_file, tau) if bands_file is not None else None
    return RunReading(label=label, run_dir=run_dir, model=model, corpus=corpus, shots=shots, tau=tau,
                      band_measured_here=bool(found and model in found[1]),
                      frame=frame[CELL + READING_COLUMNS].sort_values(CELL).reset_index(drop=True))


def _check_alike(trained: RunReading, control: RunReading) -> None:
    """A control is comparable only on the trained run's grid and noise fraction: name what differs and the fix."""
    if not math.isclose(trained.tau, control.tau):
        raise ConfigError(f"{control.label} ({control.run_dir}) has its headline at tau {control.tau:g}, the trained "
                          f"run at {trained.tau:g}: set the control's smoothed.tau to {trained.tau:g} and rerun it")
    ours = set(map(tuple, trained.frame[CELL].to_numpy().tolist()))
    theirs = set(map(tuple, control.frame[CELL].to_numpy().tolist()))
    missing = sorted(ours - theirs)
    if missing:
        shown = ", ".join(f"block {b} position {p}" for b, p in missing[:5])
        raise ConfigError(f"{control.label} ({control.run_dir}) lacks {len(missing)} of the trained run's "
                          f"(block, position) cells ({shown}{' ...' if len(missing) > 5 else ''}): rerun the control "
                          "with the trained run's layers and positions")


def step_of(position: pd.Series | np.ndarray, shot_length: int) -> np.ndarray:
    """The step (token or shot) a position ends, NaN where it ends none: step k ends at position k * m - 1."""
    ends = np.asarray(position, dtype=np.int64) + 1
    return np.where(ends % shot_length == 0, ends // shot_length, np.nan)


def side_by_side(trained: RunReading, controls: Sequence[RunReading], shot_length: int = 1) -> pd.DataFrame:
    """The long table: one row per run x (block, position) on the trained run's grid, with the step it ends."""
    if shot_length < 1:
        raise ConfigError(f"shot_length is {shot_length}; it must be >= 1 (tokens per shot; 1 for natural text)")
    labels = [trained.label] + [c.label for c in controls]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"labels must differ; got {labels}")
    frames = []
    for role, run in [("trained", trained)] + [("control", c) for c in controls]:
        if role == "control":
            _check_alike(trained, run)
        part = trained.frame[CELL].merge(run.frame, on=CELL, how="left")
        frames.append(part.assign(label=run.label, role=role, model=run.model, corpus=run.corpus, shots=run.shots,
                                  tau=run.tau))
    table = pd.concat(frames, ignore_index=True)
    table["step"] = step_of(table.position, shot_length)
    front = ["label", "role", "model", "corpus", "shots", "tau", "layer", "position", "step"]
    return table[front + READING_COLUMNS]


def disjoint_verdicts(low_a, high_a, low_b, high_b, above: str, below: str, neither: str) -> np.ndarray:
    """`above` where interval b lies wholly above interval a, `below` wholly below, `neither` where they overlap,
    'no interval' where any end is NaN. The one rule by which a trend or a difference counts as decided (also
    `benchmarks/reproduction_checks.py`)."""
    low_a, high_a, low_b, high_b = (np.asarray(v, dtype=float) for v in (low_a, high_a, low_b, high_b))
    said = np.where(low_b > high_a, above, np.where(high_b < low_a, below, neither)).astype(object)
    said[~np.isfinite(np.stack([low_a, high_a, low_b, high_b])).all(axis=0)] = "no interval"
    return said


def versus_trained(table: pd.DataFrame) -> pd.DataFrame:
    """Each control's IE minus the trained IE per (block, position), and whether their calibrated intervals part."""
    trained = table[table.role == "trained"].set_index(CELL)
    rows = []
    for label, control in table[table.role == "control"].groupby("label", sort=False):
        c = control.set_index(CELL)
        t = trained.loc[c.index]
        rows.append(pd.DataFrame({
            "label": label, "layer": c.index.get_level_values(0), "position": c.index.get_level_values(1),
            "step": c.step.to_numpy(), "trained_bits": t.ie_bits.to_numpy(), "control_bits": c.ie_bits.to_numpy(),
            "difference_bits": (c.ie_bits - t.ie_bits).to_numpy(),
            "difference_loo_bits": (c.ie_loo_bits - t.ie_loo_bits).to_numpy(),
            "control_versus_trained": disjoint_verdicts(t.band_low, t.band_high, c.band_low, c.band_high,
                                                "above", "below", "overlap")}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _at_step(part: pd.DataFrame, step: int) -> pd.DataFrame:
    return part[part.step == step].set_index("layer")


def _with_mean(at_step: pd.DataFrame) -> pd.DataFrame:
    """The blocks' IE, leave-one-out end and calibrated interval at one step, plus a row for their mean. The mean's
    interval runs from the mean of the low ends to the mean of the high ends (every block's error may sit anywhere
    in its band, and a systematic error moves them together, so no independence is assumed); NaN if any block
    lacks one, since skipping it would bias the mean."""
    mean = pd.concat([at_step[["ie_bits", "ie_loo_bits"]].mean(),
                      at_step[["band_low", "band_high"]].mean(skipna=False)])
    return pd.concat([at_step[["ie_bits", "ie_loo_bits", "band_low", "band_high"]], mean.to_frame(MEAN_BLOCK).T])


def trends(table: pd.DataFrame, pairs: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """Per run, block (and the mean over blocks) and step pair: the change of IE and its verdict by the calibrated
    intervals (rises / falls / undetermined / no interval)."""
    steps = set(table.step.dropna().astype(int))
    rows = []
    for first, second in pairs:
        absent = sorted({first, second} - steps)
        if absent:
            raise ConfigError(f"--trend {first}:{second}: step {absent[0]} is not in these runs (steps "
                              f"{min(steps)}-{max(steps)}; check --shot-length)")
        for label, part in table.groupby("label", sort=False):
            a_all = _with_mean(_at_step(part, first))
            b_all = _with_mean(_at_step(part, second)).reindex(a_all.index)
            verdict = disjoint_verdicts(a_all.band_low, a_all.band_high, b_all.band_low, b_all.band_high,
                                "rises", "falls", "undetermined")
            rows.append(pd.DataFrame({
                "label": label, "role": part.role.iloc[0], "block": [str(i) for i in a_all.index],
                "from_step": first, "to_step": second,
                "from_bits": a_all.ie_bits.to_numpy(float), "to_bits": b_all.ie_bits.to_numpy(float),
                "change_bits": (b_all.ie_bits - a_all.ie_bits).to_numpy(float),
                "change_loo_bits": (b_all.ie_loo_bits - a_all.ie_loo_bits).to_numpy(float),
                "from_low": a_all.band_low.to_numpy(float), "from_high": a_all.band_high.to_numpy(float),
                "to_low": b_all.band_low.to_numpy(float), "to_high": b_all.band_high.to_numpy(float),
                "verdict": verdict}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def pattern_agreement(trend_table: pd.DataFrame) -> pd.DataFrame:
    """Per control and step pair, over the blocks (not the mean) where the trained trend is decided: how many of
    the control's blocks go the same way, the other way, or are not decided."""
    if trend_table.empty:
        return pd.DataFrame()
    blocks = trend_table[trend_table.block != MEAN_BLOCK]
    rows = []
    for (first, second), pair in blocks.groupby(["from_step", "to_step"], sort=False):
        trained = pair[pair.role == "trained"].set_index("block").verdict
        decided = trained[trained.isin(["rises", "falls"])]
        for label, control in pair[pair.role == "control"].groupby("label", sort=False):
            said = control.set_index("block").verdict.reindex(decided.index)
            opposite = decided.map({"rises": "falls", "falls": "rises"})
            rows.append(dict(label=label, from_step=first, to_step=second, blocks=len(trained),
                             trained_decided=len(decided),
                             trained_rises=int((decided == "rises").sum()),
                             trained_falls=int((decided == "falls").sum()),
                             control_same=int((said == decided).sum()),
                             control_opposite=int((said == opposite).sum()),
                             control_undetermined=int((said == "undetermined").sum()),
                             control_no_interval=int((said == "no interval").sum()),
                             control_rises_anywhere=int((control.verdict == "rises").sum()),
                             control_falls_anywhere=int((control.verdict == "falls").sum())))
    return pd.DataFrame(rows)


def block_means(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and step: the mean over blocks of the plug-in, the leave-one-out end and the entropy limit."""
    steps = table.dropna(subset=["step"])
    means = steps.groupby(["label", "step"], sort=False)[["ie_bits", "ie_loo_bits", "ie_limit_bits"]].mean()
    return means.reset_index().assign(step=lambda f: f.step.astype(int))


def plot_by_block(table: pd.DataFrame, plot_steps: Sequence[int], path: Path, step_name: str) -> Path:
    """IE against block at a few steps, one line per run, the calibrated interval shaded where it exists."""
    fig, axes = plt.subplots(1, len(plot_steps), figsize=(4.2 * len(plot_steps), 3.6), sharey=True, squeeze=False)
    for ax, step in zip(axes[0], plot_steps):
        for label, part in table[table.step == step].groupby("label", sort=False):
            part = part.sort_values("layer")
            line, = ax.plot(part.layer, part.ie_bits, marker=".", label=f"{label} (plug-in)")
            ax.plot(part.layer, part.ie_loo_bits, ls="--", lw=0.8, color=line.get_color())
            ax.fill_between(part.layer, part.band_low, part.band_high, color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{step_name} {step}")
        ax.set_xlabel("block")
    axes[0][0].set_ylabel("IE (bits); dashed: leave-one-out end")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_by_step(means: pd.DataFrame, path: Path, step_name: str) -> Path:
    """The mean over blocks against the step, plug-in (solid) and leave-one-out end (dashed), one colour per run."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, part in means.groupby("label", sort=False):
        line, = ax.plot(part.step, part.ie_bits, marker="o", label=label)
        ax.plot(part.step, part.ie_loo_bits, ls="--", color=line.get_color())
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(step_name)
    ax.set_ylabel("IE, mean over blocks (bits)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    store._atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def _markdown(runs: Sequence[RunReading], means: pd.DataFrame, versus: pd.DataFrame, trend_table: pd.DataFrame,
              agreement: pd.DataFrame, step_name: str, plots: Sequence[Path]) -> str:
    run_rows = pd.DataFrame([dict(label=r.label, run=str(r.run_dir), model=r.model, corpus=r.corpus, shots=r.shots,
                                  tau=r.tau, band_measured_here=r.band_measured_here) for r in runs])
    wide = means.pivot(index="step", columns="label", values=["ie_bits", "ie_loo_bits", "ie_limit_bits"])
    names = {"ie_bits": "plug-in", "ie_loo_bits": "loo", "ie_limit_bits": "limit"}
    wide = wide[[(c, r.label) for c in names for r in runs]]  # the trained run first, in the order given
    wide.columns = [f"{label} {names[c]}" for c, label in wide.columns]
    wide.index = wide.index.astype(int).astype(str)  # a step is a count: not formatted as a float
    lines = ["# IE of the trained model next to its controls", "",
             "Written by `ie-ray controls` (`ie_ray/control_comparison.py`) from the runs' committed tables. Bits; "
             f"a {step_name} is read at the position it ends. `band_measured_here`: the calibrated interval's band "
             "was measured on this model's states; elsewhere applying it is an assumption.", "",
             run_rows.to_markdown(index=False), "",
             f"## Mean over blocks per {step_name} (plug-in, leave-one-out end, entropy limit)", "",
             wide.reset_index().to_markdown(index=False, floatfmt=".2f"), ""]
    if not versus.empty:
        counts = (versus.dropna(subset=["step"]).groupby(["label", "step", "control_versus_trained"]).size()
                  .unstack(fill_value=0).reset_index())
        counts["step"] = counts.step.astype(int)
        lines += [f"## Each control against the trained run, per {step_name}: blocks whose calibrated intervals part",
                  "", counts.to_markdown(index=False), ""]
    if not trend_table.empty:
        mean_rows = trend_table[trend_table.block == MEAN_BLOCK]
        per_block = (trend_table[trend_table.block != MEAN_BLOCK]
                     .groupby(["label", "from_step", "to_step", "verdict"]).size().unstack(fill_value=0).reset_index())
        lines += ["## Trends by the calibrated interval", "", "Mean over blocks:", "",
                  mean_rows.drop(columns=["block"]).to_markdown(index=False, floatfmt=".2f"), "",
                  "Blocks by verdict:", "", per_block.to_markdown(index=False), ""]
        if not agreement.empty:
            lines += ["Blocks where the trained trend is decided, and what each control's same blocks say:", "",
                      agreement.to_markdown(index=False), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_comparison(trained: RunReading, controls: Sequence[RunReading], out_dir: Path, shot_length: int = 1,
                     pairs: Sequence[tuple[int, int]] = (), plot_steps: Sequence[int] | None = None) -> pd.DataFrame:
    """Every table, both plots and controls.md under `out_dir`; returns the side-by-side table."""
    out_dir = Path(out_dir)
    table = side_by_side(trained, controls, shot_length)
    versus = versus_trained(table)
    trend_table = trends(table, pairs)
    agreement = pattern_agreement(trend_table)
    means = block_means(table)
    step_name = "token" if shot_length == 1 else "shot"
    steps = sorted(means.step.unique().tolist())
    chosen = list(plot_steps) if plot_steps else sorted({s for pair in pairs for s in pair}) or [
        steps[0], steps[len(steps) // 2], steps[-1]]
    unknown = [s for s in chosen if s not in steps]
    if unknown:
        raise ConfigError(f"plot step {unknown[0]} is not in these runs ({step_name}s {steps[0]}-{steps[-1]})")
    store.write_table(out_dir / "controls.parquet", table, csv=True)
    store.write_table(out_dir / "controls_versus_trained.parquet", versus, csv=True)
    store.write_table(out_dir / "controls_block_means.parquet", means, csv=True)
    if not trend_table.empty:
        store.write_table(out_dir / "controls_trends.parquet", trend_table, csv=True)
        store.write_table(out_dir / "controls_pattern.parquet", agreement, csv=True)
    plots = [plot_by_block(table, chosen, out_dir / "controls_by_block.png", step_name),
             plot_by_step(means, out_dir / "controls_by_step.png", step_name)]
    store.write_text(out_dir / "controls.md", _markdown([trained, *controls], means, versus, trend_table, agreement,
                                                        step_name, plots))
    return table


def _labelled(value: str) -> tuple[str, Path]:
    label, found, path = value.partition("=")
    if not found or not label or not path:
        raise ConfigError(f"--control {value!r} must look like LABEL=RUN_DIR")
    return label, Path(path)


def _pair(value: str) -> tuple[int, int]:
    first, found, second = value.partition(":")
    try:
        if not found:
            raise ValueError
        return int(first), int(second)
    except ValueError:
        raise ConfigError(f"--trend {value!r} must look like A:B with two step numbers (e.g. 3:12)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ie-ray controls` options (kept here so cli.py only wires the subcommand)."""
    parser.add_argument("trained", type=Path, help="the trained model's finished run directory")
    parser.add_argument("--control", action="append", required=True, metavar="LABEL=RUN_DIR",
                        help="a control's finished run directory (repeatable), e.g. random-init=results/control-...")
    parser.add_argument("--trained-label", default="trained", help="the trained run's label (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="directory for controls.md, the tables and plots")
    parser.add_argument("--shot-length", type=int, default=1,
                        help="tokens per shot (ICL: 2 for one-token entities); 1 (default) reads tokens")
    parser.add_argument("--trend", action="append", default=[], metavar="A:B",
                        help="a trend to decide in every run, from step A to step B (repeatable)")
    parser.add_argument("--plot-steps", help="comma-separated steps of the by-block plot (default: the trend steps, "
                                             "else the first, middle and last)")
    parser.add_argument("--bands", type=Path, default=DEFAULT_BANDS,
                        help="bias bands of the calibration (default: %(default)s, used when it exists)")


def main_from_args(args: argparse.Namespace) -> int:
    # every argument is checked before any table is read
    labelled = [_labelled(v) for v in args.control]
    pairs = [_pair(v) for v in args.trend]
    plot_steps = [int(s) for s in args.plot_steps.split(",")] if args.plot_steps else None
    trained = load_run(args.trained_label, args.trained, args.bands)
    controls = [load_run(label, path, args.bands) for label, path in labelled]
    write_comparison(trained, controls, args.out, args.shot_length, pairs, plot_steps)
    print((args.out / "controls.md").read_text())
    print(f"[ie-ray] written to {args.out}/")
    return 0
