"""Variance of IE against the number of shots: where IE stops growing, and where its spread peaks (PAPER.md 4.2-4.3).

The paper reports that IE rises with each new demonstration, saturates near the 7th shot, and that its standard
deviation peaks where the growth stops. It does not say what the std is taken over, so we compute three and
report each (PAPER.md A5):

* ``std_layers``: spread of E(l) over the analysed layers at a given shot count;
* ``std_bootstrap``: sampling uncertainty of one estimate, from its bootstrap interval, as a standard error
  ``(ci_high - ci_low) / (2 * 1.96)``, root-mean-square over layers;
* ``std_seeds``: spread over estimator seeds of the layer-mean IE (needs ``seeds: [0, 1, 2]`` or more and the
  MI table; per-seed IE is assembled by ``ie_ray.ie.information_emergence``, the one IE formula).

**The curve.** A sweep over ``shots: [1, ..., 12]`` gives E(l) = IE at the last token of each k-shot corpus.
A single long ICL corpus gives the same curve from one run, because a k-shot sequence is distributed exactly
like the first k shots of a longer one and the model is causal: shot k is read at position ``k * m - 1``
(``m`` tokens per shot, 2 for single-token entities). Natural-text corpora (shots = 0) give a curve over
tokens, position + 1, which is the paper's "IE grows token by token".

**Saturation shot, defined precisely.** With the layer-mean IE ``y_k`` and its standard error ``s_k``, the
increment ``d_k = y_{k+1} - y_k`` is significant when ``d_k > z * sqrt(s_k^2 + s_{k+1}^2)`` (one-sided,
``z = 1.645`` at 95 %). The saturation shot is the first k whose next ``patience`` increments (default 2, so
one noisy dip is not a plateau) are all not significant: IE grew up to k and not after. If every increment is
significant up to the end of the curve, IE has not saturated in range (``saturated = False``). A second,
model-based answer is reported next to it: the break point ``k0`` of the weighted broken-stick fit
``y = a + b * min(k, k0)`` (grid search over the observed k, weights ``1 / s_k^2``).

**Std peak.** The shot with the largest std, per std kind (first one on ties). ``peak_near_saturation`` says
whether it lies within one shot of the significance-rule saturation shot, the paper's claim.

**An interval on the std across layers** (``std_layers_ci_low``/``_high``), because one block can make a peak: a
bootstrap that resamples the analysed layers with replacement (the layers stand for the model's blocks) and
redraws each picked estimate from a normal with its own standard error (each E(l) is itself an estimate). The
same replicates give the std peak's own 95% interval (``peak_std_layers_ci_low``/``_high``, percentiles of the
replicate's peak shot) and the share of replicates whose peak lies within one shot of the saturation shot
(``peak_std_layers_near_saturation_share``): the paper's claim holds firmly only when that share is high.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ie_ray.ie import information_emergence, layer_summary

__all__ = [
    "STD_KINDS",
    "Saturation",
    "VarianceResult",
    "analyse_variance",
    "broken_stick",
    "layer_std_replicates",
    "per_seed_ie",
    "saturation_shot",
    "shot_curve",
    "std_peak",
    "write_variance",
]

Z_95 = 1.959963984540054
Z_ONE_SIDED_95 = 1.6448536269514722
STD_KINDS = ("std_layers", "std_bootstrap", "std_seeds")
CURVE_KEYS = ["model", "corpus"]
#: Bootstrap replicates behind the interval on the std across layers and on its peak shot.
N_STD_BOOTSTRAP = 2000


def _standard_error(ci_low: pd.Series, ci_high: pd.Series) -> pd.Series:
    return (ci_high - ci_low) / (2.0 * Z_95)


def shot_curve(ie: pd.DataFrame, shot_length: int | None = None) -> pd.DataFrame:
    """Per (model, corpus, layer, shot) IE with its standard error; see the module docstring for the three cases.

    ``shot_length`` (tokens per shot) is inferred as ``n_positions / shots`` for a single long ICL corpus;
    pass it when only some positions were analysed. Columns: model, corpus, layer, shot, unit, ie_bits,
    ci_low, ci_high, se_bits.
    """
    frames = []
    for (model, corpus), group in ie.groupby(CURVE_KEYS, sort=True):
        shots = sorted(group.shots.unique())
        if len(shots) > 1:  # one corpus per shot count: E(l) at each corpus's last position
            picked = layer_summary(group).assign(shot=lambda f: f.shots, unit="shots")
        elif shots[0] == 0:  # natural text: a curve over tokens
            picked = group.assign(shot=group.position + 1, unit="tokens")
        else:  # one long k-shot corpus: the end of shot s is position s * m - 1
            k = int(shots[0])
            n_positions = int(group.position.max()) + 1
            m = shot_length or (n_positions // k if n_positions % k == 0 else None)
            if m is None:
                raise ValueError(f"{model}/{corpus}: cannot infer tokens per shot from {n_positions} positions and "
                                 f"{k} shots; pass shot_length")
            ends = {s * m - 1: s for s in range(1, k + 1)}
            picked = group[group.position.isin(list(ends))]
            picked = picked.assign(shot=picked.position.map(ends), unit="shots")
        frames.append(picked)
    curve = pd.concat(frames, ignore_index=True)
    curve["se_bits"] = _standard_error(curve.ci_low, curve.ci_high)
    columns = ["model", "corpus", "layer", "shot", "unit", "ie_bits", "ci_low", "ci_high", "se_bits"]
    return curve[columns].sort_values(["model", "corpus", "layer", "shot"]).reset_index(drop=True)


def per_seed_ie(mi: pd.DataFrame) -> pd.DataFrame:
    """The IE table of each estimator seed on its own (column ``seed``), from the tidy MI table."""
    frames = [information_emergence(mi[mi.seed == seed]).assign(seed=int(seed)) for seed in sorted(mi.seed.unique())]
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Saturation:
    shot: float
    """The saturation shot (the last shot when ``saturated`` is False)."""
    saturated: bool
    significant: tuple[bool, ...]
    """Per increment k -> k+1: whether IE grew significantly."""


def saturation_shot(
    shots: np.ndarray, ie: np.ndarray, se: np.ndarray, z: float = Z_ONE_SIDED_95, patience: int = 2
) -> Saturation:
    """First shot after which ``patience`` increments in a row are not significantly > 0 (module docstring)."""
    shots, ie, se = (np.asarray(a, dtype=float) for a in (shots, ie, se))
    order = np.argsort(shots)
    shots, ie, se = shots[order], ie[order], se[order]
    if len(shots) < 2:
        return Saturation(float(shots[0]) if len(shots) else float("nan"), False, ())
    increments = np.diff(ie)
    spread = np.sqrt(se[:-1] ** 2 + se[1:] ** 2)
    significant = increments > z * spread
    for k in range(len(increments)):
        window = significant[k:k + max(1, patience)]
        if not window.any():
            return Saturation(float(shots[k]), True, tuple(bool(s) for s in significant))
    return Saturation(float(shots[-1]), False, tuple(bool(s) for s in significant))


def broken_stick(shots: np.ndarray, ie: np.ndarray, se: np.ndarray | None = None) -> tuple[float, float, float]:
    """Weighted least-squares fit of ``ie = a + b * min(shot, k0)``; returns ``(k0, a, b)``."""
    x, y = np.asarray(shots, dtype=float), np.asarray(ie, dtype=float)
    w = np.ones_like(y) if se is None else 1.0 / np.maximum(np.asarray(se, dtype=float), 1e-9) ** 2
    best = (np.inf, float(x.max()), float("nan"), float("nan"))
    for k0 in np.unique(x)[1:]:
        design = np.column_stack([np.ones_like(x), np.minimum(x, k0)])
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
        sse = float((w * (y - design @ coef) ** 2).sum())
        if sse < best[0] - 1e-12:
            best = (sse, float(k0), float(coef[0]), float(coef[1]))
    return best[1], best[2], best[3]


def std_peak(shots: np.ndarray, std: np.ndarray) -> float:
    """The shot with the largest std (first on ties); NaN when no std is known."""
    std = np.asarray(std, dtype=float)
    if not np.isfinite(std).any():
        return float("nan")
    return float(np.asarray(shots, dtype=float)[int(np.nanargmax(std))])


def layer_std_replicates(curve: pd.DataFrame, n_boot: int = N_STD_BOOTSTRAP, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of the std across layers for one (model, corpus) curve: ``(shots, (n_boot, S))``.

    Each replicate resamples the layers with replacement and redraws every picked E(l) from
    ``N(ie_bits, se_bits)`` (module docstring). A shot where some layer's estimate failed (NaN) stays NaN; with
    fewer than two layers every replicate is NaN (no spread is defined).
    """
    values = curve.pivot(index="layer", columns="shot", values="ie_bits")
    se = curve.pivot(index="layer", columns="shot", values="se_bits").reindex_like(values)
    shots = values.columns.to_numpy()
    n_layers = len(values)
    if n_layers < 2:
        return shots, np.full((n_boot, len(shots)), np.nan)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_layers, size=(n_boot, n_layers))
    draws = values.to_numpy()[pick] + rng.standard_normal((n_boot, n_layers, len(shots))) * se.to_numpy()[pick]
    return shots, draws.std(axis=1, ddof=1)


