"""The torch-mist recipe options of MINEParams (issue 26): they wire through, the batch-wise clipped readout equals
an independent computation, patience stops training, and the package default and the paper preset still give
the numbers they gave before these options existed (cached and published MINE numbers keep their meaning)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ie_ray.estimators import MINEParams, estimate_mine, fit_mine_ensemble
from ie_ray.estimators.benchmark import correlated_gaussians
from ie_ray.estimators.critic import EnsembleFunnelCritic
from ie_ray.estimators.mine import make_critic
from ie_ray.estimators.mine.data import split_pairs
from ie_ray.estimators.mine.readout import batch_sizes, heldout_bound, heldout_samples
from ie_ray.estimators.presets import preset_params

#: The options this file covers, all off by default (so they stay out of cache keys while off).
RECIPE_OPTIONS = ("early_stop_every", "early_stop_patience", "sampling", "init", "activation", "hidden_width",
                  "readout_clip", "readout_batch")


# Values of this problem under each preset, recorded with the code from before the recipe options existed
# (commit 36b7d84, this machine's torch 2.13.0+cpu, one thread): the defaults' code path must not move.
def _golden_problem() -> tuple[np.ndarray, np.ndarray]:
    return correlated_gaussians(4, 1.5, 400, seed=7)


@pytest.mark.parametrize(
    ("preset", "overrides", "mi_bits", "max_train_bits", "last_curve"),
    [
        ("default", {}, 1.2892003059387207, 2.4626779556274414, 1.7447444200515747),
        # the paper's settings with a short run (its 10,000 full-batch steps take minutes): same code path
        ("paper", {"steps": 300}, 3.1835790537115827e-07, 3.1835790537115827e-07, -1.0885933932058833e-07),
        ("js-es", {}, 1.2816832065582275, 2.7311723232269287, 1.9046564102172852),
    ],
)
def test_presets_give_the_numbers_they_gave_before_the_recipe_options(
    preset: str, overrides: dict, mi_bits: float, max_train_bits: float, last_curve: float
) -> None:
    x, y = _golden_problem()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = estimate_mine(x, y, preset_params(preset, **overrides), seed=3)
    finally:
        torch.set_num_threads(before)
    # Bit-identical on the machine that recorded them; 1e-6 relative leaves room for another CPU's rounding.
    assert r.mi_bits == pytest.approx(mi_bits, rel=1e-6, abs=1e-9)
    assert r.max_train_bits == pytest.approx(max_train_bits, rel=1e-6, abs=1e-9)
    assert float(r.curve[-1]) == pytest.approx(last_curve, rel=1e-6, abs=1e-9)
    assert r.curve.size == preset_params(preset, **overrides).steps


def test_recipe_options_stay_out_of_cache_keys_while_off() -> None:
    assert not set(RECIPE_OPTIONS) & set(MINEParams().key_dict())
    p = preset_params("smile-tm")
    assert {k: p.key_dict()[k] for k in ("sampling", "readout_clip", "readout_batch", "early_stop_patience")} == {
        "sampling": "epochs", "readout_clip": 5.0, "readout_batch": 128, "early_stop_patience": 1}


def test_smile_tm_preset_is_the_torch_mist_recipe() -> None:
    p = preset_params("smile-tm")
    assert (p.objective, p.critic, p.hidden_width, p.activation, p.init) == ("js", "joint", 128, "relu", "torch")
    assert (p.lr, p.lr_end, p.warmup_steps, p.batch_size, p.grad_clip, p.steps) == (5e-4, 5e-4, 0, 128, None, 5000)
    assert (p.early_stop_fraction, p.early_stop_every, p.early_stop_patience) == (0.1, None, 1)
    assert (p.readout_clip, p.readout_batch, p.standardize) == (5.0, 128, False)


def test_hidden_width_activation_and_init_shape_the_joint_critic() -> None:
    params = MINEParams(hidden_width=24, n_layers=3, init="torch", activation="relu")
    gens = [torch.Generator().manual_seed(0)]
    critic = make_critic(params, 10, 6, gens)
    assert isinstance(critic, EnsembleFunnelCritic)
    assert critic.widths == [24, 24, 1] and critic.negative_slope == 0.0
    # nn.Linear's default: weights and biases uniform in +-1/sqrt(fan_in), biases not zero
    for w, b, fan_in in [(critic.wx, critic.b0, 16), (critic.weights[0], critic.biases[0], 24)]:
        bound = 1 / math.sqrt(fan_in)
        assert float(w.detach().abs().max()) <= bound and float(b.detach().abs().max()) <= bound
        assert float(b.detach().abs().min()) > 0
    big = EnsembleFunnelCritic(300, 300, 2, 1, gens, [400, 1], init="torch")
    # U(-a, a) has std a / sqrt(3)
    assert float(torch.cat([big.wx.flatten(), big.wy.flatten()]).std()) == pytest.approx(
        1 / math.sqrt(600) / math.sqrt(3), rel=0.02)
    with pytest.raises(ValueError, match="init must be"):
        EnsembleFunnelCritic(3, 3, 2, 4, gens, init="he")


def test_batch_sizes_keep_the_short_last_batch_but_never_a_single_row() -> None:
    assert batch_sizes(300, 128) == [128, 128, 44]
    assert batch_sizes(256, 128) == [128, 128]
    assert batch_sizes(257, 128) == [128, 129]
    assert batch_sizes(50, 128) == [50]


@pytest.mark.parametrize(("clip", "batch"), [(0.05, 16), (None, 16), (0.05, None)])
def test_clipped_batch_readout_matches_an_independent_computation(clip: float | None, batch: int | None) -> None:
    params = MINEParams(readout_clip=clip, readout_batch=batch, objective="js")
    problems = [correlated_gaussians(3, 1.0 + i, 90, seed=i) for i in range(2)]
    x = torch.from_numpy(np.stack([p[0] for p in problems]))
    y = torch.from_numpy(np.stack([p[1] for p in problems]))
    gens = [torch.Generator().manual_seed(s) for s in (4, 5)]
    critic = make_critic(replace(params, min_width=8), 3, 3, gens)
    split = split_pairs(x, y, params, gens)
    with torch.no_grad():
        got = heldout_bound(params, heldout_samples(critic, split, params, gens)).numpy()
        n_h = split.x_heldout.shape[1]
        for e in range(2):
            # score every (x_i, y_j) of this estimator's held-out rows with the critic on concat[x; y]
            t = np.array([[_score(critic, e, split.x_heldout[e, i], split.y_heldout[e, j]) for j in range(n_h)]
                          for i in range(n_h)])
            if batch is None:
                # n_h - 1 <= marginal_shifts cyclic shifts score every off-diagonal pair exactly once
                assert got[e] == pytest.approx(_full_dv(t, clip), abs=1e-5)
                continue
            values, start = [], 0
            for size in batch_sizes(n_h, batch):
                rows = range(start, start + size)
                joint = np.mean([t[i, i] for i in rows])
                marg = np.array([t[i, start + (i - start + 1) % size] for i in rows])
                if clip is not None:
                    marg = np.clip(marg, -clip, clip)
                values.append((joint - math.log(np.mean(np.exp(marg)))) / math.log(2))
                start += size
            assert got[e] == pytest.approx(np.mean(values), abs=1e-5)


def _score(critic: EnsembleFunnelCritic, e: int, xi: torch.Tensor, yj: torch.Tensor) -> float:
    """One pair's score through the concatenated first layer, written out (not the split-layer fast path)."""
    w = torch.cat([critic.wx[e], critic.wy[e]], dim=0)
    h = torch.cat([xi, yj]) @ w + critic.b0[e, 0]
    for weight, bias in zip(critic.weights, critic.biases):
        h = torch.nn.functional.leaky_relu(h, critic.negative_slope) @ weight[e] + bias[e, 0]
    return float(h[0])


