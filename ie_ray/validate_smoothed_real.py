"""Calibration of the smoothed reading where the law is undersampled, on laws built from real block states.

Why: a sweep's prefix law often has far more atoms than the sample (natural text: nearly every 8-token prefix is
distinct), where the plug-in I_sigma is biased up and its interval, which measures only the sample-to-sample
spread, need not cover the population value. The synthetic validation (`validate_smoothed.py`) uses random
Gaussian atoms; this one uses the geometry the sweep meets.

Population: the empirical law of the macro states of one (block, position) cell of a finished run that kept its
states (`extract: {keep_states: true}`): x = block input (residual stream l), y = block output (stream l + 1), as
the reducer pairs them; its distinct (x, y) rows are the K atoms, weighted by how often they occur. The noise
scale is the run's own (`noise_scale.block_scale` over every position, the run's rule), fixed for the
population and every sample, so the question is sampling alone. Truth = I_sigma of that K-atom mixture (the
estimator on the atoms with their weights, many draws, no early stop; its Monte Carlo error is reported).
Synthetic K-atom laws (`DiscreteResidualLaw`, uniform) go through the same code, beside them.

Samples: n = K x fraction i.i.d. draws from the population law, several seeds. Candidates per sample and tau, each
with the interval it would report (measured, not assumed):

- `plugin`: the estimate (correction none) and its half-sample-replicate interval;
- `extrapolate`: 2 I(n) - I(n/2) and its interval;
- `loo`: the leave-one-out reading (no interval of its own);
- `bracket`: [leave-one-out, plug-in] as `results/REPRODUCTION.md` reads it, and `bracket_ci` widened by the
  plug-in's interval;
- `fit`: the subsampling curve I(m) at m = n/8, n/4, n/2, n extrapolated linearly in 1/m to m -> infinity (least
  squares), with an interval from the readings' replicate spreads (taken independent);
- `fit_checked`: the fit where it passes its own consistency check (residual chi-square of the linear fit below
  its 95% quantile, the self-flagging idea of Abdelaleem, Martini and Nemenman, arXiv 2506.00330), otherwise the
  `bracket_ci` (the reader is told the fit is not to be trusted there);
- `plugin_widened`: the plug-in with its interval widened on each side by one halving step's change,
  |I(n) - I_extrapolated| = |I(n/2) - I(n)| (a bias allowance read off the sample's own subsampling curve; derived
  from the stored columns by `with_derived`);
- `band`: the plug-in minus a bias band (`ie_ray.bias_band`): the range of the relative offset of `undersampled`
  plug-in readings from the truth, fitted on the *other* populations (leave one population out, so its coverage
  says how the band transfers to a law it was not measured on); no interval (abstained) for a reading with any
  other flag, whose remedy is more samples;
- `band_bracket`: the same, with the band on the truth's position in the bracket, (truth - loo) / (plug-in - loo);
- `kt`: the Kolchinsky-Tracey pairwise-distance bracket of the sample mixture's MI (Entropy 19, 361, 2017: the
  KL-based upper and Bhattacharyya-based lower bounds of each Gaussian-mixture entropy, exact for equal isotropic
  components: KL = ||dx||^2 / 2 sigma^2, BD = ||dx||^2 / 8 sigma^2), deterministic, beside the Monte Carlo value.

Per (population kind, tau, n/K): bias of each value (bits and % of the truth), coverage of each interval, and its
mean width. A candidate is worth adopting only if its interval covers >= 90% on the synthetic and the real laws
over n/K = 0.02-0.5 (issue 24); the README written here says which, if any, does.

    ie-ray validate --smoothed --real results/natural-kjv-start8-all --cells 29:7 14:3 4:7 --out DIR
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ie_ray import store
from ie_ray.bias_band import KINDS, fit_bands, leave_one_population_out, save_bands
from ie_ray.estimators.smoothed import Scale, SmoothedParams, smoothed_mi
from ie_ray.noise_scale import DEFAULT_SCALE_RULE, block_scale

DEFAULT_OUT = "results/validation/smoothed-real"
DEFAULT_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 0.5)
DEFAULT_TAUS: tuple[float, ...] = (0.25, 0.5, 1.0)
DEFAULT_SEEDS = 3
#: Monte Carlo draws of each population value. Measured standard errors at K = 17,934-24,352 real atoms: 0.04-0.05
#: bit at tau 0.25, 0.01 at 0.5, 0.003 at 1.0 (results/validation/smoothed-real); coverage allows for them.
TRUTH_DRAWS = 16000
#: Subsample sizes of the `fit` candidate, as fractions of n (n/8, n/4, n/2, n, as issue 24 asks).
FIT_FRACTIONS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
#: The fit is self-consistent when its residual chi-square (len(FIT_FRACTIONS) - 2 = 2 degrees of freedom) is
#: below this 95% quantile of chi-square(2): the curve is linear in 1/m within the readings' own errors.
FIT_CHI2_95 = 5.991
#: An interval is adopted only if it covers at least this share of the population values (issue 24).
ADOPT_COVERAGE = 0.90
LN2 = math.log(2.0)
CANDIDATES = ("plugin", "extrapolate", "loo", "bracket", "bracket_ci", "fit", "fit_checked", "plugin_widened", "kt",
              "band", "band_bracket")
#: The bias bands fitted on every population, written beside the tables (read by `ie-ray brackets --band`).
BANDS_FILE = "bias_bands.json"


@dataclass(frozen=True)
class Population:
    """A K-atom law of paired states (x, y) with integer weights, and the fixed scales every reading uses."""

    label: str
    kind: str  # "real" or "synthetic"
    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray
    scale_x: Scale
    scale_y: Scale
    model: str = ""  # the model whose states these are (real laws): the bands are valid for its readings

    @property
    def atoms(self) -> int:
        return len(self.counts)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n i.i.d. draws of the law (with replacement, atom i with probability counts_i / sum(counts))."""
        rng = np.random.default_rng([seed, n, self.atoms])
        idx = rng.choice(self.atoms, size=n, p=self.counts / self.counts.sum())
        return self.x[idx], self.y[idx]


