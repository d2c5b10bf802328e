"""Why torch-mist's SMILE reads closer than our best on the low-rank family: its recipe against ours, one
difference at a time, on the same samples, in one run.

Issue 26, item 1: on `ie-ray validate --families lowrank` (MI in 4 coordinate pairs of d, then random rotations)
at N = 20,000, torch-mist 0.2.17's SMILE had a median relative error of 0.09 (d = 64) and 0.36 (d = 256) against
0.17 and 0.70 for our best, `js-es`. torch-mist's recipe, read from its source (`torch_mist/utils/estimation.py`,
`utils/train/model.py`, `utils/train/utils.py`, `estimators/discriminative/implementations/smile.py`, `js.py`,
`baseline/base.py`, `critic/factories.py`, `nn.py`, `utils/indexing.py`, `utils/evaluation/model.py`) as
`benchmarks/peer_runners/run_peer.py` calls it (`estimate_mi(data=train 80%, test_data=held-out 20%,
estimator="smile", hidden_dims=[128])`), difference by difference with ours (`js-es`):

| difference | torch-mist (its defaults) | ours (`js-es`) | MINEParams that switch it in |
|---|---|---|---|
| readout | SMILE: per batch of 128 held-out rows (in order), mean T(x_i, y_i) - log mean exp clip(T(x_i, y_i+1), -5, 5) (one marginal pair per row, y shifted by one row in the batch), averaged over batches | plain DV on all held-out rows, 512 cyclic shifts (~2M marginal pairs) | readout_clip=5, readout_batch=128 |
| stopping | epochs over a shuffled DataLoader; after each epoch the readout on a 10% validation slice of the training split; patience 1 (2% of its 45 epochs, at least 1), tolerance 0.001 nats; up to 5,000 iterations; best weights restored | 500 random minibatches; DV on a 20% slice every 20 steps; best checkpoint kept, never stops early | sampling="epochs", early_stop_fraction=0.1, early_stop_every=None, early_stop_patience=1, steps=5000 |
| learning rate | Adam 5e-4, constant, no warmup | Adam 3e-3, 5 warmup steps, polynomial decay (power 3) to 1e-7 | lr=5e-4, lr_end=5e-4, warmup_steps=0 |
| batch | 128 | 256 | batch_size=128 |
| gradient clipping | none | global norm 1.0 per estimator | grad_clip=None |
| initialisation | nn.Linear default: weights and biases U(+-1/sqrt(fan_in)) | Xavier-normal weights, zero biases | init="torch" |
| critic | joint MLP concat(x, y) -> 128 ReLU -> 1 (pyro DenseNN) | joint MLP concat(x, y) -> 512 LeakyReLU(0.01) -> 1 | hidden_width=128, activation="relu" |
| inputs | raw | standardised with train-split statistics | standardize=False |
| training objective | JS (softplus), one marginal pair per row (y shifted by one row) | JS, one marginal pair per row (a random permutation) | same in distribution: not a difference |

Not reproduced: torch-mist's best validation value starts at 0 (a run whose validation never exceeds 0 keeps its
last weights and stops after its first epoch; ours starts from the first reading), and its last, shorter batch
of an epoch (64 rows) is kept here too.

Each variant is `js-es` with one difference switched in ("+ X"), then all of them in the order of the table
("cumulative"), plus torch-mist itself from its own venv on the same samples (the peers' runner pattern). Tasks:
the lowrank tasks of `ie-ray validate --families lowrank` (same seeds), MI 1, 2, 4, 8 bits, d = 64 and 256,
N = 20,000, sample draws 0 and 1 (`--draws`); our estimators run on one torch thread, as torch-mist does. A
variant's MI values for one (d, draw) are one ensemble (seconds per estimate = its wall time / the ensemble size).

    PYTHONPATH=. python benchmarks/smile_dissection.py                 # resumes; then writes the table
    PYTHONPATH=. python benchmarks/smile_dissection.py --only base torch-mist --dims 64
    PYTHONPATH=. python benchmarks/smile_dissection.py --report        # the table from what is finished
    PYTHONPATH=. python benchmarks/smile_dissection.py --quick         # seconds, into a temp dir

Finished (variant, d, draw) groups are kept one JSON line each in `results/smile_dissection_raw.jsonl`, so an
interrupted run resumes; `results/smile_dissection.md` is the table.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line
from peers import DEFAULT_VENVS, grid_tasks

from ie_ray.estimators import fit_mine_ensemble
from ie_ray.estimators.benchmark import Task
from ie_ray.estimators.presets import preset_params

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The differences, in the order the cumulative rows add them (label, what it is, MINEParams overrides).
DIFFERENCES: list[tuple[str, str, dict[str, Any]]] = [
    ("readout", "torch-mist's readout: clipped (tau 5) DV per batch of 128, one shifted marginal per row",
     dict(readout_clip=5.0, readout_batch=128)),
    ("stopping", "epochs, validation (10% slice) each epoch, patience 1, up to 5,000 steps",
     dict(sampling="epochs", early_stop_fraction=0.1, early_stop_every=None, early_stop_patience=1, steps=5000)),
    ("lr", "Adam 5e-4 constant, no warmup", dict(lr=5e-4, lr_end=5e-4, warmup_steps=0)),
    ("batch", "batch 128", dict(batch_size=128)),
    ("no-clip", "no gradient clipping", dict(grad_clip=None)),
    ("init", "nn.Linear's default initialisation", dict(init="torch")),
    ("critic", "critic concat(x, y) -> 128 ReLU -> 1", dict(hidden_width=128, activation="relu")),
    ("raw", "no standardisation", dict(standardize=False)),
]
BASE = "js-es"
TORCH_MIST = "torch-mist"
MI_BITS = (1.0, 2.0, 4.0, 8.0)


def variants() -> dict[str, dict[str, Any]]:
    """Variant name -> MINEParams overrides of `js-es`: base, each difference alone, the cumulative steps."""
    out: dict[str, dict[str, Any]] = {"base": {}}
    for label, _, overrides in DIFFERENCES:
        out[f"+{label}"] = overrides
    cumulative: dict[str, Any] = {}
    for k, (label, _, overrides) in enumerate(DIFFERENCES):
        cumulative = {**cumulative, **overrides}
        if 0 < k < len(DIFFERENCES) - 1:  # the last step is the whole recipe, RECIPE
            out["cumulative:" + "+".join(lbl for lbl, _, _ in DIFFERENCES[: k + 1])] = dict(cumulative)
    out[RECIPE] = dict(cumulative)
    for label, _, overrides in DIFFERENCES:  # the whole recipe with one difference back at ours
        out[f"{RECIPE}-{label}"] = {k: v for k, v in cumulative.items() if k not in overrides}
    return out


#: The whole recipe: every difference switched in (the last cumulative row, under a short name).
RECIPE = "recipe"


def run_order() -> list[str]:
    """What answers the question first: the peer with its readouts swapped, the whole recipe in our code, the
    recipe with one difference reverted (cheap: its critic is 128 wide), then ours and ours plus one difference
    (ours trains a 512-wide critic: the expensive rows), then the cumulative steps."""
    names = list(variants())
    first = [TORCH_MIST, RECIPE, *[f"{RECIPE}-{lbl}" for lbl, _, _ in DIFFERENCES], "base", "+readout", "+stopping",
             "+critic"]
    return first + [n for n in names if n not in first and not n.startswith("cumulative:")] + [
        n for n in names if n.startswith("cumulative:") and n not in first]


def run_ours(name: str, tasks: list[Task], n: int, draw: int) -> list[dict[str, Any]]:
    params = preset_params(BASE, threads=1, **variants()[name])
    xs, ys = zip(*(t.sample(n, draw) for t in tasks))
    seeds = [(t.seed + draw) % (2**31) for t in tasks]
    start = time.perf_counter()
    results = fit_mine_ensemble(np.stack(xs), np.stack(ys), params, seeds)
    wall = (time.perf_counter() - start) / len(tasks)
    return [dict(mi_bits=r.mi_bits, wall_s=wall, flag=r.flag, steps_run=int(r.curve.size)) for r in results]


def run_torch_mist(tasks: list[Task], n: int, draw: int, venvs: Path, heldout: float) -> list[dict[str, Any]]:
    python = venvs / "torch_mist" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no torch-mist venv at {python.parent.parent}; run "
                         f"`bash benchmarks/peer_runners/setup_venvs.sh {venvs}` first")
    with tempfile.TemporaryDirectory() as tmp:
        for t in tasks:
            x, y = t.sample(n, draw)
            np.savez(Path(tmp) / f"{t.name}.npz", x=x, y=y, seed=(t.seed + draw) % (2**31), heldout_fraction=heldout)
        raw = Path(tmp) / "out.jsonl"
        subprocess.run([str(python), str(HERE / "peer_runners" / "run_peer.py"), "torch-mist-smile-readouts", tmp,
                        str(raw)], check=True)
        by_file = {json.loads(line)["task_file"]: json.loads(line) for line in raw.read_text().splitlines()}
    rows = []
    for t in tasks:
        r = by_file[f"{t.name}.npz"]
        rows.append(dict(mi_bits=r["mi_bits"], wall_s=r.get("fit_wall_s", r["wall_s"]),
                         flag="peer_error" if r["error"] else "ok", steps_run=-1,
                         full_dv_bits=r.get("full_dv_bits", math.nan),
                         full_dv_clip5_bits=r.get("full_dv_clip5_bits", math.nan),
                         version=f"{r['package']}=={r['package_version']} (torch {r['torch_version']})"))
    return rows


def run(names: list[str], dims: list[int], draws: list[int], n: int, raw: Path, venvs: Path) -> None:
    raw.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["variant"], r["d"], r["draw"]) for r in _read(raw)}
    heldout = preset_params(BASE).heldout_fraction
    for name in names:
        for d in dims:
            tasks = grid_tasks([d], list(MI_BITS), ["lowrank"])
            for draw in draws:
                if (name, d, draw) in done:
                    continue
                t0 = time.time()
                rows = (run_torch_mist(tasks, n, draw, venvs, heldout) if name == TORCH_MIST
                        else run_ours(name, tasks, n, draw))
                with raw.open("a") as fh:
                    for t, r in zip(tasks, rows):
                        fh.write(json.dumps(dict(variant=name, d=d, draw=draw, n=n, mi_true=t.mi_bits, task=t.name,
                                                 rel_error=abs(r["mi_bits"] - t.mi_bits) / t.mi_bits, **r)) + "\n")
                print(f"[dissection] {name} d={d} draw={draw}: "
                      + " ".join(f"{r['mi_bits']:.2f}" for r in rows) + f" ({time.time() - t0:.0f} s)", flush=True)


def _read(raw: Path) -> list[dict[str, Any]]:
    """The finished rows, the first of each (variant, d, draw, task) only (two processes may both have run one)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for line in raw.read_text().splitlines() if raw.exists() else []:
        if line.strip():
            r = json.loads(line)
            rows.setdefault((r["variant"], r["d"], r["draw"], r["task"]), r)
    return list(rows.values())


