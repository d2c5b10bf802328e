"""Joint vs separable vs hybrid critics (ie_ray/estimators/critic.py) on Gaussians with closed-form MI.

Tasks, N pairs each (default 2,000, the validation grid's N), true MI 1, 2 and 4 bits, d = 64 and 256 per side:
- "gaussian": `benchmark.correlated_gaussians`, d independent coordinate pairs sharing the MI (the validation
  grid's task: at d = 256 each pair carries ~0.01 bit, below what 2,000 pairs can resolve, for any estimator);
- "lowrank": the MI carried by LOWRANK_PAIRS coordinate pairs, the other d - 4 dims independent noise, then a
  random rotation of x and one of y (MI unchanged): dependence in a few directions, as in hidden states;
- "nonlinear": the validation grid's `benchmark.Task("nonlinear", ...)`, the "gaussian" pairs through
  invertible non-linear maps and rotations (same MI; the Gaussian closed form is only a baseline there).

Every critic is trained with the DV objective and the package defaults otherwise (500 steps, batch 256,
lr 3e-3, n_layers 2, k = 64, MLP width 256, hybrid joint width 64); "+es" adds early stopping
(early_stop_fraction 0.2); "linear" = separable with linear f, g (embed_layers 1, a rank-k bilinear critic),
"MLP" = separable with embed_layers 2. The three MI values of one
(task, d) are one ensemble of 3, and seconds per estimate are that fit's wall time / 3, on one torch thread.
The closed-form Gaussian estimate (`estimate(x, y, "gaussian")`) on the same data is the reference of what the
data allow for the two Gaussian tasks, for which it is the right model.

Parts (each a few minutes at most on a shared 2-core machine; results merge into one JSON/Markdown pair):
    PYTHONPATH=. python benchmarks/critics.py --part main --task gaussian --d 64
    ... (--task gaussian|lowrank|nonlinear, --d 64|256), then the embedding sizes of the separable critic:
    PYTHONPATH=. python benchmarks/critics.py --part sizes --task lowrank --d 256
    PYTHONPATH=. python benchmarks/critics.py --quick      # smoke check, seconds, writes nothing
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402

from ie_ray.estimators import MINEParams, estimate, fit_mine_ensemble
from ie_ray.estimators.benchmark import Task, correlated_gaussians

RESULTS = Path(__file__).resolve().parent / "results" / "critics"
TASKS = ("gaussian", "lowrank", "nonlinear")
MI_BITS = (1.0, 2.0, 4.0)
SEEDS = (0, 1, 2)
#: Coordinate pairs that carry the MI in the "lowrank" task.
LOWRANK_PAIRS = 4
ES = dict(early_stop_fraction=0.2)
#: Critic configurations of the main comparison (label -> MINEParams overrides of the defaults).
MAIN = {
    "joint": dict(critic="joint"),
    "joint+es": dict(critic="joint", **ES),
    "separable linear": dict(critic="separable", embed_layers=1),
    "separable linear+es": dict(critic="separable", embed_layers=1, **ES),
    "separable MLP+es": dict(critic="separable", embed_layers=2, **ES),
    "hybrid linear+es": dict(critic="hybrid", embed_layers=1, **ES),
    "hybrid MLP+es": dict(critic="hybrid", embed_layers=2, **ES),
}
#: Embedding sizes of the separable critic, with early stopping: (embed_dim k, embed_width, n_layers).
SIZES = {
    **{f"k={k} width={w}": dict(critic="separable", embed_dim=k, embed_width=w, embed_layers=2, **ES)
       for k, w in [(16, 64), (64, 64), (16, 256), (64, 256), (128, 256)]},
    **{f"k={k} linear": dict(critic="separable", embed_dim=k, embed_layers=1, **ES) for k in (16, 64)},
}


def task_data(task: str, d: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of shape (3, n, d), one problem per MI_BITS value."""
    xs, ys = [], []
    for i, mi in enumerate(MI_BITS):
        seed = 1000 * d + 10 * i
        if task == "gaussian":
            x, y = correlated_gaussians(d, mi, n, seed=seed)
        elif task == "nonlinear":
            x, y = Task("nonlinear", d, mi, seed=seed).sample(n, sample_seed=seed + 1)
        elif task == "lowrank":
            xr, yr = correlated_gaussians(LOWRANK_PAIRS, mi, n, seed=seed)
            rng = np.random.default_rng(seed + 1)
            noise = rng.standard_normal((2, n, d - LOWRANK_PAIRS))
            qx, qy = (np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(2))
            x = np.concatenate([xr, noise[0]], axis=1) @ qx
            y = np.concatenate([yr, noise[1]], axis=1) @ qy
        else:
            raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
        xs.append(x.astype(np.float32))
        ys.append(y.astype(np.float32))
    return np.stack(xs), np.stack(ys)


