"""Is the smoothed-MI interval as wide as the estimate's sample-to-sample spread? Coverage on laws with known I_sigma.

    PYTHONPATH=. python benchmarks/smoothed_interval.py --label after              # the code on PYTHONPATH (~5 min)
    PYTHONPATH=/tmp/before python benchmarks/smoothed_interval.py --label before   # e.g. `git archive` of 850aeeb
    python benchmarks/smoothed_interval.py --report                               # the Markdown of both

What a user rerunning the whole experiment sees: each repeat is a fresh sample of N AND a fresh estimator seed
(other draws, other halves, other replicates). Per cell and reported value (the plug-in, correction "none"; the
extrapolated 2 I(N) - I(N/2), correction "extrapolate"): the standard deviation of the value over the repeats
(`sd`), the same for two estimator seeds on one sample (`mc_sd`, the Monte Carlo part: sd of the difference /
sqrt 2, from the first 50 repeats), the mean interval half-width ((high - low) / 2), their ratio
half-width / (1.96 sd) (1 for an interval as wide as the spread), and the coverage of the exact value and of the
centre (the mean of the repeats: what the interval can cover when the estimator's bias is not zero).

Laws. K-atom laws (`ie_ray.validate_smoothed.DiscreteResidualLaw`: x uniform over K standard-normal atoms in d
dims, y = x + tanh(Wx)): the sample has repeated states (atoms with counts, the estimator's atom path); the exact
I_sigma is the estimator run on the K atoms at the population scale with 20,000 stratified draws (standard error
<= 0.004 bit). Correlated Gaussians (rho per coordinate): every state distinct; exact value
-d/2 log2(1 - rho^2 / (1 + tau^2 d)^2), which the N-component plug-in misses by a kernel bias (hence the centre's
coverage). Cells are in the regime where the estimate is meant to be read (most repeats flagged `ok`); the
table gives the share flagged and the coverage among `ok` rows too.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "smoothed_interval"
#: (kind, d, K or rho, N, taus): the K-atom cells first (fast: the estimator runs on <= K atoms), then Gaussians.
#: scale "given": the law's population scale passed in, as the sweep passes each block's shared scale; "own": the
#: sample's own per-dimension scale (smoothed_mi's default), re-estimated on every sample.
CELLS: tuple[tuple[str, int, float, int, tuple[float, ...], str], ...] = (
    ("atoms", 16, 25, 2000, (0.25, 0.5, 1.0), "given"),
    ("atoms", 16, 200, 2000, (0.25, 0.5, 1.0), "given"),
    ("atoms", 64, 100, 1000, (0.25, 0.5, 1.0), "given"),
    ("atoms", 16, 1000, 2000, (0.5, 1.0), "given"),
    ("gauss", 2, 0.8, 300, (0.5,), "given"),
    ("gauss", 2, 0.8, 1000, (0.35, 0.5), "given"),
    ("gauss", 4, 0.6, 1000, (0.5, 1.0), "given"),
    ("atoms", 16, 200, 2000, (0.25, 0.5, 1.0), "own"),
    ("gauss", 2, 0.8, 300, (0.5,), "own"),
    ("gauss", 2, 0.8, 1000, (0.35, 0.5), "own"),
)
MC_REPEATS = 50  # repeats that also get a second estimator seed on the same sample


def _sample(kind: str, d: int, k: float, n: int, rep: int):
    from ie_ray.validate_smoothed import DiscreteResidualLaw

    if kind == "atoms":
        x, y, _ = DiscreteResidualLaw(d, int(k), seed=1).sample(n, seed=10_000 + rep)
        return x, y
    rng = np.random.default_rng(20_000 + rep)
    x = rng.standard_normal((n, d))
    return x, k * x + math.sqrt(1 - k * k) * rng.standard_normal((n, d))


def _exact(kind: str, d: int, k: float, taus: tuple[float, ...]) -> dict[float, float]:
    from ie_ray.validate_smoothed import DiscreteResidualLaw

    if kind == "atoms":
        ex = DiscreteResidualLaw(d, int(k), seed=1).exact(taus, n_draws=20_000, seed=5)
        return {t: ex.at(t).mi_bits for t in taus}
    return {t: -d / 2 * math.log2(1 - k * k / (1 + t * t * d) ** 2) for t in taus}


def _scales(kind: str, d: int, k: float, scale: str):
    from ie_ray.estimators.smoothed import Scale
    from ie_ray.validate_smoothed import DiscreteResidualLaw

    if scale == "own":
        return None, None
    if kind == "atoms":
        law = DiscreteResidualLaw(d, int(k), seed=1)
        return law.scale_x, law.scale_y
    unit = Scale(center=np.zeros(d), spread=np.ones(d))
    return unit, unit


def run_cell(kind: str, d: int, k: float, n: int, taus: tuple[float, ...], scale: str, repeats: int) -> list[dict]:
    from ie_ray.estimators.smoothed import SmoothedParams, smoothed_mi

    exact = _exact(kind, d, k, taus)
    sx, sy = _scales(kind, d, k, scale)
    rows = []
    for correction in ("none", "extrapolate"):
        params = SmoothedParams(tau=taus[0], taus=taus, reported_taus=taus, correction=correction)
        got = {t: dict(value=[], low=[], high=[], ok=[], mc=[]) for t in taus}
        start = time.perf_counter()
        for rep in range(repeats):
            x, y = _sample(kind, d, k, n, rep)
            first = smoothed_mi(x, y, params, seed=rep, scale_x=sx, scale_y=sy)
            second = smoothed_mi(x, y, params, seed=100_000 + rep, scale_x=sx, scale_y=sy) if rep < MC_REPEATS else None
            for t in taus:
                r = first.at(t)
                g = got[t]
                g["value"].append(r.mi_bits)
                g["low"].append(r.ci_low)
                g["high"].append(r.ci_high)
                g["ok"].append(r.flag == "ok")
                if second is not None:
                    g["mc"].append(r.mi_bits - second.at(t).mi_bits)
        seconds = (time.perf_counter() - start) / repeats
        for t in taus:
            g = {key: np.asarray(v) for key, v in got[t].items()}
            value, low, high, ok = g["value"], g["low"], g["high"], g["ok"].astype(bool)
            sd = float(np.std(value, ddof=1))
            half_width = float(np.mean(high - low) / 2)
            centre = float(value.mean())
            covers = (low <= exact[t]) & (exact[t] <= high)
            rows.append(dict(
                law=kind, scale=scale, d=d, k_or_rho=k, n=n, tau=t, correction=correction, repeats=repeats,
                exact_bits=exact[t], mean_bits=centre, bias_bits=centre - exact[t], sd_bits=sd,
                mc_sd_bits=float(np.std(g["mc"], ddof=1) / math.sqrt(2)), half_width_bits=half_width,
                width_ratio=half_width / (1.96 * sd), coverage=float(covers.mean()),
                coverage_centre=float(((low <= centre) & (centre <= high)).mean()),
                ok_share=float(ok.mean()), coverage_ok=float(covers[ok].mean()) if ok.any() else math.nan,
                seconds_per_estimate=seconds))
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    law = (f"{r['law']} d={r['d']} {'K' if r['law'] == 'atoms' else 'rho'}={r['k_or_rho']:g} N={r['n']}, "
           f"{r['scale']} scale")
    return (f"| {law} | {r['tau']:g} | {r['correction']} | {r['exact_bits']:.3f} | {r['bias_bits']:+.4f} | "
            f"{r['sd_bits']:.4f} | {r['mc_sd_bits']:.4f} | {r['half_width_bits']:.4f} | {r['width_ratio']:.2f} | "
            f"{r['coverage']:.3f} | {r['coverage_centre']:.3f} | {r['ok_share']:.2f} | {r['coverage_ok']:.3f} |")


HEADER = ("| law | tau | value | exact | bias | sd | mc_sd | half-width | half-width / 1.96 sd | coverage | "
          "coverage of centre | share ok | coverage (ok rows) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _machine() -> dict:
    import torch

    return dict(cpus=os.cpu_count(), load_average=os.getloadavg(), torch=torch.__version__,
                threads=torch.get_num_threads(), python=platform.python_version(),
                date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="after", help="results go to results/smoothed_interval_<label>.json")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="first two cells, 30 repeats (a smoke run)")
    ap.add_argument("--cells", default="", help="comma-separated cell indices (default: all)")
    ap.add_argument("--report", action="store_true", help="write results/smoothed_interval.md from the JSON files")
    args = ap.parse_args()
    if args.report:
        write_report()
        return
    import torch

    torch.set_num_threads(1)
    import ie_ray.estimators.smoothed as sm

    cells = CELLS[:2] if args.quick else CELLS
    if args.cells:
        cells = tuple(CELLS[int(i)] for i in args.cells.split(","))
    repeats = 30 if args.quick else args.repeats
    code = Path(sm.__file__).resolve()
    print(f"estimator: {code}\n{HEADER}", flush=True)
    start = time.perf_counter()
    rows = [row for cell in cells for row in run_cell(*cell, repeats)]
    out = dict(label=args.label, estimator=str(code), estimator_commit=_commit(code), rows=rows,
               machine=_machine(), wall_s=time.perf_counter() - start, command=" ".join(sys.argv))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}_{args.label}.json").write_text(json.dumps(out, indent=1))
    print(f"written {RESULTS / f'{NAME}_{args.label}.json'} in {out['wall_s']:.0f} s")


def _commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout (an export: see the command)"


def write_report() -> None:
    parts = []
    for label in ("before", "after"):
        path = RESULTS / f"{NAME}_{label}.json"
        if not path.exists():
            continue
        run = json.loads(path.read_text())
        rows = run["rows"]
        ratios = {c: [r["width_ratio"] for r in rows if r["correction"] == c] for c in ("none", "extrapolate")}
        covs = {c: [r["coverage"] for r in rows if r["correction"] == c] for c in ("none", "extrapolate")}
        summary = "; ".join(f"{'plug-in' if c == 'none' else 'extrapolated'}: half-width / 1.96 sd "
                            f"{min(ratios[c]):.2f}-{max(ratios[c]):.2f} (median {np.median(ratios[c]):.2f}), coverage "
                            f"{min(covs[c]):.3f}-{max(covs[c]):.3f} (median {np.median(covs[c]):.3f})"
                            for c in ratios if ratios[c])
        m = run["machine"]
        parts.append(f"## {label}\n\nEstimator {run['estimator_commit']}; {len(rows)} rows, {rows[0]['repeats']} "
                     f"repeats each; {run['wall_s'] / 60:.0f} min on {m['cpus']} CPUs (load {m['load_average'][0]:.0f}"
                     f"), torch {m['torch']} ({m['threads']} thread), {m['date']}.\n\n**{summary}.**\n\n{HEADER}\n"
                     + "\n".join(_line(r) for r in rows))
    (RESULTS / f"{NAME}.md").write_text(
        "# Smoothed MI: interval width vs sample-to-sample spread, coverage on known laws\n\n"
        "`benchmarks/smoothed_interval.py` (its docstring says what each column is). `sd`: the reported value's\n"
        "standard deviation over repeats (fresh sample and estimator seed); `mc_sd`: its Monte Carlo part (two seeds\n"
        "on one sample); coverage: share of 95% intervals that contain the exact value (of the centre: the mean of\n"
        "the repeats, which a biased estimator's interval can at best cover).\n\n" + "\n\n".join(parts) + "\n")
    print((RESULTS / f"{NAME}.md").read_text())


if __name__ == "__main__":
    main()
