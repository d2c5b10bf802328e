"""Static checks on ie_ray/: ruff (lint and import order) and mypy (types), as configured in pyproject.toml.

They run here, as tests, so that CI (`.ci/run`, the README's test command) fails on a finding like on any other
failing test; both tools are pinned in the `test` extra, so a new release cannot turn CI red on an unchanged tree.
By hand, from the repository root: `ruff check ie_ray` and `mypy ie_ray`. What to do on a red test: fix the
finding; an ignore (`# noqa: RULE` or `# type: ignore[code]`) carries the rule or error code and, in a comment, why.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CHECKS = {
    "ruff": ["ruff", "check", "ie_ray"],
    "mypy": ["mypy", "ie_ray"],
}


@pytest.mark.parametrize("tool", sorted(CHECKS))
def test_static_check_finds_nothing(tool: str) -> None:
    command = CHECKS[tool]
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, check=False)
    missing = f"No module named {tool}" in result.stderr
    hint = "; install the pinned tools with pip install -e '.[test]'" if missing else ""
    assert result.returncode == 0, f"`{' '.join(command)}` failed (exit {result.returncode}){hint}\n" \
                                   f"{result.stdout}{result.stderr}"
