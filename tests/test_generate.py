"""Generated text with provenance (PAPER.md 3c), on a tiny random-init model and the tiny tokenizer."""
from __future__ import annotations

import json

import pytest

from ie_ray.corpora.generate import (
    GenerationSettings,
    PromptSettings,
    draw_prompts,
    generate_texts,
    read_generated,
)
from ie_ray.corpora.natural import load_documents
from ie_ray.corpora.tokenizers import tiny_tokenizer
from ie_ray.errors import ConfigError
from ie_ray.models import ModelSpec

PROMPTS = PromptSettings(n_texts=5, min_tokens=6, max_tokens=40, seed=3)
SAMPLING = GenerationSettings(temperature=0.9, top_p=0.9, max_new_tokens=10, seed=7, batch_size=2)


@pytest.fixture(scope="module")
def first(tmp_path_factory, one_torch_thread):
    return generate_texts(ModelSpec("tiny-gpt2"), PROMPTS, SAMPLING, tmp_path_factory.mktemp("gen"))


def test_prompts_are_complete_human_sentences() -> None:
    tok = tiny_tokenizer()
    prompts = draw_prompts(PROMPTS, tok)
    assert len(prompts) == 5 and len({p.ids for p in prompts}) == 5
    for prompt in prompts:
        text = tok.decode(list(prompt.ids)).strip()
        assert text[0].isupper() and text[-1] in ".!?" and 6 <= len(prompt.ids) <= 40
    assert draw_prompts(PROMPTS, tok) == prompts  # seeded
    with pytest.raises(ConfigError, match=r"only \d+ complete sentences of 6..40 tokens, fewer than n_texts=100000"):
        draw_prompts(PromptSettings(n_texts=100_000, min_tokens=6, max_tokens=40), tok)


def test_files_and_provenance(first) -> None:
    lines = first.texts_path.read_text().splitlines()
    assert len(lines) == 5
    record = json.loads(lines[0])
    assert set(record) >= {"id", "text", "prompt", "prompt_doc_id", "n_new_tokens", "finished", "model"}
    assert all(0 < json.loads(line)["n_new_tokens"] <= 10 or json.loads(line)["finished"] for line in lines)
    prov = json.loads((first.out_dir / "provenance.json").read_text())
    for key, value in {"temperature": 0.9, "top_p": 0.9, "max_new_tokens": 10, "seed": 7, "batch_size": 2,
                       "decoding": "sampling"}.items():
        assert prov["generation"][key] == value, key
    assert prov["prompts"]["source"] == "pydoc" and prov["prompts"]["n_texts"] == 5
    assert prov["model"]["name"] == "tiny-gpt2" and len(prov["model"]["weights_sha256"]) == 64
    assert prov["n_texts"] == 5 and "torch" in prov["versions"]
    assert read_generated(first.out_dir).records == first.records  # hash checks out


def test_same_seed_same_texts_other_seed_other_texts(first, tmp_path, one_torch_thread) -> None:
    again = generate_texts(ModelSpec("tiny-gpt2"), PROMPTS, SAMPLING, tmp_path / "again")
    assert [r["text"] for r in again.records] == [r["text"] for r in first.records]
    assert again.provenance["texts_sha256"] == first.provenance["texts_sha256"]
    other = generate_texts(ModelSpec("tiny-gpt2"), PROMPTS, GenerationSettings(**{**SAMPLING.__dict__, "seed": 8}),
                           tmp_path / "other")
    assert [r["text"] for r in other.records] != [r["text"] for r in first.records]


def test_greedy_ignores_the_sampling_seed(tmp_path, one_torch_thread) -> None:
    greedy = [generate_texts(ModelSpec("tiny-gpt2"), PROMPTS,
                             GenerationSettings(temperature=0, max_new_tokens=6, seed=s, batch_size=5),
                             tmp_path / str(s)) for s in (0, 1)]
    assert [r["text"] for r in greedy[0].records] == [r["text"] for r in greedy[1].records]
    assert greedy[0].provenance["generation"]["decoding"] == "greedy"


def test_tampered_texts_are_detected(first, tmp_path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "provenance.json").write_text((first.out_dir / "provenance.json").read_text())
    (copy / "texts.jsonl").write_text(first.texts_path.read_text().replace('"id": 0', '"id": 99'))
    with pytest.raises(ConfigError, match="changed after generation"):
        read_generated(copy)


def test_generated_file_is_a_natural_corpus_source(first) -> None:
    docs = list(load_documents(str(first.texts_path)))
    assert docs == [r["text"] for r in first.records]


@pytest.mark.parametrize("settings, message", [
    (GenerationSettings(temperature=-1), "temperature must be >= 0"),
    (GenerationSettings(top_p=0), r"top_p must be in \(0, 1\]"),
    (GenerationSettings(max_new_tokens=0), "max_new_tokens and batch_size must be >= 1"),
])
def test_bad_settings(settings, message, tmp_path) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_texts(ModelSpec("tiny-gpt2"), PROMPTS, settings, tmp_path)


def test_cli_generate(tmp_path, capsys, one_torch_thread) -> None:
    from ie_ray.cli import main

    out = tmp_path / "cli"
    code = main(["generate", "--model", "tiny-gpt2", "--out", str(out), "--n-texts", "3", "--max-new-tokens", "5",
                 "--batch-size", "3", "--seed", "1"])
    assert code == 0 and len((out / "texts.jsonl").read_text().splitlines()) == 3
    assert "measure them with a corpus entry" in capsys.readouterr().out
    assert main(["generate", "--model", "tiny-gpt2", "--out", str(out), "--top-p", "2"]) == 2
