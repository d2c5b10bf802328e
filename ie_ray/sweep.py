"""One sweep, end to end: plan -> corpora -> extract (Ray Data) -> reduce (Ray tasks) -> IE tables -> report.

Everything the job entry point does is callable from Python and tests: `run_sweep(config, run_dir)`.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from ie_ray import store
from ie_ray.brackets import with_calibrated_interval
from ie_ray.cache import CellStates, ShardCache, content_key
from ie_ray.capture import streams_of_layers
from ie_ray.config import CorpusConfig, SweepConfig, resolve_indices
from ie_ray.corpora.build import Corpus, build_corpus, corpus_shots
from ie_ray.errors import ConfigError, StorageError
from ie_ray.extract import StateShard, extract_shards
from ie_ray.extract_staging import staging_dir
from ie_ray.ie import ie_by_reading, layer_summary, models_side_by_side, side_by_side
from ie_ray.models import ModelInfo, ModelSpec, describe_model, load_tokenizer
from ie_ray.ray_logs import ray_messages_to
from ie_ray.ray_start import init_ray
from ie_ray.reduce import Reading, reading_class
from ie_ray.reduce.row import ROW_ORDER
from ie_ray.reduce.row_cache import RowCache
from ie_ray.reduce.scheduler import CellReduction, CellWork, layers_to_compute, reduce_cell
from ie_ray.usage import PeakUsage, directory_bytes, untracked_states


@dataclass
class SweepResult:
    run_dir: Path
    mi: pd.DataFrame
    ie: pd.DataFrame
    layers: pd.DataFrame
    models: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        print(f"[ie-ray] {name} ...", flush=True)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            print(f"[ie-ray] {name} done in {elapsed:.1f} s", flush=True)


def _versions() -> dict[str, str]:
    import ray
    import torch
    import transformers

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=store.REPO_ROOT, capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return dict(
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        ray=ray.__version__,
        pyarrow=pa.__version__,
        pandas=pd.__version__,
        ie_ray_commit=commit or "unknown",
        platform=platform.platform(),
    )


def _micro_table(token_ids: np.ndarray) -> pa.Table:
    return pa.table({"sample_id": np.arange(len(token_ids), dtype=np.int64),
                     "input_ids": [[int(t)] for t in token_ids]})


@dataclass
class Cell:
    """One (model, corpus, shots) cell, fully planned: token ids, analysed positions, cache location."""

    corpus_cfg: CorpusConfig
    shots: int
    corpus: Corpus
    table: pa.Table
    positions: list[int]
    key: str  # e.g. "icl-country-4shot"


@dataclass
class ModelPlan:
    """Everything one model needs, resolved before any weights are loaded."""

    spec: ModelSpec
    info: ModelInfo
    layers: list[int]
    cells: list[Cell]
    unique_tokens: np.ndarray

    @property
    def fingerprint(self) -> dict:
        """What identifies the model's weights and how it is run: the cache key of its states."""
        return dict(spec=asdict(self.spec), **self.info.to_dict())


def plan_sweep(config: SweepConfig) -> list[ModelPlan]:
    """Resolve every model, corpus, layer and position of the config, and fail fast on any bad value.

    Runs before Ray starts and before any weights load (models are described from their config on the meta
    device), so a bad layer index or too few entities for the LAST model costs seconds, not the first model's
    hours.
    """
    plans = []
    for spec in config.models:
        tokenizer = load_tokenizer(spec)
        info = describe_model(spec, tokenizer)
        layers = resolve_indices(config.layers, info.n_layers, "layer", f"model {spec.label!r}")
        cells = []
        for corpus_cfg in config.corpora:
            for shots in corpus_shots(corpus_cfg, config.shots):  # natural text: built once, shots = 0
                try:
                    corpus = build_corpus(corpus_cfg, tokenizer, shots)
                except ConfigError as exc:  # e.g. fewer single-token entities than shots, too few windows
                    raise ConfigError(f"{exc} (model {spec.label!r})") from exc
                length = corpus.input_ids.shape[1]
                positions = resolve_indices(
                    config.positions, length, "position", f"corpus {corpus_cfg.label} with {shots} shots"
                )
                if config.micro == "full_context":
                    # the reference variant's micro term at s is the full-context MI at s: need all s <= t
                    positions = list(range(max(positions) + 1))
                cells.append(Cell(corpus_cfg, shots, corpus, corpus.to_arrow(), positions,
                                  f"{corpus_cfg.label}-{shots}shot"))
        unique_tokens = np.unique(np.concatenate([c.corpus.input_ids.ravel() for c in cells]))
        plans.append(ModelPlan(spec, info, layers, cells, unique_tokens))
    return plans


