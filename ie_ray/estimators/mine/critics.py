"""Which ensemble critic (`ie_ray/estimators/critic.py`) a `MINEParams` names, and how wide its first layer is."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ie_ray.estimators.critic import (
    EnsembleCritic,
    EnsembleFunnelCritic,
    EnsembleHybridCritic,
    EnsembleSeparableCritic,
    funnel_widths,
)
from ie_ray.estimators.mine.params import MINEParams


def first_layer_width(params: MINEParams, d_in: int) -> int:
    """Units of the critic's first layer(s) that every row of x and of y goes through."""
    if params.critic == "joint":
        return joint_widths(params, d_in)[0]
    embed = params.embed_width if params.embed_layers > 1 else params.embed_dim
    return embed + (params.joint_width if params.critic == "hybrid" else 0)


def joint_widths(params: MINEParams, d_in: int) -> list[int]:
    """Output widths of the joint critic's Linear layers: the funnel, or `hidden_width` for every hidden one."""
    if params.hidden_width is None:
        return funnel_widths(d_in, params.n_layers, params.min_width)
    return [*([params.hidden_width] * (params.n_layers - 1)), 1]


def make_critic(params: MINEParams, dx: int, dy: int, generators: Sequence[torch.Generator]) -> EnsembleCritic:
    """The ensemble critic `params.critic` names, one per generator."""
    if params.critic == "joint":
        return EnsembleFunnelCritic(dx, dy, params.n_layers, params.min_width, generators,
                                    joint_widths(params, dx + dy), params.init, params.activation)
    separable = EnsembleSeparableCritic(
        dx, dy, params.embed_layers, params.embed_width, params.embed_dim, generators
    )
    if params.critic == "separable":
        return separable
    widths = [*([params.joint_width] * (params.n_layers - 1)), 1]
    return EnsembleHybridCritic(separable, EnsembleFunnelCritic(dx, dy, params.n_layers, 1, generators, widths))