def _full_dv(t: np.ndarray, clip: float | None) -> float:
    """DV of the joint pairs against all off-diagonal pairs."""
    n = t.shape[0]
    marg = t[~np.eye(n, dtype=bool)]
    if clip is not None:
        marg = np.clip(marg, -clip, clip)
    return float((np.mean(np.diag(t)) - math.log(np.mean(np.exp(marg)))) / math.log(2))


def test_patience_stops_training_and_keeps_the_best_checkpoint() -> None:
    # 32-dim Gaussians with 400 pairs and a large learning rate: the critic memorises within a few epochs, the
    # slice's reading falls, and patience 1 stops each estimator then, independently of the others.
    params = MINEParams(steps=2000, batch_size=64, lr=1e-2, lr_end=1e-2, warmup_steps=0, n_bootstrap=20,
                        objective="js", sampling="epochs", early_stop_fraction=0.2, early_stop_every=None,
                        early_stop_patience=1, min_width=64)
    problems = [correlated_gaussians(32, 1.0 + i, 400, seed=i) for i in range(2)]
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    stopped = fit_mine_ensemble(xs, ys, params, [1, 2])
    per_epoch = math.ceil(256 / 64)
    for r in stopped:
        assert r.curve.size < params.steps and r.curve.size % per_epoch == 0  # stopped at an epoch's end
        assert np.isfinite(r.curve).all() and r.flag != "nan"
    for (x, y), seed, joint in zip(problems, [1, 2], stopped):
        alone = estimate_mine(x, y, params, seed=seed)
        assert alone.curve.size == joint.curve.size
        assert joint.heldout_bits == pytest.approx(alone.heldout_bits, abs=1e-5)


