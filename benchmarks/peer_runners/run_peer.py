"""Run one peer MI toolkit on task files, inside that peer's own venv (never imported by ie_ray).

Called by benchmarks/peers.py as `<peer venv>/bin/python run_peer.py PEER IN_DIR OUT_JSON`: IN_DIR holds one
`<task>.npz` per task (x, y: float32 (N, d); `heldout_fraction`: the held-out share our estimators use; optional
`device`: "cpu" (default) or "cuda", for the peers that take one). Each peer runs with its documented defaults
(see PEERS); the estimate is converted to bits, and the seconds of fit + readout per task are measured here, on
one torch thread when on the CPU, so the numbers compare with ours (also one thread). Needs no venv of its own
where the peer's wheels are on PYTHONPATH (benchmarks/neural_recommendation.py runs it so on a GPU machine).
Results are appended one JSON line per task as they finish, so an interrupted run keeps what it finished.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

LN2 = math.log(2.0)


def torch_mist_smile(x: np.ndarray, y: np.ndarray, heldout_fraction: float, seed: int, device: str = "cpu") -> float:
    """torch-mist's `estimate_mi` with its default estimator (SMILE, tau 5), default training (up to 5,000
    iterations, batch 128, early stopping on a 10% validation slice of the training split) and the critic of its
    README example (`hidden_dims=[128]`; the argument has no default). Read on our held-out split (test_data),
    as the issue asks: the training split never scores itself. Returns nats."""
    from torch_mist import estimate_mi

    n_train = int(round(len(x) * (1 - heldout_fraction)))
    out = estimate_mi(
        data=(torch.from_numpy(x[:n_train]), torch.from_numpy(y[:n_train])),
        test_data=(torch.from_numpy(x[n_train:]), torch.from_numpy(y[n_train:])),
        estimator="smile", hidden_dims=[128], verbose=False, device=device,
    )
    value = out[0] if isinstance(out, tuple) else out
    return float(value)


def torch_mist_smile_readouts(x: np.ndarray, y: np.ndarray, heldout_fraction: float, seed: int,
                              device: str = "cpu") -> tuple[float, dict]:
    """`torch_mist_smile` (the same training: same seed, same calls), then its trained critic read out three ways on
    the same held-out pairs: its own SMILE readout (returned, nats), and in `extra` (bits) the plain DV and the
    clipped (tau 5) DV over ALL off-diagonal held-out pairs, the full-sample readout ours uses, and the seconds of
    `estimate_mi` alone (`fit_wall_s`: what `torch_mist_smile` costs). Why: the SMILE
    readout is a mean over batches of 128 of log-mean-exp of 128 marginal scores, biased upward by Jensen's
    inequality; this separates what its critic learned from what its readout adds."""
    from torch_mist import estimate_mi

    n_train = int(round(len(x) * (1 - heldout_fraction)))
    xt, yt = torch.from_numpy(x[n_train:]), torch.from_numpy(y[n_train:])
    t0 = time.perf_counter()
    value, estimator = estimate_mi(
        data=(torch.from_numpy(x[:n_train]), torch.from_numpy(y[:n_train])), test_data=(xt, yt),
        estimator="smile", hidden_dims=[128], verbose=False, return_estimator=True, device=device,
    )[:2]
    fit_s = time.perf_counter() - t0
    layers = estimator.critic.joint_net.layers  # pyro DenseNN: Linear(dx + dy, 128), ReLU, Linear(128, 1)
    assert len(layers) == 2, "the readout swap assumes hidden_dims=[128]"
    w1, b1, w2, b2 = layers[0].weight, layers[0].bias, layers[1].weight, layers[1].bias
    dx = xt.shape[1]
    xt, yt = xt.to(w1.device), yt.to(w1.device)
    with torch.no_grad():
        xw, yw = xt @ w1[:, :dx].T, yt @ w1[:, dx:].T + b1  # the first layer split: concat[x; y] W = x Wx + y Wy
        rows = []
        for s in range(0, len(xt), 64):
            rows.append((torch.relu(xw[s : s + 64, None, :] + yw[None, :, :]) @ w2.T).squeeze(-1) + b2)
        t = torch.cat(rows).double()  # t[i, j] = T(x_i, y_j)
    n = len(t)
    joint = torch.diagonal(t).mean()
    off = t[~torch.eye(n, dtype=torch.bool)]
    dv = float(joint - (torch.logsumexp(off, 0) - math.log(off.numel())))
    clipped = off.clamp(-5.0, 5.0)
    dv_clip = float(joint - (torch.logsumexp(clipped, 0) - math.log(off.numel())))
    return float(value), {"full_dv_bits": dv / LN2, "full_dv_clip5_bits": dv_clip / LN2, "fit_wall_s": fit_s}


def latentmi_default(x: np.ndarray, y: np.ndarray, heldout_fraction: float, seed: int, device: str = "cpu") -> float:
    """latentmi's `lmi.estimate(X, Y)` with every default (8-dim latents from its cross-predictive paired
    autoencoder, 50% validation split, KSG on the validation half): the mean of its pointwise MI over the points
    it estimates. Returns nats (KSG's digamma form). `device` is ignored: latentmi picks its own."""
    from latentmi import lmi

    np.random.seed(seed)
    pmis, _, _ = lmi.estimate(x, y, quiet=True)
    return float(np.nanmean(pmis))


PEERS = {
    "torch-mist-smile": ("torch-mist", torch_mist_smile),
    "torch-mist-smile-readouts": ("torch-mist", torch_mist_smile_readouts),
    "latentmi": ("latentmi", latentmi_default),
}


def main(peer: str, in_dir: str, out_json: str) -> None:
    package, fn = PEERS[peer]
    done = set()
    out = Path(out_json)
    if out.exists():
        done = {json.loads(line)["task_file"] for line in out.read_text().splitlines() if line.strip()}
    for path in sorted(Path(in_dir).glob("*.npz")):
        if path.name in done:
            continue
        data = np.load(path)
        seed = int(data["seed"])
        device = str(data["device"]) if "device" in data.files else "cpu"
        if device == "cpu":
            torch.set_num_threads(1)
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        extra: dict = {}
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # latentmi prints an epoch counter per epoch
                value, error = fn(data["x"], data["y"], float(data["heldout_fraction"]), seed, device=device), ""
            nats, extra = value if isinstance(value, tuple) else (value, {})  # extra: other readouts, already in bits
        except Exception as exc:  # a peer's failure is a result to report, not a crash of the benchmark
            nats, error = math.nan, f"{type(exc).__name__}: {exc}"[:300]
        row = dict(task_file=path.name, peer=peer, package=package, package_version=version(package),
                   torch_version=torch.__version__, mi_bits=nats / LN2, wall_s=time.perf_counter() - t0,
                   error=error, device=device, **extra)
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"[{peer}] {path.stem}: {row['mi_bits']:.3f} bits in {row['wall_s']:.1f} s {error}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
