"""Train every size of a family with one recipe: same tokens, same order, same schedule; only size varies.

The loop is plain torch (AdamW + transformers' warmup-cosine schedule): on a 2-core CPU the Trainer's
machinery buys nothing, and a loop this short is easy to check. Each member is saved with `save_pretrained`
(safetensors) into a temporary directory that is renamed when complete, so an interrupted run retrains only
the members it had not finished, and a finished member is loaded, never retrained.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ie_ray.family.recipe import FamilyRecipe
from ie_ray.family.registry import DONE, family_dir, is_trained, member_dir, write_pointer
from ie_ray.family.text import chunks, load_family_text, strip_verse_number, token_stream, train_tokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

LOSS_LOG = "losses.csv"
MEMBER_RECORD = "member.json"


@dataclass
class PreparedData:
    tokenizer: PreTrainedTokenizerBase
    train: np.ndarray  # (n_windows, seq_len) int32
    heldout: np.ndarray
    heldout_documents: list[str]
    text_summary: dict


def prepare_data(recipe: FamilyRecipe) -> PreparedData:
    text = load_family_text(recipe.text)
    train_docs = [strip_verse_number(d) for d in text.train]
    heldout_docs = [strip_verse_number(d) for d in text.heldout]
    tokenizer = train_tokenizer(train_docs, recipe)
    train = chunks(token_stream(train_docs, tokenizer), recipe.training.seq_len)
    heldout = chunks(token_stream(heldout_docs, tokenizer), recipe.training.seq_len)
    summary = text.describe() | dict(train_tokens=int(train.size), heldout_tokens=int(heldout.size),
                                     vocab_size=len(tokenizer))
    return PreparedData(tokenizer, train, heldout, heldout_docs, summary)


def batch_order(n_windows: int, recipe: FamilyRecipe) -> np.ndarray:
    """(steps, batch_size) window indices: seeded epochs of permutations, identical for every size."""
    training = recipe.training
    rng = np.random.default_rng(training.seed)
    needed = training.steps * training.batch_size
    epochs = [rng.permutation(n_windows) for _ in range(-(-needed // n_windows))]
    return np.concatenate(epochs)[:needed].reshape(training.steps, training.batch_size)


def build_model(recipe: FamilyRecipe, size: str, vocab_size: int, special_id: int) -> PreTrainedModel:
    """A fresh member with seeded weights; only the SizeSpec differs between members."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig

    spec, training = recipe.sizes[size], recipe.training
    common: dict[str, Any] = dict(vocab_size=vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.ffn,
                  num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                  max_position_embeddings=training.seq_len, bos_token_id=special_id, eos_token_id=special_id,
                  pad_token_id=special_id, tie_word_embeddings=True)
    config: PretrainedConfig
    if recipe.architecture == "llama":
        config = LlamaConfig(num_key_value_heads=spec.heads, **common)
    else:
        config = GPTNeoXConfig(**common)
    with torch.random.fork_rng():
        torch.manual_seed(training.seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def parameter_counts(model: PreTrainedModel) -> dict[str, int]:
    """Total and non-embedding parameters (tied input/output embedding counted once), as Pythia reports them."""
    total = sum(p.numel() for p in model.parameters())
    embedding = cast(torch.nn.Embedding, model.get_input_embeddings()).weight.numel()
    return dict(n_params=int(total), n_params_non_embedding=int(total - embedding))


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, windows: np.ndarray, batch_size: int) -> float:
    """Mean next-token cross-entropy (nats per token) over `windows`, every predicted token weighted equally."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        ids = torch.from_numpy(windows[start:start + batch_size].astype(np.int64))
        logits = model(input_ids=ids).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                 reduction="sum")
        total, count = total + float(loss), count + ids[:, 1:].numel()
    model.train()
    return total / count


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with decay on matrices only (norm gains and biases are not decayed, the usual GPT recipe)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)],
                             lr=lr, betas=(0.9, 0.95))


def train_member(recipe: FamilyRecipe, size: str, data: PreparedData, order: np.ndarray,
                 target: Path, progress: bool = True) -> tuple[dict, torch.nn.Module]:
    """Train one member, save it atomically to `target`, and return its manifest row and the trained model."""
    from transformers import get_cosine_schedule_with_warmup

    training = recipe.training
    special_id = cast(int, data.tokenizer.convert_tokens_to_ids(data.tokenizer.bos_token))  # one token: one id
    model = build_model(recipe, size, len(data.tokenizer), special_id)
    counts = parameter_counts(model)
    optimizer = _optimizer(model, recipe.learning_rate(size), training.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, int(training.warmup_fraction * training.steps)),
                                               training.steps)
    eval_windows = data.heldout[: training.eval_sequences]
    # step 0: the untrained model's held-out loss (~log vocab), so every curve starts from the same point
    log: list[dict] = [dict(step=0, tokens=0, train_loss=math.nan, lr=0.0,
                            heldout_loss=heldout_loss(model, eval_windows, training.batch_size))]
    model.train()
    started = time.perf_counter()
    bar = tqdm(range(training.steps), desc=f"{recipe.model_name(size)} ({counts['n_params_non_embedding']:,} params)",
               disable=not progress, mininterval=5)
    for step in bar:
        ids = torch.from_numpy(data.train[order[step]].astype(np.int64))
        loss = model(input_ids=ids, labels=ids).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{recipe.model_name(size)}: training loss is {float(loss)} at step {step}; "
                                     "lower this size's learning_rate in the recipe")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        row = dict(step=step + 1, tokens=(step + 1) * training.tokens_per_step, train_loss=float(loss.detach()),
                   lr=schedule.get_last_lr()[0], heldout_loss=math.nan)
        if (step + 1) % training.eval_every == 0 or step + 1 == training.steps:
            row["heldout_loss"] = heldout_loss(model, eval_windows, training.batch_size)
            bar.set_postfix(train=f"{row['train_loss']:.3f}", heldout=f"{row['heldout_loss']:.3f}")
        log.append(row)
    wall = time.perf_counter() - started
    losses = pd.DataFrame(log)
    final_heldout = heldout_loss(model, data.heldout, training.batch_size)
    tail = max(1, training.steps // 20)
    record = dict(model=recipe.model_name(size), size=size, **counts, hidden_size=recipe.sizes[size].hidden_size,
                  layers=recipe.sizes[size].layers, heads=recipe.sizes[size].heads,
                  learning_rate=recipe.learning_rate(size), steps=training.steps,
                  tokens_seen=training.steps * training.tokens_per_step, wall_s=round(wall, 1),
                  final_train_loss=float(losses.train_loss.dropna().tail(tail).mean()), final_heldout_loss=final_heldout,
                  heldout_tokens=int(data.heldout.size), recipe_hash=recipe.content_hash(),
                  member_hash=recipe.member_hash(size))
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    data.tokenizer.save_pretrained(tmp)
    losses.to_csv(tmp / LOSS_LOG, index=False)
    (tmp / MEMBER_RECORD).write_text(json.dumps(record, indent=2))
    (tmp / DONE).write_text(f"{recipe.member_hash(size)}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return record, model.eval()


@dataclass
class FamilyResult:
    directory: Path
    manifest: pd.DataFrame
    losses: pd.DataFrame
    text: dict
    heldout_documents: list[str]


def train_family(recipe: FamilyRecipe, sizes: list[str] | None = None, progress: bool = True) -> FamilyResult:
    """Train (or load) every member; returns the manifest (one row per size) and the loss curves."""
    chosen = sizes or list(recipe.sizes)
    unknown = [s for s in chosen if s not in recipe.sizes]
    if unknown:
        from ie_ray.errors import ConfigError

        raise ConfigError(f"sizes {unknown} are not in family {recipe.name!r} (sizes: {list(recipe.sizes)})")
    if recipe.training.threads:
        torch.set_num_threads(recipe.training.threads)
    data = prepare_data(recipe)
    order = batch_order(len(data.train), recipe)
    root = family_dir(recipe.name, recipe.content_hash())
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipe.json").write_text(json.dumps(recipe.to_dict() | dict(recipe_hash=recipe.content_hash()), indent=2))
    # the pointer goes first: members finished so far are usable by sweeps while larger ones still train
    # (resolve_member refuses a member whose checkpoint is not finished)
    write_pointer(recipe.name, recipe.content_hash(), {size: recipe.member_hash(size) for size in recipe.sizes})
    records, curves = [], []
    for size in chosen:
        target = member_dir(recipe.name, recipe.content_hash(), size, recipe.member_hash(size))
        if is_trained(target):
            record = json.loads((target / MEMBER_RECORD).read_text()) | dict(reloaded=True)
        else:
            record = train_member(recipe, size, data, order, target, progress)[0] | dict(reloaded=False)
        records.append(record)
        curves.append(pd.read_csv(target / LOSS_LOG).assign(model=record["model"], size=size))
    manifest = pd.DataFrame(records)
    return FamilyResult(root, manifest, pd.concat(curves, ignore_index=True), data.text_summary,
                        data.heldout_documents)
