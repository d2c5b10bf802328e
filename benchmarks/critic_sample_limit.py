"""How many pairs a critic read on held-out data needs at d = 768: the best critic one can learn, measured.

Why this exists: on the validation grid every neural estimator reads about 0 (or below) at d >= 256, even at
N = 20,000. Is that our training, or the data? This benchmark removes the training: on the grid's "gaussian"
family (d coordinate pairs sharing the MI), it fits the *correctly specified* critic, the log density ratio
of a Gaussian fitted by maximum likelihood to the training split,

    T(x, y) = log N([x; y]; S) - log N(x; Sxx) - log N(y; Syy),

which contains the true critic, and reads it as our estimators are read, by the Donsker-Varadhan bound, but
under the true distribution in closed form (E_p[T] - log E_q[e^T], Gaussian integrals of a quadratic): the
value an infinite held-out set would give, so no readout noise enters (a sampled held-out readout scatters
around it; at N = 200,000 and d = 64 one draw of 240k marginal pairs read 3.72 of 4 bits with the TRUE critic,
from the heavy upper tail of e^T). No critic trained on the same split can be expected to read more than this
family's best member, so where this reads far below the truth, no estimator of the "critic read on held-out
pairs" kind can be within 15% with that many pairs. Training pairs = 80% of N (the package's split).

Two readings per (d, N, MI):
- "ML plug-in": the fitted Gaussian's critic as is (needs more training rows than 2 d).
- "oracle shrink": the fitted cross-covariance scaled by the c in [0, 1] that maximises that value, chosen
  WITH the true distribution: an upper envelope of what any shrinkage rule could reach, not an estimator.
And the first-order prediction: in whitened coordinates the fitted cross-covariance is the truth W plus noise
of squared norm ~ d^2 / n_train; a critic scaled by c gains c S - c^2 (S + E) / 2 nats with S = ||W||_F^2
(~ 2 MI in nats for weak per-pair correlation) and E = d^2 / n_train, best at c = S / (S + E), where it reads
MI * S / (S + E). Reading 85% of the truth needs E <= 0.18 S, i.e. n_train >= d^2 / (0.18 S).

    PYTHONPATH=. python benchmarks/critic_sample_limit.py            # d 64 256 768, N 2k to 1M (minutes)
    PYTHONPATH=. python benchmarks/critic_sample_limit.py --quick    # seconds, writes nothing
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402

from ie_ray.estimators.benchmark import Task

RESULTS = Path(__file__).resolve().parent / "results" / "critic_sample_limit"
HELDOUT_FRACTION = 0.2  # the package default (MINEParams.heldout_fraction)
LN2 = math.log(2.0)
SHRINK_GRID = np.linspace(0.0, 1.0, 26)


def _whitener(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return v @ np.diag(w ** -0.5) @ v.T


def training_moments(task: Task, n_train: int, chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of [x; y] over n_train pairs of the task, accumulated in chunks (so N = 10^6 at
    d = 768 fits in memory); chunk k is the task's `sample(.., sample_seed=k)`, independent draws."""
    d2 = 2 * task.d
    total, outer, seen, k = np.zeros(d2), np.zeros((d2, d2)), 0, 0
    while seen < n_train:
        m = min(chunk, n_train - seen)
        x, y = task.sample(m, sample_seed=1000 + k)
        z = np.hstack([x, y]).astype(np.float64)
        total += z.sum(0)
        outer += z.T @ z
        seen, k = seen + m, k + 1
    mean = total / n_train
    return mean, outer / n_train - np.outer(mean, mean)


