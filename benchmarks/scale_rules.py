"""Measure what the noise-scale rule does to the smoothed MI on real block states (the choice behind
`ie_ray/noise_scale.py`'s default).

    python benchmarks/scale_rules.py --run results/runs/smoke-<hash>   # a finished default sweep (its cache)

For each captured block of the run's first cell, the smoothed MI of every macro and micro (position, level) at
the tau grid under four rules: the three of `noise_scale.SCALE_RULES` and `all_variance_no_sink` (the plain
per-dimension std of the non-sink positions pooled together, which adds the differences BETWEEN positions to the
spread; rejected). Writes results/smoothed-scale-rules/scale_rules.csv and a pivot in README.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ie_ray import store  # noqa: E402
from ie_ray.estimators.smoothed import Scale, SmoothedParams, smoothed_mi_batch  # noqa: E402
from ie_ray.noise_scale import SCALE_RULES, block_scale, sink_positions  # noqa: E402
from ie_ray.reduce import plan_jobs  # noqa: E402

RULES = (*SCALE_RULES, "all_variance_no_sink")


def _cell(run: Path) -> tuple[Path, Path, np.ndarray, list[int]]:
    manifest = json.loads((run / "manifest.json").read_text())
    name, cell = next(iter(manifest["corpora"].items()))
    model = name.split("/")[0]
    corpus = pd.read_parquet(run / "corpora" / store.safe_name(model) / f"{name.split('/')[1]}.parquet")
    streams = {int(p.name.split("=")[1]) for p in Path(cell["states"]).glob("stream=*")}
    layers = sorted(s for s in streams if s + 1 in streams)  # block l is streams l and l + 1
    return Path(cell["states"]), Path(manifest["models"][model]["micro_states"]), \
        np.stack(corpus.input_ids.to_numpy()), layers


def measure(run: Path, taus: tuple[float, ...]) -> pd.DataFrame:
    import torch

    torch.set_num_threads(1)
    macro_dir, micro_dir, input_ids, layers = _cell(run)
    unique = np.unique(input_ids)
    params = SmoothedParams(tau=taus[0], taus=taus, n_bootstrap=0)
    rows = []
    for layer in layers:
        _, pre, post = store.read_layer_states(macro_dir, layer)
        _, mpre, mpost = store.read_layer_states(micro_dir, layer)
        positions = list(range(pre.shape[1]))
        jobs = [j for j in plan_jobs(input_ids, [layer], positions, [0], with_micro=True) if j.n_distinct > 1]
        for rule in RULES:
            start = time.perf_counter()
            if rule == "all_variance_no_sink":
                def plain(states):
                    sinks, _ = sink_positions(states)
                    return Scale.of(states[:, [j for j in positions if j not in sinks]])
                sx, sy = plain(pre), plain(post)
                scale_x = scale_y = None
            else:
                bx, by = block_scale(pre, positions, rule), block_scale(post, positions, rule)
            xs, ys, scx, scy = [], [], [], []
            for job in jobs:
                if job.level == "macro":
                    xs.append(pre[:, job.position]), ys.append(post[:, job.position])
                else:
                    r = np.searchsorted(unique, input_ids[:, job.position])
                    xs.append(mpre[r, 0]), ys.append(mpost[r, 0])
                if rule == "all_variance_no_sink":
                    scx.append(sx), scy.append(sy)
                else:
                    scx.append(bx.for_position(job.position)), scy.append(by.for_position(job.position))
            results = smoothed_mi_batch(xs, ys, params, [j.estimator_seed for j in jobs], scx, scy)
            for job, result in zip(jobs, results):
                for r in result.readings:
                    rows.append(dict(layer=layer, level=job.level, position=job.position, rule=rule, tau=r.tau,
                                     mi_bits=r.mi_bits, half_bits=r.half_bits, flag=r.flag))
            print(f"block {layer} {rule}: {time.perf_counter() - start:.1f} s", flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished sweep's run directory (states in its cache)")
    parser.add_argument("--out", default="results/smoothed-scale-rules")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.25, 0.5])
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = measure(Path(args.run), tuple(args.taus))
    table.to_csv(out / "scale_rules.csv", index=False, float_format="%.4f")
    lines = ["# Smoothed MI under each noise-scale rule (real SmolLM2 states of the default job)", "",
             f"`python benchmarks/scale_rules.py --run {args.run}`; bits; N = 2,000 sequences; one scale per "
             "block side shared by macro and micro readings. Rules: `ie_ray/noise_scale.py`.", ""]
    for tau in args.taus:
        pivot = table[np.isclose(table.tau, tau)].pivot_table(index=["layer", "level", "position"],
                                                              columns="rule", values="mi_bits")
        lines += [f"## tau = {tau:g}", "", pivot.reset_index().to_markdown(index=False, floatfmt=".2f"), ""]
    (out / "README.md").write_text("\n".join(lines))
    print(f"wrote {out}/scale_rules.csv and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
