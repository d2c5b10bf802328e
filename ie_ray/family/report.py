"""What `ie-ray train-family --out DIR` writes for people: the manifest table, loss curves, and the held-out
text that sweeps measure IE on (so a run is reproducible from the results directory alone)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ie_ray.family.recipe import FamilyRecipe
from ie_ray.family.train import FamilyResult

MANIFEST_COLUMNS = ["model", "size", "n_params", "n_params_non_embedding", "hidden_size", "layers", "heads",
                    "learning_rate", "steps", "tokens_seen", "wall_s", "final_train_loss", "final_heldout_loss",
                    "reloaded", "recipe_hash", "member_hash"]


def heldout_filename(recipe: FamilyRecipe) -> str:
    return f"heldout-{recipe.name}.txt"


def plot_losses(losses: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (model, curve) in enumerate(losses.groupby("model", sort=False)):
        color = f"C{i}"
        smooth = curve.train_loss.rolling(25, min_periods=1).mean()
        ax.plot(curve.tokens / 1e6, smooth, color=color, alpha=0.6, lw=1, label=f"{model} train (25-step mean)")
        held = curve.dropna(subset=["heldout_loss"])
        ax.plot(held.tokens / 1e6, held.heldout_loss, "o-", color=color, ms=3, lw=1.5, label=f"{model} held-out")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_ylim(top=min(ax.get_ylim()[1], 7.5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Family training: same text, tokens and schedule for every size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_family_outputs(recipe: FamilyRecipe, result: FamilyResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = result.manifest[[c for c in MANIFEST_COLUMNS if c in result.manifest.columns]]
    manifest.to_csv(out / "manifest.csv", index=False)
    (out / "manifest.json").write_text(json.dumps(dict(
        recipe=recipe.to_dict(), recipe_hash=recipe.content_hash(), checkpoints=str(result.directory),
        text=result.text, members=manifest.to_dict(orient="records")), indent=2, default=str))
    result.losses.to_csv(out / "losses.csv", index=False)
    plot_losses(result.losses, out / "losses.png")
    (out / heldout_filename(recipe)).write_text("\n\n".join(result.heldout_documents) + "\n")
