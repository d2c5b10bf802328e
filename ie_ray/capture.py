"""Capture block input / block output with forward hooks during a normal forward of the real model.

Naming follows TransformerLens: `resid_pre` of block l is the residual stream entering block l
(`blocks.{l}.hook_resid_pre`), `resid_post` is what block l returns (`blocks.{l}.hook_resid_post`), before any
final norm. The residual stream between blocks is `stream s`: s = l is block l's input, s = l + 1 its output
(the stream entering block l + 1 is exactly what block l returned: one tensor, handed on unchanged in every
supported architecture; `tests/test_capture.py` checks it). Extraction stores streams, each once, so a stack of
blocks costs L + 1 stored states, not 2 L (`capture_stream_states`). We never re-implement the forward by hand (the reference code got masks, position embeddings and
Gemma's embedding scaling wrong that way, bugs B1-B4) and never use `hidden_states[-1]`, which is post-norm.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class _StopForward(Exception):
    """Raised by the last needed hook: blocks after it and the LM head would be wasted compute."""


@dataclass(frozen=True)
class PaddedBatch:
    """Token ids padded on the tokenizer's side, with what the model needs to ignore the padding."""

    input_ids: torch.Tensor  # (B, S)
    attention_mask: torch.Tensor  # (B, S)
    position_ids: torch.Tensor  # (B, S): 0 at each row's first real token, whatever the padding side
    n_prefix: int  # 1 when BOS was prepended (never an analysed position), else 0


def pad_batch(
    sequences: list[np.ndarray] | np.ndarray,
    pad_id: int,
    padding_side: str = "right",
    bos_id: int | None = None,
) -> PaddedBatch:
    """Pad variable-length id sequences; positions are derived from the attention mask, not assumed.

    Tokenizers differ in padding side (SmolLM2 right, Gemma 3 left), and current Llama-style models take
    position ids from `cache_position` (0..S-1) unless told otherwise, so left-padded rows would get shifted
    positions. Passing mask-derived position ids makes every row see the positions it would see unpadded.
    """
    prefix = [bos_id] if bos_id is not None else []
    rows = [prefix + [int(t) for t in seq] for seq in sequences]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return PaddedBatch(ids, mask, position_ids, n_prefix=len(prefix))


def absolute_positions(batch: PaddedBatch, positions: list[int]) -> torch.Tensor:
    """Map analysed content positions (0 = first token after any BOS) to column indices in the padded batch."""
    rank = batch.attention_mask.cumsum(-1) - 1 - batch.n_prefix  # content index of each real token
    lengths = batch.attention_mask.sum(-1) - batch.n_prefix
    too_short = [int(n) for n in lengths if int(n) <= max(positions)]
    if too_short:
        raise ValueError(
            f"position {max(positions)} requested but a sequence has only {min(too_short)} tokens; "
            "request positions below the shortest sequence length"
        )
    index = torch.empty((batch.input_ids.shape[0], len(positions)), dtype=torch.long)
    for j, pos in enumerate(positions):
        hit = (rank == pos) & (batch.attention_mask == 1)
        index[:, j] = hit.float().argmax(-1)
    return index


def _first_tensor(value) -> torch.Tensor:
    """Blocks return a tensor (transformers v5) or a tuple whose first element is the hidden states (v4)."""
    return value[0] if isinstance(value, (tuple, list)) else value


