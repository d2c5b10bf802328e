"""`ie-ray validate`: every estimator against synthetic tasks whose MI is known in closed form.

What it answers: how far from the truth each estimator lands, at the dims of LM hidden states and at the sample
sizes a sweep can afford, and so which estimator a sweep should use. The tasks (ie_ray.estimators.benchmark) are
correlated Gaussians, the same under invertible non-linear maps (MI unchanged), and a residual-block-like map
y = z + g(z) of a noisy linear image z of x (MI exact through the Gaussian channel formula). For each (d, N) all
tasks are stacked and every neural objective fits them in ONE `fit_mine_ensemble` call, which is what makes the
grid affordable on a 2-core CPU.

Outputs under the output directory: validation.parquet / .csv (one row per task x estimator: true vs estimated,
interval, flag, errors), recommendations.csv (per (d, N) regime: the estimator with the lowest mean absolute
error, overall and among the neural ones), validation.png (estimated vs true per family and d), README.md (the
summary, with the config and the command), and parts/ (one table per (d, N) so that an interrupted run resumes
where it stopped).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from ie_ray import store
from ie_ray import validate_smoothed as smoothed_validation
from ie_ray import validate_smoothed_real as real_calibration
from ie_ray.errors import ConfigError
from ie_ray.estimators import ESTIMATORS, GaussianParams, MINEParams, MIResult, estimate_gaussian, fit_mine_ensemble
from ie_ray.estimators.benchmark import ALL_FAMILIES, FAMILIES, Task, make_tasks
from ie_ray.estimators.mine import Objective
from ie_ray.estimators.presets import VARIANTS

#: Estimator names of peer toolkits' rows (benchmarks/peers.py) in the validation table.
PEER_PREFIX: str = "peer:"
#: InfoNCE scores all B^2 pairs of a batch (~B/2 times a DV step); at the default B = 256 one estimate at
#: d = 768 costs minutes on a CPU, so validation runs it with this batch (cap log2 64 = 6 bits) unless told.
DEFAULT_INFONCE_BATCH: int = 64
#: Bootstrap replicates of the Gaussian closed form here (the package default is 200). They cost nothing in its
#: unshrunk form (normal draws around a standard error); in the shrunk form (fewer train rows than 2 (dx + dy),
#: e.g. d = 768 at N = 2000) each is a (2d x 2d) covariance, Ledoit-Wolf and two Cholesky factorisations,
#: ~0.2 s at d = 768 on one core, and the replicates only set the interval, never the estimate.
GAUSSIAN_BOOTSTRAP: int = 50


@dataclass(frozen=True)
class ValidationConfig:
    """The grid: task families x dims x MI values x sample sizes, and the estimators to run on each task.

    `params` are the MINE settings every neural objective shares (the package defaults unless changed), so the
    objectives compete on equal terms; only InfoNCE's batch differs (`infonce_batch_size`, see its default).
    """

    dims: tuple[int, ...] = (1, 16, 64, 256, 768)
    mi_bits: tuple[float, ...] = (0.1, 1.0, 2.0, 4.0, 8.0)
    families: tuple[str, ...] = FAMILIES
    samples: tuple[int, ...] = (2000,)
    estimators: tuple[str, ...] = ("gaussian", "dv", "nwj", "infonce", "smile", "mine_ema")
    params: MINEParams = field(default_factory=MINEParams)
    infonce_batch_size: int | None = DEFAULT_INFONCE_BATCH
    gaussian: GaussianParams = field(default_factory=lambda: GaussianParams(n_bootstrap=GAUSSIAN_BOOTSTRAP))
    seed: int = 0

    @classmethod
    def quick(cls) -> ValidationConfig:
        """Seconds, for tests and a first look: two small dims, two MI values, short training."""
        return cls(
            dims=(1, 8),
            mi_bits=(0.5, 2.0),
            samples=(600,),
            estimators=("dv", "nwj", "gaussian"),
            params=MINEParams(steps=60, batch_size=128, n_bootstrap=20, marginal_shifts=64),
            gaussian=GaussianParams(n_bootstrap=20),
        )

    @classmethod
    def full(cls) -> ValidationConfig:
        """The grid with a second, larger sample regime and InfoNCE at its package-default batch (hours on a
        2-core CPU; minutes on a GPU box)."""
        return cls(samples=(2000, 8000), infonce_batch_size=None)

    def validate(self) -> None:
        """Raise ConfigError naming the bad value and the fix."""
        unknown = sorted(set(self.estimators) - set(ESTIMATORS) - set(VARIANTS))
        if unknown:
            raise ConfigError(f"unknown estimator(s) {unknown}; choose from {[*ESTIMATORS, *VARIANTS]}")
        bad_families = sorted(set(self.families) - set(ALL_FAMILIES))
        if bad_families:
            raise ConfigError(f"unknown task family(ies) {bad_families}; choose from {list(ALL_FAMILIES)}")
        if not self.dims or min(self.dims) < 1:
            raise ConfigError(f"dims must be >= 1, got {list(self.dims)}")
        if not self.mi_bits or min(self.mi_bits) <= 0:
            raise ConfigError(f"MI values must be > 0 bits, got {list(self.mi_bits)}")
        for n in self.samples:
            try:
                for objective in self.neural:
                    self.params_for(objective).validate(n_samples=n)
            except ValueError as exc:
                raise ConfigError(f"{n} samples do not fit the MINE settings: {exc}") from exc

    @property
    def neural(self) -> list[str]:
        return [e for e in self.estimators if e != "gaussian"]

    def params_for(self, estimator: str) -> MINEParams:
        """The shared MINE settings with this objective, or with a critic variant's overrides on top
        (`ie_ray.estimators.presets.VARIANTS`, e.g. "dv-sep"), and InfoNCE's batch."""
        if estimator in VARIANTS:
            p = replace(self.params, **VARIANTS[estimator])
        else:
            p = replace(self.params, objective=cast(Objective, estimator))  # MINEParams checks it
        if p.objective == "infonce" and self.infonce_batch_size is not None:
            p = replace(p, batch_size=self.infonce_batch_size)
        return p

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Content hash of the grid and settings: parts from another config are never reused."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ValidationResult:
    table: pd.DataFrame
    recommendations: pd.DataFrame
    out_dir: Path
    wall_s: float


