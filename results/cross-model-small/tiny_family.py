"""Proxy B mechanics check on a RANDOM-INIT GPT-2 "family" of four sizes (not a finding about any real model).

No real family with >= 3 sizes installs offline, so this is how the scaling extrapolation is exercised end to
end here: four untrained GPT-2s (2-5 blocks, 16-128 wide) with the in-process tiny tokenizer, one ICL
condition, then `ie-ray compare` predicting a 10x larger size and the leave-one-out error. Untrained weights
carry no emergence to speak of: read the numbers as a check that the pipeline fits, predicts and validates.

    PYTHONPATH=. python results/cross-model-small/tiny_family.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ie_ray.cli import main as ie_ray_main
from ie_ray.config import parse_config
from ie_ray.corpora.tokenizers import tiny_tokenizer
from ie_ray.sweep import run_sweep

SIZES = {"small": (16, 2), "medium": (32, 3), "large": (64, 4), "xl": (128, 5)}  # width, blocks


def write_models(root: Path) -> list[str]:
    tokenizer = tiny_tokenizer()
    paths = []
    for seed, (size, (width, blocks)) in enumerate(SIZES.items()):
        path = root / f"randgpt2-{size}"
        config = GPT2Config(n_embd=width, n_layer=blocks, n_head=4, n_positions=64, vocab_size=len(tokenizer),
                            bos_token_id=0, eos_token_id=1)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            GPT2LMHeadModel(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    return paths


def main(out: Path) -> None:
    models = write_models(out / "models")
    config = parse_config({
        "name": "tiny-family-mechanics",
        "models": models,
        "corpora": [{"task": "country", "n_entities": 8, "n_samples": 400}],
        "shots": [2],
        "layers": {"depths": [0.5, 1.0]},
        "positions": "last",
        "estimator": {"steps": 150, "min_width": 64},
        "extract": {"batch_size": 200},
    })
    run_sweep(config, out / "run")
    ie_ray_main(["compare", str(out / "run")])


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
