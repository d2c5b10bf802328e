"""Variational lower bounds on MI that a critic T(x, y) is trained on and read out with, in bits.

Every function takes critic scores in nats (T is the critic's raw output) with a leading estimator axis and
returns one value per estimator, multiplied by log2(e). The numpy twins (`*_np`) compute the same bound on one
estimator's held-out scores for the bootstrap, in float64.

- DV (Donsker-Varadhan, MINE):   E_joint[T] - log E_marg[e^T].
- NWJ (Nguyen-Wainwright-Jordan, the f-divergence bound, "MINE-f"):   E_joint[T] - e^{-1} E_marg[e^T].
  Never above DV for the same critic (log z <= z/e), but unbiased in minibatches: its gradient has no
  1/E[e^T] factor that a minibatch estimates badly. Its variance grows like e^{I}: it is fine at a few bits.
- InfoNCE (van den Oord et al. 2018) on a batch of B pairs scored against each other:
  mean_i [T(x_i, y_i) - log sum_j e^{T(x_i, y_j)} + log B]. Low variance, but it cannot exceed log B whatever
  the critic (the log-sum-exp includes the joint term), so it saturates when the true MI nears log2 B bits.
- SMILE (Song & Ermon 2020): DV with the marginal scores clipped to [-tau, tau] inside the log-mean-exp, which
  bounds the variance of the partition-function estimate; trained on, then the unclipped DV is read out.
- JS (the Jensen-Shannon f-GAN objective, Nowozin et al. 2016; Hjelm et al. 2019; torch-mist trains SMILE on
  it): E_joint[-softplus(-T)] - E_marg[softplus(T)], i.e. logistic regression of joint against marginal pairs.
  Not an MI bound; its optimum is the same T = log p(x, y) / (p(x) p(y)), and its gradient never goes through
  e^T, so it trains stably where DV's partition-function estimate is noisy. Trained on, then DV is read out.
- MINE's moving-average correction (Belghazi et al. 2018, section 3.2): the DV gradient divides by the
  minibatch mean of e^T, a biased estimate of E_marg[e^T]; an exponential moving average over steps replaces it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOG2E: float = math.log2(math.e)


def log_mean_exp(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """log mean exp along `dim` through logsumexp (the reference code's naive form overflows to inf/NaN)."""
    return torch.logsumexp(scores, dim=dim) - math.log(scores.shape[dim])


def dv_bound_bits(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """DV bound in bits per estimator from critic scores joint (E, n) and marginal (E, m)."""
    return (joint.mean(dim=1) - log_mean_exp(marginal)) * LOG2E


def nwj_bound_bits(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """NWJ bound in bits per estimator: e^{-1} E[e^T] is computed as exp(log-mean-exp - 1), which overflows
    only when the bound itself is -inf."""
    return (joint.mean(dim=1) - torch.exp(log_mean_exp(marginal) - 1.0)) * LOG2E


def smile_objective_bits(joint: torch.Tensor, marginal: torch.Tensor, tau: float) -> torch.Tensor:
    """SMILE training objective: DV with marginal scores clipped to [-tau, tau] (no gradient beyond the clip)."""
    return dv_bound_bits(joint, marginal.clamp(-tau, tau))


def js_objective_bits(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """JS training objective (in bits, as every objective here): E_joint[-softplus(-T)] - E_marg[softplus(T)]."""
    return (-torch.nn.functional.softplus(-joint).mean(dim=1)
            - torch.nn.functional.softplus(marginal).mean(dim=1)) * LOG2E


def infonce_row_terms_bits(scores: torch.Tensor) -> torch.Tensor:
    """Per-row InfoNCE terms in bits from all-pairs scores (E, B, B), scores[:, i, j] = T(x_i, y_j).

    Row i is T_ii - log sum_j T_ij + log B; their mean is the bound, and each term is <= log B.
    """
    b = scores.shape[-1]
    diag = torch.diagonal(scores, dim1=1, dim2=2)
    return (diag - torch.logsumexp(scores, dim=2) + math.log(b)) * LOG2E


def infonce_bound_bits(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE bound in bits per estimator from all-pairs scores (E, B, B); at most log2(B)."""
    return infonce_row_terms_bits(scores).mean(dim=1)


class EMADenominator:
    """MINE's bias-corrected DV gradient: a surrogate whose value is meaningless but whose gradient is
    E[grad T] - E_batch[grad T e^T] / ma, with ma an exponential moving average of the batch means of e^T.

    The average is kept in log space (log ma, one per estimator) so that large critic scores never overflow.
    It includes the current batch, as the MINE paper's algorithm does, and is initialised with the first batch.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.log_ma: torch.Tensor | None = None

    def surrogate_bits(self, joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        lme = log_mean_exp(marginal)
        current = lme.detach()
        if self.log_ma is None:
            self.log_ma = current
        else:
            self.log_ma = torch.logaddexp(
                self.log_ma + math.log1p(-self.rate), current + math.log(self.rate)
            )
        # d/dT exp(lme - log_ma) = (e^lme / ma) d lme = E_batch[grad T e^T] / ma.
        return (joint.mean(dim=1) - torch.exp(lme - self.log_ma)) * LOG2E


def dv_bound_bits_np(joint: np.ndarray, marginal: np.ndarray) -> float:
    """`dv_bound_bits` for one estimator's float64 scores (the bootstrap's inner loop)."""
    top = marginal.max()
    return float((joint.mean() - (top + np.log(np.mean(np.exp(marginal - top))))) * LOG2E)


def nwj_bound_bits_np(joint: np.ndarray, marginal: np.ndarray) -> float:
    """`nwj_bound_bits` for one estimator's float64 scores."""
    top = marginal.max()
    log_mean = top + np.log(np.mean(np.exp(marginal - top)))
    return float((joint.mean() - np.exp(log_mean - 1.0)) * LOG2E)


def mean_np(terms: np.ndarray) -> float:
    """InfoNCE from per-row terms already in bits (their mean)."""
    return float(terms.mean())
