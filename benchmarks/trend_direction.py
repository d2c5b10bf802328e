"""Does a trend rule favour one direction? Issue 24, item 5, on synthetic laws whose truth rises or falls by a
chosen amount.

    PYTHONPATH=. python benchmarks/trend_direction.py [--out results/validation/trend-direction] [--quick]

Why: the reports decide a trend between a short and a long prefix (IE at token 3 vs token 8) with the bracket
rule: a rise only when the plug-in AND the leave-one-out reading rise. The leave-one-out end falls as prefixes
become isolated (the law's atoms K grow with the prefix length), whatever the truth does, so the rule may confirm
falls easily and rises hardly. `trend_direction_real.py` asks this on the few real laws of the calibration; here
the size of the move is set by design, the same |Delta| up and down, on many independent laws.

Design (`Design`; `--quick` shrinks it for the test):

- a pair of uniform K-atom laws of the synthetic validation (`DiscreteResidualLaw`: standard-normal atoms in d
  dims, y = x + tanh(W x)) stands for a prefix that grows: a "short" law of K_short atoms at its population scale,
  and a "long" law of K_long atoms, so many that the common sample of n draws isolates most of them. Each law
  has its own seed;
- the long law's truth is set to truth(short) + Delta by a factor f on its noise scale (the scale's `spread`
  times f: the standardised states shrink by f, the same as tau times f), f found by bisection in log f on the
  long law's I_sigma (`population_truth` at `bisection_draws`, one Monte Carlo seed for every step so the curve
  is monotone); both truths are then recomputed at `truth_draws` with another Monte Carlo seed, and the achieved
  Delta is reported with its Monte Carlo standard error. Delta > 0: the truth rises with the prefix, < 0 falls,
  0: null;
- `seeds` samples of n draws of each law, each read by `smoothed_mi` at tau with the population's scale; every
  (short sample, long sample) combination of a pair is one decision.

Rules (each says rise, fall or undetermined; h = (ci_high - ci_low) / 2, the half-width of a plug-in's 95%
interval; L = long sample, S = short sample):

- `bracket` (the reports' rule with a margin): rise when plugin_L - plugin_S > h_S + h_L AND loo_L > loo_S, fall
  when plugin_L - plugin_S < -(h_S + h_L) AND loo_L < loo_S (the leave-one-out reading has no interval: its sign
  only, as the reports read it);
- `bracket_sign` (for reference, the rule as `trend_direction_real.py` and the reports apply it): both signs only;
- `plugin_ci`: the plug-in alone, its two 95% intervals disjoint;
- `band_relative`, `band_bracket`: the calibrated intervals disjoint. A reading's interval is what
  `ie-ray brackets` gives it (`ie_ray.brackets.reading_intervals`): the bias band (`ie_ray.bias_band`, of that
  kind, widened by the reading's own interval) where it is `undersampled`, its own 95% interval where `ok`, none
  otherwise (undetermined). The bands are fitted with `fit_bands` on SEPARATE calibration laws of the same family
  (other seeds; K over `calibration_atoms` and factors spanning the test laws' range of f, with their own truths
  and samples of the same n), never on the test laws.

Per rule and true direction (and |Delta|): the share of decisions in the true direction, the opposite one, and
undetermined; for the null pairs, the share called a rise and a fall. Every finished piece (a truth, a
bisection, a reading) is a CSV under OUT/parts/, so a killed run continues where it stopped; OUT/design.json
refuses a resume with another design. Writes OUT/decisions.{parquet,csv}, summary.{parquet,csv},
pairs.{parquet,csv}, readings.{parquet,csv}, calibration.{parquet,csv}, bands.json and README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ie_ray import store  # noqa: E402
from ie_ray.bias_band import KINDS, BiasBand, fit_bands  # noqa: E402
from ie_ray.brackets import reading_intervals  # noqa: E402
from ie_ray.estimators.smoothed import Scale, SmoothedParams, smoothed_mi  # noqa: E402
from ie_ray.validate_smoothed_real import Population, population_truth, synthetic_population  # noqa: E402

DEFAULT_OUT = Path("results/validation/trend-direction")
RISE, FALL, UNDETERMINED, NULL = "rise", "fall", "undetermined", "null"
#: The decision rules, in the order of every table (module docstring).
RULES: tuple[str, ...] = ("bracket", "bracket_sign", "plugin_ci", "band_relative", "band_bracket")


@dataclass(frozen=True)
class Design:
    """Everything that fixes the benchmark's numbers (written to OUT/design.json)."""

    d: int = 64
    tau: float = 0.25
    n: int = 600
    short_atoms: int = 300
    long_atoms: int = 3000
    #: the truth's move from the short to the long law (bits): 0.5 and 1 as issue 24 asks, and 2, where a band can decide
    deltas: tuple[float, ...] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
    pairs_per_delta: int = 3
    seeds: int = 8
    bisection_draws: int = 4000
    truth_draws: int = 16000
    #: the bisection's first bracket of f (widened if it does not hold the target)
    factor_bracket: tuple[float, float] = (0.6, 1.6)
    tolerance_bits: float = 0.01
    calibration_atoms: tuple[int, ...] = (1200, 2000, 3000, 5000)
    calibration_factors: int = 3
    calibration_seeds: int = 4

    @classmethod
    def quick(cls) -> Design:
        """A few seconds: the whole pipeline on tiny laws (a test of the code, not a measurement)."""
        return cls(d=16, n=120, short_atoms=60, long_atoms=600, deltas=(-1.0, 0.0, 1.0), pairs_per_delta=1,
                   seeds=2, bisection_draws=500, truth_draws=1000, tolerance_bits=0.05, calibration_atoms=(300, 500),
                   calibration_factors=2, calibration_seeds=2)


