"""The Gaussian baseline (`ie_ray/estimators/gaussian.py`): seconds per estimate, old against new in one run, its
accuracy on the Gaussian family at 1-768 dims, and the measurement behind its shrinkage rule.

(a) Seconds: one `estimate(x, y, "gaussian")` with the package defaults on correlated Gaussians of 768 + 768 dims
    (4 bits), by the code before this change (Ledoit-Wolf closed form, 200-replicate delete-d jackknife: every
    replicate rebuilds the covariance; loaded from git at OLD_COMMIT) at N = --old-n (default 5,000; at 50,000 it
    did not finish in 13 minutes), and by the current code at the same N and at 50,000.
(b) Accuracy: the Gaussian family (`benchmark.correlated_gaussians`, truth in closed form) at d = 1, 64, 256, 768
    per side and N from 10 d up, all N rows in the formula, over several seeds: the corrected value's bias (mean
    over seeds) and spread, its standard error and how often its interval covered the truth, the uncorrected
    plug-in, and Ledoit-Wolf on the first seed's rows.
(c) The rule: RMSE over seeds of the corrected form and of Ledoit-Wolf at N / (dx + dy) = 1.25-3, dims 8, 32
    and 128 per side, MI 0-4 bits; the constant UNSHRUNK_MIN_ROWS_PER_DIM is where the corrected form stops
    losing.

Each part writes benchmarks/results/gaussian_<part>.{json,md}.

    PYTHONPATH=. python benchmarks/gaussian.py                   # all three (the old code alone: ~13 min here)
    PYTHONPATH=. python benchmarks/gaussian.py --parts accuracy  # one part (accuracy: ~4 min, rule: ~1 min)
    PYTHONPATH=. python benchmarks/gaussian.py --quick           # smoke check: small sizes, seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402

from ie_ray.estimators import estimate
from ie_ray.estimators.benchmark import correlated_gaussians, independent_gaussians
from ie_ray.estimators.gaussian import (
    UNSHRUNK_MIN_ROWS_PER_DIM,
    fit_gaussian,
    gaussian_mi_bits,
    standard_error_bits,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The last commit with the Ledoit-Wolf + jackknife estimator.
OLD_COMMIT = "86e0a67"
SPEED_DIM, SPEED_MI = 768, 4.0
#: (d, N, MI bits, seeds) of the accuracy table: N = 10 d and more.
ACCURACY_GRID = [
    (1, 100, 8.0, 10), (1, 1000, 8.0, 10), (1, 10_000, 8.0, 10),
    (64, 640, 1.0, 10), (64, 640, 4.0, 10), (64, 640, 8.0, 10), (64, 6400, 4.0, 10),
    (256, 2560, 1.0, 10), (256, 2560, 4.0, 10), (256, 25_600, 4.0, 5),
    (768, 7680, 1.0, 3), (768, 7680, 4.0, 3), (768, 20_000, 1.0, 3), (768, 20_000, 4.0, 3), (768, 50_000, 4.0, 2),
]
RULE_DIMS = {8: 30, 32: 30, 128: 10}  # dims per side: seeds
RULE_RATIOS = (1.25, 1.5, 2.0, 3.0)
RULE_MI = (0.0, 0.5, 1.0, 4.0)


def load_old_estimator():
    """`estimate_gaussian` as it was at OLD_COMMIT, imported from its source in git (it still runs against the
    current diagnostics, mine and result modules, which it imports)."""
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:ie_ray/estimators/gaussian.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "gaussian_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("gaussian_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.estimate_gaussian


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def speed(dim: int, old_n: int, new_ns: Sequence[int], log) -> list[dict]:
    old_estimate = load_old_estimator()
    rows = []
    for n in sorted({old_n, *new_ns}):
        x, y = correlated_gaussians(dim, SPEED_MI, n, seed=0)
        if n == old_n:
            log(f"(a) old code, N = {n} ...")
            r, s = timed(lambda: old_estimate(x, y))
            rows.append(dict(code=f"old ({OLD_COMMIT})", n=n, seconds=s, mi_bits=r.mi_bits, ci_low=r.ci_low,
                             ci_high=r.ci_high, form="ledoit_wolf + jackknife"))
        if n in new_ns:
            log(f"(a) new code, N = {n} ...")
            r, s = timed(lambda: estimate(x, y, "gaussian"))
            rows.append(dict(code="new", n=n, seconds=s, mi_bits=r.mi_bits, ci_low=r.ci_low, ci_high=r.ci_high,
                             form=r.form))
    return rows


def accuracy(grid: Sequence[tuple[int, int, float, int]], log) -> list[dict]:
    z = float(stats.norm.ppf(0.975))
    rows = []
    for d, n, mi, seeds in grid:
        log(f"(b) d = {d}, N = {n}, MI = {mi}, {seeds} seeds ...")
        values, ses, plugins, seconds = [], [], [], []
        for seed in range(seeds):
            x, y = correlated_gaussians(d, mi, n, seed=seed)
            fit, s = timed(lambda: fit_gaussian(x, y))
            values.append(fit.bits)
            ses.append(standard_error_bits(x, y, fit))
            plugins.append(fit.bits + fit.bias_bits)
            seconds.append(s)
            if seed == 0:
                form, lw = fit.form, gaussian_mi_bits(x, y, "ledoit_wolf")
        v, se = np.array(values), np.array(ses)
        rows.append(dict(d=d, n=n, true_bits=mi, seeds=seeds, form=form, mean_bits=float(v.mean()),
                         bias_rel=float(v.mean() - mi) / mi, sd_bits=float(v.std(ddof=1)),
                         mean_se_bits=float(se.mean()), worst_rel_error=float(np.abs(v - mi).max() / mi),
                         covered=int((np.abs(v - mi) <= z * se).sum()), plugin_mean_bits=float(np.mean(plugins)),
                         ledoit_wolf_bits_seed0=lw, fit_seconds=float(np.mean(seconds)), values=v.tolist()))
    return rows


def rule(dims: dict[int, int], log) -> list[dict]:
    rows = []
    for d, seeds in dims.items():
        for ratio in RULE_RATIOS:
            n = max(int(round(ratio * 2 * d)), 2 * d + 2)
            log(f"(c) d = {d}, N = {n} ...")
            for mi in RULE_MI:
                corrected, shrunk = [], []
                for seed in range(seeds):
                    x, y = correlated_gaussians(d, mi, n, seed) if mi else independent_gaussians(d, n, seed)
                    corrected.append(gaussian_mi_bits(x, y, 0.0))
                    shrunk.append(gaussian_mi_bits(x, y, "ledoit_wolf"))
                c, s = np.array(corrected), np.array(shrunk)
                rows.append(dict(d=d, ratio=ratio, n=n, true_bits=mi, seeds=seeds,
                                 corrected_mean=float(c.mean()), corrected_rmse=float(np.sqrt(((c - mi) ** 2).mean())),
                                 shrunk_mean=float(s.mean()), shrunk_rmse=float(np.sqrt(((s - mi) ** 2).mean()))))
    return rows


def header(res: dict, title: str) -> list[str]:
    return [f"# Gaussian baseline: {title}", "", f"Made by `{res['command']}` in {res['wall_s'] / 60:.1f} min.", "",
            machine_line(res["machine"]),
            f"- BLAS threads: OPENBLAS_NUM_THREADS={res.get('blas_threads') or 'unset (all cores)'}", ""]


def speed_markdown(res: dict) -> str:
    lines = header(res, "seconds per estimate, old vs new") + [
        f"`estimate(x, y, \"gaussian\")`, {res['speed_dim']} + {res['speed_dim']} dims, {SPEED_MI:g} bits, package "
        "defaults (20% held out, 200 replicates); old = the code at " + f"{res['old_commit']}, timed in the same run.",
        "",
        "| code | N | seconds | MI (bits) | 95% interval | form |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["speed"]:
        lines.append(f"| {r['code']} | {r['n']:,} | {r['seconds']:.1f} | {r['mi_bits']:.3f} | "
                     f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['form']} |")
    old = [r for r in res["speed"] if r["code"].startswith("old")]
    new_same = [r for r in res["speed"] if r["code"] == "new" and old and r["n"] == old[0]["n"]]
    if old and new_same:
        lines += ["", f"At N = {old[0]['n']:,}: old / new = {old[0]['seconds'] / new_same[0]['seconds']:.0f}x."]
    return "\n".join(lines) + "\n"


def accuracy_markdown(res: dict) -> str:
    lines = header(res, "accuracy on the Gaussian family") + [
        "All N rows in the formula (`fit_gaussian`, no held-out split); seeds 0..k-1 draw fresh data. bias = "
        "(mean over seeds - truth) / truth; sd = over seeds; se = the estimator's own standard error (mean); worst = "
        "largest |error| / truth of one seed; covered = seeds whose 95% interval held the truth; plug-in = the "
        "uncorrected value (mean); Ledoit-Wolf = the old default, on seed 0's rows.",
        "",
        "| d | N | N / d | true | seeds | mean | bias | sd | se | worst | covered | plug-in | Ledoit-Wolf | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["accuracy"]:
        lines.append(f"| {r['d']} | {r['n']:,} | {r['n'] / r['d']:.0f} | {r['true_bits']:g} | {r['seeds']} | "
                     f"{r['mean_bits']:.3f} | {100 * r['bias_rel']:+.1f}% | {r['sd_bits']:.3f} | "
                     f"{r['mean_se_bits']:.3f} | {100 * r['worst_rel_error']:.1f}% | {r['covered']}/{r['seeds']} | "
                     f"{r['plugin_mean_bits']:.2f} | {r['ledoit_wolf_bits_seed0']:.2f} | {r['fit_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def rule_markdown(res: dict) -> str:
    lines = header(res, "the shrinkage rule") + [
        f"RMSE (bits) over seeds of the corrected (unshrunk) form and of Ledoit-Wolf at N = ratio x (dx + dy); the "
        f"rule uses the corrected form from ratio {res['rule_constant']:g} up.",
        "",
        "| d per side | seeds | ratio | N | true | corrected mean | corrected RMSE | LW mean | LW RMSE | lower RMSE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rule"]:
        winner = "corrected" if r["corrected_rmse"] < r["shrunk_rmse"] else "Ledoit-Wolf"
        lines.append(f"| {r['d']} | {r['seeds']} | {r['ratio']:g} | {r['n']} | {r['true_bits']:g} | "
                     f"{r['corrected_mean']:.3f} | {r['corrected_rmse']:.3f} | {r['shrunk_mean']:.3f} | "
                     f"{r['shrunk_rmse']:.3f} | {winner} |")
    return "\n".join(lines) + "\n"


PARTS = {"speed": speed_markdown, "accuracy": accuracy_markdown, "rule": rule_markdown}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {list(PARTS)}")
    p.add_argument("--old-n", type=int, default=5000, help="N for the old code (it took >13 min at 50,000)")
    p.add_argument("--quick", action="store_true", help="smoke check: small sizes, seconds")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    dim = 32 if args.quick else SPEED_DIM
    for part in parts:
        start = time.perf_counter()
        machine = machine_info(threads=1)
        res = dict(machine=machine, old_commit=OLD_COMMIT, speed_dim=dim, rule_constant=UNSHRUNK_MIN_ROWS_PER_DIM,
                   blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"))
        if part == "speed":
            res["speed"] = speed(dim, 400, [400, 4000], log) if args.quick else speed(
                dim, args.old_n, [args.old_n, 50_000], log)
        elif part == "accuracy":
            res["accuracy"] = accuracy([(1, 100, 8.0, 3), (16, 160, 4.0, 3)] if args.quick else ACCURACY_GRID, log)
        else:
            res["rule"] = rule({8: 5} if args.quick else RULE_DIMS, log)
        machine["loadavg_at_end"] = list(os.getloadavg())
        res["wall_s"] = time.perf_counter() - start
        res["command"] = (f"python benchmarks/gaussian.py --parts {part}" + (" --quick" if args.quick else "")
                          + (f" --old-n {args.old_n}" if part == "speed" and args.old_n != 5000 else ""))
        write_outputs(args.out_dir / f"gaussian_{part}", res, PARTS[part](res))


if __name__ == "__main__":
    main()
