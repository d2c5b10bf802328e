"""The training loop: every estimator of an ensemble maximises its objective on its own minibatches, with the
learning-rate schedule, per-estimator gradient clipping, freezing of estimators that went non-finite and the
early-stopping checkpoint."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ie_ray.estimators.bounds import (
    EMADenominator,
    dv_bound_bits,
    infonce_bound_bits,
    js_objective_bits,
    nwj_bound_bits,
    smile_objective_bits,
)
from ie_ray.estimators.critic import EnsembleCritic
from ie_ray.estimators.mine.data import Split, take
from ie_ray.estimators.mine.params import EARLY_STOP_SHIFTS, EARLY_STOP_TOLERANCE_BITS, MINEParams
from ie_ray.estimators.mine.readout import heldout_bound, heldout_samples


def poly_decay_with_warmup(step: int, params: MINEParams) -> float:
    """LR multiplier at `step`, the formula of transformers' `get_polynomial_decay_schedule_with_warmup`."""
    if step < params.warmup_steps:
        return step / max(1, params.warmup_steps)
    if step > params.steps:
        return params.lr_end / params.lr
    decay_steps = max(1, params.steps - params.warmup_steps)
    remaining = 1.0 - (step - params.warmup_steps) / decay_steps
    return ((params.lr - params.lr_end) * remaining**params.power + params.lr_end) / params.lr