@dataclass(frozen=True)
class Reading:
    """One smoothed reading of one sample of a law at the design's tau (a row of readings.parquet)."""

    law: str
    role: str  # "short", "long" or "calibration"
    atoms: int
    factor: float
    n: int
    seed: int
    plugin: float
    loo: float
    ci_low: float
    ci_high: float
    flag: str


@dataclass(frozen=True)
class Decision:
    """The rules' decisions on one (short sample, long sample) combination of a pair (a row of decisions.parquet)."""

    pair: int
    delta_target: float
    truth: str  # the true direction: rise, fall or null
    delta_bits: float
    delta_se_bits: float
    seed_short: int
    seed_long: int
    flag_short: str
    flag_long: str
    plugin_short: float
    plugin_long: float
    loo_short: float
    loo_long: float
    bracket: str
    bracket_sign: str
    plugin_ci: str
    band_relative: str
    band_bracket: str


# --- the rules -------------------------------------------------------------------------------------------------

def disjoint(short: tuple[float, float], long: tuple[float, float]) -> str:
    """rise when the long reading's interval lies wholly above the short one's, fall when wholly below, else (or
    when either interval is missing) undetermined."""
    if not all(math.isfinite(v) for v in (*short, *long)):
        return UNDETERMINED
    return RISE if long[0] > short[1] else FALL if long[1] < short[0] else UNDETERMINED


def _both(plugin_move: float, loo_move: float, margin: float) -> str:
    if plugin_move > margin and loo_move > 0:
        return RISE
    if plugin_move < -margin and loo_move < 0:
        return FALL
    return UNDETERMINED


def bracket_rule(short: Reading, long: Reading) -> str:
    """Both ends move the same way: the plug-in by more than the two readings' interval half-widths together,
    the leave-one-out reading by its sign (NaN anywhere: undetermined)."""
    margin = 0.5 * (short.ci_high - short.ci_low) + 0.5 * (long.ci_high - long.ci_low)
    return _both(long.plugin - short.plugin, long.loo - short.loo, margin) if math.isfinite(margin) else UNDETERMINED


def bracket_sign_rule(short: Reading, long: Reading) -> str:
    """Both ends move the same way, signs only."""
    return _both(long.plugin - short.plugin, long.loo - short.loo, 0.0)


def plugin_ci_rule(short: Reading, long: Reading) -> str:
    """The plug-in's 95% intervals disjoint."""
    return disjoint((short.ci_low, short.ci_high), (long.ci_low, long.ci_high))


def band_intervals(readings: Sequence[Reading], band: BiasBand | None) -> list[tuple[float, float]]:
    """Each reading's calibrated interval as `ie-ray brackets` forms it (`reading_intervals`); without a band,
    only the `ok` readings' own intervals (an undersampled reading then has none)."""
    frame = pd.DataFrame(dict(mi_bits=[r.plugin for r in readings], loo_bits=[r.loo for r in readings],
                              ci_low=[r.ci_low for r in readings], ci_high=[r.ci_high for r in readings],
                              flag=[r.flag for r in readings]))
    if band is None:  # a band that keeps nothing: NaN for every undersampled reading, as with no band at all
        band = BiasBand(tau=math.nan, low=math.nan, high=math.nan, samples=0, populations=0)
    low, high = reading_intervals(frame, band)
    return list(zip(low.tolist(), high.tolist()))


def truth_direction(delta_target: float) -> str:
    return RISE if delta_target > 0 else FALL if delta_target < 0 else NULL


