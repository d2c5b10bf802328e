"""The estimator: `fit_mine_ensemble` fits E independent estimators in one set of batched kernels (split, train,
read out, diagnose) and returns one `MIResult` each; `estimate_mine` is the same with E = 1."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from ie_ray.estimators.diagnostics import diagnose
from ie_ray.estimators.mine.critics import first_layer_width, make_critic
from ie_ray.estimators.mine.data import carve_early_stop, split_pairs
from ie_ray.estimators.mine.params import MINEParams
from ie_ray.estimators.mine.readout import bootstrap, bound_cap_bits, heldout_bound, heldout_samples
from ie_ray.estimators.mine.training import train
from ie_ray.estimators.result import MIResult

#: Working-set budget of one ensemble chunk (see `ensemble_chunk_size`): a memory guard, not a cache size.
#: Cache-sized chunks (16 MB, 3 critics) were measured slower than one whole ensemble on the 2-core EPYC
#: (benchmarks/results/estimators.md: 60.3 s vs 49.0 s for 32 paper-preset fits), so chunks only keep a very
#: large ensemble (hundreds of 768-dim critics) from exhausting memory.
ENSEMBLE_CHUNK_BYTES: int = 1 << 30


def estimate_mine(x: np.ndarray, y: np.ndarray, params: MINEParams | None = None, seed: int = 0) -> MIResult:
    """MI(X; Y) in bits from paired samples x (N, dx), y (N, dy): the ensemble fit with E = 1."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"x and y must be (N, d) arrays, got shapes {x.shape} and {y.shape}")
    return fit_mine_ensemble(x[None], y[None], params or MINEParams(), [seed])[0]


def fit_mine_ensemble(
    xs: np.ndarray, ys: np.ndarray, params: MINEParams, seeds: Sequence[int], chunk_size: int | None = None
) -> list[MIResult]:
    """Fit E independent MINE estimators (bound: `params.objective`) in one set of batched kernels.

    xs (E, N, dx) and ys (E, N, dy) hold E problems with the same sample count and dims; seeds gives one seed
    per problem. Result i equals `estimate_mine(xs[i], ys[i], params, seeds[i])` up to float rounding: the
    ensemble is only a way of using the hardware, never a change of the estimate.

    The E estimators are trained `chunk_size` at a time (default: `ensemble_chunk_size`, which bounds one
    chunk's working set by ENSEMBLE_CHUNK_BYTES so that a large ensemble cannot exhaust memory). Chunking
    cannot change a value, for the same reason the ensemble cannot.
    """
    xs, ys = np.asarray(xs), np.asarray(ys)
    if xs.ndim != 3 or ys.ndim != 3 or xs.shape[:2] != ys.shape[:2]:
        raise ValueError(
            f"xs and ys must be (E, N, dx) and (E, N, dy) with the same E and N, got {xs.shape} and {ys.shape}"
        )
    if len(seeds) != xs.shape[0]:
        raise ValueError(f"need one seed per estimator: {xs.shape[0]} estimators, {len(seeds)} seeds")
    params.validate(n_samples=xs.shape[1])
    e = xs.shape[0]
    chunk = ensemble_chunk_size(params, xs.shape[1], xs.shape[2], ys.shape[2]) if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk}")
    start = time.perf_counter()
    fits: list[MIResult] = []
    with _torch_threads(params.threads):
        for lo in range(0, e, chunk):
            fits += _fit(xs[lo : lo + chunk], ys[lo : lo + chunk], params, [int(s) for s in seeds[lo : lo + chunk]])
    wall_s = (time.perf_counter() - start) / len(seeds)
    return [replace(fit, wall_s=wall_s) for fit in fits]


def ensemble_chunk_size(params: MINEParams, n_samples: int, dx: int, dy: int) -> int:
    """How many estimators to train as one ensemble so that a step's working set stays near
    `ENSEMBLE_CHUNK_BYTES`: the first layer's activations on joint + marginal rows (forward and backward, the
    bulk of the traffic) plus the first layer's weights with their gradient and two Adam moments."""
    d_in = min(dx, params.max_dims or dx) + min(dy, params.max_dims or dy)
    width = first_layer_width(params, d_in)
    rows = params.batch_size or params.split_sizes(n_samples)[0]
    per_estimator = 4 * (4 * 2 * rows * width + 4 * d_in * width)
    return max(1, ENSEMBLE_CHUNK_BYTES // per_estimator)


def _fit(xs: np.ndarray, ys: np.ndarray, params: MINEParams, seeds: list[int]) -> list[MIResult]:
    e, n = xs.shape[:2]
    d = params.max_dims
    # Arrays from Ray's object store are read-only views; torch needs writable memory, so copy once here.
    device = _device(params.device)
    x = torch.from_numpy(np.array(xs[..., :d], dtype=np.float32, order="C", copy=True)).to(device)
    y = torch.from_numpy(np.array(ys[..., :d], dtype=np.float32, order="C", copy=True)).to(device)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    critic = make_critic(params, x.shape[2], y.shape[2], gens).to(device)
    split, stop_slice = carve_early_stop(split_pairs(x, y, params, gens), params)
    curve, alive, steps_run = train(critic, split, params, gens, stop_slice)
    n_heldout = split.x_heldout.shape[1]
    with torch.no_grad():
        samples = heldout_samples(critic, split, params, gens)
    heldout = heldout_bound(params, samples).cpu() if n_heldout else torch.full((e,), math.nan)
    samples = tuple(s.cpu() for s in samples)
    cap = bound_cap_bits(params, split.x_train.shape[1], n_heldout)
    curve_np = curve.cpu().numpy()
    results = []
    for i, seed in enumerate(seeds):
        # An estimator stopped by early_stop_patience has a shorter curve, not a NaN tail (NaN means non-finite).
        own = curve_np[: int(steps_run[i]), i] if bool(alive[i]) else curve_np[:, i]
        finite = own[np.isfinite(own)]
        max_train = float(finite.max()) if finite.size else math.nan
        last_train = float(finite[-1]) if finite.size else math.nan
        held = float(heldout[i])
        value = held if params.readout == "heldout" else max_train
        if n_heldout:
            boot = bootstrap([s[i].double().numpy() for s in samples], params, seed)
            ci_low, ci_high = np.percentile(boot, [2.5, 97.5]) if np.isfinite(boot).all() else (math.nan,) * 2
        else:
            boot = np.full(params.n_bootstrap, value, dtype=np.float64)
            ci_low, ci_high = value, value
        results.append(
            MIResult(
                mi_bits=value,
                readout=params.readout,
                heldout_bits=held,
                max_train_bits=max_train,
                last_train_bits=last_train,
                ci_low=float(ci_low),
                ci_high=float(ci_high),
                bootstrap=boot,
                curve=own.astype(np.float32),
                n_samples=n,
                n_train=split.x_train.shape[1],
                n_heldout=n_heldout,
                seed=seed,
                wall_s=math.nan,
                # A critic that stayed finite can still score held-out rows that are not (bad data there).
                flag=diagnose(
                    value,
                    own,
                    heldout_ci_high=float(ci_high) if n_heldout else math.nan,
                    bound_cap_bits=cap,
                    finite_training=bool(alive[i]),
                ),
                objective=params.objective,
                bound_cap_bits=cap,
            )
        )
    return results


def _device(name: str) -> torch.device:
    """The torch device of `MINEParams.device`; a clear error where CUDA was asked for and is not there."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"MINEParams.device={name!r} but torch {torch.__version__} sees no CUDA device; "
                           "use device='cpu'")
    return torch.device(name)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the fit only (a Ray worker may share the machine with others)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
