"""Throughput of the Ray extraction pipeline against a bare Hugging Face forward loop, in one run.

Extraction is the one stage whose cost grows with the model, so it must not waste the forward passes it pays
for. On the same model, the same token ids (an ICL corpus as the sweep builds it) and the same batch size, with
the same torch thread count everywhere, this script times:

  bare-lm      `model(input_ids, attention_mask, position_ids)`: the plain HF loop (with the LM head);
  bare-base    the same loop over `model.base_model` (no LM head): the work extraction really has to do, since
               capture stops after the deepest requested block. The ratio's denominator;
  in-process   the extraction actor's own class (`BlockStateExtractor`) called in this process, without Ray:
               padding, hooks, gathering the requested positions, numpy rows;
  ray          `ie_ray.extract.extract_states`: Ray Data actor pool -> Parquet, end to end (actor start and model
               load included) and at steady state (the actors' model-load time, from the pipeline's ledger,
               subtracted);
  ray xN       the same with N actors (scaling from 1 to --max-actors);
  ray float16  store_dtype float16: bytes written per sample against float32.

and, for the micro (single-token) term, the saving of one forward per UNIQUE token id (what the sweep does)
against one single-token forward per (sample, position), both through the in-process extractor, with a check
that the two give the same states for the same token.

    PYTHONPATH=. python benchmarks/extraction.py            # smollm2-135m, 1000 x 4-shot ICL, 4 layers (~6 min)
    PYTHONPATH=. python benchmarks/extraction.py --quick    # tiny-gpt2, 256 samples: smoke check (~30 s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402  (one machine description for all)

from ie_ray.capture import pad_batch  # noqa: E402
from ie_ray.config import ExtractConfig  # noqa: E402
from ie_ray.corpora.icl import build_icl_corpus  # noqa: E402
from ie_ray.capture import streams_of_layers  # noqa: E402
from ie_ray.extract import BlockStateExtractor, extract_states  # noqa: E402
from ie_ray.models import ModelSpec, load_model, load_tokenizer  # noqa: E402
from ie_ray.store import read_layer_states  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Mode:
    """One timed way of pushing the corpus through the model."""

    name: str
    what: str
    wall_s: float
    tokens: int  # token ids fed to the model (BOS included when the model prepends one)
    steady_wall_s: float | None = None  # wall minus actor start-up / model load, where there is one
    extra: dict | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    @property
    def steady_tokens_per_s(self) -> float | None:
        return self.tokens / self.steady_wall_s if self.steady_wall_s else None


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when a steady-state rate is missing (a pipeline of one batch per actor has no window)."""
    return a / b if a is not None and b else None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bare_loop(module: torch.nn.Module, batches: list, device: str) -> float:
    """A plain HF forward loop over pre-padded batches (padding is outside the clock: the strictest baseline)."""

    @torch.no_grad()
    def go() -> None:
        for b in batches:
            module(input_ids=b.input_ids.to(device), attention_mask=b.attention_mask.to(device),
                   position_ids=b.position_ids.to(device), use_cache=False)

    return timed(go)[1]


def extractor_loop(extractor: BlockStateExtractor, ids: np.ndarray, batch_size: int) -> tuple[list[dict], float]:
    """The actor's __call__ in this process, batch by batch, as Ray Data would call it."""

    def go() -> list[dict]:
        out = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            out.append(extractor({"shard": np.zeros(len(chunk), dtype=np.int64),
                                  "sample_id": np.arange(start, start + len(chunk), dtype=np.int64),
                                  "input_ids": chunk}))
        return out

    return timed(go)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def steady_wall(actors: list, rows: int) -> float | None:
    """Pipeline time at steady state, from the actors' ledger: the window from the end of each actor's first
    batch to the end of the last batch, scaled up to every batch. It leaves out process start, imports and model
    load, which a longer run amortises."""
    busy = [a for a in actors if a.batches]
    batches = sum(a.batches for a in busy)
    if batches <= len(busy):
        return None
    window = max(a.last_batch_done for a in busy) - min(a.first_batch_done for a in busy)
    return window * batches / (batches - len(busy))