def decide_pair(pair: int, delta_target: float, delta_bits: float, delta_se_bits: float, short: Sequence[Reading],
                long: Sequence[Reading], bands: dict[str, BiasBand | None]) -> list[Decision]:
    """Every rule on every (short sample, long sample) combination of one pair."""
    intervals = {kind: (band_intervals(short, bands.get(kind)), band_intervals(long, bands.get(kind)))
                 for kind in KINDS}
    rows = []
    for i, s in enumerate(short):
        for j, lg in enumerate(long):
            rows.append(Decision(
                pair=pair, delta_target=delta_target, truth=truth_direction(delta_target), delta_bits=delta_bits,
                delta_se_bits=delta_se_bits, seed_short=s.seed, seed_long=lg.seed, flag_short=s.flag,
                flag_long=lg.flag, plugin_short=s.plugin, plugin_long=lg.plugin, loo_short=s.loo, loo_long=lg.loo,
                bracket=bracket_rule(s, lg), bracket_sign=bracket_sign_rule(s, lg), plugin_ci=plugin_ci_rule(s, lg),
                band_relative=disjoint(intervals["relative"][0][i], intervals["relative"][1][j]),
                band_bracket=disjoint(intervals["bracket"][0][i], intervals["bracket"][1][j])))
    return rows


def summary(decisions: pd.DataFrame) -> pd.DataFrame:
    """Per rule, |Delta| and true direction: shares called rise, fall, undetermined; right (the true direction)
    and wrong (the opposite one; for a null pair, either direction), and per law pair the share right (for a null
    pair: undetermined)."""
    rows = []
    size = decisions.delta_target.abs()
    for rule in RULES:
        for delta in sorted(size.unique()):
            for truth in (RISE, FALL, NULL):
                part = decisions[(size == delta) & (decisions.truth == truth)]
                if part.empty:
                    continue
                said = part[rule]
                rise, fall = float((said == RISE).mean()), float((said == FALL).mean())
                hit = UNDETERMINED if truth == NULL else truth
                by_pair = (part[rule] == hit).groupby(part.pair).mean()
                rows.append(dict(rule=rule, delta_bits=float(delta), truth=truth, law_pairs=part.pair.nunique(),
                                 decisions=len(part), said_rise=rise, said_fall=fall,
                                 undetermined=float((said == UNDETERMINED).mean()),
                                 right={RISE: rise, FALL: fall, NULL: math.nan}[truth],
                                 wrong={RISE: fall, FALL: rise, NULL: rise + fall}[truth],
                                 right_by_pair="/".join(f"{v:.2f}" for v in by_pair)))
    return pd.DataFrame(rows)


# --- the laws and their readings --------------------------------------------------------------------------------

def _widened(scale: Scale, factor: float) -> Scale:
    return replace(scale, spread=scale.spread * factor)


def law(d: int, atoms: int, seed: int, factor: float = 1.0) -> Population:
    """The synthetic K-atom law with its noise scale's spread times `factor` (tau effectively times factor)."""
    base = synthetic_population(d, atoms, seed)
    return replace(base, label=f"synthetic d={d} K={atoms} seed={seed} f={factor:.6g}",
                   scale_x=_widened(base.scale_x, factor), scale_y=_widened(base.scale_y, factor))


def truth_bits(pop: Population, tau: float, draws: int, mc_seed: int) -> tuple[float, float]:
    """(I_sigma of the law, its Monte Carlo standard error), bits."""
    row = population_truth(pop, [tau], draws, seed=mc_seed).iloc[0]
    return float(row.truth_bits), float(row.truth_se_bits)


def bisect_factor(truth_at: Callable[[float], float], target: float, bracket: tuple[float, float],
                  tolerance: float, max_steps: int = 40) -> list[tuple[float, float]]:
    """Steps (f, truth(f)) of a bisection in log f for truth(f) = target, truth decreasing in f; the last step is
    the answer. The bracket is widened (x1.5 outward, at most 8 times per side) until it holds the target."""
    lo, hi = bracket
    steps = []
    for _ in range(8):
        value = truth_at(lo)
        steps.append((lo, value))
        if value >= target:
            break
        lo /= 1.5
    else:
        raise ValueError(f"the law cannot reach {target:.3f} bits (f = {lo:.3g} gives {value:.3f}): lower the target")
    for _ in range(8):
        value = truth_at(hi)
        steps.append((hi, value))
        if value <= target:
            break
        hi *= 1.5
    else:
        raise ValueError(f"the law cannot fall to {target:.3f} bits (f = {hi:.3g} gives {value:.3f})")
    for _ in range(max_steps):
        mid = math.sqrt(lo * hi)
        value = truth_at(mid)
        steps.append((mid, value))
        if abs(value - target) <= tolerance:
            break
        lo, hi = (mid, hi) if value > target else (lo, mid)
    return steps


def read_sample(pop: Population, role: str, factor: float, n: int, seed: int, tau: float) -> Reading:
    x, y = pop.sample(n, seed)
    r = smoothed_mi(x, y, SmoothedParams(tau=tau, taus=(tau,)), seed=seed, scale_x=pop.scale_x,
                    scale_y=pop.scale_y).at(tau)
    return Reading(law=pop.label, role=role, atoms=pop.atoms, factor=factor, n=n, seed=seed, plugin=r.plugin_bits,
                   loo=r.loo_bits, ci_low=r.ci_low, ci_high=r.ci_high, flag=r.flag)


