"""The bracket around IE_sigma: its plug-in reading and its leave-one-out reading, side by side.

Why this exists: where the prefix law has far more atoms than the sample has windows (long prefixes at
10,000 windows), the smoothed plug-in over-reads and the leave-one-out reading under-reads; the validation
against exact values found the truth between the two (`docs/readings.md`, "Undersampled laws"). Each smoothed
estimate stores both (`mi_bits`, `loo_bits`) and is flagged `undersampled` when they part, but a flag per row
does not say whether a *trend* survives: IE growing from token 3 to token 8 in the plug-in while the
leave-one-out reading falls is a trend the sample cannot decide. This module assembles IE from each reading with
the one IE formula (`ie_ray.ie.information_emergence`) and writes both, so a claim can be checked against the
lower bracket as well as the headline.

With the bias bands of the calibration on laws of known truth (`ie_ray.bias_band`, written by
`ie-ray validate --smoothed --real` to results/validation/smoothed-real/bias_bands.json), each row also gets the
calibrated interval of IE (`ie_band_low`, `ie_band_high`, and `ie_bandb_*` for the bracket-position band): every
MI reading behind it as an interval (its calibrated band where it is `undersampled`, its own 95% interval where
`ok`, none otherwise), IE's low end = the macro low end minus the mean of the micro high ends, and its high end the
other way round. NaN where any reading behind the row has no interval (it is still moving with the sample size).

Each model's rows take the bands calibrated on that model's states (every committed calibration,
`results/validation/smoothed-real*/bias_bands.json`, names its models: SmolLM2's in smoothed-real, Gemma 3's in
smoothed-real-gemma3). A model no calibration names takes SmolLM2's as an assumption, and the column
`band_calibrated_on` says whose band a row carries, so an assumed band is never mistaken for a measured one.
`--bands FILE` applies one file to every model instead.

    ie-ray brackets RUN_DIR [--tau 0.25] [--bands FILE]     # writes RUN_DIR/ie_brackets.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ie_ray.bias_band import (
    BAND_FLAG,
    BiasBand,
    band_interval,
    bands_models,
    headline_band,
    load_bands,
    own_bands_files,
)
from ie_ray.ie import information_emergence

__all__ = ["committed_bands_files", "ie_brackets", "ie_brackets_by_model", "reading_intervals",
           "with_calibrated_interval", "write_brackets"]

KEYS = ["model", "corpus", "shots", "layer", "position"]
#: Where `ie-ray validate --smoothed --real` writes the bands (relative to the repository root, the usual cwd).
DEFAULT_BANDS = Path("results/validation/smoothed-real/bias_bands.json")
#: Every calibration's bands file (relative to the repository root): one directory per model calibrated.
CALIBRATIONS = "results/validation/smoothed-real*/bias_bands.json"
#: Column prefix of IE's calibrated interval per band kind.
BAND_COLUMNS = {"relative": "ie_band", "bracket": "ie_bandb"}


def reading_intervals(smoothed: pd.DataFrame, band: BiasBand) -> tuple[np.ndarray, np.ndarray]:
    """Per smoothed reading: its calibrated interval where flagged `undersampled` (the band with its own 95%
    interval), its own 95% interval where `ok`, its value where `constant` (exact), NaN otherwise (a reading still
    moving with the sample size, or imprecise)."""
    plugin = smoothed.mi_bits.to_numpy(dtype=float)
    nan = np.full(len(smoothed), np.nan)
    ci_low = smoothed.ci_low.to_numpy(dtype=float) if "ci_low" in smoothed else nan
    ci_high = smoothed.ci_high.to_numpy(dtype=float) if "ci_high" in smoothed else nan
    low, high = nan.copy(), nan.copy()
    ok = (smoothed.flag == "ok").to_numpy()
    low[ok], high[ok] = ci_low[ok], ci_high[ok]
    constant = (smoothed.flag == "constant").to_numpy()  # a state that never varies: its MI is exactly its value
    low[constant], high[constant] = plugin[constant], plugin[constant]
    under = (smoothed.flag == BAND_FLAG).to_numpy()
    lo, hi = band_interval(plugin[under], band, smoothed.loo_bits.to_numpy(dtype=float)[under], ci_low[under],
                           ci_high[under])
    low[under], high[under] = lo, hi
    return low, high


def _ie_band(smoothed: pd.DataFrame, band: BiasBand, prefix: str) -> pd.DataFrame:
    """IE's calibrated interval: macro low - mean micro high, macro high - mean micro low (one IE formula)."""
    low, high = reading_intervals(smoothed, band)
    macro = (smoothed.level == "macro").to_numpy()
    ends = {}
    for end, (macro_end, micro_end) in {"low": (low, high), "high": (high, low)}.items():
        values = np.where(macro, macro_end, micro_end)
        frame = information_emergence(smoothed.assign(mi_bits=values, bootstrap_bits=[np.zeros(0)] * len(values)))
        ends[end] = frame.set_index(KEYS).ie_bits.rename(f"{prefix}_{end}")
    return pd.concat(ends.values(), axis=1).reset_index()