def _forward_until_stopped(model: nn.Module, batch: PaddedBatch, device: torch.device, handles: list) -> None:
    """One forward with the capture hooks in place, ended early by the deepest hook's `_StopForward`; the hooks
    are removed whatever happens."""
    try:
        model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            position_ids=batch.position_ids.to(device),
            use_cache=False,
        )
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def capture_block_states(
    model: nn.Module,
    blocks: nn.ModuleList,
    batch: PaddedBatch,
    layers: list[int],
    positions: list[int],
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Run one forward and return {layer: (resid_pre, resid_post)}, each (B, len(positions), hidden), float32.

    Only the requested positions are gathered inside the hooks, so memory stays O(B x P x H) per layer, and
    the forward stops after the deepest requested block.
    """
    layers = sorted({l % len(blocks) for l in layers})  # negative indices count from the end
    device = next(model.parameters()).device
    index = absolute_positions(batch, positions).to(device)
    rows = torch.arange(index.shape[0], device=device)[:, None]
    captured: dict[int, list[torch.Tensor | None]] = {l: [None, None] for l in layers}
    deepest = max(layers)
    handles = []

    def gather(hidden: torch.Tensor) -> torch.Tensor:
        return hidden[rows, index].float().cpu()

    for layer in layers:
        block = blocks[layer]

        def pre_hook(module, args, kwargs, layer=layer):
            hidden = args[0] if args else kwargs["hidden_states"]
            captured[layer][0] = gather(hidden)

        def post_hook(module, args, kwargs, output, layer=layer):
            captured[layer][1] = gather(_first_tensor(output))
            if layer == deepest:
                raise _StopForward

        handles.append(block.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(block.register_forward_hook(post_hook, with_kwargs=True))
    _forward_until_stopped(model, batch, device, handles)
    missing = [l for l, (pre, post) in captured.items() if pre is None or post is None]
    if missing:
        raise RuntimeError(f"hooks on blocks {missing} never fired; the block list does not match the forward")
    return {l: (pre, post) for l, (pre, post) in captured.items() if pre is not None and post is not None}


def streams_of_layers(layers: list[int]) -> list[int]:
    """The residual-stream indices blocks `layers` read and write: block l is (stream l, stream l + 1)."""
    return sorted({s for layer in layers for s in (layer, layer + 1)})


@torch.no_grad()
def capture_stream_states(
    model: nn.Module,
    blocks: nn.ModuleList,
    batch: PaddedBatch,
    streams: list[int],
    positions: list[int],
) -> dict[int, torch.Tensor]:
    """Run one forward and return {s: residual stream s}, each (B, len(positions), hidden), float32.

    Stream s < L is read by a pre-hook on block s (`hook_resid_pre`), stream L by a post-hook on the last block
    (`hook_resid_post`, before the final norm). The forward stops at the hook of the deepest requested stream:
    requesting stream s costs blocks 0..s-1 only.
    """
    n_blocks = len(blocks)
    bad = [s for s in streams if not 0 <= s <= n_blocks]
    if bad:
        raise ValueError(f"residual streams {bad} do not exist: a {n_blocks}-block model has streams 0..{n_blocks}")
    streams = sorted(set(streams))
    device = next(model.parameters()).device
    index = absolute_positions(batch, positions).to(device)
    rows = torch.arange(index.shape[0], device=device)[:, None]
    captured: dict[int, torch.Tensor | None] = {s: None for s in streams}
    deepest = streams[-1]
    handles = []

    def keep(stream: int, hidden: torch.Tensor) -> None:
        captured[stream] = hidden[rows, index].float().cpu()
        if stream == deepest:
            raise _StopForward

    for stream in streams:
        if stream < n_blocks:
            def pre_hook(module, args, kwargs, stream=stream):
                keep(stream, args[0] if args else kwargs["hidden_states"])

            handles.append(blocks[stream].register_forward_pre_hook(pre_hook, with_kwargs=True))
        else:
            def post_hook(module, args, kwargs, output, stream=stream):
                keep(stream, _first_tensor(output))

            handles.append(blocks[n_blocks - 1].register_forward_hook(post_hook, with_kwargs=True))
    _forward_until_stopped(model, batch, device, handles)
    missing = [s for s, state in captured.items() if state is None]
    if missing:
        raise RuntimeError(f"hooks for streams {missing} never fired; the block list does not match the forward")
    return {s: state for s, state in captured.items() if state is not None}
