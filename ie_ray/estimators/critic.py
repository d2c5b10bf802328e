"""The paper's funnel MLP critic T(x, y), as an ensemble of E independent critics in one set of tensors.

Why an ensemble: IE needs hundreds of small MI estimates (layers x positions x macro/micro x seeds). One small
MLP per estimate leaves a CPU or GPU mostly idle, so E critics are stored with a leading estimator axis
(weights (E, in, out)) and evaluated with one batched matmul (`torch.baddbmm`) per layer. Nothing couples the
E slices: each has its own initialisation generator, and the per-layer batched matmul never mixes them.

Why split the first layer: the critic reads concat[x; y], and DV needs it on joint pairs (x_i, y_i) and on
marginal pairs (x_i, y_pi(i)). Writing W1 = [Wx; Wy], concat[x; y] @ W1 = x @ Wx + y @ Wy, so x @ Wx and y @ Wy
are computed once per step and the marginal pre-activation is x @ Wx + (y @ Wy)[pi]: the rows of y @ Wy are
permuted instead of recomputed. This is the same function as the concatenated layer (same parameters, same
initialisation distribution) and halves the dominant first-layer cost.

Three critics share one interface (`EnsembleCritic`): `project(x, y)` embeds x and y separately, once per
batch; `scores(xe, ye)` scores aligned rows of those embeddings; `pair_scores(xe, ye)` scores every pair. The
trainer permutes or gathers embedding rows to form marginal pairs and never needs to know which critic it has.

- joint (`EnsembleFunnelCritic`): the paper's MLP on concat[x; y], the default.
- separable (`EnsembleSeparableCritic`): T(x, y) = f(x)^T g(y), f and g MLPs or linear maps into a shared
  k-dim space (Poole et al. 2019's "separable" critic, the usual one for InfoNCE in high dimension). The
  product of x-features and y-features is built in instead of assembled from ReLUs, and all B^2 pairs of an
  InfoNCE batch are one (B, k) x (k, B) matmul instead of B^2 passes through an MLP.
- hybrid (`EnsembleHybridCritic`): separable term plus a narrow joint MLP, for dependence that is not a sum of
  products of a function of x and a function of y.

What they change (benchmarks/results/critics.md, Gaussian tasks, N = 2,000, DV): at d = 64 the linear
separable critic reads what the joint one reads (both far below the truth: 2,000 pairs do not pin a 64 x 64
cross-covariance) at 1/6 of its cost; at d = 256 no neural critic recovers MI from 2,000 pairs (the
bias-corrected Gaussian closed form does: it knows the model), but with early stopping the linear separable
critic, which starts at T = 0, reads -0.16 to +0.03 bits (2 of 9 estimates flagged "diverged") where the
joint critic reads -0.22 to -0.31, every estimate significantly below zero (9 of 9 flagged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

#: LeakyReLU slope between layers (PyTorch's default, as in the reference code).
NEGATIVE_SLOPE: float = 0.01
#: Pairs x width of one estimator's block in `pair_scores` (2^20 floats = 4 MB, about a core's share of cache).
_PAIR_BLOCK_ELEMENTS: int = 1 << 20


class EnsembleCritic(Protocol):
    """What the trainer (mine/training.py) needs of a critic ensemble; every tensor has the estimator axis E first."""

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row embeddings of x (E, n, dx) and y (E, n, dy): (E, n, kx), (E, n, ky)."""
        ...

    def scores(self, xe: torch.Tensor, ye: torch.Tensor) -> torch.Tensor:
        """T(x_i, y_i) (E, n) of aligned rows of the embeddings."""
        ...

    def pair_scores(self, xe: torch.Tensor, ye: torch.Tensor) -> torch.Tensor:
        """T(x_i, y_j) (E, a, b) of every pair of rows of xe (E, a, kx) and ye (E, b, ky)."""
        ...

    def parameters(self): ...

    def to(self, device: torch.device | str) -> EnsembleCritic:
        """The critic on `device` (every critic is an nn.Module; MINEParams.device)."""
        ...