def ie_brackets(mi: pd.DataFrame, tau: float,
                bands: dict[tuple[str, float], BiasBand] | None = None) -> pd.DataFrame:
    """Per (model, corpus, shots, layer, position): IE from the plug-in (`ie_plugin_bits`) and from the
    leave-one-out readings (`ie_loo_bits`) of the smoothed MI at `tau`, the macro readings behind them, and
    IE's calibrated interval per band kind where `bands` has one at this tau."""
    smoothed = mi[(mi.reading == "smoothed") & np.isclose(mi.tau.astype(float), tau)]
    if smoothed.empty:
        taus = sorted(mi.loc[mi.reading == "smoothed", "tau"].dropna().unique().tolist())
        raise ValueError(f"no smoothed readings at tau = {tau} in this MI table; it has taus {taus}")
    plugin = information_emergence(smoothed)[KEYS + ["ie_bits"]].rename(columns={"ie_bits": "ie_plugin_bits"})
    estimated = smoothed[smoothed.flag != "constant"]
    if len(estimated) and estimated.loo_bits.isna().all():
        raise ValueError(f"tau = {tau} was read without its leave-one-out reading (a secondary tau of the lean pass); "
                         f"add it to the config's smoothed.reported_taus and rerun to bracket it")
    loo = information_emergence(smoothed.assign(mi_bits=smoothed.loo_bits))[KEYS + ["ie_bits"]]
    loo = loo.rename(columns={"ie_bits": "ie_loo_bits"})
    macro = smoothed[smoothed.level == "macro"].groupby(KEYS, as_index=False).agg(
        macro_plugin_bits=("mi_bits", "mean"), macro_loo_bits=("loo_bits", "mean"), macro_flag=("flag", "first"))
    table = plugin.merge(loo, on=KEYS).merge(macro, on=KEYS, how="left")
    table["gap_bits"] = table.ie_plugin_bits - table.ie_loo_bits
    for (kind, band_tau), band in (bands or {}).items():
        if np.isclose(band_tau, tau):
            table = table.merge(_ie_band(smoothed, band, BAND_COLUMNS[kind]), on=KEYS, how="left")
    return table.sort_values(KEYS).reset_index(drop=True)


def committed_bands_files() -> list[Path]:
    """The repository's calibrations (`CALIBRATIONS`), each a bands file naming the models it was measured on."""
    from ie_ray import store

    return sorted(store.REPO_ROOT.glob(CALIBRATIONS))


def ie_brackets_by_model(mi: pd.DataFrame, tau: float, bands_path: Path | None = None) -> pd.DataFrame:
    """`ie_brackets` with each model's own bands: the committed calibration that names the model, else SmolLM2's
    (`DEFAULT_BANDS`) as an assumption; with `bands_path`, that one file for every model (no band columns when
    it does not exist). `band_calibrated_on` names the models the applied bands were measured on."""
    from ie_ray import store

    own = own_bands_files(committed_bands_files()) if bands_path is None else {}
    fallback = Path(bands_path) if bands_path is not None else store.REPO_ROOT / DEFAULT_BANDS
    parts = []
    for model, rows in mi.groupby("model", sort=True):
        path = own.get(str(model), fallback)
        bands = load_bands(path) if path.is_file() else None
        table = ie_brackets(rows, tau, bands)
        if bands:
            table["band_calibrated_on"] = ",".join(bands_models(path)) or path.name
        parts.append(table)
    return pd.concat(parts, ignore_index=True).sort_values(KEYS).reset_index(drop=True)