def run_validation(
    config: ValidationConfig,
    out_dir: Path,
    log: Callable[[str], None] = print,
    command: str = "",
    reuse_only: bool = False,
    run_dims: tuple[int, ...] | None = None,
) -> ValidationResult:
    """Run (or resume) the grid and write every output; returns the tables.

    Each (N, d, estimator) is one part, stored under out_dir/parts/ and named by a hash of what determines it
    (tasks, N, the estimator's settings), so a rerun, or another process running other dims into the same
    directory, never redoes a finished part. `reuse_only` assembles the finished parts and skips the rest
    (the README lists what is missing). `run_dims` limits which dims this call fits (the others are reused or
    listed as missing): the grid, and so every task's seed, stays the config's.
    """
    config.validate()
    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    tasks = make_tasks(list(config.dims), list(config.mi_bits), list(config.families), config.seed)
    start = time.perf_counter()
    frames, missing = [], []
    for n in config.samples:
        # Widest first: the costly, most informative regimes finish before a time limit stops a run. (The
        # order of config.dims itself stays as given: make_tasks derives each task's seed from it.)
        for d in sorted(config.dims, reverse=True):
            group = [t for t in tasks if t.d == d]
            data = None
            for estimator in config.estimators:
                part = parts_dir / f"d{d}_n{n}_{estimator}_{_part_digest(config, group, n, estimator)}.parquet"
                if part.exists():
                    log(f"[validate] d={d} N={n} {estimator}: reusing {part.name}")
                    frames.append(pd.read_parquet(part))
                    continue
                if reuse_only or (run_dims is not None and d not in run_dims):
                    missing.append(f"d={d} N={n} {estimator}")
                    continue
                data = data or [t.sample(n) for t in group]
                t0 = time.perf_counter()
                frame = _run_part(config, group, data, n, estimator)
                store.write_table(part, frame)
                frames.append(frame)
                log(f"[validate] d={d} N={n} {estimator}: {len(group)} estimates in {time.perf_counter() - t0:.0f} s")
    if not frames:
        raise ConfigError(f"no finished parts under {parts_dir} for this grid; run without --reuse-only first")
    table = pd.concat(frames + _peer_frames(out_dir / "peers", config), ignore_index=True)
    recs = recommend(table)
    wall = float(table.wall_s.sum())  # estimator time of every part, whichever run made it
    log(f"[validate] this run: {time.perf_counter() - start:.0f} s wall")
    store.write_table(out_dir / "validation.parquet", table, csv=True)
    store.write_table(out_dir / "recommendations.parquet", recs, csv=True)
    store.write_table(out_dir / "median_errors.parquet", median_errors(table), csv=True)
    plot_validation(table, out_dir / "validation.png")
    store.write_text(out_dir / "README.md", summary_markdown(table, recs, config, wall, command, missing))
    store.write_json(out_dir / "config.json", dict(config=config.to_dict(), digest=config.digest(),
                                                  command=command, wall_s=wall, missing_parts=missing))
    return ValidationResult(table, recs, out_dir, wall)


