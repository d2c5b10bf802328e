"""Seconds per smoothed-MI estimate: the distance-matmul floor, the code before the lean pass, and the new code.

    PYTHONPATH=. python benchmarks/smoothed_speed.py            # the measurement (~10 min on 2 shared cores)
    PYTHONPATH=. python benchmarks/smoothed_speed.py --quick    # smoke check: N = 500, one repeat

In one run, side by side, at d = 576 on both sides and the default job's grid (headline 0.25 with 100 bootstrap
replicates and the leave-one-out reading, plus 0.1, 0.5, 1.0):

- (a) the floor: the estimator's own two distance matmuls at 4,000 draws (the (2 x 4,000, d) draw and noise
  rows against the (N, d) states, one per side), what no implementation of this algorithm at 4,000 draws avoids;
- (b) the code before the last change (`ie_ray/estimators/smoothed.py` at OLD_COMMIT, loaded from git into a
  temporary module), `smoothed_mi` with the same parameters;
- (c) the new code;
- (d) atoms: 26 distinct micro-like states among N, and <= 1,000 distinct macro prefixes, passed as (atoms,
  counts), against a full-N reading of the new code (target: <= 5% of it); and the cost of finding exact
  duplicates at N = 20,000 when they are not given.

Two kinds of states: random Gaussian pairs (timing only: at tau = 0.25 every draw is an island, so the adaptive
stop ends early) and structured low-rank states (16 latent dimensions pushed through tanh maps to d = 576,
where the pmi varies from draw to draw and the adaptive stop has work to do). The flag table compares old and
new readings per tau on 600-, 5,000- and 20,000-atom laws (`DiscreteResidualLaw`), with and without the
leave-one-out at the secondary taus: what a lean secondary tau would lose.

Each timing is the median of `--repeats` runs (the machine is shared and noisy); torch uses `--threads` threads.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line  # noqa: E402

from ie_ray.estimators import smoothed as new  # noqa: E402
from ie_ray.validate_smoothed import DiscreteResidualLaw  # noqa: E402

#: The estimator before the last speed change (reused work buffers, base-2 exponentials, torch QR, blocked Scale);
#: the lean pass / atoms / adaptive draws were measured against 3f7e3602209e1e8bdb3ee8994aefd4afcb5c4d00.
OLD_COMMIT = "f54811976bf4e4afb13a3175255d1f9a35ffe089"
D = 576
GRID = dict(tau=0.25, taus=(0.1, 0.25, 0.5, 1.0), n_bootstrap=100)
OUT = Path(__file__).resolve().parent / "results" / "smoothed_speed"


def old_module() -> types.ModuleType:
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:ie_ray/estimators/smoothed.py"], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    module = types.ModuleType("smoothed_before")
    module.__dict__["__name__"] = "smoothed_before"
    sys.modules["smoothed_before"] = module  # dataclasses look their module up here
    exec(compile(source, f"{OLD_COMMIT[:8]}:smoothed.py", "exec"), module.__dict__)
    return module


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def gaussian_states(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x, (x + rng.standard_normal((n, D))).astype(np.float32)


def low_rank_states(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 16))
    x = np.tanh(z @ rng.standard_normal((16, D)) / 2.0)
    y = np.tanh(x @ rng.standard_normal((D, D)) / np.sqrt(D)) + 0.05 * rng.standard_normal((n, D))
    return x.astype(np.float32), y.astype(np.float32)


def atom_states(n: int, n_atoms: int, seed: int = 0):
    """n_atoms distinct states with Zipf-like counts summing to n (no atom left out)."""
    rng = np.random.default_rng(seed)
    x, y = low_rank_states(n_atoms, seed)
    p = 1.0 / np.arange(1, n_atoms + 1)
    counts = 1 + rng.multinomial(n - n_atoms, p / p.sum())
    return x, y, counts


def floor_seconds(x: np.ndarray, y: np.ndarray, repeats: int, draws: int = 4000) -> float:
    """The two distance matmuls of `draws` draws: (2 draws, d) rows against the (N, d) states, per side."""
    rng = np.random.default_rng(0)
    mats = []
    for a in (x, y):
        states = torch.as_tensor(a)
        rows = torch.cat([states[torch.as_tensor(rng.integers(len(a), size=draws))], torch.randn(draws, D)])
        mats.append((rows, states))
    return median_time(lambda: [r @ s.T for r, s in mats], repeats)[0]


def reading_summary(result, tau: float) -> dict:
    r = result.at(tau)
    return dict(mi=r.mi_bits, se=r.mc_se_bits, half=r.half_bits, loo=getattr(r, "loo_bits", float("nan")),
                flag=r.flag, draws=getattr(r, "n_draws", result.n_draws))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    sizes = (500,) if args.quick else (2000, 20000)
    old = old_module()
    info = machine_info(args.threads)
    rows: list[dict] = []

    def record(**row):
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    accuracy = []
    for n in sizes:
        for kind, make in (("gaussian", gaussian_states), ("low-rank", low_rank_states)):
            x, y = make(n)
            floor = floor_seconds(x, y, repeats)
            old_s, old_r = median_time(lambda: old.smoothed_mi(x, y, old.SmoothedParams(**GRID), seed=1),
                                       max(1, repeats - 1) if n > 5000 else repeats)
            new_s, new_r = median_time(lambda: new.smoothed_mi(x, y, new.SmoothedParams(**GRID), seed=1), repeats)
            record(states=kind, N=n, atoms=n, floor_s=floor, old_s=old_s, new_s=new_s, new_over_floor=new_s / floor,
                   old_over_floor=old_s / floor, old_over_new=old_s / new_s, max_draws=new_r.n_draws)
            for tau in new.SmoothedParams(**GRID).grid:
                accuracy.append(dict(states=kind, N=n, tau=tau, **{f"old_{k}": v for k, v in
                                                                    reading_summary(old_r, tau).items()},
                                     **{f"new_{k}": v for k, v in reading_summary(new_r, tau).items()}))
            if kind == "low-rank":
                full_s = new_s
        for n_atoms in (26, 1000 if n > 2000 else min(600, n // 4)):
            xa, ya, counts = atom_states(n, n_atoms)
            sx, sy = new.Scale.of(xa, counts), new.Scale.of(ya, counts)
            atom_s, r = median_time(lambda: new.smoothed_mi(xa, ya, new.SmoothedParams(**GRID), seed=1, scale_x=sx,
                                                            scale_y=sy, counts=counts), repeats)
            record(states=f"{n_atoms} atoms (counts)", N=n, atoms=n_atoms, new_s=atom_s,
                   atoms_over_full_n=atom_s / full_s, max_draws=r.n_draws)
        if n >= 2000:
            x, y = gaussian_states(n)
            dedupe_s, _ = median_time(lambda: new._exact_duplicates(x, y), repeats)
            xa, ya, counts = atom_states(n, 1000)
            xe, ye = np.repeat(xa, counts, axis=0), np.repeat(ya, counts, axis=0)
            dup_s, _ = median_time(lambda: new._exact_duplicates(xe, ye), repeats)
            record(states="find duplicates (all distinct / 1,000 atoms)", N=n, atoms=n, new_s=dedupe_s,
                   with_duplicates_s=dup_s, dedupe_over_full_n=dedupe_s / full_s)

    flags = flag_comparison(old, 1 if args.quick else 3)
    info["loadavg_at_end"] = list(__import__("os").getloadavg())
    write(rows, accuracy, flags, info, args)


def flag_comparison(old, samples: int) -> list[dict]:
    """Old vs new flags per tau on laws with known large supports, and the new flags without the leave-one-out
    (what a lean secondary tau without it would say)."""
    out = []
    params_old, params_new = old.SmoothedParams(**GRID), new.SmoothedParams(**GRID)
    for k in (600, 5000, 20000):
        law = DiscreteResidualLaw(D, k, seed=1)
        for s in range(samples):
            x, y, _ = law.sample(2000, seed=10 + s)
            a = old.smoothed_mi(x, y, params_old, seed=s)
            b = new.smoothed_mi(x, y, params_new, seed=s)
            for ra in a.readings:
                rb = b.at(ra.tau)
                lean = new.convergence_flag(rb.plugin_bits, rb.half_bits, params_new.convergence_min_bits,
                                            params_new.convergence_fraction, rb.mc_se_bits)
                out.append(dict(K=k, sample=s, tau=ra.tau, headline=ra.tau == params_new.tau, old_flag=ra.flag,
                                new_flag=rb.flag, new_flag_without_loo=lean, old_bits=ra.mi_bits, new_bits=rb.mi_bits,
                                new_se=rb.mc_se_bits, new_draws=rb.n_draws))
    return out


def write(rows, accuracy, flags, info, args) -> None:
    out = OUT.with_name(OUT.name + ("_quick" if args.quick else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: [k in r for r in rows].index(True))
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)

    def fmt(v, spec=".3f"):
        return "" if v is None else (format(v, spec) if isinstance(v, float) else str(v))

    md = ["# Smoothed MI: seconds per estimate (floor, before, after)", "", machine_line(info),
          f"- torch threads {args.threads}, median of {1 if args.quick else args.repeats} runs (the old code at "
          f"N = 20,000: {max(1, args.repeats - 1)}); d = {D} both sides; grid {GRID}; before = `{OLD_COMMIT[:10]}`",
          "", "| states | N | atoms | floor (2 matmuls, 4,000 draws) | before | after | after / floor | before / after "
          "| atoms / full-N | most draws used |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['states']} | {r['N']:,} | {r['atoms']:,} | {fmt(r.get('floor_s'))} | {fmt(r.get('old_s'))} | "
                  f"{fmt(r.get('new_s'))} | {fmt(r.get('new_over_floor'), '.2f')} | {fmt(r.get('old_over_new'), '.1f')}"
                  f" | {fmt(r.get('atoms_over_full_n') or r.get('dedupe_over_full_n'), '.3f')} | "
                  f"{fmt(r.get('max_draws'))} |")
    dup = [r for r in rows if "with_duplicates_s" in r]
    for r in dup:
        md.append(f"\nFinding exact duplicates at N = {r['N']:,} (d = {D} + {D}): {r['new_s'] * 1e3:.0f} ms when all "
                  f"rows are distinct, {r['with_duplicates_s'] * 1e3:.0f} ms with 1,000 atoms (hash + verification).")
    md += ["", "## Readings, before vs after (bits; se = Monte Carlo standard error; draws = draws the tau used)", "",
           "| states | N | tau | before | after | before flag | after flag | after draws |", "|---|---|---|---|---|---|---|---|"]
    for a in accuracy:
        md.append(f"| {a['states']} | {a['N']:,} | {a['tau']} | {a['old_mi']:.3f} ± {a['old_se']:.3f} | "
                  f"{a['new_mi']:.3f} ± {a['new_se']:.3f} | {a['old_flag']} | {a['new_flag']} | {a['new_draws']} |")
    md += ["", "## Flags on large-support laws (d = 576, N = 2,000): before, after, after without leave-one-out", ""]
    for headline in (True, False):
        sel = [f for f in flags if f["headline"] == headline]
        same = sum(f["old_flag"] == f["new_flag"] for f in sel)
        same_lean = sum(f["old_flag"] == f["new_flag_without_loo"] for f in sel)
        lost = sum(f["old_flag"] == "undersampled" and f["new_flag_without_loo"] == "ok" for f in sel)
        md.append(f"- {'headline tau' if headline else 'secondary taus'}: {len(sel)} readings; after = before on "
                  f"{same}; without the leave-one-out {same_lean} (undersampled readings that would read ok: {lost})")
    md += ["", "| K | sample | tau | before | after | before flag | after flag | after, no leave-one-out | draws |",
           "|---|---|---|---|---|---|---|---|---|"]
    for f in flags:
        md.append(f"| {f['K']} | {f['sample']} | {f['tau']} | {f['old_bits']:.3f} | {f['new_bits']:.3f} ± "
                  f"{f['new_se']:.3f} | {f['old_flag']} | {f['new_flag']} | {f['new_flag_without_loo']} | "
                  f"{f['new_draws']} |")
    text = "\n".join(md) + "\n"
    print(text)
    out.with_suffix(".md").write_text(text)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}", file=sys.stderr)


if __name__ == "__main__":
    main()
