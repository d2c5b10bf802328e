"""Seconds per estimate of the smoothed MI I_sigma, against MINE-DV on the same block states, and how it scales.

The sweep's headline reading is I_sigma (`ie_ray/estimators/smoothed.py`); MINE-DV is kept for E(l) only because it
costs seconds per estimate. This script measures that claim, side by side in one run, on the default sweep's own
states: SmolLM2-135M, block 10 (input = x, output = y), d = 576, read from a run's state cache.

CPU run (default, `--device cpu`):
  (a) N = 2,000, last position: smoothed MI (default SmoothedParams: the whole tau grid in one pass) vs default
      MINE-DV (`MINEParams()`), same x and y;
  (b) N = 20,000 smoothed (real states tiled with a small jitter when fewer rows exist); MINE-DV too with --full;
  (c) `smoothed_mi_batch` over 8 problems (block 10's last 8 positions) vs 8 `smoothed_mi` calls; all values
      are compared (the batch is only one call, never a different number: the script records any difference);
  (d) float32 vs float64, same problem as (a).
GPU run (`--device cuda`, what benchmarks/gpu_check.sh runs):
  (e) N = 20,000 and 100,000 on the GPU, and N = 20,000 on this machine's CPUs (all cores) for the ratio;
  (c) and (d) again on the GPU at N = 20,000. MINE is not run: it trains on the CPU.

States come from `--states DIR` (a run directory, its `cache/states`, or one cell holding `stream=<block>/` and `stream=<block + 1>/`), else
from the default sweep's run directories. When none is found, or with `--synthetic`, the states are correlated
Gaussians of the same shape, and the output says so.

    PYTHONPATH=. python benchmarks/smoothed.py --states RUN_DIR/cache/states   # (a)-(d), ~2 min on 1 thread
    PYTHONPATH=. python benchmarks/smoothed.py --full                           # + MINE-DV at N = 20,000 (slow)
    PYTHONPATH=. python benchmarks/smoothed.py --device cuda                    # (e): GPU at 20k and 100k
    PYTHONPATH=. python benchmarks/smoothed.py --quick                          # smoke check, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402

from ie_ray.estimators import MINEParams, SmoothedParams, SmoothedResult, estimate, smoothed_mi, smoothed_mi_batch
from ie_ray.estimators.benchmark import correlated_gaussians

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m"
#: Where the sweep puts run directories when --states is not given (docs/running.md).
DEFAULT_STATE_ROOTS = (REPO / "results" / "runs", Path.home() / ".cache" / "ie_ray" / "runs")
#: Tiled copies of real states get this much Gaussian jitter, in units of each dimension's standard deviation:
#: enough that no two rows coincide (a duplicate row is a different mixture), far below any tau of the grid.
JITTER = 1e-3
#: Synthetic fallback: correlated Gaussians with this closed-form MI (bits) per position.
SYNTHETIC_MI_BITS = 8.0
BATCH_PROBLEMS = 8


# ----------------------------------------------------------------------------------------------------------------
# States
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockStates:
    """Block input and output states (N, P, d) and where they came from (printed with every number)."""

    pre: np.ndarray
    post: np.ndarray
    source: str
    real: bool


def find_cell(root: Path, block: int) -> Path | None:
    """The cell directory under `root` whose `stream=<block>` (block's input) holds the most rows (the macro
    cell, not a micro one with one row per token), going by each stream's `_COMPLETE.json`; None when there is
    none."""
    best, best_rows = None, -1
    for done in sorted(Path(root).rglob(f"stream={block}/_COMPLETE.json")):
        try:
            rows = int(json.loads(done.read_text()).get("rows", 0))
        except (OSError, ValueError):
            continue
        if rows > best_rows:
            best, best_rows = done.parent.parent, rows
    return best


def synthetic_states(n: int, positions: int, dim: int) -> BlockStates:
    pairs = [correlated_gaussians(dim, SYNTHETIC_MI_BITS, n, seed=p) for p in range(positions)]
    return BlockStates(
        pre=np.stack([x for x, _ in pairs], axis=1), post=np.stack([y for _, y in pairs], axis=1),
        source=f"synthetic: correlated Gaussians, {SYNTHETIC_MI_BITS:g} bits per position (no cached states used)",
        real=False,
    )


def load_states(args: argparse.Namespace, log: Callable[[str], None]) -> BlockStates:
    if not args.synthetic:
        roots = [args.states] if args.states else [r for r in DEFAULT_STATE_ROOTS if r.is_dir()]
        for root in roots:
            cell = find_cell(root, args.block) if root.is_dir() else None
            if cell is None:
                continue
            from ie_ray.store import read_layer_states  # imports Ray Data; only needed for real states

            _, pre, post = read_layer_states(cell, args.block)
            return BlockStates(pre, post, f"real: {MODEL} block {args.block}, {cell}", real=True)
        log(f"NOTE: no cached states with stream={args.block} under {[str(r) for r in roots]}; using synthetic ones")
    return synthetic_states(args.n_small, BATCH_PROBLEMS, args.dim)


def last_position(states: BlockStates, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """x, y (n, d) at the last position: the first n rows, or the rows tiled with jitter when there are fewer
    (synthetic states are drawn afresh at n instead). Returns how the rows were made."""
    x, y = states.pre[:, -1], states.post[:, -1]
    have = len(x)
    if n <= have:
        return x[:n], y[:n], f"first {n} of {have} rows"
    if not states.real:
        x, y = correlated_gaussians(x.shape[1], SYNTHETIC_MI_BITS, n, seed=seed)
        return x, y, f"{n} synthetic rows drawn afresh"
    rng = np.random.default_rng(seed)
    reps = math.ceil(n / have)

    def tile(a: np.ndarray) -> np.ndarray:
        out = np.tile(a, (reps, 1))[:n].astype(np.float32)
        out[have:] += (JITTER * a.std(axis=0) * rng.standard_normal((n - have, a.shape[1]))).astype(np.float32)
        return out

    return tile(x), tile(y), f"{have} real rows tiled x{reps} to {n}, jitter {JITTER:g} std on the copies"


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeats: int) -> tuple[object, float, list[float]]:
    """The last result, the median wall time and every wall time of `repeats` calls. Results come back as numpy,
    so a CUDA call has finished when it returns."""
    walls = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - start)
    return out, statistics.median(walls), walls


def readings(res: SmoothedResult) -> dict[str, dict[str, object]]:
    return {f"{r.tau:g}": {"mi_bits": r.mi_bits, "half_bits": r.half_bits, "ci": [r.ci_low, r.ci_high],
                           "flag": r.flag} for r in res.readings}


def max_diff(a: Sequence[SmoothedResult], b: Sequence[SmoothedResult]) -> tuple[float, bool]:
    """Largest |difference| over every tau's estimate, N/2 reading and bootstrap replicate; and exact equality."""
    diffs, equal = [0.0], True
    for ra, rb in zip(a, b):
        for qa, qb in zip(ra.readings, rb.readings):
            va = np.array([qa.mi_bits, qa.half_bits, *qa.bootstrap])
            vb = np.array([qb.mi_bits, qb.half_bits, *qb.bootstrap])
            diffs.append(float(np.max(np.abs(va - vb))))
            equal &= bool(np.array_equal(va, vb))
    return max(diffs), equal