@dataclass(frozen=True)
class PipelineRun:
    """One `extract_states` configuration. The "before" variants undo one optimisation for that run only, so its
    before/after is measured side by side: `split=False` feeds the pool one input block per shard (as before
    `extract.input_blocks`), `dictionary=True` writes with pyarrow's default dictionary encoding (as before
    `extract.PARQUET_ARGS`)."""

    dtype: str = "float32"
    actors: int = 1
    split: bool = True
    threads: int = 1  # torch threads per actor = the actor's num_cpus
    dictionary: bool = False

    @property
    def name(self) -> str:
        return (f"ray {self.dtype} x{self.actors}" + ("" if self.threads == 1 else f" t{self.threads}")
                + ("" if self.split else " one-block") + (" dictionary" if self.dictionary else ""))

    @property
    def what(self) -> str:
        return (f"extract_states: Ray Data, {self.actors} actor(s) x {self.threads} thread(s), store {self.dtype}"
                + ("" if self.split else ", one input block per shard (before input_blocks)")
                + (", Parquet dictionary encoding (before PARQUET_ARGS)" if self.dictionary else ""))


@contextmanager
def before(run: PipelineRun):
    """Undo the optimisations `run` asks to undo, for the duration of one pipeline."""
    import ie_ray.extract as extract

    saved = extract.input_blocks, extract.PARQUET_ARGS
    if not run.split:
        extract.input_blocks = lambda tables, *_: tables
    if run.dictionary:
        extract.PARQUET_ARGS = {}
    try:
        yield
    finally:
        extract.input_blocks, extract.PARQUET_ARGS = saved


def pipeline(table, spec: ModelSpec, layers: list[int], positions: list[int], run: PipelineRun, tokens: int,
             batch_size: int, tmp: Path, written: dict[str, int]) -> Mode:
    """Time one `extract_states` run end to end and at steady state; count the bytes and files it wrote, and
    time reading every layer back (what the sweep's seal and reducer do with them)."""
    out = tmp / run.name.replace(" ", "-")
    settings = ExtractConfig(batch_size=batch_size, concurrency=run.actors, num_gpus=0, num_cpus=run.threads,
                             store_dtype=run.dtype, device="cpu")
    log(f"{run.name}: extract_states ...")
    with before(run):
        report, wall = timed(lambda: extract_states(table, spec, layers, positions, settings, out))
    _, read_s = timed(lambda: [read_layer_states(out, layer) for layer in layers])
    written[run.name] = dir_bytes(out)
    files = len(list(out.rglob("*.parquet")))
    shutil.rmtree(out, ignore_errors=True)
    steady = steady_wall(report.actors, table.num_rows)
    log(f"    {wall:.1f} s (steady {steady or float('nan'):.1f} s; read back {read_s:.1f} s; rows per actor "
        f"{[a.rows for a in report.actors]})")
    return Mode(run.name, run.what, wall, tokens, steady,
                dict(actor_load_s=[a.load_s for a in report.actors], actor_rows=[a.rows for a in report.actors],
                     bytes_written=written[run.name], parquet_files=files, read_back_s=read_s))