def cached(path: Path, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The table at `path` if a run already finished it, else `compute()` written there first."""
    if not path.is_file():
        store.write_text(path, compute().to_csv(index=False))
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def cached_reading(path: Path, pop: Population, role: str, factor: float, n: int, seed: int, tau: float) -> Reading:
    """`read_sample`, or its row cached at `path` by an earlier run."""
    row = cached(path, lambda: pd.DataFrame([asdict(read_sample(pop, role, factor, n, seed, tau))])).iloc[0]
    return Reading(**{f.name: _plain(row[f.name]) for f in fields(Reading)})


def cached_truth(path: Path, pop: Population, design: Design) -> tuple[float, float]:
    """(truth, its Monte Carlo standard error) at `truth_draws` and Monte Carlo seed 1 (the bisection used 0), or
    as an earlier run cached it at `path`."""
    row = cached(path, lambda: pd.DataFrame([dict(zip(("truth_bits", "truth_se_bits"), truth_bits(
        pop, design.tau, design.truth_draws, 1)))])).iloc[0]
    return float(row.truth_bits), float(row.truth_se_bits)


def _plain(value: object) -> object:
    """A Python scalar for a numpy one (a dataclass row read back from CSV holds plain values)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Pair:
    """A (short, long) pair of laws: seeds, the long law's factor and both truths (a row of pairs.parquet)."""

    pair: int
    delta_target: float
    short_seed: int
    long_seed: int
    factor: float
    bisection_steps: int
    truth_short: float
    truth_short_se: float
    truth_long: float
    truth_long_se: float

    @property
    def delta_bits(self) -> float:
        return self.truth_long - self.truth_short

    @property
    def delta_se_bits(self) -> float:
        return math.hypot(self.truth_short_se, self.truth_long_se)


def build_pair(design: Design, index: int, delta_target: float, part_dir: Path, log: Callable[[str], None]) -> Pair:
    """The pair's laws and truths (bisection included), each step cached under part_dir."""
    short_seed, long_seed = 1000 + 2 * index, 1001 + 2 * index
    short = law(design.d, design.short_atoms, short_seed)
    truth_short, truth_short_se = cached_truth(part_dir / "short_truth.csv", short, design)
    target = truth_short + delta_target

    def bisection() -> pd.DataFrame:
        started = time.perf_counter()
        steps = bisect_factor(lambda f: truth_bits(law(design.d, design.long_atoms, long_seed, f), design.tau,
                                                   design.bisection_draws, 0)[0],
                              target, design.factor_bracket, design.tolerance_bits)
        log(f"pair {index} (Delta {delta_target:+g}): f = {steps[-1][0]:.4f} after {len(steps)} steps "
            f"({time.perf_counter() - started:.0f} s)")
        return pd.DataFrame(steps, columns=["factor", "truth_bits"]).assign(target_bits=target)

    steps = cached(part_dir / "bisection.csv", bisection)
    factor = float(steps.factor.iloc[-1])
    long = law(design.d, design.long_atoms, long_seed, factor)
    truth_long, truth_long_se = cached_truth(part_dir / "long_truth.csv", long, design)
    return Pair(pair=index, delta_target=delta_target, short_seed=short_seed, long_seed=long_seed, factor=factor,
                bisection_steps=len(steps), truth_short=truth_short, truth_short_se=truth_short_se,
                truth_long=truth_long, truth_long_se=truth_long_se)


def pair_readings(design: Design, pair: Pair, part_dir: Path) -> tuple[list[Reading], list[Reading]]:
    """`seeds` readings of each law of the pair; sample seeds are distinct across pairs and sides (the draw's
    atom indices depend on the seed, n and K only, so equal seeds would repeat the pattern of duplicates)."""
    out = []
    for side, atoms, law_seed, factor, offset in (("short", design.short_atoms, pair.short_seed, 1.0, 0),
                                                  ("long", design.long_atoms, pair.long_seed, pair.factor, 50)):
        pop = law(design.d, atoms, law_seed, factor)
        out.append([cached_reading(part_dir / f"{side}-seed{s}.csv", pop, side, factor, design.n,
                                   100 * pair.pair + offset + s, design.tau) for s in range(design.seeds)])
    return out[0], out[1]


def calibration_factors(design: Design, pairs: Sequence[Pair]) -> list[float]:
    """Factors spanning the test laws' (the long laws' f and the short laws' 1), evenly in log f."""
    factors = [p.factor for p in pairs] + [1.0]
    return np.geomspace(min(factors), max(factors), design.calibration_factors).tolist()


def calibration_table(design: Design, factors: Sequence[float], part_dir: Path,
                      log: Callable[[str], None]) -> pd.DataFrame:
    """Readings of the calibration laws (K over calibration_atoms x f over `factors`, law seeds 5000 + j, never a
    test law's) with their truths, in the columns `fit_bands` reads."""
    rows = []
    grid = [(atoms, f) for atoms in design.calibration_atoms for f in factors]
    for j, (atoms, factor) in enumerate(grid):
        pop = law(design.d, atoms, 5000 + j, factor)
        law_dir = part_dir / store.safe_name(pop.label)
        truth, truth_se = cached_truth(law_dir / "truth.csv", pop, design)
        for s in range(design.calibration_seeds):
            r = cached_reading(law_dir / f"seed{s}.csv", pop, "calibration", factor, design.n, 9000 + 100 * j + s,
                               design.tau)
            rows.append(asdict(r) | dict(truth_bits=truth, truth_se_bits=truth_se))
        log(f"calibration law {j + 1}/{len(grid)}: K = {atoms}, f = {factor:.4f}, truth {truth:.3f} bits")
    table = pd.DataFrame(rows)
    return table.assign(population=table.law, tau=design.tau, fraction=table.n / table.atoms,
                        plugin_low=table.ci_low, plugin_high=table.ci_high)


# --- the run ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    pairs: pd.DataFrame
    readings: pd.DataFrame
    calibration: pd.DataFrame
    bands: dict[str, BiasBand | None]
    decisions: pd.DataFrame
    summary: pd.DataFrame


def _check_design(out: Path, design: Design) -> None:
    path = out / "design.json"
    wanted = json.loads(json.dumps(asdict(design)))
    if path.is_file() and json.loads(path.read_text()) != wanted:
        raise SystemExit(f"{out} holds a run of another design ({path}); pass another --out or remove it")
    store.write_json(path, wanted)


def run(design: Design, out: Path, log: Callable[[str], None] = print) -> Outcome:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    _check_design(out, design)
    parts = out / "parts"
    pairs, readings = [], {}
    index = 0
    for delta in design.deltas:
        for _ in range(design.pairs_per_delta):
            pair = build_pair(design, index, delta, parts / f"pair-{index:02d}", log)
            readings[index] = pair_readings(design, pair, parts / f"pair-{index:02d}")
            log(f"pair {index}: Delta {pair.delta_bits:+.3f} +- {pair.delta_se_bits:.3f} bits (target {delta:+g}); "
                f"long flags {sorted({r.flag for r in readings[index][1]})}")
            pairs.append(pair)
            index += 1
    calibration = calibration_table(design, calibration_factors(design, pairs), parts / "calibration", log)
    bands = {kind: fit_bands(calibration, kind).get(float(design.tau)) for kind in KINDS}
    decisions = [d for p in pairs for d in decide_pair(p.pair, p.delta_target, p.delta_bits, p.delta_se_bits,
                                                       *readings[p.pair], bands)]
    decisions = pd.DataFrame([asdict(d) for d in decisions])
    pair_table = pd.DataFrame([asdict(p) | dict(delta_bits=p.delta_bits, delta_se_bits=p.delta_se_bits)
                               for p in pairs])
    reading_table = pd.DataFrame([asdict(r) | dict(pair=i) for i, (s, lg) in readings.items() for r in (*s, *lg)])
    return Outcome(pair_table, reading_table, calibration, bands, decisions, summary(decisions))


# --- the report -------------------------------------------------------------------------------------------------

#: A rule favours a direction when its share right for rises and for falls of one size (or its false rises and
#: false falls on null pairs) differ by more than this.
ASYMMETRY = 0.10


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.0f}%"


