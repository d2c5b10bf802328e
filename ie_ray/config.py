"""The sweep config: typed dataclasses, loaded from YAML with `yaml.safe_load`, validated with clear errors.

A typo in a config must cost seconds, not an hour of GPU time: unknown keys are rejected with the list of
valid ones, and every value is checked before any model is loaded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ie_ray.corpora.natural import PAPER_REJECT_CHARS, source_short_name
from ie_ray.errors import ConfigError
from ie_ray.models import INITS, TORCH_DTYPES, ModelSpec
from ie_ray.reduce.reading import reading_names

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "smoke.yaml"
MICRO_MODES = ("single_token", "full_context")
STORE_DTYPES = ("float32", "float16")
#: The built-in readings of every (layer, position): smoothed MI I_sigma (the headline), the entropy limit (exact
#: counts), and the paper's neural MINE bound. A config may name any registered reading (`reading_names()`).
READINGS = ("smoothed", "entropy_limit", "mine")
MINE_POSITIONS = ("all", "last")


CORPUS_KINDS = ("icl", "natural")
# Keys that only mean something for one kind: giving one to the other kind is a config error, not a no-op.
CORPUS_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "icl": ("task", "format", "n_entities", "entity_tokens"),
    "natural": ("source", "anchor", "length", "text_field", "split", "max_documents", "reject_chars"),
}


@dataclass(frozen=True)
class CorpusConfig:
    """One corpus.

    `kind: icl` = the paper's list tasks (country / animal / color), one corpus per entry of `shots`.
    `kind: natural` = T-token windows inside one sentence of real text (ie_ray.corpora.natural): `source` is
    pydoc | fortunes | kjv | a file or directory path | `hf:<dataset id>`; `anchor` start | end; `length` = T.
    A natural corpus has no demonstrations: it is built once, with shots = 0, whatever `shots` says.
    `label` names the corpus in every table (default: icl-<task>, or natural-<source>-<anchor><length>), e.g.
    `human` / `generated-smollm2` for a generated-vs-human comparison.
    `shuffle_tokens: true` is the shuffled-token control: each sequence's tokens permuted within it, seeded per
    row by `shuffle_seed` (ie_ray/corpora/shuffle.py); the default label gains `-shuffled` (`-shuffled<seed>` for
    a seed other than 0), so a control never shares a row with the corpus it was cut from.
    """

    kind: str = "icl"
    task: str = "country"
    format: str = "comma-space"
    n_entities: int | None = None
    entity_tokens: int = 1
    source: str = "pydoc"
    anchor: str = "start"
    length: int = 8
    text_field: str = "text"
    split: str = "train"
    max_documents: int | None = None
    reject_chars: str = PAPER_REJECT_CHARS
    n_samples: int = 2000
    seed: int = 0
    shuffle_tokens: bool = False
    shuffle_seed: int = 0
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            if self.kind == "natural":
                default = f"natural-{source_short_name(str(self.source))}-{self.anchor}{self.length}"
            else:
                default = f"{self.kind}-{self.task}" + (f"-{self.entity_tokens}tok" if self.entity_tokens != 1 else "")
            if self.shuffle_tokens is True:
                default += "-shuffled" + (str(self.shuffle_seed) if self.shuffle_seed != 0 else "")
            object.__setattr__(self, "label", default)


@dataclass(frozen=True)
class ExtractConfig:
    """Ray Data resources of the extraction stage (one model copy per actor).

    `num_gpus: auto` sizes each actor from the model (a 1/k GPU share for small models, several GPUs with a
    device_map for one that does not fit a GPU); `batch_size: auto` picks the largest batch that fits in memory
    (ie_ray/resources.py). `resources` are Ray custom resources each actor needs, e.g. {gpu_node: 1} to pin the
    actors to one kind of node.
    """

    batch_size: int | str = 64
    concurrency: int = 1
    num_gpus: float | str = 0.0
    num_cpus: float = 1.0
    #: torch intra-op threads per actor (None = num_cpus). On a CPU-only box give the actor 1 CPU and 2+ threads:
    #: the write tasks of the same Ray Data pipeline need a free CPU, and an actor holding every CPU leaves none.
    threads: int | None = None
    store_dtype: str = "float32"
    device: str = "auto"  # auto = cuda when the actor was given a GPU, else cpu
    resources: dict = field(default_factory=dict)
    #: Disk budget of the block states (GiB): layers are extracted in passes whose states fit it, each pass
    #: reduced and deleted before the next (null: every layer in one pass).
    max_states_gb: float | None = 10.0
    #: Keep each layer's states after all its readings are cached (for re-analysis with other settings); the
    #: default deletes them, so disk holds one pass at a time.
    keep_states: bool = False


@dataclass(frozen=True)
class ReduceConfig:
    """Ray tasks of the estimation stage: several estimators are fitted together in one task."""

    estimators_per_task: int = 8
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float | str = 0.0  # auto = the smallest GPU share that holds one task


@dataclass(frozen=True)
class RelativeDepths:
    """Layers named by relative depth d in (0, 1] instead of index: `layers: {depths: [0.25, 0.5, 1.0]}`.

    Models of different depth (SmolLM2: 30 blocks, Gemma 3 270M: 18) cannot share block indices, but they can
    share depths; d maps to the first block whose output has seen a fraction d of the stack, i.e. block
    ceil(d * L) - 1, so d = 1.0 is the last block of every model (see `layer_for_depth`).
    """

    depths: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class SweepConfig:
    name: str = "sweep"
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    corpora: tuple[CorpusConfig, ...] = (CorpusConfig(),)
    shots: tuple[int, ...] = (4,)
    layers: str | tuple[int, ...] | RelativeDepths = "all"
    positions: str | tuple[int, ...] = "all"
    micro: str = "single_token"
    seeds: tuple[int, ...] = (0,)
    estimator: dict = field(default_factory=dict)
    extract: ExtractConfig = ExtractConfig()
    reduce: ReduceConfig = ReduceConfig()
    readings: tuple[str, ...] = READINGS
    smoothed: dict = field(default_factory=dict)
    entropy_limit: dict = field(default_factory=dict)
    mine: dict = field(default_factory=dict)

    @property
    def headline(self) -> str:
        """The reading shown first (`ie_bits` of every table): smoothed MI when computed, else MINE."""
        return "smoothed" if "smoothed" in self.readings else "mine"

    def smoothed_params(self):
        """The smoothed-MI parameters: package defaults with the `smoothed:` section's overrides."""
        from ie_ray.estimators.smoothed import SmoothedParams

        settings = {k: v for k, v in self.smoothed.items() if k != "scale_rule"}
        try:
            return SmoothedParams.from_dict(settings)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"smoothed: {exc}") from exc

    @property
    def scale_rule(self) -> str:
        from ie_ray.noise_scale import DEFAULT_SCALE_RULE

        return str(self.smoothed.get("scale_rule", DEFAULT_SCALE_RULE))

    @property
    def entropy_tolerance(self) -> float:
        from ie_ray.entropy_limit import DEFAULT_TOLERANCE

        return float(self.entropy_limit.get("tolerance", DEFAULT_TOLERANCE))

    @property
    def mine_positions(self) -> str:
        """`all` (every analysed position, needed for IE by position) or `last` (only E(l): MINE is costly)."""
        return str(self.mine.get("positions", "all"))

    def to_dict(self) -> dict:
        """A plain mapping that `parse_config` accepts again (a run's config.yaml reloads): each corpus keeps
        only the keys of its own kind, since giving an ICL `task` to a natural corpus is a config error."""
        data = dataclasses.asdict(self)
        for corpus in data["corpora"]:
            for kind, keys in CORPUS_KIND_KEYS.items():
                if kind != corpus["kind"]:
                    for key in keys:
                        corpus.pop(key, None)
        return data

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def estimator_params(self):
        """The MINE parameters: a named preset (`default`, `paper`, an objective or a critic variant of
        `ie_ray.estimators.presets`) with per-key overrides."""
        from ie_ray.estimators.presets import preset_params

        settings = dict(self.estimator)
        preset = settings.pop("preset", "default")
        try:
            params = preset_params(preset, **settings)
            params.validate()
        except ValueError as exc:
            raise ConfigError(f"estimator: {exc}") from exc
        return params


