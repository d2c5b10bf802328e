"""Extraction stage on Ray Data: an actor pool where each actor loads ONE model ONCE and maps token batches
to residual-stream states, written as Parquet (one row per sample x stream, tensor column `resid` of shape
(positions, hidden)). Stream s is block s's input and block s - 1's output (`capture.py`), so a block's states
are two streams and a stack of L blocks stores L + 1 streams, each once (storing `resid_pre` and `resid_post` per
block wrote every state twice: 1.1 GB per block of the 20k ICL task instead of 0.55).

This is the shape of Ray's own batch-inference examples: a callable class whose `__init__` holds the expensive
state and whose `__call__` maps a `dict[str, np.ndarray]` batch to another; resources come from the config,
or from `ie_ray.resources` when the config says `auto` (GPU share or GPU count from the model's size, batch
size from memory).

Several shards (e.g. every (corpus, shots) cell of a model plus its micro states) can go through ONE actor
pool (`extract_shards`): the model is then loaded once per actor for the whole model's work, not once per
cell. Each actor reports where it ran and how often it loaded its model to a small ledger actor, so a run can
show (and a test can check) how the work spread over the nodes of a cluster.
"""
from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ie_ray.capture import capture_stream_states, pad_batch, streams_of_layers
from ie_ray.config import ExtractConfig
from ie_ray.errors import ConfigError
from ie_ray.extract_staging import claim, clear_orphans, salvage, staging_dir
from ie_ray.models import ModelSpec, load_model
from ie_ray.resources import ExtractPlan, forward_bytes_per_sample, micro_batch_size, plan_extract
from ie_ray.store import is_out_of_space

STATE_COLUMN = "resid"
#: Input blocks per actor when there are several: enough to balance the rows over the pool, few enough to keep
#: the Parquet files (one per written block and stream) few.
BLOCKS_PER_ACTOR = 4
#: Parquet writer options for the state files. Dictionary encoding (pyarrow's default) never pays on float
#: activations (almost no value repeats) but costs: ~3x the write time and +13% bytes on float32 states in a
#: write/read micro-benchmark here, and 5x the read time on float16.
PARQUET_ARGS: dict = dict(use_dictionary=False)
# How many times this worker process has loaded each model: an actor that loads more than once (or a pool that
# reloads a model per batch) shows up in the ledger instead of silently costing minutes per load.
_LOADS: Counter = Counter()


@dataclass(frozen=True)
class StateShard:
    """One unit of extraction: token sequences, the positions and residual streams to capture, and where they go."""

    table: pa.Table  # columns sample_id, input_ids
    positions: list[int]
    streams: list[int]
    out_dir: Path


@dataclass
class ActorRecord:
    """What one extraction actor did: where it ran, how often it loaded the model, how much it processed."""

    actor: str
    node_id: str
    pid: int
    model: str
    loads: int
    load_s: float
    device: str
    batches: int = 0
    rows: int = 0
    # Wall-clock (time.time()) ends of the actor's first and last batch: the steady-state window, without the
    # actor's process start, imports and model load (benchmarks/extraction.py reads them).
    first_batch_done: float = 0.0
    last_batch_done: float = 0.0