def run(task: str, d: int, n: int, configs: dict[str, dict], base: MINEParams) -> Iterator[list[dict]]:
    """The closed-form rows, then each configuration's rows as soon as its ensemble is fitted."""
    xs, ys = task_data(task, d, n)
    rows = []
    for i, mi in enumerate(MI_BITS):
        start = time.perf_counter()
        value = estimate(xs[i], ys[i], "gaussian").mi_bits
        rows.append(_row(task, d, n, "gaussian closed form", mi, value, time.perf_counter() - start))
    yield rows
    for label, overrides in configs.items():
        fits = fit_mine_ensemble(xs, ys, replace(base, **overrides), list(SEEDS))
        print(f"{task} d={d} {label}: " + ", ".join(f"{r.mi_bits:.2f}/{mi:g}" for mi, r in zip(MI_BITS, fits))
              + f"  {fits[0].wall_s:.1f} s/estimate", file=sys.stderr, flush=True)
        yield [_row(task, d, n, label, mi, r.mi_bits, r.wall_s, flag=r.flag) for mi, r in zip(MI_BITS, fits)]


def _row(task: str, d: int, n: int, critic: str, mi: float, value: float, seconds: float, flag: str = "") -> dict:
    return dict(task=task, d=d, n=n, critic=critic, true_bits=mi, estimate_bits=round(value, 4),
                rel_error=round(abs(value - mi) / mi, 4), s_per_estimate=round(seconds, 3), flag=flag)


def markdown(res: dict) -> str:
    lines = ["# Joint vs separable vs hybrid critics on Gaussians with closed-form MI", "",
             "Made by `benchmarks/critics.py` (see its docstring for the tasks and settings); every part lists its "
             "machine below. DV objective, package defaults otherwise; `+es` = early_stop_fraction 0.2; "
             "`linear` = linear f, g (embed_layers 1), `MLP` = embed_layers 2; k = 64, width 256 unless named. "
             "Relative error = |estimate - truth| / truth; "
             "s/est = seconds per estimate (ensemble of 3 on one torch thread); flags: estimates not flagged `ok` "
             "(`diverged` here = held-out 95% interval entirely below -0.05 bit).", ""]
    for part in ("main", "sizes"):
        rows = [r for r in res["rows"] if r["part"] == part]
        if not rows:
            continue
        lines += [f"## {'Critics' if part == 'main' else 'Embedding sizes of the separable critic (+es)'}", ""]
        groups = sorted({(r["task"], r["d"], r["n"]) for r in rows}, key=lambda g: (g[0], g[1], g[2]))
        for task, d, n in groups:
            sub = [r for r in rows if (r["task"], r["d"], r["n"]) == (task, d, n)]
            order = ["gaussian closed form", *MAIN, *SIZES]
            critics = sorted({r["critic"] for r in sub}, key=order.index)
            lines += [f"### {task}, d = {d}, N = {n}", "",
                      "| critic | " + " | ".join(f"{mi:g} bit" for mi in MI_BITS)
                      + " | mean rel. error | s/est | flags |",
                      "|---|" + "---:|" * (len(MI_BITS) + 2) + "---|"]
            for c in critics:
                cr = {r["true_bits"]: r for r in sub if r["critic"] == c}
                vals = " | ".join(f"{cr[mi]['estimate_bits']:.2f}" for mi in MI_BITS)
                err = np.mean([cr[mi]["rel_error"] for mi in MI_BITS])
                sec = np.mean([cr[mi]["s_per_estimate"] for mi in MI_BITS])
                flags = [cr[mi]["flag"] for mi in MI_BITS if cr[mi]["flag"] not in ("", "ok")]
                flagged = ", ".join(f"{flags.count(f)} {f}" for f in sorted(set(flags)))
                lines.append(f"| {c} | {vals} | {err:.2f} | {sec:.2f} | {flagged} |")
            lines.append("")
    lines += ["## Machines", ""]
    lines += [f"- part {key}: " + machine_line(m)[2:] for key, m in sorted(res["machines"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["main", "sizes"], default="main")
    ap.add_argument("--task", choices=TASKS, default="gaussian")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", nargs="+", help="only these labels of the part (a shared machine's runs stay "
                    "short); the rows of the others are kept")
    ap.add_argument("--quick", action="store_true", help="20 steps at d = 16, N = 600; prints, writes nothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = MINEParams(threads=args.threads, n_bootstrap=20)
    configs = MAIN if args.part == "main" else SIZES
    if args.configs:
        unknown = sorted(set(args.configs) - set(configs))
        if unknown:
            ap.error(f"unknown configuration(s) {unknown} of part {args.part!r}; choose from {list(configs)}")
        configs = {k: v for k, v in configs.items() if k in args.configs}
    if args.quick:
        for rows in run(args.task, 16, 600, configs, replace(base, steps=20, batch_size=128)):
            print(json.dumps(rows[0]))
        return 0
    key = f"{args.part}/{args.task}/d{args.d}/n{args.n}"
    path = RESULTS.with_suffix(".json")
    res = json.loads(path.read_text()) if path.exists() else {"rows": [], "machines": {}}
    res["machines"][key] = machine_info(args.threads)
    for rows in run(args.task, args.d, args.n, configs, base):
        done = {(key, r["critic"]) for r in rows}
        res["rows"] = [r for r in res["rows"] if (_key(r), r["critic"]) not in done]
        res["rows"] += [dict(part=args.part, **r) for r in rows]
        write_outputs(RESULTS, res, markdown(res))
    return 0


def _key(row: dict) -> str:
    return f"{row['part']}/{row['task']}/d{row['d']}/n{row['n']}"


if __name__ == "__main__":
    raise SystemExit(main())
