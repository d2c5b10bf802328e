"""The default job before and after a change of the reducer: every smoothed row within Monte Carlo error, every
flag change listed, and the wall time of each stage side by side.

    # the default job at a commit and at the working tree, each with its own cache:
    git worktree add /tmp/old-ie <commit>
    (cd /tmp/old-ie && PYTHONPATH=. IE_RAY_CACHE_DIR=/tmp/old-cache python jobs/sweep.py --out /tmp/smoke-old)
    IE_RAY_CACHE_DIR=/tmp/new-cache python jobs/sweep.py --out /tmp/smoke-new
    python benchmarks/default_job_before_after.py /tmp/smoke-old /tmp/smoke-new --label-before <commit>
    # any two runs of one config, e.g. the 20k ICL task before and after a reducer change:
    python benchmarks/default_job_before_after.py OLD_RUN NEW_RUN --title "The 20k ICL task" --stem icl20k_before_after

Within Monte Carlo error: |after - before| <= 4 sqrt(se_before^2 + se_after^2) + 0.01 bit, with se each row's own
Monte Carlo standard error (the rows' sampling error is shared: same states, same samples; only the draws
differ). Writes benchmarks/results/default_job_before_after.{md,csv}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["model", "corpus", "shots", "layer", "position", "level", "seed", "tau"]
OUT = Path(__file__).resolve().parent / "results"
ALLOWANCE_BITS = 0.01


def compare(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    cols = KEYS + ["mi_bits", "mc_se_bits", "flag", "loo_bits", "half_sample_bits"]
    b = before[before.reading == "smoothed"][cols]
    a = after[after.reading == "smoothed"][cols]
    both = b.merge(a, on=KEYS, suffixes=("_before", "_after"), how="outer", indicator=True)
    both["diff_bits"] = both.mi_bits_after - both.mi_bits_before
    se = np.hypot(both.mc_se_bits_before.fillna(0), both.mc_se_bits_after.fillna(0))
    both["tolerance_bits"] = 4 * se + ALLOWANCE_BITS
    both["within"] = both.diff_bits.abs() <= both.tolerance_bits
    return both


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--label-before", default="before")
    parser.add_argument("--label-after", default="after")
    parser.add_argument("--title", default="The default job", help="what the two runs are (any config's runs)")
    parser.add_argument("--stem", default="default_job_before_after", help="output file stem in results/")
    args = parser.parse_args(argv)
    table = compare(pd.read_parquet(args.before / "mi.parquet"), pd.read_parquet(args.after / "mi.parquet"))
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / f"{args.stem}.csv", index=False, float_format="%.5f")
    times = {side: json.loads((path / "manifest.json").read_text())["timings_s"]
             for side, path in (("before", args.before), ("after", args.after))}
    matched = table[table._merge == "both"]
    lines = [f"# {args.title} before ({args.label_before}) and after ({args.label_after})", "",
             f"Smoothed rows: {len(matched)} matched, {int((table._merge != 'both').sum())} unmatched; "
             f"{int(matched.within.sum())} within Monte Carlo error (4 combined standard errors + "
             f"{ALLOWANCE_BITS} bit), {int((~matched.within).sum())} outside.", "",
             f"Largest |difference|: {matched.diff_bits.abs().max():.4f} bit; median "
             f"{matched.diff_bits.abs().median():.4f} bit; median |difference| / tolerance "
             f"{(matched.diff_bits.abs() / matched.tolerance_bits).median():.2f}.", ""]
    changed = matched[matched.flag_before != matched.flag_after]
    lines += [f"Flags changed: {len(changed)} of {len(matched)}.", ""]
    if len(changed):
        lines += ["Why: a flag compares a gap with the tolerance max(0.05, 0.05 |I|) (`convergence_flag`): N/2 gap = "
                  "|I(N) - I(N/2)|, LOO gap = |I(N) - I_loo|. The N/2 reading is a random half of the samples and "
                  "the draws are new, so a gap within a few Monte Carlo errors of the tolerance can land on either "
                  "side of it; a changed flag with both gaps near the tolerance is that, not a change of the law.", "",
                  "| layer | position | level | tau | before | after | mi before | mi after | N/2 gap before | "
                  "N/2 gap after | LOO gap before | LOO gap after | tolerance |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in changed.itertuples():
            tol = max(0.05, 0.05 * abs(r.mi_bits_after))
            lines.append(
                f"| {r.layer} | {r.position} | {r.level} | {r.tau:g} | {r.flag_before} | {r.flag_after} | "
                f"{r.mi_bits_before:.3f} | {r.mi_bits_after:.3f} | "
                f"{abs(r.mi_bits_before - r.half_sample_bits_before):.3f} | "
                f"{abs(r.mi_bits_after - r.half_sample_bits_after):.3f} | "
                f"{abs(r.mi_bits_before - r.loo_bits_before):.3f} | {abs(r.mi_bits_after - r.loo_bits_after):.3f} | "
                f"{tol:.3f} |")
        lines.append("")
    outside = matched[~matched.within]
    if len(outside):
        lines += ["Outside the tolerance:", "", "| layer | position | level | tau | before | after | tolerance |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.layer} | {r.position} | {r.level} | {r.tau:g} | {r.mi_bits_before:.4f} | "
                  f"{r.mi_bits_after:.4f} | {r.tolerance_bits:.4f} |" for r in outside.itertuples()]
        lines.append("")
    frames = {side: pd.read_parquet(path / "mi.parquet") for side, path in (("before", args.before),
                                                                            ("after", args.after))}
    limit = [f[f.reading == "entropy_limit"].set_index(KEYS).sort_index()[["mi_bits", "flag"]] for f in frames.values()]
    if len(limit[0]) or len(limit[1]):
        same = limit[0].equals(limit[1])
        lines += [f"Entropy-limit rows (exact counts): {len(limit[0])} before, {len(limit[1])} after, "
                  f"{'all equal' if same else 'NOT all equal'}.", ""]
    busy = {side: frame.groupby("reading").wall_s.sum() for side, frame in frames.items()}
    lines += ["Seconds inside the reading tasks (sum of the rows' `wall_s`: the reducer's own work, whatever else ran "
              "on the machine's other core; the entropy limit records none):", "",
              "| reading | before (s) | after (s) | before / after |", "|---|---|---|---|"]
    for reading in sorted(set(busy["before"].index) | set(busy["after"].index)):
        b, a = busy["before"].get(reading, np.nan), busy["after"].get(reading, np.nan)
        lines.append(f"| {reading} | {b:.1f} | {a:.1f} | {b / a if a else np.nan:.2f} |")
    lines += ["", "Wall time of each stage (each run shared the 2 cores with other work: see the commit message):", ""]
    stages = sorted(set(times["before"]) | set(times["after"]))
    lines += ["| stage | before (s) | after (s) | before / after |", "|---|---|---|---|"]
    for stage in stages:
        b, a = times["before"].get(stage, np.nan), times["after"].get(stage, np.nan)
        lines.append(f"| {stage} | {b:.1f} | {a:.1f} | {b / a:.2f} |")
    total_b, total_a = sum(times["before"].values()), sum(times["after"].values())
    lines += [f"| **all stages** | {total_b:.1f} | {total_a:.1f} | {total_b / total_a:.2f} |", ""]
    text = "\n".join(lines)
    (OUT / f"{args.stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
