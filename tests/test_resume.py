"""Never lose work: reruns reuse finished shards, a killed driver or extraction actor costs only what was in
flight, and the results are identical to an undisturbed run (zero lost rows, zero duplicated rows)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from ie_ray import store
from ie_ray.cache import MARKER
from ie_ray.config import ExtractConfig, parse_config
from ie_ray.corpora.icl import build_icl_corpus
from ie_ray.corpora.tokenizers import tiny_tokenizer
from ie_ray.extract import extract_states
from ie_ray.models import ModelSpec
from ie_ray.sweep import run_sweep

REPO = Path(__file__).resolve().parent.parent
ROW_KEYS = ["model", "corpus", "shots", "layer", "position", "level", "seed", "reading", "tau"]
RESUME_SWEEP = {
    "name": "tiny-resume",
    "models": ["tiny-gpt2"],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_entities": 8, "n_samples": 240}],
    "shots": [2],
    "layers": [0],
    "positions": [3],
    "estimator": {"steps": 30, "batch_size": 64, "n_bootstrap": 20},
    # kept: these tests count and corrupt state shards; deletion after reduction is tested in test_reading_registry
    "extract": {"batch_size": 60, "keep_states": True},
    "reduce": {"estimators_per_task": 2},
}


def _shards(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["shards"]


def _estimate_shards(mi: pd.DataFrame, per_task: int = RESUME_SWEEP["reduce"]["estimators_per_task"]) -> int:
    """Estimate shards a run writes: one per reading task. Per layer, the smoothed MI and the entropy limit are one
    task each (all positions, levels and taus); MINE is one task per `per_task` fitted estimates, plus one for
    its constant positions (exact zeros, no fit)."""
    shards = 0
    for _, layer in mi.groupby("layer"):
        shards += layer[layer.reading != "mine"].reading.nunique()
        mine = layer[layer.reading == "mine"]
        fitted = int((mine.flag != "constant").sum())
        shards += -(-fitted // per_task) + int((mine.flag == "constant").any())
    return shards


def _assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same estimates, none lost, none duplicated, same numbers (fixed seeds make reruns exact)."""
    assert not got.duplicated(ROW_KEYS).any(), "duplicated MI rows"
    got = got.sort_values(ROW_KEYS).reset_index(drop=True)
    want = want.sort_values(ROW_KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[ROW_KEYS], want[ROW_KEYS])
    np.testing.assert_allclose(got.mi_bits, want.mi_bits, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got.ci_low, want.ci_low, rtol=0, atol=1e-9, equal_nan=True)
    assert list(got.flag) == list(want.flag)


@pytest.fixture(scope="module")
def _first_run_and_its_copy(ray_local, tmp_path_factory):
    """One undisturbed run, and a copy of its directory taken before any test reruns in it or adds to its cache."""
    run_dir = tmp_path_factory.mktemp("resume")
    result = run_sweep(parse_config(RESUME_SWEEP), run_dir)
    pristine = tmp_path_factory.mktemp("resume-pristine") / "run"
    shutil.copytree(run_dir, pristine)
    return result, pristine


@pytest.fixture(scope="module")
def first_run(_first_run_and_its_copy):
    return _first_run_and_its_copy[0]


@pytest.fixture
def copy_of_first_run(_first_run_and_its_copy):
    """A fresh copy of the first run's directory (cache included) in `dest`: the tests that corrupt a finished run
    start from one without paying for the run again (a tiny sweep takes 20-80 s on 2 shared cores)."""
    pristine = _first_run_and_its_copy[1]

    def copy(dest: Path) -> Path:
        shutil.copytree(pristine, dest)
        return dest

    return copy


def test_rerun_reuses_every_finished_shard(first_run, ray_local):
    fitted = _estimate_shards(first_run.mi)
    assert _shards(first_run.run_dir)["computed"] == {"extraction_streams": 4, "estimates": fitted}  # 2 macro, 2 micro
    again = run_sweep(parse_config(RESUME_SWEEP), first_run.run_dir)
    # every reading is cached: no state is needed, so none is even looked at
    assert _shards(first_run.run_dir) == {
        "reused": {"extraction_streams": 0, "estimates": fitted},
        "computed": {"extraction_streams": 0, "estimates": 0},
    }
    _assert_same_rows(again.mi, first_run.mi)
    pd.testing.assert_frame_equal(again.ie, first_run.ie)
    table = pd.read_csv(first_run.run_dir / "shards.csv")  # which shards, not just how many
    assert set(table.status) == {"reused"} and set(table.kind) == {"estimates"}
    assert len(table) == fitted


