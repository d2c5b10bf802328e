"""Every MINE objective on critic scores written out by hand: the value each bound takes is derived here from its
textbook formula (plain `math`, no package code), and compared with the functions the trainer and the readout
actually call (`_pair_objective` of mine/training.py for training, `HELDOUT_BOUND` for the held-out readout,
`BOOTSTRAP_BOUND` for the bootstrap, `infonce_bound_bits` for InfoNCE's all-pairs batches). Gradients are checked
against `torch.autograd.gradcheck` and against the formula's own derivative; MINE's moving-average correction,
whose gradient is biased-corrected on purpose, against the gradient its docstring promises.

One 4 x 4 score matrix S (S[i, j] = T(x_i, y_j), in nats) serves every bound: its diagonal is the joint sample,
its 12 off-diagonal entries the marginal sample, and it holds marginal scores beyond the SMILE clip used here
(tau = 1), so that the six objectives take six different values on the same scores.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ie_ray.estimators import OBJECTIVES, MINEParams, estimate_mine
from ie_ray.estimators.benchmark import correlated_gaussians
from ie_ray.estimators.bounds import (
    EMADenominator,
    dv_bound_bits,
    infonce_bound_bits,
    infonce_row_terms_bits,
    nwj_bound_bits,
    smile_objective_bits,
)
from ie_ray.estimators.mine.readout import BOOTSTRAP_BOUND, HELDOUT_BOUND
from ie_ray.estimators.mine.training import _pair_objective

LN2 = math.log(2.0)
TAU = 1.0
S = [
    [2.0, 0.5, -1.3, 1.6],
    [0.0, 1.5, -0.4, -2.5],
    [1.1, -2.0, 2.2, 0.3],
    [-1.5, 0.8, -0.9, 0.7],
]
B = len(S)
JOINT = [S[i][i] for i in range(B)]
MARGINAL = [S[i][j] for i in range(B) for j in range(B) if i != j]


def _mean(values) -> float:
    return sum(values) / len(values)


# --- the textbook formulas, in nats, on plain Python lists ------------------------------------------------------


def dv_nats(joint, marginal) -> float:
    """Donsker-Varadhan: E_P[T] - log E_Q[e^T]."""
    return _mean(joint) - math.log(_mean([math.exp(t) for t in marginal]))


def nwj_nats(joint, marginal) -> float:
    """Nguyen-Wainwright-Jordan: E_P[T] - E_Q[e^{T - 1}]."""
    return _mean(joint) - _mean([math.exp(t - 1.0) for t in marginal])


def smile_nats(joint, marginal, tau: float) -> float:
    """SMILE: DV with the marginal scores clipped to [-tau, tau]."""
    return dv_nats(joint, [min(max(t, -tau), tau) for t in marginal])


def infonce_nats(scores) -> float:
    """InfoNCE: mean_i [T_ii - log (1/B) sum_j e^{T_ij}]."""
    b = len(scores)
    return _mean([scores[i][i] - math.log(_mean([math.exp(t) for t in scores[i]])) for i in range(b)])


def js_nats(joint, marginal) -> float:
    """Jensen-Shannon (f-GAN) objective: E_P[-log(1 + e^{-T})] - E_Q[log(1 + e^T)]."""
    return _mean([-math.log1p(math.exp(-t)) for t in joint]) - _mean([math.log1p(math.exp(t)) for t in marginal])


def ema_first_batch_nats(joint) -> float:
    """MINE-EMA's surrogate E_P[T] - E_batch[e^T] / ma: on the first batch ma is that batch's mean, so the
    second term is exactly 1."""
    return _mean(joint) - 1.0


#: Per objective: (training objective, reading of the bound) in bits on S. SMILE and MINE-EMA train on their
#: own objective but read out plain DV (bounds.py / mine/__init__.py docstrings).
EXPECTED_BITS: dict[str, tuple[float, float]] = {
    "dv": (dv_nats(JOINT, MARGINAL) / LN2, dv_nats(JOINT, MARGINAL) / LN2),
    "nwj": (nwj_nats(JOINT, MARGINAL) / LN2, nwj_nats(JOINT, MARGINAL) / LN2),
    "infonce": (infonce_nats(S) / LN2, infonce_nats(S) / LN2),
    "smile": (smile_nats(JOINT, MARGINAL, TAU) / LN2, dv_nats(JOINT, MARGINAL) / LN2),
    "mine_ema": (ema_first_batch_nats(JOINT) / LN2, dv_nats(JOINT, MARGINAL) / LN2),
    "js": (js_nats(JOINT, MARGINAL) / LN2, dv_nats(JOINT, MARGINAL) / LN2),
}


def _tensors(dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores (1, B, B), joint (1, B), marginal (1, B(B-1))) as the trainer passes them (leading estimator axis)."""
    return (torch.tensor([S], dtype=dtype), torch.tensor([JOINT], dtype=dtype), torch.tensor([MARGINAL], dtype=dtype))


