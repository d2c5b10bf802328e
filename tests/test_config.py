"""Sweep config: the embedded default parses, and every bad value is a ConfigError that names it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ie_ray.config import (
    DEFAULT_CONFIG,
    CorpusConfig,
    ExtractConfig,
    ReduceConfig,
    SweepConfig,
    load_config,
    parse_config,
    resolve_indices,
)
from ie_ray.errors import ConfigError
from ie_ray.estimators import MINEParams
from ie_ray.models import ModelSpec

#: A small valid config; each test breaks exactly one thing.
VALID = {
    "name": "unit",
    "models": [{"name": "tiny-gpt2", "dtype": "float32", "prepend_bos": "auto"}],
    "corpora": [{"kind": "icl", "task": "country", "format": "comma-space", "n_samples": 2000, "seed": 0}],
    "shots": [4],
    "layers": [0, -1],
    "positions": "all",
    "micro": "single_token",
    "seeds": [0, 1],
    "estimator": {"preset": "default"},
    "extract": {"batch_size": 64, "store_dtype": "float32"},
    "reduce": {"estimators_per_task": 4},
}


def with_change(**changes) -> dict:
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def write(tmp_path: Path, content: str | bytes, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- the embedded default ------------------------------------------------------------------------------------


def test_default_config_is_smoke_yaml_and_parses() -> None:
    """load_config() reads smoke.yaml; compared with the raw YAML so that retuning the smoke run needs no edit."""
    assert DEFAULT_CONFIG.name == "smoke.yaml" and DEFAULT_CONFIG.exists()
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    config = load_config()
    assert isinstance(config, SweepConfig)
    assert config.name == raw["name"] == "smoke"
    assert config.models == tuple(ModelSpec(**m) for m in raw["models"])
    assert config.models[0].name == "smollm2-135m"  # the embedded default model
    assert config.corpora == tuple(CorpusConfig(**c) for c in raw["corpora"])
    assert config.corpora[0].label == f"{raw['corpora'][0]['kind']}-{raw['corpora'][0]['task']}"
    assert config.shots == tuple(raw["shots"])
    assert config.layers == (raw["layers"] if raw["layers"] == "all" else tuple(raw["layers"]))
    assert config.positions == (raw["positions"] if raw["positions"] == "all" else tuple(raw["positions"]))
    assert config.micro == raw["micro"]
    assert config.seeds == tuple(raw["seeds"])
    assert config.extract == ExtractConfig(**raw["extract"])
    assert config.reduce == ReduceConfig(**raw["reduce"])
    assert isinstance(config.estimator_params(), MINEParams)
    assert load_config(DEFAULT_CONFIG) == config


def test_valid_dict_parses_to_typed_values() -> None:
    config = parse_config(copy.deepcopy(VALID))
    assert config.layers == (0, -1)  # negatives are resolved later, against the model's layer count
    assert config.seeds == (0, 1)
    assert config.models[0] == ModelSpec("tiny-gpt2")
    assert config.extract.batch_size == 64 and config.extract.concurrency == 1
    assert config.reduce.estimators_per_task == 4


def test_short_forms_of_models_and_corpora() -> None:
    config = parse_config(with_change(models="tiny-llama", corpora={"task": "animal"}, shots=3))
    assert config.models == (ModelSpec("tiny-llama"),)
    assert [c.task for c in config.corpora] == ["animal"]
    assert config.shots == (3,)


def test_content_hash_is_stable_and_sensitive() -> None:
    a = parse_config(copy.deepcopy(VALID))
    b = parse_config(copy.deepcopy(VALID))
    c = parse_config(with_change(seeds=[0, 2]))
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 16
    assert a.content_hash() != c.content_hash()


# --- bad values ----------------------------------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['layer'\] in the config.*'layers'"):
        parse_config(with_change(layer=[0]))


@pytest.mark.parametrize(
    "section, value, where",
    [
        ("corpora", [{"task": "country", "n_sample": 2000}], r"\['n_sample'\] in corpora\[0\].*'n_samples'"),
        ("corpora", [{"task": "country"}, {"task": "animal", "shot": 3}], r"\['shot'\] in corpora\[1\]"),
        ("extract", {"batch": 8}, r"\['batch'\] in extract.*'batch_size'"),
        ("reduce", {"estimators": 8}, r"\['estimators'\] in reduce.*'estimators_per_task'"),
        ("models", [{"name": "tiny-gpt2", "dtyp": "float16"}], r"\['dtyp'\] in models\[0\].*'dtype'"),
    ],
)
def test_unknown_nested_key(section: str, value, where: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) " + where):
        parse_config(with_change(**{section: value}))


def test_nested_section_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"extract must be a mapping, got list"):
        parse_config(with_change(extract=[1, 2]))


def test_bad_micro_mode() -> None:
    with pytest.raises(ConfigError, match=r"micro must be one of .*not 'tokens'"):
        parse_config(with_change(micro="tokens"))


def test_full_context_micro_mode_is_valid() -> None:
    assert parse_config(with_change(micro="full_context")).micro == "full_context"


@pytest.mark.parametrize("shots", [[0], [4, 0], [-2]])
def test_shots_must_be_positive(shots) -> None:
    with pytest.raises(ConfigError, match=r"shots must be >= 1, got " + repr(shots).replace("[", r"\[")):
        parse_config(with_change(shots=shots))


def test_negative_positions() -> None:
    with pytest.raises(ConfigError, match=r"positions count from 0.*got \[0, -1\]"):
        parse_config(with_change(positions=[0, -1]))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("layers", [True], r"layers must be 'all' or a list of integers, got \[True\]"),
        ("layers", "last", r"layers must be 'all' or a list of integers, got 'last'"),
        ("positions", [1.5], r"positions must be 'all' or a list of integers, got \[1.5\]"),
        ("shots", "all", r"shots must be a list of integers, got 'all'"),
        ("seeds", [], r"seeds must be a list of integers, got \[\]"),
    ],
)
def test_integer_lists(key: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(with_change(**{key: value}))


def test_bad_store_dtype() -> None:
    with pytest.raises(ConfigError, match=r"store_dtype must be one of .*not 'int8'"):
        parse_config(with_change(extract={"store_dtype": "int8"}))


@pytest.mark.parametrize("key", ["batch_size", "concurrency"])
def test_extract_sizes_must_be_positive(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"extract.{key} must be (an integer|'auto' or an integer) >= 1, got 0"):
        parse_config(with_change(extract={key: 0}))


def test_estimators_per_task_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"estimators_per_task must be >= 1"):
        parse_config(with_change(reduce={"estimators_per_task": 0}))


def test_unknown_task() -> None:
    with pytest.raises(ConfigError, match=r"corpora\[0\].task 'planet' is unknown.*'country'"):
        parse_config(with_change(corpora=[{"task": "planet"}]))


def test_unknown_corpus_kind() -> None:
    with pytest.raises(ConfigError, match=r"corpora\[0\].kind 'text' is not supported"):
        parse_config(with_change(corpora=[{"kind": "text"}]))


def test_too_few_samples() -> None:
    with pytest.raises(ConfigError, match=r"corpora\[0\].n_samples=5 is too small"):
        parse_config(with_change(corpora=[{"task": "country", "n_samples": 5}]))


# --- files ---------------------------------------------------------------------------------------------------


def test_yaml_file_round_trip(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8").replace("name: smoke", "name: copied")
    assert load_config(write(tmp_path, text)).name == "copied"


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# only a comment\n")
    with pytest.raises(ConfigError, match=r"is empty") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"does not exist") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed\nlayers: {\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must be a YAML mapping, got list"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_unknown_key_in_a_yaml_file(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8") + "\nmicro_mode: single_token\n"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['micro_mode'\]"):
        load_config(write(tmp_path, text))


# --- estimator -----------------------------------------------------------------------------------------------


def test_estimator_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown MINE parameter\(s\) \['step'\].*'steps'"):
        parse_config(with_change(estimator={"step": 10}))


def test_estimator_bad_preset() -> None:
    with pytest.raises(ConfigError, match=r"unknown estimator preset 'fast'; choose one of \['default', 'paper'"):
        parse_config(with_change(estimator={"preset": "fast"}))


def test_estimator_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"lr must be > 0, got -1"):
        parse_config(with_change(estimator={"lr": -1}))


def test_estimator_presets() -> None:
    default = parse_config(with_change(estimator={"preset": "default"})).estimator_params()
    implicit = parse_config(with_change(estimator={})).estimator_params()
    paper = parse_config(with_change(estimator={"preset": "paper"})).estimator_params()
    assert default == implicit == MINEParams()
    assert paper == MINEParams.paper()
    assert (paper.steps, paper.batch_size, paper.lr, paper.readout, paper.n_layers, paper.max_dims) == (
        10_000, None, 1e-4, "max", 10, 768,
    )
    assert (default.steps, default.readout) == (500, "heldout")
    assert paper != default


def test_estimator_overrides_apply_on_top_of_the_preset() -> None:
    params = parse_config(with_change(estimator={"preset": "paper", "steps": 20, "lr": 1e-3})).estimator_params()
    assert (params.steps, params.lr) == (20, 1e-3)
    assert (params.readout, params.n_layers, params.batch_size) == ("max", 10, None)  # the rest is still paper


def test_n_samples_too_small_for_the_estimator_batch_size() -> None:
    # default preset: batch 256, 20% held out -> 100 samples leave 80 training pairs < 256
    with pytest.raises(ConfigError, match=r"n_samples=100.*batch_size=256 > n_train=80"):
        parse_config(with_change(corpora=[{"task": "country", "n_samples": 100}]))
    # a smaller batch makes the same corpus valid
    config = parse_config(with_change(corpora=[{"task": "country", "n_samples": 100}], estimator={"batch_size": 64}))
    assert config.estimator_params().batch_size == 64
    # the full-batch paper preset has no such limit
    assert parse_config(with_change(corpora=[{"task": "country", "n_samples": 100}], estimator={"preset": "paper"}))


def test_second_corpus_too_small_is_named() -> None:
    corpora = [{"task": "country", "n_samples": 2000}, {"task": "animal", "n_samples": 200}]
    with pytest.raises(ConfigError, match=r"corpora\[1\] with n_samples=200.*batch_size=256 > n_train=160"):
        parse_config(with_change(corpora=corpora))


# --- resolve_indices -----------------------------------------------------------------------------------------


def test_resolve_indices_all() -> None:
    assert resolve_indices("all", 4, "layer", "model 'm'") == [0, 1, 2, 3]
    assert resolve_indices("all", 0, "layer", "model 'm'") == []


def test_resolve_indices_negatives_sorted_and_deduplicated() -> None:
    assert resolve_indices((-1, 0), 4, "layer", "model 'm'") == [0, 3]
    assert resolve_indices((3, -1, 1, -4), 4, "layer", "model 'm'") == [0, 1, 3]
    assert resolve_indices((-30,), 30, "layer", "model 'm'") == [0]


@pytest.mark.parametrize("value", [4, -5, 100])
def test_resolve_indices_out_of_range(value: int) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_indices((0, value), 4, "layer", "model 'tiny-gpt2'")
    message = str(info.value)
    assert f"layer {value} is out of range for model 'tiny-gpt2'" in message
    assert "which has 4 layers" in message
    assert "valid: 0..3 or -4..-1" in message


def test_resolve_indices_positions_wording() -> None:
    with pytest.raises(ConfigError, match=r"position 8 is out of range for corpus icl-country with 4 shots, "
                                          r"which has 8 positions"):
        resolve_indices((8,), 8, "position", "corpus icl-country with 4 shots")


# --- static validation before any model loads (these were gaps: accepted silently or a TypeError) -----------


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param({"corpora": [{"task": "country", "format": "tab"}]}, r"corpora\[0\]\.format 'tab'",
                     id="bad-corpus-format"),
        pytest.param({"corpora": [{"task": "country", "n_entities": 0}]}, r"corpora\[0\]\.n_entities.*0",
                     id="zero-entities"),
        pytest.param({"models": []}, r"models is empty", id="no-models"),
        pytest.param({"corpora": []}, r"corpora is empty", id="no-corpora"),
        pytest.param({"models": [{"name": "tiny-gpt2", "dtype": "float64"}]}, r"models\[0\]\.dtype 'float64'",
                     id="bad-model-dtype"),
        pytest.param({"models": [{"name": "tiny-gpt2", "prepend_bos": "maybe"}]},
                     r"models\[0\]\.prepend_bos.*'maybe'", id="bad-prepend-bos"),
        pytest.param({"estimator": [1, 2]}, r"estimator must be a mapping.*list", id="estimator-not-a-mapping"),
        pytest.param({"corpora": [{"task": "country", "n_samples": "2000"}]},
                     r"corpora\[0\]\.n_samples must be an integer, got '2000'", id="n-samples-string"),
    ],
)
def test_static_validation(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(with_change(**change))


def test_estimator_variant_presets_name_the_critic_the_validation_table_scores() -> None:
    sep = parse_config(with_change(estimator={"preset": "dv-sep"})).estimator_params()
    assert (sep.objective, sep.critic, sep.embed_layers, sep.early_stop_fraction) == ("dv", "separable", 1, 0.2)
    smile = parse_config(with_change(estimator={"preset": "smile", "steps": 40})).estimator_params()
    assert (smile.objective, smile.critic, smile.steps) == ("smile", "joint", 40)
    assert smile.lr == MINEParams().lr  # an objective preset is the default joint critic on that bound
