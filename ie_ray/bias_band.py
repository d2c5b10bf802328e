"""The calibrated interval of an undersampled smoothed reading: the plug-in minus a bias band measured on laws
whose smoothed MI is known.

Why: where a prefix law has far more atoms than the sample, the smoothed plug-in is flagged `undersampled` and
its bootstrap interval measures only the sample-to-sample spread, not the bias (`docs/readings.md`). The bias
cannot be read off the sample itself (the subsampling fits of `validate_smoothed_real` do not cover), but it can
be measured: `ie-ray validate --smoothed --real` draws samples from K-atom laws built from real block states (and
synthetic ones) whose population value is computed from all K atoms. The relative offset
(plug-in - truth) / max(|plug-in|, SCALE_FLOOR_BITS) of those samples differs from law to law more than from
sample to sample, so the *bias band* is a 95% prediction interval for the offset of a sample of a law not yet
seen: a one-way random-effects model (law means around a grand mean, samples around their law's mean), grand mean
+- t(P - 1) x sqrt(s_between^2 (1 + 1/P) + s_within^2) over P laws. (The min-max range of the offsets was tried
first: fitted without one law, it covered 76% of that law's samples on small synthetic laws; with 3-5 laws a
range cannot cover a new law's shift.) The calibrated interval of a new reading is then
[plug-in - high * s, plug-in - low * s], s = max(|plug-in|, SCALE_FLOOR_BITS), widened by the reading's own
95% interval (the sampling spread of the reading at hand, beside the systematic band).

A second parametrisation (`kind="bracket"`) places the truth inside the bracket instead: the position
t = (truth - loo) / (plug-in - loo) of the truth between the leave-one-out end and the plug-in, whose range
[low, high] gives [loo + low * gap, loo + high * gap], gap = plug-in - loo. Where a law's bias grows with the gap
(the more isolated the samples, the further both ends part), this one transfers between laws better.

It is a systematic-error budget, valid for laws like the ones it was measured on, so it is judged by how it
transfers: `leave_one_population_out` fits the band without a population and applies it to that population's
samples. Only readings flagged `undersampled` get it: `ok` readings keep their bootstrap interval, and a reading
that is still moving with the sample size (`not_converged`, or any other flag) gets none (NaN): there the
remedy is more samples, not a wider interval.

    bands = fit_bands(calibration_table)            # {tau: BiasBand}
    low, high = band_interval(plugin_bits, bands[0.25])
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "BAND_FLAG",
    "BiasBand",
    "band_interval",
    "bands_models",
    "bracket_position",
    "fit_bands",
    "leave_one_population_out",
    "load_bands",
    "own_bands_files",
    "prediction_interval",
    "relative_offset",
    "save_bands",
]

#: The only flag a band applies to (see the module docstring).
BAND_FLAG = "undersampled"
#: Offsets are relative to max(|plug-in|, this): a reading near 0 bits (tau 1.0 reads ~0.02) would otherwise turn
#: a few hundredths of a bit into a relative offset of 100%.
SCALE_FLOOR_BITS = 0.1
#: The band's prediction level (a sample of a new law falls inside with this probability under the model).
PREDICTION_LEVEL = 0.95
#: The two parametrisations of a band (see the module docstring).
KINDS: tuple[str, ...] = ("relative", "bracket")
#: The calibration's n/K range (issue 24): the band is fitted, and judged, on samples with n/K in it.
FRACTION_RANGE: tuple[float, float] = (0.02, 0.5)


@dataclass(frozen=True)
class BiasBand:
    """The range [low, high], over `samples` calibration samples of `populations` laws at one tau, of
    (plug-in - truth) / max(|plug-in|, floor) (kind "relative"; positive: the plug-in reads high) or of
    (truth - loo) / (plug-in - loo) (kind "bracket"; 1: the truth is at the plug-in)."""

    tau: float
    low: float
    high: float
    samples: int
    populations: int
    kind: str = "relative"


def relative_offset(plugin_bits: np.ndarray, truth_bits: np.ndarray) -> np.ndarray:
    """(plug-in - truth) / max(|plug-in|, SCALE_FLOOR_BITS): the bias in units of the reading the user has."""
    plugin_bits = np.asarray(plugin_bits, dtype=np.float64)
    return (plugin_bits - np.asarray(truth_bits, dtype=np.float64)) / np.maximum(np.abs(plugin_bits),
                                                                                  SCALE_FLOOR_BITS)


def bracket_position(plugin_bits: np.ndarray, loo_bits: np.ndarray, truth_bits: np.ndarray) -> np.ndarray:
    """(truth - loo) / (plug-in - loo): where the truth sits in the bracket (0 at its leave-one-out end, 1 at the
    plug-in; NaN where the two ends coincide)."""
    plugin_bits, loo_bits = np.asarray(plugin_bits, dtype=np.float64), np.asarray(loo_bits, dtype=np.float64)
    gap = plugin_bits - loo_bits
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (np.asarray(truth_bits, dtype=np.float64) - loo_bits) / gap, np.nan)


def _offsets(part: pd.DataFrame, kind: str) -> np.ndarray:
    if kind == "relative":
        return relative_offset(part.plugin.to_numpy(), part.truth_bits.to_numpy())
    if kind == "bracket":
        return bracket_position(part.plugin.to_numpy(), part.loo.to_numpy(), part.truth_bits.to_numpy())
    raise ValueError(f"unknown band kind {kind!r}; one of {KINDS}")


def band_interval(plugin_bits: np.ndarray | float, band: BiasBand,
                  loo_bits: np.ndarray | float | None = None, ci_low: np.ndarray | float | None = None,
                  ci_high: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated interval: [plug-in - high * s, plug-in - low * s], s = max(|plug-in|, floor), for a
    "relative" band; [loo + low * gap, loo + high * gap], gap = plug-in - loo, for a "bracket" band (which needs
    `loo_bits`); each side then widened by the reading's own interval [ci_low, ci_high] around the plug-in,
    where given."""
    plugin_bits = np.asarray(plugin_bits, dtype=np.float64)
    low, high = _band_only(plugin_bits, band, loo_bits)
    if ci_low is not None and ci_high is not None:
        low = low - np.maximum(plugin_bits - np.asarray(ci_low, dtype=np.float64), 0.0)
        high = high + np.maximum(np.asarray(ci_high, dtype=np.float64) - plugin_bits, 0.0)
    return low, high


