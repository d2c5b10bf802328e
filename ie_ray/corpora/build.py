"""One dispatch from a corpus config entry to token-id sequences: the only place that knows the corpus kinds.

Both corpus kinds return an object with ``input_ids`` ((N, T) int64), ``texts``, ``entities``, ``shots``,
``describe()`` (what the manifest records) and ``to_arrow()`` (what extraction reads). ICL corpora are built
once per entry of the sweep's ``shots``; a natural corpus has no demonstrations and is built once, with
``shots = 0`` in every table, so that a sweep mixing both kinds stays one tidy table keyed by
(model, corpus, shots, layer, position).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import pyarrow as pa

from ie_ray.corpora.icl import build_icl_corpus
from ie_ray.corpora.natural import NaturalSpec, build_natural_corpus
from ie_ray.corpora.shuffle import shuffled_corpus
from ie_ray.errors import ConfigError

if TYPE_CHECKING:
    from ie_ray.config import CorpusConfig
    from ie_ray.corpora.icl import IclFormat

__all__ = ["NATURAL_SHOTS", "Corpus", "build_corpus", "corpus_shots"]

NATURAL_SHOTS = 0
"""The ``shots`` value of a natural-text corpus in every table: no demonstrations."""


class Corpus(Protocol):
    # read-only: IclCorpus and NaturalCorpus are frozen dataclasses
    @property
    def input_ids(self) -> np.ndarray: ...

    @property
    def texts(self) -> list[str]: ...

    @property
    def shots(self) -> int: ...

    def describe(self) -> dict: ...

    def to_arrow(self) -> pa.Table: ...


def corpus_shots(corpus_cfg: CorpusConfig, shots: Sequence[int]) -> list[int]:
    """The shot counts a corpus is built for: the sweep's list for ICL, ``[0]`` for natural text."""
    return list(shots) if corpus_cfg.kind == "icl" else [NATURAL_SHOTS]


def natural_spec(corpus_cfg: CorpusConfig) -> NaturalSpec:
    return NaturalSpec(
        source=corpus_cfg.source, anchor=corpus_cfg.anchor, length=corpus_cfg.length,
        n_samples=corpus_cfg.n_samples, seed=corpus_cfg.seed, text_field=corpus_cfg.text_field,
        split=corpus_cfg.split, max_documents=corpus_cfg.max_documents, reject_chars=corpus_cfg.reject_chars,
    )


def build_corpus(corpus_cfg: CorpusConfig, tokenizer, shots: int) -> Corpus:
    """Build one corpus cell; every failure is a one-line ConfigError naming the corpus label. With
    ``shuffle_tokens`` the cell is the shuffled-token control of the same rows (ie_ray/corpora/shuffle.py)."""
    corpus = _build_unshuffled(corpus_cfg, tokenizer, shots)
    return shuffled_corpus(corpus, corpus_cfg.shuffle_seed, tokenizer) if corpus_cfg.shuffle_tokens else corpus


def _build_unshuffled(corpus_cfg: CorpusConfig, tokenizer, shots: int) -> Corpus:
    try:
        if corpus_cfg.kind == "icl":
            return build_icl_corpus(
                corpus_cfg.task, tokenizer, shots=shots, n_samples=corpus_cfg.n_samples, seed=corpus_cfg.seed,
                fmt=cast("IclFormat", corpus_cfg.format),  # parse_config checked it is one of ICL_FORMATS
                n_entities=corpus_cfg.n_entities, entity_tokens=corpus_cfg.entity_tokens,
            )
        if corpus_cfg.kind == "natural":
            return build_natural_corpus(natural_spec(corpus_cfg), tokenizer)
    except ConfigError as exc:
        raise ConfigError(f"corpus {corpus_cfg.label}: {exc}") from None
    except ValueError as exc:  # e.g. fewer single-token entities than shots
        raise ConfigError(f"corpus {corpus_cfg.label}: {exc}") from exc
    raise ConfigError(f"corpus {corpus_cfg.label}: unknown kind {corpus_cfg.kind!r}; use 'icl' or 'natural'")
