"""The figures' block legends: named blocks when there are few, a colour bar when a legend would cover the curves."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ie_ray.report import MAX_BLOCK_LEGEND, block_colors, draw_ie_by_position


def _ie(n_layers: int) -> pd.DataFrame:
    rows = [dict(layer=layer, position=t, ie_bits=0.1 * layer + t, ci_low=0.1 * layer + t - 0.2,
                 ci_high=0.1 * layer + t + 0.2) for layer in range(n_layers) for t in range(4)]
    return pd.DataFrame(rows)


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


@pytest.mark.parametrize("n_layers", [4, MAX_BLOCK_LEGEND])
def test_few_blocks_are_named_in_the_legend_and_no_colour_bar_is_drawn(n_layers: int) -> None:
    fig, ax = plt.subplots()
    draw_ie_by_position(ax, _ie(n_layers), "few blocks")
    assert _legend_texts(ax) == [f"block {k}" for k in range(n_layers)]
    assert len(fig.axes) == 1  # no colour bar
    plt.close(fig)


@pytest.mark.parametrize("n_layers", [MAX_BLOCK_LEGEND + 1, 30])
def test_many_blocks_get_a_colour_bar_spanning_their_numbers_instead_of_legend_entries(n_layers: int) -> None:
    fig, ax = plt.subplots()
    draw_ie_by_position(ax, _ie(n_layers), "many blocks")
    assert not any(text.startswith("block ") for text in _legend_texts(ax))
    assert len(fig.axes) == 2
    bar = fig.axes[1]
    assert bar.get_ylabel() == "block"
    assert bar.get_ylim() == pytest.approx((0, n_layers - 1))
    plt.close(fig)


def test_other_lines_keep_their_legend_when_blocks_move_to_the_colour_bar() -> None:
    from ie_ray.report import label_blocks

    fig, ax = plt.subplots()
    colors = block_colors(range(12))
    for layer, color in colors.items():
        ax.plot([0, 1], [layer, layer], color=color, label=f"layer {layer}")
    ax.plot([0, 1], [0, 1], color="black", label="mean over layers")
    label_blocks(ax, colors, prefix="layer ")
    assert _legend_texts(ax) == ["mean over layers"]
    assert fig.axes[1].get_ylabel() == "layer"
    plt.close(fig)


def test_block_colours_run_shallow_to_deep_whatever_order_the_blocks_come_in() -> None:
    colors = block_colors([29, 0, 15])
    viridis = plt.get_cmap("viridis")
    assert list(colors) == [0, 15, 29]
    np.testing.assert_allclose(colors[0], viridis(0.0))
    np.testing.assert_allclose(colors[15], viridis(0.5))
    np.testing.assert_allclose(colors[29], viridis(1.0))