#: torch-mist's own critic read out as ours reads (all off-diagonal held-out pairs): (field, row name, what).
PEER_READOUTS = [
    ("full_dv_bits", "torch-mist critic, our readout", "torch-mist's trained critic, DV over all held-out pairs"),
    ("full_dv_clip5_bits", "torch-mist critic, all pairs clipped",
     "torch-mist's trained critic, DV clipped at 5 over all held-out pairs"),
]


def report(raw: Path, out: Path, machine: dict[str, Any]) -> str:
    rows = _read(raw)
    for r in [r for r in rows if r["variant"] == TORCH_MIST]:
        for key, name, _ in PEER_READOUTS:
            if math.isfinite(r.get(key, math.nan)):
                rows.append({**r, "variant": name, "mi_bits": r[key],
                             "rel_error": abs(r[key] - r["mi_true"]) / r["mi_true"]})
    rows += _cached_base(rows)
    dims = sorted({r["d"] for r in rows})
    described = {f"+{label}": what for label, what, _ in DIFFERENCES}
    described[CACHED] = "`js-es` from results/validation-lowrank (same samples and seeds as draw 0; not this run)"
    described.update({f"{RECIPE}-{label}": f"the recipe with ours for: {what}" for label, what, _ in DIFFERENCES})
    described.update({name: what for _, name, what in PEER_READOUTS})
    described[RECIPE] = "torch-mist's recipe in our code (every difference switched in)"

    def cell(name: str, d: int, key: str) -> float:
        vals = [r[key] for r in rows if r["variant"] == name and r["d"] == d]
        return float(np.median(vals)) if vals else math.nan

    def count(name: str, d: int) -> int:
        return sum(1 for r in rows if r["variant"] == name and r["d"] == d)

    head = ["variant", "what"] + [f"d={d}: median rel. error (n)" for d in dims] + [
        f"d={d}: vs torch-mist" for d in dims] + [f"d={d}: s / estimate" for d in dims]
    lines = ["# SMILE dissection: torch-mist's recipe against ours on the low-rank family", "",
             "Generated by `benchmarks/smile_dissection.py` (its docstring lists every default read from torch-mist's "
             "source). Median |estimate - truth| / truth over the finished tasks (n), lowrank family, MI "
             f"{', '.join(f'{m:g}' for m in MI_BITS)} bits, N = {rows[0]['n'] if rows else '?'}; 'vs torch-mist' is "
             "the variant's median error / torch-mist's in this run, on the same samples; seconds per estimate on one "
             "torch thread of the shared machine (load below), ours as ensemble wall time / ensemble size.",
             "", machine_line(machine), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = [TORCH_MIST, *(name for _, name, _ in PEER_READOUTS), CACHED, *variants()]
    for name in order:
        if not any(r["variant"] == name for r in rows):
            continue
        what = ("torch-mist SMILE, its defaults, hidden_dims=[128]" if name == TORCH_MIST
                else "ours (`js-es`)" if name == "base" else described.get(name, "all differences up to the last named"))
        errs = [cell(name, d, "rel_error") for d in dims]
        ref = [cell(TORCH_MIST, d, "rel_error") for d in dims]
        lines.append("| " + " | ".join([name, what]
                                       + [f"{e:.3f} ({count(name, d)})" for e, d in zip(errs, dims)]
                                       + [f"{e / r:.2f}" if r > 0 else "-" for e, r in zip(errs, ref)]
                                       + [f"{cell(name, d, 'wall_s'):.1f}" for d in dims]) + " |")
    lines += ["", "Per task (estimate in bits, truth in the task name; mean over draws):", "",
              "| variant | " + " | ".join(sorted({r['task'] for r in rows}, key=_task_key)) + " |",
              "|---|" + "---|" * len({r['task'] for r in rows})]
    tasks = sorted({r["task"] for r in rows}, key=_task_key)
    for name in order:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        vals = [np.mean([r["mi_bits"] for r in mine if r["task"] == t]) if any(r["task"] == t for r in mine)
                else math.nan for t in tasks]
        lines.append(f"| {name} | " + " | ".join("-" if math.isnan(v) else f"{v:.2f}" for v in vals) + " |")
    md = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    return md


#: `js-es` as `ie-ray validate --families lowrank` read it (draw 0 is the validation run's sample, same seeds).
CACHED = "js-es (validation run)"
VALIDATION_LOWRANK = HERE.parent / "results" / "validation-lowrank" / "validation.parquet"


def _cached_base(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The validation run's `js-es` rows for the draw-0 tasks of this run (what "base" reads on draw 0), so the
    table has our reference even where "base" did not run; labelled as not from this run."""
    if not VALIDATION_LOWRANK.exists():
        return []
    import pandas as pd

    frame = pd.read_parquet(VALIDATION_LOWRANK)
    tasks = {(r["task"], r["n"]) for r in rows if r["draw"] == 0}
    wanted = np.array([(t, n) in tasks for t, n in zip(frame.task, frame.n_samples)], dtype=bool)
    frame = frame[(frame.estimator == BASE).to_numpy() & wanted]
    return [dict(variant=CACHED, d=int(r.d), draw=0, n=int(r.n_samples), mi_true=float(r.true_mi_bits), task=r.task,
                 mi_bits=float(r.mi_bits), wall_s=float(r.wall_s), rel_error=abs(float(r.rel_error)), flag=r.flag)
            for r in frame.itertuples()]


def _task_key(name: str) -> tuple[int, float]:
    _, d, mi = name.split("-")
    return int(d[1:]), float(mi[:-3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", help=f"variants to run (default: all, in run order); {TORCH_MIST} = the peer")
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--venvs", type=Path, default=DEFAULT_VENVS)
    ap.add_argument("--raw", type=Path, default=RESULTS / "smile_dissection_raw.jsonl")
    ap.add_argument("--out", type=Path, default=RESULTS / "smile_dissection.md")
    ap.add_argument("--report", action="store_true", help="only write the table from what is finished")
    ap.add_argument("--quick", action="store_true", help="d = 8, N = 1,000, 60 steps, into a temp dir")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    machine = machine_info(threads=1)
    if args.quick:
        tmp = Path(tempfile.mkdtemp())
        global MI_BITS
        MI_BITS = (1.0, 2.0)
        for name in ["base", *variants()][-2:]:
            _quick(name, tmp / "raw.jsonl")
        print(report(tmp / "raw.jsonl", tmp / "out.md", machine))
        return 0
    if not args.report:
        names = args.only or run_order()
        unknown = sorted(set(names) - set(variants()) - {TORCH_MIST})
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; choose from {[TORCH_MIST, *variants()]}")
        run(names, args.dims, args.draws, args.samples, args.raw, args.venvs)
    machine["loadavg_at_end"] = list(os.getloadavg())
    print(report(args.raw, args.out, machine))
    return 0


def _quick(name: str, raw: Path) -> None:
    """A tiny run of one variant (short training) to check the wiring, not the numbers."""
    tasks = [replace(t, d=8) for t in grid_tasks([16], list(MI_BITS), ["lowrank"])]
    params = preset_params(BASE, threads=1, **{**variants()[name], "steps": 60})
    xs, ys = zip(*(t.sample(1000) for t in tasks))
    results = fit_mine_ensemble(np.stack(xs), np.stack(ys), params, [t.seed for t in tasks])
    with raw.open("a") as fh:
        for t, r in zip(tasks, results):
            fh.write(json.dumps(dict(variant=name, d=t.d, draw=0, n=1000, mi_true=t.mi_bits, task=t.name,
                                     rel_error=abs(r.mi_bits - t.mi_bits) / t.mi_bits, mi_bits=r.mi_bits,
                                     wall_s=r.wall_s, flag=r.flag, steps_run=int(r.curve.size))) + "\n")


if __name__ == "__main__":
    sys.exit(main())