def default_cache_dir(run_dir: Path) -> Path:
    """IE_RAY_CACHE_DIR when set (share finished shards between runs), else the run directory's own cache."""
    env = os.environ.get("IE_RAY_CACHE_DIR")
    return Path(env).expanduser() if env else run_dir / "cache"


def run_sweep(config: SweepConfig, run_dir: Path, cache_dir: Path | None = None) -> SweepResult:
    """Run every (model, corpus, shots) cell of the config and write the run directory.

    Finished shards (a layer's states of one cell, one MI estimate) are kept in a content-addressed cache
    (`cache_dir`, default `<run_dir>/cache`): rerunning the same command after a crash, or after changing part
    of the config, recomputes only the shards that are missing or whose inputs changed. Ray's own messages go
    to `<run_dir>/ray.log` (`ie_ray/ray_logs.py`); the console keeps stage lines, progress bars and tables.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with ray_messages_to(store.inside(run_dir, "ray.log")):
        return _run_sweep(config, run_dir, cache_dir)


def _run_sweep(config: SweepConfig, run_dir: Path, cache_dir: Path | None) -> SweepResult:
    timer = _Timer()
    active_readings = [reading_class(name).from_config(config) for name in config.readings]
    shards = ShardCache(cache_dir if cache_dir is not None else default_cache_dir(run_dir))
    usage = PeakUsage(shards.root / "states")
    usage.start()
    with timer.stage("plan"):
        plans = plan_sweep(config)
    states = {plan.spec.label: _plan_states(shards, plan, config) for plan in plans}
    untracked = _note_untracked_states(shards, list(states.values()), config, usage)
    store.write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    manifest: dict = dict(config_hash=config.content_hash(), versions=_versions(), models={}, corpora={},
                          cache_dir=str(shards.root), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          untracked_states_bytes=untracked)
    mi_frames: list[pd.DataFrame] = []
    scale_frames: list[pd.DataFrame] = []
    infos: dict[str, ModelInfo] = {}
    for plan in plans:
        spec = plan.spec
        infos[spec.label] = plan.info
        manifest["models"][spec.label] = plan.info.to_dict()
        for cell in plan.cells:
            store.write_arrow(store.inside(run_dir, "corpora", store.safe_name(spec.label), cell.key + ".parquet"),
                              cell.table)
            manifest["corpora"][f"{spec.label}/{cell.key}"] = dict(
                **cell.corpus.describe(), n_samples=len(cell.corpus.input_ids),
                length=cell.corpus.input_ids.shape[1],
                n_distinct_sequences=len(np.unique(cell.corpus.input_ids, axis=0)),
            )
        macro, micro = states[spec.label]
        for cell in plan.cells:
            manifest["corpora"][f"{spec.label}/{cell.key}"]["states"] = str(macro[cell.key].directory)
        if config.micro == "single_token":
            manifest["models"][spec.label]["micro_states"] = str(micro.directory)
        work = {cell.key: _cell_work(cell, spec.label, config, macro[cell.key], micro, plan.unique_tokens, shards)
                for cell in plan.cells}
        reductions = _extract_and_reduce(config, plan, active_readings, work, macro, micro, shards, timer, usage)
        mi_frames += [r.mi for r in reductions]
        scale_frames += [r.scales for r in reductions]
    with timer.stage("tables"):
        mi = pd.concat([f for f in mi_frames if not f.empty], ignore_index=True)
        mi = mi.sort_values(ROW_ORDER, na_position="first", kind="stable").reset_index(drop=True)
        mi["n_params"] = mi.model.map(lambda m: infos[m].n_params)
        tau = config.smoothed_params().tau
        readings = ie_by_reading(mi, micro_source="micro" if config.micro == "single_token" else "macro")
        ie = side_by_side(readings, config.headline, tau)
        if config.headline == "smoothed":  # the calibrated interval where the calibration adopted one (issue 24)
            ie = with_calibrated_interval(ie, mi, tau)
        layers_table = layer_summary(ie)
        models_table = models_side_by_side(readings, config.headline, tau)
        store.write_table(run_dir / "mi.parquet", mi)
        store.write_table(run_dir / "ie.parquet", ie, csv=True)
        store.write_table(run_dir / "ie_readings.parquet", readings, csv=True)
        scales = pd.concat([f for f in scale_frames if not f.empty], ignore_index=True) \
            if any(not f.empty for f in scale_frames) else pd.DataFrame()
        if not scales.empty:
            store.write_table(run_dir / "scales.parquet", scales, csv=True)
        store.write_table(run_dir / "layers.parquet", layers_table, csv=True)
        store.write_table(run_dir / "models.parquet", models_table, csv=True)
    from ie_ray.report import write_report

    with timer.stage("report"):
        write_report(run_dir, config, mi, ie, layers_table, models_table, infos, timer.seconds, readings=readings,
                     scales=scales)
    manifest["timings_s"] = timer.seconds
    manifest["shards"] = dict(reused=shards.reused, computed=shards.computed)  # which ones: shards.csv
    store.write_table(run_dir / "shards.parquet", pd.DataFrame(shards.log), csv=True)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["readings"] = dict(readings=list(config.readings), headline=config.headline,
                                settings={r.name: r.key_dict() for r in active_readings})
    usage.stop()
    manifest["usage"] = usage.summary()
    store.write_json(run_dir / "manifest.json", manifest)
    print(f"[ie-ray] shards reused: {shards.reused}; computed: {shards.computed}", flush=True)
    return SweepResult(run_dir, mi, ie, layers_table, models_table, timer.seconds)


def extract_only(config: SweepConfig, run_dir: Path, cache_dir: Path | None = None) -> dict[str, Path]:
    """Extract and keep the block states of every cell of the config; reduce nothing. Returns the states
    directory of each cell (`<model>/<cell>`, and `<model>/micro` for the single-token states).

    Why a separate entry point: extraction needs the model and is what a GPU is for; the reduction needs only
    the states. A GPU box fills the cache with `ie-ray sweep --extract-only`, and the same command without the
    flag reduces later on any machine that sees the cache (finished streams are reused, never re-extracted).
    The kept states also feed `ie-ray validate --smoothed --real DIR@block:position,...`. Streams are kept
    whatever `extract.keep_states` says, and every requested layer goes in one pass: nothing is reduced, so
    nothing could be deleted between passes; the free-space check refuses a pass the disk cannot hold before
    any model loads.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    shards = ShardCache(cache_dir if cache_dir is not None else default_cache_dir(run_dir))
    started = time.perf_counter()
    directories: dict[str, Path] = {}
    with ray_messages_to(store.inside(run_dir, "ray.log")):
        for plan in plan_sweep(config):
            spec = plan.spec
            streams = streams_of_layers(plan.layers)
            macro, micro = _plan_states(shards, plan, config)
            todo = []
            for cell in plan.cells:
                todo.append((macro[cell.key], cell.table, cell.positions, cell.key, streams))
                directories[f"{spec.label}/{cell.key}"] = macro[cell.key].directory
            if config.micro == "single_token":
                todo.append((micro, _micro_table(plan.unique_tokens), [0], "micro", streams))
                directories[f"{spec.label}/micro"] = micro.directory
            print(f"[ie-ray] extract only: {spec.label}, layers {plan.layers} (streams {streams}), "
                  f"{len(plan.cells)} cells", flush=True)
            _extract_cached(shards, todo, spec, config, _state_bytes(plan, config))
    store.write_json(run_dir / "extracted.json", dict(
        config_hash=config.content_hash(), versions=_versions(), cache_dir=str(shards.root),
        wall_s=round(time.perf_counter() - started, 1), states={k: str(v) for k, v in directories.items()},
        shards=dict(reused=shards.reused, computed=shards.computed),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
    return directories


def _note_untracked_states(shards: ShardCache, planned: list[tuple[dict[str, CellStates], CellStates]],
                           config: SweepConfig, usage: PeakUsage) -> dict:
    """Track the run's own state directories (`planned`: each model's `_plan_states`) for the peak disk, and name
    the others in the cache (states of an earlier code version or of another config) with their size: they take
    disk a pass may need, and only the user can tell whether another run still wants them."""
    own = []
    for macro, micro in planned:
        own += [states.directory for states in macro.values()]
        if config.micro == "single_token":
            own.append(micro.directory)
    usage.track(own)
    others = untracked_states(shards.root / "states", own)
    if sum(others.values()) > 0:
        print(f"[ie-ray] note: the cache holds {store.human_bytes(sum(others.values()))} of block states this run "
              f"does not read ({', '.join(others)}): states of an earlier code version (a run interrupted before an "
              "upgrade) or of another config sharing the cache. They are kept, and count against the disk the "
              "passes need; delete them if no other run needs them.", flush=True)
    return others


def _plan_states(shards: ShardCache, plan: ModelPlan, config: SweepConfig) -> tuple[dict[str, CellStates], CellStates]:
    """Where one model's block states live in the cache: each cell's (by cell key) and the single-token (micro)
    states. Keyed by the model's fingerprint, the token ids, the positions and the storage dtype, never by the
    layers, so `extract_only` on a subset of layers fills the very directories the full run reads."""
    dtype = config.extract.store_dtype
    macro = {cell.key: shards.cell_states(plan.fingerprint, cell.corpus.input_ids, cell.positions, dtype)
             for cell in plan.cells}
    return macro, shards.cell_states(plan.fingerprint, plan.unique_tokens[:, None], [0], dtype)


def _extract_cached(
    shards: ShardCache, todo: list[tuple[CellStates, pa.Table, list[int], str, list[int]]], spec: ModelSpec,
    config: SweepConfig, state_bytes: int,
) -> None:
    """Extract the requested residual streams of every cell of one model that are not finished in the cache,
    then seal them. `todo` holds (states, table, positions, label, streams) per cell; `state_bytes` is one
    stored state vector (hidden size x dtype), for the free-space check.

    All unfinished cells go through ONE actor pool, so each actor loads the model once for the whole pass
    instead of once per (corpus, shots) cell. A pass that cannot fit on the cache's disk is refused before any
    model loads; one whose disk fills while it writes (another job, an estimate too low) fails with the same
    error and leaves no stream half-written: its streams are deleted, never sealed, so a rerun redoes them.
    """
    pending = []
    for cell, table, positions, label, streams in todo:
        missing = cell.missing_streams(streams)
        for stream in streams:
            status = "computed" if stream in missing else "reused"
            shards.record("extraction_streams", status, cell.key, model=spec.label, cell=label, stream=stream)
        if missing:
            cell.clear_streams(missing)
            pending.append((cell, table, missing, StateShard(table, positions, missing, cell.directory)))
    if not pending:
        return
    states_root = shards.root / "states"
    need = STATE_FILE_OVERHEAD * state_bytes * sum(t.num_rows * len(s.positions) * len(m) for _, t, m, s in pending)
    need = _left_to_write(need, [p[3] for p in pending], spec, config)
    what = f"extracting {sum(len(p[2]) for p in pending)} residual streams of {spec.name}"
    store.require_space(states_root, need, what)
    init_ray()  # only now: everything before this point was validation and cache look-ups
    try:
        with store.room_for(states_root, need, what):
            extract_shards([p[3] for p in pending], spec, config.extract)
            for cell, table, missing, _ in pending:
                cell.seal_streams(missing, table.column("sample_id").to_numpy())
    except StorageError:
        for cell, _, missing, _ in pending:  # sealed streams stay; the rest would only hold the disk full
            cell.clear_streams(cell.missing_streams(missing))
        raise


def _left_to_write(need: float, shards: list[StateShard], spec: ModelSpec, config: SweepConfig) -> float:
    """Bytes a pass still has to write: `need` less what an interrupted run of the same pass left in its staging
    directory. Why: those files already take disk space and the rerun keeps them (`ie_ray.extract_staging`), so
    counting them again would refuse a resume that fits. A file the rerun deletes (torn, or a sample another
    stream lacks) frees what its rewrite takes, so the difference stays an upper bound either way."""
    staging = staging_dir(shards[0].out_dir.parent, spec, shards, config.extract.store_dtype)
    return max(0.0, need - directory_bytes(staging))


def _cell_work(cell: Cell, model: str, config: SweepConfig, macro: CellStates, micro: CellStates,
               unique_tokens: np.ndarray, shards: ShardCache) -> CellWork:
    """What the reducer needs of one cell; the cache key of its rows covers its states (and the micro states)."""
    with_micro = config.micro == "single_token"
    states_key = content_key(macro.key, micro.key if with_micro else "")
    return CellWork(model=model, corpus=cell.corpus_cfg.label, shots=cell.shots, input_ids=cell.corpus.input_ids,
                    positions=list(cell.positions), seeds=list(config.seeds), macro_dir=macro.directory,
                    micro_dir=micro.directory if with_micro else None,
                    unique_tokens=unique_tokens if with_micro else None, scale_rule=config.scale_rule,
                    cache=RowCache(shards, states_key, model=model, cell=cell.key))


def layer_passes(layers: list[int], bytes_per_stream: float, budget_bytes: float | None) -> list[list[int]]:
    """Split `layers` into extraction passes whose residual streams fit `budget_bytes` on disk (None: one pass).

    Why passes: the states of every block of a paper-scale cell do not fit a disk (20,000 x 24 positions x 31
    streams in float16 is 17 GB), but each pass's blocks are reduced and their streams deleted before the next
    pass is extracted; the stream two passes share (the last block's output, the next block's input) stays.
    The forward stops at the deepest hooked stream (`capture.py`), so early passes cost a fraction of one;
    layers go in depth order, so a pass is a contiguous slice of the stack. A pass holds at least one block
    (two streams) whatever the budget.
    """
    layers = sorted(layers)
    if not layers or budget_bytes is None:
        return [layers] if layers else []
    max_streams = int(budget_bytes // max(bytes_per_stream, 1.0))
    passes: list[list[int]] = [[]]
    for layer in layers:
        if passes[-1] and len(streams_of_layers(passes[-1] + [layer])) > max_streams:
            passes.append([])
        passes[-1].append(layer)
    return passes


#: Disk bytes of a stream's Parquet files per byte of raw states, for the free-space check. Measured on tiny-gpt2
#: (240 samples x 4 positions, float32): block outputs take 0.86 of the raw bytes (snappy), the embeddings 0.18
#: (repeated tokens), and each file adds ~2 KiB of sample ids and framing; 1.1 leaves a margin for states that
#: do not compress, without refusing a pass that would fit by much.
STATE_FILE_OVERHEAD = 1.1


def _state_bytes(plan: ModelPlan, config: SweepConfig) -> int:
    """Disk bytes of one stored state vector."""
    return plan.info.hidden_size * (2 if config.extract.store_dtype == "float16" else 4)


def _stream_bytes(plan: ModelPlan, cells: list[Cell], config: SweepConfig, with_micro: bool) -> float:
    """Disk bytes of one residual stream's states over `cells` (macro at the analysed positions, and micro)."""
    total = sum(len(c.corpus.input_ids) * len(c.positions) for c in cells)
    if with_micro:
        total += len(plan.unique_tokens)
    return float(total * _state_bytes(plan, config))


class _StreamHolders:
    """Which blocks still need each stored residual stream, so a stream is deleted the moment its last reader's
    readings are cached (block l reads streams l and l + 1; neighbouring blocks share one)."""

    def __init__(self, states: CellStates, layers: list[int], keep: bool) -> None:
        self.states, self.keep = states, keep
        self.readers: dict[int, set[int]] = {}
        for layer in layers:
            for stream in (layer, layer + 1):
                self.readers.setdefault(stream, set()).add(layer)

    def done(self, layer: int) -> None:
        for stream in (layer, layer + 1):
            readers = self.readers.get(stream)
            if readers is None or layer not in readers:
                continue
            readers.discard(layer)
            if not readers and not self.keep:
                self.states.clear_streams([stream])


def _extract_and_reduce(config: SweepConfig, plan: ModelPlan, readings: list[Reading], work: dict[str, CellWork],
                        macro: dict[str, CellStates], micro: CellStates, shards: ShardCache, timer: _Timer,
                        usage: PeakUsage) -> list[CellReduction]:
    """Extract and reduce one model's cells, a pass of layers at a time, so that states on disk stay within
    `extract.max_states_gb`. A residual stream is deleted as soon as every reading of the blocks that read it
    is cached (unless `extract.keep_states`); a layer whose readings are all cached is never extracted again."""
    spec = plan.spec
    with_micro = config.micro == "single_token"
    keep = config.extract.keep_states
    need = {cell.key: layers_to_compute(work[cell.key], readings, plan.layers) for cell in plan.cells}
    needed = sorted(set().union(*need.values())) if need else []
    budget = config.extract.max_states_gb * 1024**3 if config.extract.max_states_gb is not None else None
    passes = layer_passes(needed, _stream_bytes(plan, plan.cells, config, with_micro), budget)
    if len(passes) > 1:
        print(f"[ie-ray] {spec.label}: {len(needed)} layers in {len(passes)} extraction passes of at most "
              f"{max(len(p) for p in passes)} (extract.max_states_gb = {config.extract.max_states_gb})", flush=True)
    done: dict[str, list[CellReduction]] = {cell.key: [] for cell in plan.cells}
    holders = {cell.key: _StreamHolders(macro[cell.key], need[cell.key], keep) for cell in plan.cells}
    # one micro stream serves every cell: a block's micro streams go once no cell has the block left to reduce
    micro_holders = _StreamHolders(micro, needed, keep)
    for layers in passes:
        with timer.stage(f"extract {spec.label}"):
            todo = [(macro[c.key], c.table, c.positions, c.key,
                     streams_of_layers([l for l in layers if l in need[c.key]]))
                    for c in plan.cells if any(l in need[c.key] for l in layers)]
            if with_micro:
                # micro states depend only on the token: one forward per UNIQUE token id, joined back later
                todo.append((micro, _micro_table(plan.unique_tokens), [0], "micro", streams_of_layers(layers)))
            _extract_cached(shards, todo, spec, config, _state_bytes(plan, config))
        usage.measure_disk()
        with timer.stage(f"reduce {spec.label}"):
            for cell in plan.cells:
                wanted = [l for l in layers if l in need[cell.key]]
                if wanted:
                    done[cell.key].append(reduce_cell(work[cell.key], readings, wanted,
                                                      on_layer_done=holders[cell.key].done))
            for layer in layers:
                micro_holders.done(layer)
    with timer.stage(f"reduce {spec.label}"):
        for cell in plan.cells:  # layers whose every reading is cached: rows from the cache, no states needed
            cached = [l for l in plan.layers if l not in need[cell.key]]
            if cached:
                done[cell.key].append(reduce_cell(work[cell.key], readings, cached,
                                                  on_layer_done=holders[cell.key].done))
    return [reduction for cell in plan.cells for reduction in done[cell.key]]