def train(
    critic: EnsembleCritic,
    split: Split,
    params: MINEParams,
    gens: list[torch.Generator],
    stop_slice: Split | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximise the objective; return the training-batch bound per step (steps, E) (the bound that is read out,
    which for SMILE and MINE-EMA is plain DV, not the surrogate they follow), which estimators stayed finite,
    and how many steps each trained (E,) (fewer than `steps` once `early_stop_patience` stopped it; its curve
    is NaN after that).

    With a `stop_slice`, each estimator's critic ends at its checkpoint with the best bound on that slice."""
    e, n_train = split.x_train.shape[:2]
    batch = params.batch_size or n_train
    full_batch = params.batch_size is None or params.batch_size == n_train
    per_epoch = math.ceil(n_train / batch)
    every = params.early_stop_every or per_epoch
    plist = list(critic.parameters())
    # Not fused=True: ~10% faster on CPU, but its vectorised kernel rounds tensor tails differently depending
    # on the tensor's size, i.e. on E, which broke ensemble == one-by-one for the paper's tiny last layers.
    optimizer = torch.optim.Adam(plist, lr=params.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_decay_with_warmup(s, params))
    device = split.x_train.device
    alive = torch.ones(e, dtype=torch.bool, device=device)
    running = torch.ones(e, dtype=torch.bool, device=device)  # not yet stopped by early_stop_patience
    steps_run = torch.zeros(e, dtype=torch.long, device=device)
    curve = torch.full((params.steps, e), math.nan, device=device)
    ema = EMADenominator(params.ema_rate)
    best: _Best | None = None
    epoch_order: torch.Tensor | None = None
    for step in range(params.steps):
        if full_batch:
            xb, yb = split.x_train, split.y_train
        else:
            if params.sampling == "epochs":
                if step % per_epoch == 0:
                    epoch_order = torch.stack([torch.randperm(n_train, generator=g) for g in gens])
                assert epoch_order is not None
                rows = epoch_order[:, (step % per_epoch) * batch : (step % per_epoch + 1) * batch]
            else:
                rows = torch.stack([torch.randperm(n_train, generator=g)[:batch] for g in gens])
            xb, yb = take(split.x_train, rows), take(split.y_train, rows)
        xw, yw = critic.project(xb, yb)
        if params.objective == "infonce":
            bound = target = infonce_bound_bits(critic.pair_scores(xw, yw))
        else:
            b = xb.shape[1]
            perm = torch.stack([torch.randperm(b, generator=g) for g in gens])
            # Joint and marginal rows are scored as one (E, 2B) batch; marginal rows reuse the y embeddings.
            scores = critic.scores(torch.cat([xw, xw], dim=1), torch.cat([yw, take(yw, perm)], dim=1))
            bound, target = _pair_objective(scores[:, :b], scores[:, b:], params, ema)
        alive &= torch.isfinite(bound.detach()) & torch.isfinite(target.detach())
        active = alive & running
        optimizer.zero_grad(set_to_none=True)
        (-torch.where(active, target, 0.0).sum()).backward()
        alive &= _mask_and_clip(plist, active, params.grad_clip)
        active &= alive
        curve[step] = torch.where(active, bound.detach(), math.nan)
        steps_run += active.long()
        _step_frozen_aware(optimizer, plist, active)
        schedule.step()
        if stop_slice is not None and ((step + 1) % every == 0 or step + 1 == params.steps):
            best = _keep_best_checkpoint(critic, stop_slice, params, gens, active, best)
            if params.early_stop_patience is not None:
                running &= best.misses < params.early_stop_patience
                if not bool((running & alive).any()):
                    break
    if stop_slice is not None and best is not None:
        with torch.no_grad():
            for p, kept in zip(plist, best.params):
                p.copy_(kept)
    return curve.cpu(), alive.cpu(), steps_run.cpu()


@dataclass
class _Best:
    """Per estimator: the best bound read on the early-stopping slice so far, the parameters that read it, and
    how many readings since then fell more than EARLY_STOP_TOLERANCE_BITS below it (torch-mist's count)."""

    value: torch.Tensor
    params: list[torch.Tensor]
    misses: torch.Tensor


def _keep_best_checkpoint(
    critic: EnsembleCritic,
    stop_slice: Split,
    params: MINEParams,
    gens: list[torch.Generator],
    active: torch.Tensor,
    best: _Best | None,
) -> _Best:
    """Read the bound on the early-stopping slice; where it beats an estimator's best so far, copy that
    estimator's parameters. Estimators that are not `active` (frozen) keep their best and their misses."""
    plist = list(critic.parameters())
    with torch.no_grad():
        samples = heldout_samples(critic, stop_slice, replace(params, marginal_shifts=EARLY_STOP_SHIFTS), gens)
        value = heldout_bound(params, samples)
    value = torch.where(active & torch.isfinite(value), value, -math.inf)
    if best is None:
        return _Best(value, [p.detach().clone() for p in plist],
                     torch.zeros(value.shape[0], dtype=torch.long, device=value.device))
    better = value > best.value
    with torch.no_grad():
        for kept, p in zip(best.params, plist):
            kept.copy_(torch.where(_bcast(better, p), p.detach(), kept))
    worse = active & (value < best.value - EARLY_STOP_TOLERANCE_BITS)
    misses = torch.where(better, 0, best.misses + worse.long())
    return _Best(torch.where(better, value, best.value), best.params, misses)


def _pair_objective(
    joint: torch.Tensor, marginal: torch.Tensor, params: MINEParams, ema: EMADenominator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(bound read out, objective maximised) from one batch's joint and permuted-marginal scores (E, B)."""
    if params.objective == "nwj":
        bound = nwj_bound_bits(joint, marginal)
        return bound, bound
    bound = dv_bound_bits(joint, marginal)
    if params.objective == "smile":
        return bound, smile_objective_bits(joint, marginal, params.smile_tau)
    if params.objective == "mine_ema":
        return bound, ema.surrogate_bits(joint, marginal)
    if params.objective == "js":
        return bound, js_objective_bits(joint, marginal)
    return bound, bound


def _mask_and_clip(plist: list[torch.Tensor], alive: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Zero dead estimators' gradients, clip each live one's to max_norm; return which had finite gradients.

    torch.where, not multiplication: a dead slice can hold NaN gradients (0 * inf in the backward matmul), and
    NaN * 0 is still NaN.
    """
    all_alive = bool(alive.all())
    sq = torch.zeros(alive.shape[0], device=alive.device)
    for p in plist:
        assert p.grad is not None  # every critic parameter takes part in the loss, so backward gave it a gradient
        if not all_alive:
            p.grad = torch.where(_bcast(alive, p.grad), p.grad, 0.0)
        # Sum the last axis, then the next: a single flat sum per estimator would be split across threads
        # when E = 1 but not when E > 1, rounding differently (see critic._batched_linear for why it matters).
        sq += p.grad.pow(2).sum(dim=-1).sum(dim=-1)
    norm = sq.sqrt()
    finite = torch.isfinite(norm)
    if not bool(finite.all()):
        for p in plist:
            assert p.grad is not None
            p.grad = torch.where(_bcast(finite, p.grad), p.grad, 0.0)
    if max_norm is not None:
        # Same coefficient as torch.nn.utils.clip_grad_norm_, but one per estimator.
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        coef = torch.where(finite, coef, 0.0)
        for p in plist:
            assert p.grad is not None
            p.grad.mul_(_bcast(coef, p.grad))
    return finite


def _step_frozen_aware(optimizer: torch.optim.Optimizer, plist: list[torch.Tensor], alive: torch.Tensor) -> None:
    """Adam step that leaves dead estimators where they were.

    A zero gradient is not enough: Adam keeps moving a parameter along its momentum. The live estimators'
    update is untouched (Adam is elementwise), so freezing one estimator never changes another.
    """
    if bool(alive.all()):
        optimizer.step()
        return
    frozen = [p.detach()[~alive].clone() for p in plist]
    optimizer.step()
    with torch.no_grad():
        for p, old in zip(plist, frozen):
            p[~alive] = old


def _bcast(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(E,) -> (E, 1, ..., 1) to broadcast over one estimator's slice of a parameter."""
    return mask.view(-1, *([1] * (like.dim() - 1)))