def test_changed_config_recomputes_only_the_new_layer(first_run, ray_local, tmp_path):
    config = parse_config(dict(RESUME_SWEEP, layers=[0, 2]))
    result = run_sweep(config, tmp_path, cache_dir=first_run.run_dir / "cache")
    shards = _shards(tmp_path)
    fitted_per_layer = _estimate_shards(first_run.mi)
    # positions did not change, so the cell keeps its key: only layer 2 is new (streams 2 and 3, macro and micro);
    # layer 0's readings are cached, so its states are not needed
    assert shards["computed"] == {"extraction_streams": 4, "estimates": fitted_per_layer}
    assert shards["reused"] == {"extraction_streams": 0, "estimates": fitted_per_layer}
    _assert_same_rows(result.mi[result.mi.layer == 0].drop(columns="n_params"),
                      first_run.mi.drop(columns="n_params"))


def test_a_different_estimator_setting_refits_but_reuses_states(first_run, ray_local, tmp_path):
    config = parse_config(dict(RESUME_SWEEP, estimator=dict(RESUME_SWEEP["estimator"], steps=31)))
    run_sweep(config, tmp_path, cache_dir=first_run.run_dir / "cache")
    shards = _shards(tmp_path)
    # MINE refits; the layer's smoothed-MI and entropy-limit shards do not depend on MINE's settings: reused
    assert shards["reused"]["extraction_streams"] == 4 and shards["reused"]["estimates"] == 2


def test_an_unsealed_layer_is_extracted_again(first_run, copy_of_first_run, ray_local, tmp_path):
    run_dir = copy_of_first_run(tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())  # the copied manifest names the original's paths
    states = Path(manifest["corpora"]["tiny-gpt2/icl-country-2shot"]["states"])
    layer_dir = run_dir / states.relative_to(first_run.run_dir) / "stream=0"
    (layer_dir / MARKER).unlink()  # as if the run died after writing files but before sealing them
    parquet = next(layer_dir.glob("*.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:100])  # and one file was cut short
    shutil.rmtree(run_dir / "cache" / "estimates")  # and no reading was cached: the states are needed again
    again = run_sweep(parse_config(RESUME_SWEEP), run_dir)
    assert _shards(run_dir)["computed"]["extraction_streams"] == 1
    assert (layer_dir / MARKER).is_file()
    _assert_same_rows(again.mi, first_run.mi)


def test_unreadable_estimate_file_is_refitted_not_trusted(first_run, copy_of_first_run, ray_local, tmp_path):
    cache = copy_of_first_run(tmp_path / "first") / "cache"  # every reading of the config cached, as after a run
    victim = min((cache / "estimates").rglob("*.json"))
    victim.write_text("{not json")
    again = run_sweep(parse_config(RESUME_SWEEP), tmp_path, cache_dir=cache)
    assert _shards(tmp_path)["computed"]["estimates"] == 1
    _assert_same_rows(again.mi, first_run.mi)


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its in-process Ray), like a lost node."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_of_the_driver_mid_sweep_loses_and_duplicates_nothing(ray_local, tmp_path):
    config = dict(RESUME_SWEEP, layers=[0, 1, 2, 3], estimator=dict(RESUME_SWEEP["estimator"], steps=400),
                  reduce={"estimators_per_task": 1})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    killed_dir = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)  # its own in-process Ray, like a driver on a laptop
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / "sweep.py"), "--config", str(config_file), "--out", str(killed_dir)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=(tmp_path / "driver.log").open("w"),
    )
    estimates = killed_dir / "cache" / "estimates"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list(estimates.rglob("*.json"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            f"the sweep ended (rc={proc.returncode}) before it could be killed:\n"
            + (tmp_path / "driver.log").read_text()[-3000:]
        )
        done_before_kill = len(list(estimates.rglob("*.json")))
    finally:
        if proc.poll() is None:
            _kill_tree(proc)
    assert not (killed_dir / "mi.parquet").exists()

    resumed = run_sweep(parse_config(config), killed_dir)
    undisturbed = run_sweep(parse_config(config), tmp_path / "undisturbed")
    shards = _shards(killed_dir)
    fitted = _estimate_shards(undisturbed.mi, per_task=1)
    assert done_before_kill < fitted
    assert shards["reused"]["estimates"] >= done_before_kill
    assert shards["reused"]["estimates"] + shards["computed"]["estimates"] == fitted
    _assert_same_rows(resumed.mi, undisturbed.mi)


@pytest.mark.slow
def test_killed_extraction_actor_restarts_and_output_is_unchanged(ray_local, tmp_path):
    spec = ModelSpec(name="tiny-gpt2")
    corpus = build_icl_corpus("country", tiny_tokenizer(), shots=2, n_samples=3000, seed=0, n_entities=8)
    table = corpus.to_arrow()
    settings = ExtractConfig(batch_size=4)
    seen: dict[int, float] = {}
    killed: list[int] = []
    stop = threading.Event()

    def kill_first_worker() -> None:
        me = psutil.Process()
        while not stop.is_set():
            # only this session's in-process Ray (its raylet is our child): never another run on a shared box
            for proc in me.children(recursive=True):
                try:
                    cmdline = " ".join(proc.cmdline())
                except psutil.Error:
                    continue
                if "MapBatches(BlockStateExtractor)" in cmdline and proc.pid not in seen:
                    seen[proc.pid] = time.time()
            for pid, since in list(seen.items()):
                if not killed and time.time() - since > 1.5:  # model loaded and batches flowing
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_first_worker, daemon=True)
    watcher.start()
    try:
        extract_states(table, spec, [0, 3], [0, 3], settings, tmp_path / "killed")
    finally:
        stop.set()
        watcher.join()
    assert killed, "no extraction actor was killed: the pipeline finished too fast"
    assert len(seen) >= 2, "the killed actor was not replaced"
    extract_states(table, spec, [0, 3], [0, 3], settings, tmp_path / "undisturbed")
    for layer in (0, 3):
        ids, pre, post = store.read_layer_states(tmp_path / "killed", layer)
        ids2, pre2, post2 = store.read_layer_states(tmp_path / "undisturbed", layer)
        np.testing.assert_array_equal(ids, np.arange(3000))  # every sample exactly once
        np.testing.assert_array_equal(ids, ids2)
        np.testing.assert_array_equal(pre, pre2)
        np.testing.assert_array_equal(post, post2)


