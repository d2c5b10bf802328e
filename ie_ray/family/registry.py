"""Where trained family members live, and how a sweep config's `family-<name>-<size>` finds them.

Checkpoints sit under the user cache: `<cache>/families/<name>-<family hash>/<size>-<member hash>/`, the family
hash covering what every member shares (text, tokenizer, training) and the member hash adding the member's own
spec. A pointer file `<cache>/families/<name>.json` names the recipe trained last, so `family-kjv-m` in a sweep
config means "the m member of the kjv family this machine trained"; the manifest records the member hash as the
model's revision, so a result is traceable to exact weights (and the shard cache never mixes two trainings).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ie_ray.errors import ConfigError
from ie_ray.store import cache_root

#: How a sweep config names a member: family-<name>-<size> (models.ModelSpec.kind tells these apart by it).
PREFIX = "family-"
_MEMBER = re.compile(r"^family-([a-z0-9]+)-([a-z0-9]+)$")
DONE = "TRAINED"  # written last into a member's directory: a crashed run never leaves a checkpoint we trust


def families_root() -> Path:
    return cache_root() / "families"


def family_dir(name: str, recipe_hash: str) -> Path:
    return families_root() / f"{name}-{recipe_hash}"


def member_dir(name: str, recipe_hash: str, size: str, member_hash: str) -> Path:
    return family_dir(name, recipe_hash) / f"{size}-{member_hash}"


def is_trained(path: Path) -> bool:
    return (path / DONE).is_file() and (path / "config.json").is_file()


def write_pointer(name: str, recipe_hash: str, members: dict[str, str]) -> None:
    """`members` maps size -> member hash."""
    root = families_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(dict(name=name, recipe_hash=recipe_hash, members=members), indent=2))
    tmp.replace(root / f"{name}.json")


def parse_member(model_name: str) -> tuple[str, str]:
    match = _MEMBER.match(model_name)
    if not match:
        raise ConfigError(f"model {model_name!r} is not a family member name; use family-<family>-<size>, "
                          "e.g. family-kjv-m")
    return match.group(1), match.group(2)


def resolve_member(model_name: str) -> tuple[Path, str]:
    """The checkpoint directory and member hash of `family-<name>-<size>`, or an error saying how to train it."""
    name, size = parse_member(model_name)
    pointer = families_root() / f"{name}.json"
    hint = (f"train it first with `ie-ray train-family --config jobs/configs/family-{name}.yaml` (or name the "
            "member's checkpoint directory as the model)")
    if not pointer.is_file():
        raise ConfigError(f"model {model_name!r}: no family {name!r} has been trained on this machine "
                          f"(looked in {families_root()}); {hint}")
    record = json.loads(pointer.read_text())
    members = record.get("members", {})
    if size not in members:
        raise ConfigError(f"model {model_name!r}: family {name!r} has sizes {list(members)}, not {size!r}")
    path = member_dir(name, record["recipe_hash"], size, members[size])
    if not is_trained(path):
        raise ConfigError(f"model {model_name!r}: {path} holds no finished checkpoint; {hint}")
    return path, members[size]


def family_name_of(model_name: str) -> str | None:
    """`family-kjv-m` -> `family-kjv` (the scaling family proxy B groups by); None for other names."""
    match = _MEMBER.match(str(model_name).rstrip("/").split("/")[-1])
    return f"{PREFIX}{match.group(1)}" if match else None