def test_every_objective_has_a_hand_derived_value() -> None:
    # A new objective must come with its own known-score test.
    assert set(EXPECTED_BITS) == set(OBJECTIVES) == set(HELDOUT_BOUND) == set(BOOTSTRAP_BOUND)


def test_the_objectives_take_different_values_on_the_same_scores() -> None:
    trained = [EXPECTED_BITS[o][0] for o in OBJECTIVES]
    assert min(abs(a - b) for i, a in enumerate(trained) for b in trained[i + 1:]) > 0.1, trained
    # and the known orderings hold: NWJ <= DV (log z <= z / e), InfoNCE <= log2 B
    assert EXPECTED_BITS["nwj"][0] < EXPECTED_BITS["dv"][0]
    assert EXPECTED_BITS["infonce"][0] <= math.log2(B)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_training_objective_on_known_scores(objective: str) -> None:
    scores, joint, marginal = _tensors()
    trained_bits, read_bits = EXPECTED_BITS[objective]
    params = MINEParams(objective=objective, smile_tau=TAU)
    if objective == "infonce":
        # the trainer scores all pairs of the batch and maximises the bound itself
        value = infonce_bound_bits(scores)
        assert value.item() == pytest.approx(trained_bits, abs=1e-12)
        return
    bound, target = _pair_objective(joint, marginal, params, EMADenominator(params.ema_rate))
    assert target.item() == pytest.approx(trained_bits, abs=1e-12), "the objective the critic is trained on"
    assert bound.item() == pytest.approx(read_bits, abs=1e-12), "the bound recorded on the training curve"


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_heldout_and_bootstrap_readouts_on_known_scores(objective: str) -> None:
    scores, joint, marginal = _tensors()
    read_bits = EXPECTED_BITS[objective][1]
    if objective == "infonce":
        # the held-out readout averages per-row terms (each at most log2 B), as the bootstrap resamples them
        terms = infonce_row_terms_bits(scores)
        by_row = [(S[i][i] - math.log(_mean([math.exp(t) for t in S[i]]))) / LN2 for i in range(B)]
        np.testing.assert_allclose(terms[0].numpy(), by_row, rtol=0, atol=1e-12)
        samples: tuple = (terms,)
    else:
        samples = (joint, marginal)
    assert HELDOUT_BOUND[objective](*samples).item() == pytest.approx(read_bits, abs=1e-12)
    assert BOOTSTRAP_BOUND[objective](*(s[0].numpy() for s in samples)) == pytest.approx(read_bits, abs=1e-12)


def test_bounds_are_per_estimator_along_the_leading_axis() -> None:
    # Two estimators in one call: each row gets its own bound (no mixing across the ensemble axis).
    _, joint, marginal = _tensors()
    flipped = (-joint, -marginal)
    both = dv_bound_bits(torch.cat([joint, flipped[0]]), torch.cat([marginal, flipped[1]]))
    assert both[0].item() == pytest.approx(dv_nats(JOINT, MARGINAL) / LN2, abs=1e-12)
    assert both[1].item() == pytest.approx(dv_nats([-t for t in JOINT], [-t for t in MARGINAL]) / LN2, abs=1e-12)


def test_large_scores_do_not_overflow() -> None:
    # exp(800) overflows float64; the bounds go through log-sum-exp and stay exact.
    _, joint, marginal = _tensors()
    shift = 800.0
    assert dv_bound_bits(joint + shift, marginal + shift).item() == pytest.approx(
        dv_nats(JOINT, MARGINAL) / LN2, abs=1e-9)
    assert BOOTSTRAP_BOUND["dv"](joint[0].numpy() + shift, marginal[0].numpy() + shift) == pytest.approx(
        dv_nats(JOINT, MARGINAL) / LN2, abs=1e-9)


# --- gradients ---------------------------------------------------------------------------------------------------