def _distinct_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct (x, y) pair, its count), exact byte-wise. Not the estimator's
    `_exact_duplicates`: that one gives up (None) when few rows repeat, and a population or a kt mixture needs
    its atoms whatever their number."""
    rows = np.ascontiguousarray(np.concatenate([x, y], axis=1))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return first, counts


def find_states_dir(run_dir: Path, cell: str | None = None) -> Path:
    """The kept macro states of one cell of a run (manifest.json `corpora[cell].states`), or a clear error. A
    directory that holds `stream=*` directories itself is taken as the states (a run still reducing has no
    manifest yet: pass its cell's states directory)."""
    if any(Path(run_dir).glob("stream=*")):
        return Path(run_dir)
    manifest_path = Path(run_dir) / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} is missing: pass the directory of a sweep run")
    cells = {key: Path(entry["states"]) for key, entry in json.loads(manifest_path.read_text())["corpora"].items()
             if entry.get("states")}
    if cell is None and len(cells) == 1:
        cell = next(iter(cells))
    if cell not in cells:
        raise ValueError(f"{run_dir} has cells {sorted(cells)}; name one with --cell (got {cell!r})")
    states = cells[cell]
    if not any(states.glob("stream=*")):
        raise FileNotFoundError(
            f"no kept states at {states}: rerun {run_dir}'s config with `extract: {{keep_states: true}}` (the "
            "calibration reads every residual stream of the cell)")
    return states


