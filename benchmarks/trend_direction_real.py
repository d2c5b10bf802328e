"""Does a trend rule favour one direction? Issue 24, item 5, on laws built from real block states.

    python benchmarks/trend_direction_real.py [--calibration results/validation/smoothed-real]

Why: the reports counted a trend only when both ends of the bracket [leave-one-out, plug-in] showed it. The
leave-one-out end falls as prefixes become isolated, whatever the truth does, so that rule may confirm falls
easily and rises hardly. The calibration (`ie-ray validate --smoothed --real`) holds laws of known truth at
several positions of one block of one run: a pair (earlier position, later position) is a prefix that grows, and
its truth rises (natural text, tokens 5 -> 8) or falls (ICL, shot 6 -> shot 12). Each (n/K, seed) sample of the
two laws is read by three rules:

- `bracket`: rises when the plug-in and the leave-one-out reading both rise, falls when both fall (signs only,
  as the reports read it), else undetermined;
- `plugin_ci`: the plug-in's 95% intervals disjoint;
- `band`: the calibrated intervals (`ie_ray.bias_band`, relative band plus the reading's interval) disjoint, the
  band fitted on the calibration's *other* laws (neither of the pair), as a new run would use it.

Per rule and true direction: the share of samples read in the right direction, the wrong one, or undetermined.
Writes trend_direction.{csv,md} beside the calibration.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ie_ray.bias_band import BAND_FLAG, band_interval, fit_bands  # noqa: E402

#: A pair's truth must move by more than this (bits) to count as a rise or a fall.
MIN_CHANGE_BITS = 0.1
TAU = 0.25


def _cell(population: str) -> tuple[str, int, int] | None:
    """(run, block, position) of a real population label `RUN block B position P`; None for a synthetic law."""
    parts = population.split()
    if len(parts) != 5 or parts[1] != "block":
        return None
    return parts[0], int(parts[2]), int(parts[4])


def _decide(first: tuple[float, float], second: tuple[float, float]) -> str:
    if not np.all(np.isfinite(first + second)):
        return "no interval"
    return "rises" if second[0] > first[1] else "falls" if second[1] < first[0] else "undetermined"


def pair_decisions(table: pd.DataFrame, tau: float = TAU) -> pd.DataFrame:
    """Every (earlier, later) pair of real laws of one run and block, matched by n/K index and seed."""
    table = table[np.isclose(table.tau, tau)].copy()
    table["cell"] = table.population.map(_cell)
    table["fraction_rank"] = table.groupby("population").fraction.rank(method="dense")
    real = table[table.cell.notna()]
    rows = []
    for (run, block), group in real.groupby([real.cell.str[0], real.cell.str[1]]):
        positions = sorted(group.cell.str[2].unique())
        for i, early in enumerate(positions):
            for late in positions[i + 1:]:
                a = group[group.cell.str[2] == early]
                b = group[group.cell.str[2] == late]
                pair = {a.population.iloc[0], b.population.iloc[0]}
                bands = fit_bands(table[~table.population.isin(pair)])
                band = bands.get(float(tau))
                merged = a.merge(b, on=["fraction_rank", "seed"], suffixes=("_a", "_b"))
                for r in merged.itertuples():
                    change = r.truth_bits_b - r.truth_bits_a
                    truth = "rises" if change > MIN_CHANGE_BITS else "falls" if change < -MIN_CHANGE_BITS else "flat"
                    up = (r.plugin_b > r.plugin_a, r.loo_b > r.loo_a)
                    bracket = "rises" if all(up) else "falls" if not any(up) else "undetermined"
                    ci = _decide((r.plugin_low_a, r.plugin_high_a), (r.plugin_low_b, r.plugin_high_b))

                    def interval(side: str) -> tuple[float, float]:
                        flag, plugin = getattr(r, f"flag_{side}"), getattr(r, f"plugin_{side}")
                        low, high = getattr(r, f"plugin_low_{side}"), getattr(r, f"plugin_high_{side}")
                        if flag == "ok":
                            return low, high
                        if flag != BAND_FLAG or band is None:
                            return np.nan, np.nan
                        lo, hi = band_interval(plugin, band, ci_low=low, ci_high=high)
                        return float(lo), float(hi)

                    rows.append(dict(run=run, block=block, positions=f"{early} -> {late}",
                                     fraction_a=r.fraction_a, seed=r.seed, truth_a=r.truth_bits_a,
                                     truth_b=r.truth_bits_b, truth=truth, bracket=bracket, plugin_ci=ci,
                                     band=_decide(interval("a"), interval("b"))))
    return pd.DataFrame(rows)


def summary(decisions: pd.DataFrame) -> pd.DataFrame:
    """Per rule and true direction: share right, wrong, undetermined (or without an interval)."""
    rows = []
    for rule in ("bracket", "plugin_ci", "band"):
        for truth, part in decisions.groupby("truth"):
            said = part[rule]
            wrong = {"rises": "falls", "falls": "rises", "flat": None}[truth]
            rows.append(dict(rule=rule, truth=truth, samples=len(part),
                             right=float((said == truth).mean()) if truth != "flat" else float("nan"),
                             wrong=float((said == wrong).mean()) if wrong else float((said != "undetermined").mean()),
                             undetermined=float(said.isin(["undetermined", "no interval"]).mean())))
    return pd.DataFrame(rows)


def table_from_parts(calibration: Path) -> pd.DataFrame:
    """The calibration's rows from its finished parts (`parts/<law>/n*.csv` and `truth.csv`), for a calibration
    still running or stopped before its report."""
    frames = []
    for law in sorted((calibration / "parts").iterdir()):
        if (law / "truth.csv").is_file() and any(law.glob("n*.csv")):
            samples = pd.concat([pd.read_csv(p) for p in sorted(law.glob("n*.csv"))], ignore_index=True)
            frames.append(samples.merge(pd.read_csv(law / "truth.csv"), on="tau"))
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, default=Path("results/validation/smoothed-real"))
    parser.add_argument("--from-parts", action="store_true",
                        help="read the finished parts instead of calibration.parquet (a calibration still running)")
    args = parser.parse_args(argv)
    table = table_from_parts(args.calibration) if args.from_parts else pd.read_parquet(
        args.calibration / "calibration.parquet")
    decisions = pair_decisions(table)
    if decisions.empty:
        raise SystemExit(f"{args.calibration}: no two real laws of one run and block; add cells to the calibration")
    decisions.to_csv(args.calibration / "trend_direction.csv", index=False, float_format="%.4f")
    table_md = summary(decisions).to_markdown(index=False, floatfmt=".2f")
    pairs = decisions.groupby(["run", "block", "positions"]).agg(truth_a=("truth_a", "first"),
                                                                 truth_b=("truth_b", "first"),
                                                                 samples=("seed", "size")).reset_index()
    text = ["# Does a trend rule favour one direction? (issue 24, item 5)", "",
            f"`python benchmarks/trend_direction_real.py --calibration {args.calibration}` (method in its docstring), "
            f"tau {TAU}. Pairs of real laws of one run and block, an earlier and a later position (truth in bits):", "",
            pairs.to_markdown(index=False, floatfmt=".2f"), "",
            "Share of samples each rule reads in the true direction (`right`), the opposite one (`wrong`; for a "
            "flat truth, any direction), or not at all:", "", table_md, ""]
    (args.calibration / "trend_direction.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
