"""Synthetic in-context-learning (ICL) list corpora (PAPER.md section 3a).

Each sequence is ``k`` distinct single-token entities of one category (countries, animals or colours), each
followed by a comma, in a random order drawn without repetition. Each entity is one "shot"/demonstration, so
the paper's stepwise result (information emergence jumps when a new entity appears and stays flat on the
separators) can be read off at the even token positions.

Token-level construction, and why it is done this way:

* Every shot is exactly two tokens, ``[entity_token, separator_token]``, so a k-shot sequence has ``2k``
  tokens and every sequence in a corpus has the same length. The estimators batch sequences without padding
  (as the reference code does), so equal lengths are a requirement, not a convenience.
* ``"comma"`` is the GPT-2 format of the reference code, ``Ukraine,Mexico,Russia,``: the entity token is the
  encoding of ``name`` and the separator is ``,``.
* ``"comma-space"`` is the Gemma/OpenLlama format, ``Bat, Rabbit, Ant,``: the entity token is the encoding of
  ``" " + name``. The first entity also gets the leading space (the text starts with ``" Bat,"``) because BPE
  tokenizers attach a space to the *following* word: without it the first entity would be a different token id
  (``Bat`` vs ``ĠBat``) from the same entity later in the list, and "the same entity" would not mean "the same
  input token" across positions. The paper's Gemma example ends with ``", "``; we end on ``","`` so that the
  space stays with the next entity and every shot stays two tokens.

Longer demonstrations (the paper: "making each demonstration longer leaves the stepwise pattern unchanged")
use ``entity_tokens = m > 1``: only names that encode to exactly m tokens are kept (" New Zealand", " Sri
Lanka" for m = 2 with most BPE tokenizers), so every shot is ``m + 1`` tokens and sequences still share one
length; a new demonstration starts at positions 0, m+1, 2(m+1), ...

We build ids from the per-name encodings rather than tokenizing each text, then check once against the
tokenizer that the text really tokenizes to those ids (a tokenizer that merges across the separator would
otherwise silently give different sequence lengths).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ICL_FORMATS",
    "ICL_TASKS",
    "PAPER_ICL_TASKS",
    "IclCorpus",
    "build_icl_corpus",
    "candidate_names",
    "entities_of_length",
    "sequence_table",
    "single_token_entities",
]

PAPER_ICL_TASKS: tuple[str, ...] = ("country", "animal", "color")
"""Categories of the paper's ICL datasets, in the paper's table order."""

ICL_TASKS: tuple[str, ...] = PAPER_ICL_TASKS + ("bible-name",)
"""Every list task: the paper's three, plus biblical names (Title Case as the King James text writes them), the
list task a model trained on the KJV knows as single tokens (`ie-ray train-family`, jobs/configs/family-kjv.yaml)."""

IclFormat = Literal["comma", "comma-space"]
ICL_FORMATS: tuple[str, ...] = ("comma", "comma-space")

SEPARATOR = ","

_TASK_FILES: dict[str, str] = {
    "country": "countries.txt",
    "animal": "animals.txt",
    "color": "colors.txt",
    "bible-name": "bible_names.txt",
}

PAPER_N_ENTITIES: dict[str, int] = {"country": 25, "animal": 16, "color": 15}
"""Entity-set sizes of the paper's table (25 countries, 16 animals, 15 colours); pass as ``n_entities``."""

# Rows drawn per block when sampling; bounds memory at _SAMPLE_BLOCK * n_entities ids whatever n_samples is.
_SAMPLE_BLOCK = 1 << 16


def _check_task(task: str) -> None:
    if task not in _TASK_FILES:
        raise ValueError(f"unknown ICL task {task!r}; valid tasks are {', '.join(map(repr, ICL_TASKS))}")


def _check_format(fmt: str) -> None:
    if fmt not in ICL_FORMATS:
        raise ValueError(
            f"unknown ICL format {fmt!r}; valid formats are 'comma' (GPT-2 style 'Ukraine,Mexico,') and "
            "'comma-space' (Gemma/OpenLlama style ' Bat, Rabbit,')"
        )


def candidate_names(task: str) -> list[str]:
    """The candidate names of ``task`` in file order (blank lines and ``#`` comments skipped)."""
    _check_task(task)
    text = resources.files("ie_ray.corpora").joinpath("data").joinpath(_TASK_FILES[task]).read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """A human-readable name for error messages and corpus metadata (hub id, else class name)."""
    name = getattr(tokenizer, "name_or_path", "") or ""
    return str(name) if name else type(tokenizer).__name__


