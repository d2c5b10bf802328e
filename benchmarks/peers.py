"""Peer MI toolkits (torch-mist, latentmi) on the validation grid's own tasks, each in its own venv.

Why: our estimators' errors mean little without a reference point; the issue that asked for this saw a peer's
SMILE do far better than our default on tasks up to d = 768. Here each peer runs with its documented defaults on
exactly the tasks (same seeds, same samples) that `ie-ray validate` scores ours on, and its rows land in
`results/validation/peers/` with the columns of `validation.parquet`, so `ie-ray validate` puts them in the same
tables (estimator names start with "peer:"). Nothing of the peers is imported here: each runs in its own venv
through `peer_runners/run_peer.py` (make the venvs with `peer_runners/setup_venvs.sh`), on one torch thread
like ours, and the package versions are recorded per row.

    PYTHONPATH=. python benchmarks/peers.py --peer torch-mist-smile --dims 16 64 256 768 --samples 2000 20000
    PYTHONPATH=. python benchmarks/peers.py --peer latentmi --dims 16 256 768 --mi 1 4 --samples 2000
    PYTHONPATH=. python benchmarks/peers.py --quick     # one small task per peer, seconds; writes nothing kept

A run resumes: finished tasks are kept per line in `<out>/raw/<peer>_n<N>.jsonl` and never rerun.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ie_ray import store
from ie_ray.estimators.benchmark import Task, make_tasks
from ie_ray.validate import ValidationConfig

HERE = Path(__file__).resolve().parent
DEFAULT_VENVS = HERE.parent.parent / "peers"
VENV_OF = {"torch-mist-smile": "torch_mist", "latentmi": "latentmi"}
OUT = HERE.parent / "results" / "validation" / "peers"


def grid_tasks(dims: list[int], mi_bits: list[float], families: list[str]) -> list[Task]:
    """The validation grid's tasks with the seeds `ie-ray validate` gives them: `make_tasks` derives a task's
    seed from its position in the grid's dims, MI and family lists, so the default dims and MI lists are used
    whole and then filtered, and `families` must be the list the validation run was given, in its order (the
    default grid's, or e.g. ["lowrank"] for `ie-ray validate --families lowrank`)."""
    grid = ValidationConfig()
    tasks = make_tasks(list(grid.dims), list(grid.mi_bits), list(families), grid.seed)
    return [t for t in tasks if t.d in dims and t.mi_bits in mi_bits]


def peer_flag(mi_bits: float, error: str) -> str:
    """`peer_error` when the peer failed or returned a non-finite value; `below_zero` for a negative reading (MI
    cannot be negative, and a peer reports no interval to tell noise from failure, so it is never `ok`)."""
    if error or not math.isfinite(mi_bits):
        return "peer_error"
    return "below_zero" if mi_bits < 0 else "ok"


def run_peer(peer: str, tasks: list[Task], n: int, venvs: Path, out: Path, heldout: float) -> pd.DataFrame:
    """Write the task samples, run the peer's venv on them, and return its rows in the validation columns."""
    raw = out / "raw" / f"{peer}_n{n}.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    python = venvs / VENV_OF[peer] / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no venv for {peer} at {python.parent.parent}; run "
                         f"`bash benchmarks/peer_runners/setup_venvs.sh {venvs}` first")
    by_file = {f"{t.name}.npz": t for t in tasks}
    with tempfile.TemporaryDirectory() as tmp:
        done = {json.loads(l)["task_file"] for l in raw.read_text().splitlines() if l.strip()} if raw.exists() else set()
        for name, task in by_file.items():
            if name not in done:
                x, y = task.sample(n)  # the same draw `ie-ray validate` scores (sample_seed 0)
                np.savez(Path(tmp) / name, x=x, y=y, seed=task.seed % (2**31), heldout_fraction=heldout)
        subprocess.run([str(python), str(HERE / "peer_runners" / "run_peer.py"), peer, tmp, str(raw)], check=True)
    rows = []
    for line in raw.read_text().splitlines():
        r = json.loads(line)
        task = by_file.get(r["task_file"])
        if task is None:
            continue
        err = r["mi_bits"] - task.mi_bits
        rows.append(dict(
            family=task.family, d=task.d, n_samples=n, true_mi_bits=task.mi_bits, task=task.name,
            estimator=f"peer:{peer}", package_default=False, mi_bits=r["mi_bits"], ci_low=math.nan,
            ci_high=math.nan, heldout_bits=r["mi_bits"], max_train_bits=math.nan, last_train_bits=math.nan,
            flag=peer_flag(r["mi_bits"], r["error"]), bound_cap_bits=math.inf,
            error_bits=err, abs_error_bits=abs(err), rel_error=err / task.mi_bits, covered=False, steps=-1,
            batch_size=-1, wall_s=r["wall_s"], seed=task.seed % (2**31),
            peer_version=f"{r['package']}=={r['package_version']} (torch {r['torch_version']})", peer_error=r["error"],
        ))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", choices=sorted(VENV_OF), nargs="+", default=sorted(VENV_OF))
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 256, 768])
    ap.add_argument("--mi", type=float, nargs="+", default=list(ValidationConfig().mi_bits))
    ap.add_argument("--families", nargs="+", default=list(ValidationConfig().families),
                    help="the families list of the validation run to match, in its order (default: the grid's)")
    ap.add_argument("--samples", type=int, nargs="+", default=[2000])
    ap.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="where setup_venvs.sh made the venvs")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quick", action="store_true", help="one d=4 task per peer at N=600 into a temp dir")
    args = ap.parse_args(argv)
    if args.quick:
        out = Path(tempfile.mkdtemp())
        for peer in args.peer:
            frame = run_peer(peer, [Task("gaussian", 4, 1.0, 3)], 600, args.venvs, out, 0.2)
            print(frame[["estimator", "task", "mi_bits", "wall_s", "peer_version"]].to_string(index=False))
        return 0
    heldout = ValidationConfig().params.heldout_fraction
    tasks = grid_tasks(args.dims, args.mi, args.families)
    for peer in args.peer:
        for n in args.samples:
            frame = run_peer(peer, tasks, n, args.venvs, args.out, heldout)
            path = args.out / f"{peer}_n{n}.parquet"
            if path.exists():  # keep rows of other selections made earlier into the same file
                old = pd.read_parquet(path)
                frame = pd.concat([old[~old.task.isin(frame.task)], frame], ignore_index=True)
            store.write_table(path, frame, csv=True)
            print(f"[peers] {peer} N={n}: {len(frame)} tasks -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