def real_population(run_dir: Path, block: int, position: int, rule: str = DEFAULT_SCALE_RULE,
                    cell: str | None = None) -> Population:
    """The (block, position) cell of a run that kept its states: distinct (input, output) rows with counts, at the
    run's block scale (`rule` over every position, as the sweep computes it)."""
    states_dir = find_states_dir(run_dir, cell)
    try:
        _, pre, post = store.read_layer_states(states_dir, block,
                                                 lambda d, s: store.read_stream_states(d, s, None))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"block {block} of {run_dir}: {exc} (kept streams: "
                                f"{sorted(p.name for p in states_dir.glob('stream=*'))})") from None
    if not 0 <= position < pre.shape[1]:
        raise ValueError(f"position {position} is outside the run's {pre.shape[1]} positions (0-{pre.shape[1] - 1})")
    positions = list(range(pre.shape[1]))
    sx = block_scale(pre, positions, rule).for_position(position)
    sy = block_scale(post, positions, rule).for_position(position)
    first, counts = _distinct_rows(pre[:, position], post[:, position])
    name = Path(run_dir).name if (Path(run_dir) / "manifest.json").is_file() else states_dir.parents[3].name
    return Population(f"{name} block {block} position {position}", "real",
                      pre[first, position].astype(np.float32), post[first, position].astype(np.float32),
                      counts.astype(np.int64), sx, sy, model=states_dir.parent.name)


def synthetic_population(d: int, support: int, seed: int = 0) -> Population:
    """A uniform K-atom law of the synthetic validation (y = x + tanh(W x)) at its population scale."""
    from ie_ray.validate_smoothed import DiscreteResidualLaw

    law = DiscreteResidualLaw(d, support, seed)
    return Population(f"synthetic d={d} K={support}", "synthetic", law.x_atoms.astype(np.float32),
                      law.y_atoms.astype(np.float32), np.ones(support, dtype=np.int64), law.scale_x, law.scale_y)


def population_truth(pop: Population, taus: Sequence[float], n_draws: int = TRUTH_DRAWS,
                     seed: int = 0) -> pd.DataFrame:
    """I_sigma of the population mixture at each tau (bits) and its Monte Carlo standard error."""
    params = SmoothedParams(tau=float(taus[0]), taus=tuple(taus), n_draws=n_draws, n_bootstrap=0,
                            mc_tolerance_fraction=0.0)
    result = smoothed_mi(pop.x, pop.y, params, seed=seed, scale_x=pop.scale_x, scale_y=pop.scale_y,
                         weights=pop.counts.astype(np.float64))
    rows = [dict(tau=float(t), truth_bits=result.at(t).plugin_bits, truth_se_bits=result.at(t).mc_se_bits)
            for t in taus]
    return pd.DataFrame(rows)


def kt_bounds_bits(x: np.ndarray, y: np.ndarray, weights: np.ndarray, scale_x: Scale, scale_y: Scale,
                   taus: Sequence[float], chunk: int = 1024) -> dict[float, tuple[float, float]]:
    """Kolchinsky-Tracey bracket {tau: (lower, upper)} (bits) of the MI of the Gaussian mixture with components at
    the standardised (x_i, y_i), weights w, per-coordinate noise sigma_x(tau), sigma_y(tau).

    Each mixture entropy H lies between H_c - sum_i w_i ln sum_j w_j exp(-D_ij) with D = Bhattacharyya (lower)
    and D = KL (upper), H_c the component entropy, which cancels in H(X) + H(Y) - H(X, Y). For equal isotropic
    Gaussians KL = ||m_i - m_j||^2 / (2 s^2) and BD = ||m_i - m_j||^2 / (8 s^2), so the MI lies in
    [T_x(BD) + T_y(BD) - T_xy(KL), T_x(KL) + T_y(KL) - T_xy(BD)], T(D) = -sum_i w_i ln sum_j w_j exp(-D_ij).
    The squared distances are computed once per chunk of rows and serve every tau."""
    X = torch.as_tensor(scale_x.apply(x), dtype=torch.float64)
    Y = torch.as_tensor(scale_y.apply(y), dtype=torch.float64)
    w = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
    log_w = torch.log(w)
    sqx, sqy = (X * X).sum(1), (Y * Y).sum(1)
    # per tau, T for the 6 (divergence, side) pairs: KL (c = 2) then BD (c = 8), each for x, y, xy
    totals = torch.zeros(len(taus), 6, dtype=torch.float64)
    for start in range(0, len(X), chunk):
        stop = min(start + chunk, len(X))
        dx = (sqx[start:stop, None] + sqx[None, :] - 2 * X[start:stop] @ X.T).clamp_min(0)
        dy = (sqy[start:stop, None] + sqy[None, :] - 2 * Y[start:stop] @ Y.T).clamp_min(0)
        for t, tau in enumerate(taus):
            vx, vy = scale_x.sigma(tau) ** 2, scale_y.sigma(tau) ** 2
            for k, c in enumerate((2.0, 8.0)):
                for j, dist in enumerate((dx / vx, dy / vy, dx / vx + dy / vy)):
                    inner = torch.logsumexp(log_w[None, :] - dist / c, dim=1)
                    totals[t, 3 * k + j] -= (w[start:stop] * inner).sum()
    out = {}
    for t, tau in enumerate(taus):
        t_kl, t_bd = totals[t, :3], totals[t, 3:]
        out[float(tau)] = (float(t_bd[0] + t_bd[1] - t_kl[2]) / LN2, float(t_kl[0] + t_kl[1] - t_bd[2]) / LN2)
    return out


