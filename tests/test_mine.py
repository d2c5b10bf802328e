"""MINE-DV estimator: accuracy on closed-form Gaussians, independence, ensemble == one-by-one, NaN isolation,
determinism, parameter validation and the paper preset's network."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ie_ray.estimators import (
    EnsembleFunnelCritic,
    MINEParams,
    MIResult,
    estimate_mine,
    fit_mine_ensemble,
    funnel_widths,
)
from ie_ray.estimators.benchmark import correlated_gaussians
from ie_ray.estimators.mine import poly_decay_with_warmup

#: Short, cheap settings for the tests that check plumbing rather than accuracy.
QUICK = MINEParams(steps=40, batch_size=128, n_bootstrap=50)


def gaussian_mi_bits(rho: float, d: int) -> float:
    """MI of d independent coordinate pairs of correlation rho: -d/2 log2(1 - rho^2)."""
    return -d / 2 * math.log2(1 - rho**2)


@pytest.mark.parametrize(("d", "mi_bits"), [(1, 0.5), (16, 3.0)])
def test_correlated_gaussians_have_the_mi_they_claim(d: int, mi_bits: float) -> None:
    # The generator every accuracy test stands on: measured on 200k rows, each coordinate pair has the same
    # correlation, the pairs are uncorrelated with each other (the closed form assumes both), and the MI of the
    # measured correlations is the requested one.
    x, y = correlated_gaussians(d, mi_bits, 200_000, seed=0)
    corr = np.corrcoef(np.concatenate([x, y], axis=1), rowvar=False)
    within = np.diagonal(corr[:d, d:])
    rho = float(np.mean(within))
    assert np.ptp(within) < 0.02, within
    off = corr[:d, d:] - np.diag(within)
    assert np.abs(off).max() < 0.015 and np.abs(corr[:d, :d] - np.eye(d)).max() < 0.015
    assert gaussian_mi_bits(rho, d) == pytest.approx(mi_bits, abs=0.01 + 0.01 * mi_bits)


@pytest.mark.parametrize(("d", "mi_bits", "n"), [(4, 3.0, 6000), (16, 3.0, 6000)])
def test_default_estimator_recovers_gaussian_mi(d: int, mi_bits: float, n: int) -> None:
    x, y = correlated_gaussians(d, mi_bits, n, seed=d)
    result = estimate_mine(x, y, MINEParams(), seed=1)
    assert result.flag == "ok"
    assert result.readout == "heldout" and result.mi_bits == result.heldout_bits
    assert abs(result.mi_bits - mi_bits) <= 0.15 * mi_bits, result.to_row()
    assert result.ci_low <= result.mi_bits <= result.ci_high
    assert result.n_train + result.n_heldout == n == result.n_samples


def test_independent_variables_give_about_zero() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4000, 8)).astype(np.float32)
    y = rng.standard_normal((4000, 8)).astype(np.float32)
    result = estimate_mine(x, y, MINEParams(), seed=0)
    assert abs(result.mi_bits) < 0.15, result.to_row()


@pytest.mark.parametrize("n_layers", [2, 5])
def test_ensemble_equals_one_by_one(n_layers: int) -> None:
    # Bitwise equal on this CPU build for these shapes. Caveat: with x or y of <= ~6 dims, MKL splits the
    # first layer's weight-gradient matmul across threads when E = 1 but not when E > 1, so values then agree
    # to rounding at each step, which a few hundred steps of training can grow to ~1e-4 bits.
    params = MINEParams(steps=100, batch_size=128, n_bootstrap=50, n_layers=n_layers, min_width=16)
    problems = [correlated_gaussians(16, 1.0 + i, 600, seed=i) for i in range(3)]
    xs = np.stack([p[0] for p in problems])
    ys = np.stack([p[1] for p in problems])
    seeds = [11, 12, 13]
    together = fit_mine_ensemble(xs, ys, params, seeds)
    for (x, y), seed, joint in zip(problems, seeds, together):
        alone = estimate_mine(x, y, params, seed=seed)
        assert joint.heldout_bits == pytest.approx(alone.heldout_bits, abs=1e-5)
        assert joint.max_train_bits == pytest.approx(alone.max_train_bits, abs=1e-5)
        np.testing.assert_allclose(joint.curve, alone.curve, atol=1e-5)
        np.testing.assert_allclose(joint.bootstrap, alone.bootstrap, atol=1e-5)


def test_chunked_ensemble_gives_the_same_values_as_one_ensemble() -> None:
    params = MINEParams(steps=60, batch_size=128, n_bootstrap=30, min_width=16)
    problems = [correlated_gaussians(16, 0.5 + i, 600, seed=i) for i in range(5)]
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    seeds = [3, 1, 4, 1, 5]
    whole = fit_mine_ensemble(xs, ys, params, seeds, chunk_size=5)
    for chunk in (1, 2, 3):
        parts = fit_mine_ensemble(xs, ys, params, seeds, chunk_size=chunk)
        assert [r.seed for r in parts] == seeds
        for a, b in zip(whole, parts):
            assert a.heldout_bits == pytest.approx(b.heldout_bits, abs=1e-5)
            np.testing.assert_allclose(a.curve, b.curve, atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        fit_mine_ensemble(xs, ys, params, seeds, chunk_size=-1)


def test_auto_chunk_shrinks_as_the_critic_grows() -> None:
    from ie_ray.estimators.mine import ENSEMBLE_CHUNK_BYTES, ensemble_chunk_size

    small = ensemble_chunk_size(MINEParams(min_width=16, batch_size=64), 2000, 8, 8)
    default = ensemble_chunk_size(MINEParams(), 2000, 64, 64)
    huge = ensemble_chunk_size(MINEParams(), 2000, 768, 768)
    assert small > default >= huge >= 1
    # the default critic at d = 64 (2 x 256 rows x 512 units) is a few MB per estimator: ~200 per chunk
    assert default == ENSEMBLE_CHUNK_BYTES // (4 * (4 * 2 * 256 * 512 + 4 * 128 * 512))


def test_early_stopping_keeps_the_best_checkpoint_and_stays_ensemble_exact() -> None:
    # 64-dim Gaussians with 600 pairs: the default critic memorises them, so the final critic's held-out bound
    # drops below the best checkpoint's; with early stopping the held-out split is still unseen by the choice.
    params = MINEParams(steps=200, batch_size=128, n_bootstrap=30, early_stop_fraction=0.25)
    problems = [correlated_gaussians(64, 1.0 + i, 600, seed=i) for i in range(2)]
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    stopped = fit_mine_ensemble(xs, ys, params, [5, 6])
    plain = fit_mine_ensemble(xs, ys, replace(params, early_stop_fraction=0.0), [5, 6])
    assert stopped[0].n_train == 360 and stopped[0].n_heldout == 120 and plain[0].n_train == 480
    assert np.mean([r.mi_bits for r in stopped]) > np.mean([r.mi_bits for r in plain])
    for (x, y), seed, joint in zip(problems, [5, 6], stopped):
        alone = estimate_mine(x, y, params, seed=seed)
        assert joint.heldout_bits == pytest.approx(alone.heldout_bits, abs=1e-5)
    with pytest.raises(ValueError, match="early_stop_fraction must be in"):
        MINEParams(early_stop_fraction=1.0).validate()


def test_cache_keys_ignore_options_added_later_while_they_are_off() -> None:
    assert "early_stop_fraction" not in MINEParams().key_dict()
    assert MINEParams(early_stop_fraction=0.2).key_dict()["early_stop_fraction"] == 0.2
    # the key of the defaults is the key from before these options existed
    added_later = {"early_stop_fraction", "critic", "embed_dim", "embed_layers", "embed_width", "joint_width",
                   "early_stop_every", "early_stop_patience", "sampling", "init", "activation", "hidden_width",
                   "readout_clip", "readout_batch", "device", "marginals"}
    assert MINEParams().key_dict() == {k: v for k, v in MINEParams().to_dict().items() if k not in added_later}


def test_same_seed_same_number_and_different_seed_differs() -> None:
    x, y = correlated_gaussians(4, 2.0, 600, seed=0)
    a = estimate_mine(x, y, QUICK, seed=3)
    b = estimate_mine(x, y, QUICK, seed=3)
    c = estimate_mine(x, y, QUICK, seed=4)
    assert a.mi_bits == b.mi_bits
    np.testing.assert_array_equal(a.curve, b.curve)
    np.testing.assert_array_equal(a.bootstrap, b.bootstrap)
    assert a.mi_bits != c.mi_bits


def test_nan_in_one_estimator_flags_it_and_spares_the_others() -> None:
    problems = [correlated_gaussians(4, 2.0, 600, seed=i) for i in range(3)]
    xs = np.stack([p[0] for p in problems])
    ys = np.stack([p[1] for p in problems])
    clean = fit_mine_ensemble(xs, ys, QUICK, [0, 1, 2])
    xs[1, 5, 2] = np.inf
    poisoned = fit_mine_ensemble(xs, ys, QUICK, [0, 1, 2])
    assert [r.flag for r in poisoned] == ["ok", "nan", "ok"]
    assert not poisoned[1].ok
    for i in (0, 2):
        assert poisoned[i].mi_bits == pytest.approx(clean[i].mi_bits, abs=1e-5)
        assert np.isfinite(poisoned[i].curve).all()


def test_divergence_midway_freezes_the_estimator_and_keeps_its_best_training_value() -> None:
    # An absurd learning rate makes a deep critic overflow after the (finite) first steps: training of this
    # estimator stops there, and like the reference code it keeps the best bound seen before the NaN.
    x, y = correlated_gaussians(4, 2.0, 600, seed=0)
    params = MINEParams(steps=20, batch_size=128, lr=100.0, lr_end=0.0, n_layers=10, n_bootstrap=10)
    result = estimate_mine(x, y, params, seed=0)
    assert result.flag == "nan"
    finite = np.isfinite(result.curve)
    assert finite[0] and not finite[-1]
    assert result.max_train_bits == pytest.approx(float(np.max(result.curve[finite])))


def test_max_readout_without_heldout_collapses_the_interval() -> None:
    x, y = correlated_gaussians(4, 2.0, 500, seed=0)
    params = MINEParams(steps=40, batch_size=None, readout="max", heldout_fraction=0.0, n_bootstrap=30)
    result = estimate_mine(x, y, params, seed=0)
    assert result.mi_bits == result.max_train_bits == pytest.approx(np.nanmax(result.curve), abs=1e-6)
    assert math.isnan(result.heldout_bits)
    assert result.ci_low == result.ci_high == result.mi_bits
    np.testing.assert_array_equal(result.bootstrap, np.full(30, result.mi_bits))
    assert result.n_heldout == 0 and result.n_train == 500


def test_result_types_and_row() -> None:
    x, y = correlated_gaussians(4, 2.0, 500, seed=0)
    result = estimate_mine(x, y, QUICK, seed=0)
    assert isinstance(result, MIResult)
    assert result.bootstrap.dtype == np.float64 and result.bootstrap.shape == (QUICK.n_bootstrap,)
    assert result.curve.dtype == np.float32 and result.curve.shape == (QUICK.steps,)
    assert result.wall_s > 0
    row = result.to_row()
    assert all(np.isscalar(v) for v in row.values()), row
    assert row["flag"] == "ok" and row["steps"] == QUICK.steps
    with pytest.raises(AttributeError):
        result.mi_bits = 0.0  # type: ignore[misc]


def test_threads_setting_is_restored() -> None:
    before = torch.get_num_threads()
    x, y = correlated_gaussians(4, 2.0, 500, seed=0)
    estimate_mine(x, y, MINEParams(steps=5, batch_size=64, threads=1, n_bootstrap=5), seed=0)
    assert torch.get_num_threads() == before


def test_max_dims_slices_the_leading_dims() -> None:
    x, y = correlated_gaussians(6, 2.0, 500, seed=0)
    sliced = estimate_mine(x, y, MINEParams(steps=20, batch_size=128, max_dims=3, n_bootstrap=10), seed=0)
    manual = estimate_mine(x[:, :3], y[:, :3], MINEParams(steps=20, batch_size=128, n_bootstrap=10), seed=0)
    assert sliced.mi_bits == pytest.approx(manual.mi_bits, abs=1e-6)


def test_constant_dims_do_not_blow_up_standardisation() -> None:
    x, y = correlated_gaussians(4, 2.0, 500, seed=0)
    x = np.concatenate([x, np.full((500, 2), 5.0, np.float32)], axis=1)
    result = estimate_mine(x, y, QUICK, seed=0)
    assert result.flag == "ok" and np.isfinite(result.mi_bits)


def test_paper_preset_builds_the_paper_network() -> None:
    p = MINEParams.paper()
    assert (p.steps, p.batch_size, p.lr, p.lr_end, p.warmup_steps, p.power) == (10_000, None, 1e-4, 1e-8, 5, 3.0)
    assert (p.readout, p.heldout_fraction, p.max_dims, p.standardize) == ("max", 0.0, 768, False)
    p.validate(n_samples=1000)
    gens = [torch.Generator().manual_seed(0)]
    critic = EnsembleFunnelCritic(768, 768, p.n_layers, p.min_width, gens)
    dims = [1536, 768, 384, 192, 96, 48, 24, 12, 6, 3, 1]
    assert critic.layer_shapes() == list(zip(dims[:-1], dims[1:]))
    n_params = sum(i * o + o for i, o in critic.layer_shapes())
    assert sum(t.numel() for t in critic.parameters()) == n_params


def test_split_first_layer_equals_concatenated_linear_layer() -> None:
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    critic = EnsembleFunnelCritic(5, 3, n_layers=4, min_width=2, generators=gens)
    x, y = torch.randn(2, 7, 5), torch.randn(2, 7, 3)
    w1 = torch.cat([critic.wx, critic.wy], dim=1)
    h = torch.baddbmm(critic.b0, torch.cat([x, y], dim=2), w1)
    for w, b in zip(critic.weights, critic.biases):
        h = torch.baddbmm(b, torch.nn.functional.leaky_relu(h, 0.01), w)
    torch.testing.assert_close(critic(x, y), h.squeeze(-1))


def test_funnel_widths() -> None:
    assert funnel_widths(1536, 10, 1) == [768, 384, 192, 96, 48, 24, 12, 6, 3, 1]
    assert funnel_widths(32, 4, 16) == [16, 16, 16, 1]
    assert funnel_widths(1152, 2, 512) == [576, 1]


@pytest.mark.parametrize(
    "params",
    [
        MINEParams(steps=100, lr=1e-3, lr_end=1e-7, warmup_steps=5, power=3.0),
        MINEParams(steps=37, lr=3e-3, lr_end=0.0, warmup_steps=0, power=1.0),
        MINEParams(steps=500, lr=3e-3, lr_end=1e-7, warmup_steps=50, power=0.5),
        MINEParams.paper(),
    ],
    ids=["steps100", "linear-no-warmup", "sqrt-long-warmup", "paper"],
)
def test_schedule_matches_transformers(params: MINEParams) -> None:
    """The learning rate of every step equals transformers' own `get_polynomial_decay_schedule_with_warmup`
    (the paper's schedule), driven the way `_train` drives ours: one LambdaLR step after each optimiser step."""
    from transformers import get_polynomial_decay_schedule_with_warmup

    def rates(make_scheduler) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=params.lr)
        scheduler = make_scheduler(optimizer)
        out = []
        for _ in range(params.steps + 3):  # and a few steps past the end, where both hold lr_end
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    ours = rates(lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: poly_decay_with_warmup(s, params)))
    reference = rates(lambda opt: get_polynomial_decay_schedule_with_warmup(
        opt, params.warmup_steps, params.steps, lr_end=params.lr_end, power=params.power))
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-15 * params.lr)
    assert ours[params.warmup_steps] == pytest.approx(params.lr, rel=1e-12)  # the peak, right after warmup