def test_extract_only_fills_the_cache_and_the_full_run_extracts_nothing_more(first_run, ray_local, tmp_path):
    """`ie-ray sweep --extract-only` (a GPU box fills the cache) then the same sweep without it (reduce anywhere):
    every stream is extracted once, by the first command, and the numbers equal an ordinary run's."""
    from ie_ray.sweep import extract_only

    config = parse_config(dict(RESUME_SWEEP, extract=dict(RESUME_SWEEP["extract"], keep_states=False)))
    directories = extract_only(config, tmp_path)
    assert set(directories) == {"tiny-gpt2/icl-country-2shot", "tiny-gpt2/micro"}
    for directory in directories.values():  # block 0 reads streams 0 and 1: both sealed, kept despite keep_states
        assert sorted(p.name for p in directory.glob("stream=*") if (p / MARKER).is_file()) == ["stream=0",
                                                                                                  "stream=1"]
    record = json.loads((tmp_path / "extracted.json").read_text())
    assert record["shards"]["computed"] == {"extraction_streams": 4, "estimates": 0}
    assert not (tmp_path / "mi.parquet").exists()  # nothing reduced
    result = run_sweep(config, tmp_path)
    assert _shards(tmp_path)["reused"]["extraction_streams"] == 4
    assert _shards(tmp_path)["computed"]["extraction_streams"] == 0
    _assert_same_rows(result.mi, first_run.mi)


def test_extract_only_from_the_command_line_with_a_layer_override(ray_local, tmp_path, capsys):
    from ie_ray.cli import main

    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(RESUME_SWEEP))
    assert main(["sweep", "--config", str(config_file), "--out", str(tmp_path / "run"), "--layers", "1",
                 "--extract-only"]) == 0
    printed = capsys.readouterr().out
    assert "streams [1, 2]" in printed and "nothing reduced" in printed
    record = json.loads((tmp_path / "run" / "extracted.json").read_text())
    assert sorted(record["states"]) == ["tiny-gpt2/icl-country-2shot", "tiny-gpt2/micro"]
    assert not (tmp_path / "run" / "mi.parquet").exists()
    assert main(["sweep", "--config", str(config_file), "--out", str(tmp_path / "bad"), "--layers", "one",
                 "--extract-only"]) == 2
    assert "comma-separated block indices" in capsys.readouterr().err
