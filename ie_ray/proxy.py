"""Small-to-large proxy estimates of IE, with their validation.

The paper claims that IE of a model we cannot run (too large, or closed) can be estimated from models we can:

* **Proxy A, text proxy.** A small *measuring* model computes IE on text written by the large model. It is a
  valid proxy only if, across text sources or conditions, the small model's IE moves with the large model's own
  IE. Where the large model is runnable we measure that: the Pearson correlation across conditions with a
  Fisher-z interval (and a bootstrap interval that also carries each IE value's own measurement noise), plus
  a linear calibration target ~ a + b * proxy whose leave-one-condition-out error says how well the proxy
  predicts the large model's IE on a source it was not calibrated on.
* **Proxy B, scaling extrapolation.** Model-level IE of >= 3 sizes of one family, fitted by ordinary least
  squares against log10(parameters), predicts a larger size with a t-based prediction interval. Leave-one-out
  over the sizes we can run gives the validation error; leaving out the largest is the honest extrapolation
  test, since interpolating inside the measured range is easier than what the proxy is used for.

Everything here is plain numpy/scipy on small tables, so it is exact-tested on synthetic inputs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ie_ray.errors import ConfigError

LEVEL = 0.95
CONDITION_KEYS = ["corpus", "shots"]
STATISTICS = ("ie_mean_bits", "ie_sum_bits")


def _z(level: float = LEVEL) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def interval_columns(statistic: str) -> tuple[str, str]:
    """models.csv names the interval of `ie_mean_bits` `ie_mean_ci_low/high` (same for the sum)."""
    if statistic not in STATISTICS:
        raise ConfigError(f"statistic {statistic!r} is unknown; use one of {list(STATISTICS)}")
    stem = statistic[: -len("_bits")]
    return f"{stem}_ci_low", f"{stem}_ci_high"


def standard_error(low: np.ndarray | float, high: np.ndarray | float, level: float = LEVEL) -> np.ndarray:
    """Normal-approximation standard error from a central interval: half-width / z. Model-level intervals are
    built by adding layer half-widths in quadrature (ie.model_summary), i.e. already a normal approximation."""
    return (np.asarray(high, dtype=float) - np.asarray(low, dtype=float)) / (2.0 * _z(level))


# --------------------------------------------------------------------------------------------------------------
# Straight-line fit with a prediction interval (shared by both proxies)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope * x by ordinary least squares, with what a prediction interval needs."""

    n: int
    intercept: float
    slope: float
    residual_std: float  # s = sqrt(SSE / (n - 2)); nan when n == 2 (a line through two points has no residual)
    x_mean: float
    sxx: float
    level: float = LEVEL

    @property
    def dof(self) -> int:
        return self.n - 2

    def predict(self, x: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point prediction and t-based prediction interval for a NEW observation at x:

            yhat +- t_{n-2} * s * sqrt(1 + 1/n + (x - xbar)^2 / Sxx)

        It widens with the distance from the fitted range (extrapolation is what it is used for) and is
        infinitely wide (nan) when the fit has no residual degrees of freedom.
        """
        x = np.asarray(x, dtype=float)
        yhat = self.intercept + self.slope * x
        if self.dof < 1:
            nan = np.full_like(yhat, np.nan)
            return yhat, nan, nan
        t = float(stats.t.ppf(0.5 + self.level / 2.0, self.dof))
        half = t * self.residual_std * np.sqrt(1.0 + 1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        return yhat, yhat - half, yhat + half


def fit_line(x: np.ndarray, y: np.ndarray, level: float = LEVEL) -> LinearFit:
    """OLS line through (x, y); needs two distinct x values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError(f"a line fit needs >= 2 points with x and y of equal length, got {len(x)} and {len(y)}")
    x_mean = float(x.mean())
    sxx = float(((x - x_mean) ** 2).sum())
    if sxx <= 0:
        raise ConfigError(f"a line fit needs >= 2 distinct x values, got {sorted(set(x.tolist()))}")
    slope = float(((x - x_mean) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x_mean)
    residuals = y - (intercept + slope * x)
    dof = len(x) - 2
    residual_std = float(np.sqrt((residuals**2).sum() / dof)) if dof > 0 else float("nan")
    return LinearFit(len(x), intercept, slope, residual_std, x_mean, sxx, level)


def leave_one_out(x: np.ndarray, y: np.ndarray, level: float = LEVEL) -> pd.DataFrame:
    """Refit without each point and predict it: one row per point with prediction, interval, error, covered.

    Needs >= 3 points (each refit keeps >= 2); intervals need >= 4 (each refit keeps a residual dof).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3:
        raise ConfigError(f"leave-one-out needs >= 3 points, got {len(x)}")
    rows = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        fit = fit_line(x[keep], y[keep], level)
        yhat, low, high = (float(v) for v in fit.predict(x[i]))
        covered = bool(low <= y[i] <= high) if np.isfinite(low) else None
        rows.append(dict(x=float(x[i]), observed=float(y[i]), predicted=yhat, pi_low=low, pi_high=high,
                         error=yhat - float(y[i]), covered=covered))
    return pd.DataFrame(rows)


def _rmse(errors: pd.Series) -> float:
    return float(np.sqrt((np.asarray(errors, dtype=float) ** 2).mean()))


# --------------------------------------------------------------------------------------------------------------
# Proxy A: the text proxy
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    """Pearson r across n paired conditions with two 95% intervals.

    `ci_low/ci_high`: Fisher z (atanh r +- z / sqrt(n - 3)); exact in the limit of bivariate normal data, needs
    n >= 4 (nan otherwise). `boot_low/boot_high`: percentile bootstrap that resamples conditions AND draws each
    IE value from its own measurement interval (normal approximation), so a correlation of noisy IE values is
    not reported tighter than their noise allows.
    """

    n: int
    pearson_r: float
    ci_low: float
    ci_high: float
    spearman_rho: float
    boot_low: float
    boot_high: float


def fisher_interval(r: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    if n < 4 or not np.isfinite(r):
        return float("nan"), float("nan")
    if abs(r) >= 1.0:
        return float(r), float(r)
    half = _z(level) / math.sqrt(n - 3)
    z = math.atanh(r)
    return math.tanh(z - half), math.tanh(z + half)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def correlate(
    x: np.ndarray,
    y: np.ndarray,
    x_se: np.ndarray | None = None,
    y_se: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = LEVEL,
) -> Correlation:
    """Correlation of paired values (e.g. proxy IE vs target IE per condition) with its intervals."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or len(y) != n:
        raise ConfigError(f"a correlation across conditions needs >= 3 paired conditions, got {n}; add corpora "
                          "or shot counts (or text sources) measured by both models")
    r = _pearson(x, y)
    low, high = fisher_interval(r, n, level)
    rho = float(stats.spearmanr(x, y).statistic) if np.std(x) > 0 and np.std(y) > 0 else float("nan")
    x_se = np.zeros(n) if x_se is None else np.nan_to_num(np.asarray(x_se, dtype=float))
    y_se = np.zeros(n) if y_se is None else np.nan_to_num(np.asarray(y_se, dtype=float))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_boot, n))
    xb = x[picks] + rng.standard_normal((n_boot, n)) * x_se[picks]
    yb = y[picks] + rng.standard_normal((n_boot, n)) * y_se[picks]
    xc, yc = xb - xb.mean(axis=1, keepdims=True), yb - yb.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rb = (xc * yc).sum(axis=1) / denom
    rb = rb[np.isfinite(rb)]  # a resample that drew one condition n times has no correlation
    alpha = (1.0 - level) / 2.0
    boot = (float(np.quantile(rb, alpha)), float(np.quantile(rb, 1 - alpha))) if len(rb) else (np.nan, np.nan)
    return Correlation(n, r, low, high, rho, *boot)


