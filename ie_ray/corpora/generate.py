"""Model-written text for the generated-vs-human comparison (PAPER.md sections 3c and 4.5-4.6).

The paper compares the IE of human text with that of text written by GPT-4, Claude 3 and Llama 3, measured
with one small open model. It gives no prompts or sampling settings, so we fix a protocol and record it:

* **Prompts are human sentences.** Each prompt is one complete sentence (with its terminator) drawn, without
  replacement and with a seed, from the human corpus the generated text is compared with. The continuation
  therefore starts a new sentence, so its sentence windows are the model's own writing.
* **Only the continuation is stored as ``text``** (the prompt is kept next to it for provenance), so a
  natural corpus over ``texts.jsonl`` measures model-written sentences only.
* **Every setting is recorded**: model name, source, weights hash, temperature, top_p, max_new_tokens, seed,
  batch size, library versions and a hash of the output, in ``provenance.json`` beside ``texts.jsonl``.

Text produced elsewhere (an API model) needs none of this: write it as JSONL/text files and point a natural
corpus at them with a ``label``; the same measuring model and windows then apply to every source.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from tqdm.auto import tqdm

from ie_ray import store
from ie_ray.corpora.natural import TokenClasses, load_documents, sentences, tokenized
from ie_ray.errors import ConfigError
from ie_ray.models import ModelSpec, load_model

__all__ = ["GeneratedTexts", "GenerationSettings", "PromptSettings", "draw_prompts", "generate_texts"]

TEXTS_FILE = "texts.jsonl"
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings, all recorded. ``temperature: 0`` means greedy decoding (top_p then unused)."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 96
    seed: int = 0
    batch_size: int = 8
    """Prompts per ``generate`` call; outputs are reproducible for a given (seed, batch_size)."""

    def validate(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError(f"max_new_tokens and batch_size must be >= 1, got {self.max_new_tokens}, "
                              f"{self.batch_size}")


@dataclass(frozen=True)
class PromptSettings:
    """Where prompts come from: complete human sentences of ``min_tokens..max_tokens`` tokens."""

    source: str = "pydoc"
    n_texts: int = 200
    min_tokens: int = 6
    max_tokens: int = 48
    seed: int = 0
    text_field: str = "text"
    split: str = "train"

    def validate(self) -> None:
        if self.n_texts < 1:
            raise ConfigError(f"n_texts must be >= 1, got {self.n_texts}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ConfigError(f"prompt tokens need 1 <= min_tokens <= max_tokens, got {self.min_tokens}, "
                              f"{self.max_tokens}")


@dataclass
class GeneratedTexts:
    out_dir: Path
    records: list[dict]
    provenance: dict

    @property
    def texts_path(self) -> Path:
        return self.out_dir / TEXTS_FILE


@dataclass(frozen=True)
class Prompt:
    ids: tuple[int, ...]
    doc_id: int


def draw_prompts(prompts: PromptSettings, tokenizer) -> list[Prompt]:
    """``n_texts`` complete human sentences (terminator included), without replacement, seeded."""
    classes = TokenClasses(tokenizer, "")
    pool: list[Prompt] = []
    for doc_id, ids in enumerate(tokenized(load_documents(prompts.source, prompts.text_field, prompts.split),
                                           tokenizer)):
        if not ids.size:
            continue
        classes.update(ids)
        for a, b in sentences(ids, classes):
            if prompts.min_tokens <= b + 1 - a <= prompts.max_tokens:
                pool.append(Prompt(tuple(ids[a:b + 1].tolist()), doc_id))
    if len(pool) < prompts.n_texts:
        raise ConfigError(
            f"prompt source {prompts.source!r} has only {len(pool)} complete sentences of {prompts.min_tokens}.."
            f"{prompts.max_tokens} tokens, fewer than n_texts={prompts.n_texts}; lower n_texts or widen the range"
        )
    chosen = np.random.default_rng(prompts.seed).choice(len(pool), size=prompts.n_texts, replace=False)
    return [pool[i] for i in chosen.tolist()]


def weights_sha256(model) -> str:
    """Hash of every parameter and buffer (names, shapes, bytes): identifies the exact weights that wrote."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _left_padded(batch: list[Prompt], pad_id: int, bos_id: int | None):
    import torch

    rows = [([bos_id] if bos_id is not None else []) + list(p.ids) for p in batch]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def generate_texts(
    spec: ModelSpec, prompts: PromptSettings, settings: GenerationSettings, out_dir: Path, device: str = "cpu"
) -> GeneratedTexts:
    """Generate one continuation per prompt and write ``texts.jsonl`` + ``provenance.json`` under ``out_dir``."""
    import torch
    import transformers

    prompts.validate()
    settings.validate()
    loaded = load_model(spec, device=device)
    # AutoModelForCausalLM's classes mix GenerationMixin in; PreTrainedModel itself does not (transformers 5)
    tokenizer, model = loaded.tokenizer, cast("transformers.GenerationMixin", loaded.model)
    drawn = draw_prompts(prompts, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ConfigError(f"model {spec.name!r} has neither a pad nor an EOS token; generation needs one")
    bos_id = tokenizer.bos_token_id if loaded.info.bos_prepended else None
    sampling = dict(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0) \
        if settings.temperature > 0 else dict(do_sample=False)
    records: list[dict] = []
    started = time.perf_counter()
    batches = [drawn[i:i + settings.batch_size] for i in range(0, len(drawn), settings.batch_size)]
    # generation is minutes per batch on a CPU: show where it is (stderr, one line per update)
    for index, batch in enumerate(tqdm(batches, desc=f"generate {spec.name}", unit="batch", mininterval=10)):
        ids, mask = _left_padded(batch, pad_id, bos_id)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            # one seed per batch, derived from (seed, batch index): reproducible and independent of other batches
            torch.manual_seed(int(np.random.SeedSequence([settings.seed, index]).generate_state(1)[0]))
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=pad_id,
                                 max_new_tokens=settings.max_new_tokens, **sampling)
        new = out[:, ids.shape[1]:].cpu().tolist()
        for prompt, tokens in zip(batch, new):
            eos = tokenizer.eos_token_id
            finished = eos is not None and eos in tokens
            tokens = tokens[: tokens.index(eos)] if finished else tokens
            records.append(dict(
                id=len(records), text=tokenizer.decode(tokens, skip_special_tokens=True),
                prompt=tokenizer.decode(list(prompt.ids), skip_special_tokens=True), prompt_doc_id=prompt.doc_id,
                n_prompt_tokens=len(prompt.ids), n_new_tokens=len(tokens), finished=finished, model=spec.name,
            ))
    seconds = time.perf_counter() - started
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    out_dir = Path(out_dir)
    store.write_text(out_dir / TEXTS_FILE, lines)
    provenance = dict(
        model=dict(**loaded.info.to_dict(), weights_sha256=weights_sha256(model), spec=dataclasses.asdict(spec)),
        prompts=dataclasses.asdict(prompts),
        generation=dict(**dataclasses.asdict(settings), decoding="sampling" if settings.temperature > 0 else "greedy",
                        top_k=0 if settings.temperature > 0 else None, chat_template=False,
                        bos_prepended=bos_id is not None),
        n_texts=len(records),
        n_finished=sum(r["finished"] for r in records),
        new_tokens_total=sum(r["n_new_tokens"] for r in records),
        texts_file=TEXTS_FILE,
        texts_sha256=hashlib.sha256(lines.encode()).hexdigest(),
        seconds=round(seconds, 3),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        versions=dict(python=platform.python_version(), torch=torch.__version__,
                      transformers=transformers.__version__),
        measure_with=("a natural corpus over this file, e.g. {kind: natural, source: "
                      f"{out_dir / TEXTS_FILE}, label: generated-{spec.name}}}"),
    )
    store.write_json(out_dir / PROVENANCE_FILE, provenance)
    return GeneratedTexts(out_dir, records, provenance)