def direction_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per rule: right and wrong shares for rises and falls of each size, and the null pairs' calls."""
    rows = []
    for rule, part in table.groupby("rule", sort=False):
        row = dict(rule=rule)
        for r in part.itertuples():
            if r.truth == NULL:
                row |= {"null: called rise": _pct(r.said_rise), "null: called fall": _pct(r.said_fall)}
            else:
                row[f"{r.truth} {r.delta_bits:g}: right / wrong"] = f"{_pct(r.right)} / {_pct(r.wrong)}"
        rows.append(row)
    return pd.DataFrame(rows)


def verdicts(table: pd.DataFrame) -> list[str]:
    """One sentence per rule: which direction, if any, it favours (by more than ASYMMETRY), and the numbers."""
    out = []
    for rule, part in table.groupby("rule", sort=False):
        sides = part[part.truth != NULL].pivot(index="delta_bits", columns="truth", values="right")
        null = part[part.truth == NULL]
        gaps = [(float(sides.at[d, FALL] - sides.at[d, RISE]), d) for d in sides.index
                if {RISE, FALL} <= set(sides.columns)]
        null_gap = float(null.said_fall.iloc[0] - null.said_rise.iloc[0]) if len(null) else 0.0
        leans = {"falls" if g > 0 else "rises" for g, _ in gaps if abs(g) > ASYMMETRY}
        if abs(null_gap) > ASYMMETRY:
            leans.add("falls" if null_gap > 0 else "rises")
        powers = "; ".join(f"|Delta| = {d:g} bit: rises {_pct(sides.at[d, RISE])}, falls {_pct(sides.at[d, FALL])} "
                           "right" for _, d in gaps)
        nulls = (f"; null pairs called a rise {_pct(null.said_rise.iloc[0])}, a fall {_pct(null.said_fall.iloc[0])}"
                 if len(null) else "")
        calls = [v for _, d in gaps for v in (sides.at[d, RISE], sides.at[d, FALL])]
        calls += [null.said_rise.iloc[0], null.said_fall.iloc[0]] if len(null) else []
        lean = ("favours " + " and ".join(sorted(leans)) if len(leans) == 1 else
                "is lopsided both ways" if leans else
                f"decides almost nothing (every share below {_pct(ASYMMETRY)})" if max(calls, default=0) < ASYMMETRY
                else f"favours neither direction (within {_pct(ASYMMETRY)})")
        out.append(f"- `{rule}` {lean}: {powers}{nulls}.")
    return out


