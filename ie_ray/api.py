"""`ie_ray.measure`: Information Emergence of a model on a corpus, from a notebook, in one call.

Interpretability users hold a model object and call a function; ie-ray's sweep takes a YAML config and writes a
run directory. `measure` joins the two without a second implementation: it turns its arguments into the same
`SweepConfig` a YAML file would give (validated by `parse_config`, so a bad value fails with the sweep's own
message before any model loads), runs `ie_ray.sweep.run_sweep` into a run directory (a temporary one unless
`run_dir` is given), and hands back that directory's tables. What it has to add is only what a config cannot
name:

* a loaded model object is saved once into the model cache (`ie_ray.models.save_model`, keyed by a hash of its
  weights) and named `saved-<label>-<hash>`, which the extraction actors load like any other model;
* a list of strings or a `datasets.Dataset` is written once, as JSON Lines keyed by a hash of its content, into
  `<IE_RAY_CACHE>/corpora/`, and becomes a natural-text corpus whose `source` is that file.

So the run directory's `config.yaml` reruns the same measurement with `ie-ray sweep --config`, and
`Measurement.save` writes a run directory that `ie-ray compare` and `ie_ray.variance` read.

Ray: the sweep's stages are Ray Data actors and Ray tasks, so `measure` always runs on Ray. With no Ray running
it starts an in-process Ray the first time there is work for it (`ie_ray.ray_start.init_ray`) and leaves it
running, so later calls in the same notebook skip the start-up (measured on the 2-core machine: see
docs/python-api.md); after `ray.init(address=...)` it runs on that cluster. A Ray-free path for small inputs
would be a second extraction and reduction implementation, which is what this module must not be.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ie_ray.config import READINGS, SweepConfig, parse_config
from ie_ray.corpora.icl import ICL_TASKS
from ie_ray.corpora.natural import BUILTIN_SOURCES
from ie_ray.errors import ConfigError
from ie_ray.models import DEFAULT_MODEL, TORCH_DTYPES, save_model
from ie_ray.store import cache_root

__all__ = ["Measurement", "measure"]

#: The sweep's defaults (`parse_config` of an empty mapping), repeated so `help(measure)` shows them;
#: `tests/test_api.py` checks that they agree.
DEFAULT_N_SAMPLES = 2000
DEFAULT_SHOTS = 4
DEFAULT_LENGTH = 8
#: Sweep-config sections `measure` passes through unchanged in `settings` (everything else has its own argument).
SETTINGS_KEYS = ("micro", "seeds", "estimator", "extract", "reduce", "smoothed", "entropy_limit", "mine")


@dataclass
class Measurement:
    """The tables of one `measure` call, read back from its run directory (the same columns and numbers as
    that directory's Parquet files): `ie` one row per (model, corpus, shots, layer, position) with the three
    readings side by side; `layers` E(l) = IE at the last position; `models` model-level IE; `mi` every MI
    reading; `readings` IE per reading and tau (long). Column meanings: docs/running.md and docs/readings.md."""

    run_dir: Path
    config: SweepConfig
    ie: pd.DataFrame
    layers: pd.DataFrame
    models: pd.DataFrame
    mi: pd.DataFrame
    readings: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    temporary: bool = False

    def __post_init__(self) -> None:
        if self.temporary:  # the temporary run directory lives as long as this object
            weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)

    def plot(self):
        """The report's plots as one matplotlib Figure, a row per (model, corpus, shots): headline IE by position
        with 95% bands, one line per block, and E(l) against tau with the entropy limit dashed. A notebook shows
        the returned Figure; elsewhere call `.savefig(path)` on it."""
        from ie_ray.report import figure_of_run

        return figure_of_run(self.ie, self.readings)

    def save(self, path: str | Path) -> Path:
        """Copy the run directory to `path` (which must not exist): a normal run directory, with report.md,
        plots, manifest and config.yaml, that `ie-ray compare` and `ie_ray.variance` accept."""
        target = Path(path).expanduser()
        if target.exists():
            raise FileExistsError(f"{target} exists; save to a new directory (a run directory is never merged)")
        shutil.copytree(self.run_dir, target)
        return target

    def __repr__(self) -> str:
        models = ", ".join(self.models.model.unique())
        return (f"Measurement({models}; {len(self.ie)} IE rows over {self.ie.layer.nunique()} layers x "
                f"{self.ie.position.nunique()} positions; run_dir={str(self.run_dir)!r})")


def measure(
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    corpus: Any = "country",
    *,
    layers: str | Sequence[int] | dict = "all",
    positions: str | Sequence[int] = "all",
    readings: Sequence[str] = READINGS,
    n_samples: int = DEFAULT_N_SAMPLES,
    shots: int | Sequence[int] = DEFAULT_SHOTS,
    length: int | None = None,
    anchor: str = "start",
    seed: int = 0,
    text_field: str = "text",
    split: str = "train",
    dtype: str | None = None,
    settings: dict | None = None,
    run_dir: str | Path | None = None,
    name: str = "measure",
    label: str | None = None,
) -> Measurement:
    """Measure IE(l, t) of `model` on `corpus` and return the tables (a `Measurement`).

    model: an embedded alias (`smollm2-135m`, the default; `gemma3-270m`), `tiny-<family>`, a hub id, a local
        `save_pretrained` directory, a loaded transformers causal LM (pass its `tokenizer` too), or a list of
        any of these (a loaded one as a `(model, tokenizer)` pair) to measure several models in one run.
    corpus: an ICL list task (`country`, `animal`, `color`, `bible-name`; `shots` entities per sequence), a
        natural-text source (`pydoc`, `fortunes`, `kjv`, `kjv-chapters`, `hf:<id>`), a path to a text/JSONL/CSV/
        Parquet file or directory, a list of strings, a `datasets.Dataset` (or `DatasetDict`: `split`), or a
        sweep-config corpus mapping (`{"kind": "icl", "task": "animal", "n_entities": 25}`). Natural text of any
        kind gives `n_samples` windows of `length` tokens, each inside one complete sentence (capitalised start,
        ending in . ! or ?), one per distinct sentence (docs/experiments.md); a text field is `text_field`.
    layers: "all", block indices (negative count from the end) or `{"depths": [0.5, 1.0]}`.
    positions: "all", "last" or token positions from 0. For natural text `length` defaults to
        max(positions) + 1 (else 8), so the windows are exactly as long as the positions need.
    readings: any of `smoothed` (headline), `entropy_limit`, `mine` (the costly neural bound).
    dtype: the dtype the model runs in (default: a loaded model's own, else float32).
    settings: any other sweep-config sections, validated as in a YAML config: `estimator`, `extract`, `reduce`,
        `smoothed`, `entropy_limit`, `mine`, `micro`, `seeds` (docs/running.md).
    label: the name a loaded model gets in the tables, `saved-<label>-<weights hash>` (default: the last part of
        its config's `_name_or_path`, else its class name).
    run_dir: where the run directory goes (rerunning with the same one resumes from its cache); default a
        temporary directory removed with the returned object (keep it with `Measurement.save`).

    Runs on Ray: an in-process Ray started on first use and kept for later calls, or the cluster of an earlier
    `ray.init(address=...)` (then `run_dir` must be on storage every node shares). Bad input raises
    `ie_ray.errors.ConfigError` (a ValueError) naming the value and the fix, before any weights load.
    """
    spec_models = [_model_entry(m, dtype, label) for m in _model_list(model, tokenizer)]
    corpus_entry = _corpus_entry(corpus, n_samples=n_samples, seed=seed, positions=positions, length=length,
                                 anchor=anchor, text_field=text_field, split=split)
    extra = dict(settings or {})
    stray = sorted(set(extra) - set(SETTINGS_KEYS))
    if stray:
        raise ConfigError(f"settings key(s) {stray} are not sweep-config sections measure() passes on; use "
                          f"{list(SETTINGS_KEYS)}, or measure()'s own arguments for models, corpus, layers, "
                          "positions, readings, shots")
    config = parse_config(dict(
        name=name, models=spec_models, corpora=[corpus_entry], shots=[shots] if isinstance(shots, int) else shots,
        layers=list(layers) if isinstance(layers, (list, tuple, range)) else layers,
        positions=list(positions) if isinstance(positions, (list, tuple, range)) else positions,
        readings=[readings] if isinstance(readings, str) else list(readings), **extra,
    ))
    return run_config(config, run_dir, window_note=_window_note(corpus_entry, positions, length))


def run_config(config: SweepConfig, run_dir: str | Path | None = None, window_note: str = "") -> Measurement:
    """Run a `SweepConfig` with the sweep's driver and read its run directory back as a `Measurement`."""
    from ie_ray.sweep import run_sweep

    temporary = run_dir is None
    directory = Path(tempfile.mkdtemp(prefix="ie-ray-measure-")) if run_dir is None else Path(run_dir).expanduser()
    try:
        result = run_sweep(config, directory)
    except ConfigError as exc:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        corpus_label = config.corpora[0].label
        if window_note and str(exc).startswith(f"corpus {corpus_label}:"):
            raise ConfigError(f"{exc}. {window_note}") from None
        raise
    except BaseException:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return read_run(directory, config, result.timings, temporary=temporary)


def read_run(run_dir: Path, config: SweepConfig, timings: dict | None = None, temporary: bool = False) -> Measurement:
    """The tables of a finished run directory, as written (Parquet round trip included)."""
    def table(stem: str) -> pd.DataFrame:
        return pd.read_parquet(run_dir / f"{stem}.parquet")

    return Measurement(run_dir=run_dir, config=config, ie=table("ie"), layers=table("layers"), models=table("models"),
                       mi=table("mi"), readings=table("ie_readings"), timings=dict(timings or {}),
                       temporary=temporary)


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


def _model_list(model: Any, tokenizer: Any) -> list:
    if isinstance(model, (list, tuple)) and not _is_pair(model):
        if tokenizer is not None:
            raise ConfigError("with a list of models, give each loaded model as a (model, tokenizer) pair instead "
                              "of passing tokenizer=")
        if not model:
            raise ConfigError("model is an empty list; name at least one model, e.g. 'smollm2-135m'")
        return list(model)
    return [(model, tokenizer) if tokenizer is not None else model]


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], (str, Path))


def _model_entry(item: Any, dtype: str | None, label: str | None = None) -> dict:
    """The config's model mapping for a name, a path or a loaded (model, tokenizer)."""
    if dtype is not None and dtype not in TORCH_DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; use one of {', '.join(TORCH_DTYPES)}")
    if isinstance(item, (str, Path)):
        return dict(name=str(Path(item).expanduser()) if isinstance(item, Path) else item, dtype=dtype or "float32")
    loaded, tokenizer = item if _is_pair(item) else (item, None)
    if not (hasattr(loaded, "save_pretrained") and hasattr(loaded, "config")):
        raise ConfigError(
            f"model must be a name, a path, or a loaded transformers causal LM (PreTrainedModel), got "
            f"{type(loaded).__name__}; for a TransformerLens or nnsight wrapper pass the Hugging Face model it wraps "
            "(or the name it was loaded from)")
    if tokenizer is None:
        raise ConfigError(f"a loaded model ({type(loaded).__name__}) needs its tokenizer: measure(model, tokenizer, "
                          "...), or (model, tokenizer) pairs in a list")
    own = str(next(loaded.parameters()).dtype).replace("torch.", "")
    label = label or Path(str(getattr(loaded.config, "_name_or_path", "") or type(loaded).__name__)).name
    return dict(name=save_model(loaded, tokenizer, label), dtype=dtype or (own if own in TORCH_DTYPES else "float32"))


# ---------------------------------------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------------------------------------


def _corpus_entry(corpus: Any, *, n_samples: int, seed: int, positions: Any, length: int | None, anchor: str,
                  text_field: str, split: str) -> dict:
    """The config's corpus mapping for every kind of corpus argument (see `measure`)."""
    natural = dict(kind="natural", anchor=anchor, length=length or _window_length(positions), n_samples=n_samples,
                   seed=seed, text_field=text_field, split=split)
    if _is_dataset(corpus):  # before the mapping case: a DatasetDict is a dict
        path = _dataset_file(corpus, text_field, split)
        return dict(natural, source=str(path), split="train", label=f"dataset-{anchor}{natural['length']}")
    if isinstance(corpus, dict):
        return {"n_samples": n_samples, "seed": seed, **corpus}
    if isinstance(corpus, Path):
        if not corpus.expanduser().exists():
            raise ConfigError(f"corpus path {corpus} does not exist; pass an existing text/JSONL/CSV/Parquet file "
                              "or directory")
        return dict(natural, source=str(corpus.expanduser().resolve()))
    if isinstance(corpus, str):
        if corpus in ICL_TASKS:
            return dict(kind="icl", task=corpus, n_samples=n_samples, seed=seed)
        if corpus in BUILTIN_SOURCES or corpus.startswith("hf:"):
            return dict(natural, source=corpus)
        if Path(corpus).expanduser().exists():
            return dict(natural, source=str(Path(corpus).expanduser().resolve()))
        raise ConfigError(
            f"corpus {corpus!r} is neither an ICL task ({', '.join(ICL_TASKS)}), a text source "
            f"({', '.join(BUILTIN_SOURCES)}, hf:<id>), nor an existing file or directory; to measure that string "
            "itself pass a list of strings")
    if isinstance(corpus, (list, tuple)):
        path = _texts_file(corpus)
        return dict(natural, source=str(path), text_field="text", label=f"texts-{anchor}{natural['length']}")
    raise ConfigError(f"corpus of type {type(corpus).__name__} is not supported; pass an ICL task name, a text "
                      "source or path, a list of strings, a datasets.Dataset, or a corpus mapping")


def _window_length(positions: Any) -> int:
    if isinstance(positions, (list, tuple, range)) and positions and all(isinstance(p, int) for p in positions):
        return max(positions) + 1
    return DEFAULT_LENGTH


def _window_note(entry: dict, positions: Any, length: int | None) -> str:
    """What measure() adds to a natural corpus's 'too few windows' error: where the window length came from."""
    if entry.get("kind") != "natural":
        return ""
    if length:
        where = f"length={length}"
    elif entry["length"] != DEFAULT_LENGTH or isinstance(positions, (list, tuple, range)):
        where = f"positions up to {entry['length'] - 1}"
    else:
        where = f"the default length {DEFAULT_LENGTH}"
    return (f"In measure(), windows are {entry['length']} tokens ({where}), cut inside complete sentences (a "
            "capital letter up to . ! or ?) without : ? - ; inside; ask for earlier positions or a smaller length, "
            "lower n_samples, or pass more or longer texts")


def _corpora_root() -> Path:
    return cache_root() / "corpora"


def _write_once(stem: str, lines: list[str]) -> Path:
    """JSON Lines keyed by the hash of their content: the same texts map to the same file (and cache entries)."""
    text = "".join(line + "\n" for line in lines)
    path = _corpora_root() / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def _texts_file(texts: Sequence[Any]) -> Path:
    if not texts:
        raise ConfigError("corpus is an empty list; pass the texts to measure (one document each)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"corpus[{i}] is {type(text).__name__}, not a string; a list corpus holds texts "
                              f"(got {text!r:.60})")
    if not any(t.strip() for t in texts):
        raise ConfigError(f"every one of the {len(texts)} texts is empty or blank; pass texts with words in them")
    return _write_once("texts", [json.dumps({"text": t}, ensure_ascii=False) for t in texts])


def _is_dataset(value: Any) -> bool:
    try:
        import datasets
    except ImportError:
        return False
    return isinstance(value, (datasets.Dataset, datasets.DatasetDict))


def _dataset_file(dataset: Any, text_field: str, split: str) -> Path:
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ConfigError(f"the DatasetDict has splits {list(dataset)}, not {split!r}; pass split=")
        dataset = dataset[split]
    column = text_field.split(".")[0]
    if column not in dataset.column_names:
        raise ConfigError(f"the dataset has no column {column!r}; set text_field to one of {dataset.column_names}")
    if len(dataset) == 0:
        raise ConfigError("the dataset has no rows; pass a dataset with texts in it")
    values = dataset[column]
    return _write_once("dataset", [json.dumps({column: v}, ensure_ascii=False, default=str) for v in values])

