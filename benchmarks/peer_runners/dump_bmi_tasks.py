"""Dump bmi's benchmark tasks (the `benchmark-mi` package) to .npz files, from bmi's own venv (it needs jax,
never a dependency of ie_ray), so that benchmarks/neural_recommendation.py can score any estimator on them
without bmi: `<task id>__seed<k>.npz` with x, y (float32), seed, mi_bits (bmi's closed-form MI, converted from
nats), task_id and task_name.

    python3.11 -m venv ../peers/bmi-venv && ../peers/bmi-venv/bin/pip install benchmark-mi==0.1.3
    ../peers/bmi-venv/bin/python benchmarks/peer_runners/dump_bmi_tasks.py .gpu_data/bmi           # the 10 below
    ../peers/bmi-venv/bin/python benchmarks/peer_runners/dump_bmi_tasks.py .gpu_data/bmi40 --all   # its 40

TASKS: ten of bmi 0.1.3's forty (BENCHMARK_TASKS), one or two per kind of its suite (bivariate normal, a
bimodal mixture, a wiggly and a half-cube warp, an embedding, dense and sparse multinormals up to 25 x 25, a
heavy-tailed Student-t with its asinh warp, a spiral), small enough to carry to a GPU machine at n = 10,000
(all forty at three seeds are ~70 MB).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

TASKS = (
    "1v1-normal-0.75",
    "1v1-bimodal-0.75",
    "wiggly-1v1-normal-0.75",
    "swissroll_x-normal_cdf-1v1-normal-0.75",
    "multinormal-dense-5-5-0.5",
    "multinormal-sparse-25-25-2-2.0",
    "student-identity-5-5-2",
    "asinh-student-identity-3-3-2",
    "half_cube-multinormal-sparse-25-25-2-2.0",
    "spiral-multinormal-sparse-5-5-2-2.0",
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--all", action="store_true", help="every task of BENCHMARK_TASKS, not only TASKS")
    args = ap.parse_args(argv)
    from bmi.benchmark import BENCHMARK_TASKS

    ids = list(BENCHMARK_TASKS) if args.all else list(TASKS)
    missing = sorted(set(ids) - set(BENCHMARK_TASKS))
    if missing:
        raise SystemExit(f"bmi has no task(s) {missing}; its ids are {sorted(BENCHMARK_TASKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for task_id in ids:
        task = BENCHMARK_TASKS[task_id]
        for seed in args.seeds:
            x, y = task.sample(args.samples, seed=seed)
            np.savez_compressed(args.out / f"{task_id}__seed{seed}.npz", x=np.asarray(x, np.float32),
                                y=np.asarray(y, np.float32), seed=seed,
                                mi_bits=task.mutual_information / math.log(2.0), task_id=task_id,
                                task_name=task.name)
        print(f"{task_id}: dims {task.dim_x} x {task.dim_y}, MI {task.mutual_information / math.log(2):.3f} bits")


if __name__ == "__main__":
    main()