def _pairs_markdown(outcome: Outcome) -> str:
    readings = outcome.readings[outcome.readings.role != "calibration"]
    per_side = readings.groupby(["pair", "role"]).agg(plugin=("plugin", "mean"), loo=("loo", "mean"),
                                                       flags=("flag", lambda f: ", ".join(
                                                           f"{k} {v}" for k, v in f.value_counts().items())))
    per_side = per_side.unstack("role")
    per_side.columns = [f"{role} {what}" for what, role in per_side.columns]
    pairs = outcome.pairs.set_index("pair")
    table = pd.DataFrame(dict(
        target=pairs.delta_target.map("{:+g}".format), f=pairs.factor.map("{:.4f}".format),
        truth_short=[f"{t:.3f} +- {e:.3f}" for t, e in zip(pairs.truth_short, pairs.truth_short_se)],
        truth_long=[f"{t:.3f} +- {e:.3f}" for t, e in zip(pairs.truth_long, pairs.truth_long_se)],
        delta=[f"{t:+.3f} +- {e:.3f}" for t, e in zip(pairs.delta_bits, pairs.delta_se_bits)]))
    cols = ["short plugin", "short loo", "long plugin", "long loo", "short flags", "long flags"]
    return table.join(per_side[cols].round(3)).reset_index().to_markdown(index=False)


def _calibration_markdown(outcome: Outcome) -> str:
    cal = outcome.calibration
    laws = cal.groupby("law", sort=False).agg(
        K=("atoms", "first"), f=("factor", "first"), n_over_K=("fraction", "first"), truth=("truth_bits", "first"),
        truth_se=("truth_se_bits", "first"), plugin=("plugin", "mean"), loo=("loo", "mean"),
        flags=("flag", lambda f: ", ".join(f"{k} {v}" for k, v in f.value_counts().items())))
    return laws.reset_index(drop=True).to_markdown(index=False, floatfmt=".3f")


def offsets_table(outcome: Outcome) -> pd.DataFrame:
    """Per Delta: mean reading minus truth (bits) of each end on each side, and the moves of the two ends against
    the truth's: why a rule sees what it sees."""
    readings = outcome.readings[outcome.readings.role != "calibration"]
    truths = outcome.pairs.set_index("pair")
    truth = np.where(readings.role == "short", readings.pair.map(truths.truth_short),
                     readings.pair.map(truths.truth_long))
    frame = readings.assign(plugin_off=readings.plugin - truth, loo_off=readings.loo - truth,
                            delta=readings.pair.map(truths.delta_target))
    means = frame.groupby(["delta", "role"])[["plugin_off", "loo_off", "plugin", "loo"]].mean().unstack("role")
    delta_true = outcome.pairs.groupby("delta_target").delta_bits.mean()
    return pd.DataFrame({
        "Delta (target)": means.index, "Delta (true, mean)": delta_true.reindex(means.index).to_numpy(),
        "plug-in move": (means["plugin", "long"] - means["plugin", "short"]).to_numpy(),
        "loo move": (means["loo", "long"] - means["loo", "short"]).to_numpy(),
        "short plug-in - truth": means["plugin_off", "short"].to_numpy(),
        "long plug-in - truth": means["plugin_off", "long"].to_numpy(),
        "short loo - truth": means["loo_off", "short"].to_numpy(),
        "long loo - truth": means["loo_off", "long"].to_numpy()})


