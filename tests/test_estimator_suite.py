"""The estimator suite against closed-form MI: each neural objective (NWJ, InfoNCE, SMILE, MINE's moving-average
DV; DV itself is covered by test_mine.py) and the Gaussian baseline recover correlated-Gaussian MI and read
about zero on independent variables; the ensemble still equals one-by-one fitting for the new objectives;
bad parameters are rejected by name.

Kept under a minute at one thread: each objective fits the correlated and the independent problem as one
ensemble of two, and the held-out readout uses 128 marginal shifts (102,400 marginal pairs) instead of 512 and 50
bootstrap replicates; neither changes training. InfoNCE scores all 256^2 pairs of each batch, ~128 times a
DV step, so it runs with a narrower critic, fewer steps and a higher learning rate (at the full defaults it lands
at 2.44 bits for the truth of 2.5 here, in ~3 minutes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ie_ray.estimators import (
    MINEParams,
    estimate_gaussian,
    estimate_mine,
    fit_mine_ensemble,
    gaussian_mi_bits,
    ledoit_wolf_shrinkage,
)
from ie_ray.estimators.benchmark import correlated_gaussians, independent_gaussians

from ensemble_pairs import ensemble_and_alone  # tests/ is on sys.path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D, TRUE_MI, N = 8, 2.5, 4000
#: Readout settings only (see the module docstring); training is at the defaults.
FAST_READOUT = dict(marginal_shifts=128, n_bootstrap=50, threads=1)
NEURAL = {
    "nwj": MINEParams(objective="nwj", **FAST_READOUT),
    "smile": MINEParams(objective="smile", **FAST_READOUT),
    "mine_ema": MINEParams(objective="mine_ema", **FAST_READOUT),
    "infonce": MINEParams(objective="infonce", min_width=64, steps=200, lr=1e-2, **FAST_READOUT),
}


@pytest.fixture(scope="module")
def problems() -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of shape (2, N, D): correlated Gaussians with MI = TRUE_MI, then independent ones."""
    pairs = [correlated_gaussians(D, TRUE_MI, N, seed=8), independent_gaussians(D, N, seed=9)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.mark.parametrize("objective", list(NEURAL))
def test_neural_objective_recovers_gaussian_mi_and_zero_when_independent(objective: str, problems) -> None:
    params = NEURAL[objective]
    correlated, independent = fit_mine_ensemble(*problems, params, seeds=[0, 1])
    for result in (correlated, independent):
        assert result.ok and result.objective == objective, result.to_row()
        assert result.ci_low <= result.mi_bits <= result.ci_high, result.to_row()
    assert abs(correlated.mi_bits - TRUE_MI) <= 0.2 * TRUE_MI, correlated.to_row()
    assert abs(independent.mi_bits) < 0.2, independent.to_row()
    if objective == "infonce":
        # No critic can read more than log2(B) bits from a batch of B; the held-out chunks are <= B rows.
        assert correlated.mi_bits <= correlated.bound_cap_bits <= math.log2(params.batch_size)
        assert np.nanmax(correlated.curve) <= math.log2(params.batch_size) + 1e-5
    else:
        assert correlated.bound_cap_bits == math.inf


def test_infonce_saturates_at_its_cap() -> None:
    # 6 bits of MI with batches of 8: the bound cannot pass log2(8) = 3 bits, however good the critic.
    x, y = correlated_gaussians(4, 6.0, 1000, seed=0)
    params = MINEParams(
        objective="infonce", batch_size=8, steps=300, lr=1e-2, min_width=32, n_bootstrap=10, threads=1
    )
    result = estimate_mine(x, y, params, seed=0)
    assert result.bound_cap_bits == pytest.approx(3.0)
    assert 2.0 < result.mi_bits <= 3.0, result.to_row()
    assert np.nanmax(result.curve) <= 3.0 + 1e-5


@pytest.mark.parametrize("objective", ["nwj", "mine_ema", "infonce"])
def test_ensemble_equals_one_by_one(objective: str) -> None:
    params = MINEParams(objective=objective, steps=60, batch_size=64, min_width=16, n_bootstrap=20, threads=1)
    for joint, alone in ensemble_and_alone(params):
        assert joint.heldout_bits == pytest.approx(alone.heldout_bits, abs=1e-5)
        np.testing.assert_allclose(joint.curve, alone.curve, atol=1e-5)
        np.testing.assert_allclose(joint.bootstrap, alone.bootstrap, atol=1e-5)


def test_smile_with_a_huge_clip_is_dv() -> None:
    x, y = correlated_gaussians(4, 2.0, 600, seed=0)
    quick = dict(steps=40, batch_size=128, n_bootstrap=10, threads=1)
    smile = estimate_mine(x, y, MINEParams(objective="smile", smile_tau=1e6, **quick), seed=0)
    dv = estimate_mine(x, y, MINEParams(objective="dv", **quick), seed=0)
    assert smile.mi_bits == dv.mi_bits
    np.testing.assert_array_equal(smile.curve, dv.curve)


def test_gaussian_estimator_recovers_gaussian_mi_and_zero_when_independent() -> None:
    x, y = correlated_gaussians(D, TRUE_MI, N, seed=8)
    plain = estimate_gaussian(x, y, shrinkage=0.0, n_bootstrap=50)
    shrunk = estimate_gaussian(x, y, n_bootstrap=50)
    assert plain.readout == shrunk.readout == "gaussian" and plain.ok and shrunk.ok
    assert abs(plain.mi_bits - TRUE_MI) <= 0.05 * TRUE_MI, plain.to_row()
    assert abs(shrunk.mi_bits - TRUE_MI) <= 0.15 * TRUE_MI, shrunk.to_row()
    assert abs(plain.heldout_bits - TRUE_MI) <= 0.1 * TRUE_MI, plain.to_row()
    assert plain.ci_low <= plain.mi_bits <= plain.ci_high
    assert plain.n_train + plain.n_heldout == N and plain.curve.size == 0
    xi, yi = independent_gaussians(D, N, seed=9)
    for shrinkage in (0.0, None):
        assert abs(estimate_gaussian(xi, yi, shrinkage, n_bootstrap=10).mi_bits) < 0.2


def test_gaussian_estimator_is_invariant_to_invertible_linear_maps() -> None:
    x, y = correlated_gaussians(4, 2.0, 2000, seed=1)
    mix = np.random.default_rng(0).standard_normal((4, 4))
    assert gaussian_mi_bits(x @ mix, 100.0 * y, 0.0) == pytest.approx(gaussian_mi_bits(x, y, 0.0), abs=1e-6)


def _ledoit_wolf_by_definition(z: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(S, mu, intensity) of centred rows z written out from Ledoit-Wolf's definitions: S = z'z / n,
    mu = tr S / p, intensity min(b^2, d^2) / d^2 with b^2 summed row by row."""
    n, p = z.shape
    s = z.T @ z / n
    mu = np.trace(s) / p
    d2 = np.sum((s - mu * np.eye(p)) ** 2) / p
    b2 = sum(np.sum((np.outer(row, row) - s) ** 2) / p for row in z) / n**2
    return s, mu, min(b2, d2) / d2


def test_ledoit_wolf_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 5))
    z -= z.mean(axis=0)
    assert ledoit_wolf_shrinkage(z) == pytest.approx(_ledoit_wolf_by_definition(z)[2], rel=1e-10)
    assert ledoit_wolf_shrinkage(np.random.default_rng(1).standard_normal((20, 40))) > 0.5


def _shrunk_gaussian_mi_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """The Ledoit-Wolf-shrunk Gaussian MI from its definitions: standardise, S -> (1 - delta) S + delta mu I,
    MI from three slogdets."""
    z = np.concatenate([x, y], axis=1).astype(np.float64)
    s, mu, delta = _ledoit_wolf_by_definition((z - z.mean(axis=0)) / z.std(axis=0))
    shrunk = (1 - delta) * s + delta * mu * np.eye(s.shape[0])
    dx = x.shape[1]
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return 0.5 * (logdet(shrunk[:dx, :dx]) + logdet(shrunk[dx:, dx:]) - logdet(shrunk)) / math.log(2)


def test_shrinkage_is_what_makes_more_dims_than_rows_mean_anything() -> None:
    # 100 rows of 60 + 60 dims (as LM states: fewer rows than dims): the sample covariance is singular.
    x, y = correlated_gaussians(60, 2.0, 100, seed=0)
    plain = estimate_gaussian(x, y, shrinkage=0.0, n_bootstrap=5)
    assert plain.flag == "nan" and math.isnan(plain.mi_bits)
    # Shrinkage makes it finite, and it is exactly the shrunk covariance's MI (by definition, independently):
    assert gaussian_mi_bits(x, y) == pytest.approx(_shrunk_gaussian_mi_by_definition(x, y), abs=1e-9)
    shrunk = estimate_gaussian(x, y, n_bootstrap=5)
    assert shrunk.ok and shrunk.ci_low <= shrunk.mi_bits <= shrunk.ci_high, shrunk.to_row()
    # ... but not the truth: on 80 train rows the Ledoit-Wolf intensity is ~0.96, which shrinks the per-dim
    # correlation of 0.21 to ~0.01, so the reading is a small, conservative fraction of the 2 bits (measured
    # 0.039 bits). Forced, it climbs toward the truth only slowly as rows are added (0.44 bits at 2,000 rows,
    # 1.16 at 8,000); the rule leaves it from 2 (dx + dy) = 240 train rows on, for the bias-corrected form.
    assert shrunk.form == "shrunk" and 0.01 < shrunk.mi_bits < 0.1, shrunk.to_row()
    x, y = correlated_gaussians(60, 2.0, 2000, seed=0)
    assert 0.3 < estimate_gaussian(x, y, "ledoit_wolf", n_bootstrap=2).mi_bits < 0.6
    more = estimate_gaussian(x, y, n_bootstrap=2)
    assert more.form == "cca_corrected" and abs(more.mi_bits - 2.0) < 3 * more.se_bits, more.to_row()


def test_gaussian_estimator_drops_constant_dims() -> None:
    x, y = correlated_gaussians(4, 2.0, 1000, seed=0)
    padded = np.concatenate([x, np.full((1000, 3), 7.0, np.float32)], axis=1)
    assert gaussian_mi_bits(padded, y, 0.0) == pytest.approx(gaussian_mi_bits(x, y, 0.0), abs=1e-9)
    assert gaussian_mi_bits(np.ones((1000, 2)), y) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"objective": "jsd"}, r"objective must be one of \['dv', 'nwj', 'infonce', 'smile', 'mine_ema', 'js'\], got 'jsd'"),
        ({"objective": "infonce", "batch_size": None}, "objective='infonce' scores all B\\^2 pairs"),
        ({"smile_tau": 0.0}, "smile_tau must be > 0"),
        ({"ema_rate": 0.0}, r"ema_rate must be in \(0, 1\]"),
    ],
)
def test_objective_validation_messages(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MINEParams(**kwargs).validate()
    with pytest.raises(ValueError, match=match):
        MINEParams.from_dict(kwargs)


def test_gaussian_validation_messages() -> None:
    x, y = correlated_gaussians(2, 1.0, 100, seed=0)
    with pytest.raises(ValueError, match="shrinkage must be in"):
        estimate_gaussian(x, y, shrinkage=1.5)
    with pytest.raises(ValueError, match="same N"):
        estimate_gaussian(x, y[:50])
    with pytest.raises(ValueError, match="need at least 2"):
        estimate_gaussian(x[:5], y[:5])



def test_noise_regularised_mi_matches_its_closed_form() -> None:
    """x = y exactly (infinite MI for continuous variables); with isotropic noise of std s on each side the MI
    is finite: per dim rho = 1 / (1 + s^2), MI = -d/2 log2(1 - rho^2) bits."""
    import dataclasses

    import numpy as np

    from ie_ray.estimators import MINEParams, fit_mine_ensemble

    d, n, fraction = 4, 4000, 0.5
    x = np.random.default_rng(3).standard_normal((n, d)).astype(np.float32)
    rho = 1.0 / (1.0 + fraction**2)
    truth = -d / 2 * np.log2(1 - rho**2)
    params = dataclasses.replace(MINEParams(), noise_fraction=fraction, threads=1, marginal_shifts=128,
                                 n_bootstrap=50)
    result = fit_mine_ensemble(x[None], x[None], params, [0])[0]
    assert abs(result.mi_bits - truth) / truth < 0.2, (result.mi_bits, truth)
    # the same seed draws the same noise: the number is reproducible
    again = fit_mine_ensemble(x[None], x[None], params, [0])[0]
    assert again.mi_bits == result.mi_bits


def test_noise_fraction_must_be_non_negative() -> None:
    import dataclasses

    import pytest as _pytest

    from ie_ray.estimators import MINEParams

    with _pytest.raises(ValueError, match="noise_fraction"):
        dataclasses.replace(MINEParams(), noise_fraction=-0.1).validate()
