"""The concentrated-MI families (their truth), MINEParams.device, and benchmarks/neural_recommendation.py's
resume, budget and failure handling on seconds-sized pieces of its --quick mode."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from benchmark_loader import load_benchmark  # tests/ is on sys.path

from ie_ray.estimators import MINEParams
from ie_ray.estimators.benchmark import CONCENTRATED_FAMILIES, SPARSE_PAIRS, Task, make_tasks
from ie_ray.estimators.gaussian import gaussian_mi_bits
from ie_ray.validate import ValidationConfig

nr = load_benchmark("neural_recommendation")
peers = load_benchmark("peers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the families ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", CONCENTRATED_FAMILIES)
def test_concentrated_families_have_the_claimed_mi_at_width(family: str) -> None:
    # The maps are invertible (rotations, per-coordinate monotone warps, a contractive residual map), so undoing
    # them leaves a Gaussian pair whose plug-in MI on 20k rows is the truth to a few hundredths of a bit.
    task = Task(family, 32, 4.0, seed=11)
    xi, yi = task.invert(*task.sample(20_000))
    assert gaussian_mi_bits(xi, yi, shrinkage=0.0) == pytest.approx(4.0, abs=0.08)


@pytest.mark.parametrize("family", ["halfcube", "asinh"])
def test_warps_hide_part_of_the_mi_from_a_gaussian_reading(family: str) -> None:
    # Same truth as lowrank, but the Gaussian fit of the warped pair sees less: the warp is not a no-op.
    x, y = Task(family, 16, 4.0, seed=2).sample(20_000)
    assert gaussian_mi_bits(x, y, shrinkage=0.0) < 3.6


def test_sparse_pairs_carry_falling_shares_that_add_up() -> None:
    task = Task("sparse", 64, 6.0, seed=4)
    shares = task.pair_mi_bits()
    assert shares.size == SPARSE_PAIRS and shares.sum() == pytest.approx(6.0)
    assert np.all(np.diff(shares) < 0) and shares[0] / shares[1] == pytest.approx(2.0)
    # the sample's canonical correlations are those of the pairs (rho^2 = 1 - 2^(-2 mi_j))
    x, y = task.sample(40_000)
    x, y = x - x.mean(0), y - y.mean(0)
    wx = np.linalg.inv(np.linalg.cholesky(np.cov(x.T)))
    wy = np.linalg.inv(np.linalg.cholesky(np.cov(y.T)))
    rho = np.linalg.svd(wx @ (x.T @ y / len(x)) @ wy.T, compute_uv=False)
    assert rho[:4] == pytest.approx(np.sqrt(1 - 2.0 ** (-2 * shares[:4])), abs=0.01)


def test_lowrank_draws_what_it_drew_before_the_other_families() -> None:
    # Values from the generator before "sparse" and the warps shared its code: cached validation rows and the
    # SMILE dissection were scored on these exact samples.
    x, y = Task("lowrank", 16, 2.0, seed=5).sample(3, 1)
    np.testing.assert_array_equal(x[:, :3], np.array(
        [[-0.21744821965694427, 0.6617590188980103, -1.4968947172164917],
         [1.5447419881820679, -1.2927876710891724, 0.41308918595314026],
         [0.7236939668655396, 0.3391021490097046, 0.09412127733230591]], dtype=np.float32))
    np.testing.assert_array_equal(y[:, :3], np.array(
        [[-0.31452465057373047, -0.6028005480766296, 0.11920320242643356],
         [-0.833686351776123, -0.8839274644851685, -0.022115511819720268],
         [-0.01931746117770672, -0.6589333415031433, 0.1612030565738678]], dtype=np.float32))


def test_benchmark_tasks_are_the_validation_grids() -> None:
    # neural_recommendation keeps ie_ray.validate off the GPU machine, so it repeats the grid's lists
    grid = ValidationConfig()
    assert (nr.GRID_DIMS, nr.GRID_MI, grid.seed) == (grid.dims, grid.mi_bits, 0)
    ours = nr.concentrated_tasks((64, 256), (1.0, 8.0))
    assert ours == peers.grid_tasks([64, 256], [1.0, 8.0], list(CONCENTRATED_FAMILIES))
    lowrank = [t for t in ours if t.family == "lowrank"]
    assert lowrank == [t for t in make_tasks(list(grid.dims), list(grid.mi_bits), ["lowrank"])
                       if t.d in (64, 256) and t.mi_bits in (1.0, 8.0)]  # = `ie-ray validate --families lowrank`


# --- MINEParams.device -----------------------------------------------------------------------------------------


def test_device_is_validated_and_stays_out_of_cpu_cache_keys() -> None:
    assert "device" not in MINEParams().key_dict()
    assert MINEParams(device="cuda:1").key_dict()["device"] == "cuda:1"
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        MINEParams(device="tpu").validate()


# --- the benchmark ---------------------------------------------------------------------------------------------


def _bmi_dump(folder, task: str = "toy-2-2", seeds=(0, 1)) -> None:
    folder.mkdir()
    for s in seeds:
        rng = np.random.default_rng(s)
        x = rng.standard_normal((400, 2)).astype(np.float32)
        y = (0.8 * x + 0.6 * rng.standard_normal((400, 2))).astype(np.float32)
        np.savez(folder / f"{task}__seed{s}.npz", x=x, y=y, seed=s, mi_bits=-math.log2(1 - 0.64), task_id=task)


def test_quick_run_resumes_and_writes_the_table(tmp_path) -> None:
    _bmi_dump(tmp_path / "bmi")
    args = ["--quick", "--only", "dv", "--bmi-dir", str(tmp_path / "bmi"), "--raw", str(tmp_path / "raw.jsonl"),
            "--out", str(tmp_path / "t.md"), "--dims", "16"]
    assert nr.main(args) == 0
    lines = (tmp_path / "raw.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert {r["regime"] for r in rows} == {"bmi", "d=16"} and len(rows) == 2 + len(CONCENTRATED_FAMILIES)
    assert {(r["task"], r["draw"]) for r in rows if r["regime"] == "bmi"} == {("bmi:toy-2-2", 0), ("bmi:toy-2-2", 1)}
    assert all(r["flag"] != "error" and r["wall_s"] > 0 for r in rows)
    assert nr.main(args) == 0  # a second run finds everything finished
    assert (tmp_path / "raw.jsonl").read_text().splitlines() == lines
    table = (tmp_path / "t.md").read_text()
    assert "| bmi | **all 1** |" in table and "- **d=16** (5 tasks finished by all): recommend `dv`" in table


def test_budget_stops_new_work_and_the_table_says_so(tmp_path) -> None:
    _bmi_dump(tmp_path / "bmi")
    assert nr.main(["--quick", "--only", "dv", "--bmi-dir", str(tmp_path / "bmi"), "--budget-s", "0",
                    "--raw", str(tmp_path / "raw.jsonl"), "--out", str(tmp_path / "t.md")]) == 0
    assert not (tmp_path / "raw.jsonl").exists() or not (tmp_path / "raw.jsonl").read_text().strip()
    assert "No finished estimates yet." in (tmp_path / "t.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure path where CUDA is absent")
def test_a_failing_job_is_recorded_and_the_run_goes_on(tmp_path) -> None:
    _bmi_dump(tmp_path / "bmi", seeds=(0,))
    jobs = list(nr.bmi_jobs(["dv"], tmp_path / "bmi"))
    raw = tmp_path / "raw.jsonl"
    assert nr.run(jobs, raw, "cuda", "python3", None, nr.QUICK_OVERRIDES, log=lambda _: None) == 1
    (row,) = nr.read_rows(raw)
    assert row["flag"] == "error" and "sees no CUDA device" in row["error"] and math.isnan(row["mi_bits"])
    assert "1 estimates failed" in nr.report(raw, tmp_path / "t.md", nr.machine_info(threads=1))


def _row(estimator: str, regime: str, task: str, rel_error: float, wall_s: float = 1.0) -> dict:
    return dict(estimator=estimator, regime=regime, task=task, draw=0, n=100, mi_true=2.0, rel_error=rel_error,
                device="cpu", mi_bits=2.0 * (1 - rel_error), wall_s=wall_s, flag="ok", steps_run=10)


def test_recommendation_ranks_by_median_error_and_applies_the_issues_bars() -> None:
    """Medians over the tasks every estimator finished, the best of ours against torch-mist (<= its error at <= 2x
    its seconds); a regime where even the best reads ~nothing (median error >= 0.9) recommends none."""
    tasks = ("a", "b", "c")
    rows = ([_row("dv", "d=64", t, e, 1.0) for t, e in zip(tasks, (0.5, 0.6, 0.7))]
            + [_row("smile-tm", "d=64", t, e, 3.0) for t, e in zip(tasks, (0.1, 0.3, 0.2))]
            + [_row(nr.TORCH_MIST, "d=64", t, e, 2.0) for t, e in zip(tasks, (0.25, 0.2, 0.4))])
    text = nr.recommendation(rows, "d=64")
    assert "recommend `smile-tm`, median error 0.200" in text and "`dv` 0.600" in text
    assert "torch-mist SMILE: 0.250" in text and "1.50x its seconds" in text and ": met)" in text
    slow = [dict(r, wall_s=5.0) if r["estimator"] == "smile-tm" else r for r in rows]
    assert ": not met)" in nr.recommendation(slow, "d=64")  # 2.5x torch-mist's seconds
    flat = [dict(r, rel_error=1.0 - 0.01 * i) for i, r in enumerate(rows)]
    text = nr.recommendation(flat, "d=64")
    assert "no estimator tracks the MI here" in text and "recommend `" not in text
