"""The pairs a critic sees: each estimator's own train / held-out split, the early-stopping slice, the optional
noise and the standardisation, all drawn from that estimator's generator."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ie_ray.estimators.mine.params import MINEParams


@dataclass(frozen=True)
class Split:
    """Per-estimator train/held-out tensors, (E, n_part, d), already standardised."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor


def split_pairs(x: torch.Tensor, y: torch.Tensor, params: MINEParams, gens: list[torch.Generator]) -> Split:
    """Random train/held-out split per estimator, then standardisation with train statistics only (so the
    held-out pairs stay unseen)."""
    n_train, _ = params.split_sizes(x.shape[1])
    order = torch.stack([torch.randperm(x.shape[1], generator=g) for g in gens])
    train, heldout = order[:, :n_train], order[:, n_train:]
    x_tr, y_tr, x_ho, y_ho = take(x, train), take(y, train), take(x, heldout), take(y, heldout)
    if params.noise_fraction > 0:
        x_tr, x_ho = _add_isotropic_noise(x_tr, x_ho, params.noise_fraction, gens)
        y_tr, y_ho = _add_isotropic_noise(y_tr, y_ho, params.noise_fraction, gens)
    if params.marginals == "rank_gauss":
        x_tr, x_ho = rank_gauss(x_tr, x_ho)
        y_tr, y_ho = rank_gauss(y_tr, y_ho)
    if params.standardize:
        x_tr, x_ho = _standardize(x_tr, x_ho)
        y_tr, y_ho = _standardize(y_tr, y_ho)
    return Split(x_tr, y_tr, x_ho, y_ho)


def carve_early_stop(split: Split, params: MINEParams) -> tuple[Split, Split | None]:
    """Take the early-stopping slice off the end of the (already shuffled) training split: (what is trained
    on, the slice as a Split whose held-out part is the slice); None when early stopping is off."""
    n_train = split.x_train.shape[1]
    n_fit, n_stop, _ = params.split_sizes_with_early_stop(n_train + split.x_heldout.shape[1])
    if n_stop == 0:
        return split, None
    fit = Split(split.x_train[:, :n_fit], split.y_train[:, :n_fit], split.x_heldout, split.y_heldout)
    stop = Split(fit.x_train, fit.y_train, split.x_train[:, n_fit:], split.y_train[:, n_fit:])
    return fit, stop


def _add_isotropic_noise(
    train: torch.Tensor, heldout: torch.Tensor, fraction: float, gens: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fixed noise draw per estimator (its own generator), std = fraction x the RMS of the centred train
    states over samples and dims: isotropic, so the noise does not favour any direction of the state space."""
    centred = train - train.mean(dim=1, keepdim=True)
    scale = centred.pow(2).mean(dim=(1, 2), keepdim=True).sqrt() * fraction
    noise_tr = torch.stack([torch.randn(train.shape[1:], generator=g) for g in gens]).to(train.device)
    noise_ho = torch.stack([torch.randn(heldout.shape[1:], generator=g) for g in gens]).to(train.device)
    return train + scale * noise_tr, heldout + scale * noise_ho


def rank_gauss(train: torch.Tensor, heldout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per estimator and coordinate, the train split's empirical CDF at mid-ranks, (#below + #equal / 2) / n, then
    the standard normal quantile; held-out values go through the same (train) CDF, so they stay unseen, and values
    beyond the train range are clamped to its ends (u in [1/2n, 1 - 1/2n]). An invertible map per coordinate on
    the train support: MI is unchanged, every marginal becomes ~N(0, 1)."""
    n = train.shape[1]
    ordered = train.transpose(1, 2).contiguous().sort(dim=-1).values  # (E, d, n)

    def through_cdf(values: torch.Tensor) -> torch.Tensor:
        v = values.transpose(1, 2).contiguous()
        below = torch.searchsorted(ordered, v, side="left")
        upto = torch.searchsorted(ordered, v, side="right")
        u = ((below + upto).to(values.dtype) / (2 * n)).clamp(0.5 / n, 1 - 0.5 / n)
        return torch.special.ndtri(u).transpose(1, 2)

    return through_cdf(train), through_cdf(heldout)


def _standardize(train: torch.Tensor, heldout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-estimator, per-dim z-score from the train split; the 1e-6 std floor keeps constant dims (common in
    hidden states) at zero instead of dividing by zero."""
    mean = train.mean(dim=1, keepdim=True)
    std = train.std(dim=1, keepdim=True, unbiased=False).clamp_min(1e-6)
    return (train - mean) / std, (heldout - mean) / std


def take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per-estimator row selection: t (E, n, d), rows (E, m) -> (E, m, d). The rows may be on the CPU (drawn
    from the estimators' CPU generators) while t is on an accelerator: they follow t."""
    return t[torch.arange(t.shape[0], device=t.device)[:, None], rows.to(t.device)]
