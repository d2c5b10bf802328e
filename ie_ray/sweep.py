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
from ie_ray.cache import CellStates, ShardCache, content_key
from ie_ray.config import CorpusConfig, SweepConfig, resolve_indices
from ie_ray.corpora.build import Corpus, build_corpus, corpus_shots
from ie_ray.errors import ConfigError
from ie_ray.extract import StateShard, extract_shards
from ie_ray.ie import ie_by_reading, layer_summary, models_side_by_side, side_by_side
from ie_ray.models import ModelInfo, ModelSpec, describe_model, load_tokenizer
from ie_ray.ray_logs import ray_messages_to, route_ray_messages
from ie_ray.reduce import EstimateCache, EstimateJob, fit_jobs, plan_jobs
from ie_ray.reduce_smoothed import LayerProblem, reduce_layer, rows_frame
from ie_ray.resources import estimator_gpus, smoothed_gpus


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


def init_ray(num_cpus: int | None = None, address: str | None = None, resources: dict | None = None) -> None:
    """Connect to `address` or RAY_ADDRESS when set (ray job submit sets it), else start Ray in-process.

    An in-process Ray sizes its object store and spill directory from IE_RAY_OBJECT_STORE_GB and
    IE_RAY_SPILL_DIR: block states travel through the object store between extraction and the Parquet writer,
    and a paper-scale cell (300k samples x 8 positions x 2 x hidden) outgrows RAM, so Ray spills to disk,
    which should be a fast local disk, not /tmp on a small root volume. On a cluster the same settings are
    `ray start` flags (cluster/ configs).
    """
    import ray

    route_ray_messages()  # before ray.init: its start-up lines belong in the run's ray.log too
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        context = ray.init(address=address if "://" not in address else "auto")
        route_ray_messages(context.address_info.get("session_dir"))
        return
    extra: dict = {}
    if os.environ.get("IE_RAY_OBJECT_STORE_GB"):
        extra["object_store_memory"] = int(float(os.environ["IE_RAY_OBJECT_STORE_GB"]) * 1024**3)
    if os.environ.get("IE_RAY_SPILL_DIR"):
        extra["object_spilling_directory"] = os.environ["IE_RAY_SPILL_DIR"]
    # address="local": a NEW in-process instance. Without it ray.init() attaches to whatever cluster `ray start`
    # (or a test) last left in /tmp/ray/ray_current_cluster; use RAY_ADDRESS=auto to mean that on purpose.
    context = ray.init(address="local", num_cpus=num_cpus, resources=resources, include_dashboard=False,
                       log_to_driver=True, **extra)
    route_ray_messages(context.address_info.get("session_dir"))


