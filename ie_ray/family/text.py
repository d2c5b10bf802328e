"""Training text for a family: offline documents, a passage-level held-out split, and a BPE tokenizer trained on
the training split only.

The tokenizer is trained here rather than borrowed because a borrowed 50k-49k vocabulary would make the
embedding most of a tiny model's parameters, and "IE vs size" would then mostly measure embedding width.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import numpy as np

from ie_ray.corpora.natural import load_documents
from ie_ray.errors import ConfigError
from ie_ray.family.recipe import FamilyRecipe, TextSpec

SPECIAL = "<|endoftext|>"  # document boundary; also BOS, EOS and padding, as in GPT-2 / Pythia


@dataclass
class FamilyText:
    train: list[str]
    heldout: list[str]

    def describe(self) -> dict:
        return dict(train_documents=len(self.train), heldout_documents=len(self.heldout),
                    train_characters=sum(map(len, self.train)), heldout_characters=sum(map(len, self.heldout)))


def split_documents(documents: list[str], spec: TextSpec) -> FamilyText:
    """Every `heldout_every`-th run of `block` consecutive documents is held out (the run with index 0 mod
    heldout_every, shifted by half a period so the held-out text is not the book's first verses)."""
    train: list[str] = []
    heldout: list[str] = []
    offset = spec.heldout_every // 2
    for i, doc in enumerate(documents):
        (heldout if (i // spec.block) % spec.heldout_every == offset % spec.heldout_every else train).append(doc)
    return FamilyText(train=train, heldout=heldout)


def load_family_text(spec: TextSpec) -> FamilyText:
    documents: list[str] = []
    for source in spec.sources:
        docs = [d for d in load_documents(source) if d.strip()]
        documents.extend(islice(docs, spec.max_documents) if spec.max_documents else docs)
    text = split_documents(documents, spec)
    if not text.train or not text.heldout:
        raise ConfigError(f"text {list(spec.sources)}: {len(documents)} documents leave an empty train or held-out "
                          f"split with block={spec.block}, heldout_every={spec.heldout_every}; lower them")
    return text


def strip_verse_number(document: str) -> str:
    """KJV passages start with "chapter:verse "; the models should learn the text, not the numbering."""
    head, _, rest = document.partition(" ")
    return rest if rest and head.replace(":", "").isdigit() and ":" in head else document


def train_tokenizer(documents: list[str], recipe: FamilyRecipe):
    """A byte-level BPE (GPT-2 style: no unknown tokens, spaces attached to the next word) trained on the
    training documents, wrapped as a transformers tokenizer that prepends the document-boundary token, so a
    sweep that feeds a sentence gives the model the same context it saw in training (a sentence after a
    boundary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=recipe.tokenizer.vocab_size, min_frequency=recipe.tokenizer.min_frequency,
                                  special_tokens=[SPECIAL], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(documents, trainer=trainer)
    special_id = tokenizer.token_to_id(SPECIAL)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A {SPECIAL} $B", special_tokens=[(SPECIAL, special_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=SPECIAL, eos_token=SPECIAL,
                                   pad_token=SPECIAL, model_max_length=recipe.training.seq_len)


def token_stream(documents: list[str], tokenizer) -> np.ndarray:
    """All documents as one id stream, each preceded by the boundary token (what the tokenizer prepends)."""
    encoded = tokenizer(documents, add_special_tokens=True, verbose=False).input_ids
    return np.fromiter((i for ids in encoded for i in ids), dtype=np.int32)


def chunks(stream: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping windows of `seq_len` ids (the tail shorter than a window is dropped)."""
    n = len(stream) // seq_len
    if n == 0:
        raise ConfigError(f"the text has {len(stream)} tokens, fewer than one training window of {seq_len}; "
                          "use more text or a shorter training.seq_len")
    return stream[: n * seq_len].reshape(n, seq_len)