def _fit_intercept(sizes: Sequence[int], values: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares I(m) = a + b / m over the points: a, its standard error from the points' own ones (taken
    independent: a coefficient vector c with a = c . I), and the residual chi-square sum ((I - fit) / se)^2."""
    design = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, dtype=np.float64)], axis=1)
    values_a, ses_a = np.asarray(values, dtype=np.float64), np.maximum(np.asarray(ses, dtype=np.float64), 1e-12)
    pinv = np.linalg.pinv(design)
    residual = values_a - design @ (pinv @ values_a)
    return (float(pinv[0] @ values_a), float(math.sqrt(np.sum((pinv[0] * ses_a) ** 2))),
            float(np.sum((residual / ses_a) ** 2)))


def _params(taus: Sequence[float], correction: str) -> SmoothedParams:
    return SmoothedParams(tau=float(taus[0]), taus=tuple(taus), reported_taus=tuple(taus), correction=correction)


def sample_rows(pop: Population, n: int, seed: int, taus: Sequence[float]) -> list[dict]:
    """Every candidate's value and interval on one sample of n, one row per tau."""
    x, y = pop.sample(n, seed)
    plug = smoothed_mi(x, y, _params(taus, "none"), seed=seed, scale_x=pop.scale_x, scale_y=pop.scale_y)
    extra = smoothed_mi(x, y, _params(taus, "extrapolate"), seed=seed + 1, scale_x=pop.scale_x,
                        scale_y=pop.scale_y)
    subs = {}
    rng = np.random.default_rng([seed, n, 7])
    for fraction in FIT_FRACTIONS[:-1]:
        m = max(4, round(n * fraction))
        keep = rng.permutation(n)[:m]
        subs[m] = smoothed_mi(x[keep], y[keep], _params(taus, "none"), seed=seed + 2, scale_x=pop.scale_x,
                              scale_y=pop.scale_y)
    subs[n] = plug
    # the kt bracket needs the sample's distinct rows with their counts (its mixture), as the estimator uses
    first, counts = _distinct_rows(x, y)
    kt = kt_bounds_bits(x[first], y[first], counts.astype(np.float64), pop.scale_x, pop.scale_y, taus)
    out = []
    for tau in taus:
        p, e = plug.at(tau), extra.at(tau)
        fit, fit_se, chi2 = _fit_intercept(list(subs), [subs[m].at(tau).plugin_bits for m in subs],
                                     [(subs[m].at(tau).ci_high - subs[m].at(tau).ci_low) / 3.92 for m in subs])
        kt_low, kt_high = kt[float(tau)]
        out.append(dict(
            population=pop.label, kind=pop.kind, atoms=pop.atoms, n=n, fraction=n / pop.atoms, seed=seed,
            tau=float(tau), distinct=len(first), flag=p.flag, extrapolate_flag=e.flag,
            plugin=p.plugin_bits, plugin_low=p.ci_low, plugin_high=p.ci_high,
            extrapolate=e.mi_bits, extrapolate_low=e.ci_low, extrapolate_high=e.ci_high,
            loo=p.loo_bits, loo_low=math.nan, loo_high=math.nan,
            bracket=0.5 * (p.loo_bits + p.plugin_bits), bracket_low=min(p.loo_bits, p.plugin_bits),
            bracket_high=max(p.loo_bits, p.plugin_bits),
            bracket_ci=0.5 * (p.loo_bits + p.plugin_bits), bracket_ci_low=min(p.loo_bits, p.ci_low),
            bracket_ci_high=max(p.loo_bits, p.ci_high),
            fit=fit, fit_low=fit - 1.96 * fit_se, fit_high=fit + 1.96 * fit_se, fit_chi2=chi2,
            fit_consistent=chi2 < FIT_CHI2_95,
            kt=0.5 * (kt_low + kt_high), kt_low=kt_low, kt_high=kt_high,
        ))
        row = out[-1]
        source = "fit" if row["fit_consistent"] else "bracket_ci"
        row.update(fit_checked=row[source], fit_checked_low=row[f"{source}_low"],
                   fit_checked_high=row[f"{source}_high"])
    return out