def _band_only(plugin_bits: np.ndarray, band: BiasBand,
               loo_bits: np.ndarray | float | None) -> tuple[np.ndarray, np.ndarray]:
    if band.kind == "bracket":
        if loo_bits is None:
            raise ValueError("a bracket band needs the leave-one-out reading (loo_bits)")
        loo = np.asarray(loo_bits, dtype=np.float64)
        ends = loo + band.low * (plugin_bits - loo), loo + band.high * (plugin_bits - loo)
        return np.minimum(*ends), np.maximum(*ends)
    scale = np.maximum(np.abs(plugin_bits), SCALE_FLOOR_BITS)
    return plugin_bits - band.high * scale, plugin_bits - band.low * scale


def _in_band_regime(table: pd.DataFrame) -> pd.Series:
    low, high = FRACTION_RANGE
    return (table.flag == BAND_FLAG) & (table.fraction >= low - 1e-9) & (table.fraction <= high + 1e-9)


def fit_bands(table: pd.DataFrame, kind: str = "relative") -> dict[float, BiasBand]:
    """One band per tau from calibration rows (columns tau, fraction, flag, plugin, loo, truth_bits,
    population): the 95% random-effects prediction interval (module docstring) of the offset (`kind`) of the
    `undersampled` samples with n/K in FRACTION_RANGE. A tau needs samples of at least two laws for a band."""
    rows = table[_in_band_regime(table)]
    bands = {}
    for tau, part in rows.groupby("tau"):
        offset = pd.Series(_offsets(part, kind), index=part.index)
        ok = np.isfinite(offset.to_numpy())
        low, high = prediction_interval(offset[ok].to_numpy(), part.population[ok].to_numpy())
        if math.isfinite(low):
            bands[float(tau)] = BiasBand(float(tau), low, high, int(ok.sum()), int(part.population[ok].nunique()),
                                         kind)
    return bands


def prediction_interval(values: np.ndarray, groups: np.ndarray, level: float = PREDICTION_LEVEL) -> tuple[float, float]:
    """The `level` prediction interval of one new value from a new group, under the one-way random-effects model
    value = grand mean + group effect + noise: grand mean (of the group means) +- t(P - 1) x
    sqrt(s_between^2 (1 + 1/P) + s_within^2), s_between the sd of the P group means, s_within the pooled sd
    within groups (0 where every group has one value). (NaN, NaN) with fewer than two groups."""
    from scipy.stats import t as student_t

    frame = pd.DataFrame(dict(v=np.asarray(values, dtype=np.float64), g=np.asarray(groups)))
    means = frame.groupby("g").v.mean()
    p = len(means)
    if p < 2:
        return math.nan, math.nan
    dof_within = len(frame) - p
    within = float(((frame.v - frame.g.map(means)) ** 2).sum() / dof_within) if dof_within > 0 else 0.0
    spread = math.sqrt(float(means.var(ddof=1)) * (1 + 1 / p) + within)
    half = float(student_t.ppf(0.5 + level / 2, p - 1)) * spread
    centre = float(means.mean())
    return centre - half, centre + half