@dataclass
class TextProxy:
    """Proxy A for one (measuring model, target model) pair: correlation across conditions, calibration and its
    leave-one-condition-out error. `table` holds one row per condition (both IEs, LOO prediction, error)."""

    proxy_model: str
    target_model: str
    statistic: str
    correlation: Correlation
    calibration: LinearFit
    loo_rmse: float
    loo_mae: float
    table: pd.DataFrame

    def summary_row(self) -> dict:
        c = self.correlation
        return dict(proxy=self.proxy_model, target=self.target_model, statistic=self.statistic, n_conditions=c.n,
                    pearson_r=c.pearson_r, r_ci_low=c.ci_low, r_ci_high=c.ci_high, r_boot_low=c.boot_low,
                    r_boot_high=c.boot_high, spearman_rho=c.spearman_rho, calib_slope=self.calibration.slope,
                    calib_intercept=self.calibration.intercept, loo_rmse_bits=self.loo_rmse,
                    loo_mae_bits=self.loo_mae)


def text_proxy(models: pd.DataFrame, proxy_model: str, target_model: str,
               statistic: str = "ie_mean_bits", seed: int = 0) -> TextProxy:
    """Validate `proxy_model` as a measuring instrument for `target_model` across the conditions both measured.

    `models` is the model-level table (models.csv): one row per (model, corpus, shots). A condition is a
    (corpus, shots) pair; for human-vs-generated text the corpus label names the text source.
    """
    low_col, high_col = interval_columns(statistic)
    present = set(models.model)
    for name in (proxy_model, target_model):
        if name not in present:
            raise ConfigError(f"model {name!r} is not in this run; models measured: {sorted(present)}")
    if proxy_model == target_model:
        raise ConfigError(f"proxy and target are the same model ({proxy_model!r}); pick two different models")
    cols = CONDITION_KEYS + [statistic, low_col, high_col]
    pair = models[models.model == proxy_model][cols].merge(
        models[models.model == target_model][cols], on=CONDITION_KEYS, suffixes=("_proxy", "_target"))
    # a condition whose IE is NaN (an estimate that failed twice, see reduce/mine_reading.py) cannot be paired
    finite = np.isfinite(pair[[f"{statistic}_proxy", f"{statistic}_target"]].astype(float)).all(axis=1)
    pair = pair[finite].sort_values(CONDITION_KEYS).reset_index(drop=True)
    x, y = pair[f"{statistic}_proxy"].to_numpy(), pair[f"{statistic}_target"].to_numpy()
    x_se = standard_error(pair[f"{low_col}_proxy"], pair[f"{high_col}_proxy"])
    y_se = standard_error(pair[f"{low_col}_target"], pair[f"{high_col}_target"])
    correlation = correlate(x, y, x_se, y_se, seed=seed)
    calibration = fit_line(x, y)
    loo = leave_one_out(x, y)
    table = pd.DataFrame({
        "corpus": pair.corpus, "shots": pair.shots, "proxy_ie_bits": x, "proxy_se_bits": x_se,
        "target_ie_bits": y, "target_se_bits": y_se, "loo_predicted_bits": loo.predicted,
        "loo_pi_low": loo.pi_low, "loo_pi_high": loo.pi_high, "loo_error_bits": loo.error,
    })
    return TextProxy(proxy_model, target_model, statistic, correlation, calibration,
                     _rmse(loo.error), float(loo.error.abs().mean()), table)