@dataclass
class Bench:
    """One run's settings and what it has measured so far (rows of the table, ratios, checks)."""

    args: argparse.Namespace
    smoothed: SmoothedParams
    mine: MINEParams
    log: Callable[[str], None]
    rows: list[dict]
    ratios: dict[str, float]
    checks: dict[str, object]

    def params(self, device: str, dtype: str = "float32") -> SmoothedParams:
        return replace(self.smoothed, device=device, dtype=dtype)

    def smoothed_row(self, section: str, x: np.ndarray, y: np.ndarray, rows_from: str, device: str,
                     dtype: str = "float32", repeats: int | None = None) -> tuple[SmoothedResult, float]:
        p = self.params(device, dtype)
        self.log(f"({section}) smoothed MI, N={len(x):,}, {device}, {dtype} ...")
        res, wall, walls = timed(lambda: smoothed_mi(x, y, p, seed=0), repeats or self.args.repeats)
        self.log(f"    {wall:.2f} s per estimate")
        self.rows.append({
            "section": section, "estimator": "smoothed", "n": len(x), "dim": x.shape[1], "device": device,
            "dtype": dtype, "s_per_estimate": wall, "walls_s": walls, "rows_from": rows_from,
            "headline_bits": res.at(p.tau).mi_bits, "headline_flag": res.at(p.tau).flag, "readings": readings(res),
        })
        return res, wall

    def mine_row(self, section: str, x: np.ndarray, y: np.ndarray, rows_from: str) -> float:
        self.log(f"({section}) MINE-DV (MINEParams(){' quick' if self.args.quick else ''}), N={len(x):,}, cpu ...")
        res, wall, walls = timed(lambda: estimate(x, y, "dv", self.mine, seed=0), 1)
        self.log(f"    {wall:.2f} s per estimate")
        self.rows.append({
            "section": section, "estimator": "mine-dv", "n": len(x), "dim": x.shape[1], "device": "cpu",
            "dtype": "float32", "s_per_estimate": wall, "walls_s": walls, "rows_from": rows_from,
            "headline_bits": res.mi_bits, "headline_flag": res.flag, "ci": [res.ci_low, res.ci_high],
        })
        return wall

    def batch_vs_single(self, states: BlockStates, n: int, device: str) -> None:
        """(c): the last BATCH_PROBLEMS positions (the sweep batches a layer's positions in one task)."""
        p = self.params(device)
        positions = [i % states.pre.shape[1] for i in range(-BATCH_PROBLEMS, 0)]
        xs, ys = [], []
        for k, pos in enumerate(positions):
            sub = BlockStates(states.pre[:, [pos]], states.post[:, [pos]], states.source, states.real)
            x, y, _ = last_position(sub, n, seed=k)
            xs.append(x)
            ys.append(y)
        seeds = list(range(BATCH_PROBLEMS))
        self.log(f"(c) smoothed_mi_batch over {BATCH_PROBLEMS} problems vs one by one, N={n:,}, {device} ...")
        walls: dict[str, list[float]] = {"batched": [], "one-by-one": []}
        for _ in range(self.args.repeats):  # interleaved, so that a change in the machine's load hits both
            batched, wall, _ = timed(lambda: smoothed_mi_batch(xs, ys, p, seeds), 1)
            walls["batched"].append(wall)
            single, wall, _ = timed(lambda: [smoothed_mi(x, y, p, seed=s) for x, y, s in zip(xs, ys, seeds)], 1)
            walls["one-by-one"].append(wall)
        t_batch, t_single = (statistics.median(walls[k]) for k in ("batched", "one-by-one"))
        self.log(f"    batched {t_batch:.2f} s, one by one {t_single:.2f} s")
        diff, equal = max_diff(batched, single)
        for mode, wall in (("batched", t_batch), ("one-by-one", t_single)):
            self.rows.append({
                "section": "c", "estimator": f"smoothed {mode} x{BATCH_PROBLEMS}", "n": n, "dim": xs[0].shape[1],
                "device": device, "dtype": "float32", "s_per_estimate": wall / BATCH_PROBLEMS,
                "walls_s": walls[mode], "rows_from": f"positions {positions}",
            })
        self.ratios[f"one_by_one_over_batched_{device}"] = t_single / t_batch
        self.checks[f"batched_vs_one_by_one_{device}"] = {"max_abs_diff_bits": diff, "identical": equal}

    def dtypes(self, x: np.ndarray, y: np.ndarray, rows_from: str, device: str, f32: SmoothedResult | None = None,
               t32: float | None = None) -> None:
        """(d): the same problem in float32 and float64 (float32 reused from an earlier row when given)."""
        if f32 is None:
            f32, t32 = self.smoothed_row("d", x, y, rows_from, device, "float32")
        f64, t64 = self.smoothed_row("d", x, y, rows_from, device, "float64")
        diff, _ = max_diff([f32], [f64])
        self.ratios[f"float64_over_float32_{device}"] = t64 / t32
        self.checks[f"float32_vs_float64_{device}"] = {
            "max_abs_diff_bits": diff,
            "max_abs_diff_estimate_bits": max(abs(a.mi_bits - b.mi_bits) for a, b in zip(f32.readings, f64.readings)),
        }