def read_generated(out_dir: Path) -> GeneratedTexts:
    """Read back a generation directory (texts + provenance), checking the texts against their recorded hash."""
    out_dir = Path(out_dir)
    provenance = json.loads((out_dir / PROVENANCE_FILE).read_text(encoding="utf-8"))
    lines = (out_dir / TEXTS_FILE).read_text(encoding="utf-8")
    if hashlib.sha256(lines.encode()).hexdigest() != provenance["texts_sha256"]:
        raise ConfigError(f"{out_dir / TEXTS_FILE} changed after generation (hash differs from {PROVENANCE_FILE})")
    return GeneratedTexts(out_dir, [json.loads(line) for line in lines.splitlines() if line], provenance)



def add_arguments(parser) -> None:
    """The options of `ie-ray generate` (kept here, next to what they configure)."""
    prompt_defaults, sampling = PromptSettings(), GenerationSettings()
    parser.add_argument("--model", default="smollm2-135m", help="any model name a sweep config accepts")
    parser.add_argument("--out", required=True, help="directory for texts.jsonl and provenance.json")
    parser.add_argument("--source", default=prompt_defaults.source, help="human corpus the prompts come from")
    parser.add_argument("--text-field", default=prompt_defaults.text_field)
    parser.add_argument("--split", default=prompt_defaults.split)
    parser.add_argument("--n-texts", type=int, default=prompt_defaults.n_texts)
    parser.add_argument("--prompt-min-tokens", type=int, default=prompt_defaults.min_tokens)
    parser.add_argument("--prompt-max-tokens", type=int, default=prompt_defaults.max_tokens)
    parser.add_argument("--temperature", type=float, default=sampling.temperature, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=sampling.top_p)
    parser.add_argument("--max-new-tokens", type=int, default=sampling.max_new_tokens)
    parser.add_argument("--seed", type=int, default=sampling.seed, help="seeds both the prompt draw and sampling")
    parser.add_argument("--batch-size", type=int, default=sampling.batch_size)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")


def main_from_args(args) -> int:
    prompts = PromptSettings(source=args.source, n_texts=args.n_texts, min_tokens=args.prompt_min_tokens,
                             max_tokens=args.prompt_max_tokens, seed=args.seed, text_field=args.text_field,
                             split=args.split)
    settings = GenerationSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                  seed=args.seed, batch_size=args.batch_size)
    out = Path(args.out).expanduser().resolve()
    result = generate_texts(ModelSpec(name=args.model, dtype=args.dtype), prompts, settings, out, args.device)
    p = result.provenance
    print(f"[ie-ray] {p['n_texts']} texts ({p['new_tokens_total']} new tokens, {p['n_finished']} ended with EOS) "
          f"in {p['seconds']:.1f} s -> {result.texts_path}")
    print(f"[ie-ray] measure them with a corpus entry: {p['measure_with']}")
    return 0