# --------------------------------------------------------------------------------------------------------------
# Proxy B: scaling extrapolation
# --------------------------------------------------------------------------------------------------------------

# Size words and size tokens that differ between members of one family: "gpt2-xl", "open_llama_3b",
# "Qwen2.5-0.5B", "pythia-70m-deduped", "smollm2-135m".
_SIZE_TOKEN = re.compile(r"^(\d+(\.\d+)?[kmbt]|\d+x\d+(\.\d+)?[kmbt]|small|medium|large|xl|xxl|base)$", re.IGNORECASE)


def family_of(name: str) -> str:
    """The scaling family of a model name: its last path component, lower-cased, without size tokens.

    gpt2 / gpt2-medium / gpt2-xl -> gpt2; openlm-research/open_llama_3b -> open-llama; Qwen/Qwen2.5-7B ->
    qwen2.5; EleutherAI/pythia-410m-deduped -> pythia-deduped. The architecture (`model_type`) is not enough:
    SmolLM2 and OpenLlama are both `llama` but are not one family. Override with an explicit mapping when a
    name does not follow the pattern.
    """
    from ie_ray.family.registry import family_name_of

    trained = family_name_of(name)  # family-kjv-xl -> family-kjv (size names s, m, l are not size tokens)
    if trained:
        return trained
    base = str(name).rstrip("/").split("/")[-1].lower()
    kept = [tok for tok in re.split(r"[-_]", base) if tok and not _SIZE_TOKEN.match(tok)]
    return "-".join(kept) or base


@dataclass
class ScalingFit:
    """Proxy B for one family and condition: the line, its predictions and its leave-one-out validation."""

    family: str
    corpus: str
    shots: int
    statistic: str
    fit: LinearFit
    members: pd.DataFrame  # model, n_params, log10_params, ie, flag
    predictions: pd.DataFrame  # n_params, log10_params, predicted, pi_low, pi_high
    loo: pd.DataFrame  # model, n_params, observed, predicted, pi_low, pi_high, error, covered, largest

    @property
    def loo_rmse(self) -> float:
        return _rmse(self.loo.error)

    @property
    def loo_mae(self) -> float:
        return float(self.loo.error.abs().mean())

    @property
    def largest_error(self) -> float:
        """Error when the largest member is predicted from the smaller ones: the extrapolation test."""
        return float(self.loo[self.loo.largest].error.iloc[0])

    @property
    def n_members_flagged(self) -> int:
        return int((self.members.flag != "ok").sum())

    @property
    def flag(self) -> str:
        """`ok` only if every member's model-level reading is; a line through failed readings is not a result."""
        return "ok" if self.n_members_flagged == 0 else "members_flagged"

    def summary_row(self) -> dict:
        return dict(family=self.family, corpus=self.corpus, shots=self.shots, statistic=self.statistic,
                    n_models=self.fit.n, n_members_flagged=self.n_members_flagged, flag=self.flag,
                    slope_bits_per_decade=self.fit.slope, intercept=self.fit.intercept,
                    residual_std=self.fit.residual_std, loo_rmse_bits=self.loo_rmse, loo_mae_bits=self.loo_mae,
                    largest_loo_error_bits=self.largest_error,
                    loo_coverage=_coverage(self.loo.covered))