def _peer_frames(peers_dir: Path, config: ValidationConfig) -> list[pd.DataFrame]:
    """Rows of the peer toolkits (benchmarks/peers.py, run in their own venvs on this grid's tasks) for the
    (d, N) regimes of this grid, so the tables show them next to ours; estimator names start with "peer:"."""
    frames = []
    for path in sorted(peers_dir.glob("*.parquet")) if peers_dir.is_dir() else []:
        frame = pd.read_parquet(path)
        frame = frame[frame.d.isin(config.dims) & frame.n_samples.isin(config.samples)
                      & frame.family.isin(config.families) & frame.true_mi_bits.isin(config.mi_bits)]
        if len(frame):
            frames.append(frame)
    return frames


def _part_digest(config: ValidationConfig, tasks: list[Task], n: int, estimator: str) -> str:
    """Hash of what one part's numbers depend on (threads excluded: they never change an estimate)."""
    settings = (asdict(config.gaussian) if estimator == "gaussian"
                else replace(config.params_for(estimator), threads=None).key_dict())
    key = dict(tasks=[asdict(t) for t in tasks], n=n, estimator=estimator, settings=settings)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _run_part(config: ValidationConfig, tasks: list[Task], data: list, n: int, estimator: str) -> pd.DataFrame:
    """One estimator on all tasks of one d at one N; a neural one fits them all in one ensemble call."""
    seeds = [t.seed % (2**31) for t in tasks]
    rows = []
    if estimator == "gaussian":
        g = config.gaussian
        for task, (x, y), seed in zip(tasks, data, seeds):
            r: MIResult = estimate_gaussian(x, y, **asdict(g), seed=seed)
            rows.append(_row(task, n, "gaussian", r, 0, None, False))
        return pd.DataFrame(rows)
    params = config.params_for(estimator)
    xs = np.stack([s[0] for s in data])
    ys = np.stack([s[1] for s in data])
    results = fit_mine_ensemble(xs, ys, params, seeds)
    default = replace(params, threads=None) == MINEParams()  # threads never change the estimate
    for task, r in zip(tasks, results):
        rows.append(_row(task, n, estimator, r, params.steps, params.batch_size, default))
    return pd.DataFrame(rows)