def run(args: argparse.Namespace) -> dict:
    import ray

    torch.set_num_threads(args.threads)
    spec = ModelSpec(name=args.model, dtype=args.model_dtype)
    tokenizer = load_tokenizer(spec)
    corpus = build_icl_corpus("country", tokenizer, shots=args.shots, n_samples=args.samples, seed=0,
                              fmt="comma-space", n_entities=args.entities)
    ids = corpus.input_ids.astype(np.int64)
    table = corpus.to_arrow()
    positions = list(range(ids.shape[1]))
    log(f"loading {spec.name} in this process ...")
    loaded, load_s = timed(lambda: load_model(spec, "cpu"))
    n_layers = len(loaded.blocks)
    layers = sorted({l % n_layers for l in args.layers})
    bos = tokenizer.bos_token_id if loaded.info.bos_prepended else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    batches = [pad_batch(ids[s : s + args.batch_size], pad, getattr(tokenizer, "padding_side", "right"), bos)
               for s in range(0, len(ids), args.batch_size)]
    tokens = int(sum(b.input_ids.numel() for b in batches))
    info = machine_info(args.threads)
    modes: list[Mode] = []

    # Warm-up outside the clock (first-call allocator and kernel-dispatch costs), then the bare loops.
    bare_loop(loaded.model, batches[:1], "cpu")
    log("bare-lm: HF forward loop with the LM head ...")
    modes.append(Mode("bare-lm", "HF forward loop, model(...) incl. LM head", bare_loop(loaded.model, batches, "cpu"),
                      tokens))
    log(f"    {modes[-1].wall_s:.1f} s")
    log("bare-base: HF forward loop without the LM head ...")
    modes.append(Mode("bare-base", "HF forward loop, model.base_model(...) (no LM head)",
                      bare_loop(loaded.model.base_model, batches, "cpu"), tokens))
    log(f"    {modes[-1].wall_s:.1f} s")
    del loaded

    streams = streams_of_layers(layers)
    extractor_kwargs = dict(model=asdict(spec), shard_streams=[streams], shard_positions=[positions],
                            device="cpu", threads=args.threads, ledger=None)
    extractor = BlockStateExtractor(store_dtype="float32", **extractor_kwargs)
    extractor_loop(extractor, ids[:2], args.batch_size)  # warm-up
    log("in-process: the extraction actor's class without Ray ...")
    _, t = extractor_loop(extractor, ids, args.batch_size)
    modes.append(Mode("in-process", "BlockStateExtractor.__call__ in this process (hooks, gather, numpy)", t, tokens))
    log(f"    {t:.1f} s")

    # Micro term: per UNIQUE token id (one row each) vs per (sample, position) (N x T rows), same code path.
    unique = np.unique(ids)[:, None]
    per_sample = ids.reshape(-1, 1)
    micro_x = BlockStateExtractor(store_dtype="float32", **{**extractor_kwargs, "shard_positions": [[0]]})
    extractor_loop(micro_x, unique[:2], args.batch_size)  # warm-up
    log(f"micro: {len(unique)} unique-token rows vs {len(per_sample)} per-(sample, position) rows ...")
    out_u, t_u = extractor_loop(micro_x, unique, args.batch_size)
    out_s, t_s = extractor_loop(micro_x, per_sample, args.batch_size)
    log(f"    unique {t_u:.2f} s, per-sample {t_s:.1f} s")
    # Same token -> same states: the unique-token shortcut must be exact, not an approximation.
    states_u = np.concatenate([o["resid"] for o in out_u]).reshape(len(unique), len(streams), 1, -1)
    states_s = np.concatenate([o["resid"] for o in out_s]).reshape(len(per_sample), len(streams), 1, -1)
    row = np.searchsorted(unique[:, 0], per_sample[:, 0])
    micro_diff = float(np.abs(states_s - states_u[row]).max())
    del out_u, out_s, states_s, extractor, micro_x
    width = 1 + (bos is not None)
    micro = {
        "unique_rows": int(len(unique)),
        "per_sample_rows": int(len(per_sample)),
        "forwards_unique": int(-(-len(unique) // args.batch_size)),
        "forwards_per_sample": int(-(-len(per_sample) // args.batch_size)),
        "tokens_unique": int(len(unique) * width),
        "tokens_per_sample": int(len(per_sample) * width),
        "wall_s_unique": t_u,
        "wall_s_per_sample": t_s,
        "state_bytes_unique": int(states_u.nbytes),
        "state_bytes_per_sample": int(states_u.nbytes * len(per_sample) // len(unique)),
        "max_abs_diff_same_token": micro_diff,
    }

    # address="local": always a fresh in-process cluster, never one another process started on this machine
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    tmp = Path(tempfile.mkdtemp(prefix="ie-ray-bench-extract-"))
    written: dict[str, int] = {}
    try:
        runs = [PipelineRun(), PipelineRun(dictionary=True), PipelineRun(dtype="float16"),
                *[PipelineRun(actors=k) for k in range(2, args.max_actors + 1)]]
        if args.max_actors > 1:  # the same cores as one actor with max_actors threads, and the unsplit pool
            runs += [PipelineRun(actors=args.max_actors, split=False), PipelineRun(threads=args.max_actors)]
        # Warm-up outside the clock: the first pipeline of a Ray session also pays one-off costs (Ray Data's
        # coordinator actors, first touch of the object store's shared memory) that would bias the first mode.
        log("warm-up pipeline (not timed) ...")
        extract_states(table, spec, layers, positions,
                       ExtractConfig(batch_size=args.batch_size, num_gpus=0, device="cpu"), tmp / "warm-up")
        for run_ in runs:
            modes.append(pipeline(table, spec, layers, positions, run_, tokens, args.batch_size, tmp, written))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if started_ray:
            ray.shutdown()

    by = {m.name: m for m in modes}
    base, ray1 = by["bare-base"], by["ray float32 x1"]
    n, hidden = len(ids), int(states_u.shape[-1])
    raw = {d: len(streams) * len(positions) * hidden * np.dtype(d).itemsize for d in ("float32", "float16")}
    scaling = [{"actors": 1, "tokens_per_s": ray1.tokens_per_s, "steady_tokens_per_s": ray1.steady_tokens_per_s,
                "speedup": 1.0, "steady_speedup": 1.0}]
    for k in range(2, args.max_actors + 1):
        m = by[f"ray float32 x{k}"]
        scaling.append({"actors": k, "tokens_per_s": m.tokens_per_s, "steady_tokens_per_s": m.steady_tokens_per_s,
                        "speedup": m.tokens_per_s / ray1.tokens_per_s,
                        "steady_speedup": ratio(m.steady_tokens_per_s, ray1.steady_tokens_per_s)})
    return {
        "benchmark": "extraction",
        "config": {
            "model": spec.name, "model_dtype": spec.dtype, "layers": layers,
            "n_layers_model": n_layers, "hidden": hidden, "positions": len(positions), "samples": n,
            "shots": args.shots, "entities": args.entities, "sequence_tokens": int(batches[0].input_ids.shape[1]),
            "bos_prepended": bos is not None, "batch_size": args.batch_size, "threads": args.threads,
            "ray_cpus": args.ray_cpus, "max_actors": args.max_actors, "quick": args.quick,
            "in_process_model_load_s": load_s, "command": " ".join(sys.argv),
        },
        "machine": {**info, "loadavg_at_end": list(os.getloadavg())},
        "modes": [dict(name=m.name, what=m.what, wall_s=m.wall_s, tokens=m.tokens, tokens_per_s=m.tokens_per_s,
                       steady_wall_s=m.steady_wall_s, steady_tokens_per_s=m.steady_tokens_per_s, **(m.extra or {}))
                  for m in modes],
        "scaling": scaling,
        "micro": micro,
        "bytes_per_sample": {
            "float32": written["ray float32 x1"] / n, "float16": written["ray float16 x1"] / n,
            "raw_float32": raw["float32"], "raw_float16": raw["float16"],
        },
        "ratios": {
            # >= 0.9 is the goal: the pipeline keeps the forward passes it pays for busy
            "pipeline_over_bare_base": ray1.tokens_per_s / base.tokens_per_s,
            "pipeline_steady_over_bare_base": ratio(ray1.steady_tokens_per_s, base.tokens_per_s),
            "pipeline_over_bare_lm": ray1.tokens_per_s / by["bare-lm"].tokens_per_s,
            "in_process_over_bare_base": by["in-process"].tokens_per_s / base.tokens_per_s,
            "micro_per_sample_over_unique": t_s / t_u,
            "bytes_float32_over_float16": written["ray float32 x1"] / written["ray float16 x1"],
            "float16_over_float32_throughput": by["ray float16 x1"].tokens_per_s / ray1.tokens_per_s,
            # PARQUET_ARGS (after) over dictionary encoding (before), same run: throughput, bytes, read-back time
            "no_dictionary_over_dictionary_x1": ray1.tokens_per_s / by["ray float32 x1 dictionary"].tokens_per_s,
            "bytes_dictionary_over_no_dictionary": by["ray float32 x1 dictionary"].extra["bytes_written"]
            / ray1.extra["bytes_written"],
            "read_back_dictionary_over_no_dictionary": by["ray float32 x1 dictionary"].extra["read_back_s"]
            / ray1.extra["read_back_s"],
            # input_blocks (after) over one input block per shard (before), same run; one actor is not split
            **({f"split_over_one_block_x{args.max_actors}":
                by[f"ray float32 x{args.max_actors}"].tokens_per_s
                / by[f"ray float32 x{args.max_actors} one-block"].tokens_per_s} if args.max_actors > 1 else {}),
            f"scaling_{args.max_actors}_actors": scaling[-1]["speedup"],
            **({f"{args.max_actors}_actors_over_1_actor_{args.max_actors}_threads":
                scaling[-1]["tokens_per_s"] / by[f"ray float32 x1 t{args.max_actors}"].tokens_per_s}
               if args.max_actors > 1 else {}),
            f"scaling_{args.max_actors}_actors_steady": scaling[-1]["steady_speedup"],
        },
    }


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def to_markdown(res: dict) -> str:
    cfg, m, r, mi, b = res["config"], res["machine"], res["ratios"], res["micro"], res["bytes_per_sample"]
    base = next(x for x in res["modes"] if x["name"] == "bare-base")["tokens_per_s"]
    lines = [
        f"# Extraction: Ray pipeline vs bare HF forward loop ({m['date_utc']})",
        "",
        f"{cfg['model']} ({cfg['model_dtype']}), ICL country corpus: {cfg['samples']} samples x "
        f"{cfg['sequence_tokens']} tokens ({cfg['shots']} shots{', BOS' if cfg['bos_prepended'] else ''}), "
        f"layers {cfg['layers']} of {cfg['n_layers_model']}, {cfg['positions']} positions, hidden "
        f"{cfg['hidden']}, batch {cfg['batch_size']}, torch threads {cfg['threads']}, Ray num_cpus "
        f"{cfg['ray_cpus']}.",
        "",
        "| mode | what | wall (s) | tokens/s | ratio to bare-base | steady tokens/s | steady ratio | rows per actor "
        "| Parquet files | bytes / sample | read back (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in res["modes"]:
        steady = x["steady_tokens_per_s"]
        lines.append(
            f"| {x['name']} | {x['what']} | {x['wall_s']:.1f} | {x['tokens_per_s']:.0f} | "
            f"{x['tokens_per_s'] / base:.2f} | {f'{steady:.0f}' if steady else '-'} | "
            f"{f'{steady / base:.2f}' if steady else '-'} | {x.get('actor_rows', '-')} | {x.get('parquet_files', '-')} | "
            f"{fmt(x['bytes_written'] / cfg['samples'], '.0f') if 'bytes_written' in x else '-'} | "
            f"{fmt(x.get('read_back_s'), '.1f')} |"
        )
    lines += [
        "",
        f"- pipeline / bare-base: **{r['pipeline_over_bare_base']:.2f}** end to end, "
        f"**{fmt(r['pipeline_steady_over_bare_base'])}** at steady state (from the end of the actors' first batch; "
        f"goal >= 0.9); "
        f"/ bare-lm: {r['pipeline_over_bare_lm']:.2f}; in-process actor class / bare-base: "
        f"{r['in_process_over_bare_base']:.2f}",
        "- scaling (float32): " + ", ".join(
            f"{s['actors']} actor(s) {s['tokens_per_s']:.0f} tok/s (x{s['speedup']:.2f}; steady x{fmt(s['steady_speedup'])})"
            for s in res["scaling"])
        + "".join(f"; {k.split('_over_')[0].replace('_', ' ')} / {k.split('_over_')[1].replace('_', ' ')}: **{v:.2f}**"
                  for k, v in r.items() if "_actors_over_1_actor_" in k),
        f"- micro term: one forward per unique token ({mi['unique_rows']} rows, {mi['forwards_unique']} forward(s), "
        f"{mi['wall_s_unique']:.2f} s) vs per (sample, position) ({mi['per_sample_rows']} rows, "
        f"{mi['forwards_per_sample']} forwards, {mi['wall_s_per_sample']:.1f} s): **x{r['micro_per_sample_over_unique']:.0f}**"
        f" faster, {mi['state_bytes_per_sample'] / max(mi['state_bytes_unique'], 1):.0f}x fewer state bytes; "
        f"max |diff| between the two for the same token: {mi['max_abs_diff_same_token']:.3g}",
        f"- bytes written per sample: float32 {b['float32']:.0f} B, float16 {b['float16']:.0f} B "
        f"(**x{r['bytes_float32_over_float16']:.2f}**; raw states {b['raw_float32']} / {b['raw_float16']} B); "
        f"float16 throughput / float32: {r['float16_over_float32_throughput']:.2f}",
        f"- Parquet without dictionary encoding (PARQUET_ARGS, after) vs with it (before): tokens/s after / before "
        f"**{r['no_dictionary_over_dictionary_x1']:.2f}**; bytes before / after "
        f"**{r['bytes_dictionary_over_no_dictionary']:.2f}**; read-back time before / after "
        f"**{r['read_back_dictionary_over_no_dictionary']:.2f}**",
        "- input_blocks (several input blocks per actor, after) vs one input block per shard (before), tokens/s "
        "after / before: "
        + ", ".join(f"{k.rsplit('_', 1)[1]} **{v:.2f}**" for k, v in r.items() if k.startswith("split_over")),
        machine_line(m),
        f"- command: `{cfg['command']}`",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name (default smollm2-135m; tiny-gpt2 with --quick)")
    p.add_argument("--model-dtype", default="float32", help="weights/activations dtype (default float32)")
    p.add_argument("--samples", "-N", type=int, default=None, help="ICL sequences (default 1000; 256 with --quick)")
    p.add_argument("--shots", type=int, default=None, help="entities per sequence (default 4; 2 with --quick)")
    p.add_argument("--entities", type=int, default=None, help="entity set size (default 25; 8 with --quick)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="blocks to capture (default 0 10 20 29; 0 -1 with --quick)")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward, all modes (default 64)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, all modes and each actor (default 1)")
    p.add_argument("--max-actors", type=int, default=2, help="scale the pipeline from 1 to this many actors")
    p.add_argument("--ray-cpus", type=int, default=None,
                   help="Ray num_cpus (default: the machine's CPU count, at least max-actors + 1 so the "
                        "Parquet writer tasks have a slot)")
    p.add_argument("--quick", action="store_true", help="smoke check on tiny-gpt2")
    p.add_argument("--out", type=Path, default=None,
                   help="output path without suffix (default benchmarks/results/extraction[_quick])")
    args = p.parse_args(argv)
    args.model = args.model or ("tiny-gpt2" if args.quick else "smollm2-135m")
    args.samples = args.samples or (256 if args.quick else 1000)
    args.shots = args.shots or (2 if args.quick else 4)
    args.entities = args.entities or (8 if args.quick else 25)
    args.layers = args.layers or ([0, -1] if args.quick else [0, 10, 20, 29])
    args.ray_cpus = args.ray_cpus or max(os.cpu_count() or 1, args.max_actors + 1)
    args.out = args.out or RESULTS_DIR / ("extraction_quick" if args.quick else "extraction")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    args = parse_args(argv)
    res = run(args)
    write_outputs(args.out, res, to_markdown(res))


if __name__ == "__main__":
    main()
