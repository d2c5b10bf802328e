"""What an estimate reads off the trained critic: the held-out bound of each objective (balanced cyclic-shift
marginals for the DV family and NWJ, batch-sized all-pairs chunks for InfoNCE), its cap, and the bootstrap
interval."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ie_ray.estimators.bounds import (
    dv_bound_bits,
    dv_bound_bits_np,
    infonce_row_terms_bits,
    mean_np,
    nwj_bound_bits,
    nwj_bound_bits_np,
)
from ie_ray.estimators.critic import EnsembleCritic
from ie_ray.estimators.mine.data import Split, take
from ie_ray.estimators.mine.params import MINEParams

#: Rows (x estimators) per chunk when scoring held-out pairs, bounding memory on large held-out splits.
_SCORE_CHUNK_ELEMENTS: int = 1 << 24
#: Offset mixed into the seed of the bootstrap generator so it is not the torch stream of the same seed.
_BOOTSTRAP_STREAM: int = 0xB007


def heldout_samples(
    critic: EnsembleCritic, split: Split, params: MINEParams, gens: list[torch.Generator]
) -> tuple[torch.Tensor, ...]:
    """What the held-out bound is computed from (and the bootstrap resamples), each (E, m): the joint and
    marginal scores for the DV family and NWJ, the per-row terms for InfoNCE."""
    if params.objective == "infonce":
        return (_heldout_infonce_terms(critic, split, params, gens),)
    if params.readout_batch is not None:
        return (_heldout_batch_bounds(critic, split, params),)
    joint, marginal = _heldout_scores(critic, split, params, gens)
    if params.readout_clip is not None:
        marginal = marginal.clamp(-params.readout_clip, params.readout_clip)
    return joint, marginal


def heldout_bound(params: MINEParams, samples: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The held-out bound (E,) from the tensors of `heldout_samples`."""
    if params.readout_batch is not None:
        return samples[0].mean(dim=1)
    return HELDOUT_BOUND[params.objective](*samples)


def batch_sizes(n: int, batch: int) -> list[int]:
    """Consecutive batches of `batch` rows, the last one shorter (as a DataLoader without drop_last); a last
    batch of one row, which has no other row to pair with, joins the one before it."""
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [sizes[-2] + 1]
    return sizes


def _heldout_batch_bounds(critic: EnsembleCritic, split: Split, params: MINEParams) -> torch.Tensor:
    """torch-mist's batch-wise readout (E, n_batches) in bits: the held-out rows in their (already shuffled)
    order, cut into batches of `readout_batch`; in each batch, DV (clipped at `readout_clip` when set) of the
    joint pairs (x_i, y_i) against the marginal pairs (x_i, y_i+1), the shift cyclic within the batch."""
    assert params.readout_batch is not None
    e, n_h = split.x_heldout.shape[:2]
    sizes = batch_sizes(n_h, params.readout_batch)
    xw, yw = critic.project(split.x_heldout, split.y_heldout)
    identity = torch.arange(n_h)
    starts = torch.repeat_interleave(torch.tensor([0, *sizes[:-1]]).cumsum(0), torch.tensor(sizes))
    lengths = torch.repeat_interleave(torch.tensor(sizes), torch.tensor(sizes))
    following = starts + (identity - starts + 1) % lengths
    joint = _score_pairs(critic, xw, yw, identity.expand(e, n_h), identity.expand(e, n_h))
    marginal = _score_pairs(critic, xw, yw, identity.expand(e, n_h), following.expand(e, n_h))
    if params.readout_clip is not None:
        marginal = marginal.clamp(-params.readout_clip, params.readout_clip)
    return torch.stack([dv_bound_bits(j, m) for j, m in zip(joint.split(sizes, dim=1), marginal.split(sizes, dim=1))],
                       dim=1)


def _heldout_infonce_terms(
    critic: EnsembleCritic, split: Split, params: MINEParams, gens: list[torch.Generator]
) -> torch.Tensor:
    """Per-row InfoNCE terms (E, n_h) in bits of the final critic on the held-out split.

    The held-out rows are shuffled and cut into near-equal chunks of at most batch_size rows, and each chunk is
    scored all-pairs as a training batch is: every held-out pair is used, and no chunk is larger than what the
    critic was trained to contrast (a larger one would read a higher cap, log2 of its size, than training saw).
    """
    e, n_h = split.x_heldout.shape[:2]
    if n_h == 0:
        return torch.empty(e, 0)
    xw, yw = critic.project(split.x_heldout, split.y_heldout)
    order = torch.stack([torch.randperm(n_h, generator=g) for g in gens])
    sizes = _infonce_chunk_sizes(n_h, params.batch_size or split.x_train.shape[1])
    terms = []
    for rows in torch.split(order, sizes, dim=1):
        terms.append(infonce_row_terms_bits(critic.pair_scores(take(xw, rows), take(yw, rows))))
    return torch.cat(terms, dim=1)


