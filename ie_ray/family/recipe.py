"""The recipe of a model family we train ourselves: text, tokenizer, architecture, sizes and training budget.

A scaling family (Pythia style) varies one thing, size: every member sees the same text, tokenizer, token
budget, data order and schedule. The recipe is therefore one object, and its hash keys the trained
checkpoints, so a second `ie-ray train-family` with the same recipe loads instead of training, and a changed
recipe can never be mistaken for the old one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ie_ray.errors import ConfigError

ARCHITECTURES = ("llama", "gpt_neox")
TEXT_SOURCES = ("kjv", "pydoc", "fortunes")
_NAME = re.compile(r"^[a-z0-9]+$")
_SIZE = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class SizeSpec:
    """One member's shape. Parameters grow ~16 * layers * hidden^2 (attention 4 d^2 + gated MLP 3 d * 4 d)."""

    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int | None = None  # default 4 * hidden_size
    learning_rate: float | None = None  # default: training.learning_rate

    @property
    def ffn(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size


@dataclass(frozen=True)
class TextSpec:
    """Which offline text, and how the held-out split is cut.

    Documents (KJV verses, pydoc paragraphs) are grouped into runs of `block` consecutive documents and every
    `heldout_every`-th run is held out: whole passages, not scattered verses, so held-out text is not a
    neighbour of a training verse that shares most of its words.
    """

    sources: tuple[str, ...] = ("kjv",)
    block: int = 20
    heldout_every: int = 50
    max_documents: int | None = None


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 4096
    min_frequency: int = 2


@dataclass(frozen=True)
class TrainingSpec:
    """One budget for every size: `tokens` seen, in the same order, with the same schedule (warmup + cosine)."""

    tokens: int = 1_500_000
    seq_len: int = 128
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_sequences: int = 64
    seed: int = 0
    threads: int | None = None  # torch threads; default: all cores

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size

    @property
    def steps(self) -> int:
        return max(1, -(-self.tokens // self.tokens_per_step))


@dataclass(frozen=True)
class FamilyRecipe:
    name: str
    sizes: dict[str, SizeSpec]
    architecture: str = "llama"
    text: TextSpec = field(default_factory=TextSpec)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["text"]["sources"] = list(self.text.sources)
        return data

    def content_hash(self) -> str:
        """Hash of what every member shares and what changes weights (text, tokenizer, architecture, training;
        not `threads`, which only changes speed, and not `sizes`): it names the family's directory."""
        data = self.to_dict()
        data.pop("sizes")
        data["training"].pop("threads", None)
        return _digest(data)

    def member_hash(self, size: str) -> str:
        """The family's hash plus this member's own spec: it keys the member's checkpoint, so changing one
        size (say its learning rate) retrains that size only, never the others."""
        return _digest(dict(family=self.content_hash(), size=dataclasses.asdict(self.sizes[size])))

    def model_name(self, size: str) -> str:
        """The name a sweep config uses for one member: `family-<name>-<size>`."""
        return f"family-{self.name}-{size}"

    def learning_rate(self, size: str) -> float:
        return self.sizes[size].learning_rate or self.training.learning_rate


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _build(cls, raw: Any, where: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(valid)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def recipe_from_dict(raw: dict[str, Any]) -> FamilyRecipe:
    """Validate a recipe mapping (from YAML) and return it; every error names the key and the fix."""
    if not isinstance(raw, dict):
        raise ConfigError("a family recipe must be a YAML mapping with keys name, sizes, ...")
    valid = {f.name for f in dataclasses.fields(FamilyRecipe)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"family recipe: unknown key(s) {unknown}; valid keys are {sorted(valid)}")
    name = str(raw.get("name", ""))
    if not _NAME.match(name):
        raise ConfigError(f"family name {name!r} must be lower-case letters and digits (it becomes family-<name>-<size>)")
    sizes_raw = raw.get("sizes")
    if not isinstance(sizes_raw, dict) or len(sizes_raw) < 1:
        raise ConfigError("family recipe needs `sizes`: a mapping size-name -> {hidden_size, layers, heads}")
    sizes = {}
    for size, spec in sizes_raw.items():
        if not _SIZE.match(str(size)):
            raise ConfigError(f"size name {size!r} must be lower-case letters and digits, e.g. s, m, l, xl")
        built = _build(SizeSpec, spec, f"sizes.{size}")
        if built.hidden_size % built.heads:
            raise ConfigError(f"sizes.{size}: hidden_size {built.hidden_size} is not divisible by heads {built.heads}")
        sizes[str(size)] = built
    # members in order of size whatever the mapping's order (a YAML dump may sort keys alphabetically)
    sizes = dict(sorted(sizes.items(), key=lambda item: (item[1].layers * item[1].hidden_size ** 2, item[1].ffn)))
    architecture = str(raw.get("architecture", "llama"))
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture {architecture!r} is not supported; use one of {list(ARCHITECTURES)}")
    text_raw = dict(raw.get("text") or {})
    if "sources" in text_raw:
        text_raw["sources"] = tuple(text_raw["sources"])
        bad = [s for s in text_raw["sources"] if s not in TEXT_SOURCES]
        if bad or not text_raw["sources"]:
            raise ConfigError(f"text.sources {list(text_raw['sources'])} must be a non-empty list of {list(TEXT_SOURCES)}")
    text = _build(TextSpec, text_raw, "text")
    training = _build(TrainingSpec, raw.get("training"), "training")
    if training.tokens < training.tokens_per_step:
        raise ConfigError(f"training.tokens {training.tokens} is less than one step "
                          f"(seq_len * batch_size = {training.tokens_per_step})")
    return FamilyRecipe(name=name, sizes=sizes, architecture=architecture, text=text,
                        tokenizer=_build(TokenizerSpec, raw.get("tokenizer"), "tokenizer"), training=training)


def load_recipe(path: str | Path) -> FamilyRecipe:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"family recipe {path} does not exist; see jobs/configs/family-kjv.yaml for an example")
    return recipe_from_dict(yaml.safe_load(path.read_text()))