def _entity_text(name: str, fmt: str) -> str:
    return " " + name if fmt == "comma-space" else name


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def separator_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id of the ``,`` separator; raises if the tokenizer does not encode it as one token."""
    ids = _encode(tokenizer, SEPARATOR)
    if len(ids) != 1:
        raise ValueError(
            f"separator {SEPARATOR!r} encodes to {len(ids)} tokens {ids} with tokenizer "
            f"{tokenizer_name(tokenizer)!r}; ICL corpora need a single-token separator, use another tokenizer"
        )
    return ids[0]


def entities_of_length(
    task: str, tokenizer: PreTrainedTokenizerBase, fmt: IclFormat = "comma-space", n_tokens: int = 1
) -> list[tuple[str, tuple[int, ...]]]:
    """Candidate names of ``task`` (file order) that are exactly ``n_tokens`` tokens in format ``fmt``.

    Equal-length names keep every shot at ``n_tokens + 1`` tokens (see module docstring). A name whose ids
    were already taken by an earlier name is dropped, so that distinct entities are distinct input tokens.
    """
    _check_task(task)
    _check_format(fmt)
    if n_tokens < 1:
        raise ValueError(f"entity_tokens must be >= 1, got {n_tokens}")
    separator_id(tokenizer)  # raise early: a multi-token separator makes any entity list useless
    seen: set[tuple[int, ...]] = set()
    kept: list[tuple[str, tuple[int, ...]]] = []
    for name in candidate_names(task):
        ids = tuple(_encode(tokenizer, _entity_text(name, fmt)))
        if len(ids) == n_tokens and ids not in seen:
            seen.add(ids)
            kept.append((name, ids))
    return kept


def single_token_entities(
    task: str, tokenizer: PreTrainedTokenizerBase, fmt: IclFormat = "comma-space"
) -> list[tuple[str, int]]:
    """Candidate names of ``task`` (file order) that are exactly one token in format ``fmt``, with their ids."""
    return [(name, ids[0]) for name, ids in entities_of_length(task, tokenizer, fmt, 1)]


def sequence_table(input_ids: np.ndarray, texts: list[str], **columns: np.ndarray) -> pa.Table:
    """The corpus table every stage reads: ``sample_id``, ``input_ids`` (list<int64>), ``text``, then ``columns``.

    The id lists are built from one flat buffer and offsets (no Python list per row): 300k rows in milliseconds.
    """
    n, length = input_ids.shape
    flat = pa.array(np.ascontiguousarray(input_ids, dtype=np.int64).reshape(-1), type=pa.int64())
    offsets = pa.array(np.arange(0, (n + 1) * length, length, dtype=np.int32), type=pa.int32())
    return pa.table({
        "sample_id": pa.array(np.arange(n, dtype=np.int64), type=pa.int64()),
        "input_ids": pa.ListArray.from_arrays(offsets, flat),
        "text": pa.array(texts, type=pa.string()),
        **{name: pa.array(values) for name, values in columns.items()},
    })


def shuffle_note(shuffle_seed: int | None) -> dict:
    """What a corpus's description adds when it is a shuffled-token control (nothing otherwise, so the manifests of
    ordinary corpora keep their keys)."""
    return {} if shuffle_seed is None else dict(shuffled_tokens=True, shuffle_seed=shuffle_seed)


class SequenceCorpus:
    """What every corpus kind shares: ``input_ids`` of shape (n_samples, length), one row per sequence."""

    input_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_samples(self) -> int:
        return len(self)


@dataclass(frozen=True, eq=False)
class IclCorpus(SequenceCorpus):
    """A k-shot ICL list corpus: ``input_ids[i]`` alternates entity ids (even positions) and the separator.

    ``eq=False`` because the dataclass-generated ``==`` would compare numpy arrays elementwise and fail.
    """

    task: str
    fmt: str
    shots: int
    seed: int
    tokenizer_name: str
    entities: tuple[str, ...]
    """The entity set sequences are drawn from (after the token-length filter and ``n_entities``)."""
    entity_ids: tuple[tuple[int, ...], ...]
    """The token ids of each entity (``entity_tokens`` ids each), in the order of ``entities``."""
    separator_id: int
    input_ids: np.ndarray
    """int64, shape ``(n_samples, shots * (entity_tokens + 1))``."""
    texts: list[str]
    entity_tokens: int = 1
    shuffle_seed: int | None = None
    """Set for the shuffled-token control (ie_ray/corpora/shuffle.py): the rows' tokens are then permuted, so the
    entity and separator positions below describe the unshuffled layout, not these rows."""

    @property
    def shot_length(self) -> int:
        """Tokens per demonstration: the entity's tokens and the separator."""
        return self.entity_tokens + 1

    @property
    def seq_len(self) -> int:
        return self.shot_length * self.shots

    @property
    def entity_positions(self) -> np.ndarray:
        """Token positions 0, m+1, 2(m+1), ... where a new demonstration appears (the paper's IE steps)."""
        return np.arange(0, self.seq_len, self.shot_length, dtype=np.int64)

    @property
    def separator_positions(self) -> np.ndarray:
        """Token positions m, 2m+1, ... holding the separator (where IE should stay flat)."""
        return np.arange(self.entity_tokens, self.seq_len, self.shot_length, dtype=np.int64)

    def describe(self) -> dict:
        """What the run manifest records about this corpus."""
        return dict(kind="icl", task=self.task, fmt=self.fmt, entity_tokens=self.entity_tokens,
                    entities=list(self.entities), tokenizer=self.tokenizer_name, seed=self.seed,
                    **shuffle_note(self.shuffle_seed))

    def to_arrow(self) -> pa.Table:
        """Columns ``sample_id``, ``input_ids`` (list<int64>), ``text``; corpus settings in schema metadata."""
        table = sequence_table(self.input_ids, self.texts)
        metadata = {
            "task": self.task,
            "fmt": self.fmt,
            "shots": str(self.shots),
            "seed": str(self.seed),
            "tokenizer": self.tokenizer_name,
            "entities": json.dumps(list(self.entities)),
            "entity_ids": json.dumps([list(ids) for ids in self.entity_ids]),
            "entity_tokens": str(self.entity_tokens),
            "separator_id": str(self.separator_id),
            **{key: str(value) for key, value in shuffle_note(self.shuffle_seed).items()},
        }
        return table.replace_schema_metadata(metadata)