def _infonce_chunk_sizes(n: int, batch: int) -> list[int]:
    """Near-equal chunk sizes (differing by at most 1), each <= batch, that add up to n."""
    k = math.ceil(n / batch)
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def bound_cap_bits(params: MINEParams, n_train: int, n_heldout: int) -> float:
    """The largest value the reported bound can take for any critic: log2 of the contrasted batch for InfoNCE
    (the row-weighted mean of log2 chunk size on the held-out split), unbounded for the others."""
    if params.objective != "infonce":
        return math.inf
    batch = params.batch_size or n_train
    if params.readout == "max" or n_heldout == 0:
        return math.log2(batch)
    sizes = _infonce_chunk_sizes(n_heldout, batch)
    return sum(m * math.log2(m) for m in sizes) / n_heldout


def _heldout_scores(
    critic: EnsembleCritic, split: Split, params: MINEParams, gens: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Final-critic scores on held-out joint pairs (E, n_h) and marginal pairs (E, K * n_h).

    Marginal pairs (x_o(i), y_o(i+s)) use a random ordering o and K distinct cyclic shifts s in 1..n_h-1:
    unlike a random permutation, a shift never maps i to itself, so no joint pair is scored as a marginal
    one, and every x and every y appears exactly K times (a balanced design, lower variance than K random
    permutations).
    """
    e, n_h = split.x_heldout.shape[:2]
    if n_h == 0:
        empty = torch.empty(e, 0)
        return empty, empty
    xw, yw = critic.project(split.x_heldout, split.y_heldout)
    identity = torch.arange(n_h).expand(e, n_h)
    joint = _score_pairs(critic, xw, yw, identity, identity)
    k = min(params.marginal_shifts, n_h - 1)
    order = torch.stack([torch.randperm(n_h, generator=g) for g in gens])
    shifts = torch.stack([torch.randperm(n_h - 1, generator=g)[:k] + 1 for g in gens])
    marginal = []
    for j in range(k):
        shifted = torch.gather(order, 1, (torch.arange(n_h) + shifts[:, j : j + 1]) % n_h)
        marginal.append(_score_pairs(critic, xw, yw, order, shifted))
    return joint, torch.cat(marginal, dim=1)


def _score_pairs(
    critic: EnsembleCritic, xw: torch.Tensor, yw: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor
) -> torch.Tensor:
    """Scores of pairs (x_ix, y_iy) from the critic's precomputed embeddings, in row chunks to bound memory."""
    e, m = ix.shape
    chunk = max(1, _SCORE_CHUNK_ELEMENTS // (e * xw.shape[2]))
    parts = [
        critic.scores(take(xw, ix[:, s : s + chunk]), take(yw, iy[:, s : s + chunk]))
        for s in range(0, m, chunk)
    ]
    return torch.cat(parts, dim=1)


#: The held-out bound of each objective, on the tensors of `heldout_samples` (E, m) -> (E,).
HELDOUT_BOUND: dict[str, Callable[..., torch.Tensor]] = {
    "dv": dv_bound_bits,
    "nwj": nwj_bound_bits,
    "infonce": lambda terms: terms.mean(dim=1),
    "smile": dv_bound_bits,
    "mine_ema": dv_bound_bits,
    "js": dv_bound_bits,
}
#: The same bounds on one estimator's float64 samples, for the bootstrap.
BOOTSTRAP_BOUND: dict[str, Callable[..., float]] = {
    "dv": dv_bound_bits_np,
    "nwj": nwj_bound_bits_np,
    "infonce": mean_np,
    "smile": dv_bound_bits_np,
    "mine_ema": dv_bound_bits_np,
    "js": dv_bound_bits_np,
}


def bootstrap(samples: list[np.ndarray], params: MINEParams, seed: int) -> np.ndarray:
    """Percentile-bootstrap replicates of the held-out bound: each sample is resampled with replacement,
    separately (joint and marginal scores are two samples of the two expectations in DV and NWJ; the batch-wise
    readout's per-batch bounds are one sample of the mean).

    InfoNCE's per-row terms share their chunk's log-sum-exp, so they are not quite independent; resampling
    them as if they were ignores that coupling, which is weak for chunks of hundreds of rows.
    """
    bound = mean_np if params.readout_batch is not None else BOOTSTRAP_BOUND[params.objective]
    rng = np.random.default_rng([seed, _BOOTSTRAP_STREAM])
    out = np.empty(params.n_bootstrap, dtype=np.float64)
    for b in range(params.n_bootstrap):
        out[b] = bound(*(s[rng.integers(0, s.size, s.size)] for s in samples))
    return out