def test_epoch_sampling_is_ensemble_exact_and_differs_from_random_batches() -> None:
    params = MINEParams(steps=30, batch_size=48, n_bootstrap=20, min_width=16, sampling="epochs")
    problems = [correlated_gaussians(4, 1.0 + i, 200, seed=i) for i in range(2)]
    xs, ys = np.stack([p[0] for p in problems]), np.stack([p[1] for p in problems])
    together = fit_mine_ensemble(xs, ys, params, [7, 8])
    for (x, y), seed, joint in zip(problems, [7, 8], together):
        np.testing.assert_allclose(joint.curve, estimate_mine(x, y, params, seed=seed).curve, atol=1e-5)
    random = fit_mine_ensemble(xs, ys, replace(params, sampling="random"), [7, 8])
    assert not np.allclose(together[0].curve, random[0].curve)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"readout_clip": 0.0}, "readout_clip must be > 0"),
        ({"readout_batch": 1}, "readout_batch must be an integer >= 2"),
        ({"readout_batch": 64, "objective": "nwj"}, "does not read DV"),
        ({"early_stop_patience": 2}, "needs an early-stopping slice"),
        ({"early_stop_every": 0, "early_stop_fraction": 0.1}, "early_stop_every must be an integer >= 1 or None"),
        ({"sampling": "shuffle"}, "sampling must be one of"),
        ({"init": "he"}, "init must be one of"),
        ({"activation": "gelu"}, "activation must be one of"),
        ({"hidden_width": 64, "critic": "separable"}, "shape the joint critic"),
    ],
)
def test_recipe_validation_messages(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MINEParams(**kwargs).validate()


def test_rank_gauss_maps_each_coordinate_through_the_train_cdf_and_the_normal_quantile() -> None:
    """MINEParams.marginals="rank_gauss", against scipy: train values at mid-ranks (r + 1/2) / n, held-out values
    through the train split's CDF (ties split, out-of-range clamped), the normal quantile of that."""
    from scipy.stats import norm

    from ie_ray.estimators.mine.data import rank_gauss

    train = torch.tensor([[[3.0, -1.0], [1.0, 5.0], [2.0, 5.0], [10.0, 0.0]]])  # (E=1, n=4, d=2)
    heldout = torch.tensor([[[2.0, 5.0], [-7.0, 9.0], [2.5, 0.5]]])
    tr, ho = rank_gauss(train, heldout)
    n = 4
    # column 0: train ranks 3,1,2,4 of 4 -> u = (r - 1/2)/n; column 1: -1 < 0 < 5 = 5 (a tie at ranks 3-4)
    u_train = np.array([[2.5, 0.5], [0.5, 3.0], [1.5, 3.0], [3.5, 1.5]]) / n
    # held-out col 0: 2.0 ties the train's 2.0 (1 below, 1 equal), -7 below all, 2.5 between (2 below)
    # held-out col 1: 5.0 ties two (2 below), 9 above all (clamped), 0.5 between (2 below)
    u_ho = np.array([[1.5, 3.0], [0.0, 4.0], [2.0, 2.0]]) / n
    u_ho = np.clip(u_ho, 0.5 / n, 1 - 0.5 / n)
    np.testing.assert_allclose(tr[0].numpy(), norm.ppf(u_train), atol=1e-5)
    np.testing.assert_allclose(ho[0].numpy(), norm.ppf(u_ho), atol=1e-5)


def test_rank_gauss_is_a_new_option_that_leaves_cached_keys_alone() -> None:
    """Off ("raw") it is not in the cache key, so estimates cached before it existed stay valid; on, it is; a
    wrong value is refused naming the choices."""
    assert "marginals" not in MINEParams().key_dict()
    assert preset_params("smile-tm-rank").key_dict()["marginals"] == "rank_gauss"
    with pytest.raises(ValueError, match="marginals must be one of"):
        MINEParams(marginals="copula").validate()


def test_rank_gauss_undoes_a_warp_the_raw_critic_struggles_with() -> None:
    """A monotone warp of each coordinate leaves MI unchanged; with Gaussianised marginals the warped and unwarped
    samples give the critic the same ranks, hence the same inputs, hence the same estimate."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 2)).astype(np.float32)
    y = (0.8 * x + 0.6 * rng.standard_normal((2000, 2))).astype(np.float32)
    params = preset_params("smile-tm-rank", steps=200)
    plain = estimate_mine(x, y, params, seed=0)
    warped = estimate_mine(np.sinh(2 * x) ** 3, np.exp(y), params, seed=0)
    assert warped.mi_bits == pytest.approx(plain.mi_bits, abs=1e-4)
