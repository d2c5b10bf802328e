"""Wall time of MINE fitting: the batched ensemble vs one-by-one fits vs the reference code's per-estimator loop.

IE needs hundreds of small MI estimates, so what matters is the cost of E of them. Three ways to get E estimates
of E correlated-Gaussian problems (closed-form MI), each at the same number of optimiser steps:

  (a) batched     one `fit_mine_ensemble` call over all E problems (E critics in one set of batched kernels);
  (b) one-by-one  E calls of `fit_mine_ensemble` with E = 1, same MINEParams and seeds as (a);
  (c) reference   a re-creation of the reference code's loop (Zodiark-ch/Emergence-of-LLMs, MINE_for_LLMs.py,
                  PAPER.md section 2), one problem at a time: nn.Sequential funnel on concat[x; y], Adam,
                  polynomial decay, full batch, naive log-mean-exp, clipping called before zero_grad/backward
                  (so it never clips), max-over-steps readout starting at 0.

(a) and (b) must give identical values (the ensemble is only a way of using the hardware); the script checks it.

`--params paper` (default) runs (a) and (b) on `MINEParams.paper()` (full batch, 10-layer funnel, lr 1e-4,
no clipping, no standardisation, max readout), so all three modes do the same work per step and (c)/(a) measures
the implementation alone. `--params default` runs (a) and (b) on the package defaults instead (minibatch 256,
2-layer critic, held-out readout with bootstrap), which is a different amount of work per step than (c).
(c) always runs the reference's own schedule (lr 1e-4 -> 1e-8, warmup 5, power 3, over the same steps).

    PYTHONPATH=. python benchmarks/estimators.py            # E=32, d=64, N=2000, 200 steps
    PYTHONPATH=. python benchmarks/estimators.py --quick    # E=8, 50 steps: smoke check
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line, write_outputs  # noqa: E402

from ie_ray.estimators.benchmark import correlated_gaussians
from ie_ray.estimators.critic import NEGATIVE_SLOPE, funnel_widths
from ie_ray.estimators.mine import MINEParams, ensemble_chunk_size, fit_mine_ensemble, poly_decay_with_warmup

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The reference funnel: 10 Linear layers halving from the input width, down to 1 unit (1536 -> 768 -> ... -> 3 -> 1).
REFERENCE_LAYERS = 10
#: log2(e): the reference multiplies the DV bound in nats by np.log2(np.exp(1)) to get bits.
LOG2_E = float(np.log2(np.exp(1)))


# ----------------------------------------------------------------------------------------------------------------
# (c) The reference code's loop, re-created: one estimator at a time, nothing shared between them.
# ----------------------------------------------------------------------------------------------------------------


class ReferenceNet(nn.Module):
    """The reference `Net`: nn.Sequential of Linear + LeakyReLU on concat[x; y], its DV loss in forward()."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = d_in
        for k, width in enumerate(funnel_widths(d_in, REFERENCE_LAYERS, 1)):
            if k:
                layers.append(nn.LeakyReLU(NEGATIVE_SLOPE))
            layers.append(nn.Linear(fan_in, width))
            fan_in = width
        self.layers = nn.Sequential(*layers)

    def forward(self, batch_size: int, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.layers(inputs)
        pred_xy, pred_x_y = logits[:batch_size], logits[batch_size:]
        # Naive log-mean-exp, as in the reference (overflows for large scores; logsumexp in the package).
        return -LOG2_E * (torch.mean(pred_xy) - torch.log(torch.mean(torch.exp(pred_x_y))))


def _reference_init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        nn.init.constant_(m.bias, 0)


def _reference_schedule(optimizer: torch.optim.Optimizer, params: MINEParams) -> torch.optim.lr_scheduler.LambdaLR:
    """The reference's `get_polynomial_decay_schedule_with_warmup` (warmup 5, power 3, lr_end), over the benchmark's
    step count rather than its fixed 10,000, so that equal steps mean the same decay. The package's copy of the
    formula, not transformers': the same values, without transformers' division by zero when steps == warmup."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_decay_with_warmup(s, params))


@dataclass(frozen=True)
class ReferenceFit:
    mi_bits: float  # the reference's readout: max over steps, starting at 0 (it would crash if never positive)
    best_bits: float  # max over steps of the training bound without the 0 floor
    nan_step: int | None  # step at which the reference stopped on NaN, if it did


def reference_fit(x: np.ndarray, y: np.ndarray, params: MINEParams, seed: int) -> ReferenceFit:
    """One estimate the way MINE_for_LLMs.main() makes it (data loading aside), for params.steps steps."""
    torch.manual_seed(seed)
    net = ReferenceNet(x.shape[1] + y.shape[1])
    net.apply(_reference_init)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.lr)
    scheduler = _reference_schedule(optimizer, params)
    x_sample, y_sample = torch.from_numpy(x), torch.from_numpy(y)
    tiled_x = torch.cat([x_sample, x_sample], dim=0)
    batch_size = x_sample.size(0)
    info_max: float | torch.Tensor = 0
    best = -math.inf
    nan_step = None
    for step in range(params.steps):
        idx = torch.randperm(batch_size)
        concat_y = torch.cat([y_sample, y_sample[idx]], dim=0)
        # The reference re-wraps this with torch.tensor(inputs, dtype=float32), which copies it.
        inputs = torch.cat([tiled_x, concat_y], dim=1).detach().clone()
        loss = net(batch_size, inputs)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1, norm_type=2)  # before backward: clips nothing
        net.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        info = -loss.detach()
        if info == info:
            best = max(best, float(info))
        if info_max < info and info == info:
            info_max = info
        elif info != info:
            nan_step = step
            break
    return ReferenceFit(float(info_max), best, nan_step)


# ----------------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------------


def reference_params(steps: int) -> MINEParams:
    """The reference loop's schedule whatever preset (a) and (b) use: Adam lr 1e-4 -> 1e-8, warmup 5, power 3."""
    # All dims: the paper's 768-dim slice is a no-op below 768 anyway.
    return replace(MINEParams.paper(), steps=steps, max_dims=None)


def make_params(kind: str, steps: int, threads: int) -> MINEParams:
    if kind == "paper":
        return replace(reference_params(steps), threads=threads)
    return MINEParams(steps=steps, threads=threads)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def rel_errors(estimates: Sequence[float], truth: float) -> list[float]:
    return [abs(v - truth) / truth for v in estimates]


def run(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(args.threads)
    params = make_params(args.params, args.steps, args.threads)
    ref_params = reference_params(args.steps)
    e, d, n, truth = args.estimators, args.dim, args.samples, args.mi_bits
    seeds = list(range(e))
    data = [correlated_gaussians(d, truth, n, seed=args.data_seed + i) for i in range(e)]
    xs = np.stack([x for x, _ in data])
    ys = np.stack([y for _, y in data])
    k = min(args.ref_subset or e, e)
    info = machine_info(args.threads)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    # Warm-up outside the clock: first-call costs (allocator, kernel dispatch caches).
    warm = replace(params, steps=2)
    fit_mine_ensemble(xs[:1], ys[:1], warm, [0])
    reference_fit(xs[0], ys[0], replace(ref_params, steps=2), 0)

    chunk = ensemble_chunk_size(params, n, d, d)
    log(f"(a) batched: one fit_mine_ensemble call over E={e} (auto chunks of {chunk}) ...")
    batched, t_a = timed(lambda: fit_mine_ensemble(xs, ys, params, seeds))
    log(f"    {t_a:.1f} s")
    log(f"(a1) batched: one fit_mine_ensemble call over E={e} as ONE ensemble (chunk_size={e}) ...")
    unchunked, t_a1 = timed(lambda: fit_mine_ensemble(xs, ys, params, seeds, chunk_size=e))
    log(f"    {t_a1:.1f} s")
    log(f"(b) one-by-one: {e} fit_mine_ensemble calls with E=1 ...")
    single, t_b = timed(
        lambda: [fit_mine_ensemble(xs[i : i + 1], ys[i : i + 1], params, [s])[0] for i, s in enumerate(seeds)]
    )
    log(f"    {t_b:.1f} s")
    log(f"(c) reference loop on {k} of {e} problems ...")
    ref, t_c_k = timed(lambda: [reference_fit(xs[i], ys[i], ref_params, seeds[i]) for i in range(k)])
    t_c = t_c_k * e / k
    log(f"    {t_c_k:.1f} s" + ("" if k == e else f" -> {t_c:.1f} s extrapolated to E={e}"))

    est_a = [r.mi_bits for r in batched]
    est_a1 = [r.mi_bits for r in unchunked]
    est_b = [r.mi_bits for r in single]
    est_c = [r.mi_bits for r in ref]
    curve_diff = max(
        float(np.nanmax(np.abs(ra.curve - rb.curve))) if np.isfinite(ra.curve).any() else 0.0
        for ra, rb in zip(batched, single)
    )
    identical = {
        "max_abs_diff_estimate_bits": float(np.max(np.abs(np.subtract(est_a, est_b)))),
        "max_abs_diff_training_curve_bits": curve_diff,
        "all_equal": bool(np.array_equal(est_a, est_b)),
        "unchunked_equal": bool(np.array_equal(est_a, est_a1)),
    }

    def mode(name: str, what: str, timed_n: int, wall: float, estimates: list[float], extrapolated: bool) -> dict:
        errs = rel_errors(estimates, truth)
        return {
            "mode": name,
            "what": what,
            "estimators_timed": timed_n,
            "wall_s": wall,
            "wall_s_per_estimator": wall / e,
            "extrapolated_from_subset": extrapolated,
            "ratio_to_batched": wall / t_a,
            "mean_rel_error": float(np.mean(errs)),
            "mean_estimate_bits": float(np.mean(estimates)),
            "estimates_bits": estimates,
        }

    modes = [
        mode("a", f"batched: 1 x fit_mine_ensemble(E={e}), auto chunks of {chunk}", e, t_a, est_a, False),
        mode("a1", f"batched: 1 x fit_mine_ensemble(E={e}, chunk_size={e})", e, t_a1, est_a1, False),
        mode("b", f"one-by-one: {e} x fit_mine_ensemble(E=1)", e, t_b, est_b, False),
        mode("c", "reference loop (nn.Sequential, one at a time)", k, t_c, est_c, k < e),
    ]
    return {
        "benchmark": "estimators",
        "config": {
            "estimators": e,
            "dim_each_side": d,
            "samples": n,
            "true_mi_bits": truth,
            "steps": args.steps,
            "threads": args.threads,
            "params_preset": args.params,
            "data_seed": args.data_seed,
            "reference_subset": k,
            "quick": args.quick,
            "command": " ".join(sys.argv),
        },
        "mine_params": params.to_dict(),
        "reference_loop": {
            "widths": funnel_widths(2 * d, REFERENCE_LAYERS, 1),
            "lr": ref_params.lr,
            "lr_end": ref_params.lr_end,
            "warmup_steps": ref_params.warmup_steps,
            "power": ref_params.power,
            "readout": "max over steps of the training-batch DV bound, floored at 0",
            "best_bits_without_floor": [r.best_bits for r in ref],
            "nan_stops": sum(r.nan_step is not None for r in ref),
        },
        "machine": info,
        "modes": modes,
        "a_vs_b": identical,
        "ratios": {"b_over_a": t_b / t_a, "c_over_a": t_c / t_a, "a1_over_a": t_a1 / t_a},
        "auto_chunk": chunk,
    }


def to_markdown(res: dict) -> str:
    cfg, m = res["config"], res["machine"]
    lines = [
        f"# MINE estimators: batched vs one-by-one vs reference loop ({m['date_utc']})",
        "",
        f"E={cfg['estimators']} correlated-Gaussian problems, d={cfg['dim_each_side']} per side, "
        f"N={cfg['samples']} pairs, true MI {cfg['true_mi_bits']} bits, {cfg['steps']} steps each, "
        f"MINEParams preset `{cfg['params_preset']}`, torch threads {m['torch_threads']}.",
        "",
        "| mode | what | estimators timed | wall (s) | s / estimator | ratio to (a) | mean est. (bits) "
        "| mean abs rel. error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for md in res["modes"]:
        wall = f"{md['wall_s']:.1f}" + (" (extrapolated)" if md["extrapolated_from_subset"] else "")
        lines.append(
            f"| ({md['mode']}) | {md['what']} | {md['estimators_timed']} | {wall} | {md['wall_s_per_estimator']:.2f} | "
            f"{md['ratio_to_batched']:.2f} | {md['mean_estimate_bits']:.3f} | {md['mean_rel_error']:.3f} |"
        )
    ab, r = res["a_vs_b"], res["ratios"]
    lines += [
        "",
        f"- (b)/(a) = **{r['b_over_a']:.2f}**, (c)/(a) = **{r['c_over_a']:.2f}**"
        + (f", (a1)/(a) = **{r['a1_over_a']:.2f}** (one unchunked ensemble vs auto chunks of {res['auto_chunk']})"
           if "a1_over_a" in r else ""),
        f"- (a) vs (b): max |estimate diff| = {ab['max_abs_diff_estimate_bits']:.3g} bits, max |training-curve diff| = "
        f"{ab['max_abs_diff_training_curve_bits']:.3g} bits (bit-identical estimates: {ab['all_equal']}"
        + (f"; (a1) identical to (a): {ab['unchunked_equal']})" if "unchunked_equal" in ab else ")"),
        f"- reference loop: {res['reference_loop']['nan_stops']} NaN stop(s); its readout is floored at 0 as in the "
        "reference (which would crash on a never-positive run)",
    ]
    if res["modes"][-1]["extrapolated_from_subset"]:
        lines.append(
            f"- (c) was run on {cfg['reference_subset']} of {cfg['estimators']} problems and its wall time "
            "extrapolated linearly; its accuracy is over that subset"
        )
    lines += [
        machine_line(m),
        f"- command: `{cfg['command']}`",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--estimators", "-E", type=int, default=None, help="problems (default 32; 8 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="steps for every mode (default 200; 50 with --quick)")
    p.add_argument("--dim", type=int, default=64, help="dims of x and of y (default 64)")
    p.add_argument("--samples", "-N", type=int, default=2000, help="pairs per problem (default 2000)")
    p.add_argument("--mi-bits", type=float, default=2.0, help="true MI of every problem (default 2 bits)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, same for all modes (default 1)")
    p.add_argument("--params", choices=["paper", "default"], default="paper",
                   help="MINEParams for (a) and (b): paper() with --steps (default) or the package defaults")
    p.add_argument("--ref-subset", type=int, default=None,
                   help="run (c) on only this many problems and extrapolate its wall time linearly (default: all)")
    p.add_argument("--data-seed", type=int, default=0, help="problem i is drawn with seed data_seed + i")
    p.add_argument("--quick", action="store_true", help="smoke check: E=8, steps=50")
    p.add_argument("--out", type=Path, default=None,
                   help="output path without suffix (default benchmarks/results/estimators, or estimators_quick)")
    args = p.parse_args(argv)
    args.estimators = args.estimators or (8 if args.quick else 32)
    args.steps = args.steps or (50 if args.quick else 200)
    args.out = args.out or RESULTS_DIR / ("estimators_quick" if args.quick else "estimators")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    res = run(args)
    write_outputs(args.out, res, to_markdown(res))


if __name__ == "__main__":
    main()