def _draw_permutations(rng: np.random.Generator, n_entities: int, shots: int, n_samples: int) -> np.ndarray:
    """``n_samples`` rows of ``shots`` distinct indices in ``range(n_entities)``, uniformly random order.

    Independent draws (duplicate rows possible), like the reference generators, which reshuffle on every
    iteration rather than enumerating the ordered k-subsets.
    """
    out = np.empty((n_samples, shots), dtype=np.int64)
    for start in range(0, n_samples, _SAMPLE_BLOCK):
        rows = min(_SAMPLE_BLOCK, n_samples - start)
        block = np.broadcast_to(np.arange(n_entities, dtype=np.int64), (rows, n_entities))
        out[start : start + rows] = rng.permuted(block, axis=1)[:, :shots]
    return out


def build_icl_corpus(
    task: str,
    tokenizer: PreTrainedTokenizerBase,
    shots: int,
    n_samples: int,
    seed: int,
    fmt: IclFormat = "comma-space",
    n_entities: int | None = None,
    entity_tokens: int = 1,
) -> IclCorpus:
    """Draw ``n_samples`` k-shot sequences of distinct ``entity_tokens``-token entities of ``task``.

    ``n_entities`` keeps the first n such names (paper: 25 countries, 16 animals, 15 colours, single-token;
    see ``PAPER_N_ENTITIES``); ``None`` keeps all of them. Same arguments and tokenizer give an identical corpus.
    """
    _check_task(task)
    _check_format(fmt)
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if n_entities is not None and n_entities < 1:
        raise ValueError(f"n_entities must be >= 1 or None (all single-token names), got {n_entities}")

    candidates = entities_of_length(task, tokenizer, fmt, entity_tokens)
    name = tokenizer_name(tokenizer)
    kind = "single tokens" if entity_tokens == 1 else f"exactly {entity_tokens} tokens"
    if n_entities is not None and n_entities > len(candidates):
        raise ValueError(
            f"n_entities={n_entities} but only {len(candidates)} {task} names are {kind} for tokenizer "
            f"{name!r} in format {fmt!r}; pass n_entities <= {len(candidates)} (or None), the other format, "
            "or another tokenizer/model"
        )
    pool = candidates if n_entities is None else candidates[:n_entities]
    if len(pool) < shots:
        other = "comma" if fmt == "comma-space" else "comma-space"
        limit = "" if n_entities is None else f", of which n_entities={n_entities} are kept"
        raise ValueError(
            f"only {len(candidates)} {task} names are {kind} for tokenizer {name!r} in format {fmt!r}"
            f"{limit}: fewer than shots k={shots}; use k <= {len(pool)}, the {other!r} format, "
            "or another tokenizer/model"
        )

    names = np.array([n for n, _ in pool], dtype=object)
    ids = np.array([i for _, i in pool], dtype=np.int64).reshape(len(pool), entity_tokens)
    sep = separator_id(tokenizer)

    choice = _draw_permutations(np.random.default_rng(seed), len(pool), shots, n_samples)
    shot_ids = np.empty((n_samples, shots, entity_tokens + 1), dtype=np.int64)
    shot_ids[:, :, :entity_tokens] = ids[choice]
    shot_ids[:, :, entity_tokens] = sep
    input_ids = shot_ids.reshape(n_samples, shots * (entity_tokens + 1))

    prefix = " " if fmt == "comma-space" else ""
    texts = [prefix + (SEPARATOR + prefix).join(row) + SEPARATOR for row in names[choice].tolist()]

    encoded = _encode(tokenizer, texts[0])
    if encoded != input_ids[0].tolist():
        raise ValueError(
            f"tokenizer {name!r} encodes {texts[0]!r} as {encoded}, not as the per-entity construction "
            f"{input_ids[0].tolist()}: it merges tokens across the separator; try the other format"
        )

    return IclCorpus(
        task=task,
        fmt=fmt,
        shots=shots,
        seed=seed,
        tokenizer_name=name,
        entities=tuple(names.tolist()),
        entity_ids=tuple(tuple(row) for row in ids.tolist()),
        separator_id=sep,
        input_ids=input_ids,
        texts=texts,
        entity_tokens=entity_tokens,
    )