def _row(task: Task, n: int, estimator: str, r, steps: int, batch: int | None, default: bool) -> dict:
    err = r.mi_bits - task.mi_bits
    return dict(
        family=task.family,
        d=task.d,
        n_samples=n,
        true_mi_bits=task.mi_bits,
        task=task.name,
        estimator=estimator,
        package_default=default,
        mi_bits=r.mi_bits,
        ci_low=r.ci_low,
        ci_high=r.ci_high,
        heldout_bits=r.heldout_bits,
        max_train_bits=r.max_train_bits,
        last_train_bits=r.last_train_bits,
        flag=r.flag,
        bound_cap_bits=r.bound_cap_bits,
        error_bits=err,
        abs_error_bits=abs(err),
        rel_error=err / task.mi_bits,
        covered=bool(r.ci_low <= task.mi_bits <= r.ci_high),
        steps=steps,
        batch_size=batch if batch is not None else -1,
        wall_s=r.wall_s,
        seed=r.seed,
    )


def recommend(table: pd.DataFrame) -> pd.DataFrame:
    """Per (d, N): each estimator's mean absolute error over all tasks of that regime (flagged estimates count
    at their value: a diverged estimate is a failure, not a missing point), and the recommended estimator =
    the lowest mean absolute error, overall and among the neural estimators (the reducer's choice). Peers
    ("peer:..." rows) get their error columns but are never recommended: they are not part of the package."""
    rows = []
    for (d, n), part in table.groupby(["d", "n_samples"], sort=True):
        stats = (part.groupby("estimator")
                 .agg(mean_abs_error_bits=("abs_error_bits", "mean"), mean_rel_error=("rel_error", "mean"),
                      flagged=("flag", lambda f: int((f != "ok").sum())), tasks=("flag", "size"))
                 .sort_values(["mean_abs_error_bits", "flagged"]))
        ours = stats[~stats.index.str.startswith(PEER_PREFIX)]
        stats = pd.concat([ours, stats[stats.index.str.startswith(PEER_PREFIX)]])
        neural = ours.drop(index="gaussian", errors="ignore")
        best_neural = neural.index[0] if len(neural) else ""
        rows.append(dict(
            d=d, n_samples=n, recommended=stats.index[0],
            recommended_mean_abs_error_bits=float(stats.mean_abs_error_bits.iloc[0]),
            recommended_neural=best_neural,
            recommended_neural_mean_abs_error_bits=float(neural.mean_abs_error_bits.iloc[0]) if len(neural)
            else math.nan,
            **{f"mae_{e}": float(v) for e, v in stats.mean_abs_error_bits.items()},
        ))
    return pd.DataFrame(rows)


