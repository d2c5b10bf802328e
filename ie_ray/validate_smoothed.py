"""Validation of the smoothed-MI estimator against the exact smoothed MI of known discrete laws.

Why these tasks: block states are deterministic functions of a discrete token prefix (PAPER.md section 6), so the
law a sweep meets is discrete. Here S is uniform over K atoms (standard normal in d dims), x = atom and
y = x + tanh(W x) with W ~ N(0, 1/d) (a residual map: injective in practice, so H(S) = log2 K is the tau -> 0
limit). The smoothed law of (X, Y) is then a K-component Gaussian mixture, and `smoothed_mi` on the K atoms
themselves, at the population scale, with many draws and no bootstrap, IS its I_sigma up to Monte Carlo error
(reported as `exact_se_bits`). The estimate is what a user gets: `smoothed_mi` on N draws of S, with the sample's
own per-dimension scale (and, for comparison, with the population scale).

What it answers, per (d, K) and tau: the plug-in's error against the exact value, whether the convergence flag
catches the cells where it is wrong, and whether the 1/N extrapolation 2 I(N) - I(N/2) (the "extrapolate"
correction) or the leave-one-out reading removes the error. Target: |error| <= max(TARGET_FRACTION * exact,
TARGET_FLOOR_BITS), or any flag other than "ok" (the user is told not to trust the number).

Outputs under the output directory: smoothed_validation.parquet / .csv (one row per (d, K, tau, repeat)),
smoothed_validation.png (error in target tolerances vs tau per K, one line per d), README.md (the target, the tables, what
met it, timing and the machine), and parts/ (one exact table and one estimate table per (d, K), so that a killed
run continues where it stopped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ie_ray import store
from ie_ray.estimators import smoothed as smoothed_module
from ie_ray.estimators.smoothed import DEFAULT_TAUS, Scale, SmoothedParams, SmoothedResult, smoothed_mi

#: An estimate meets the target when its error is within this fraction of the exact value ...
TARGET_FRACTION: float = 0.05
#: ... or within this many bits (tiny MI: 5% of 0.01 bit is below any Monte Carlo resolution) ... or is flagged.
TARGET_FLOOR_BITS: float = 0.05
#: Monte Carlo draws of the exact value (stratified over atoms; its standard error is reported per row).
EXACT_DRAWS: int = 8000
#: Independent samples of N per (d, K): the error of one sample mixes bias and sampling noise; three separate them.
REPEATS: int = 3
#: The grid of the committed run (results/validation/smoothed): dims d, supports K, N draws per estimate.
DEFAULT_DIMS: tuple[int, ...] = (16, 576, 2048, 4096)
DEFAULT_SUPPORTS: tuple[int, ...] = (25, 600, 5000, 20000)
DEFAULT_SAMPLES: int = 2000
DEFAULT_OUT: str = "results/validation/smoothed"
#: Rough relative cost of one (d, K) cell's exact value: two (draws x d) @ (d x K) products plus elementwise work
#: per tau worth ~COST_ELEMENTWISE_D dims (and of its estimates: d + COST_ELEMENTWISE_D). Only used to order
#: cells and to project a budget.
COST_ELEMENTWISE_D: int = 256


@dataclass(frozen=True)
class DiscreteResidualLaw:
    """S uniform over K standard-normal atoms in d dims, x = atom, y = x + tanh(W x), W ~ N(0, 1/d)."""

    d: int
    support: int
    seed: int = 0
    # derived from (d, support, seed) in __post_init__: not arguments, and no part of equality or repr
    x_atoms: np.ndarray = field(init=False, repr=False, compare=False)
    y_atoms: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.d < 1 or self.support < 4:
            raise ValueError(f"need d >= 1 and K >= 4 atoms, got d={self.d}, K={self.support}")
        rng = np.random.default_rng([self.seed, self.d, self.support])
        atoms = rng.standard_normal((self.support, self.d))
        w = rng.standard_normal((self.d, self.d)) / math.sqrt(self.d)
        # frozen dataclass: the arrays are derived data, set once here
        object.__setattr__(self, "x_atoms", atoms)
        object.__setattr__(self, "y_atoms", atoms + np.tanh(atoms @ w.T))

    @property
    def scale_x(self) -> Scale:
        """The population scale of x (atoms are equally likely, so their own mean and std)."""
        return Scale.of(self.x_atoms)

    @property
    def scale_y(self) -> Scale:
        return Scale.of(self.y_atoms)

    @property
    def entropy_bits(self) -> float:
        """H(S): the tau -> 0 limit of the exact smoothed MI (the map is injective)."""
        return math.log2(self.support)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n i.i.d. draws of S as paired states (x, y) and the atom index of each."""
        idx = np.random.default_rng(seed).integers(self.support, size=n)
        return self.x_atoms[idx], self.y_atoms[idx], idx

    def exact(self, taus: Sequence[float], n_draws: int = EXACT_DRAWS, seed: int = 0) -> SmoothedResult:
        """I_sigma of the law itself at every tau (up to Monte Carlo error): the mixture over the K atoms is the
        smoothed law, so the estimator run on the atoms, at the population scale, computes it."""
        # every draw: an exact value must not stop early at the adaptive tolerance (mc_tolerance_fraction=0)
        params = SmoothedParams(tau=float(taus[0]), taus=tuple(taus), n_draws=n_draws, n_bootstrap=0,
                                mc_tolerance_fraction=0.0)
        return smoothed_mi(self.x_atoms, self.y_atoms, params, seed=seed, scale_x=self.scale_x,
                           scale_y=self.scale_y)