def canonical_fit(mean: np.ndarray, cov: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ML Gaussian fit in canonical form: the map P (2d x 2d, block-diagonal) taking centred [x; y] to
    canonical coordinates [a; b], and the sample canonical correlations s (the fitted critic is diagonal there)."""
    wx, wy = _whitener(cov[:d, :d]), _whitener(cov[d:, d:])
    u, s, vt = np.linalg.svd(wx @ cov[:d, d:] @ wy)
    p = np.zeros((2 * d, 2 * d))
    p[:d, :d], p[d:, d:] = wx @ u, wy @ vt.T
    return p, s


def critic_quadratic(s: np.ndarray) -> tuple[float, np.ndarray]:
    """The fitted critic as T(z) = const - z^T M z / 2 in canonical coordinates z = [a; b] (nats):
    const = -1/2 sum log(1 - s^2), M = [[D1, -D2], [-D2, D1]], D1 = s^2 / (1 - s^2), D2 = s / (1 - s^2)."""
    d = len(s)
    one_m = 1.0 - s**2
    m = np.zeros((2 * d, 2 * d))
    idx = np.arange(d)
    m[idx, idx] = m[idx + d, idx + d] = s**2 / one_m
    m[idx, idx + d] = m[idx + d, idx] = -s / one_m
    return float(-0.5 * np.log(one_m).sum()), m


def population_dv_bits(const: float, m: np.ndarray, mu: np.ndarray, cov_p: np.ndarray, cov_q: np.ndarray) -> float:
    """The DV value of the critic under the TRUE distribution, in closed form (no held-out sampling noise):
    E_p[T] - log E_q[e^T] with z ~ N(mu, cov_p) under the joint and N(mu, cov_q) under the product.
    E[exp(-z^T M z / 2)] = det(I + S M)^(-1/2) exp(-mu^T M (I + S M)^(-1) mu / 2) for z ~ N(mu, S)."""
    e_joint = const - 0.5 * (np.trace(m @ cov_p) + mu @ m @ mu)
    a = np.eye(len(mu)) + cov_q @ m
    sign, logdet = np.linalg.slogdet(a)
    if sign <= 0:
        return -math.inf  # E_q[e^T] diverges: the critic's exponential is not integrable
    log_partition = const - 0.5 * logdet - 0.5 * mu @ m @ np.linalg.solve(a, mu)
    return float((e_joint - log_partition) / LN2)


def readings(task: Task, n: int) -> dict:
    """ML plug-in and oracle-shrink readings (population DV) for one task at N = n, with the prediction."""
    t0 = time.perf_counter()
    d = task.d
    n_train = int(round(n * (1 - HELDOUT_FRACTION)))
    mean, cov = training_moments(task, n_train)
    rho = math.sqrt(1.0 - 2.0 ** (-2.0 * task.mi_bits / d))
    true_cov = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])  # the gaussian family
    by_c: dict[float, float] = {}
    if n_train > 2 * d:
        p, s = canonical_fit(mean, cov, d)
        mu = -p.T @ mean
        cov_p, cov_q = p.T @ true_cov @ p, p.T @ np.eye(2 * d) @ p
        for c in SHRINK_GRID:
            sc = c * s
            if np.all(sc < 1 - 1e-9):
                const, m = critic_quadratic(sc)
                by_c[float(c)] = population_dv_bits(const, m, mu, cov_p, cov_q)
    ml = by_c.get(1.0, math.nan)
    best_c = max(by_c, key=by_c.get) if by_c else math.nan
    rho2 = rho**2
    signal = d * rho2 / (1.0 - rho2)
    noise = d**2 / n_train
    return dict(
        d=d, n=n, n_train=n_train, true_mi_bits=task.mi_bits, ml_plugin_bits=ml,
        oracle_shrink_bits=by_c.get(best_c, math.nan), oracle_c=best_c,
        predicted_oracle_bits=task.mi_bits * signal / (signal + noise),
        n_train_for_85pct=math.ceil(d**2 / (0.18 * signal)), wall_s=time.perf_counter() - t0,
    )


def markdown(rows: list[dict], machine: dict, wall_s: float) -> str:
    lines = [
        "# The best critic one can learn, read on held-out pairs (gaussian family)",
        "",
        "Made by `benchmarks/critic_sample_limit.py` (its docstring has the construction). Bits; truth in the "
        "`MI` column. `ML plug-in` = the correctly specified Gaussian critic fitted by maximum likelihood on the "
        f"{1 - HELDOUT_FRACTION:.0%} training split (n/a when n_train <= 2 d: the fit is singular), its DV value "
        "under the true distribution (what an infinite held-out set would read); `oracle shrink` = the same with its cross-covariance scaled "
        "by the best c, chosen with the true distribution (an upper envelope, not an estimator); `predicted` = "
        "MI S/(S+E); `n_train for 85%` = training pairs the first-order law needs to read 85% of the truth.",
        "",
        machine_line(machine),
        f"- wall: {wall_s:.0f} s",
        "",
        "| d | N | MI | ML plug-in | oracle shrink (c) | predicted | n_train for 85% |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ml = "n/a" if math.isnan(r["ml_plugin_bits"]) else f"{r['ml_plugin_bits']:.2f}"
        lines.append(f"| {r['d']} | {r['n']:,} | {r['true_mi_bits']:g} | {ml} | {r['oracle_shrink_bits']:.2f} "
                     f"({r['oracle_c']:.2f}) | {r['predicted_oracle_bits']:.2f} | {r['n_train_for_85pct']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 256, 768])
    ap.add_argument("--samples", type=int, nargs="+", default=[2000, 20000, 200000, 1000000])
    ap.add_argument("--mi", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.dims, args.samples, args.mi = [16], [2000], [4.0]
    machine = machine_info(threads=0)
    t0 = time.perf_counter()
    rows = []
    for d in args.dims:
        for n in args.samples:
            for mi in args.mi:
                r = readings(Task("gaussian", d, mi, seed=1000 * d + int(10 * mi)), n)
                rows.append(r)
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
    md = markdown(rows, machine, time.perf_counter() - t0)
    if args.quick:
        print(md)
        return 0
    write_outputs(RESULTS, dict(machine=machine, rows=rows), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