def _versions() -> dict[str, str]:
    import ray
    import torch
    import transformers

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=store.REPO_ROOT, capture_output=True, text=True, timeout=5
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
        layers = resolve_indices(config.layers, info.n_layers, "layer", f"model {spec.name!r}")
        cells = []
        for corpus_cfg in config.corpora:
            for shots in corpus_shots(corpus_cfg, config.shots):  # natural text: built once, shots = 0
                try:
                    corpus = build_corpus(corpus_cfg, tokenizer, shots)
                except ConfigError as exc:  # e.g. fewer single-token entities than shots, too few windows
                    raise ConfigError(f"{exc} (model {spec.name!r})") from exc
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
    params = config.estimator_params()
    shards = ShardCache(cache_dir if cache_dir is not None else default_cache_dir(run_dir))
    with timer.stage("plan"):
        plans = plan_sweep(config)
    store.write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    manifest: dict = dict(config_hash=config.content_hash(), versions=_versions(), models={}, corpora={},
                          cache_dir=str(shards.root), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    mi_frames: list[pd.DataFrame] = []
    scale_frames: list[pd.DataFrame] = []
    infos: dict[str, ModelInfo] = {}
    for plan in plans:
        spec = plan.spec
        infos[spec.name] = plan.info
        manifest["models"][spec.name] = plan.info.to_dict()
        for cell in plan.cells:
            store.write_arrow(store.inside(run_dir, "corpora", store.safe_name(spec.name), cell.key + ".parquet"),
                              cell.table)
            manifest["corpora"][f"{spec.name}/{cell.key}"] = dict(
                **cell.corpus.describe(), n_samples=len(cell.corpus.input_ids),
                length=cell.corpus.input_ids.shape[1],
                n_distinct_sequences=int(len(np.unique(cell.corpus.input_ids, axis=0))),
            )
        dtype = config.extract.store_dtype
        macro = {cell.key: shards.cell_states(plan.fingerprint, cell.corpus.input_ids, cell.positions, dtype)
                 for cell in plan.cells}
        micro = shards.cell_states(plan.fingerprint, plan.unique_tokens[:, None], [0], dtype)
        for cell in plan.cells:
            manifest["corpora"][f"{spec.name}/{cell.key}"]["states"] = str(macro[cell.key].directory)
        if config.micro == "single_token":
            manifest["models"][spec.name]["micro_states"] = str(micro.directory)
        with timer.stage(f"extract {spec.name}"):
            todo = [(macro[cell.key], cell.table, cell.positions, cell.key) for cell in plan.cells]
            if config.micro == "single_token":
                # micro states depend only on the token: one forward per UNIQUE token id, joined back later
                todo.append((micro, _micro_table(plan.unique_tokens), [0], "micro"))
            _extract_cached(shards, todo, spec, plan.layers, config)
        with timer.stage(f"reduce {spec.name}"):
            for cell in plan.cells:
                states_key = content_key(macro[cell.key].key, micro.key if config.micro == "single_token" else "")
                reduction = _reduce_cell(config, params, plan.layers, cell.positions, cell.corpus.input_ids,
                                         plan.unique_tokens, macro[cell.key].directory, micro.directory,
                                         label=f"{spec.name} {cell.key}",
                                         cache=EstimateCache(shards, states_key, params.key_dict(),
                                                             model=spec.name, cell=cell.key),
                                         shards=shards, states_key=states_key)
                for frame in (reduction.mi, reduction.scales):
                    if frame.empty:
                        continue
                    frame.insert(0, "shots", cell.shots)
                    frame.insert(0, "corpus", cell.corpus_cfg.label)
                    frame.insert(0, "model", spec.name)
                mi_frames.append(reduction.mi)
                scale_frames.append(reduction.scales)
    with timer.stage("tables"):
        mi = pd.concat(mi_frames, ignore_index=True)
        mi["estimator"] = np.where(mi.reading == "mine", f"mine-{params.objective}/{params.readout}", mi.reading)
        mi["n_params"] = mi.model.map(lambda m: infos[m].n_params)
        tau = config.smoothed_params().tau
        readings = ie_by_reading(mi, micro_source="micro" if config.micro == "single_token" else "macro")
        ie = side_by_side(readings, config.headline, tau)
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
    manifest["estimator_params"] = {k: v for k, v in params.__dict__.items()}
    manifest["readings"] = dict(readings=list(config.readings), headline=config.headline,
                                smoothed=config.smoothed_params().key_dict(), scale_rule=config.scale_rule,
                                entropy_tolerance=config.entropy_tolerance, mine_positions=config.mine_positions)
    store.write_json(run_dir / "manifest.json", manifest)
    print(f"[ie-ray] shards reused: {shards.reused}; computed: {shards.computed}", flush=True)
    return SweepResult(run_dir, mi, ie, layers_table, models_table, timer.seconds)


def _extract_cached(
    shards: ShardCache, todo: list[tuple[CellStates, pa.Table, list[int], str]], spec: ModelSpec, layers: list[int],
    config: SweepConfig,
) -> None:
    """Extract the layers of every cell of one model that are not finished in the cache, then seal them.

    All unfinished cells go through ONE actor pool, so each actor loads the model once for the whole model's
    work instead of once per (corpus, shots) cell.
    """
    pending = []
    for cell, table, positions, label in todo:
        missing = cell.missing_layers(layers)
        for layer in layers:
            status = "computed" if layer in missing else "reused"
            shards.record("extraction_layers", status, cell.key, model=spec.name, cell=label, layer=layer)
        if missing:
            cell.clear_layers(missing)
            pending.append((cell, table, missing, StateShard(table, positions, missing, cell.directory)))
    if not pending:
        return
    init_ray()  # only now: everything before this point was validation and cache look-ups
    extract_shards([p[3] for p in pending], spec, config.extract)
    for cell, table, missing, _ in pending:
        cell.seal_layers(missing, table.column("sample_id").to_numpy())


def _no_states(job: EstimateJob) -> tuple[np.ndarray, np.ndarray]:
    raise RuntimeError(f"estimate {job} is cached; its states should never be needed")


@dataclass
class CellReduction:
    """What the reducer made of one cell: MI rows of every reading, and the noise scale of each block side."""

    mi: pd.DataFrame
    scales: pd.DataFrame


def _reduce_cell(
    config: SweepConfig,
    params,
    layers: list[int],
    positions: list[int],
    input_ids: np.ndarray,
    unique_tokens: np.ndarray,
    macro_dir: Path,
    micro_dir: Path,
    label: str,
    cache: EstimateCache | None = None,
    shards: ShardCache | None = None,
    states_key: str = "",
) -> CellReduction:
    """Every reading of one (model, corpus, shots) cell: the smoothed MI and entropy limit (one Ray task per
    layer, `reduce_smoothed.py`) and the MINE estimates (`reduce.py`). States are read only when something is
    missing from the cache."""
    with_micro = config.micro == "single_token"
    mine_positions = [max(positions)] if config.mine_positions == "last" else positions
    jobs = (plan_jobs(input_ids, layers, mine_positions, list(config.seeds), with_micro=with_micro)
            if "mine" in config.readings else [])
    well_posed = [r for r in config.readings if r != "mine"]
    sparams = config.smoothed_params()
    problems = {layer: LayerProblem(layer, tuple(positions), tuple(range(max(positions) + 1)) if with_micro else (),
                                    tuple(config.seeds), tuple(well_posed), config.scale_rule,
                                    config.entropy_tolerance)
                for layer in layers} if well_posed else {}
    layer_keys = {layer: shards.readings_key(states_key, p.key_dict(), sparams.key_dict())
                  for layer, p in problems.items()} if shards is not None else {}
    done = {layer: shards.load_readings(key) for layer, key in layer_keys.items()} if shards is not None else {}
    done = {layer: payload for layer, payload in done.items() if payload is not None}
    for layer in done:
        shards.record("estimates", "reused", layer_keys[layer], layer=layer, reading="smoothed+limit")
    mine_cached = cache is not None and all(job.n_distinct <= 1 or cache.peek(job) is not None for job in jobs)
    if mine_cached and len(done) == len(problems):
        # Everything is cached (a rerun): read no states and start no Ray (benchmarks/sweep.py).
        frames = [fit_jobs(jobs, _no_states, params, config.reduce.estimators_per_task,
                           config.reduce.num_cpus_per_task, 0.0, progress_label=f"MI {label}", cache=cache)] \
            if jobs else []
        return _cell_reduction(frames, done, shards, layer_keys, params)
    init_ray()
    position_index = {p: j for j, p in enumerate(positions)}
    token_row = np.searchsorted(unique_tokens, input_ids)  # (N, T): row of each token's micro state

    def load_layer(layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        ids, pre, post = store.read_layer_states(macro_dir, layer)
        if len(ids) != len(input_ids):
            raise RuntimeError(f"layer {layer}: {len(ids)} extracted rows for {len(input_ids)} samples in {macro_dir}")
        if not with_micro:
            return pre, post, None, None
        _, mpre, mpost = store.read_layer_states(micro_dir, layer)
        return pre, post, mpre[:, 0], mpost[:, 0]

    if not jobs:
        # Smoothed MI and entropy limit only: stream the layers through a bounded window of Ray tasks, so the
        # driver and the object store hold a few layers' states at a time, not the model's (30 blocks x 10,000
        # windows x 8 positions x in/out x 576 dims is 11 GB in float32: the first 10k-window run was killed
        # for memory holding them all).
        done.update(_stream_layer_readings(config, sparams, problems, done, input_ids,
                                           token_row if with_micro else None, load_layer, shards, layer_keys, label))
        return _cell_reduction([], done, shards, layer_keys, params)

    # MINE reads any (layer, position) while the smoothed tasks run: every layer's states stay in memory.
    macro_states: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    micro_states: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for layer in layers:
        pre, post, mpre, mpost = load_layer(layer)
        macro_states[layer] = (pre, post)
        if with_micro:
            micro_states[layer] = (mpre, mpost)

    pending = _submit_layer_readings(config, sparams, problems, done, input_ids, macro_states, micro_states,
                                     token_row if with_micro else None)

    def states_for(job: EstimateJob) -> tuple[np.ndarray, np.ndarray]:
        if job.level == "macro":
            pre, post = macro_states[job.layer]
            j = position_index[job.position]
            return pre[:, j], post[:, j]
        pre, post = micro_states[job.layer]
        rows = token_row[:, job.position]
        return pre[rows], post[rows]

    num_gpus = estimator_gpus(config.reduce.num_gpus_per_task, params, config.reduce.estimators_per_task,
                              len(input_ids), next(iter(macro_states.values()))[0].shape[-1])
    frames = [fit_jobs(jobs, states_for, params, config.reduce.estimators_per_task,
                       config.reduce.num_cpus_per_task, num_gpus, progress_label=f"MI {label}", cache=cache)]
    done.update(_collect_layer_readings(pending, shards, layer_keys, label))
    return _cell_reduction(frames, done, shards, layer_keys, params)


def _layer_remote(config):
    import ray

    return ray.remote(reduce_layer).options(num_cpus=config.reduce.num_cpus_per_task,
                                            num_gpus=smoothed_gpus(config.reduce.num_gpus_per_task),
                                            max_retries=2)


def _submit_layer_readings(config, sparams, problems, done, input_ids, macro_states, micro_states, token_row):
    """One Ray task per layer that is not cached: its states travel once, all its problems are fitted in it."""
    import ray

    remote = _layer_remote(config)
    ids = ray.put(input_ids)
    rows_ref = ray.put(token_row) if token_row is not None else None
    pending = {}
    for layer, problem in problems.items():
        if layer in done:
            continue
        pre, post = macro_states[layer]
        mpre, mpost = micro_states.get(layer, (None, None))
        ref = remote.remote(problem, sparams, ids, pre, post, mpre, mpost, rows_ref, config.reduce.num_cpus_per_task)
        pending[ref] = layer
    return pending


def layers_in_flight(num_cpus_per_task: float) -> int:
    """How many layer tasks the streaming reducer keeps submitted: as many as can run at once, plus one queued so
    a core never idles while the driver reads the next layer."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, int(cpus // max(num_cpus_per_task, 1e-6))) + 1


def bounded_map(items: list, submit, wait_one, max_in_flight: int):
    """Submit `items` one by one (`submit(item) -> handle`), never more than `max_in_flight` unfinished at once;
    yield (item, result) as `wait_one(handles) -> (handle, result)` returns them. Why a helper: it is the memory
    bound of the streaming reducer (each handle holds one layer's states), kept testable without Ray."""
    queue = list(items)
    pending: dict = {}
    while queue or pending:
        while queue and len(pending) < max_in_flight:
            item = queue.pop(0)
            pending[submit(item)] = item
        handle, result = wait_one(list(pending))
        yield pending.pop(handle), result


def _stream_layer_readings(config, sparams, problems, done, input_ids, token_row, load_layer, shards, layer_keys,
                           label) -> dict:
    """The smoothed/entropy-limit layer tasks with at most `layers_in_flight` layers' states alive at a time;
    each layer's rows are saved the moment its task returns (a killed driver loses only tasks in flight)."""
    import ray
    from tqdm.auto import tqdm

    remote = _layer_remote(config)
    ids = ray.put(input_ids)
    rows_ref = ray.put(token_row) if token_row is not None else None

    def submit(layer: int):
        pre, post, mpre, mpost = load_layer(layer)
        return remote.remote(problems[layer], sparams, ids, pre, post, mpre, mpost, rows_ref,
                             config.reduce.num_cpus_per_task)

    def wait_one(handles: list):
        ready, _ = ray.wait(handles, num_returns=1)
        return ready[0], ray.get(ready[0])

    todo = [layer for layer in problems if layer not in done]
    out = {}
    with tqdm(total=len(todo), desc=f"smoothed MI + entropy limit {label}", unit="layer") as bar:
        for layer, payload in bounded_map(todo, submit, wait_one, layers_in_flight(config.reduce.num_cpus_per_task)):
            out[layer] = _save_layer_readings(shards, layer_keys, layer, payload)
            bar.update(1)
    return out


def _save_layer_readings(shards: ShardCache | None, layer_keys: dict, layer: int, payload: dict) -> dict:
    """Cache one layer task's rows the moment it returns (a killed driver loses only tasks in flight)."""
    if shards is not None:
        shards.save_readings(layer_keys[layer], payload["rows"], payload["scales"])
        shards.record("estimates", "computed", layer_keys[layer], layer=layer, reading="smoothed+limit")
    return payload


def _collect_layer_readings(pending: dict, shards: ShardCache | None, layer_keys: dict, label: str) -> dict:
    """Wait for the layer tasks; save each one's rows the moment it returns (a killed driver loses only tasks
    in flight)."""
    import ray
    from tqdm.auto import tqdm

    out = {}
    with tqdm(total=len(pending), desc=f"smoothed MI + entropy limit {label}", unit="layer") as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            layer = pending.pop(ready[0])
            payload = ray.get(ready[0])
            out[layer] = _save_layer_readings(shards, layer_keys, layer, payload)
            bar.update(1)
    return out


def _cell_reduction(frames: list[pd.DataFrame], done: dict, shards, layer_keys: dict, params) -> CellReduction:
    """Stack the MINE rows and the per-layer smoothed / entropy-limit rows into one tidy table."""
    for frame in frames:
        frame["reading"] = "mine"
        frame["tau"] = np.nan
        frame.loc[:, "objective"] = frame["objective"].fillna(params.objective)
    well_posed = [r for layer in sorted(done) for r in done[layer]["rows"]]
    if well_posed:
        frames.append(rows_frame(well_posed))
    scales = pd.DataFrame([s for layer in sorted(done) for s in done[layer]["scales"]])
    mi = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return CellReduction(mi, scales)