def _coverage(covered: pd.Series) -> float:
    defined = [c for c in covered if c is not None and not (isinstance(c, float) and math.isnan(c))]
    return float(np.mean(defined)) if defined else float("nan")


def scaling_fit(
    models: pd.DataFrame,
    family: str,
    predict_params: list[float] | tuple[float, ...] = (),
    statistic: str = "ie_mean_bits",
    families: dict[str, str] | None = None,
) -> list[ScalingFit]:
    """Fit model-level IE against log10(parameters) within one family, one fit per (corpus, shots).

    `models` needs columns model, corpus, shots, n_params and `statistic`; `families` maps model -> family and
    overrides `family_of`. Refuses (ConfigError) with fewer than 3 distinct sizes: a line through two points
    has no error estimate and nothing left to validate it on.
    """
    interval_columns(statistic)
    families = dict(families or {})
    models = models[np.isfinite(models[statistic].astype(float))]  # failed estimates carry NaN: not a size
    member_of = models.model.map(lambda m: families.get(m, family_of(m)))
    rows = models[member_of == family]
    sizes = sorted(rows.n_params.unique()) if len(rows) else []
    if len(sizes) < 3:
        found = {f: sorted(set(models.model[member_of == f])) for f in sorted(set(member_of))}
        raise ConfigError(
            f"scaling extrapolation of family {family!r} needs >= 3 models of different sizes, got {len(sizes)} "
            f"({sorted(set(rows.model))}); families in this run: {found}. Add sizes of one family (e.g. "
            "jobs/configs/paper-families-gpt2.yaml) or map models to a family explicitly"
        )
    if any(p <= 0 for p in predict_params):
        raise ConfigError(f"predict_params must be positive parameter counts, got {list(predict_params)}")
    fits = []
    for (corpus, shots), part in rows.groupby(CONDITION_KEYS, sort=True):
        part = part.sort_values("n_params")
        if part.n_params.nunique() < 3:
            continue  # this condition was not measured on enough sizes
        x = np.log10(part.n_params.to_numpy(dtype=float))
        y = part[statistic].to_numpy(dtype=float)
        fit = fit_line(x, y)
        targets = np.log10(np.asarray(predict_params, dtype=float))
        yhat, low, high = fit.predict(targets)
        predictions = pd.DataFrame(dict(n_params=list(predict_params), log10_params=targets, predicted=yhat,
                                        pi_low=low, pi_high=high))
        loo = leave_one_out(x, y)
        # a model-level flag other than ok (any layer's reading failed or is undersampled) travels with the
        # member into the fit's summary and its leave-one-out rows
        flags = (part.flag.fillna("ok").replace("", "ok").astype(str).to_numpy() if "flag" in part
                 else np.full(len(part), "ok"))
        loo.insert(0, "model", part.model.to_numpy())
        loo.insert(1, "n_params", part.n_params.to_numpy())
        loo["largest"] = loo.n_params == loo.n_params.max()
        loo["member_flag"] = flags
        members = pd.DataFrame(dict(model=part.model.to_numpy(), n_params=part.n_params.to_numpy(),
                                    log10_params=x, ie=y, flag=flags))
        fits.append(ScalingFit(family, str(corpus), int(shots), statistic, fit, members, predictions,
                               loo.drop(columns="x")))
    return fits


def scalable_families(models: pd.DataFrame, families: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Families of the run with >= 3 distinct sizes (what Proxy B can be fitted on), each with its models."""
    families = dict(families or {})
    sizes = models.groupby("model").n_params.first()
    by_family: dict[str, dict[str, int]] = {}
    for model, n in sizes.items():
        by_family.setdefault(families.get(model, family_of(model)), {})[model] = int(n)
    return {f: sorted(m, key=m.__getitem__) for f, m in sorted(by_family.items()) if len(set(m.values())) >= 3}