def _build(cls, data: Any, where: str):
    """Instantiate a dataclass from a mapping, rejecting unknown keys with the list of valid ones."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}: {data!r}")
    _reject_unknown_keys(cls, data, where)
    return cls(**data)


def _corpus(data: Any, where: str) -> CorpusConfig:
    """A CorpusConfig whose keys all belong to its kind (an ICL `task` on a natural corpus is a typo)."""
    if isinstance(data, dict):
        kind = data.get("kind", "icl")
        for other, keys in CORPUS_KIND_KEYS.items():
            stray = sorted(set(data) & set(keys)) if other != kind and kind in CORPUS_KINDS else []
            if stray:
                raise ConfigError(f"{where}: key(s) {stray} belong to kind {other!r}, not {kind!r}; remove them")
    return _build(CorpusConfig, data, where)


def _reject_unknown_keys(cls, data: dict, where: str) -> None:
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(valid)}")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(value).__name__}: {value!r}")
    return dict(value)


def _int_list(value: Any, where: str, allow_all: bool) -> str | tuple[int, ...]:
    if allow_all and value == "all":
        return "all"
    return _ints(value, where, hint="'all' or " if allow_all else "")


def _ints(value: Any, where: str, hint: str = "") -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"{where} must be {hint}a list of integers, got {value!r}")
    return tuple(items)


def _layers(value: Any) -> str | tuple[int, ...] | RelativeDepths:
    """Block indices ('all', [0, -1]) or relative depths ({depths: [0.25, 0.5, 1.0]})."""
    if not isinstance(value, dict):
        return _int_list(value, "layers", allow_all=True)
    _reject_unknown_keys(RelativeDepths, value, "layers")
    depths = value.get("depths")
    items: Sequence[Any] = depths if isinstance(depths, (list, tuple)) else [depths]
    if not items or not all(isinstance(d, (int, float)) and not isinstance(d, bool) and 0 < d <= 1 for d in items):
        raise ConfigError(f"layers.depths must be a list of relative depths in (0, 1], e.g. [0.25, 0.5, 1.0]; "
                          f"got {depths!r}")
    return RelativeDepths(tuple(float(d) for d in items))


def _readings(value: Any) -> tuple[str, ...]:
    """Which readings to make, e.g. [smoothed, entropy_limit] (no MINE: no critic is trained)."""
    items = [value] if isinstance(value, str) else value
    known = reading_names()
    if not isinstance(items, (list, tuple)) or not items or any(v not in known for v in items):
        raise ConfigError(f"readings must be a non-empty list from {list(known)}, got {value!r}")
    return tuple(dict.fromkeys(items))


def _positions(value: Any) -> str | tuple[int, ...]:
    """'all', 'last' (only the paper's E(l): the whole sequence, whatever its length) or a list of indices."""
    return "last" if value == "last" else _int_list(value, "positions", allow_all=True)


def parse_config(data: dict) -> SweepConfig:
    """Turn a YAML mapping into a validated SweepConfig."""
    if not isinstance(data, dict):
        raise ConfigError(f"a sweep config must be a YAML mapping, got {type(data).__name__}")
    _reject_unknown_keys(SweepConfig, data, "the config")
    models_raw = data.get("models", ["smollm2-135m"])
    if isinstance(models_raw, (str, dict)):
        models_raw = [models_raw]
    models = tuple(
        ModelSpec(name=m) if isinstance(m, str) else _build(ModelSpec, m, f"models[{i}]")
        for i, m in enumerate(models_raw)
    )
    corpora_raw = data.get("corpora", [{}])
    if isinstance(corpora_raw, dict):
        corpora_raw = [corpora_raw]
    corpora = tuple(_corpus(c, f"corpora[{i}]") for i, c in enumerate(corpora_raw))
    config = SweepConfig(
        name=str(data.get("name", "sweep")),
        models=models,
        corpora=corpora,
        shots=_ints(data.get("shots", [4]), "shots"),
        layers=_layers(data.get("layers", "all")),
        positions=_positions(data.get("positions", "all")),
        micro=data.get("micro", "single_token"),
        seeds=_ints(data.get("seeds", [0]), "seeds"),
        estimator=_mapping(data.get("estimator"), "estimator"),
        extract=_build(ExtractConfig, data.get("extract"), "extract"),
        reduce=_build(ReduceConfig, data.get("reduce"), "reduce"),
        readings=_readings(data.get("readings", list(READINGS))),
        smoothed=_mapping(data.get("smoothed"), "smoothed"),
        entropy_limit=_mapping(data.get("entropy_limit"), "entropy_limit"),
        mine=_mapping(data.get("mine"), "mine"),
    )
    validate_static(config)
    return config


def validate_static(config: SweepConfig) -> None:
    """Checks that need no model: value ranges and enumerations."""
    if not config.models:
        raise ConfigError("models is empty; name at least one model, e.g. models: [smollm2-135m]")
    if not config.corpora:
        raise ConfigError("corpora is empty; add at least one, e.g. corpora: [{kind: icl, task: country}]")
    for i, spec in enumerate(config.models):
        if spec.dtype not in TORCH_DTYPES:
            raise ConfigError(f"models[{i}].dtype {spec.dtype!r} is unknown; use one of {', '.join(TORCH_DTYPES)}")
        if str(spec.prepend_bos).lower() not in ("auto", "true", "false"):
            raise ConfigError(f"models[{i}].prepend_bos must be auto, true or false, not {spec.prepend_bos!r}")
        if spec.init not in INITS:
            raise ConfigError(f"models[{i}].init must be one of {list(INITS)}, not {spec.init!r} (random: the same "
                              "architecture and tokenizer with freshly drawn weights, seeded by init_seed)")
        if not isinstance(spec.init_seed, int) or isinstance(spec.init_seed, bool):
            raise ConfigError(f"models[{i}].init_seed must be an integer, got {spec.init_seed!r}")
    model_labels = [spec.label for spec in config.models]
    if len(set(model_labels)) != len(model_labels):
        raise ConfigError(f"models {model_labels} repeat; each model (name, init, init_seed) may appear once")
    if config.micro not in MICRO_MODES:
        raise ConfigError(f"micro must be one of {MICRO_MODES}, not {config.micro!r}")
    if any(k < 1 for k in config.shots):
        raise ConfigError(f"shots must be >= 1, got {list(config.shots)}")
    if isinstance(config.positions, tuple) and any(p < 0 for p in config.positions):
        raise ConfigError(f"positions count from 0 (first analysed token), got {list(config.positions)}")
    if config.extract.store_dtype not in STORE_DTYPES:
        raise ConfigError(f"extract.store_dtype must be one of {STORE_DTYPES}, not {config.extract.store_dtype!r}")
    for key in ("batch_size", "concurrency"):
        value = getattr(config.extract, key)
        if not (key == "batch_size" and value == "auto") and not (isinstance(value, int) and value >= 1):
            hint = "'auto' or " if key == "batch_size" else ""
            raise ConfigError(f"extract.{key} must be {hint}an integer >= 1, got {value!r}")
    for where, value in (("extract.num_gpus", config.extract.num_gpus),
                         ("reduce.num_gpus_per_task", config.reduce.num_gpus_per_task)):
        if value != "auto" and (isinstance(value, (bool, str)) or not value >= 0):
            raise ConfigError(f"{where} must be 'auto' or a number >= 0 (fractions share a GPU), got {value!r}")
    if not isinstance(config.extract.resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in config.extract.resources.items()):
        raise ConfigError(f"extract.resources must map Ray resource names to positive amounts, e.g. {{gpu_node: 1}}, "
                          f"got {config.extract.resources!r}")
    budget = config.extract.max_states_gb
    if budget is not None and (isinstance(budget, (bool, str)) or not budget > 0):
        raise ConfigError(f"extract.max_states_gb must be a number of GiB > 0, or null for no bound; got {budget!r}")
    if not isinstance(config.extract.keep_states, bool):
        raise ConfigError(f"extract.keep_states must be true or false, got {config.extract.keep_states!r}")
    if config.reduce.estimators_per_task < 1:
        raise ConfigError("reduce.estimators_per_task must be >= 1")
    params = config.estimator_params()
    _validate_readings(config)

    for i, corpus in enumerate(config.corpora):
        if corpus.kind not in CORPUS_KINDS:
            raise ConfigError(f"corpora[{i}].kind {corpus.kind!r} is not supported; use one of {list(CORPUS_KINDS)}")
        optional = tuple(k for k in ("n_entities", "max_documents") if getattr(corpus, k) is not None)
        for key in ("n_samples", "seed", "entity_tokens", "length", "shuffle_seed") + optional:
            value = getattr(corpus, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"corpora[{i}].{key} must be an integer, got {value!r}")
        if not isinstance(corpus.shuffle_tokens, bool):
            raise ConfigError(f"corpora[{i}].shuffle_tokens must be true or false, got {corpus.shuffle_tokens!r}")
        if corpus.shuffle_seed != 0 and not corpus.shuffle_tokens:
            raise ConfigError(f"corpora[{i}].shuffle_seed={corpus.shuffle_seed} without shuffle_tokens: true does "
                              "nothing; add shuffle_tokens: true or remove shuffle_seed")
        if corpus.kind == "icl":
            _validate_icl_corpus(i, corpus)
        else:
            _validate_natural_corpus(i, corpus)
        if corpus.n_samples < 10:
            raise ConfigError(f"corpora[{i}].n_samples={corpus.n_samples} is too small for an MI estimate")
        try:
            if "mine" in config.readings:
                params.validate(n_samples=corpus.n_samples)
        except ValueError as exc:
            raise ConfigError(f"corpora[{i}] with n_samples={corpus.n_samples}: estimator {exc}") from None
    labels = [c.label for c in config.corpora]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"corpus labels {labels} repeat; give each corpus its own `label`")


