"""Would storing a random projection of the block states move IE_sigma? Measured on real states of a finished run.

Why this exists: storage is the hard limit of a paper-scale sweep (20,000 sequences x 24 positions x 30 blocks x
(input, output) x 576 dims is ~33 GB per task in float16). I_sigma depends on the states only through their
pairwise distances relative to the noise scale (the Gaussian-mixture entropies of `ie_ray/estimators/smoothed.py`),
and a Gaussian random projection to k dims keeps every pairwise distance within a factor (1 +- eps) with
eps ~ sqrt(8 ln N / k) (Johnson-Lindenstrauss). So a projection may keep the reading while storing k/576 of the
bytes. Whether it does at k = 64-256 is an empirical question about these states, answered here.

How, for each (block, position) of the run: standardise the macro states with the block scale the sweep used
(`noise_scale.block_scale`, rule `pooled_no_sink`), then

    z' = z R / sqrt(d_eff),   R (d, k) with N(0, 1) entries,

and fit I_sigma on z' with an identity scale. ||z' - w'||^2 = ||(z - w) R||^2 / d_eff ~ k ||z - w||^2 / d_eff, and
the identity scale's sigma is tau sqrt(k), so every distance/sigma ratio is the raw one up to the projection's
distortion: the same tau means the same noise level. The raw reading is computed on the same states with the
block scale (exactly what the sweep reports). The difference is shown in units of the raw reading's 95%
half-width: a projection "holds" at a (block, position) when |projected - raw| is within it.

    PYTHONPATH=. python benchmarks/random_projection.py results/natural-10k --layers 8 29 --positions 1 3 7
    PYTHONPATH=. python benchmarks/random_projection.py RUN --quick      # 1,000 samples, one problem, no file
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ie_ray.estimators.smoothed import Scale, SmoothedParams, smoothed_mi
from ie_ray.noise_scale import block_scale
from ie_ray.store import read_layer_states

DEFAULT_DIMS = (64, 128, 256)


def project(z: np.ndarray, k: int, d_eff: int, seed: int) -> np.ndarray:
    """Gaussian random projection of standardised states (..., d) to k dims, scaled so that the identity scale's
    sigma = tau sqrt(k) keeps every distance-to-sigma ratio (module docstring)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((z.shape[-1], k)).astype(np.float32)
    return (z @ r) / np.float32(np.sqrt(d_eff))


def identity_scale(k: int) -> Scale:
    return Scale(center=np.zeros(k), spread=np.ones(k))


def states_dir_of(run_dir: Path) -> Path:
    """The cache directory of the run's macro states: of the model's state directories (macro windows, and the
    unique tokens fed alone for the micro level), the one with the most samples."""
    import pyarrow.parquet as pq

    def rows(path: Path) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in (path / "stream=0").rglob("*.parquet"))

    candidates = [p for p in sorted((run_dir / "cache" / "states").glob("*/*")) if (p / "stream=0").exists()]
    if not candidates:
        raise FileNotFoundError(f"no cached states under {run_dir}/cache/states; this benchmark needs a finished "
                                "run whose cache was kept")
    return max(candidates, key=rows)


def compare(pre: np.ndarray, post: np.ndarray, positions: list[int], dims: tuple[int, ...], params: SmoothedParams,
            seed: int) -> list[dict]:
    """Raw vs projected I_sigma at each position of one block; pre/post (N, P, d)."""
    scale_in = block_scale(pre, list(range(pre.shape[1])))
    scale_out = block_scale(post, list(range(post.shape[1])))
    rows = []
    for p in positions:
        sx, sy = scale_in.for_position(p), scale_out.for_position(p)
        x, y = pre[:, p], post[:, p]
        start = time.perf_counter()
        raw = smoothed_mi(x, y, params, seed=seed, scale_x=sx, scale_y=sy).at(params.tau)
        raw_s = time.perf_counter() - start
        half = (raw.ci_high - raw.ci_low) / 2
        zx, zy = sx.apply(x), sy.apply(y)
        for k in dims:
            px, py = project(zx, k, sx.d_eff, seed + 1), project(zy, k, sy.d_eff, seed + 2)
            start = time.perf_counter()
            got = smoothed_mi(px, py, params, seed=seed, scale_x=identity_scale(k),
                              scale_y=identity_scale(k)).at(params.tau)
            rows.append(dict(position=p, k=k, d=x.shape[1], n=len(x), raw_bits=raw.mi_bits, raw_ci_low=raw.ci_low,
                             raw_ci_high=raw.ci_high, projected_bits=got.mi_bits, projected_ci_low=got.ci_low,
                             projected_ci_high=got.ci_high, diff_bits=got.mi_bits - raw.mi_bits,
                             diff_in_half_widths=(got.mi_bits - raw.mi_bits) / half if half > 0 else np.nan,
                             bytes_ratio=k / x.shape[1], raw_s=raw_s, projected_s=time.perf_counter() - start))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished sweep whose cache/ holds its states")
    parser.add_argument("--layers", type=int, nargs="+", default=[8, 29])
    parser.add_argument("--positions", type=int, nargs="+", default=[1, 3, 7])
    parser.add_argument("--dims", type=int, nargs="+", default=list(DEFAULT_DIMS))
    parser.add_argument("--n", type=int, default=0, help="first n samples (0 = all)")
    parser.add_argument("--tau", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1,000 samples, one layer and position, no file")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/random_projection.csv"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.layers, args.positions, args.dims = 1000, args.layers[:1], args.positions[:1], [64]
    params = SmoothedParams(tau=args.tau, taus=(args.tau,))
    states_dir = states_dir_of(args.run_dir)
    rows = []
    for layer in args.layers:
        _, pre, post = read_layer_states(states_dir, layer)
        if args.n:
            pre, post = pre[: args.n], post[: args.n]
        for row in compare(pre, post, args.positions, tuple(args.dims), params, args.seed):
            rows.append(dict(layer=layer, **row))
            print(f"block {layer:2d} position {row['position']}: raw {row['raw_bits']:.3f} "
                  f"[{row['raw_ci_low']:.3f}, {row['raw_ci_high']:.3f}]  k={row['k']:3d}: {row['projected_bits']:.3f} "
                  f"(diff {row['diff_bits']:+.3f} = {row['diff_in_half_widths']:+.2f} half-widths; bytes x"
                  f"{row['bytes_ratio']:.3f}, time x{row['projected_s'] / row['raw_s']:.2f})", flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby("k").agg(max_abs_diff_bits=("diff_bits", lambda v: float(np.abs(v).max())),
                                     median_abs_diff_bits=("diff_bits", lambda v: float(np.abs(v).median())),
                                     within_interval=("diff_in_half_widths", lambda v: float((np.abs(v) <= 1).mean())),
                                     bytes_ratio=("bytes_ratio", "first"),
                                     time_ratio=("projected_s", "sum")).reset_index()
    summary["time_ratio"] = summary.time_ratio / table.drop_duplicates(["layer", "position"]).raw_s.sum()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        summary.to_csv(args.out.with_name(args.out.stem + "_summary.csv"), index=False)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
