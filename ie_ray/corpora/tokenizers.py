"""A tiny offline byte-level BPE tokenizer for tests and random-init toy models.

No tokenizer can be downloaded on the test machines (no Hugging Face hub), yet the ICL corpora and the
capture code must run on a real ``transformers`` tokenizer. This one is trained in-process, GPT-2 style
(byte-level BPE, no prefix space), on the three ICL name lists in both formats plus a few English sentences.

The training corpus is shaped on purpose so that the single-token filter of ``ie_ray.corpora.icl`` has work to
do: the first names of each list are repeated, the last ``_RARE_FRACTION`` of each list appears only once per
format, and ``min_frequency=2`` forbids merges seen once. So common names become one token, rare names stay
split, and multi-word names ("United States") are never one token because the pre-tokenizer splits at spaces.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ie_ray.corpora.icl import PAPER_ICL_TASKS, candidate_names

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["TINY_TOKENIZER_NAME", "tiny_tokenizer"]

TINY_TOKENIZER_NAME = "ie-ray/tiny-bpe"
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

_VOCAB_SIZE = 2000
_COMMON_REPEATS = 3
_RARE_FRACTION = 0.2

_SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "A list of countries, animals and colors is written one after the other.",
    "In the morning the cat sat by the window and watched the birds in the garden.",
    "She said that the weather would be warm and sunny for the rest of the week.",
    "Information emergence measures how much more a whole sequence says than its tokens do alone.",
    "We trained a small model on a short text, and then we measured its hidden states.",
    "There are many animals in the forest, and some of them are hard to see at night.",
    "He painted the door red, the walls blue, and the roof a dark shade of green.",
)


def _training_lines() -> list[str]:
    """The deterministic training corpus (see module docstring for why it is shaped this way)."""
    lines: list[str] = []
    for task in PAPER_ICL_TASKS:  # fixed list: a new task must not change the tiny models' vocabulary
        names = candidate_names(task)
        n_common = len(names) - int(len(names) * _RARE_FRACTION)
        common, rare = names[:n_common], names[n_common:]
        for _ in range(_COMMON_REPEATS):
            lines.append(",".join(common) + ",")
            lines.append(" " + ", ".join(common) + ",")
        lines.append(",".join(rare) + ",")
        lines.append(" " + ", ".join(rare) + ",")
    lines.extend(_SENTENCES)
    return lines


@lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    """Train once per process; cache the serialization so each caller gets its own wrapper object."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_lines(), trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh ``PreTrainedTokenizerFast`` around the cached tiny BPE (same vocabulary on every call).

    A fresh wrapper per call, rather than one shared cached object, so that a test that changes e.g.
    ``padding_side`` cannot leak that change into other tests. Size a toy model's embedding with
    ``len(tokenizer)``, which counts the special tokens.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="right",
        name_or_path=TINY_TOKENIZER_NAME,
    )
