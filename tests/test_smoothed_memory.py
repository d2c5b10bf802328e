"""Memory of the smoothed-MI estimator stays within its `memory_mb` budget whatever N (chunked draws): measured
as the peak resident-set growth of a fresh process, so nothing else in the test session pollutes it."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource, sys, numpy as np, torch
torch.set_num_threads(1)
from ie_ray.estimators.smoothed import smoothed_mi, SmoothedParams
rng = np.random.default_rng(0)
x = rng.normal(size=(20000, 32)).astype(np.float32); y = x + rng.normal(size=x.shape).astype(np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
smoothed_mi(x, y, SmoothedParams(n_draws=600, taus=(0.25,), n_bootstrap=10, memory_mb=float(sys.argv[1])), seed=0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def _peak_growth_mb(memory_mb: float) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(memory_mb)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def test_peak_memory_follows_the_budget():
    # N = 20,000: one draw's work arrays are ~1 MB, so a 24 MB budget holds ~20 draws at a time; allocator
    # overhead of a few tens of MB on top of the budget is allowed
    small = _peak_growth_mb(24)
    assert small < 24 + 48, small


def test_chunk_size_is_what_the_budget_allows():
    from ie_ray.estimators.smoothed import WORK_ARRAYS_PER_DRAW, SmoothedParams, _chunk_size

    n, columns = 100_000, 102
    for budget in (24.0, 512.0):
        chunk = _chunk_size(SmoothedParams(memory_mb=budget), n, columns, 4)
        per_draw = (WORK_ARRAYS_PER_DRAW * n + 4 * columns) * 4
        assert chunk * per_draw <= budget * 2**20 < (chunk + 1) * per_draw
    assert _chunk_size(SmoothedParams(chunk_draws=7), n, columns, 4) == 7
