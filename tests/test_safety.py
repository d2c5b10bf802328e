"""Safety rules that a code review would otherwise have to remember: no unsafe deserialisation of files a user
did not produce, and every output path stays inside the run directory."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ie_ray import store

PACKAGE = Path(__file__).resolve().parent.parent / "ie_ray"
UNSAFE = {
    r"\bpickle\.loads?\(": "pickle executes code from the file; store Arrow/Parquet/JSON instead",
    r"\byaml\.load\(": "use yaml.safe_load",
    r"\byaml\.unsafe_load\(": "use yaml.safe_load",
    r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)": "torch.load needs weights_only=True",
    r"\bnp\.load\([^)]*allow_pickle\s*=\s*True": "np.load must not allow pickles",
    r"(?<![\w.])eval\(": "never eval text",
}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_scan_sees_the_package():
    assert len(_sources()) > 10
    assert re.search(r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load(path)")
    assert not re.search(r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load(p, weights_only=True)")


@pytest.mark.parametrize("pattern,why", list(UNSAFE.items()), ids=list(UNSAFE.values()))
def test_no_unsafe_deserialisation(pattern, why):
    offenders = [f"{path.relative_to(PACKAGE)}:{n}" for path in _sources()
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert not offenders, f"{why}: {offenders}"


@pytest.mark.parametrize("parts", [("..", "escape.parquet"), ("/etc", "passwd"), ("a", "..", "..", "b")])
def test_paths_outside_the_run_directory_are_refused(tmp_path, parts):
    with pytest.raises(ValueError, match="outside the run directory"):
        store.inside(tmp_path, *parts)


@pytest.mark.parametrize("name", ["../../etc/passwd", "org/model", "/abs/path/model", "..", ""])
def test_model_and_corpus_names_become_safe_single_path_components(tmp_path, name):
    slug = store.safe_name(name)
    assert "/" not in slug and slug not in ("", ".", "..")
    assert store.inside(tmp_path, slug, "x.parquet").parent.parent == tmp_path.resolve()


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    import os

    store.write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
