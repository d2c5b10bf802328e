"""The bracket around IE_sigma: its plug-in reading and its leave-one-out reading, side by side.

Why this exists: where the prefix law has far more atoms than the sample has windows (long prefixes at
10,000 windows), the smoothed plug-in over-reads and the leave-one-out reading under-reads; the validation
against exact values found the truth between the two (`docs/readings.md`, "Undersampled laws"). Each smoothed
estimate stores both (`mi_bits`, `loo_bits`) and is flagged `undersampled` when they part, but a flag per row
does not say whether a *trend* survives: IE growing from token 3 to token 8 in the plug-in while the
leave-one-out reading falls is a trend the sample cannot decide. This module assembles IE from each reading with
the one IE formula (`ie_ray.ie.information_emergence`) and writes both, so a claim can be checked against the
lower bracket as well as the headline.

    ie-ray brackets RUN_DIR [--tau 0.25]     # writes RUN_DIR/ie_brackets.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ie_ray.ie import information_emergence

__all__ = ["ie_brackets", "write_brackets"]

KEYS = ["model", "corpus", "shots", "layer", "position"]


def ie_brackets(mi: pd.DataFrame, tau: float) -> pd.DataFrame:
    """Per (model, corpus, shots, layer, position): IE from the plug-in (`ie_plugin_bits`) and from the
    leave-one-out readings (`ie_loo_bits`) of the smoothed MI at `tau`, and the macro readings behind them."""
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
    return table.sort_values(KEYS).reset_index(drop=True)


def write_brackets(run_dir: Path, tau: float) -> pd.DataFrame:
    from ie_ray import store

    run_dir = Path(run_dir)
    table = ie_brackets(pd.read_parquet(run_dir / "mi.parquet"), tau)
    store.write_text(run_dir / "ie_brackets.csv", table.to_csv(index=False, float_format="%.4f"))
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ie-ray brackets` options (kept here so cli.py only wires the subcommand)."""
    parser.add_argument("run_dir", help="a finished sweep's run directory (holds mi.parquet)")
    parser.add_argument("--tau", type=float, default=0.25, help="the noise fraction to bracket (the headline's)")


def main_from_args(args: argparse.Namespace) -> int:
    table = write_brackets(Path(args.run_dir), args.tau)
    means = table.groupby(["model", "corpus", "shots", "position"])[["ie_plugin_bits", "ie_loo_bits"]].mean()
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print("mean over the analysed blocks (bits):")
        print(means.round(2).to_string())
    print(f"\nwrote {Path(args.run_dir) / 'ie_brackets.csv'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ie_ray.brackets`, the older spelling of `ie-ray brackets`."""
    parser = argparse.ArgumentParser(prog="ie-ray brackets", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
