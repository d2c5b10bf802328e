"""benchmarks/peers.py: the peer toolkits must be scored on exactly the tasks `ie-ray validate` scores ours on,
and a missing peer venv must say how to make it (the peers are never dependencies of the package)."""
from __future__ import annotations


import pytest

from ie_ray.estimators.benchmark import FAMILIES, make_tasks
from ie_ray.validate import ValidationConfig

from benchmark_loader import load_benchmark  # tests/ is on sys.path

peers = load_benchmark("peers")


def test_peer_tasks_are_the_validation_grids_tasks() -> None:
    grid = ValidationConfig()
    ours = {t.name: t.seed for t in make_tasks(list(grid.dims), list(grid.mi_bits), list(grid.families), grid.seed)}
    selected = peers.grid_tasks([16, 768], [1.0, 4.0], list(FAMILIES))
    assert len(selected) == 2 * 2 * len(FAMILIES)
    assert all(ours[t.name] == t.seed for t in selected)
    # a family-only grid (ie-ray validate --families lowrank) numbers its tasks from its own list
    lowrank = peers.grid_tasks([256], [2.0], ["lowrank"])
    ref = make_tasks(list(grid.dims), list(grid.mi_bits), ["lowrank"], grid.seed)
    assert [t.seed for t in lowrank] == [t.seed for t in ref if t.d == 256 and t.mi_bits == 2.0]


def test_missing_peer_venv_names_the_setup_script(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"setup_venvs.sh"):
        peers.run_peer("torch-mist-smile", peers.grid_tasks([16], [1.0], ["gaussian"]), 600, tmp_path / "none",
                       tmp_path / "out", 0.2)


def test_peer_readings_that_mi_cannot_take_are_never_ok() -> None:
    assert peers.peer_flag(0.4, "") == "ok"
    assert peers.peer_flag(-0.003, "") == "below_zero"
    assert peers.peer_flag(float("nan"), "") == "peer_error"
    assert peers.peer_flag(1.0, "RuntimeError: boom") == "peer_error"
