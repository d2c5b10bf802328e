"""One block of a paper-scale ICL cell through the reducer's task body: how long the smoothed MI and the entropy
limit of every (position, level) job of one layer take, and how the time splits between macro jobs with many
distinct prefixes, macro jobs with few (weighted atoms) and micro jobs (atoms: one per distinct token).

    PYTHONPATH=. python benchmarks/reduce_block.py --n 20000 --shots 12          # this CPU (~minutes)
    PYTHONPATH=. python benchmarks/reduce_block.py --n 20000 --device cuda       # a GPU (benchmarks/gpu_check.sh)

States are synthetic with the structure that matters for cost: a list of 25 entities and a separator, as the
country task; a macro state is a deterministic function of the prefix (a decayed sum of token embeddings, plus a
position term), so a position's distinct states are its distinct prefixes, like a real block's; a micro state is a
function of the token. Width 576 (SmolLM2). The task body is `fit_task` (what a Ray worker runs), in-process.
Writes benchmarks/results/reduce_block_<device>_<n>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"


def synthetic_block(n: int, shots: int, d: int, seed: int = 0):
    """(input_ids, macro_pre, macro_post, micro_pre, micro_post, token_row) of one block, float32."""
    from ie_ray.reduce.layer_states import LayerStates

    rng = np.random.default_rng(seed)
    entities, comma = np.arange(1, 26), 0
    ids = np.empty((n, 2 * shots), dtype=np.int64)
    for i in range(n):
        ids[i, 0::2] = rng.choice(entities, size=shots, replace=False)
    ids[:, 1::2] = comma
    emb_in, emb_out = rng.normal(size=(26, d)), rng.normal(size=(26, d))
    pos = rng.normal(size=(2 * shots, d))
    decay = 0.7
    pre = np.zeros((n, 2 * shots, d), dtype=np.float32)
    post = np.zeros((n, 2 * shots, d), dtype=np.float32)
    acc_in, acc_out = np.zeros((n, d)), np.zeros((n, d))
    for t in range(2 * shots):
        acc_in = decay * acc_in + emb_in[ids[:, t]]
        acc_out = decay * acc_out + np.tanh(emb_out[ids[:, t]] + 0.5 * acc_in)
        pre[:, t], post[:, t] = acc_in + pos[t], acc_out + pos[t]
    unique = np.unique(ids)
    micro_pre = (emb_in[unique] + pos[0]).astype(np.float32)
    micro_post = (np.tanh(emb_out[unique] + 0.5 * emb_in[unique]) + pos[0]).astype(np.float32)
    return LayerStates(0, ids, tuple(range(2 * shots)), pre, post, micro_pre, micro_post,
                       np.searchsorted(unique, ids))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--d", type=int, default=576)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the reducer's tasks use 1 per CPU)")
    parser.add_argument("--taus", default="0.25,1.0")
    parser.add_argument("--reported", default="1.0", help="taus with bootstrap + leave-one-out besides the headline")
    args = parser.parse_args(argv)

    import torch

    from ie_ray.estimators.smoothed import SmoothedParams
    from ie_ray.reduce import EntropyLimitReading, SmoothedMIReading, plan_jobs
    from ie_ray.reduce.scheduler import fit_task

    torch.set_num_threads(args.threads)
    taus = tuple(float(t) for t in args.taus.split(","))
    reported = tuple(float(t) for t in args.reported.split(",") if t)
    start = time.perf_counter()
    states = synthetic_block(args.n, args.shots, args.d)
    build_s = time.perf_counter() - start
    jobs = plan_jobs(states.input_ids, [0], list(states.positions), [0], with_micro=True)
    params = SmoothedParams(tau=taus[0], taus=taus, reported_taus=reported, device=args.device)
    smoothed = SmoothedMIReading(params, "pooled_no_sink", num_cpus=args.threads)
    limit = EntropyLimitReading(1e-3, "pooled_no_sink")
    groups = {
        "macro, > 1,000 distinct prefixes": [j for j in jobs if j.level == "macro" and j.n_distinct > 1000],
        "macro, <= 1,000 distinct prefixes": [j for j in jobs if j.level == "macro" and 1 < j.n_distinct <= 1000],
        "micro (atoms: distinct tokens)": [j for j in jobs if j.level == "micro" and j.n_distinct > 1],
    }
    rows = []
    for name, group in groups.items():
        start = time.perf_counter()
        out = fit_task(smoothed, states, tuple(group)).rows
        seconds = time.perf_counter() - start
        draws = [r.n_draws for r in out if r.tau == taus[0]]
        rows.append(dict(group=name, jobs=len(group), seconds=seconds, per_job_s=seconds / max(1, len(group)),
                         median_draws_headline=float(np.median(draws)) if draws else 0.0,
                         flags=sorted({r.flag for r in out})))
    start = time.perf_counter()
    fit_task(limit, states, tuple(jobs))
    limit_s = time.perf_counter() - start
    total = sum(r["seconds"] for r in rows) + limit_s
    full = rows[0]["per_job_s"]
    result = dict(n=args.n, shots=args.shots, d=args.d, device=args.device, threads=args.threads, taus=taus,
                  reported=reported, build_s=build_s, groups=rows, entropy_limit_s=limit_s, block_s=total,
                  machine=dict(cpus=os.cpu_count(), loadavg=os.getloadavg(), torch=torch.__version__,
                               platform=platform.platform(), date=time.strftime("%Y-%m-%d %H:%M")))
    lines = [f"# One block of the ICL cell at N = {args.n:,}, {2 * args.shots} positions, d = {args.d}, "
             f"{args.device}, {args.threads} torch thread(s)", "",
             f"taus {list(taus)} (headline {taus[0]}), bootstrap + leave-one-out at {sorted({taus[0], *reported})}", "",
             "| jobs | count | seconds | per job (s) | per job / full-N macro job | median draws (headline) | flags |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['jobs']} | {r['seconds']:.1f} | {r['per_job_s']:.2f} | "
                     f"{r['per_job_s'] / full:.3f} | {r['median_draws_headline']:.0f} | {', '.join(r['flags'])} |")
    lines += [f"| entropy limit, every job | {len(jobs)} | {limit_s:.1f} | | | | |", "",
              f"**One block: {total:.1f} s** ({total / 60:.1f} min); x 30 blocks on 2 such workers: "
              f"{30 * total / 2 / 60:.0f} min.", "",
              f"Machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d %H:%M')}.", ""]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    stem = OUT / f"reduce_block_{args.device}_{args.n}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
