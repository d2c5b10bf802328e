"""Which neural MI estimator to recommend, per regime, from tasks that can rank them (issue 26, items 2-3).

The old recommendation grid spread the MI over all coordinates, where every estimator reads about 0 at
d >= 256 and no ranking is possible. Here the tasks put the MI in a few directions, with closed-form truth:

- the concentrated families of `ie_ray.estimators.benchmark` (CONCENTRATED_FAMILIES: lowrank, sparse pairs,
  the half-cube and asinh warps of a lowrank sample, a residual map on a lowrank sample), d = 64, 256, 768,
  N = 20,000, MI 1, 2, 4, 8 bits, with the seeds `ie-ray validate --families lowrank ...` gives them (so the
  lowrank rows are the samples of results/validation-lowrank and of smile_dissection.py);
- bmi's 10 benchmark tasks (the `benchmark-mi` package, n = 10,000, seeds 0-2), dumped to .npz files by
  `peer_runners/dump_bmi_tasks.py` from bmi's own venv (bmi needs jax, never a dependency here).

Estimators: our presets (ESTIMATORS: the default `dv`, `js-es`, `infonce-sep`, `smile-tm`, and `smile-tm-wide`,
the best variant of benchmarks/results/smile_dissection.md after the recipe itself) and torch-mist's SMILE with
its defaults, as benchmarks/peers.py runs it, on the same samples. Our estimators of one (family, d, draw) or one
bmi task (its seeds) train as one ensemble; seconds per estimate = the ensemble's wall time / its size. torch-mist
runs through `peer_runners/run_peer.py` in a subprocess: its venv's python where `--peer-python` names one (or
../peers/torch_mist exists), else this python, with torch-mist's wheels on PYTHONPATH (the GPU machine).

    PYTHONPATH=. python benchmarks/neural_recommendation.py --device cuda --budget-s 420   # resumes
    PYTHONPATH=. python benchmarks/neural_recommendation.py --report      # the table from what is finished
    PYTHONPATH=. python benchmarks/neural_recommendation.py --quick       # seconds, into a temp dir

Each finished (estimator, task, draw) is one JSON line in `--raw` (default
results/neural_recommendation_raw.jsonl), so a run resumes where it stopped; `--budget-s` stops starting new
work after that many seconds and the table (`--out`, default results/neural_recommendation.md) is written from
what finished. The recommendation paragraphs are computed from the numbers, on the tasks every compared
estimator finished.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line
from peers import peer_flag  # a negative or failed peer reading is never `ok`, as in benchmarks/peers.py

from ie_ray.estimators import fit_mine_ensemble
from ie_ray.estimators.benchmark import CONCENTRATED_FAMILIES, Task, make_tasks
from ie_ray.estimators.presets import preset_params

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Where the bmi dumps live by default: a git-ignored folder at the repository root that travels to the GPU box.
BMI_DIR = HERE.parent / ".gpu_data" / "bmi"
TORCH_MIST = "torch-mist"
#: Our estimators: preset name -> MINEParams overrides on top of it. `smile-tm-wide` is smile_dissection.md's
#: "recipe-critic" (torch-mist's recipe with our 512-wide LeakyReLU critic): as close to torch-mist as the recipe
#: at d = 64 (0.082 vs 0.076) and 2x faster there.
ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "dv": ("dv", {}),
    "js-es": ("js-es", {}),
    "infonce-sep": ("infonce-sep", {}),
    "smile-tm": ("smile-tm", {}),
    "smile-tm-wide": ("smile-tm", dict(hidden_width=None, activation="leaky_relu", init="xavier")),
    "smile-tm-rank": ("smile-tm-rank", {}),
    "js-es-rank": ("js-es", dict(marginals="rank_gauss")),
}
ALL = (*ESTIMATORS, TORCH_MIST)
#: The validation grid's dims and MI lists (ie_ray.validate.ValidationConfig's defaults, which derive the task
#: seeds; not imported, to keep ie_ray.validate off the GPU machine; a test checks they agree).
GRID_DIMS = (1, 16, 64, 256, 768)
GRID_MI = (0.1, 1.0, 2.0, 4.0, 8.0)
DIMS = (64, 256, 768)
MI_BITS = (1.0, 2.0, 4.0, 8.0)
N_SAMPLES = 20_000
#: Bootstrap replicates of our held-out interval. The estimate itself does not depend on them, and the table
#: uses no interval; at N = 20,000 the DV readout's 2M marginal scores make the default 200 replicates a CPU-side
#: cost (seconds per estimator) larger than a GPU fit, which would hide the fits' seconds.
N_BOOTSTRAP = 10
#: Held-out share for torch-mist (ours use their presets'); the same 20% split peers.py gives it.
HELDOUT = 0.2


@dataclass(frozen=True)
class Job:
    """One unit of work: one estimator on tasks of one shape, trained together (one line per task and draw)."""

    estimator: str
    regime: str  # "d=64" ... or "bmi"
    tasks: tuple[str, ...]
    draws: tuple[int, ...]  # one per task (bmi: the seed of the dump); synthetic jobs: all the same draw
    load: Callable[[], list[tuple[np.ndarray, np.ndarray, float, int]]]  # (x, y, true MI bits, seed) per task

    def rows(self) -> list[tuple[str, str, int]]:
        return [(self.estimator, t, d) for t, d in zip(self.tasks, self.draws)]


def concentrated_tasks(dims: tuple[int, ...], mi_bits: tuple[float, ...],
                       families: tuple[str, ...] = CONCENTRATED_FAMILIES) -> list[Task]:
    """The concentrated families' tasks with the seeds a validation run of all of them gives them (`families`
    only filters, so a task's seed and sample never depend on which families were asked for)."""
    tasks = make_tasks(list(GRID_DIMS), list(GRID_MI), list(CONCENTRATED_FAMILIES))
    return [t for t in tasks if t.d in dims and t.mi_bits in mi_bits and t.family in families]


