"""The random-projection benchmark: its projection keeps the distance-to-noise ratios the smoothed reading
depends on, and a projection wide enough reads the raw I_sigma back on a known law."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark_loader import load_benchmark  # tests/ is on sys.path
from ie_ray.estimators.smoothed import Scale, SmoothedParams

rp = load_benchmark("random_projection")


def test_projection_keeps_distances_relative_to_the_noise_scale() -> None:
    """sigma is tau sqrt(d_eff) raw and tau sqrt(k) projected, so ||z' - w'||^2 / k must match ||z - w||^2 / d_eff
    (JL: within ~sqrt(8 / k) relative for k = 2,000)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 300)).astype(np.float32)
    k = 2000
    zp = rp.project(z, k, d_eff=300, seed=1)
    raw = ((z[:, None] - z[None]) ** 2).sum(-1)[np.triu_indices(40, 1)] / 300
    projected = ((zp[:, None] - zp[None]) ** 2).sum(-1)[np.triu_indices(40, 1)] / k
    np.testing.assert_allclose(projected, raw, rtol=0.15)
    assert rp.identity_scale(k).sigma(0.25) == pytest.approx(0.25 * np.sqrt(k))


def test_a_wide_projection_reads_the_raw_smoothed_mi(tmp_path) -> None:
    """Correlated Gaussian states (d = 48, 2 positions): the projected reading at k = 256 lies within the raw
    reading's interval, and the table says so."""
    rng = np.random.default_rng(3)
    n, d = 600, 48
    pre = rng.standard_normal((n, 2, d)).astype(np.float32)
    post = (0.8 * pre + 0.6 * rng.standard_normal((n, 2, d))).astype(np.float32)
    params = SmoothedParams(tau=0.25, taus=(0.25,), n_draws=1000, n_bootstrap=50)
    rows = pd.DataFrame(rp.compare(pre, post, [1], (256,), params, seed=0))
    row = rows.iloc[0]
    assert row.raw_bits > 0.3, row
    # two readings, each with its own Monte Carlo error (independent draws) plus the projection's distortion of
    # distances at k = 256: their difference spreads ~sqrt(2) times one reading's, so within 2 of the raw
    # reading's half-widths (the honest interval is ~0.8x the old one, under which 1.5 was the bound)
    assert abs(row.diff_in_half_widths) <= 2.0
    assert row.bytes_ratio == pytest.approx(256 / 48)