def run(args: argparse.Namespace) -> dict[str, object]:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine "
                         f"(torch {torch.__version__}); install a CUDA build of torch or use --device cpu")
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    states = load_states(args, log)
    log(f"states: {states.source}; pre {states.pre.shape}, post {states.post.shape}")
    bench = Bench(args, args.smoothed_params, args.mine_params, log, [], {}, {})

    # Warm-up outside the clock: allocator, kernel dispatch, the CUDA context and cuBLAS handles.
    wx, wy, _ = last_position(states, min(200, len(states.pre)))
    for device in {"cpu", args.device}:
        smoothed_mi(wx, wy, replace(bench.smoothed, n_draws=50, n_bootstrap=2, device=device), seed=0)

    if args.device == "cpu":
        x, y, how = last_position(states, args.n_small)
        sm, t_sm = bench.smoothed_row("a", x, y, how, "cpu")
        t_mine = bench.mine_row("a", x, y, how)
        bench.ratios["mine_over_smoothed_small"] = t_mine / t_sm
        xl, yl, how_l = last_position(states, args.n_large)
        _, t_large = bench.smoothed_row("b", xl, yl, how_l, "cpu", repeats=1)
        bench.ratios["smoothed_large_over_small"] = t_large / t_sm
        if args.full:
            t_mine_l = bench.mine_row("b", xl, yl, how_l)
            bench.ratios["mine_over_smoothed_large"] = t_mine_l / t_large
        bench.batch_vs_single(states, args.n_small, "cpu")
        bench.dtypes(x, y, how, "cpu", sm, t_sm)
    else:
        xl, yl, how_l = last_position(states, args.n_large)
        gl, t_gl = bench.smoothed_row("e", xl, yl, how_l, "cuda")
        xh, yh, how_h = last_position(states, args.n_huge)
        _, t_gh = bench.smoothed_row("e", xh, yh, how_h, "cuda")
        cl, t_cl = bench.smoothed_row("e", xl, yl, how_l, "cpu", repeats=1)
        bench.ratios["cpu_over_gpu_large"] = t_cl / t_gl
        bench.ratios["gpu_huge_over_large"] = t_gh / t_gl
        diff, _ = max_diff([gl], [cl])
        bench.checks["gpu_vs_cpu_large"] = {"max_abs_diff_bits": diff}
        bench.batch_vs_single(states, args.n_large, "cuda")
        bench.dtypes(xl, yl, how_l, "cuda", gl, t_gl)
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda

    return {
        "benchmark": "smoothed",
        "config": {
            "device": args.device, "states": states.source, "real_states": states.real, "block": args.block,
            "n_small": args.n_small, "n_large": args.n_large, "n_huge": args.n_huge, "dim": states.pre.shape[-1],
            "threads": args.threads, "repeats": args.repeats, "full": args.full, "quick": args.quick,
            "command": " ".join(sys.argv),
        },
        "smoothed_params": {**bench.smoothed.key_dict(), "memory_mb": bench.smoothed.memory_mb},
        "mine_params": bench.mine.to_dict(),
        "machine": {**info, "loadavg_at_end": list(os.getloadavg())},
        "rows": bench.rows,
        "ratios": bench.ratios,
        "checks": bench.checks,
    }


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------

