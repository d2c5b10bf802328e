"""End-to-end time of one sweep, stage by stage, and of the resume path (the same command again, every shard cached).

The sweep is run twice, each time as its own process (`--child`), the way a user runs it: a first run into a
fresh run directory, then a rerun of the same config into the same directory, where every extraction layer and
every estimate comes from the shard cache (ie_ray/cache.py). Each process reports:

- the stages `run_sweep` itself records in manifest.json `timings_s` (plan, extract <model>, reduce <model>,
  tables, report);
- finer sub-stages, timed by wrapping the functions the sweep calls (the sweep's code is not changed):
  corpus building (inside plan) and writing, Ray start, the Ray Data extraction pipeline (actor start, model
  load, forwards and the streamed Parquet writes), sealing (reading every written layer back to check it), the
  state reads of the reducer, and the estimator fits;
- the process wall time, imports included, and the wall time of `run_sweep` alone.

Stages are then grouped as plan / corpora / ray start / extract / store / reduce / tables+report, so the
slowest one is visible, and the rerun is compared with the first run.

    PYTHONPATH=. python benchmarks/sweep.py                 # jobs/configs/smoke.yaml (~7 min on a calm 2-core CPU)
    PYTHONPATH=. python benchmarks/sweep.py --layers 0 29   # the smoke config on fewer layers
    PYTHONPATH=. python benchmarks/sweep.py --quick         # tiny-gpt2, 256 samples, short fits: smoke check
    PYTHONPATH=. python benchmarks/sweep.py --before-after  # the default job as it was (MINE only, every
                                                            # position) vs now (smoothed MI + entropy limit +
                                                            # MINE for E(l)), two fresh processes side by side
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402  (one machine description for all)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_CONFIG = REPO / "jobs" / "configs" / "smoke.yaml"
#: --quick: one tiny random-init model, a small ICL corpus and short fits; seconds of work once Ray is up.
QUICK_CONFIG = {
    "name": "bench-sweep-quick",
    "models": ["tiny-gpt2"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8, "n_samples": 256}],
    "shots": [2],
    "layers": [0, -1],
    "positions": "all",
    "estimator": {"steps": 40, "batch_size": 64, "n_bootstrap": 20},
    "extract": {"batch_size": 64},
    "reduce": {"estimators_per_task": 8},
}

#: Stage group -> its sub-stages, in report order.
GROUPS = {
    "plan": ["plan (tokenizers, model descriptions, layers, positions)"],
    "corpora": ["corpora: build", "corpora: write"],
    "ray start": ["ray start"],
    "extract": ["extract: Ray Data pipeline (actors, model load, forwards, Parquet writes)"],
    "store": ["store: seal (read back and check every layer)", "store: reducer reads states"],
    "reduce": ["reduce: every reading's Ray tasks through one bounded window, and cached rows read back"],
    "tables + report": ["tables", "report"],
}


# ----------------------------------------------------------------------------------------------------------------
# Child: one run_sweep with its sub-stages timed
# ----------------------------------------------------------------------------------------------------------------


class SubStages:
    """Wraps module functions so each call adds its wall time to a named sub-stage. A wrapped call made inside
    another (the seal reads the layers it checks) is counted in the outer one only, so no second counts twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.depth = 0

    def wrap(self, owner, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self.depth:
                return original(*args, **kwargs)
            self.depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        setattr(owner, attr, timed)


def child(args: argparse.Namespace) -> None:
    """Run the sweep once and write what it measured to args.timings (JSON)."""
    process_start = float(os.environ.get("IE_RAY_BENCH_T0", time.time()))
    imported = time.time()
    import ie_ray.cache as cache
    import ie_ray.report as report
    import ie_ray.store as store
    import ie_ray.sweep as sweep
    from ie_ray.config import load_config
    from ie_ray.extract import EXTRACTION_LOG

    subs = SubStages()
    subs.wrap(sweep, "build_corpus", "corpora: build")
    subs.wrap(store, "write_arrow", "corpora: write")
    subs.wrap(sweep, "init_ray", "ray start")
    subs.wrap(sweep, "extract_shards", GROUPS["extract"][0])
    subs.wrap(cache.CellStates, "seal_streams", GROUPS["store"][0])
    subs.wrap(sweep, "reduce_cell", GROUPS["reduce"][0])
    subs.wrap(report, "write_report", "report (write_report)")
    # during sealing, reads count as the seal; anywhere else they are the reducer reading a layer's states
    subs.wrap(store, "read_layer_states", GROUPS["store"][1])

    config = load_config(args.config)
    start = time.perf_counter()
    sweep.run_sweep(config, args.run_dir)
    run_s = time.perf_counter() - start
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    out = {
        "process_start_to_import_s": imported - process_start,
        "run_sweep_s": run_s,
        "timings_s": manifest["timings_s"],
        "sub_stages_s": dict(subs.seconds),
        "sub_stage_calls": dict(subs.calls),
        "shards": manifest.get("shards", {}),
        "extraction_actors": [dict(model=r.model, load_s=[a.load_s for a in r.actors],
                                   rows=[a.rows for a in r.actors]) for r in EXTRACTION_LOG],
    }
    args.timings.write_text(json.dumps(out, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# Parent: two child runs, grouped stages, JSON + Markdown
# ----------------------------------------------------------------------------------------------------------------


def grouped(res: dict) -> dict[str, float]:
    """Group a run's sub-stages as plan / corpora / ray start / extract / store / reduce / tables + report."""
    t, subs = res["timings_s"], res["sub_stages_s"]
    flat = dict(subs)
    flat["plan (tokenizers, model descriptions, layers, positions)"] = t.get("plan", 0.0) - subs.get(
        "corpora: build", 0.0)
    flat["tables"] = t.get("tables", 0.0)
    flat["report"] = t.get("report", 0.0)
    out = {group: sum(flat.get(name, 0.0) for name in names) for group, names in GROUPS.items()}
    out["other (inside run_sweep)"] = res["run_sweep_s"] - sum(out.values())
    out["python start + imports"] = res["process_s"] - res["run_sweep_s"]
    return out


def run_child(config_path: Path, run_dir: Path, label: str) -> dict:
    timings = run_dir.parent / f"{run_dir.name}-{label}.json"
    env = {**{k: v for k, v in os.environ.items() if k != "IE_RAY_CACHE_DIR"}, "IE_RAY_BENCH_T0": repr(time.time()), "PYTHONPATH": str(REPO),
           "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
    print(f"[bench] {label} run ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", "--config", str(config_path), "--run-dir", str(run_dir),
                    "--timings", str(timings)], env=env, check=True)
    process_s = time.perf_counter() - start
    res = json.loads(timings.read_text())
    res["process_s"] = process_s
    res["groups_s"] = grouped(res)
    print(f"[bench] {label} run: {process_s:.1f} s", file=sys.stderr, flush=True)
    return res


def effective_config(args: argparse.Namespace) -> dict:
    data = dict(QUICK_CONFIG) if args.quick else yaml.safe_load(args.config.read_text())
    if args.layers:
        data["layers"] = list(args.layers)
    if args.samples:
        data["corpora"] = [{**c, "n_samples": args.samples} for c in data["corpora"]]
    data["name"] = f"bench-{data.get('name', 'sweep')}"
    return data


def run(args: argparse.Namespace) -> dict:
    data = effective_config(args)
    work = Path(tempfile.mkdtemp(prefix="ie-ray-bench-sweep-", dir=args.work_dir))
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    run_dir = work / "run"
    info = machine_info(1)
    first = run_child(config_path, run_dir, "first")
    rerun = run_child(config_path, run_dir, "rerun")
    groups = list(first["groups_s"])
    slowest = max((g for g in groups if g != "python start + imports"), key=lambda g: first["groups_s"][g])
    return {
        "benchmark": "sweep",
        "config": {"sweep": data, "source": "quick" if args.quick else str(args.config.relative_to(REPO)
                   if args.config.is_relative_to(REPO) else args.config), "quick": args.quick,
                   "command": " ".join(sys.argv), "run_dir": str(run_dir)},
        "machine": {**info, "loadavg_at_end": list(os.getloadavg())},
        "first": first,
        "rerun": rerun,
        "slowest_stage_first_run": slowest,
        "ratios": {
            "first_over_rerun_process": first["process_s"] / rerun["process_s"],
            "first_over_rerun_run_sweep": first["run_sweep_s"] / rerun["run_sweep_s"],
            "slowest_stage_share_first_run": first["groups_s"][slowest] / first["process_s"],
        },
    }


#: What the default job computed before the smoothed MI existed: MINE only, at every position.
BEFORE_OVERRIDES = {"readings": ["mine"], "mine": {"positions": "all"}}


def run_before_after(args: argparse.Namespace) -> dict:
    """The default config as it ran before (BEFORE_OVERRIDES) and as it runs now, each a fresh process with its own
    run directory and cache (both extract), measured one after the other in the same invocation."""
    data = effective_config(args)
    work = Path(tempfile.mkdtemp(prefix="ie-ray-bench-before-after-", dir=args.work_dir))
    info = machine_info(1)
    out = {}
    for label, config in (("before", {**data, **BEFORE_OVERRIDES, "name": data["name"] + "-before"}),
                          ("after", data)):
        path = work / f"{label}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        out[label] = run_child(path, work / label, label)
        out[label]["config"] = config
    return {
        "benchmark": "sweep-before-after",
        "config": {"sweep": data, "before_overrides": BEFORE_OVERRIDES, "command": " ".join(sys.argv)},
        "machine": {**info, "loadavg_at_end": list(os.getloadavg())},
        **out,
        "ratios": {"before_over_after_process": out["before"]["process_s"] / out["after"]["process_s"],
                   "before_over_after_reduce": out["before"]["groups_s"]["reduce"] / out["after"]["groups_s"]["reduce"]},
    }


def before_after_markdown(res: dict) -> str:
    before, after, m, r = res["before"], res["after"], res["machine"], res["ratios"]
    lines = [f"# Default sweep before and after the smoothed MI ({m['date_utc']})", "",
             f"Before: the config with {res['config']['before_overrides']} (MINE at every position, nothing else). "
             "After: the config as it is (smoothed MI on its tau grid and the entropy limit at every position, "
             "MINE for E(l)). Each run is a fresh process with its own cache (both extract).", "",
             "| stage | before (s) | after (s) |", "|---|---|---|"]
    for group in before["groups_s"]:
        lines.append(f"| {group} | {before['groups_s'][group]:.1f} | {after['groups_s'][group]:.1f} |")
    lines.append(f"| **total (process)** | **{before['process_s']:.1f}** | **{after['process_s']:.1f}** |")
    lines += ["", "Sub-stages:", "", "| sub-stage | before (s) | after (s) |", "|---|---|---|"]
    for name in sorted(set(before["sub_stages_s"]) | set(after["sub_stages_s"])):
        lines.append(f"| {name} | {before['sub_stages_s'].get(name, 0):.1f} | {after['sub_stages_s'].get(name, 0):.1f} |")
    lines += ["", f"- before / after, whole process: **x{r['before_over_after_process']:.2f}**; reduce stage: "
              f"**x{r['before_over_after_reduce']:.2f}**", machine_line(m), f"- command: `{res['config']['command']}`", ""]
    return "\n".join(lines)


def to_markdown(res: dict) -> str:
    first, rerun, m, r = res["first"], res["rerun"], res["machine"], res["ratios"]
    sweep = res["config"]["sweep"]
    corpora = ", ".join(f"{c.get('kind', 'icl')} {c.get('task', c.get('source', ''))} x{c.get('n_samples', '?')}"
                        for c in sweep["corpora"])
    models = ", ".join(m_ if isinstance(m_, str) else m_["name"] for m_ in sweep["models"])
    lines = [
        f"# Sweep: end-to-end time by stage, first run vs rerun from the cache ({m['date_utc']})",
        "",
        f"Config `{res['config']['source']}`: models {models}; corpora {corpora}; shots {sweep['shots']}; layers "
        f"{sweep['layers']}; positions {sweep['positions']}. Each run is its own process.",
        "",
        "| stage | first run (s) | share | rerun (s) |",
        "|---|---|---|---|",
    ]
    for group, seconds in first["groups_s"].items():
        bold = "**" if group == res["slowest_stage_first_run"] else ""
        lines.append(f"| {bold}{group}{bold} | {seconds:.1f} | {seconds / first['process_s']:.0%} | "
                     f"{rerun['groups_s'][group]:.1f} |")
    lines.append(f"| **total (process)** | **{first['process_s']:.1f}** | 100% | **{rerun['process_s']:.1f}** |")
    lines += ["", "Sub-stages (wrapped functions; `run_sweep` timer stages from manifest.json):", "",
              "| sub-stage | first run (s) | rerun (s) |", "|---|---|---|"]
    for name in sorted(set(first["sub_stages_s"]) | set(rerun["sub_stages_s"])):
        lines.append(f"| {name} | {first['sub_stages_s'].get(name, 0):.1f} | {rerun['sub_stages_s'].get(name, 0):.1f} |")
    for name in first["timings_s"]:
        lines.append(f"| timer: {name} | {first['timings_s'][name]:.1f} | {rerun['timings_s'].get(name, 0):.1f} |")
    load = [round(s, 1) for e in first["extraction_actors"] for s in e["load_s"]]
    lines += [
        "",
        f"- slowest stage of the first run: **{res['slowest_stage_first_run']}** "
        f"({r['slowest_stage_share_first_run']:.0%} of the process wall time)",
        f"- rerun with every shard cached: **x{r['first_over_rerun_process']:.1f}** faster as a process "
        f"({first['process_s']:.1f} s -> {rerun['process_s']:.1f} s), x{r['first_over_rerun_run_sweep']:.1f} for "
        f"`run_sweep` alone",
        f"- shards, first run: {first['shards'].get('computed')} computed, {first['shards'].get('reused')} reused; "
        f"rerun: {rerun['shards'].get('computed')} computed, {rerun['shards'].get('reused')} reused",
        f"- extraction actors' model load (first run): {load} s",
        machine_line(m),
        f"- command: `{res['config']['command']}`",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="sweep config (default jobs/configs/smoke.yaml)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="override the config's layers (fewer = faster)")
    p.add_argument("--samples", type=int, default=None, help="override every corpus's n_samples")
    p.add_argument("--quick", action="store_true", help="smoke check: tiny-gpt2, 256 samples, 40-step fits")
    p.add_argument("--before-after", action="store_true",
                   help="the config as the default ran before the smoothed MI (MINE only, every position) vs now")
    p.add_argument("--work-dir", type=Path, default=None, help="where the run directory goes (default: a temp dir)")
    p.add_argument("--out", type=Path, default=None,
                   help="output path without suffix (default benchmarks/results/sweep[_quick])")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--timings", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    stem = "sweep_before_after" if args.before_after else "sweep"
    args.out = args.out or RESULTS_DIR / (f"{stem}_quick" if args.quick else stem)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    if args.before_after:
        res = run_before_after(args)
        write_outputs(args.out, res, before_after_markdown(res))
        return
    res = run(args)
    write_outputs(args.out, res, to_markdown(res))


if __name__ == "__main__":
    main()