def with_calibrated_interval(ie: pd.DataFrame, mi: pd.DataFrame, tau: float,
                             bands_path: Path | None = None) -> pd.DataFrame:
    """The IE table with the headline's calibrated interval, `ie_sigma_cal_low` / `ie_sigma_cal_high`, where a
    calibration adopted a band at the headline tau (issue 24: the headline row carries it; the bracket stays in
    `ie-ray brackets`' columns). Each model's rows get the band calibrated on its own states; a model no
    calibration names stays NaN (its laws were not measured: calibrate on its kept states first). Unchanged (no
    columns) when no band is adopted at this tau or there is no bands file.

    Default: every committed calibration (`committed_bands_files`); `bands_path`: that one file only."""
    paths = committed_bands_files() if bands_path is None else [Path(bands_path)]
    own_bands_files(paths)  # two calibrations of one model are refused before anything is read
    adopted = [found for found in (headline_band(path, tau) for path in paths) if found is not None]
    if not adopted:
        return ie
    smoothed = mi[(mi.reading == "smoothed") & np.isclose(mi.tau.astype(float), tau)]
    columns = ["ie_sigma_cal_low", "ie_sigma_cal_high"]
    parts = [_ie_band(mine, band, "ie_sigma_cal") for band, models in adopted
             if not (mine := smoothed[smoothed.model.isin(models)]).empty]
    if not parts:
        return ie.assign(**{c: np.nan for c in columns})
    calibrated = pd.concat(parts, ignore_index=True)
    return ie.drop(columns=columns, errors="ignore").merge(calibrated, on=KEYS, how="left")


def write_brackets(run_dir: Path, tau: float, bands_path: Path | None = None) -> pd.DataFrame:
    """ie_brackets of a run, written to RUN_DIR/ie_brackets.csv: each model with its own calibration's bands
    (`ie_brackets_by_model`), or with the file at `bands_path` for every model (none when it does not exist)."""
    from ie_ray import store

    run_dir = Path(run_dir)
    table = ie_brackets_by_model(pd.read_parquet(run_dir / "mi.parquet"), tau, bands_path)
    store.write_text(run_dir / "ie_brackets.csv", table.to_csv(index=False, float_format="%.4f"))
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ie-ray brackets` options (kept here so cli.py only wires the subcommand)."""
    parser.add_argument("run_dir", help="a finished sweep's run directory (holds mi.parquet)")
    parser.add_argument("--tau", type=float, default=0.25, help="the noise fraction to bracket (the headline's)")
    parser.add_argument("--bands", type=Path, default=None,
                        help="one bias-bands file for every model (default: each model's own calibration among "
                             f"{CALIBRATIONS}, SmolLM2's for a model none names, said in `band_calibrated_on`); "
                             "the calibrated interval of IE is added per band kind")


def main_from_args(args: argparse.Namespace) -> int:
    if args.bands is not None and not args.bands.is_file():
        raise SystemExit(f"--bands {args.bands}: no such file (ie-ray validate --smoothed --real writes it)")
    table = write_brackets(Path(args.run_dir), args.tau, args.bands)
    means = table.groupby(["model", "corpus", "shots", "position"])[["ie_plugin_bits", "ie_loo_bits"]].mean()
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print("mean over the analysed blocks (bits):")
        print(means.round(2).to_string())
    if "band_calibrated_on" in table:
        print()
        for model, owners in table.groupby("model").band_calibrated_on.first().items():
            measured = model in str(owners).split(",")
            print(f"{model}: bias bands calibrated on {owners}"
                  + ("" if measured else " (an assumption: no calibration on this model's states)"))
    print(f"\nwrote {Path(args.run_dir) / 'ie_brackets.csv'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ie_ray.brackets`, the older spelling of `ie-ray brackets`."""
    parser = argparse.ArgumentParser(prog="ie-ray brackets", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