def target_tolerance_bits(exact_bits: float | np.ndarray) -> float | np.ndarray:
    """Allowed |error|: TARGET_FRACTION of the exact value, at least TARGET_FLOOR_BITS."""
    return np.maximum(TARGET_FRACTION * np.abs(exact_bits), TARGET_FLOOR_BITS)


def run_smoothed_validation(
    out_dir: Path,
    dims: Sequence[int] = DEFAULT_DIMS,
    supports: Sequence[int] = DEFAULT_SUPPORTS,
    n_samples: int = DEFAULT_SAMPLES,
    taus: Sequence[float] = DEFAULT_TAUS,
    seed: int = 0,
    quick: bool = False,
    repeats: int = REPEATS,
    exact_draws: int = EXACT_DRAWS,
    budget_min: float | None = None,
    skip: Sequence[tuple[int, int]] = (),
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run (or resume) the grid, write every output, log a summary, return the table (one row per (d, K, tau,
    repeat)). `ie-ray validate --smoothed` calls this.

    `quick` shrinks everything to seconds (tests): d in (4, 8), K in (8, 100), N = 150, one repeat, few draws.
    Cells run cheapest first; with `budget_min`, a cell whose projected cost (from the cells computed so far)
    would end the run past the budget is dropped, and `skip` drops (d, K) cells by hand; the README lists both.
    """
    if quick:
        dims, supports, n_samples, repeats, exact_draws = (4, 8), (8, 100), 150, 1, 600
    taus = tuple(sorted({float(t) for t in taus}))
    estimate_params = SmoothedParams(tau=taus[0], taus=taus, n_bootstrap=20 if quick else 100)
    out_dir = Path(out_dir)
    parts = out_dir / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    source = estimator_source_digest()  # once: the code imported now is the code that runs
    key = dict(n=n_samples, taus=list(taus), seed=seed, repeats=repeats, exact_draws=exact_draws,
               estimate=estimate_params.key_dict(), estimator_source=source)
    cells = sorted(((d, k) for d in dims for k in supports), key=lambda c: (_cost(*c), c))
    start = time.perf_counter()
    frames, dropped = [], []
    exact_rate = estimate_rate = 0.0  # seconds per cost unit of the last computed cell: cells grow, so it is the best guess
    for d, k in cells:
        digest = hashlib.sha256(json.dumps(dict(key, d=d, k=k), sort_keys=True).encode()).hexdigest()[:10]
        exact_part = parts / f"exact_d{d}_K{k}_{digest}.parquet"
        part = parts / f"d{d}_K{k}_{digest}.parquet"
        if part.exists():
            log(f"[smoothed-validate] d={d} K={k}: reusing {part.name}")
            frames.append(pd.read_parquet(part))
            continue
        if (d, k) in set(map(tuple, skip)):
            dropped.append(f"d={d} K={k} (skipped by request)")
            continue
        projected = exact_rate * _cost(d, k) + estimate_rate * (d + COST_ELEMENTWISE_D)
        if budget_min is not None and projected and time.perf_counter() - start + projected > 60 * budget_min:
            dropped.append(f"d={d} K={k} (projected {projected / 60:.0f} min would pass the {budget_min:g} min budget)")
            log(f"[smoothed-validate] dropped {dropped[-1]}")
            continue
        t0 = time.perf_counter()
        law = DiscreteResidualLaw(d, k, seed)
        if exact_part.exists():
            exact = pd.read_parquet(exact_part)
        else:
            exact = _exact_table(law, taus, exact_draws, seed)
            store.write_table(exact_part, exact)
            exact_rate = (time.perf_counter() - t0) / _cost(d, k)
            log(f"[smoothed-validate] d={d} K={k}: exact in {time.perf_counter() - t0:.0f} s")
        t1 = time.perf_counter()
        frame = _estimate_rows(law, exact, estimate_params, n_samples, repeats, seed)
        store.write_table(part, frame)
        frames.append(frame)
        estimate_rate = (time.perf_counter() - t1) / (d + COST_ELEMENTWISE_D)
        log(f"[smoothed-validate] d={d} K={k}: {repeats} x 2 estimates in {time.perf_counter() - t1:.0f} s")
    if not frames:
        raise RuntimeError(f"no (d, K) cell was computed or found under {parts}; dropped: {dropped}")
    table = pd.concat(frames, ignore_index=True).sort_values(["d", "support", "tau", "repeat"], ignore_index=True)
    store.write_table(out_dir / "smoothed_validation.parquet", table, csv=True)
    plot_smoothed_validation(table, out_dir / "smoothed_validation.png")
    store.write_text(out_dir / "README.md",
                     summary_markdown(table, dropped, time.perf_counter() - start, estimate_params, source))
    log(table.groupby("tau")[["abs_error_bits", "meets_target"]].mean().to_string())
    log(f"\n[smoothed-validate] written to {out_dir} (README.md, smoothed_validation.csv/.parquet/.png)")
    return table


def estimator_source_digest() -> str:
    """Hash of smoothed.py: a part is reused only for the estimator code that made it (the numbers depend on it)."""
    return hashlib.sha256(Path(smoothed_module.__file__).read_bytes()).hexdigest()[:10]


def _cost(d: int, k: int) -> float:
    return k * (d + COST_ELEMENTWISE_D)


def _exact_table(law: DiscreteResidualLaw, taus: tuple[float, ...], n_draws: int, seed: int) -> pd.DataFrame:
    result = law.exact(taus, n_draws=n_draws, seed=seed)
    return pd.DataFrame([dict(tau=r.tau, sigma=r.sigma, exact_bits=r.mi_bits, exact_se_bits=r.mc_se_bits,
                              exact_draws=n_draws, exact_seconds=result.wall_s) for r in result.readings])


def _estimate_rows(law: DiscreteResidualLaw, exact: pd.DataFrame, params: SmoothedParams, n: int, repeats: int,
                   seed: int) -> pd.DataFrame:
    """Every repeat: the estimate with the sample's own scale (what users get, with its interval and flag) and
    the value with the population scale (same draws: only the scale differs)."""
    population = replace(params, n_bootstrap=0)
    rows = []
    for rep in range(repeats):
        x, y, idx = law.sample(n, seed=1000 * seed + 17 + rep)
        own = smoothed_mi(x, y, params, seed=rep)
        pop = smoothed_mi(x, y, population, seed=rep, scale_x=law.scale_x, scale_y=law.scale_y)
        distinct = len(np.unique(idx))
        for ex, r, p in zip(exact.itertuples(), own.readings, pop.readings):
            extrapolated = 2.0 * r.plugin_bits - r.half_bits
            loo = float(getattr(r, "loo_bits", math.nan))  # leave-one-out reading, where the estimator has one
            tol = float(target_tolerance_bits(ex.exact_bits))
            err, ext_err = r.mi_bits - ex.exact_bits, extrapolated - ex.exact_bits
            rows.append(dict(
                d=law.d, support=law.support, n_samples=n, tau=r.tau, sigma=r.sigma, repeat=rep,
                distinct_atoms=distinct, entropy_bits=law.entropy_bits, cap_bits=math.log2(n),
                exact_bits=ex.exact_bits, exact_se_bits=ex.exact_se_bits, exact_draws=ex.exact_draws,
                mi_bits=r.mi_bits, mc_se_bits=r.mc_se_bits, ci_low=r.ci_low, ci_high=r.ci_high,
                half_bits=r.half_bits, flag=r.flag,
                error_bits=err, abs_error_bits=abs(err), rel_error=err / max(abs(ex.exact_bits), 1e-12),
                population_scale_bits=p.mi_bits, population_scale_error_bits=p.mi_bits - ex.exact_bits,
                extrapolated_bits=extrapolated, extrapolated_error_bits=ext_err,
                extrapolated_rel_error=ext_err / max(abs(ex.exact_bits), 1e-12),
                loo_bits=loo, loo_error_bits=loo - ex.exact_bits,
                midpoint_error_bits=(r.plugin_bits + loo) / 2 - ex.exact_bits,
                tolerance_bits=tol, accurate=bool(abs(err) <= tol), flagged=r.flag != "ok",
                meets_target=bool(abs(err) <= tol or r.flag != "ok"),
                extrapolated_accurate=bool(abs(ext_err) <= tol),
                covered=bool(r.ci_low <= ex.exact_bits <= r.ci_high),
                seconds_per_estimate=own.wall_s, exact_seconds=ex.exact_seconds,
            ))
    return pd.DataFrame(rows)


def plot_smoothed_validation(table: pd.DataFrame, path: Path) -> None:
    """Error in units of the target tolerance vs tau (|y| <= 1 meets it), one panel per K, one colour per d:
    plug-in (solid, mean over repeats; red x where a repeat was flagged) and the 1/N extrapolation (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    supports, dims = sorted(table.support.unique()), sorted(table.d.unique())
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(supports), figsize=(3.2 * len(supports) + 0.6, 3.4), squeeze=False, sharey=True)
    scaled = table.assign(plugin=table.error_bits / table.tolerance_bits,
                          extrapolated=table.extrapolated_error_bits / table.tolerance_bits)
    for ax, k in zip(axes[0], supports):
        ax.axhspan(-1.0, 1.0, color="0.9")
        ax.axhline(0.0, color="grey", lw=0.8)
        for i, d in enumerate(dims):
            part = scaled[(scaled.support == k) & (scaled.d == d)]
            if part.empty:
                continue
            g = part.groupby("tau").agg(plugin=("plugin", "mean"), extrapolated=("extrapolated", "mean"),
                                        flagged=("flagged", "any"))
            color = cmap(i / max(1, len(dims) - 1))
            ax.plot(g.index, g.plugin, "-o", ms=3, color=color, label=f"d={d}")
            ax.plot(g.index, g.extrapolated, "--", color=color, lw=0.9)
            ax.plot(g.index[g.flagged], g.plugin[g.flagged], "x", color="red", ms=7)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(f"K = {k} atoms, N = {int(table.n_samples.iloc[0])}", fontsize=9)
        ax.set_xlabel("tau", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(f"error / max({TARGET_FRACTION:.0%} exact, {TARGET_FLOOR_BITS} bit)\n"
                          "solid plug-in, dashed 2I(N)-I(N/2)", fontsize=7)
    axes[0][0].legend(fontsize=7, title="red x: flagged", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell_text(part: pd.DataFrame) -> str:
    """'+0.35 (+7.7%) F1/3 MISS': mean signed error over repeats in bits, relative when the exact value is >= 1 bit
    (where the 5% part of the tolerance is the larger), flagged repeats, MISS if a repeat missed the target."""
    exact = float(part.exact_bits.iloc[0])
    err = float(part.error_bits.mean())
    text = f"{err:+.2f} ({100 * err / exact:+.1f}%)" if exact * TARGET_FRACTION >= TARGET_FLOOR_BITS else f"{err:+.3f}"
    flagged = int(part.flagged.sum())
    return text + (f" F{flagged}/{len(part)}" if flagged else "") + ("" if part.meets_target.all() else " MISS")


def _defaults_but_taus(params: SmoothedParams) -> bool:
    default = SmoothedParams()
    return replace(params, tau=default.tau, taus=default.taus) == default


def summary_markdown(table: pd.DataFrame, dropped: Sequence[str], wall_s: float, params: SmoothedParams,
                     source: str) -> str:
    """README of the output directory: the target, error per (d, K, tau), what met it, extrapolation, timing."""
    import torch

    n = int(table.n_samples.iloc[0])
    repeats = int(table.repeat.max()) + 1
    met = table.groupby("tau").meets_target.all()
    accurate = table.groupby("tau").accurate.all()
    lines = [
        "# Smoothed MI: estimate vs exact on discrete laws",
        "",
        "Made by `ie-ray validate --smoothed` (ie_ray/validate_smoothed.py); the task, the exact value and "
        "the columns are described in that module's docstring.",
        "",
        f"- Law: S uniform over K standard-normal atoms in d dims, x = atom, y = x + tanh(W x), W ~ N(0, 1/d). "
        f"Exact I_sigma: the estimator on the K atoms at the population scale, {int(table.exact_draws.iloc[0])} "
        "stratified Monte Carlo draws, no bootstrap (its standard error is `exact_se_bits`).",
        f"- Estimate: `smoothed_mi` with n_draws={params.n_draws}, n_bootstrap={params.n_bootstrap}, correction="
        f"{params.correction!r} ({'the' if _defaults_but_taus(params) else 'NOT the'} package defaults apart "
        f"from the tau grid) on N = {n} draws of S, the sample's own per-dimension scale; {repeats} "
        f"independent samples per cell. Estimator source: smoothed.py sha256 {source}.",
        f"- Target: |estimate - exact| <= max({TARGET_FRACTION:.0%} of exact, {TARGET_FLOOR_BITS} bit), or the "
        "estimate carries a flag (any flag but `ok`). `accurate` ignores the flag; `F a/b` = a of b repeats flagged; "
        "MISS = some repeat neither accurate nor flagged.",
        "",
    ]
    if dropped:
        lines += [f"- NOT RUN: {'; '.join(dropped)}.", ""]
    lines += ["## Error of the plug-in in bits (mean over repeats; relative where the exact value is >= 1 bit)", ""]
    pivot = table.groupby(["d", "support", "tau"]).apply(_cell_text, include_groups=False).unstack("tau")
    pivot.columns = [f"tau={c:g}" for c in pivot.columns]
    exact = table.groupby(["d", "support", "tau"]).exact_bits.first().unstack("tau")
    exact.columns = [f"tau={c:g}" for c in exact.columns]
    lines += [pivot.reset_index().to_markdown(index=False), "",
              "Exact I_sigma (bits; log2 K at tau -> 0):", "",
              exact.reset_index().to_markdown(index=False, floatfmt=("g", "g") + (".3f",) * exact.shape[1]), "",
              "## What met the target", "",
              "| tau | every row met the target (accurate or flagged) | every row accurate | rows missed | "
              "flagged but accurate |", "|---|---|---|---|---|"]
    for tau, part in table.groupby("tau"):
        miss = part[~part.meets_target]
        lines.append(f"| {tau:g} | {'yes' if met[tau] else 'no'} | {'yes' if accurate[tau] else 'no'} | "
                     f"{', '.join(sorted({f'd={r.d} K={r.support}' for r in miss.itertuples()})) or '-'} | "
                     f"{int((part.flagged & part.accurate).sum())} of {int(part.flagged.sum())} flagged |")
    good = [f"{t:g}" for t in met.index if met[t]]
    regime = table.assign(regime=np.where(table.support < n, "K < N", "K > N")).groupby(["regime", "tau"])
    share = regime.agg(accurate=("accurate", "mean"), met=("meets_target", "mean"),
                       covered=("covered", "mean")).unstack("regime")
    share.columns = [f"{what} ({reg})" for what, reg in share.columns]
    lines += ["", f"Tau values that met the target in every cell: {', '.join(good) or 'none'}.", "",
              "Share of rows accurate / meeting the target / with the 95% interval covering the exact value, by "
              "regime:", "", share.reset_index().to_markdown(index=False, floatfmt=".2f"), "",
              "## Flags by tau", "", table.groupby(["tau", "flag"]).size().unstack("flag", fill_value=0)
              .reset_index().to_markdown(index=False), "",
              "## Candidate bias corrections", "",
              "Mean |error| in bits over all cells and repeats of: the plug-in; the 1/N extrapolation "
              "2 I(N) - I(N/2); the leave-one-out reading (`loo`, where the estimator reports one) and the midpoint "
              "of plug-in and leave-one-out; the share of rows within the target tolerance (plug-in, "
              "extrapolated); the estimate with the law's scale instead of the sample's own; interval coverage:",
              ""]
    agg = table.groupby("tau").agg(
        plugin_mae_bits=("abs_error_bits", "mean"),
        extrapolated_mae_bits=("extrapolated_error_bits", lambda e: float(np.abs(e).mean())),
        loo_mae_bits=("loo_error_bits", lambda e: float(np.abs(e).mean())),
        midpoint_mae_bits=("midpoint_error_bits", lambda e: float(np.abs(e).mean())),
        plugin_accurate=("accurate", "mean"), extrapolated_accurate=("extrapolated_accurate", "mean"),
        population_scale_mae_bits=("population_scale_error_bits", lambda e: float(np.abs(e).mean())),
        interval_covers_exact=("covered", "mean"))
    lines += [agg.reset_index().to_markdown(index=False, floatfmt=".3f"), "",
              "## Timing", "",
              "Seconds per estimate (N pairs, every tau in one pass, with bootstrap) and per exact value:", ""]
    timing = table.groupby(["d", "support"]).agg(seconds_per_estimate=("seconds_per_estimate", "mean"),
                                                 exact_seconds=("exact_seconds", "first"))
    lines += [timing.reset_index().to_markdown(index=False, floatfmt=("g", "g", ".1f", ".1f")), "",
              f"Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, torch "
              f"{torch.__version__} with {torch.get_num_threads()} threads, shared with other jobs (load average "
              f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} at the end). This run: {wall_s / 60:.1f} min "
              "(cells reused from parts/ cost nothing).", ""]
    return "\n".join(lines)


def _cell(value: str) -> tuple[int, int]:
    d, found, k = value.partition(":")
    if not (found and d.isdigit() and k.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a cell D:K such as 4096:20000")
    return int(d), int(k)


def add_arguments(parser) -> None:
    """The options only the smoothed validation has. `ie-ray validate --smoothed` shares --out, --dims, --samples,
    --seed and --quick with the estimator validation, whose parser defines them."""
    parser.add_argument("--supports", type=int, nargs="+", default=list(DEFAULT_SUPPORTS),
                        help=f"support sizes K (default: {' '.join(map(str, DEFAULT_SUPPORTS))})")
    parser.add_argument("--taus", type=float, nargs="+", default=list(DEFAULT_TAUS),
                        help=f"noise fractions (default: {' '.join(map(str, DEFAULT_TAUS))})")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"samples per cell (default {REPEATS})")
    parser.add_argument("--exact-draws", type=int, default=EXACT_DRAWS,
                        help=f"Monte Carlo draws of each exact value (default {EXACT_DRAWS})")
    parser.add_argument("--budget-min", type=float, help="drop cells whose projected cost passes this budget")
    parser.add_argument("--skip", nargs="+", type=_cell, default=[], metavar="D:K",
                        help="cells to drop, e.g. 4096:20000")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ie_ray.validate_smoothed`, the older spelling of `ie-ray validate --smoothed`."""
    parser = argparse.ArgumentParser(prog="python -m ie_ray.validate_smoothed", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DEFAULT_DIMS))
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"N draws of S per estimate (default {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny grid (seconds; for tests)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_smoothed_validation(Path(args.out), args.dims, args.supports, args.samples, args.taus, args.seed, args.quick,
                            repeats=args.repeats, exact_draws=args.exact_draws, budget_min=args.budget_min,
                            skip=args.skip)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