def run_population(pop: Population, out_dir: Path, fractions: Sequence[float], seeds: int, taus: Sequence[float],
                   truth_draws: int = TRUTH_DRAWS, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Truth, then every (n, seed) sample of one population; each finished piece is a file under
    out_dir/parts/<population>/, so a killed run continues where it stopped."""
    part_dir = out_dir / "parts" / store.safe_name(pop.label)
    part_dir.mkdir(parents=True, exist_ok=True)
    truth_path = part_dir / "truth.csv"
    if truth_path.exists():
        truth = pd.read_csv(truth_path)
    else:
        started = time.perf_counter()
        truth = population_truth(pop, taus, truth_draws)
        store.write_text(truth_path, truth.to_csv(index=False))
        log(f"{pop.label}: K = {pop.atoms} atoms, truth {truth.truth_bits.round(3).tolist()} bits "
            f"(taus {list(taus)}) in {time.perf_counter() - started:.0f} s")
    frames = []
    for fraction in fractions:
        n = max(8, round(pop.atoms * fraction))
        for seed in range(seeds):
            path = part_dir / f"n{n}-seed{seed}.csv"
            if not path.exists():
                started = time.perf_counter()
                rows = pd.DataFrame(sample_rows(pop, n, seed, taus))
                rows["wall_s"] = time.perf_counter() - started
                store.write_text(path, rows.to_csv(index=False))
                log(f"{pop.label}: n = {n} (n/K {n / pop.atoms:.2f}) seed {seed} in {rows.wall_s.iloc[0]:.0f} s")
            frames.append(pd.read_csv(path))
    table = pd.concat(frames, ignore_index=True).merge(truth, on="tau")
    return table


def _covered(low: np.ndarray, high: np.ndarray, truth: np.ndarray, truth_se: np.ndarray) -> np.ndarray:
    """Whether each interval holds its truth, the truth's own Monte Carlo error allowed for: the interval's
    half-width and 1.96 truth standard errors added in quadrature around its centre (with a known truth, se = 0,
    this is low <= truth <= high)."""
    centre, half = 0.5 * (low + high), 0.5 * (high - low)
    return np.abs(truth - centre) <= np.sqrt(half**2 + (1.96 * truth_se) ** 2) + 1e-12


def with_derived(table: pd.DataFrame) -> pd.DataFrame:
    """The candidates computed from other columns (so parts written before they existed still have them)."""
    step = (table.plugin - table.extrapolate).abs()
    table = table.drop(columns=[f"{name}{suffix}" for name in ("band", "band_bracket")
                                for suffix in ("", "_low", "_high", "_abstained") if f"{name}{suffix}" in table])
    table = table.assign(plugin_widened=table.plugin, plugin_widened_low=table.plugin_low - step,
                         plugin_widened_high=table.plugin_high + step)
    return leave_one_population_out(leave_one_population_out(table, "relative", "band"), "bracket", "band_bracket")


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, tau, fraction) and candidate: bias (bits, % of truth), coverage of its interval (the truth's
    Monte Carlo error allowed for; `coverage_strict` without) over the samples it gave an interval for
    (`answered`; a candidate may abstain, as `band` does off its regime), how many samples, its mean width."""
    rows = []
    table = with_derived(table)
    for (kind, tau, fraction), part in table.groupby(["kind", "tau", "fraction"]):
        truth, truth_se = part.truth_bits.to_numpy(), part.truth_se_bits.to_numpy()
        for c in CANDIDATES:
            value, low, high = part[c].to_numpy(), part[f"{c}_low"].to_numpy(), part[f"{c}_high"].to_numpy()
            answered = np.isfinite(low) & np.isfinite(high)
            has = bool(answered.any())
            covered = _covered(low, high, truth, truth_se) & answered
            given = answered.sum()
            rows.append(dict(kind=kind, tau=tau, fraction=round(float(fraction), 3), candidate=c, samples=len(part),
                             bias_bits=float(np.nanmean(value - truth)) if np.isfinite(value).any() else math.nan,
                             bias_pct=float(np.nanmean((value - truth) / np.maximum(np.abs(truth), 1e-9)) * 100)
                             if np.isfinite(value).any() else math.nan,
                             answered=int(given), covered=int(covered.sum()) if has else -1,
                             coverage=float(covered.sum() / given) if has else math.nan,
                             coverage_strict=float(np.mean(((low <= truth) & (truth <= high))[answered]))
                             if has else math.nan,
                             width_bits=float(np.mean((high - low)[answered])) if has else math.nan))
    return pd.DataFrame(rows)


def adoption(summary: pd.DataFrame, fraction_range: tuple[float, float] = (0.02, 0.5)) -> pd.DataFrame:
    """Per candidate with an interval: coverage pooled over the samples of every n/K in the range, per (kind, tau),
    over the samples it answered; its worst (kind, tau) and where; adopted when both kinds were measured and every
    (kind, tau) pools to >= ADOPT_COVERAGE, and `adopted_at_taus` the taus where both kinds do. Pooled, because a
    few seeds per n/K make a per-cell share too coarse to decide on."""
    inside = summary[(summary.fraction >= fraction_range[0] - 1e-9) & (summary.fraction <= fraction_range[1] + 1e-9)
                     & summary.coverage.notna()]
    rows = []
    for c, part in inside.groupby("candidate", sort=False):
        pooled = part.groupby(["kind", "tau"]).apply(lambda g: g.covered.sum() / max(g.answered.sum(), 1),
                                                     include_groups=False)
        worst = pooled.idxmin()
        per_kind = pooled.groupby(level="kind").min()
        by_tau = pooled.unstack("kind")
        taus_ok = [float(t) for t, r in by_tau.iterrows()
                   if {"real", "synthetic"} <= set(r.dropna().index) and r.min() >= ADOPT_COVERAGE]
        rows.append(dict(candidate=c, worst_coverage=float(pooled.min()), worst_at=f"{worst[0]} tau {worst[1]:g}",
                         worst_real=float(per_kind.get("real", math.nan)),
                         worst_synthetic=float(per_kind.get("synthetic", math.nan)),
                         samples=int(part.samples.sum()), answered=int(part.answered.sum()),
                         mean_width_bits=float(part.width_bits.mean()),
                         adopted=bool({"real", "synthetic"} <= set(per_kind.index)
                                      and pooled.min() >= ADOPT_COVERAGE),
                         adopted_at_taus=" ".join(f"{t:g}" for t in taus_ok) or "-"))
    return pd.DataFrame(rows)


def _markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def write_report(out_dir: Path, table: pd.DataFrame, populations: Sequence[Population], command: str,
                 wall_s: float) -> None:
    """Tables (Parquet + CSV) and README.md: per-population truths, bias and coverage per candidate, adoption."""
    summary = summarise(table)
    adopt = adoption(summary)
    store.write_table(out_dir / "calibration.parquet", with_derived(table), csv=True)
    store.write_table(out_dir / "calibration_summary.parquet", summary, csv=True)
    store.write_table(out_dir / "adoption.parquet", adopt, csv=True)
    bands = {(b.kind, tau): b for kind in KINDS for tau, b in fit_bands(table, kind).items()}
    adopted = adopt.set_index("candidate").adopted_at_taus.get("band", "-")
    save_bands(bands, out_dir / BANDS_FILE, source=f"{command} (every population; {out_dir}/calibration.parquet)",
               models=sorted({p.model for p in populations if p.kind == "real" and p.model}),
               headline_taus=[float(t) for t in str(adopted).split() if t != "-"])
    truths = table.groupby(["population", "kind", "atoms", "tau"], as_index=False)[
        ["truth_bits", "truth_se_bits"]].first()
    pivot_bias = summary.pivot_table(index=["kind", "tau", "fraction"], columns="candidate", values="bias_pct")
    pivot_cov = summary.pivot_table(index=["kind", "tau", "fraction"], columns="candidate", values="coverage")
    text = [
        "# The smoothed reading where the law is undersampled: calibration on real and synthetic laws",
        "",
        f"`{command}` (`ie_ray/validate_smoothed_real.py`; method in its docstring). Wall time {wall_s / 60:.1f} min.",
        "",
        "Populations (K atoms; the truth is the population mixture's I_sigma, Monte Carlo standard error beside it):",
        "",
        _markdown_table(truths),
        "",
        "## Bias of each value, % of the truth (mean over seeds and populations of a kind)",
        "",
        _markdown_table(pivot_bias.reset_index()),
        "",
        "## Coverage of each interval (share of samples whose interval holds the truth)",
        "",
        _markdown_table(pivot_cov.reset_index()),
        "",
        f"## Adoption (coverage pooled over n/K = 0.02-0.5 per kind and tau, its worst; adopted at >= "
        f"{ADOPT_COVERAGE:.0%} everywhere, both kinds measured)",
        "",
        _markdown_table(adopt),
        "",
        "Adopted where both kinds of law reach the coverage: "
        + ("; ".join(f"`{r.candidate}` at tau {r.adopted_at_taus}" for r in adopt.itertuples()
                     if r.adopted_at_taus != "-") or "nothing")
        + f". The bands fitted on every law are in `{BANDS_FILE}` (read by `ie-ray brackets`, and by every sweep, whose headline IE carries the relative band at the taus where `band` is adopted, for the models named there); `band` and "
        "`band_bracket` are judged leaving each law out of their own fit, so their coverage is that of a law not "
        "seen. A band abstains on readings not flagged `undersampled` (`answered` counts the rest).",
        "",
    ]
    store.write_text(out_dir / "README.md", "\n".join(text))
    store.write_json(out_dir / "populations.json", {p.label: dict(kind=p.kind, atoms=p.atoms,
                                                                  samples=int(p.counts.sum()))
                                                    for p in populations})


def _int_pair(what: str) -> Callable[[str], tuple[int, int]]:
    """An argparse type for `A:B` integer pairs; `what` names the form in the error (e.g. "a cell BLOCK:POSITION
    such as 29:7")."""
    def parse(value: str) -> tuple[int, int]:
        try:
            a, b = value.split(":")
            return int(a), int(b)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
    return parse


_cell = _int_pair("a cell BLOCK:POSITION such as 29:7")


def _real_run(value: str) -> tuple[Path, list[tuple[int, int]] | None]:
    """`RUN` (the --cells apply) or `RUN@B:P,B:P` (this run's own cells), for --real."""
    path, at, cells = value.rpartition("@")
    if not at:
        return Path(value), None
    if not path or not cells:
        raise argparse.ArgumentTypeError(f"{value!r} is not RUN or RUN@BLOCK:POSITION[,BLOCK:POSITION...]")
    return Path(path), [_cell(cell) for cell in cells.split(",")]
_synthetic = _int_pair("a synthetic law D:K such as 576:5000")


def run_real_calibration(runs: Sequence[Path | tuple[Path, list[tuple[int, int]] | None]], cells: Sequence[tuple[int, int]], synthetic: Sequence[tuple[int, int]],
                         out_dir: Path, fractions: Sequence[float] = DEFAULT_FRACTIONS, seeds: int = DEFAULT_SEEDS,
                         taus: Sequence[float] = DEFAULT_TAUS, truth_draws: int = TRUTH_DRAWS,
                         rule: str = DEFAULT_SCALE_RULE, command: str = "",
                         log: Callable[[str], None] = print) -> pd.DataFrame:
    """Every population (each run's cells, then the synthetic laws), resumable; writes the report. A run given as
    (path, cells) uses its own cells instead of `cells` (runs of different lengths: natural text has 8 positions,
    an ICL run 24)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    frames, populations = [], []
    for entry in runs:
        run, own_cells = entry if isinstance(entry, tuple) else (entry, None)
        for block, position in own_cells or cells:
            pop = real_population(run, block, position, rule)
            populations.append(pop)
            frames.append(run_population(pop, out_dir, fractions, seeds, taus, truth_draws, log))
    for d, k in synthetic:
        pop = synthetic_population(d, k)
        populations.append(pop)
        frames.append(run_population(pop, out_dir, fractions, seeds, taus, truth_draws, log))
    table = pd.concat(frames, ignore_index=True)
    write_report(out_dir, table, populations, command or "ie-ray validate --smoothed --real ...",
                 time.perf_counter() - started)
    log(f"wrote {out_dir}/README.md")
    return table


def add_arguments(parser) -> None:
    """`ie-ray validate --smoothed --real RUN ...` options."""
    parser.add_argument("--real", nargs="*", type=_real_run, metavar="RUN[@B:P,...]",  # or a cell's states directory
                        help="with --smoothed: calibrate on the kept states of these runs (ie_ray/validate_smoothed_real.py); "
                             "RUN@29:23,14:5 gives a run its own cells instead of --cells; "
                             "no RUN: the synthetic laws alone")
    parser.add_argument("--cells", nargs="+", type=_cell, default=[(29, 7)], metavar="BLOCK:POSITION",
                        help="with --real: the (block, macro position) cells whose states are the populations")
    parser.add_argument("--synthetic", nargs="*", type=_synthetic, default=[(576, 5000)], metavar="D:K",
                        help="with --real: synthetic uniform K-atom laws in the same table (default 576:5000)")
    parser.add_argument("--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS),
                        help="with --real: sample sizes n as fractions of the population's atoms K")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="with --real: samples per (population, n)")
    parser.add_argument("--truth-draws", type=int, default=TRUTH_DRAWS,
                        help="with --real: Monte Carlo draws of each population value")
    parser.add_argument("--scale-rule", default=DEFAULT_SCALE_RULE, help="with --real: the block scale rule")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ie_ray.validate_smoothed_real", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--taus", type=float, nargs="+", default=list(DEFAULT_TAUS))
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_real_calibration(args.real or [], args.cells, args.synthetic, Path(args.out), args.fractions, args.seeds,
                         args.taus, args.truth_draws, args.scale_rule, command="python -m ie_ray.validate_smoothed_real "
                         + " ".join(argv or []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