def mechanism(outcome: Outcome, offsets: pd.DataFrame) -> list[str]:
    """Why the rules decide as they do, in numbers: what each end of the bracket does as Delta varies, and where
    the calibrated intervals are missing or wide."""
    loo_moves, plugin_moves = offsets["loo move"], offsets["plug-in move"]
    slope, drift = np.polyfit(offsets["Delta (true, mean)"], plugin_moves, 1)
    long = outcome.readings[outcome.readings.role == "long"]
    direction = long.pair.map(outcome.pairs.set_index("pair").delta_target).map(truth_direction)
    unflagged = {t: _pct(float((long.flag[direction == t] == "not_converged").mean())) for t in (RISE, NULL, FALL)}
    lines = [
        f"- The leave-one-out end moves by {loo_moves.min():+.1f} to {loo_moves.max():+.1f} bits from the short to "
        f"the long sample whatever the truth does (Delta {offsets['Delta (target)'].min():+g} to "
        f"{offsets['Delta (target)'].max():+g}): the long samples isolate most of their atoms, and their "
        f"leave-one-out reading lies {-offsets['long loo - truth'].max():.1f}-{-offsets['long loo - truth'].min():.1f}"
        f" bits below the truth (the short samples' {-offsets['short loo - truth'].mean():.1f}).",
        f"- The plug-in's move is {slope:.2f} x Delta {drift:+.2f} bits (least squares over the Deltas): it "
        "shrinks the truth's move and adds a drift, the long samples reading high where the truth is low and low "
        "where it is high (table above).",
    ]
    test = outcome.readings[outcome.readings.role != "calibration"]
    as_readings = [Reading(**{f.name: _plain(r[f.name]) for f in fields(Reading)}) for _, r in test.iterrows()]
    for kind, band in outcome.bands.items():
        if band is None:
            continue
        low, high = np.array(band_intervals(as_readings, band)).T
        width = pd.Series(high - low).groupby(test.role.to_numpy()).mean()
        what = ("(plug-in - truth) / plug-in between" if kind == "relative" else
                "the truth between the leave-one-out end and the plug-in, at")
        lines.append(f"- The `{kind}` band ({band.populations} calibration laws, {band.samples} samples) puts "
                     f"{what} {band.low:+.2f} and {band.high:+.2f}: a calibrated interval {width['short']:.2f} bits "
                     f"wide on a short sample, {width['long']:.2f} on a long one (means, own interval included, "
                     "where there is one).")
    lines.append(f"- Long samples flagged `not_converged` (no calibrated interval): {unflagged[RISE]} where the truth "
                 f"rises, {unflagged[NULL]} on null pairs, {unflagged[FALL]} where it falls.")
    return lines


def add_timing(out: Path, wall_s: float, cpu_s: float) -> str:
    """This invocation's wall and CPU time added to the earlier ones' (OUT/timing.json: a resumed run's cost is
    the sum), as a sentence."""
    path = out / "timing.json"
    total = json.loads(path.read_text()) if path.is_file() else dict(invocations=0, wall_s=0.0, cpu_s=0.0)
    total = dict(invocations=total["invocations"] + 1, wall_s=total["wall_s"] + wall_s, cpu_s=total["cpu_s"] + cpu_s)
    store.write_json(path, total)
    return (f"Wall time {total['wall_s'] / 60:.1f} min, CPU time of the process {total['cpu_s'] / 60:.1f} min "
            f"(1 torch thread, {total['invocations']} invocation(s) together, the later ones reading the finished "
            f"parts; on a 2-core machine shared with another job).")


