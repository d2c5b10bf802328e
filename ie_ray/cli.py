"""The `ie-ray` command: `ie-ray sweep [--config FILE] [--out DIR]`, `compare`, `validate`, `generate`, and the
tools that read a finished run (`variance`, `brackets`) or plan one (`resources`).

Every tool a user is told to run is a subcommand here; a tool's options and its run live in its own module
(`add_arguments`, `main_from_args`), which cli.py only wires. `python -m ie_ray.variance` and the like still work.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import shutil
import sys
from pathlib import Path

from ie_ray.errors import ConfigError, StorageError


def _layer_list(text: str) -> tuple[int, ...]:
    """`--layers 2,8,14` -> (2, 8, 14); the config's own validation checks the range against the model."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--layers takes comma-separated block indices such as 2,8,14; got {text!r}") from None


def _sweep(args: argparse.Namespace) -> int:
    from ie_ray.config import load_config
    from ie_ray.store import run_dir_for
    from ie_ray.sweep import default_cache_dir, run_sweep

    config = load_config(args.config)
    if args.layers:
        config = dataclasses.replace(config, layers=_layer_list(args.layers))
    run_dir = Path(args.out).expanduser().resolve() if args.out else run_dir_for(config.name, config.content_hash())
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_dir(run_dir)
    if args.fresh and cache_dir.exists():
        shutil.rmtree(cache_dir)
    print(f"[ie-ray] run directory: {run_dir} (finished shards cached in {cache_dir})", flush=True)
    if args.extract_only:
        from ie_ray.sweep import extract_only

        for cell, directory in extract_only(config, run_dir, cache_dir).items():
            print(f"[ie-ray] states of {cell}: {directory}")
        print(f"[ie-ray] extracted, nothing reduced ({run_dir / 'extracted.json'}); the same command without "
              "--extract-only reduces from these states")
        return 0
    result = run_sweep(config, run_dir, cache_dir)
    from ie_ray.report import layer_view, model_view

    print(f"\nE(l) = IE at the last position, per layer (bits): headline {result.layers.headline.iloc[0]} "
          "with its 95% interval, the entropy limit (what a perfect estimator of the paper's MI returns, exact "
          "counts, capped at log2 N) and the paper's MINE reading; a flag other than ok marks a failed reading:")
    print(layer_view(result.layers).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nModel-level IE (mean over the analysed layers):")
    print(model_view(result.models).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n[ie-ray] done; results in {run_dir} (report.md, ie.csv, mi.parquet, plots)")
    return 0


def _pairs(values: list[str] | None, sep: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        left, found, right = value.partition(sep)
        if not found or not left or not right:
            raise ConfigError(f"{what} {value!r} must look like A{sep}B")
        pairs.append((left, right))
    return pairs


def _compare(args: argparse.Namespace) -> int:
    from ie_ray.compare import compare_run

    run_dir = Path(args.run_dir).expanduser().resolve()
    proxies = _pairs(args.proxy, ":", "--proxy") or None
    families = dict(_pairs(args.family, "=", "--family"))
    cross = compare_run(run_dir, args.statistic, proxies, families, args.predict_params)
    print(cross.ranking.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for note in cross.notes:
        print(f"[ie-ray] {note}")
    print(f"\n[ie-ray] comparison written to {run_dir / 'compare.md'} and {run_dir / 'compare'}/")
    return 0


def _train_family(args: argparse.Namespace) -> int:
    from ie_ray.family.recipe import load_recipe
    from ie_ray.family.report import write_family_outputs
    from ie_ray.family.train import train_family

    recipe = load_recipe(args.config)
    if args.threads:
        import dataclasses

        recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, threads=args.threads))
    sizes = [s.strip() for s in args.sizes.split(",")] if args.sizes else None
    result = train_family(recipe, sizes)
    out = Path(args.out).expanduser().resolve() if args.out else result.directory
    write_family_outputs(recipe, result, out)
    columns = ["model", "n_params_non_embedding", "tokens_seen", "wall_s", "final_train_loss", "final_heldout_loss",
               "reloaded"]
    print(result.manifest[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n[ie-ray] checkpoints in {result.directory}; manifest, losses.png and held-out text in {out}; "
          f"sweep configs name the members {', '.join(recipe.model_name(s) for s in recipe.sizes)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ie-ray", description="Information Emergence sweeps on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run a sweep (default: the embedded smoke config)")
    sweep.add_argument("--config", help="YAML sweep config (default: jobs/configs/smoke.yaml)")
    sweep.add_argument("--out", help="run directory (default: results/runs/<name>-<config hash>; rerunning the "
                                     "same command resumes there)")
    sweep.add_argument("--cache-dir", help="shard cache to reuse across runs (default: $IE_RAY_CACHE_DIR, else "
                                           "<run dir>/cache)")
    sweep.add_argument("--fresh", action="store_true", help="delete the shard cache first: recompute everything")
    sweep.add_argument("--layers", help="comma-separated blocks replacing the config's `layers` (e.g. 2,8,14)")
    sweep.add_argument("--extract-only", action="store_true",
                       help="extract and keep the block states, reduce nothing (a GPU box fills the cache; the "
                            "same command without the flag reduces later; states for `validate --real`)")
    sweep.set_defaults(func=_sweep)
    train = sub.add_parser("train-family", help="train (or reload) a scaling family of small models offline")
    train.add_argument("--config", required=True, help="family recipe YAML (e.g. jobs/configs/family-kjv.yaml)")
    train.add_argument("--out", help="where to write the manifest, loss curves and held-out text "
                                     "(default: the checkpoint directory under the user cache)")
    train.add_argument("--sizes", help="comma-separated subset of the recipe's sizes (default: all)")
    train.add_argument("--threads", type=int, help="torch threads (default: the recipe's, else all cores); 1 is "
                                                    "fastest on a small CPU shared with other work")
    train.set_defaults(func=_train_family)
    compare = sub.add_parser("compare", help="cross-model tables, ranking, proxy estimates and plots of a run")
    compare.add_argument("run_dir", help="directory of a finished sweep with >= 2 models")
    compare.add_argument("--statistic", default="ie_mean_bits", choices=["ie_mean_bits", "ie_sum_bits"],
                         help="model-level IE to rank and extrapolate: mean (default) or sum over layers")
    compare.add_argument("--proxy", action="append", metavar="SMALL:LARGE",
                         help="Proxy A pair: measuring model and target (repeatable; default: smallest model "
                              "measuring every larger one)")
    compare.add_argument("--family", action="append", metavar="MODEL=FAMILY",
                         help="scaling family of a model for Proxy B (default: its name without size tokens)")
    compare.add_argument("--predict-params", action="append", type=float, metavar="N",
                         help="Proxy B: predict IE at this parameter count (repeatable; default 10x the largest)")
    compare.set_defaults(func=_compare)
    for name, module, text in MODULE_COMMANDS:
        _add_module_command(sub, name, module, text)
    return parser


#: Subcommands whose options and run live in their module: (name, module, one-line help).
MODULE_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("validate", "ie_ray.validate", "estimators vs closed-form MI on synthetic tasks (table, plot, recommended "
                                    "estimator) under results/validation/; --smoothed: the smoothed MI vs exact "
                                    "values under results/validation/smoothed/"),
    ("generate", "ie_ray.corpora.generate", "model-written continuations of human prompts, with provenance, for a "
                                            "generated-vs-human comparison"),
    ("variance", "ie_ray.variance", "of a finished run: IE and its spread against shots (or tokens), the saturation "
                                    "shot and the std peak (variance.csv, variance_findings.csv, variance.png)"),
    ("brackets", "ie_ray.brackets", "of a finished run: IE from the smoothed plug-in and leave-one-out readings "
                                    "side by side (ie_brackets.csv)"),
    ("controls", "ie_ray.control_comparison", "of finished runs: a trained model's IE next to its controls "
                                               "(random-init, shuffled tokens) at every block, trends decided by "
                                               "the calibrated interval in each (controls.md, tables, plots)"),
    ("resources", "ie_ray.resources", "the extraction plan (GPUs per actor, device map, batch) for a model size"),
)


def _add_module_command(sub, name: str, module_name: str, text: str) -> None:
    module = importlib.import_module(module_name)
    parser = sub.add_parser(name, help=text, description=text)
    module.add_arguments(parser)
    parser.set_defaults(func=module.main_from_args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, StorageError) as exc:
        print(f"ie-ray: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
