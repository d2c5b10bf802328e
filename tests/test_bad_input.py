"""Bad input costs seconds: every case below fails through the real command line, before any extraction, with
one line that names the offending value and says what to do instead."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ie_ray.cli import main
from ie_ray.corpora.tokenizers import tiny_tokenizer

BASE = {
    "name": "bad-input",
    "models": ["tiny-gpt2"],
    "corpora": [{"kind": "icl", "task": "country", "n_entities": 8, "n_samples": 240}],
    "shots": [2],
    "layers": [0],
    "positions": [3],
    "estimator": {"steps": 10, "batch_size": 64},
}


def _custom_code_model(tmp_path: Path) -> str:
    """A local model directory whose config needs its own Python code (auto_map), like many hub repos."""
    model_dir = tmp_path / "custom-model"
    tiny_tokenizer().save_pretrained(model_dir)
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "custom-x",
        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XModel"},
    }))
    (model_dir / "configuration_x.py").write_text(
        "from transformers import PretrainedConfig\nclass XConfig(PretrainedConfig):\n    model_type = 'custom-x'\n"
    )
    return str(model_dir)


# (case id, change to BASE, words the one-line error must contain)
CASES = [
    ("unknown-top-level-key", {"layer": [1]}, ["'layer'", "valid keys"]),
    ("unknown-nested-key", {"extract": {"batchsize": 8}}, ["'batchsize'", "batch_size"]),
    ("unknown-model", {"models": ["no-such-model-xyz"]}, ["'no-such-model-xyz'", "embedded model"]),
    ("hub-model-offline", {"models": ["some-org/not-cached-model"]}, ["'some-org/not-cached-model'", "local copy"]),
    ("unknown-tiny-family", {"models": ["tiny-mamba"]}, ["'mamba'", "tiny-gpt2"]),
    ("layer-out-of-range", {"layers": [7]}, ["layer 7", "0..3"]),
    ("layer-out-of-range-second-model", {"models": ["tiny-gpt2", "tiny-llama"], "layers": [0, 4]},
     ["layer 4", "0..3"]),
    ("position-out-of-range", {"positions": [40]}, ["position 40", "0..3"]),
    ("negative-position", {"positions": [-2]}, ["[-2]", "count from 0"]),
    ("more-shots-than-entities", {"shots": [9]}, ["k=9", "n_entities"]),
    ("too-few-samples", {"corpora": [{"task": "country", "n_samples": 5}]}, ["n_samples=5", "too small"]),
    ("samples-below-estimator-batch", {"corpora": [{"task": "country", "n_samples": 100}],
                                       "estimator": {"batch_size": 512}}, ["n_samples=100", "batch"]),
    ("unknown-task", {"corpora": [{"task": "planets"}]}, ["'planets'", "country"]),
    ("unknown-dtype", {"models": [{"name": "tiny-gpt2", "dtype": "float8"}]}, ["'float8'", "float32"]),
    ("bad-prepend-bos", {"models": [{"name": "tiny-gpt2", "prepend_bos": "maybe"}]}, ["'maybe'", "auto"]),
    ("unknown-estimator-setting", {"estimator": {"stepz": 10}}, ["stepz"]),
    ("unknown-estimator-preset", {"estimator": {"preset": "fast"}}, ["'fast'", "paper"]),
    ("bad-micro-mode", {"micro": "token"}, ["'token'", "single_token"]),
    ("bad-store-dtype", {"extract": {"store_dtype": "int8"}}, ["'int8'", "float16"]),
    ("zero-estimators-per-task", {"reduce": {"estimators_per_task": 0}}, ["estimators_per_task", ">= 1"]),
    ("shots-zero", {"shots": [0]}, ["shots", ">= 1"]),
    ("layers-not-integers", {"layers": ["first"]}, ["layers", "integers"]),
    ("empty-models", {"models": []}, ["models is empty", "smollm2-135m"]),
]


def _run(tmp_path: Path, config_text: str | bytes, capsys) -> tuple[int, str]:
    config_file = tmp_path / "config.yaml"
    if isinstance(config_text, bytes):
        config_file.write_bytes(config_text)
    else:
        config_file.write_text(config_text)
    code = main(["sweep", "--config", str(config_file), "--out", str(tmp_path / "run")])
    return code, capsys.readouterr().err.strip()


def _assert_one_clear_line(code: int, err: str, words: list[str], tmp_path: Path) -> None:
    assert code == 2
    ours = [line for line in err.splitlines() if line.startswith("ie-ray: error: ")]
    assert len(ours) == 1 and err.endswith(ours[0]), err  # libraries may warn first; our error is one line
    for word in words:
        assert word in ours[0], f"{word!r} not in: {ours[0]}"
    # nothing was extracted or estimated: the error came before any work
    assert not (tmp_path / "run" / "cache").exists()


@pytest.mark.parametrize("change,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_value_is_one_clear_line(tmp_path, capsys, change, words):
    code, err = _run(tmp_path, yaml.safe_dump({**BASE, **change}), capsys)
    _assert_one_clear_line(code, err, words, tmp_path)


def test_custom_code_model_needs_the_explicit_flag(tmp_path, capsys):
    model = _custom_code_model(tmp_path)
    code, err = _run(tmp_path, yaml.safe_dump({**BASE, "models": [model]}), capsys)
    _assert_one_clear_line(code, err, [repr(model), "trust_remote_code: true"], tmp_path)


@pytest.mark.parametrize(
    "text,words",
    [
        ("", ["is empty", "smoke.yaml"]),
        (b"name: caf\xe9\n", ["not UTF-8", "UTF-8"]),
        ("models: [tiny-gpt2\n", ["not valid YAML"]),
        ("- a\n- b\n", ["YAML mapping", "list"]),
        ("!!python/object/apply:os.system ['echo pwned']\n", ["not valid YAML"]),  # safe_load refuses tags
    ],
    ids=["empty-file", "non-utf8-file", "broken-yaml", "not-a-mapping", "python-tag-refused"],
)
def test_bad_config_file_is_one_clear_line(tmp_path, capsys, text, words):
    code, err = _run(tmp_path, text, capsys)
    _assert_one_clear_line(code, err, words, tmp_path)


def test_missing_config_file(tmp_path, capsys):
    code = main(["sweep", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    _assert_one_clear_line(code, err, ["does not exist", "--config"], tmp_path)
