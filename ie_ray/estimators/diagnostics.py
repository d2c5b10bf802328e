"""Diagnostic flag of one MI estimate: "ok", "nan", "diverged" or "not_converged", by documented rules.

A neural MI estimate can fail quietly: the critic memorises the training pairs (its held-out bound goes
negative), training blows up and collapses, or the run stops while the bound is still climbing. A flag makes
that visible in the results table instead of leaving it to whoever reads the training curves. The rules look
only at what every MIResult carries (training curve, held-out value and interval, bound cap), so they apply to
all objectives, and they are pure functions of those numbers so that each rule can be tested on constructed
inputs. In order of precedence:

1. "nan": the estimate, or training, is not finite (the estimator froze; drop it, do not average it).
2. "diverged", any of:
   a. the reported value exceeds the bound's cap (`bound_cap_bits`, log2 B for InfoNCE) by more than
      CAP_TOLERANCE_BITS: no critic can do that, so the arithmetic went wrong;
   b. the held-out bound is significantly negative: the whole 95% bootstrap interval lies below
      -NEGATIVE_MARGIN_BITS. A constant critic scores exactly 0 on every bound, so a trained critic far below
      0 on unseen pairs has memorised the training pairs or been thrown off by its own steps: its value says
      nothing about the MI (it is a failed lower bound, not a small MI);
   c. the training curve collapsed: the smoothed curve ends more than max(COLLAPSE_MIN_BITS,
      COLLAPSE_FRACTION x peak) below its smoothed peak. The bounds are maximised, so with a decaying learning
      rate a healthy curve ends near its best; a large late drop is DV's known instability (exploding
      e^T terms), not noise.
3. "not_converged": the smoothed training curve is still rising over the last TAIL_FRACTION of the steps: a
   least-squares line through that tail rises by more than max(RISE_MIN_BITS, RISE_FRACTION x |final value|)
   over the window and by more than RISE_SIGMAS standard errors (minibatch noise alone does not trip it).
   More steps (or a higher learning rate) would have given a larger value, so the estimate is an
   under-estimate of what the estimator can reach.

Curves shorter than MIN_CURVE_STEPS are too short to judge (rules 2c and 3 are skipped); so are results without
a curve (the closed-form Gaussian estimator).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np

Flag = Literal["ok", "nan", "diverged", "not_converged"]
FLAGS: tuple[str, ...] = get_args(Flag)

#: Slack (bits) above the bound's cap before a value counts as impossible (float32 rounding of log2 B).
CAP_TOLERANCE_BITS: float = 1e-3
#: The 95% interval of the held-out bound must lie entirely below -this (bits) to count as collapsed. 0.05 bit
#: keeps an honest estimate of an MI of ~0 (whose interval straddles 0) from tripping it.
NEGATIVE_MARGIN_BITS: float = 0.05
#: Moving-average window (steps, as a fraction of the curve) used to smooth the minibatch bound.
SMOOTH_FRACTION: float = 0.05
#: A collapse is an end-of-training drop below the smoothed peak of at least this many bits...
COLLAPSE_MIN_BITS: float = 1.0
#: ...and at least this fraction of the peak.
COLLAPSE_FRACTION: float = 0.5
#: The tail of the curve examined for a still-rising bound.
TAIL_FRACTION: float = 0.25
#: Rise over the tail (bits) below which a curve counts as flat whatever its slope's significance...
RISE_MIN_BITS: float = 0.1
#: ...and, relative to the final value, below which it counts as flat.
RISE_FRACTION: float = 0.05
#: The rise must also exceed this many standard errors of the fitted line's rise.
RISE_SIGMAS: float = 3.0
#: Shorter curves are not judged for collapse or convergence.
MIN_CURVE_STEPS: int = 20


def diagnose(
    value: float,
    curve: np.ndarray,
    *,
    heldout_ci_high: float = math.nan,
    bound_cap_bits: float = math.inf,
    finite_training: bool = True,
) -> Flag:
    """The flag of one estimate (see the module docstring for the rules and their reasons).

    `value` is the reported estimate, `curve` the training-batch bound per step (NaN after a freeze),
    `heldout_ci_high` the upper end of the held-out bound's 95% interval (NaN when there is no held-out split).
    """
    curve = np.asarray(curve, dtype=np.float64)
    if not finite_training or not math.isfinite(value) or (curve.size and not np.isfinite(curve).all()):
        return "nan"
    if value > bound_cap_bits + CAP_TOLERANCE_BITS:
        return "diverged"
    if math.isfinite(heldout_ci_high) and heldout_ci_high < -NEGATIVE_MARGIN_BITS:
        return "diverged"
    if curve.size < MIN_CURVE_STEPS:
        return "ok"
    if collapsed(curve):
        return "diverged"
    if still_rising(curve):
        return "not_converged"
    return "ok"


def smooth(curve: np.ndarray) -> np.ndarray:
    """Trailing moving average over SMOOTH_FRACTION of the steps (at least 1): the minibatch bound is noisy."""
    w = max(1, round(SMOOTH_FRACTION * curve.size))
    c = np.cumsum(np.concatenate([[0.0], curve]))
    return (c[w:] - c[:-w]) / w


def collapsed(curve: np.ndarray) -> bool:
    """Rule 2c: the smoothed curve ends far below its smoothed peak."""
    s = smooth(np.asarray(curve, dtype=np.float64))
    peak, end = float(s.max()), float(s[-1])
    return peak - end > max(COLLAPSE_MIN_BITS, COLLAPSE_FRACTION * abs(peak))


def tail_rise(curve: np.ndarray) -> tuple[float, float]:
    """(rise, standard error of the rise) of a least-squares line through the last TAIL_FRACTION of the curve,
    rise = slope x window length, in bits."""
    curve = np.asarray(curve, dtype=np.float64)
    m = max(3, round(TAIL_FRACTION * curve.size))
    tail = curve[-m:]
    t = np.arange(m, dtype=np.float64)
    t -= t.mean()
    sxx = float((t**2).sum())
    slope = float((t * (tail - tail.mean())).sum()) / sxx
    resid = tail - tail.mean() - slope * t
    se_slope = math.sqrt(float((resid**2).sum()) / (m - 2) / sxx)
    return slope * (m - 1), se_slope * (m - 1)


def still_rising(curve: np.ndarray) -> bool:
    """Rule 3: the tail of the curve rises by a material amount, well beyond its noise."""
    rise, se = tail_rise(curve)
    final = float(smooth(np.asarray(curve, dtype=np.float64))[-1])
    return rise > max(RISE_MIN_BITS, RISE_FRACTION * abs(final)) and rise > RISE_SIGMAS * se