@pytest.mark.parametrize(
    ("kwargs", "n", "match"),
    [
        ({"batch_size": 256}, 200, r"batch_size=256 > n_train=160"),
        ({"heldout_fraction": 0.2}, 5, r"need at least 2 \(i.e. >= 10 samples\)"),
        ({"readout": "heldout", "heldout_fraction": 0.0}, None, "needs heldout_fraction > 0"),
        ({"readout": "last"}, None, "readout must be"),
        ({"lr_end": 1.0}, None, "lr_end must be"),
        ({"steps": 0}, None, "steps must be >= 1"),
        ({"batch_size": 1}, None, "batch_size must be >= 2"),
        ({"heldout_fraction": 1.0}, None, r"heldout_fraction must be in \[0, 1\)"),
    ],
)
def test_validation_messages(kwargs: dict, n: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MINEParams(**kwargs).validate(n_samples=n)


def test_fit_validates_against_the_data() -> None:
    x, y = correlated_gaussians(2, 1.0, 100, seed=0)
    with pytest.raises(ValueError, match="batch_size=256 > n_train=80"):
        estimate_mine(x, y, MINEParams())
    with pytest.raises(ValueError, match="one seed per estimator"):
        fit_mine_ensemble(x[None], y[None], QUICK, [0, 1])


def test_from_dict_rejects_unknown_keys() -> None:
    assert MINEParams.from_dict({"steps": 50}).steps == 50
    with pytest.raises(ValueError, match=r"unknown MINE parameter\(s\) \['stepz'\].*valid parameters are"):
        MINEParams.from_dict({"stepz": 50})
    with pytest.raises(ValueError, match="lr must be > 0"):
        MINEParams.from_dict({"lr": -1.0})