@dataclass
class ExtractionReport:
    """Result of one extraction pipeline: the plan it ran with and what each actor did."""

    model: str
    plan: dict
    shards: list[str]
    actors: list[ActorRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(model=self.model, plan=self.plan, shards=self.shards, actors=[asdict(a) for a in self.actors])


#: Reports of every extraction this driver process ran, in order (the sweep can put them in its manifest).
EXTRACTION_LOG: list[ExtractionReport] = []


class _Ledger:
    """Ray actor collecting ActorRecords (plain dicts) from the extraction actors of one pipeline."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}

    def register(self, record: dict) -> None:
        self.records[record["actor"]] = record

    def add_batch(self, actor: str, rows: int) -> None:
        record = self.records[actor]
        record["batches"] += 1
        record["rows"] += rows
        record["last_batch_done"] = time.time()
        record["first_batch_done"] = record["first_batch_done"] or record["last_batch_done"]

    def all(self) -> list[dict]:
        return list(self.records.values())


class BlockStateExtractor:
    """Ray Data callable class: holds the model, maps {shard, sample_id, input_ids} -> per-(sample, stream) states.

    A batch may mix rows of several shards (Ray Data packs blocks into batches); rows are grouped by shard and
    each group is captured with that shard's positions and streams.
    """

    def __init__(self, model: dict, shard_streams: list[list[int]], shard_positions: list[list[int]],
                 store_dtype: str, device: str, threads: int = 1, device_map: str | None = None, ledger=None):
        import time

        import torch

        # One intra-op thread per CPU the actor holds: more threads than cores on a shared box made one
        # forward 10x slower in our measurements (oversubscription with the other stages' processes).
        torch.set_num_threads(max(1, threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        spec = ModelSpec(**model)
        start = time.perf_counter()
        # A model split over GPUs is loaded on the host first, then dispatched block by block.
        self.loaded = load_model(spec, device="cpu" if device_map else device)
        if device_map:
            self._dispatch(device_map)
        _LOADS[spec.name] += 1
        self.device = str(next(self.loaded.model.parameters()).device)
        self.shard_streams = [list(s) for s in shard_streams]
        self.shard_positions = [list(p) for p in shard_positions]
        self.store_dtype = np.dtype(store_dtype)
        tokenizer = self.loaded.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.padding_side = getattr(tokenizer, "padding_side", "right")
        self.bos_id = tokenizer.bos_token_id if self.loaded.info.bos_prepended else None
        self.ledger = ledger
        self.actor_key = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if ledger is not None:
            import ray

            record = ActorRecord(self.actor_key, ray.get_runtime_context().get_node_id(), os.getpid(), spec.name,
                                 _LOADS[spec.name], time.perf_counter() - start, self.device)
            ray.get(ledger.register.remote(asdict(record)))

    def _dispatch(self, device_map: str) -> None:
        """Split the model over the actor's GPUs (Ray sets CUDA_VISIBLE_DEVICES to them), never cutting a block."""
        import torch
        from accelerate import dispatch_model, infer_auto_device_map

        from ie_ray.resources import USABLE_FRACTION

        budget = {i: int(USABLE_FRACTION * torch.cuda.get_device_properties(i).total_memory)
                  for i in range(torch.cuda.device_count())}
        block_class = type(self.loaded.blocks[0]).__name__
        placement = infer_auto_device_map(self.loaded.model, max_memory=budget, no_split_module_classes=[block_class])
        self.loaded.model = dispatch_model(self.loaded.model, device_map=placement)

    def _rows_per_forward(self, n: int, seq_len: int) -> int:
        """Split a batch further when the device's free memory after loading cannot hold it in one forward."""
        if not self.device.startswith("cuda"):
            return n
        import torch

        free, _ = torch.cuda.mem_get_info()
        per_sample = forward_bytes_per_sample(self.loaded.info.hidden_size, seq_len, self.loaded.info.dtype)
        return micro_batch_size(free, per_sample, n)

    def _capture(self, sequences: list[np.ndarray], streams: list[int], positions: list[int]) -> np.ndarray:
        """States stacked as (B, streams, P, H) in the store dtype, forwarded in memory-sized chunks."""
        step = self._rows_per_forward(len(sequences), max(len(s) for s in sequences) + 1)
        parts: list[np.ndarray] = []
        for start in range(0, len(sequences), step):
            chunk = sequences[start : start + step]
            padded = pad_batch(chunk, self.pad_id, self.padding_side, self.bos_id)
            states = capture_stream_states(self.loaded.model, self.loaded.blocks, padded, streams, positions)
            parts.append(np.stack([states[s].numpy().astype(self.store_dtype) for s in streams], axis=1))
        return np.concatenate(parts)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shard_ids = np.asarray(batch["shard"], dtype=np.int64)
        sample_ids = np.asarray(batch["sample_id"], dtype=np.int64)
        columns: dict[str, list] = {"shard": [], "sample_id": [], "stream": []}
        tensors: list[np.ndarray] = []  # one (rows, P, H) block per shard, rows ordered sample-major
        for shard in np.unique(shard_ids):
            rows = np.flatnonzero(shard_ids == shard)
            streams, positions = self.shard_streams[shard], self.shard_positions[shard]
            captured = self._capture([np.asarray(batch["input_ids"][i], dtype=np.int64) for i in rows], streams,
                                     positions)
            n = len(rows)
            columns["shard"].append(np.full(n * len(streams), shard, dtype=np.int64))
            columns["sample_id"].append(np.repeat(sample_ids[rows], len(streams)))
            columns["stream"].append(np.tile(np.asarray(streams, dtype=np.int64), n))
            tensors.append(captured.reshape(n * len(streams), *captured.shape[2:]))
        out = {key: np.concatenate(value) for key, value in columns.items()}
        if len({t.shape[1:] for t in tensors}) == 1:
            out[STATE_COLUMN] = np.concatenate(tensors)
        else:  # shards with different position counts in one batch: Ray stores variable-shaped tensors
            ragged = np.empty(sum(len(t) for t in tensors), dtype=object)
            ragged[:] = [row for t in tensors for row in t]
            out[STATE_COLUMN] = ragged
        if self.ledger is not None:  # waited on, so the driver's final read of the ledger sees every batch
            import ray

            ray.get(self.ledger.add_batch.remote(self.actor_key, len(shard_ids)))
        return out


def resolve_plan(spec: ModelSpec, settings: ExtractConfig, seq_len: int) -> ExtractPlan:
    """Turn `auto` in the extract settings into numbers for this model on the connected cluster."""
    from ie_ray.models import describe_model, load_tokenizer
    from ie_ray.resources import gpu_memory_from_cluster

    auto_gpus, auto_batch = settings.num_gpus == "auto", settings.batch_size == "auto"
    if not (auto_gpus or auto_batch):
        device_map = "auto" if float(settings.num_gpus) >= 2 else None
        return ExtractPlan(float(settings.num_gpus), device_map, int(settings.batch_size), 0, "from the config")
    info = describe_model(spec, load_tokenizer(spec))
    gpu_memory = gpu_memory_from_cluster() if auto_gpus or float(settings.num_gpus) > 0 else None
    plan = plan_extract(info.n_params, info.hidden_size, seq_len, spec.dtype, gpu_memory,
                        cpu_batch_size=64 if auto_batch else int(settings.batch_size))
    if not auto_gpus:
        gpus = float(settings.num_gpus)
        plan = ExtractPlan(gpus, "auto" if gpus >= 2 else None, plan.batch_size, plan.weight_bytes, "num_gpus from the config")
    if not auto_batch:
        plan = ExtractPlan(plan.num_gpus, plan.device_map, int(settings.batch_size), plan.weight_bytes, plan.reason)
    return plan


def input_blocks(tables: list[pa.Table], batch_size: int, concurrency: int) -> list[pa.Table]:
    """With several actors, cut the shards' token tables into blocks of whole batches, ~BLOCKS_PER_ACTOR per actor.

    Ray Data hands an actor pool whole input blocks, and one table per shard is one block: with several actors,
    one of them did all the rows while the others idled (benchmarks/extraction.py, rows per actor). One actor
    keeps the tables whole: cutting them gained nothing there in that benchmark and wrote more files.
    """
    if concurrency <= 1:
        return tables
    rows = sum(t.num_rows for t in tables)
    per_block = max(1, math.ceil(rows / (BLOCKS_PER_ACTOR * concurrency) / batch_size)) * batch_size
    return [t.slice(i, per_block) for t in tables for i in range(0, t.num_rows, per_block)]


def _spec_for_workers(model: ModelSpec) -> dict:
    """The model spec the extraction actors load. A trained family member (`family-kjv-m`) is resolved to its
    checkpoint directory here, in the driver: which training a name means is the driver's cache and pointer,
    not whatever a worker process (started earlier, or on another node) would find in its own environment. On
    a multi-node cluster that directory must be on a filesystem the workers share, as for any local model."""
    spec = asdict(model)
    if model.kind == "family":
        from ie_ray.family.registry import resolve_member

        spec["name"] = str(resolve_member(model.name)[0])
    elif model.kind == "saved":  # a model object handed to ie_ray.measure: same reason
        from ie_ray.models import saved_model_dir

        spec["name"] = str(saved_model_dir(model))
    return spec


def check_writer_cpu(settings: ExtractConfig, cluster_cpus: float) -> None:
    """Refuse actor reservations that take every CPU of the cluster: Ray Data's parquet write tasks need one CPU,
    and without it the extracted states pile up in the object store until the pipeline stalls (measured: 1.3 GiB
    queued, 0 written, after 4 min with `num_cpus: 2` on a 2-CPU box)."""
    held = float(settings.num_cpus) * int(settings.concurrency)
    if cluster_cpus and held >= cluster_cpus:
        raise ConfigError(
            f"extract: {settings.concurrency} actor(s) x num_cpus {settings.num_cpus:g} hold all {cluster_cpus:g} CPUs "
            "of the cluster, leaving none for the write tasks of the same pipeline; lower extract.num_cpus (or "
            "concurrency) and set extract.threads to use more torch threads per actor, e.g. num_cpus: 1, threads: 2")


def extract_shards(shards: list[StateShard], model: ModelSpec, settings: ExtractConfig) -> ExtractionReport:
    """Run ONE pipeline `from_arrow -> map_batches(actor pool) -> write_parquet` over every shard of a model.

    Each shard's states land in `shard.out_dir/stream=<s>/` (streams are partition columns, so the reducer reads
    one block's two streams without touching the others). The pipeline writes to the pass's staging directory,
    partitioned by (shard, stream), and each shard's stream directories are moved into place at the end. A rerun
    of a pass that was killed keeps what that pass had written for every stream of a sample and extracts only the
    rest (`ie_ray.extract_staging`); a disk that fills deletes the staging directory, to give the space back.
    """
    import ray

    if not shards:
        raise ValueError("extract_shards needs at least one shard")
    seq_len = max(int(pc.max(pc.list_value_length(s.table.column("input_ids"))).as_py()) for s in shards)
    plan = resolve_plan(model, settings, seq_len + 1)
    check_writer_cpu(settings, ray.cluster_resources().get("CPU", 0.0))
    staging = staging_dir(shards[0].out_dir.parent, model, shards, settings.store_dtype)
    claim(staging)
    for orphan in clear_orphans(staging.parent, keep=staging):
        print(f"[ie-ray] deleted {orphan}: the staging directory of an extraction pass that ended without finishing")
    kept = salvage(staging, shards)
    n_kept = sum(len(done) for done in kept)
    if n_kept:
        print(f"[ie-ray] {model.name}: the states of {n_kept} of "
              f"{sum(s.table.num_rows for s in shards)} sequences kept from an interrupted pass ({staging}); "
              "extracting the rest")
    tables = [_left_to_extract(s.table, done, i) for i, (s, done) in enumerate(zip(shards, kept, strict=True))]
    records: list[ActorRecord] = []
    if any(t.num_rows for t in tables):
        try:
            records = _run_pipeline([t for t in tables if t.num_rows], shards, model, settings, plan, staging)
        except Exception as exc:
            if is_out_of_space(exc):
                shutil.rmtree(staging, ignore_errors=True)  # the disk is full: give the space back
            raise
    _move_into_place(shards, staging)
    report = ExtractionReport(model.name, plan.to_dict(), [str(s.out_dir) for s in shards], records)
    EXTRACTION_LOG.append(report)
    return report


def _left_to_extract(table: pa.Table, done: np.ndarray, shard: int) -> pa.Table:
    """The shard's token rows whose states are not in the staging directory yet, tagged with the shard index."""
    ids = table.select(["sample_id", "input_ids"])
    if len(done):
        ids = ids.filter(pa.array(~np.isin(ids.column("sample_id").to_numpy(), done)))
    return ids.append_column("shard", pa.array(np.full(ids.num_rows, shard, dtype=np.int64)))


def _run_pipeline(tables: list[pa.Table], shards: list[StateShard], model: ModelSpec, settings: ExtractConfig,
                  plan: ExtractPlan, staging: Path) -> list[ActorRecord]:
    """The Ray Data pipeline of one pass: token rows -> actor pool -> Parquet under `staging`; the actors' ledger."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # The ledger lives on the driver's node: placed anywhere, it died with a lost worker node and took the pipeline
    # down (the restarted extraction actor could not register), though the work itself survives a lost node.
    on_driver = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # Ray's annotations do not type an actor's methods
    ledger: Any = ray.remote(num_cpus=0)(_Ledger).options(scheduling_strategy=on_driver).remote()
    remote_args: dict[str, Any] = dict(num_gpus=plan.num_gpus, num_cpus=settings.num_cpus)
    if settings.resources:
        remote_args["resources"] = dict(settings.resources)
    states = ray.data.from_arrow(input_blocks(tables, plan.batch_size, settings.concurrency)).map_batches(
        BlockStateExtractor,
        fn_constructor_kwargs=dict(
            model=_spec_for_workers(model),
            shard_streams=[s.streams for s in shards],
            shard_positions=[s.positions for s in shards],
            store_dtype=settings.store_dtype,
            device=settings.device,
            threads=int(settings.threads if settings.threads is not None else settings.num_cpus),
            device_map=plan.device_map,
            ledger=ledger,
        ),
        batch_size=plan.batch_size,
        compute=ray.data.ActorPoolStrategy(size=settings.concurrency),
        batch_format="numpy",
        **remote_args,
    )
    states.write_parquet(str(staging), partition_cols=["shard", "stream"], **PARQUET_ARGS)
    records = [ActorRecord(**r) for r in ray.get(ledger.all.remote())]
    ray.kill(ledger)
    return records


def _move_into_place(shards: list[StateShard], staging: Path) -> None:
    """Each shard's finished stream directories from the staging directory into the shard's own; then drop it."""
    for i, shard in enumerate(shards):
        shard.out_dir.mkdir(parents=True, exist_ok=True)
        for stream in shard.streams:
            source = staging / f"shard={i}" / f"stream={stream}"
            target = shard.out_dir / f"stream={stream}"
            if target.exists():
                raise FileExistsError(f"{target} exists; clear a shard's streams before extracting them")
            if not source.is_dir():
                raise RuntimeError(f"the extraction pass wrote no states for residual stream {stream} of "
                                   f"{shard.out_dir} (nothing under {source}); rerun the sweep to extract it again")
            os.replace(source, target)
    shutil.rmtree(staging, ignore_errors=True)


def extract_states(
    corpus: pa.Table,
    model: ModelSpec,
    layers: list[int],
    positions: list[int],
    settings: ExtractConfig,
    out_dir: Path,
) -> ExtractionReport:
    """One shard: `corpus` (columns `sample_id`, `input_ids`) -> the streams of `layers` in
    `out_dir/stream=<s>/*.parquet` (read a block back with `store.read_layer_states`)."""
    return extract_shards([StateShard(corpus, list(positions), streams_of_layers(layers), Path(out_dir))], model,
                          settings)
