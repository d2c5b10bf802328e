"""Extraction stage on Ray Data: an actor pool where each actor loads ONE model ONCE and maps token batches
to block states, written as Parquet (one row per sample x layer, tensor columns `resid_pre`/`resid_post` of
shape (positions, hidden)).

This is the shape of Ray's own batch-inference examples: a callable class whose `__init__` holds the expensive
state and whose `__call__` maps a `dict[str, np.ndarray]` batch to another; resources come from the config.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from ie_ray.capture import capture_block_states, pad_batch
from ie_ray.config import ExtractConfig
from ie_ray.models import ModelSpec, load_model

STATE_COLUMNS = ("resid_pre", "resid_post")


class BlockStateExtractor:
    """Ray Data callable class: holds the model, maps {sample_id, input_ids} -> per-(sample, layer) states."""

    def __init__(self, model: dict, layers: list[int], positions: list[int], store_dtype: str, device: str,
                 threads: int = 1):
        import torch

        # One intra-op thread per CPU the actor holds: more threads than cores on a shared box made one
        # forward 10x slower in our measurements (oversubscription with the other stages' processes).
        torch.set_num_threads(max(1, threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.loaded = load_model(ModelSpec(**model), device=device)
        self.layers = list(layers)
        self.positions = list(positions)
        self.store_dtype = np.dtype(store_dtype)
        tokenizer = self.loaded.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.padding_side = getattr(tokenizer, "padding_side", "right")
        self.bos_id = tokenizer.bos_token_id if self.loaded.info.bos_prepended else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sequences = [np.asarray(ids, dtype=np.int64) for ids in batch["input_ids"]]
        padded = pad_batch(sequences, self.pad_id, self.padding_side, self.bos_id)
        states = capture_block_states(self.loaded.model, self.loaded.blocks, padded, self.layers, self.positions)
        n = len(sequences)
        out = {
            "sample_id": np.repeat(np.asarray(batch["sample_id"], dtype=np.int64), len(self.layers)),
            "layer": np.tile(np.asarray(self.layers, dtype=np.int64), n),
        }
        for k, column in enumerate(STATE_COLUMNS):
            # (layers, B, P, H) -> (B, layers, P, H) -> rows ordered sample-major, layer-minor
            stacked = np.stack([states[l][k].numpy() for l in self.layers], axis=1)
            out[column] = stacked.reshape(n * len(self.layers), *stacked.shape[2:]).astype(self.store_dtype)
        return out


def extract_states(
    corpus: pa.Table,
    model: ModelSpec,
    layers: list[int],
    positions: list[int],
    settings: ExtractConfig,
    out_dir: Path,
) -> Path:
    """Run the extraction pipeline `from_arrow -> map_batches(actor pool) -> write_parquet` into `out_dir`.

    `corpus` needs `sample_id` and `input_ids` columns. Layers are partition columns, so the reducer reads one
    layer's states without touching the others.
    """
    import ray

    dataset = ray.data.from_arrow(corpus.select(["sample_id", "input_ids"]))
    states = dataset.map_batches(
        BlockStateExtractor,
        fn_constructor_kwargs=dict(
            model=asdict(model),
            layers=layers,
            positions=positions,
            store_dtype=settings.store_dtype,
            device=settings.device,
            threads=int(settings.num_cpus),
        ),
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(size=settings.concurrency),
        num_gpus=settings.num_gpus,
        num_cpus=settings.num_cpus,
        batch_format="numpy",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    states.write_parquet(str(out_dir), partition_cols=["layer"])
    return out_dir