def _random_scores(seed: int, n: int = 5, m: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    joint = (2.0 * torch.randn(2, n, generator=g, dtype=torch.float64)).requires_grad_()
    marginal = (2.0 * torch.randn(2, m, generator=g, dtype=torch.float64)).requires_grad_()
    return joint, marginal


def test_bounds_pass_gradcheck() -> None:
    joint, marginal = _random_scores(0)
    # keep every marginal score away from the SMILE clip's kinks, where the derivative is undefined
    with torch.no_grad():
        near = (marginal.abs() - TAU).abs() < 1e-3
        marginal[near] += 0.01
    assert torch.autograd.gradcheck(dv_bound_bits, (joint, marginal))
    assert torch.autograd.gradcheck(nwj_bound_bits, (joint, marginal))
    assert torch.autograd.gradcheck(lambda j, m: smile_objective_bits(j, m, TAU), (joint, marginal))
    scores = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(infonce_bound_bits, (scores,))


def test_gradients_are_the_derivatives_of_the_formulas() -> None:
    """d/dT of each bound, written out: the joint term always gives 1 / (n ln 2) per joint score; the marginal
    term gives -softmax(m) / ln 2 (DV), -e^{m - 1} / (M ln 2) (NWJ), -softmax(clip m) / ln 2 inside the clip
    and 0 outside it (SMILE); InfoNCE gives (delta_ij - softmax_j(S_i.)) / (B ln 2)."""
    _, joint, marginal = _tensors()
    n, m = joint.shape[1], marginal.shape[1]
    mg = np.array(MARGINAL)
    clipped = np.clip(mg, -TAU, TAU)
    expected_marginal = {
        "dv": -np.exp(mg) / np.exp(mg).sum() / LN2,
        "nwj": -np.exp(mg - 1.0) / m / LN2,
        "smile": np.where(np.abs(mg) < TAU, -np.exp(clipped) / np.exp(clipped).sum(), 0.0) / LN2,
    }
    bounds = {"dv": dv_bound_bits, "nwj": nwj_bound_bits, "smile": lambda j, k: smile_objective_bits(j, k, TAU)}
    for name, bound in bounds.items():
        j, k = joint.clone().requires_grad_(), marginal.clone().requires_grad_()
        bound(j, k).sum().backward()
        np.testing.assert_allclose(j.grad[0].numpy(), np.full(n, 1.0 / (n * LN2)), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(k.grad[0].numpy(), expected_marginal[name], rtol=1e-10, atol=1e-15,
                                   err_msg=name)
    s = torch.tensor([S], dtype=torch.float64, requires_grad=True)
    infonce_bound_bits(s).sum().backward()
    a = np.array(S)
    softmax = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(s.grad[0].numpy(), (np.eye(B) - softmax) / (B * LN2), rtol=1e-10, atol=1e-15)


def test_moving_average_gradient_is_the_documented_bias_correction() -> None:
    """EMADenominator: gradient E[grad T] - E_batch[grad T e^T] / ma, with ma the moving average of the batch
    means of e^T that includes the current batch (ma_1 = batch 1's mean; ma_k = (1 - r) ma_{k-1} + r mean_k).
    Checked over three batches, against plain DV's gradient (which divides by the current batch's mean)."""
    rate = 0.3
    ema = EMADenominator(rate)
    batches = [_random_scores(seed) for seed in (2, 3, 4)]
    ma = None
    for joint, marginal in batches:
        mean_exp = marginal.detach().exp().mean(dim=1, keepdim=True).numpy()
        ma = mean_exp if ma is None else (1.0 - rate) * ma + rate * mean_exp
        ema.surrogate_bits(joint, marginal).sum().backward()
        n, m = joint.shape[1], marginal.shape[1]
        np.testing.assert_allclose(joint.grad.numpy(), np.full(joint.shape, 1.0 / (n * LN2)), rtol=1e-12)
        expected = -marginal.detach().exp().numpy() / m / ma / LN2
        np.testing.assert_allclose(marginal.grad.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(ema.log_ma.numpy(), np.log(ma[:, 0]), rtol=1e-12)
    # after the first batch the correction differs from the DV gradient (that is the point of it)
    joint, marginal = _random_scores(4)
    dv_bound_bits(joint, marginal).sum().backward()
    assert not np.allclose(marginal.grad.numpy(), batches[-1][1].grad.numpy(), rtol=1e-3)


def test_moving_average_surrogate_value_on_known_scores() -> None:
    # first batch: ma is its own mean, the surrogate is E_P[T] - 1; second batch: E_P[T] - mean_2 / ma_2
    _, joint, marginal = _tensors()
    ema = EMADenominator(0.5)
    assert ema.surrogate_bits(joint, marginal).item() == pytest.approx(ema_first_batch_nats(JOINT) / LN2, abs=1e-12)
    mean_1 = _mean([math.exp(t) for t in MARGINAL])
    mean_2 = _mean([math.exp(t + 1.0) for t in MARGINAL])
    ma_2 = 0.5 * mean_1 + 0.5 * mean_2
    value = ema.surrogate_bits(joint, marginal + 1.0).item()
    assert value == pytest.approx((_mean(JOINT) - mean_2 / ma_2) / LN2, abs=1e-12)


# --- the readout of a real fit -----------------------------------------------------------------------------------


def test_each_fit_reads_out_its_own_bound(one_torch_thread) -> None:
    """With one step inside the warmup the learning rate is 0: every DV-family objective (same seed, same random
    draws) ends with the same untrained critic, so DV, SMILE and MINE-EMA read the same held-out DV bound, and
    NWJ reads a strictly lower one on the same scores (NWJ < DV unless E_Q[e^T] = e exactly)."""
    x, y = correlated_gaussians(2, 1.0, 200, seed=0)
    base = MINEParams(steps=1, warmup_steps=5, batch_size=64, min_width=8, n_bootstrap=5, marginal_shifts=8)
    fits = {o: estimate_mine(x, y, replace(base, objective=o), seed=0) for o in ("dv", "nwj", "smile", "mine_ema")}
    assert fits["smile"].heldout_bits == fits["dv"].heldout_bits == fits["mine_ema"].heldout_bits
    assert fits["nwj"].heldout_bits < fits["dv"].heldout_bits - 0.05
    assert {o: f.objective for o, f in fits.items()} == {o: o for o in fits}
