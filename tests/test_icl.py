"""ICL list corpora (PAPER.md section 3a) on the offline tiny BPE tokenizer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from ie_ray.corpora import ICL_TASKS, IclCorpus, build_icl_corpus
from ie_ray.corpora.icl import ICL_FORMATS, PAPER_ICL_TASKS, PAPER_N_ENTITIES, candidate_names, single_token_entities
from ie_ray.corpora.tokenizers import TINY_TOKENIZER_NAME, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False).input_ids)


# --- data files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ICL_TASKS)
def test_data_files_are_long_enough_and_unique(task: str) -> None:
    names = candidate_names(task)
    assert len(names) >= 60
    assert len(set(names)) == len(names), [n for n in names if names.count(n) > 1]
    assert all(n == n.strip() and n and not n.startswith("#") for n in names)


def test_no_name_belongs_to_two_categories() -> None:
    seen: dict[str, str] = {}
    for task in PAPER_ICL_TASKS:
        for name in candidate_names(task):
            assert name not in seen, f"{name!r} is in both {seen[name]} and {task}"
            seen[name] = task


def test_biblical_names_overlap_the_paper_lists_only_in_three_places() -> None:
    # Israel, Egypt and Jordan are biblical places and countries; the bible-name task is its own list (for the
    # family trained on the KJV) and is never mixed with the paper's three
    countries = set(candidate_names("country"))
    assert set(candidate_names("bible-name")) & countries == {"Israel", "Egypt", "Jordan"}
    assert not set(candidate_names("bible-name")) & (set(candidate_names("animal")) | set(candidate_names("color")))


def test_common_names_come_first() -> None:
    assert candidate_names("country")[:3] == ["Russia", "Canada", "China"]
    assert candidate_names("animal")[:2] == ["Cat", "Dog"]
    assert candidate_names("color")[:3] == ["Red", "Blue", "Green"]


# --- tiny tokenizer ---------------------------------------------------------------------------------------


def test_tiny_tokenizer_is_deterministic_and_configured(tok) -> None:
    other = tiny_tokenizer()
    assert other is not tok  # fresh wrapper per call
    assert other.get_vocab() == tok.get_vocab()
    assert tok.name_or_path == TINY_TOKENIZER_NAME
    assert tok.padding_side == "right"
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert 1000 <= len(tok) <= 2000
    text = "The quick brown fox, Russia,Canada, Cat, Dog,"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


# --- single-token filter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ICL_FORMATS)
@pytest.mark.parametrize("task", PAPER_ICL_TASKS)  # the tiny tokenizer knows these lists; bible-name: test_family
def test_single_token_filter(tok, task: str, fmt: str) -> None:
    kept = single_token_entities(task, tok, fmt)
    names = candidate_names(task)
    prefix = " " if fmt == "comma-space" else ""
    for name, token_id in kept:
        assert tok(prefix + name, add_special_tokens=False).input_ids == [token_id]
    kept_names = [n for n, _ in kept]
    assert len(kept_names) < len(names), "the tiny tokenizer should leave some names multi-token"
    assert len(kept_names) >= max(PAPER_N_ENTITIES.values())
    assert kept_names == [n for n in names if n in set(kept_names)]  # file order kept
    assert len({i for _, i in kept}) == len(kept)
    dropped = [n for n in names if n not in set(kept_names)]
    assert all(_n_tokens(tok, prefix + n) > 1 for n in dropped)


def test_multi_word_names_are_filtered(tok) -> None:
    kept = {n for n, _ in single_token_entities("country", tok, "comma-space")}
    assert "Russia" in kept
    assert "United States" not in kept and "Sri Lanka" not in kept


def test_comma_space_uses_the_spaced_token(tok) -> None:
    spaced = dict(single_token_entities("animal", tok, "comma-space"))
    bare = dict(single_token_entities("animal", tok, "comma"))
    assert spaced["Cat"] != bare["Cat"]
    assert tok.convert_ids_to_tokens(spaced["Cat"]) == "\u0120Cat"  # byte-level 'Ġ' = leading space


# --- corpus construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ICL_FORMATS)
@pytest.mark.parametrize("shots", [1, 7, 12])
def test_sequences_alternate_distinct_entities_and_separator(tok, shots: int, fmt: str) -> None:
    corpus = build_icl_corpus("animal", tok, shots=shots, n_samples=200, seed=3, fmt=fmt)
    sep = tok(",", add_special_tokens=False).input_ids[0]
    assert corpus.input_ids.dtype == np.int64
    assert corpus.input_ids.shape == (200, 2 * shots)
    assert len(corpus) == corpus.n_samples == 200
    assert (corpus.input_ids[:, 1::2] == sep).all()
    assert corpus.separator_id == sep
    entity_block = corpus.input_ids[:, 0::2]
    assert np.isin(entity_block, corpus.entity_ids).all()
    assert all(len(set(row)) == shots for row in entity_block.tolist())
    np.testing.assert_array_equal(corpus.entity_positions, np.arange(0, 2 * shots, 2))
    np.testing.assert_array_equal(corpus.separator_positions, np.arange(1, 2 * shots, 2))
    # Every text tokenizes to exactly its row of ids (not only the first one, which the builder checks).
    for text, row in zip(corpus.texts[:20], corpus.input_ids[:20].tolist(), strict=True):
        assert tok(text, add_special_tokens=False).input_ids == row
        assert text.endswith(",")
        assert text.startswith(" ") == (fmt == "comma-space")


def test_texts_match_paper_formats(tok) -> None:
    spaced = build_icl_corpus("animal", tok, shots=3, n_samples=1, seed=0, fmt="comma-space")
    names = spaced.texts[0].strip().rstrip(",").split(", ")
    assert spaced.texts[0] == " " + ", ".join(names) + ","
    bare = build_icl_corpus("country", tok, shots=4, n_samples=1, seed=0, fmt="comma")
    assert bare.texts[0].count(",") == 4 and " " not in bare.texts[0]  # GPT-2 style 'Ukraine,Mexico,'
    id_to_name = {ids[0]: name for ids, name in zip(bare.entity_ids, bare.entities, strict=True)}
    assert bare.texts[0].split(",")[:4] == [id_to_name[i] for i in bare.input_ids[0, ::2].tolist()]


def test_seeded_determinism(tok) -> None:
    a = build_icl_corpus("color", tok, shots=5, n_samples=300, seed=11)
    b = build_icl_corpus("color", tok, shots=5, n_samples=300, seed=11)
    c = build_icl_corpus("color", tok, shots=5, n_samples=300, seed=12)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    assert a.texts == b.texts
    assert not np.array_equal(a.input_ids, c.input_ids)


def test_draws_cover_the_entity_set_and_positions(tok) -> None:
    corpus = build_icl_corpus("color", tok, shots=5, n_samples=3000, seed=0, n_entities=15)
    assert len(corpus.entities) == 15
    assert corpus.entities == tuple(n for n, _ in single_token_entities("color", tok, "comma-space")[:15])
    # Each entity should appear at each position about 3000/15 = 200 times for a uniform permutation.
    for pos in range(0, 10, 2):
        _, counts = np.unique(corpus.input_ids[:, pos], return_counts=True)
        assert len(counts) == 15
        assert counts.min() > 130 and counts.max() < 270


def test_paper_sizes(tok) -> None:
    for task, n in PAPER_N_ENTITIES.items():
        corpus = build_icl_corpus(task, tok, shots=5, n_samples=10, seed=0, n_entities=n)
        assert len(corpus.entities) == len(corpus.entity_ids) == n


def test_all_entities_as_shots(tok) -> None:
    n = len(single_token_entities("color", tok, "comma"))
    corpus = build_icl_corpus("color", tok, shots=n, n_samples=3, seed=0, fmt="comma")
    assert all(sorted(row) == sorted(i for (i,) in corpus.entity_ids) for row in corpus.input_ids[:, 0::2].tolist())


# --- errors -----------------------------------------------------------------------------------------------


def test_too_few_single_token_names(tok) -> None:
    n = len(single_token_entities("animal", tok, "comma-space"))
    with pytest.raises(ValueError, match=rf"only {n} animal names") as info:
        build_icl_corpus("animal", tok, shots=n + 1, n_samples=5, seed=0)
    message = str(info.value)
    assert TINY_TOKENIZER_NAME in message and f"k={n + 1}" in message and "'comma'" in message
    with pytest.raises(ValueError, match="n_entities=3") as info:
        build_icl_corpus("animal", tok, shots=4, n_samples=5, seed=0, n_entities=3)
    assert TINY_TOKENIZER_NAME in str(info.value)
    with pytest.raises(ValueError, match=rf"n_entities={n + 5} but only {n}"):
        build_icl_corpus("animal", tok, shots=2, n_samples=5, seed=0, n_entities=n + 5)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"task": "fruit"}, r"unknown ICL task 'fruit'.*'country', 'animal', 'color'"),
        ({"fmt": "tab"}, r"unknown ICL format 'tab'.*'comma'.*'comma-space'"),
        ({"shots": 0}, r"shots must be >= 1, got 0"),
        ({"n_samples": 0}, r"n_samples must be >= 1, got 0"),
        ({"n_entities": 0}, r"n_entities must be >= 1"),
    ],
)
def test_argument_errors(tok, kwargs: dict, pattern: str) -> None:
    args = {"task": "country", "tokenizer": tok, "shots": 2, "n_samples": 4, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=pattern):
        build_icl_corpus(**args)


class _WholeStringTokenizer:
    """A fake tokenizer: every distinct string is one token, so a whole sequence merges into one id."""

    name_or_path = "fake/merging"

    def __init__(self, separator_tokens: int = 1) -> None:
        self._vocab: dict[str, int] = {}
        self._separator_tokens = separator_tokens

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        if text == "," and self._separator_tokens > 1:
            return SimpleNamespace(input_ids=[0] * self._separator_tokens)
        return SimpleNamespace(input_ids=[self._vocab.setdefault(text, len(self._vocab) + 1)])


def test_merging_across_separator_is_detected() -> None:
    with pytest.raises(ValueError, match=r"fake/merging.*merges tokens across the separator"):
        build_icl_corpus("color", _WholeStringTokenizer(), shots=3, n_samples=2, seed=0)


def test_multi_token_separator_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"separator ',' encodes to 2 tokens"):
        single_token_entities("color", _WholeStringTokenizer(separator_tokens=2), "comma")


# --- arrow ------------------------------------------------------------------------------------------------


def test_to_arrow(tok) -> None:
    corpus: IclCorpus = build_icl_corpus("country", tok, shots=4, n_samples=50, seed=7, fmt="comma")
    table = corpus.to_arrow()
    assert table.schema.field("sample_id").type == pa.int64()
    assert table.schema.field("input_ids").type == pa.list_(pa.int64())
    assert table.schema.field("text").type == pa.string()
    assert table.num_rows == 50
    assert table.column("sample_id").to_pylist() == list(range(50))
    np.testing.assert_array_equal(np.array(table.column("input_ids").to_pylist()), corpus.input_ids)
    assert table.column("text").to_pylist() == corpus.texts
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert (meta["task"], meta["fmt"], meta["shots"], meta["seed"]) == ("country", "comma", "4", "7")
    assert meta["tokenizer"] == TINY_TOKENIZER_NAME
    assert tuple(json.loads(meta["entities"])) == corpus.entities
    assert int(meta["separator_id"]) == corpus.separator_id


# --- longer demonstrations (multi-token entities) ---------------------------------------------------------


def test_multi_token_entities_make_longer_equal_shots(tok) -> None:
    from ie_ray.corpora.icl import entities_of_length

    pairs = entities_of_length("country", tok, "comma-space", 2)
    assert len(pairs) >= 4, pairs  # e.g. " United States": the tiny tokenizer splits at spaces
    assert all(len(ids) == 2 for _, ids in pairs)
    corpus = build_icl_corpus("country", tok, shots=3, n_samples=100, seed=1, entity_tokens=2)
    sep = tok(",", add_special_tokens=False).input_ids[0]
    assert corpus.input_ids.shape == (100, 9) and corpus.seq_len == 9 and corpus.shot_length == 3
    assert (corpus.input_ids[:, 2::3] == sep).all()
    np.testing.assert_array_equal(corpus.entity_positions, [0, 3, 6])
    np.testing.assert_array_equal(corpus.separator_positions, [2, 5, 8])
    known = {ids: name for name, ids in pairs}
    for text, row in zip(corpus.texts[:20], corpus.input_ids[:20].tolist(), strict=True):
        assert tok(text, add_special_tokens=False).input_ids == row
        shots = [tuple(row[i:i + 2]) for i in (0, 3, 6)]
        assert len(set(shots)) == 3 and all(s in known for s in shots)
        assert text.strip().rstrip(",").split(", ") == [known[s] for s in shots]
    meta = {k.decode(): v.decode() for k, v in corpus.to_arrow().schema.metadata.items()}
    assert meta["entity_tokens"] == "2" and json.loads(meta["entity_ids"])[0] == list(corpus.entity_ids[0])
    assert corpus.describe()["entity_tokens"] == 2


def test_too_few_multi_token_entities_names_the_length(tok) -> None:
    with pytest.raises(ValueError, match=r"names are exactly 5 tokens"):
        build_icl_corpus("animal", tok, shots=2, n_samples=5, seed=0, entity_tokens=5)
    with pytest.raises(ValueError, match=r"entity_tokens must be >= 1, got 0"):
        build_icl_corpus("animal", tok, shots=2, n_samples=5, seed=0, entity_tokens=0)
