"""Tables of results/family-kjv/summary.md from the run directories next to this file (no estimates are made here).

    python results/family-kjv/summary.py        # after train-family, the two sweeps and `ie-ray compare`
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SIZES = ["family-kjv-xs", "family-kjv-s", "family-kjv-m", "family-kjv-l", "family-kjv-xl"]


def md(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def interval(value: float, low: float, high: float) -> str:
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def training_table() -> str:
    m = pd.read_csv(HERE / "manifest.csv")
    table = pd.DataFrame(dict(
        model=m.model, non_embedding_params=m.n_params_non_embedding.map("{:,}".format),
        params=m.n_params.map("{:,}".format), width_x_blocks=m.hidden_size.astype(str) + " x " + m.layers.astype(str),
        learning_rate=m.learning_rate, tokens_seen=m.tokens_seen.map("{:,}".format), wall_min=m.wall_s / 60,
        train_loss=m.final_train_loss, heldout_loss=m.final_heldout_loss))
    return md(table, ".3g")


def ie_vs_size() -> str:
    models = pd.read_csv(HERE / "ie" / "models.csv")
    layers = pd.read_csv(HERE / "ie" / "layers.csv")
    last = layers.loc[layers.groupby(["model", "corpus", "shots"]).layer.idxmax()]
    rows = []
    for (corpus, shots), part in models.groupby(["corpus", "shots"]):
        for model in SIZES:
            row = part[part.model == model]
            if row.empty:
                continue
            r = row.iloc[0]
            e = last[(last.model == model) & (last.corpus == corpus) & (last.shots == shots)].iloc[0]
            rows.append(dict(
                condition=f"{corpus} ({shots} shots)" if shots else corpus, model=model,
                ie_sigma_mean_over_blocks=interval(r.ie_sigma_mean_bits, r.ie_sigma_mean_ci_low, r.ie_sigma_mean_ci_high),
                flag=r.ie_sigma_flag if isinstance(r.ie_sigma_flag, str) and r.ie_sigma_flag else "ok",
                entropy_limit_mean=r.ie_limit_mean_bits,
                e_last_block_sigma=interval(e.ie_sigma_bits, e.ie_sigma_ci_low, e.ie_sigma_ci_high),
                e_last_block_flag=e.ie_sigma_flag if isinstance(e.ie_sigma_flag, str) and e.ie_sigma_flag else "ok",
                e_last_block_limit=e.ie_limit_bits))
    return md(pd.DataFrame(rows))


def mine_table() -> str:
    path = HERE / "ie-mine" / "layers.csv"
    if not path.is_file():
        return "(not run)"
    layers = pd.read_csv(path)
    keep = ["model", "layer", "position", "ie_sigma_bits", "ie_sigma_flag", "ie_limit_bits", "ie_mine_bits",
            "ie_mine_ci_low", "ie_mine_ci_high", "ie_mine_flag"]
    return md(layers[keep].fillna("ok"))


def proxy_b_tables(compare: str) -> tuple[str, str]:
    summary = pd.read_csv(HERE / "ie" / compare / "proxy_b.csv")
    loo = pd.read_csv(HERE / "ie" / compare / "proxy_b_loo.csv")
    s = summary[["corpus", "shots", "n_models", "n_members_flagged", "flag", "slope_bits_per_decade",
                 "loo_rmse_bits", "loo_mae_bits", "largest_loo_error_bits", "loo_coverage"]]
    loo = loo.assign(prediction_interval=[f"[{a:.2f}, {b:.2f}]" for a, b in zip(loo.pi_low, loo.pi_high)])
    l_ = loo[["corpus", "shots", "model", "observed", "predicted", "prediction_interval", "error", "covered",
              "member_flag"]]
    return md(s), md(l_)


def proxy_a_table(compare: str) -> str:
    path = HERE / "ie" / compare / "proxy_a.csv"
    if not path.is_file():
        return "(not computed)"
    a = pd.read_csv(path)
    a = a.assign(r=[interval(r, lo, hi) for r, lo, hi in zip(a.pearson_r, a.r_ci_low, a.r_ci_high)])
    return md(a[["proxy", "target", "n_conditions", "r", "spearman_rho", "calib_slope", "loo_rmse_bits"]])


def main() -> None:
    b_summary, b_loo = proxy_b_tables("compare")
    b5_summary, b5_loo = proxy_b_tables("compare-five")
    text = "\n\n".join([
        "## Training", training_table(),
        "## IE vs size (IE_sigma at tau = 0.25; entropy limit)", ie_vs_size(),
        "## MINE on the last block (held-out sentence starts)", mine_table(),
        "## Proxy B on the four members whose loss falls with size (xs, s, m, l): fits on log10(parameters), "
        "each member left out in turn", b_summary, b_loo,
        "## Proxy B on all five members (xl included)", b5_summary, b5_loo,
        "## Proxy A: each smaller member measuring l (four-member family)", proxy_a_table("compare"),
        "## Proxy A: each smaller member measuring xl", proxy_a_table("compare-five"),
    ])
    (HERE / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
