"""The shuffled-token control (issue 25, item 5): every sequence's tokens permuted within the sequence.

Why: Schaeffer et al. (2023) showed that apparent emergence can come from the metric. If IE shows the same
pattern on sequences whose word order is destroyed, the pattern is not about the model composing meaning from an
ordered prefix. The control keeps each row's multiset of tokens and changes only their order.

What it changes and what it does not:

* **Macro term: changed.** Block l at position t reads the shuffled prefix, so every prefix the macro MI sees is
  a new sequence (for natural text, almost never a sentence).
* **Micro term: the same per token.** Each token is fed alone, so its single-token block states are exactly the
  unshuffled corpus's (the rows hold the same tokens, so the micro states, one forward per unique token, are
  even the same cache entry). What moves is only which tokens stand at positions 0..t: after a shuffle every
  position draws from the whole row's multiset (an ICL position 1 is no longer always the separator), so the
  micro average at an early t changes through the token mix, and at the last position it averages the same
  tokens' readings over positions whose token distributions are now alike.

So a shuffled control's IE moves through the macro term: a learned-order effect vanishes, a counting effect of
distinct tokens stays.

Each row is permuted by its own generator, seeded by (shuffle_seed, row index): a row's permutation does not
depend on N or on which other rows exist, so the first 2,000 rows of a 20,000-row control are the 2,000-row
control.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["shuffle_within_rows", "shuffled_corpus"]


def shuffle_within_rows(input_ids: np.ndarray, seed: int) -> np.ndarray:
    """A copy of ``input_ids`` (N, T) with each row's entries permuted by the generator of (seed, row)."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be (n_samples, length), got shape {ids.shape}")
    out = np.empty_like(ids)
    for row in range(ids.shape[0]):
        out[row] = ids[row, np.random.default_rng([int(seed), row]).permutation(ids.shape[1])]
    return out


def shuffled_corpus(corpus, seed: int, tokenizer):
    """The same corpus (an IclCorpus or NaturalCorpus) with each row's tokens shuffled and its texts re-decoded;
    ``shuffle_seed`` recorded, so the manifest and the corpus table say it is a control."""
    input_ids = shuffle_within_rows(corpus.input_ids, seed)
    texts = tokenizer.batch_decode(input_ids.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return dataclasses.replace(corpus, input_ids=input_ids, texts=list(texts), shuffle_seed=int(seed))