def _validate_readings(config: SweepConfig) -> None:
    """The `smoothed`, `entropy_limit` and `mine` sections: known keys, valid values."""
    from ie_ray.noise_scale import SCALE_RULES

    config.smoothed_params()
    if config.scale_rule not in SCALE_RULES:
        raise ConfigError(f"smoothed.scale_rule {config.scale_rule!r} is unknown; use one of {list(SCALE_RULES)}")
    stray = sorted(set(config.entropy_limit) - {"tolerance"})
    if stray:
        raise ConfigError(f"unknown key(s) {stray} in entropy_limit; valid keys: ['tolerance']")
    tolerance = config.entropy_limit.get("tolerance", 1e-3)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ConfigError(f"entropy_limit.tolerance must be a number > 0 (RMS per standardised coordinate), "
                          f"got {tolerance!r}")
    stray = sorted(set(config.mine) - {"positions"})
    if stray:
        raise ConfigError(f"unknown key(s) {stray} in mine; valid keys: ['positions']")
    if config.mine_positions not in MINE_POSITIONS:
        raise ConfigError(f"mine.positions must be one of {list(MINE_POSITIONS)}, got {config.mine_positions!r}")


def _validate_icl_corpus(i: int, corpus: CorpusConfig) -> None:
    from ie_ray.corpora.icl import ICL_FORMATS, ICL_TASKS

    if corpus.format not in ICL_FORMATS:
        raise ConfigError(f"corpora[{i}].format {corpus.format!r} is unknown; use one of {list(ICL_FORMATS)}")
    if corpus.n_entities is not None and corpus.n_entities < 1:
        raise ConfigError(f"corpora[{i}].n_entities must be >= 1 (or omitted for all), got {corpus.n_entities}")
    if corpus.entity_tokens < 1:
        raise ConfigError(f"corpora[{i}].entity_tokens must be >= 1 (tokens per demonstration entity), "
                          f"got {corpus.entity_tokens}")
    if corpus.task not in ICL_TASKS:
        raise ConfigError(f"corpora[{i}].task {corpus.task!r} is unknown; use one of {list(ICL_TASKS)}")