def synthetic_jobs(estimators: list[str], tasks: list[Task], n: int, draws: list[int]) -> Iterator[Job]:
    """One job per d and draw (every family and MI value of that d in one ensemble: on a GPU the estimators of an
    ensemble cost about one), dims in increasing order; every estimator on one d before the next d, so a budget
    that runs out leaves all estimators compared on the same tasks."""
    for d in sorted({t.d for t in tasks}):
        group = [t for t in tasks if t.d == d]
        for draw in draws:

            @_last_only
            def load(group: list[Task] = group, draw: int = draw) -> list:
                return [(*t.sample(n, draw), t.mi_bits, (t.seed + draw) % (2**31)) for t in group]

            for est in estimators:
                yield Job(est, f"d={d}", tuple(t.name for t in group), (draw,) * len(group), load)


def bmi_jobs(estimators: list[str], bmi_dir: Path, limit_rows: int | None = None,
             keep: int | None = None) -> Iterator[Job]:
    """bmi's dumped tasks, one job per estimator and shape (dx, dy, n): tasks and seeds of one shape train as one
    ensemble; torch-mist, which trains one task at a time anyway, gets all of them in one job (one start-up of
    its worker processes), after ours. `keep`: only the first `keep` tasks (by name)."""
    files = sorted(bmi_dir.glob("*.npz")) if bmi_dir.is_dir() else []
    names = sorted({f.stem.rpartition("__seed")[0] for f in files})[:keep]
    by_shape: dict[tuple[int, int, int], list[Path]] = {}
    for f in files:
        if f.stem.rpartition("__seed")[0] in names:
            with np.load(f) as z:
                rows = len(z["x"]) if limit_rows is None else min(limit_rows, len(z["x"]))
                by_shape.setdefault((z["x"].shape[1], z["y"].shape[1], rows), []).append(f)
    groups = [paths for _, paths in sorted(by_shape.items(), key=lambda kv: (kv[0][0] + kv[0][1], kv[0]))]
    ours = [e for e in estimators if e != TORCH_MIST]
    plan = [(paths, ours) for paths in groups]
    if TORCH_MIST in estimators and groups:
        plan.append(([p for ps in groups for p in ps], [TORCH_MIST]))
    for paths, names_here in plan:

        @_last_only
        def load(paths: list[Path] = paths) -> list:
            out = []
            for p in paths:
                with np.load(p) as z:
                    x, y = z["x"][:limit_rows].astype(np.float32), z["y"][:limit_rows].astype(np.float32)
                    seed = (zlib.crc32(p.stem.rpartition("__seed")[0].encode()) + int(z["seed"])) % (2**31)
                    out.append((x, y, float(z["mi_bits"]), seed))
            return out

        tasks = tuple(f"bmi:{p.stem.rpartition('__seed')[0]}" for p in paths)
        seeds = tuple(int(p.stem.rpartition("__seed")[2]) for p in paths)
        for est in names_here:
            yield Job(est, "bmi", tasks, seeds, load)