def leave_one_population_out(table: pd.DataFrame, kind: str = "relative", name: str = "band") -> pd.DataFrame:
    """`<name>`, `<name>_low`, `<name>_high` for every row: the interval from the `kind` band fitted on the
    *other* populations at the row's tau (NaN where the row is not `undersampled` or no other population has a
    band), and `<name>_abstained` where no interval was given. The coverage of these intervals is the band's
    honest (out-of-population) coverage."""
    value = np.full(len(table), np.nan)
    low, high = value.copy(), value.copy()
    regime = (table.flag == BAND_FLAG).to_numpy()
    plugin = table.plugin.to_numpy(dtype=float)
    loo = table.loo.to_numpy(dtype=float) if "loo" in table else None
    ci = ((table.plugin_low.to_numpy(dtype=float), table.plugin_high.to_numpy(dtype=float))
          if "plugin_low" in table else None)
    for population in table.population.unique():
        mine = (table.population == population).to_numpy()
        bands = fit_bands(table[~mine], kind)
        for tau, band in bands.items():
            rows = mine & regime & np.isclose(table.tau.to_numpy(dtype=float), tau)
            lo, hi = band_interval(plugin[rows], band, None if loo is None else loo[rows],
                                   *((None, None) if ci is None else (ci[0][rows], ci[1][rows])))
            value[rows], low[rows], high[rows] = 0.5 * (lo + hi), lo, hi
    return table.assign(**{name: value, f"{name}_low": low, f"{name}_high": high,
                            f"{name}_abstained": np.isnan(low)})


def save_bands(bands: Mapping[tuple[str, float], BiasBand], path: Path, source: str,
               models: Sequence[str] = (), headline_taus: Sequence[float] = ()) -> None:
    """Write the bands as JSON with where they were measured (`source`: the calibration's command or table),
    the models whose states the real laws were (`models`: the bands hold for their readings, not another model's)
    and the taus at which the relative band was adopted (`headline_taus`: a sweep's headline IE carries it there,
    `headline_band`)."""
    from ie_ray import store

    store.write_json(Path(path), {"source": source, "scale_floor_bits": SCALE_FLOOR_BITS, "flag": BAND_FLAG,
                                  "fraction_range": list(FRACTION_RANGE), "models": list(models),
                                  "headline_taus": [float(t) for t in headline_taus],
                                  "bands": [asdict(b) for b in sorted(bands.values(), key=lambda b: (b.kind, b.tau))]})


def headline_band(path: Path, tau: float) -> tuple[BiasBand, list[str]] | None:
    """The relative band a sweep's headline IE carries at `tau`, with the models it was calibrated on; None when
    the file is missing, or the calibration did not adopt the band at this tau, or names no model (issue 24:
    adopted only where its leave-one-law-out coverage reached 90% on real and synthetic laws)."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    models = list(data.get("models", []))
    if not models or not any(math.isclose(float(t), tau) for t in data.get("headline_taus", [])):
        return None
    band = next((b for (k, t), b in _bands_of(data, path).items() if k == "relative" and math.isclose(t, tau)),
                None)
    return (band, models) if band is not None else None


def bands_models(path: Path) -> list[str]:
    """The models a bands file was calibrated on (empty for a file that names none, or no file)."""
    path = Path(path)
    return list(json.loads(path.read_text()).get("models", [])) if path.is_file() else []


def own_bands_files(paths: Sequence[Path]) -> dict[str, Path]:
    """model -> the bands file calibrated on that model's states, among `paths` (one calibration per model:
    SmolLM2's in results/validation/smoothed-real, Gemma 3's in smoothed-real-gemma3). Why per model: a band is a
    systematic-error budget measured on one model's geometry; another model's readings get their own, and a
    model no file names gets none unless the caller chooses one (`ie-ray brackets --bands FILE`). Two files that
    claim one model are refused: which calibration holds is the user's call, not the glob order's."""
    owner: dict[str, Path] = {}
    for path in paths:
        for model in bands_models(path):
            if model in owner:
                raise ValueError(f"{owner[model]} and {path} both hold bias bands calibrated on {model}: keep one "
                                 f"(or pass the one to use with --bands)")
            owner[model] = Path(path)
    return owner


def load_bands(path: Path) -> dict[tuple[str, float], BiasBand]:
    """The bands `save_bands` wrote, or a clear error naming the file and how to make it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `ie-ray validate --smoothed --real ...`, which writes the "
                                "bias bands beside its calibration table")
    return _bands_of(json.loads(path.read_text()), path)


def _bands_of(data: dict, path: Path) -> dict[tuple[str, float], BiasBand]:
    """The bands of a parsed bands file, refused when they were fitted with another scale floor."""
    if not math.isclose(float(data.get("scale_floor_bits", SCALE_FLOOR_BITS)), SCALE_FLOOR_BITS):
        raise ValueError(f"{path} was fitted with a scale floor of {data['scale_floor_bits']} bits, this code uses "
                         f"{SCALE_FLOOR_BITS}: refit it with `ie-ray validate --smoothed --real ...`")
    return {(b.get("kind", "relative"), float(b["tau"])): BiasBand(**b) for b in data["bands"]}
