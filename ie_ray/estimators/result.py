"""The result of one mutual-information estimate.

A single float hides what went wrong with a neural MI estimate (a critic that memorised the training set, a
NaN, a bound that never converged), so every estimator returns this object instead: the value under the chosen
readout, the other readouts for comparison, a bootstrap interval, and the training curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ie_ray.estimators.diagnostics import Flag

Readout = Literal["heldout", "max", "gaussian", "smoothed"]


@dataclass(frozen=True)
class MIResult:
    """One MI estimate, in bits.

    `mi_bits` is the value under `readout`; the other readouts are kept because the paper's `max` readout is
    biased upward (it rewards memorisation) and only the held-out one is a fair lower bound: comparing them
    shows how much of a reported value is overfitting.

    `bootstrap` holds the replicates behind (`ci_low`, `ci_high`) so that downstream code can build intervals
    for *differences* of estimates (IE = MI_macro - mean MI_micro) by combining replicates, which a pair of
    intervals cannot do. When there is no held-out split (the paper's `max` readout with heldout_fraction=0)
    there is nothing to resample: the interval collapses to (value, value) and `bootstrap` is filled with the
    value, so downstream code runs unchanged but reports no uncertainty from this estimate. With a held-out
    split the interval always describes `heldout_bits`, whatever the readout: the max readout has no sampling
    distribution that resampling could recover. The closed-form Gaussian estimator (readout "gaussian") has no
    training: its `mi_bits` and train readouts are the train-split value, its interval (delete-d jackknife replicates,
    `gaussian.interval_replicates`) describes that value,
    and its `curve` is empty.

    The smoothed estimator (readout "smoothed", `smoothed.py`) has no training either: `tau` is its noise
    fraction, `half_sample_bits` the same estimate from a random half of the samples (the convergence check) and
    `mc_se_bits` its Monte Carlo standard error; these are NaN for the other estimators.

    `objective` names the bound (or "gaussian"). `bound_cap_bits` is the most the reported value can be for any
    critic and any data: log2 of the contrasted batch for InfoNCE, inf for the other bounds. An InfoNCE value
    near its cap says "at least this much", not "this much".

    `flag` is "ok", "nan" (not finite: drop it), "diverged" (the critic memorised or blew up: the value is not a
    valid estimate) or "not_converged" (the bound was still rising: an under-estimate); the rules are in
    `diagnostics.py`.
    """

    mi_bits: float
    readout: Readout
    heldout_bits: float
    max_train_bits: float
    last_train_bits: float
    ci_low: float
    ci_high: float
    bootstrap: np.ndarray = field(repr=False)
    curve: np.ndarray = field(repr=False)
    n_samples: int
    n_train: int
    n_heldout: int
    seed: int
    wall_s: float
    flag: Flag = "ok"
    objective: str = "dv"
    bound_cap_bits: float = math.inf
    tau: float = math.nan
    half_sample_bits: float = math.nan
    mc_se_bits: float = math.nan

    @property
    def ok(self) -> bool:
        """True when no diagnostic fired (see `diagnostics.py`); a `nan` result should be dropped, not averaged."""
        return self.flag == "ok"

    def to_row(self) -> dict[str, Any]:
        """Scalars only, for a tidy results table (arrays go to their own columns or files)."""
        return {
            "mi_bits": float(self.mi_bits),
            "readout": self.readout,
            "heldout_bits": float(self.heldout_bits),
            "max_train_bits": float(self.max_train_bits),
            "last_train_bits": float(self.last_train_bits),
            "ci_low": float(self.ci_low),
            "ci_high": float(self.ci_high),
            "n_samples": int(self.n_samples),
            "n_train": int(self.n_train),
            "n_heldout": int(self.n_heldout),
            "steps": int(self.curve.shape[0]),
            "seed": int(self.seed),
            "wall_s": float(self.wall_s),
            "flag": self.flag,
            "objective": self.objective,
            "bound_cap_bits": float(self.bound_cap_bits),
            "tau": float(self.tau),
            "half_sample_bits": float(self.half_sample_bits),
            "mc_se_bits": float(self.mc_se_bits),
        }