def _validate_natural_corpus(i: int, corpus: CorpusConfig) -> None:
    from ie_ray.corpora.natural import ANCHORS, check_source

    if corpus.anchor not in ANCHORS:
        raise ConfigError(f"corpora[{i}].anchor {corpus.anchor!r} is unknown; use 'start' (window at the "
                          "sentence start) or 'end' (window right before the sentence's final period)")
    if corpus.length < 2:
        raise ConfigError(f"corpora[{i}].length must be >= 2 tokens (IE compares a sequence with its tokens), "
                          f"got {corpus.length}")
    if corpus.max_documents is not None and corpus.max_documents < 1:
        raise ConfigError(f"corpora[{i}].max_documents must be >= 1 (or omitted for all), got {corpus.max_documents}")
    if not isinstance(corpus.reject_chars, str):
        raise ConfigError(f"corpora[{i}].reject_chars must be a string of characters, got {corpus.reject_chars!r}")
    try:
        check_source(corpus.source)
    except ConfigError as exc:
        raise ConfigError(f"corpora[{i}]: {exc}") from None


def load_config(path: str | Path | None = None) -> SweepConfig:
    """Load a YAML config (the embedded default when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pass --config with an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        raise ConfigError(f"config file {path} is empty; start from jobs/configs/smoke.yaml")
    return parse_config(data)


def layer_for_depth(depth: float, n_layers: int) -> int:
    """Block index at relative depth `depth` in (0, 1]: the first block l with (l + 1) / L >= depth."""
    return min(n_layers - 1, max(0, math.ceil(depth * n_layers - 1e-9) - 1))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what the parser found and where (PyYAML's own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return where + (f"{problem} ({context})" if context else problem)


def resolve_indices(requested: str | tuple[int, ...] | RelativeDepths, size: int, what: str,
                    owner: str) -> list[int]:
    """Expand 'all', relative depths and negative indices; out-of-range values name the valid range."""
    if isinstance(requested, RelativeDepths):
        return sorted({layer_for_depth(d, size) for d in requested.depths})
    if requested == "all":
        return list(range(size))
    if requested == "last":
        return [size - 1]
    if isinstance(requested, str):
        raise ConfigError(f"{what}s of {owner} must be 'all', 'last' or a list of indices, got {requested!r}")
    resolved = []
    for value in requested:
        index = value + size if value < 0 else value
        if not 0 <= index < size:
            raise ConfigError(
                f"{what} {value} is out of range for {owner}, which has {size} {what}s (valid: 0..{size - 1} "
                f"or -{size}..-1)"
            )
        resolved.append(index)
    return sorted(set(resolved))
