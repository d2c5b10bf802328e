"""One command line: every tool the docs tell users to run is an `ie-ray` subcommand that reaches its module."""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ie_ray.cli import MODULE_COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
SMOKE_RUN = REPO / "results" / "smoke"  # a committed run of the default config
SUBCOMMANDS = ["sweep", "train-family", "compare", *(name for name, _, _ in MODULE_COMMANDS)]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "cluster" / "README.md",
        REPO / "results" / "README.md", REPO / "results" / "REPRODUCTION.md"]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_its_help(name, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ie-ray {name}")


@pytest.mark.parametrize(("argv", "module", "expected"), [
    (["variance", "RUN", "--patience", "3", "--shot-length", "2"], "ie_ray.variance",
     dict(run_dir="RUN", patience=3, shot_length=2)),
    (["brackets", "RUN", "--tau", "1.0"], "ie_ray.brackets", dict(run_dir="RUN", tau=1.0)),
    (["resources", "--params", "7e9", "--dtype", "float16"], "ie_ray.resources",
     dict(params=7e9, dtype="float16", hidden=8192)),
    (["validate", "--quick", "--dims", "4"], "ie_ray.validate", dict(quick=True, dims=[4], smoothed=False)),
    (["generate", "--out", "OUT", "--n-texts", "5"], "ie_ray.corpora.generate", dict(out="OUT", n_texts=5)),
])
def test_each_subcommand_dispatches_to_its_module(argv, module, expected, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(importlib.import_module(module), "main_from_args", lambda args: seen.append(args) or 0)
    assert main(argv) == 0
    assert len(seen) == 1
    for key, value in expected.items():
        assert getattr(seen[0], key) == value, key


def test_validate_smoothed_calls_the_smoothed_validation_with_typed_arguments(monkeypatch) -> None:
    from ie_ray import validate_smoothed

    calls = []
    monkeypatch.setattr(validate_smoothed, "run_smoothed_validation", lambda *a, **k: calls.append((a, k)))
    assert main(["validate", "--smoothed", "--dims", "8", "--supports", "25", "100", "--samples", "300",
                 "--taus", "0.25", "--repeats", "2", "--exact-draws", "50", "--budget-min", "1.5",
                 "--skip", "8:100", "--seed", "4", "--quick"]) == 0
    (args, kwargs), = calls
    assert args == (Path(validate_smoothed.DEFAULT_OUT), [8], [25, 100], 300, [0.25], 4, True)
    assert kwargs == dict(repeats=2, exact_draws=50, budget_min=1.5, skip=[(8, 100)])
    calls.clear()
    assert main(["validate", "--smoothed", "--out", "elsewhere"]) == 0  # the committed run's grid by default
    (args, kwargs), = calls
    assert args == (Path("elsewhere"), validate_smoothed.DEFAULT_DIMS, list(validate_smoothed.DEFAULT_SUPPORTS),
                    validate_smoothed.DEFAULT_SAMPLES, list(validate_smoothed.DEFAULT_TAUS), 0, False)
    assert kwargs == dict(repeats=validate_smoothed.REPEATS, exact_draws=validate_smoothed.EXACT_DRAWS,
                          budget_min=None, skip=[])


def test_validate_smoothed_refuses_bad_values(capsys) -> None:
    assert main(["validate", "--smoothed", "--samples", "100", "200"]) == 2
    assert "one --samples value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["validate", "--smoothed", "--skip", "4096x20000"])
    assert "not a cell D:K" in capsys.readouterr().err


def test_the_console_script_runs_a_subcommand_in_a_fresh_process() -> None:
    done = subprocess.run([sys.executable, "-m", "ie_ray.cli", "resources", "--params", "70e9", "--dtype",
                           "bfloat16", "--gpu-memory-gb", "80"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "num_gpus: 4.0" in done.stdout and "device_map: auto" in done.stdout
    alias = subprocess.run([sys.executable, "-m", "ie_ray.brackets", "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert alias.returncode == 0 and "usage: ie-ray brackets" in alias.stdout, alias.stderr


@pytest.mark.skipif(not (SMOKE_RUN / "mi.parquet").exists(), reason="results/smoke is not in this checkout")
def test_brackets_and_variance_run_on_the_committed_smoke_run(tmp_path, capsys) -> None:
    run = tmp_path / "smoke"
    shutil.copytree(SMOKE_RUN, run)
    assert main(["brackets", str(run)]) == 0
    table = pd.read_csv(run / "ie_brackets.csv")
    assert {"ie_plugin_bits", "ie_loo_bits", "gap_bits"} <= set(table.columns) and len(table)
    assert main(["variance", str(run)]) == 0
    assert (run / "variance.csv").stat().st_size and (run / "variance.png").stat().st_size
    assert "wrote variance.csv" in capsys.readouterr().out


def test_the_docs_show_ie_ray_subcommands_not_module_runs() -> None:
    for path in DOCS:
        found = re.findall(r"python -m ie_ray\.(?!cli\b)\w+", path.read_text())  # ie_ray.cli: the command itself
        assert not found, f"{path.relative_to(REPO)} still tells users to run {found}; show `ie-ray ...` instead"