def median_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Per (d, N, estimator): the median |relative error| over the tasks it ran, the share of tasks within 15%
    of the truth, the median seconds per estimate and how many readings were flagged: the numbers the README
    compares ours with the peers by (a peer may have run on a subset of the tasks; `tasks` says how many)."""
    t = table.assign(abs_rel_error=table.rel_error.abs(), within_15pct=table.rel_error.abs() <= 0.15)
    return (t.groupby(["d", "n_samples", "estimator"])
            .agg(tasks=("task", "size"), median_abs_rel_error=("abs_rel_error", "median"),
                 within_15pct=("within_15pct", "mean"), median_s_per_estimate=("wall_s", "median"),
                 flagged=("flag", lambda f: int((f != "ok").sum())))
            .reset_index()
            .sort_values(["d", "n_samples", "median_abs_rel_error"]))


def plot_validation(table: pd.DataFrame, path: Path) -> None:
    """Estimated vs true MI: one panel per (family, d), one line per estimator (line style per N), with the
    95% intervals and the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in ALL_FAMILIES if f in set(table.family)]
    dims = sorted(table.d.unique())
    estimators = list(dict.fromkeys(table.estimator))
    sizes = sorted(table.n_samples.unique())
    styles = ["-", "--", ":", "-."]
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(families), len(dims), figsize=(2.6 * len(dims) + 1, 2.4 * len(families) + 0.8),
                             squeeze=False, sharex=True)
    top = float(table.true_mi_bits.max())
    for i, fam in enumerate(families):
        for j, d in enumerate(dims):
            ax = axes[i][j]
            ax.plot([0, top], [0, top], color="grey", lw=0.8)
            for k, est in enumerate(estimators):
                for s, n in enumerate(sizes):
                    part = table[(table.family == fam) & (table.d == d) & (table.estimator == est)
                                 & (table.n_samples == n)].sort_values("true_mi_bits")
                    if part.empty:
                        continue
                    yerr = np.vstack([(part.mi_bits - part.ci_low).clip(lower=0),
                                      (part.ci_high - part.mi_bits).clip(lower=0)])
                    ax.errorbar(part.true_mi_bits, part.mi_bits, yerr=yerr, color=cmap(k % 10),
                                ls=styles[s % len(styles)], marker="o", ms=3, lw=1, capsize=1.5,
                                label=f"{est}" + (f" N={n}" if len(sizes) > 1 else ""))
            ax.set_ylim(max(-6.0, min(-1.0, float(table.mi_bits.min()) - 0.5)), top + 2)
            ax.set_title(f"{fam}, d={d}", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("estimated (bits)", fontsize=7)
            if i == len(families) - 1:
                ax.set_xlabel("true MI (bits)", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 8), fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_markdown(table: pd.DataFrame, recs: pd.DataFrame, config: ValidationConfig, wall_s: float,
                     command: str, missing: list[str] | None = None) -> str:
    """README of the output directory: what was run, true vs estimated, the default's error, recommendations."""
    p = config.params
    lines = [
        "# Estimator validation: true vs estimated MI on closed-form tasks",
        "",
        f"Made by `{command or 'ie-ray validate'}` in {wall_s / 60:.1f} min of estimator time "
        f"(config digest `{config.digest()}`, full settings in config.json).",
        "",
        f"- Tasks: families {list(config.families)} x d {list(config.dims)} x MI {list(config.mi_bits)} bits, "
        f"N = {list(config.samples)} pairs each (see ie_ray/estimators/benchmark.py for the constructions).",
        f"- Neural estimators share one setting: steps={p.steps}, batch={p.batch_size}, lr={p.lr}, "
        f"layers={p.n_layers}, min_width={p.min_width}, held-out fraction={p.heldout_fraction}, "
        f"marginal shifts={p.marginal_shifts}, bootstrap={p.n_bootstrap}, "
        f"early stopping={'off' if not p.early_stop_fraction else f'on a {p.early_stop_fraction:g} slice of the training split'}; InfoNCE batch = "
        f"{config.infonce_batch_size or p.batch_size} (cap log2 B bits). "
        f"{'These are the package defaults (MINEParams(); threads aside).' if replace(p, threads=None) == MINEParams() else 'Not the package defaults.'}",
        "- Gaussian = closed form (ie_ray/estimators/gaussian.py): canonical correlations with the exact Wishart bias "
        "correction when the train rows number >= 2 (dx + dy), Ledoit-Wolf shrinkage below; exact for the gaussian "
        "family, a baseline elsewhere.",
        "- Flags: see ie_ray/estimators/diagnostics.py (diverged = held-out bound significantly < 0 or a collapsed "
        "training curve; not_converged = curve still rising at the end).",
        "",
    ]
    if missing:
        lines += [f"- NOT RUN (time budget): {', '.join(missing)}."]
    lines += [
        "",
        "## Estimated MI (bits) per estimator, true MI in the column header",
        "",
    ]
    for n in sorted(table.n_samples.unique()):
        for fam in [f for f in ALL_FAMILIES if f in set(table.family)]:
            part = table[(table.n_samples == n) & (table.family == fam)]
            pivot = part.pivot_table(index=["d", "estimator"], columns="true_mi_bits", values="mi_bits",
                                     aggfunc="first")
            pivot.columns = [f"{c:g} bit" for c in pivot.columns]
            lines += [f"### {fam}, N = {n}", "", pivot.reset_index().to_markdown(index=False, floatfmt=".2f"), ""]
    lines += ["## The package default (MINE-DV, MINEParams()) per d", ""]
    default = table[table.package_default.fillna(False).astype(bool)]
    if default.empty:
        lines += ["The package default was not part of this grid (other MINE settings or no `dv`).", ""]
    else:
        agg = default.groupby(["d", "n_samples"]).agg(
            mean_abs_error_bits=("abs_error_bits", "mean"), mean_rel_error=("rel_error", "mean"),
            worst_abs_error_bits=("abs_error_bits", "max"), covered=("covered", "mean"),
            flagged=("flag", lambda f: int((f != "ok").sum())), tasks=("flag", "size")).reset_index()
        lines += [agg.to_markdown(index=False, floatfmt=".3f"), ""]
        top = default[default.d == default.d.max()].sort_values(["family", "true_mi_bits"])
        lines += [f"Per task at d = {int(top.d.max())} (estimate, 95% interval, absolute and relative error):", "",
                  top[["family", "n_samples", "true_mi_bits", "mi_bits", "ci_low", "ci_high", "error_bits",
                       "rel_error", "flag"]].to_markdown(index=False, floatfmt=".3f"), ""]
    lines += ["## Median relative error and seconds per estimate, ours and the peers", "",
              "Per (d, N): median |estimate - truth| / truth over the tasks each estimator ran (all families and "
              "MI values of the grid unless `tasks` is smaller), the share within 15% of the truth, and the "
              "median wall seconds per estimate (one torch thread). `peer:` rows are other toolkits run in their "
              "own venvs on the same task samples (benchmarks/peers.py; versions in peers/*.csv).", "",
              median_errors(table).to_markdown(index=False, floatfmt=".3f"), ""]
    lines += ["## Recommended estimator per regime (lowest mean absolute error over all tasks)", "",
              recs.to_markdown(index=False, floatfmt=".3f"), "",
              "## Flags", "", table.groupby(["estimator", "flag"]).size().rename("count").reset_index()
              .to_markdown(index=False), "",
              "## Wall time per estimate (s, ensemble wall / estimators)", "",
              table.groupby(["d", "estimator"]).wall_s.mean().unstack().to_markdown(floatfmt=".1f"), ""]
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The `ie-ray validate` options (kept here so cli.py only wires the subcommand)."""
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="tiny grid and short training (seconds; for tests)")
    preset.add_argument("--full", action="store_true",
                        help="standard grid plus N=8000 and InfoNCE at its default batch (hours on a CPU)")
    parser.add_argument("--out", default="results/validation", help="output directory (default: %(default)s)")
    parser.add_argument("--dims", type=int, nargs="+", help="dims of x and y (default: 1 16 64 256 768)")
    parser.add_argument("--mi", type=float, nargs="+", help="true MI values in bits (default: 0.1 1 2 4 8)")
    parser.add_argument("--families", nargs="+", help=f"task families (default: {list(FAMILIES)}; also {list(ALL_FAMILIES[len(FAMILIES):])})")
    parser.add_argument("--samples", type=int, nargs="+", help="sample sizes N (default: 2000, the smoke sweep's)")
    parser.add_argument("--estimators", nargs="+", help=f"estimators, from {list(ESTIMATORS)} (default: all)")
    parser.add_argument("--steps", type=int, help="MINE steps for every neural estimator (default: the package's)")
    parser.add_argument("--infonce-batch", type=int, help=f"InfoNCE batch (default {DEFAULT_INFONCE_BATCH}; "
                                                          "0 = the shared batch size)")
    parser.add_argument("--early-stop", type=float, metavar="FRACTION",
                        help="early_stop_fraction for every neural estimator (default 0 = off, the package's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, help="task seed (default 0)")
    parser.add_argument("--run-dims", type=int, nargs="+",
                        help="fit only these of the grid's dims now (the rest is reused or listed missing); unlike "
                             "--dims this keeps the grid, so the tasks and their seeds do not change")
    parser.add_argument("--reuse-only", action="store_true",
                        help="only assemble the finished parts of this grid (skip the rest; README lists them)")
    parser.add_argument("--smoothed", action="store_true",
                        help="validate the smoothed MI instead, on discrete-support tasks with exact values "
                             f"(ie_ray/validate_smoothed.py; output in {smoothed_validation.DEFAULT_OUT})")
    smoothed_validation.add_arguments(parser.add_argument_group(
        "with --smoothed", "--out, --dims, --seed and --quick apply too; --samples takes one N (default "
                           f"{smoothed_validation.DEFAULT_SAMPLES}), --dims defaults to "
                           f"{' '.join(map(str, smoothed_validation.DEFAULT_DIMS))}"))
    real_calibration.add_arguments(parser.add_argument_group(
        "with --smoothed --real RUN", "calibrate the smoothed reading where the law is undersampled, on populations "
                                      "of a run's kept states (ie_ray/validate_smoothed_real.py; output in "
                                      f"{real_calibration.DEFAULT_OUT}; --taus applies, default "
                                      f"{' '.join(map(str, real_calibration.DEFAULT_TAUS))})"))


def config_from_args(args) -> ValidationConfig:
    """Preset (--quick / --full / standard), then any explicit option on top."""
    config = ValidationConfig.quick() if args.quick else ValidationConfig.full() if args.full else ValidationConfig()
    changes: dict = {}
    for name, attr in [("dims", "dims"), ("mi", "mi_bits"), ("families", "families"), ("samples", "samples"),
                       ("estimators", "estimators")]:
        if getattr(args, name):
            changes[attr] = tuple(getattr(args, name))
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.infonce_batch is not None:
        changes["infonce_batch_size"] = args.infonce_batch or None
    params = config.params
    if args.steps is not None:
        params = replace(params, steps=args.steps)
    if args.threads is not None:
        params = replace(params, threads=args.threads)
    if getattr(args, "early_stop", None) is not None:
        params = replace(params, early_stop_fraction=args.early_stop)
        try:
            params.validate()
        except ValueError as err:
            raise ConfigError(f"--early-stop: {err}") from None
    return replace(config, params=params, **changes)


def main_from_args(args) -> int:
    import shlex
    import sys

    if getattr(args, "smoothed", False):
        return _smoothed_from_args(args)
    config = config_from_args(args)
    command = "ie-ray " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "ie-ray validate"
    run_dims = tuple(args.run_dims) if getattr(args, "run_dims", None) else None
    if run_dims and not set(run_dims) <= set(config.dims):
        raise ConfigError(f"--run-dims {list(run_dims)} must be among the grid's dims {list(config.dims)}")
    result = run_validation(config, Path(args.out), command=command, reuse_only=args.reuse_only, run_dims=run_dims)
    print(result.recommendations.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n[ie-ray] validation written to {result.out_dir} (README.md, validation.csv/.parquet, validation.png)")
    return 0


def _smoothed_from_args(args) -> int:
    """`ie-ray validate --smoothed`: the discrete-support validation of the smoothed MI (its own module)."""
    if getattr(args, "real", None) is not None:
        import shlex
        import sys

        taus = args.taus if tuple(args.taus) != smoothed_validation.DEFAULT_TAUS else real_calibration.DEFAULT_TAUS
        out = real_calibration.DEFAULT_OUT if args.out == "results/validation" else args.out
        real_calibration.run_real_calibration(
            args.real, args.cells, args.synthetic, Path(out), args.fractions, args.seeds, taus, args.truth_draws,
            args.scale_rule, command="ie-ray " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        return 0
    if args.samples and len(args.samples) > 1:
        raise ConfigError(f"--smoothed takes one --samples value (N draws per estimate), not {args.samples}")
    out = smoothed_validation.DEFAULT_OUT if args.out == "results/validation" else args.out
    smoothed_validation.run_smoothed_validation(
        Path(out), args.dims or smoothed_validation.DEFAULT_DIMS, args.supports,
        args.samples[0] if args.samples else smoothed_validation.DEFAULT_SAMPLES, args.taus,
        args.seed if args.seed is not None else 0, args.quick, repeats=args.repeats, exact_draws=args.exact_draws,
        budget_min=args.budget_min, skip=args.skip)
    return 0