def write_report(outcome: Outcome, design: Design, out: Path, command: str, timing: str) -> None:
    for name in ("decisions", "summary", "pairs", "readings", "calibration"):
        store.write_table(out / f"{name}.parquet", getattr(outcome, name), csv=True)
    store.write_json(out / "bands.json", {k: (asdict(b) if b else None) for k, b in outcome.bands.items()})
    bands = pd.DataFrame([asdict(b) for b in outcome.bands.values() if b])
    missing = [k for k, b in outcome.bands.items() if b is None]
    d = design
    offsets = offsets_table(outcome)
    shorts = outcome.readings[outcome.readings.role == "short"]
    text = [
        "# Does a trend rule favour one direction? Synthetic laws (issue 24, item 5)", "",
        f"`{command}` (`benchmarks/trend_direction.py`, method in its docstring). {timing}", "",
        "## Design", "",
        f"Pairs of uniform K-atom laws (`DiscreteResidualLaw`, d = {d.d}, y = x + tanh(W x)) stand for a prefix "
        f"that grows: a short law of K = {d.short_atoms} atoms at its population scale and a long law of "
        f"K = {d.long_atoms} atoms; both are sampled at the same n = {d.n} (n/K = {d.n / d.short_atoms:g} and "
        f"{d.n / d.long_atoms:g}) and read at tau = {d.tau}. The long law's noise scale is multiplied by a factor f, "
        f"found by bisection in log f (its truth at {d.bisection_draws} Monte Carlo draws, tolerance "
        f"{d.tolerance_bits} bit) so that its truth is the short law's plus Delta, Delta in "
        f"{', '.join(f'{x:+g}' for x in d.deltas)} bits, {d.pairs_per_delta} pairs of distinct law seeds per Delta. "
        f"Both truths are then recomputed at {d.truth_draws} draws with another Monte Carlo seed (below: value +- "
        f"its Monte Carlo standard error; Delta's error combines both). {d.seeds} samples per law (sample seeds "
        f"distinct across laws); every (short sample, long sample) combination of a pair is one decision: "
        f"{d.seeds ** 2} per pair, {len(outcome.decisions)} in all. The combinations of one pair share samples, so "
        "the law pair is the independent unit: `right_by_pair` shows the spread between pairs.", "",
        "Rules (h = half-width of a plug-in's 95% interval, S short sample, L long sample):", "",
        "- `bracket`: rise when plugin_L - plugin_S > h_S + h_L and loo_L > loo_S; fall when "
        "plugin_L - plugin_S < -(h_S + h_L) and loo_L < loo_S; otherwise undetermined (the leave-one-out reading "
        "has no interval: its sign only, as the reports read it);",
        "- `bracket_sign`: the same with signs only (h = 0), as `trend_direction_real.py` applies it;",
        "- `plugin_ci`: the plug-in's two 95% intervals disjoint (whatever the flags);",
        "- `band_relative` / `band_bracket`: the intervals `ie-ray brackets` gives each reading "
        "(`ie_ray.brackets.reading_intervals`: the bias band of that kind widened by the reading's own interval "
        "where `undersampled`, the reading's own interval where `ok`, none (undetermined) for any other flag) "
        "disjoint. The bands are fitted by `fit_bands` on the calibration laws below only: same family, other "
        "seeds, K and f spanning the test laws.", "",
        "## Pairs (truths in bits; mean readings over the samples; flags of the samples)", "",
        _pairs_markdown(outcome), "",
        "## Calibration laws of the bands (never a test law)", "",
        f"{len(outcome.calibration.law.unique())} laws, {d.calibration_seeds} samples of n = {d.n} each; "
        "`fit_bands` keeps the `undersampled` samples with n/K in its range (0.02-0.5).", "",
        _calibration_markdown(outcome), "",
        (bands.to_markdown(index=False, floatfmt=".3f") if len(bands) else "No band could be fitted.")
        + (f" No `{'`, `'.join(missing)}` band (fewer than two calibration laws with undersampled samples): that "
           "rule reads every undersampled reading as undetermined." if missing else ""), "",
        f"The short samples (n/K = {d.n / d.short_atoms:g}) lie outside the band's calibrated n/K range; "
        f"{_pct(float((shorts.flag == 'undersampled').mean()))} of them are flagged `undersampled` and get the "
        "band anyway, as `ie-ray brackets` would give it (a run does not know its K).", "",
        "## What the two ends do (means over the samples, bits)", "",
        offsets.to_markdown(index=False, floatfmt="+.2f"), "",
        *mechanism(outcome, offsets), "",
        "## Decisions per rule and true direction", "",
        "Share of decisions in the true direction (`right`), the opposite one (`wrong`; null pairs: either "
        "direction) and undetermined; `right_by_pair`: per law pair, the share right (null: undetermined).", "",
        outcome.summary.to_markdown(index=False, floatfmt=".2f"), "",
        "The same, side by side (right / wrong):", "",
        direction_table(outcome.summary).to_markdown(index=False), "",
        "## Does a rule favour a direction?", "",
        f"A rule favours a direction when its share right differs between rises and falls of the same size, or "
        f"its false rises and false falls on the null pairs differ, by more than {_pct(ASYMMETRY)}:", "",
        *verdicts(outcome.summary), "",
    ]
    store.write_text(out / "README.md", "\n".join(text) + _kept_conclusion(out / "README.md"))


#: A section of the README from this heading on is written by hand after a run and kept when the README is rewritten.
CONCLUSION = "\n## Conclusion"


def _kept_conclusion(path: Path) -> str:
    text = path.read_text() if path.is_file() else ""
    return text[text.index(CONCLUSION):] if CONCLUSION in text else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny laws, a few seconds: a test of the code")
    parser.add_argument("--seeds", type=int, help=f"samples per law (default {Design.seeds})")
    parser.add_argument("--pairs-per-delta", type=int, help=f"law pairs per Delta (default {Design.pairs_per_delta})")
    args = parser.parse_args(argv)
    design = Design.quick() if args.quick else Design()
    design = replace(design, **{k: v for k, v in (("seeds", args.seeds), ("pairs_per_delta", args.pairs_per_delta))
                                if v is not None})
    started, cpu = time.perf_counter(), time.process_time()
    outcome = run(design, args.out)
    command = "python benchmarks/trend_direction.py " + " ".join(argv if argv is not None else sys.argv[1:])
    timing = add_timing(args.out, time.perf_counter() - started, time.process_time() - cpu)
    write_report(outcome, design, args.out, command.strip(), timing)
    print(direction_table(outcome.summary).to_markdown(index=False))
    print("\n".join(verdicts(outcome.summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