def _peak_shots(shots: np.ndarray, replicates: np.ndarray) -> np.ndarray:
    """The peak shot of each replicate, over the shots that have a std in every replicate (NaN if none)."""
    usable = np.isfinite(replicates).all(axis=0)
    if not usable.any():
        return np.full(len(replicates), np.nan)
    return shots[usable][np.argmax(replicates[:, usable], axis=1)].astype(float)


@dataclass
class VarianceResult:
    curve: pd.DataFrame
    """Per (model, corpus, layer, shot): IE, interval, standard error."""
    summary: pd.DataFrame
    """Per (model, corpus, shot): layer-mean IE and its se, and the three stds."""
    findings: pd.DataFrame
    """Per (model, corpus): saturation shot (both definitions) and the std peaks."""


def _summary(curve: pd.DataFrame, seeds: pd.DataFrame | None) -> pd.DataFrame:
    keys = CURVE_KEYS + ["shot", "unit"]
    grouped = curve.groupby(keys, sort=True)
    summary = grouped.agg(
        # strict mean: a shot where some layer's estimate failed (NaN) is not averaged over fewer layers
        ie_mean_bits=("ie_bits", lambda v: float(np.mean(v.to_numpy()))),
        n_layers=("layer", "nunique"),
        std_layers=("ie_bits", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")),
        std_bootstrap=("se_bits", lambda v: float(np.sqrt(np.mean(np.square(v))))),
        se_mean_bits=("se_bits", lambda v: float(np.sqrt(np.sum(np.square(v)))) / len(v)),
    ).reset_index()
    summary["std_seeds"] = np.nan
    summary["n_seeds"] = 1
    if seeds is not None and seeds.seed.nunique() > 1:
        seed_curves = [shot_curve(part).assign(seed=s) for s, part in seeds.groupby("seed")]
        layer_mean = pd.concat(seed_curves).groupby(keys + ["seed"]).ie_bits.mean().reset_index()
        spread = layer_mean.groupby(keys).ie_bits.agg(std_seeds="std", n_seeds="count").reset_index()
        summary = summary.drop(columns=["std_seeds", "n_seeds"]).merge(spread, on=keys, how="left")
    return summary


def analyse_variance(ie: pd.DataFrame, mi: pd.DataFrame | None = None, z: float = Z_ONE_SIDED_95,
                     patience: int = 2, shot_length: int | None = None) -> VarianceResult:
    """Curve, per-shot stds and findings for every (model, corpus) of an IE table (plus its MI table for seeds)."""
    curve = shot_curve(ie, shot_length)
    seeds = per_seed_ie(mi) if mi is not None and mi.seed.nunique() > 1 else None
    summary = _summary(curve, seeds)
    replicates = {key: layer_std_replicates(part) for key, part in curve.groupby(CURVE_KEYS, sort=True)}
    bounds = []
    for key, (shots, reps) in replicates.items():
        with warnings.catch_warnings():  # a shot with a failed estimate is NaN in every replicate: NaN bounds
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(reps, [2.5, 97.5], axis=0)
        bounds.append(pd.DataFrame(dict(model=key[0], corpus=key[1], shot=shots, std_layers_ci_low=low,
                                        std_layers_ci_high=high)))
    summary = summary.merge(pd.concat(bounds, ignore_index=True), on=CURVE_KEYS + ["shot"], how="left")
    rows = []
    for (model, corpus), group in summary.groupby(CURVE_KEYS, sort=True):
        group = group[np.isfinite(group.ie_mean_bits)]  # shots with a failed estimate carry no evidence
        if group.empty:
            continue
        x, y, se = group.shot.to_numpy(), group.ie_mean_bits.to_numpy(), group.se_mean_bits.to_numpy()
        sat = saturation_shot(x, y, se, z=z, patience=patience)
        k0, _, b = broken_stick(x, y, se)
        row = dict(model=model, corpus=corpus, unit=group.unit.iloc[0], saturation_shot=sat.shot,
                   saturated=sat.saturated, n_significant_increments=int(sum(sat.significant)),
                   broken_stick_k0=k0, broken_stick_slope_bits=b, ie_at_saturation_bits=float(np.interp(sat.shot, x, y)))
        for kind in STD_KINDS:
            peak = std_peak(x, group[kind].to_numpy())
            row[f"peak_{kind}"] = peak
            row[f"peak_{kind}_near_saturation"] = bool(np.isfinite(peak) and abs(peak - sat.shot) <= 1)
        shots, reps = replicates[(model, corpus)]
        keep = np.isin(shots, x)  # the shots the findings use (no failed estimate)
        peaks = _peak_shots(shots[keep], reps[:, keep])
        known = np.isfinite(peaks)
        row["peak_std_layers_ci_low"], row["peak_std_layers_ci_high"] = (
            np.percentile(peaks[known], [2.5, 97.5]) if known.any() else (np.nan, np.nan))
        row["peak_std_layers_near_saturation_share"] = (
            float(np.mean(np.abs(peaks[known] - sat.shot) <= 1)) if known.any() else np.nan)
        rows.append(row)
    return VarianceResult(curve, summary, pd.DataFrame(rows))


# pragma: no mutate start (the figure only draws what the tables hold: mutation testing skips it)
def plot_variance(result: VarianceResult, path: Path) -> Path:
    """One figure: per (model, corpus) a row with IE vs shots (left) and the stds vs shots (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ie_ray.report import block_colors, label_blocks

    groups = list(result.summary.groupby(CURVE_KEYS, sort=True))
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 4.8 * len(groups)), squeeze=False)
    for row, ((model, corpus), summary) in enumerate(groups):
        matches = result.findings[(result.findings.model == model) & (result.findings.corpus == corpus)]
        if matches.empty:  # every shot had a failed estimate: nothing to mark
            continue
        finding = matches.iloc[0]
        unit = summary.unit.iloc[0]
        left, right = axes[row]
        curves = result.curve[(result.curve.model == model) & (result.curve.corpus == corpus)]
        colors = block_colors(curves.layer.unique())
        for layer, part in curves.groupby("layer"):
            left.plot(part.shot, part.ie_bits, lw=0.8, alpha=0.6, color=colors[layer], label=f"layer {layer}")
        x, y, se = summary.shot, summary.ie_mean_bits, summary.se_mean_bits
        left.plot(x, y, color="black", lw=2, marker="o", label="mean over layers")
        left.fill_between(x, y - Z_95 * se, y + Z_95 * se, color="black", alpha=0.15)
        right.plot(x, summary.std_layers, marker="o", label="std across layers")
        right.fill_between(x, summary.std_layers_ci_low, summary.std_layers_ci_high, color="tab:blue", alpha=0.15,
                           label="95% interval (layers resampled, estimates redrawn)")
        right.plot(x, summary.std_bootstrap, marker="s", label="std across samples (bootstrap)")
        if summary.std_seeds.notna().any():
            right.plot(x, summary.std_seeds, marker="^", label="std across seeds")
        for axis in (left, right):
            axis.axvline(finding.saturation_shot, color="tab:red", ls="--",
                         label=f"saturation {finding.saturation_shot:g}" + ("" if finding.saturated else " (none)"))
            axis.axvline(finding.broken_stick_k0, color="tab:purple", ls=":", label=f"broken stick {finding.broken_stick_k0:g}")
            axis.set_xlabel(unit)
            axis.grid(alpha=0.3)
        right.axvline(finding.peak_std_layers, color="tab:blue", ls="-.", lw=0.8,
                      label=f"std peak (layers) {finding.peak_std_layers:g}")
        left.set_ylabel("IE (bits)")
        left.set_title(f"{model} / {corpus}: IE")
        right.set_ylabel("std of IE (bits)")
        right.set_title(f"{model} / {corpus}: spread")
        below: dict[str, Any] = dict(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
        label_blocks(left, colors, "layer ", "viridis", **below)  # legends below the axes: off the curves
        right.legend(fontsize=7, **below)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# pragma: no mutate end
def write_variance(run_dir: Path, patience: int = 2, shot_length: int | None = None) -> VarianceResult:
    """Analyse a finished run directory; writes variance.csv, variance_findings.csv and variance.png into it."""
    from ie_ray import store

    run_dir = Path(run_dir)
    ie = pd.read_parquet(run_dir / "ie.parquet")
    mi_path = run_dir / "mi.parquet"
    mi = pd.read_parquet(mi_path) if mi_path.exists() else None
    result = analyse_variance(ie, mi, patience=patience, shot_length=shot_length)
    store.write_text(run_dir / "variance.csv", result.summary.to_csv(index=False))
    store.write_text(run_dir / "variance_findings.csv", result.findings.to_csv(index=False))
    plot_variance(result, run_dir / "variance.png")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ie-ray variance` options (kept here so cli.py only wires the subcommand)."""
    parser.add_argument("run_dir", help="a finished sweep's run directory (holds ie.parquet, mi.parquet)")
    parser.add_argument("--patience", type=int, default=2, help="non-significant increments in a row = plateau")
    parser.add_argument("--shot-length", type=int, default=None, help="tokens per shot of a single long corpus")


def main_from_args(args: argparse.Namespace) -> int:
    result = write_variance(Path(args.run_dir), args.patience, args.shot_length)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print()
        print(result.findings.T.to_string(header=False))
    print(f"\nwrote variance.csv, variance_findings.csv, variance.png in {args.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ie_ray.variance`, the older spelling of `ie-ray variance`."""
    parser = argparse.ArgumentParser(prog="ie-ray variance", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