def _last_only(fn: Callable[[], list]) -> Callable[[], list]:
    """Keep the last loaded group's samples, so the estimators of one group share one draw (and one sampling
    cost) while only one group is held in memory."""
    def load() -> list:
        if _LAST[0] is not fn:
            _LAST[:] = [fn, fn()]
        return _LAST[1]
    return load


_LAST: list[Any] = [None, None]


def run_ours(name: str, data: list, device: str, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    preset, extra = ESTIMATORS[name]
    threads = 1 if device == "cpu" else None  # one CPU thread, as torch-mist runs, so seconds compare
    params = preset_params(preset, threads=threads, device=device, **{"n_bootstrap": N_BOOTSTRAP, **extra, **overrides})
    xs, ys = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
    results = fit_mine_ensemble(xs, ys, params, [d[3] for d in data])
    return [dict(mi_bits=r.mi_bits, wall_s=r.wall_s, flag=r.flag, steps_run=int(r.curve.size)) for r in results]


def run_torch_mist(data: list, device: str, peer_python: str, workers: int) -> list[dict[str, Any]]:
    """torch-mist on each task, `workers` runner processes at once (task k goes to worker k % workers). Seconds
    per estimate = the job's wall time / its tasks, as for our ensembles (a throughput, both ways); each task's
    own seconds are kept as `task_wall_s`."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / f"w{w}" for w in range(min(workers, len(data)))]
        for d in dirs:
            d.mkdir()
        for k, (x, y, _, seed) in enumerate(data):
            np.savez(dirs[k % len(dirs)] / f"t{k:03d}.npz", x=x, y=y, seed=seed, heldout_fraction=HELDOUT,
                     device=device)
        # Each worker its own TMPDIR: torch-mist 0.2.17 checkpoints its best model to gettempdir()/model_<iteration>_
        # <built-in function time>.pyt (`time.time`, not called), a name concurrent runs share and delete.
        procs = [subprocess.Popen([peer_python, str(HERE / "peer_runners" / "run_peer.py"), "torch-mist-smile",
                                   str(d), str(d / "out.jsonl")], env={**os.environ, "TMPDIR": str(d)})
                 for d in dirs]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"torch-mist runner exited with {codes} (its output is above)")
        by_file = {}
        for d in dirs:
            for line in (d / "out.jsonl").read_text().splitlines():
                by_file[json.loads(line)["task_file"]] = json.loads(line)
    wall = (time.perf_counter() - t0) / len(data)
    rows = []
    for k in range(len(data)):
        r = by_file[f"t{k:03d}.npz"]
        rows.append(dict(mi_bits=r["mi_bits"], wall_s=wall, task_wall_s=r["wall_s"], workers=len(dirs),
                         flag=peer_flag(r["mi_bits"], r["error"]), steps_run=-1, error=r["error"],
                         version=f"{r['package']}=={r['package_version']}"))
    return rows


def default_peer_python(venvs: Path) -> str:
    """torch-mist's venv where there is one (this machine), else this interpreter (its wheels on PYTHONPATH)."""
    venv = venvs / "torch_mist" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run(jobs: list[Job], raw: Path, device: str, peer_python: str, budget_s: float | None,
        overrides: dict[str, Any] | None = None, log: Callable[[str], None] = print, peer_workers: int = 1) -> int:
    """Run the jobs not yet in `raw`, appending one line per (estimator, task, draw); stop starting jobs once
    `budget_s` has passed or the job's expected seconds (its estimator's slowest job so far in this regime)
    would overrun it. A job that raises is recorded (flag "error") and the run goes on. Returns jobs run."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["estimator"], r["task"], r["draw"]) for r in read_rows(raw)}
    start, ran = time.monotonic(), 0
    slowest: dict[tuple[str, str], float] = {}
    for job in jobs:
        if all(k in done for k in job.rows()):
            continue
        elapsed = time.monotonic() - start
        if budget_s is not None and elapsed + slowest.get((job.estimator, job.regime), 0.0) > budget_s:
            log(f"[recommend] budget of {budget_s:.0f} s reached after {elapsed:.0f} s; stopping")
            break
        t0 = time.monotonic()
        data = job.load()
        try:
            rows = (run_torch_mist(data, device, peer_python, peer_workers) if job.estimator == TORCH_MIST
                    else run_ours(job.estimator, data, device, overrides or {}))
        except Exception as exc:  # noqa: BLE001 -- one failure (a device problem, a peer crash) must not cost the whole run
            err = f"{type(exc).__name__}: {exc}"[:300]
            log(f"[recommend] {job.estimator} {job.regime} {job.tasks[0]} failed: {err}\n{traceback.format_exc()}")
            rows = [dict(mi_bits=math.nan, wall_s=math.nan, flag="error", steps_run=-1, error=err)] * len(data)
        took = time.monotonic() - t0
        slowest[(job.estimator, job.regime)] = max(slowest.get((job.estimator, job.regime), 0.0), took)
        with raw.open("a") as fh:
            for (est, task, draw), (_, _, truth, _), r in zip(job.rows(), data, rows):
                fh.write(json.dumps(dict(estimator=est, regime=job.regime, task=task, draw=draw, n=len(data[0][0]),
                                         mi_true=truth, rel_error=abs(r["mi_bits"] - truth) / truth, device=device,
                                         **r)) + "\n")
        ran += 1
        log(f"[recommend] {job.estimator} {job.regime} {job.tasks[0]}..: "
            + " ".join(f"{r['mi_bits']:.2f}" for r in rows) + f" ({took:.0f} s)")
    return ran


def read_rows(raw: Path) -> list[dict[str, Any]]:
    """Finished rows, the first of each (estimator, task, draw) only."""
    rows: dict[tuple, dict[str, Any]] = {}
    for line in raw.read_text().splitlines() if raw.exists() else []:
        if line.strip():
            r = json.loads(line)
            rows.setdefault((r["estimator"], r["task"], r["draw"]), r)
    return list(rows.values())


def _family(task: str) -> str:
    return task.split("-")[0] if not task.startswith("bmi:") else task


def _median(vals: list[float]) -> float:
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


def _fmt(v: float, spec: str = ".3f") -> str:
    return "-" if not math.isfinite(v) else format(v, spec)


def regimes(rows: list[dict[str, Any]]) -> list[str]:
    order = {f"d={d}": k for k, d in enumerate(sorted({int(r["regime"][2:]) for r in rows if r["regime"] != "bmi"}))}
    order["bmi"] = len(order)
    return sorted({r["regime"] for r in rows}, key=order.__getitem__)


def common_keys(rows: list[dict[str, Any]], regime: str, names: list[str]) -> set[tuple[str, int]]:
    """(task, draw) that every one of `names` finished in `regime` (failed rows count as finished: a failure
    is that estimator's result)."""
    sets = [{(r["task"], r["draw"]) for r in rows if r["regime"] == regime and r["estimator"] == n} for n in names]
    return set.intersection(*sets) if sets else set()


#: A median relative error at or above this means the estimates are near 0 (or negative): the regime ranks nothing.
NO_SIGNAL_ERROR = 0.9


def recommendation(rows: list[dict[str, Any]], regime: str) -> str:
    """One paragraph for `regime`, from the numbers: the best of ours by median error on the tasks all finished,
    against torch-mist on those tasks, with the issue's criteria (error <= torch-mist's at <= 2x its seconds on
    the concentrated families; <= 12% on bmi)."""
    present = [n for n in ALL if any(r["estimator"] == n and r["regime"] == regime for r in rows)]
    ours = [n for n in present if n != TORCH_MIST]
    if not ours:
        return f"- **{regime}**: none of our estimators finished a task here."
    keys = common_keys(rows, regime, present)
    if not keys:
        return f"- **{regime}**: no task finished by all of {present}; run longer before recommending."

    def stat(name: str, field: str) -> float:
        return _median([float(r[field]) if r[field] is not None else math.nan for r in rows
                        if r["estimator"] == name and r["regime"] == regime and (r["task"], r["draw"]) in keys])

    err = {n: stat(n, "rel_error") for n in present}
    sec = {n: stat(n, "wall_s") for n in present}
    ranked = sorted(ours, key=lambda n: err[n] if math.isfinite(err[n]) else math.inf)
    best = ranked[0]
    if err[best] >= NO_SIGNAL_ERROR:
        peer = (f" torch-mist SMILE reads no better ({_fmt(err[TORCH_MIST])})." if TORCH_MIST in present else "")
        return (f"- **{regime}** ({len(keys)} tasks finished by all): **no estimator tracks the MI here**; the best "
                f"of ours, `{best}`, has a median error of {_fmt(err[best])} (its estimates are near 0 or below), so "
                f"none is recommended and issue 26's bar cannot be decided by this regime.{peer}")
    text = (f"- **{regime}** ({len(keys)} tasks finished by all): recommend `{best}`, median error "
            f"{_fmt(err[best])} at {_fmt(sec[best], '.1f')} s per estimate; then "
            + ", ".join(f"`{n}` {_fmt(err[n])}" for n in ranked[1:]) + ".")
    if TORCH_MIST in present:
        ok_err = err[best] <= err[TORCH_MIST]
        ratio = sec[best] / sec[TORCH_MIST] if sec[TORCH_MIST] > 0 else math.nan
        text += (f" torch-mist SMILE: {_fmt(err[TORCH_MIST])} at {_fmt(sec[TORCH_MIST], '.1f')} s, so `{best}` "
                 f"{'matches or beats' if ok_err else 'trails'} it at {_fmt(ratio, '.2f')}x its seconds")
        if regime != "bmi":
            text += (" (issue 26's bar, error <= torch-mist's at <= 2x its seconds: "
                     f"{'met' if ok_err and ratio <= 2 else 'not met'}).")
        else:
            text += "."
    if regime == "bmi":
        text += f" Issue 26's bar on bmi, median error <= 12%: {'met' if err[best] <= 0.12 else 'not met'}."
    return text


def report(raw: Path, out: Path, machine: dict[str, Any], machine_text: str | None = None) -> str:
    rows = read_rows(raw)
    names = [n for n in ALL if any(r["estimator"] == n for r in rows)]
    devices = sorted({r.get("device", "cpu") for r in rows})
    lines = ["# Neural MI estimators ranked on concentrated-MI families and bmi's tasks", "",
             "Generated by `benchmarks/neural_recommendation.py` (its docstring says what each task and estimator "
             "is). Cells: median |estimate - truth| / truth over the finished (task, draw) pairs (their count in "
             "parentheses); torch-mist's SMILE (its defaults, hidden_dims=[128]) on the same samples. "
             f"Device: {', '.join(devices) or '-'}. Failed estimates (flag `error`) count as missing in the cells. "
             "Seconds per estimate: a job's wall time / its estimates, for ours an ensemble of every task of one d "
             f"(or one bmi shape) with {N_BOOTSTRAP} bootstrap replicates (the value does not depend on them), for "
             "torch-mist its worker processes side by side (`--peer-workers`); on the CPU, one torch thread each.",
             "", machine_text or (machine_line(machine) + (f", GPU: {machine['gpu']}" if machine.get("gpu") else "")),
             ""]
    if not rows:
        lines.append("No finished estimates yet.")
        md = "\n".join(lines) + "\n"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        return md
    head = ["regime", "tasks"] + [f"`{n}`" for n in names]
    lines += ["## Median relative error", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for regime in regimes(rows):
        mine = [r for r in rows if r["regime"] == regime]
        groups = sorted({_family(r["task"]) for r in mine})
        for g in [*groups, "all"]:
            cells = []
            for n in names:
                sel = [r["rel_error"] for r in mine if r["estimator"] == n and (g == "all" or _family(r["task"]) == g)]
                cells.append(f"{_fmt(_median(sel))} ({len(sel)})" if sel else "-")
            label = f"**all {len(groups)}**" if g == "all" else g.removeprefix("bmi:")
            lines.append(f"| {regime} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Seconds per estimate (median)", "", "| regime | " + " | ".join(f"`{n}`" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for regime in regimes(rows):
        cells = [_fmt(_median([float(r["wall_s"]) for r in rows if r["estimator"] == n and r["regime"] == regime
                               and r["wall_s"] is not None]), ".1f") for n in names]
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["flag"] in ("error", "peer_error")]
    lines += ["", "## Recommendation per regime", "", *(recommendation(rows, g) for g in regimes(rows))]
    if failed:
        lines += ["", f"{len(failed)} estimates failed; first error: {failed[0].get('error', '?')}"]
    md = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    return md


QUICK_OVERRIDES: dict[str, Any] = dict(steps=60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=ALL, help="estimators to run (default: all)")
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    ap.add_argument("--mi", type=float, nargs="+", default=list(MI_BITS))
    ap.add_argument("--families", nargs="+", choices=CONCENTRATED_FAMILIES, default=list(CONCENTRATED_FAMILIES))
    ap.add_argument("--draws", type=int, nargs="+", default=[0])
    ap.add_argument("--samples", type=int, default=N_SAMPLES)
    ap.add_argument("--bmi-dir", type=Path, default=BMI_DIR, help="bmi task dumps (dump_bmi_tasks.py); none: skip")
    ap.add_argument("--no-synthetic", action="store_true", help="bmi's tasks only")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--budget-s", type=float, help="start no new work after this many seconds")
    ap.add_argument("--peer-python", help="python that runs torch-mist (default: its venv, else this python)")
    ap.add_argument("--peer-workers", type=int, default=1, help="torch-mist runner processes at once (GPU: 8)")
    ap.add_argument("--venvs", type=Path, default=HERE.parent.parent / "peers")
    ap.add_argument("--raw", type=Path, default=RESULTS / "neural_recommendation_raw.jsonl")
    ap.add_argument("--out", type=Path, default=RESULTS / "neural_recommendation.md")
    ap.add_argument("--report", action="store_true", help="only write the table from what is finished")
    ap.add_argument("--machine-text", help="with --report: the machine line to print (the machine the rows ran on, "
                                           "when the table is written elsewhere)")
    ap.add_argument("--quick", action="store_true",
                    help="d = 16, N = 1,000, MI 2 bits, 60 steps for ours, 2 bmi tasks cut to 1,000 rows; "
                         "raw and table into a temp dir unless --raw/--out are given")
    args = ap.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)
    machine = machine_info(threads=1 if args.device == "cpu" else None)
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    names = args.only or list(ALL)
    overrides: dict[str, Any] = {}
    limit_rows = None
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="neural_recommendation_"))
        if args.raw == ap.get_default("raw"):
            args.raw = tmp / "raw.jsonl"
        if args.out == ap.get_default("out"):
            args.out = tmp / "table.md"
        args.dims, args.mi, args.samples, args.draws = [16], [2.0], 1000, [0]
        overrides, limit_rows = QUICK_OVERRIDES, 1000
    if not args.report:
        jobs = [] if args.no_synthetic else list(
            synthetic_jobs(names, concentrated_tasks(tuple(args.dims), tuple(args.mi), tuple(args.families)), args.samples,
                           args.draws))
        bmi = list(bmi_jobs(names, args.bmi_dir, limit_rows, keep=2 if args.quick else None))
        small = [j for j in jobs if int(j.regime[2:]) <= 256]
        ordered = small + bmi + [j for j in jobs if j not in small]  # d <= 256, bmi's tasks, then wider
        run(ordered, args.raw, args.device, args.peer_python or default_peer_python(args.venvs), args.budget_s,
            overrides, peer_workers=args.peer_workers)
    machine["loadavg_at_end"] = list(os.getloadavg())
    print(report(args.raw, args.out, machine, args.machine_text if args.report else None))
    print(f"raw: {args.raw}\ntable: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