SECTIONS = {
    "a": "smoothed vs MINE-DV, same states",
    "b": "large N",
    "c": "batch vs one by one",
    "d": "float32 vs float64",
    "e": "GPU vs CPU",
}


def to_markdown(res: dict) -> str:
    cfg, m, sp = res["config"], res["machine"], res["smoothed_params"]
    lines = [
        f"# Smoothed MI: seconds per estimate ({m['date_utc']}, device {cfg['device']})",
        "",
        f"States: {cfg['states']}. Smoothed: n_draws {sp['n_draws']}, {len(sp['taus'])} taus {sp['taus']} in one "
        f"pass, {sp['n_bootstrap']} bootstrap columns, memory_mb {sp['memory_mb']:g}. MINE-DV: "
        f"{res['mine_params']['steps']} steps, batch {res['mine_params']['batch_size']}. torch threads "
        f"{m['torch_threads']}. Each time is the median of the row's timed calls; in (c), of the "
        f"{BATCH_PROBLEMS}-problem call, divided by {BATCH_PROBLEMS}.",
        "",
        "| section | estimator | N | device | dtype | s / estimate | timed calls | headline (bits) | flag | rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        value = f"{r['headline_bits']:.3f}" if "headline_bits" in r else ""
        lines.append(
            f"| ({r['section']}) {SECTIONS[r['section']]} | {r['estimator']} | {r['n']:,} | {r['device']} | "
            f"{r['dtype']} | {r['s_per_estimate']:.3f} | {len(r['walls_s'])} | {value} | "
            f"{r.get('headline_flag', '')} | {r['rows_from']} |"
        )
    lines += ["", "Ratios:"]
    lines += [f"- {k} = **{v:.2f}**" for k, v in res["ratios"].items()]
    lines += ["", "Checks:"]
    lines += [f"- {k}: " + ", ".join(f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}"
                                      for kk, vv in v.items()) for k, v in res["checks"].items()]
    if "cuda_device" in m:
        lines.append(f"- GPU: {m['cuda_device']}, CUDA {m['cuda_version']}")
    lines += [machine_line(m), f"- command: `{cfg['command']}`", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--states", type=Path, default=None,
                   help="a run directory, its cache/states, or one state cell (default: the sweep's run directories)")
    p.add_argument("--synthetic", action="store_true", help="use synthetic states even when cached ones exist")
    p.add_argument("--block", type=int, default=10, help="block whose input/output are x/y (default 10)")
    p.add_argument("--dim", type=int, default=576, help="width of synthetic states (default 576, SmolLM2-135M)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu: sections (a)-(d); cuda: section (e) plus (c), (d) on the GPU")
    p.add_argument("--n-small", type=int, default=None, help="N of (a), (c), (d) (default 2,000; 400 with --quick)")
    p.add_argument("--n-large", type=int, default=None, help="N of (b) and (e) (default 20,000; 2,000 with --quick)")
    p.add_argument("--n-huge", type=int, default=None, help="N of (e) on the GPU (default 100,000; 5,000 --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 1 with --device cpu; every core with --device cuda, for the ratio)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per smoothed row (default 3; 1 --quick)")
    p.add_argument("--full", action="store_true", help="also MINE-DV at the large N (slow)")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: small N, 200 draws, 20 bootstrap columns, 30 MINE steps")
    p.add_argument("--out", type=Path, default=None,
                   help="output path without suffix (default benchmarks/results/smoothed[_cuda][_quick])")
    args = p.parse_args(argv)
    q = args.quick
    args.n_small = args.n_small or (400 if q else 2000)
    args.n_large = args.n_large or (2000 if q else 20000)
    args.n_huge = args.n_huge or (5000 if q else 100000)
    args.threads = args.threads or (1 if args.device == "cpu" else (os.cpu_count() or 1))
    args.repeats = args.repeats or (1 if q else 3)
    args.smoothed_params = SmoothedParams(n_draws=200, n_bootstrap=20) if q else SmoothedParams()
    args.mine_params = replace(MINEParams(), steps=30, marginal_shifts=16, n_bootstrap=20) if q else MINEParams()
    name = "smoothed" + ("_cuda" if args.device == "cuda" else "") + ("_quick" if q else "")
    args.out = args.out or RESULTS_DIR / name
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    res = run(args)
    write_outputs(args.out, res, to_markdown(res))


if __name__ == "__main__":
    main()