def funnel_widths(d_in: int, n_layers: int, min_width: int) -> list[int]:
    """Output widths of the `n_layers` Linear layers of the funnel on a `d_in`-dim input.

    The paper halves the width at each layer (1536 -> 768 -> ... -> 3 -> 1 for 768-dim x and y); `min_width`
    stops the halving so that a short input does not shrink to 1-3 units, which trains poorly.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    if min_width < 1:
        raise ValueError(f"min_width must be >= 1, got {min_width}")
    hidden = [max(d_in // 2 ** (k + 1), min_width) for k in range(n_layers - 1)]
    return [*hidden, 1]


class EnsembleFunnelCritic(nn.Module):
    """E funnel MLP critics on concat[x; y], with the first layer split into x and y parts.

    Parameters per layer l (with E = number of estimators):
    weight_l: (E, in_l, out_l); bias_l: (E, 1, out_l). Layer 0 is stored as `wx` (E, dx, w0) and `wy`
    (E, dy, w0); together they are the paper's first Linear layer on the concatenated input.
    """

    def __init__(
        self,
        dx: int,
        dy: int,
        n_layers: int,
        min_width: int,
        generators: Sequence[torch.Generator],
        widths: Sequence[int] | None = None,
        init: str = "xavier",
        activation: str = "leaky_relu",
    ) -> None:
        """`widths` (the output width of each layer, ending in 1) replaces the funnel's halving widths: the
        hybrid critic's joint term is a narrow MLP, not a funnel from the input width. `init` "torch" draws
        weights and biases as nn.Linear does (torch-mist's critic) instead of Xavier weights and zero biases;
        `activation` "relu" replaces the reference code's LeakyReLU."""
        super().__init__()
        if init not in ("xavier", "torch") or activation not in ("leaky_relu", "relu"):
            raise ValueError(f"init must be 'xavier' or 'torch' and activation 'leaky_relu' or 'relu', got "
                             f"{init!r} and {activation!r}")
        self.negative_slope = NEGATIVE_SLOPE if activation == "leaky_relu" else 0.0
        self.dx, self.dy = dx, dy
        self.widths = funnel_widths(dx + dy, n_layers, min_width) if widths is None else list(widths)
        if self.widths[-1] != 1:
            raise ValueError(f"the last layer of a joint critic outputs one score, got widths {self.widths}")
        fan_ins = [dx + dy, *self.widths[:-1]]
        # Draw every estimator's weights from its own generator, layer by layer, so that estimator i gets the
        # same initial critic whether it is trained alone or among others.
        per_layer: list[list[torch.Tensor]] = [[] for _ in fan_ins]
        per_bias: list[list[torch.Tensor]] = [[] for _ in fan_ins]
        for g in generators:
            for layer, (fan_in, fan_out) in enumerate(zip(fan_ins, self.widths)):
                if init == "xavier":
                    per_layer[layer].append(_xavier_normal(fan_in, fan_out, g))
                    per_bias[layer].append(torch.zeros(1, fan_out))
                else:
                    weight, bias = _torch_linear_default(fan_in, fan_out, g)
                    per_layer[layer].append(weight)
                    per_bias[layer].append(bias)
        first = torch.stack(per_layer[0])
        self.wx = nn.Parameter(first[:, :dx].contiguous())
        self.wy = nn.Parameter(first[:, dx:].contiguous())
        self.b0 = nn.Parameter(torch.stack(per_bias[0]))
        self.weights = nn.ParameterList(nn.Parameter(torch.stack(ws)) for ws in per_layer[1:])
        self.biases = nn.ParameterList(nn.Parameter(torch.stack(bs)) for bs in per_bias[1:])

    @property
    def n_estimators(self) -> int:
        return self.wx.shape[0]

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each Linear layer of one critic, with the first layer un-split (for inspection)."""
        fan_ins = [self.dx + self.dy, *self.widths[:-1]]
        return list(zip(fan_ins, self.widths))

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer halves x @ Wx (E, n, w0) and y @ Wy (E, n, w0), computed once and reused for marginals."""
        return torch.bmm(x, self.wx), torch.bmm(y, self.wy)

    def head(self, pre: torch.Tensor) -> torch.Tensor:
        """Critic scores (E, n) from first-layer pre-activations without bias, pre = (x @ Wx)[i] + (y @ Wy)[j]."""
        return self._tail(pre + self.b0)

    def pair_scores(self, xw: torch.Tensor, yw: torch.Tensor) -> torch.Tensor:
        """Scores T(x_i, y_j) of every pair (E, a, b) from first-layer halves xw (E, a, w0) and yw (E, b, w0).

        InfoNCE scores all B^2 pairs of a minibatch; with the split first layer that is one broadcast add per
        pair, not a first-layer matmul per pair, but the layers after the first still see a * b rows of width
        w0 (B/2 times DV's 2B rows). Those rows are processed in blocks of x rows small enough to stay in cache,
        and under autograd each block is checkpointed (recomputed in backward instead of stored): at B = 256,
        w0 = 512 that is ~3.5x faster on one CPU core than one (E, B^2, w0) pass, and needs ~E * 4 MB instead of
        ~E * 0.5 GB. The block size does not depend on E, so an estimator's gradients are summed in the same
        order alone and in an ensemble.
        """
        a, b, w0 = xw.shape[1], yw.shape[1], xw.shape[2]
        y_pre = yw + self.b0  # the bias once on b rows, not on every pair
        rows = max(1, _PAIR_BLOCK_ELEMENTS // (b * w0))
        blocks = []
        for s in range(0, a, rows):
            if torch.is_grad_enabled():
                blocks.append(checkpoint(self._pair_block, xw[:, s : s + rows], y_pre, use_reentrant=False))
            else:
                blocks.append(self._pair_block(xw[:, s : s + rows], y_pre))
        return torch.cat(blocks, dim=1)

    def _pair_block(self, xw: torch.Tensor, y_pre: torch.Tensor) -> torch.Tensor:
        e, a, w0 = xw.shape
        b = y_pre.shape[1]
        pre = xw[:, :, None, :] + y_pre[:, None, :, :]
        return self._tail(pre.view(e, a * b, w0)).view(e, a, b)

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        """The layers after the first, from first-layer pre-activations with their bias: (E, n, w0) -> (E, n)."""
        for w, b in zip(self.weights, self.biases):
            h = _batched_linear(nn.functional.leaky_relu(h, self.negative_slope), w, b)
        return h.squeeze(-1)

    def zero_output_layer(self) -> None:
        """Zero the last layer's weights, so that every critic starts as T = 0 (the hybrid's joint term)."""
        with torch.no_grad():
            for w in [self.weights[-1]] if len(self.weights) else [self.wx, self.wy]:
                w.zero_()

    def scores(self, xw: torch.Tensor, yw: torch.Tensor) -> torch.Tensor:
        """Scores T(x_i, y_i) (E, n) from aligned rows of the first-layer halves."""
        return self.head(xw + yw)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores T(x_i, y_i) of aligned pairs, x (E, n, dx), y (E, n, dy) -> (E, n)."""
        return self.scores(*self.project(x, y))


class EnsembleMLP(nn.Module):
    """E MLPs d_in -> widths[0] -> ... -> widths[-1] with LeakyReLU between layers (none after the last).

    Weights (E, in, out), biases (E, 1, out), each estimator's drawn from its own generator as in the funnel.
    """

    def __init__(self, d_in: int, widths: Sequence[int], generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        fan_ins = [d_in, *widths[:-1]]
        per_layer: list[list[torch.Tensor]] = [[] for _ in widths]
        for g in generators:
            for layer, (fan_in, fan_out) in enumerate(zip(fan_ins, widths)):
                per_layer[layer].append(_xavier_normal(fan_in, fan_out, g))
        e = len(generators)
        self.weights = nn.ParameterList(nn.Parameter(torch.stack(ws)) for ws in per_layer)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(e, 1, w)) for w in widths)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            if layer:
                h = nn.functional.leaky_relu(h, NEGATIVE_SLOPE)
            h = _batched_linear(h, w, b)
        return h


def embed_widths(embed_layers: int, embed_width: int, embed_dim: int) -> list[int]:
    """Output widths of the Linear layers of f (and of g): embed_layers - 1 hidden layers of embed_width, then
    the k = embed_dim shared space. embed_layers = 1 makes f and g linear maps (a rank-k bilinear critic)."""
    if embed_layers < 1:
        raise ValueError(f"embed_layers must be >= 1, got {embed_layers}")
    return [*([embed_width] * (embed_layers - 1)), embed_dim]


class EnsembleSeparableCritic(nn.Module):
    """E separable critics T(x, y) = f(x)^T g(y) / sqrt(k), f: dx -> k and g: dy -> k batched MLPs.

    Why f's last layer starts at zero: the critic then starts as T = 0, the critic of independent variables,
    where DV and InfoNCE read exactly 0 bits, instead of a random function whose held-out bound is negative.
    Measured while building this (correlated Gaussians, d = 256, N = 2,000, 1-4 bits, DV, early stopping):
    Xavier-initialised f read -0.4 to -0.5 bits held-out (linear f, g: -1.4 to -1.8), zero-initialised f
    -0.1 to -0.2 (linear: -0.06 to 0.00). g keeps its random start, so the first gradient on f is not zero (as
    in LoRA's zero-initialised B). Why 1/sqrt(k): the dot product of k O(1) coordinates spreads like sqrt(k);
    the scaled product (as in attention) keeps the scores' scale, and so the learning rate's effect, the same
    for every k (d = 64, 2 bits, N = 16,000, Xavier f: 0.73 bits scaled, 0.40 unscaled; with the zero start
    it makes no difference, 0.66 vs 0.65).

    Each generator draws f's layers, then g's, so an estimator's initial critic does not depend on E.
    """

    def __init__(
        self,
        dx: int,
        dy: int,
        embed_layers: int,
        embed_width: int,
        embed_dim: int,
        generators: Sequence[torch.Generator],
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        widths = embed_widths(embed_layers, embed_width, embed_dim)
        self.f = EnsembleMLP(dx, widths, generators)
        self.g = EnsembleMLP(dy, widths, generators)
        with torch.no_grad():
            self.f.weights[-1].zero_()
        self._scale = 1.0 / math.sqrt(embed_dim)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x) (E, n, k) and g(y) (E, n, k), scaled so that their dot product is the score."""
        return self.f(x) * self._scale, self.g(y)

    def scores(self, fx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        return (fx * gy).sum(dim=-1)

    def pair_scores(self, fx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        return torch.bmm(fx, gy.transpose(1, 2))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scores(*self.project(x, y))


class EnsembleHybridCritic(nn.Module):
    """T(x, y) = f(x)^T g(y) / sqrt(k) + J(concat[x; y]): a separable critic plus a joint one (`make_critic` in
    mine/critics.py makes J a narrow MLP, `joint_width` wide).

    The embeddings are concatenations [f(x) | x @ Wx] and [g(y) | y @ Wy], so the trainer permutes and gathers
    one tensor per side as for the other critics; `scores` splits them at k again. J's last layer is set to
    zero, like f's, so that the hybrid also starts at T = 0. Build the two parts in a fixed order (separable,
    then joint) from the same generators, so that an estimator's initial critic does not depend on E.
    """

    def __init__(self, separable: EnsembleSeparableCritic, joint: EnsembleFunnelCritic) -> None:
        super().__init__()
        self.embed_dim = separable.embed_dim
        self.separable, self.joint = separable, joint
        self.joint.zero_output_layer()

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fx, gy = self.separable.project(x, y)
        xw, yw = self.joint.project(x, y)
        return torch.cat([fx, xw], dim=-1), torch.cat([gy, yw], dim=-1)

    def scores(self, xe: torch.Tensor, ye: torch.Tensor) -> torch.Tensor:
        k = self.embed_dim
        return self.separable.scores(xe[..., :k], ye[..., :k]) + self.joint.scores(xe[..., k:], ye[..., k:])

    def pair_scores(self, xe: torch.Tensor, ye: torch.Tensor) -> torch.Tensor:
        k = self.embed_dim
        return self.separable.pair_scores(xe[..., :k], ye[..., :k]) + self.joint.pair_scores(
            xe[..., k:], ye[..., k:]
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scores(*self.project(x, y))


def _batched_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h (E, n, in) @ w (E, in, out) + b, with a multiply-and-sum for out == 1.

    CPU bmm takes a different (matrix-vector) path for a one-column output when the batch holds one matrix
    than when it holds several, so the funnel's last layer (and its weight gradient) would round differently
    for an estimator fitted alone and in an ensemble, and training amplifies that to ~1e-2 bits. The
    elementwise form reduces each row the same way whatever E is.
    """
    if w.shape[2] == 1:
        return (h * w.transpose(1, 2)).sum(dim=-1, keepdim=True) + b
    return torch.baddbmm(b, h, w)


def _torch_linear_default(fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (in, out), bias (1, out)) distributed as nn.Linear's default initialisation: kaiming_uniform_ with
    a = sqrt(5) gives weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias has the same bound."""
    bound = 1.0 / math.sqrt(fan_in)
    weight = (torch.rand(fan_in, fan_out, generator=generator) * 2.0 - 1.0) * bound
    bias = (torch.rand(1, fan_out, generator=generator) * 2.0 - 1.0) * bound
    return weight, bias


def _xavier_normal(fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
    """Xavier-normal (in, out) matrix, as `nn.init.xavier_normal_`, drawn from an explicit generator."""
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(fan_in, fan_out, generator=generator) * std
