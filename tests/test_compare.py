"""Cross-model tables on synthetic inputs with known answers (relative depth, depth alignment, P(A > B),
ranking), and end to end: a sweep of a 3-size random-init GPT-2 family -> report section and `ie-ray compare`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ie_ray.compare import (
    ALL_CONDITIONS,
    RunTables,
    compare_tables,
    depth_aligned,
    layer_table,
    model_info_table,
    pairwise_confidence,
    prob_greater,
    ranking,
    relative_depth,
)
from ie_ray.config import layer_for_depth, parse_config, resolve_indices

# --- relative depth ------------------------------------------------------------------------------------------------


def test_relative_depth_puts_every_last_block_at_one() -> None:
    np.testing.assert_allclose(relative_depth([0, 14, 29], 30), [1 / 30, 0.5, 1.0])
    np.testing.assert_allclose(relative_depth([0, 8, 17], 18), [1 / 18, 0.5, 1.0])


@pytest.mark.parametrize("n_layers", [1, 4, 12, 18, 30, 48])
def test_layer_for_depth_is_the_first_block_reaching_that_depth(n_layers: int) -> None:
    for depth in np.linspace(0.01, 1.0, 37):
        layer = layer_for_depth(float(depth), n_layers)
        assert relative_depth(layer, n_layers) >= depth - 1e-9
        assert layer == 0 or relative_depth(layer - 1, n_layers) < depth - 1e-9


def test_config_depths_line_up_models_of_different_depth() -> None:
    config = parse_config({"layers": {"depths": [0.25, 0.5, 0.75, 1.0]}})
    assert resolve_indices(config.layers, 30, "layer", "smollm2") == [7, 14, 22, 29]
    assert resolve_indices(config.layers, 18, "layer", "gemma3") == [4, 8, 13, 17]
    assert resolve_indices(config.layers, 4, "layer", "tiny") == [0, 1, 2, 3]


def _info(depths: dict[str, int], params: dict[str, int] | None = None) -> pd.DataFrame:
    return model_info_table({m: dict(family="llama", n_params=(params or {}).get(m, 10**6 * (k + 1)), n_layers=L,
                                     hidden_size=64) for k, (m, L) in enumerate(depths.items())})


def _layers(model: str, n_layers: int, layers: list[int], fn, corpus: str = "icl-country", shots: int = 4):
    d = relative_depth(np.array(layers), n_layers)
    ie = fn(d)
    return pd.DataFrame(dict(model=model, corpus=corpus, shots=shots, layer=layers, ie_bits=ie, ci_low=ie - 0.5,
                             ci_high=ie + 0.5, flag="ok"))


def test_depth_alignment_interpolates_linear_profiles_exactly_and_never_extrapolates() -> None:
    layers = pd.concat([
        _layers("deep", 30, [7, 14, 22, 29], lambda d: 10 * d),
        _layers("shallow", 18, [4, 8, 13, 17], lambda d: 3 - 2 * d),
    ])
    table = layer_table(layers, _info({"deep": 30, "shallow": 18}))
    assert table[table.model == "deep"].relative_depth.tolist() == pytest.approx([8 / 30, 0.5, 23 / 30, 1.0])
    grid = [0.1, 0.3, 0.5, 0.9, 1.0]
    aligned = depth_aligned(table, grid).set_index(["model", "relative_depth"])
    for depth in (0.3, 0.5, 0.9, 1.0):
        assert aligned.loc[("deep", depth), "ie_bits"] == pytest.approx(10 * depth)
        assert aligned.loc[("shallow", depth), "ie_bits"] == pytest.approx(3 - 2 * depth)
        assert aligned.loc[("deep", depth), "ci_high"] - aligned.loc[("deep", depth), "ci_low"] == pytest.approx(1.0)
    assert np.isnan(aligned.loc[("deep", 0.1), "ie_bits"])  # 0.1 < 8/30: outside what was measured
    assert aligned.loc[("shallow", 0.3), "ie_bits"] == pytest.approx(2.4)  # 5/18 = 0.278 < 0.3: inside


# --- P(A > B) and the ranking --------------------------------------------------------------------------------------


def test_prob_greater_known_values() -> None:
    assert prob_greater(5.0, 0.1, 1.0, 0.1) == pytest.approx(1.0)  # intervals far apart
    assert prob_greater(1.0, 0.1, 5.0, 0.1) == pytest.approx(0.0, abs=1e-12)
    assert prob_greater(2.0, 1.0, 2.0, 1.0) == pytest.approx(0.5)  # identical
    # difference of one joint standard deviation: Phi(1)
    assert prob_greater(1.0 + math.sqrt(2.0), 1.0, 1.0, 1.0) == pytest.approx(0.841345, abs=1e-6)
    assert prob_greater(1.0, 0.0, 0.5, 0.0) == 1.0


def _model_rows(values: dict[str, list[tuple[float, float]]], params: dict[str, int]) -> pd.DataFrame:
    """models.csv rows: per model a list of (ie_mean, half_width), one per condition icl-<k>."""
    rows = []
    for model, conditions in values.items():
        for k, (ie, half) in enumerate(conditions):
            rows.append(dict(model=model, corpus=f"icl-{k}", shots=2, n_layers=2, ie_mean_bits=ie,
                             ie_mean_ci_low=ie - half, ie_mean_ci_high=ie + half, ie_sum_bits=2 * ie,
                             ie_sum_ci_low=2 * (ie - half), ie_sum_ci_high=2 * (ie + half), n_params=params[model]))
    return pd.DataFrame(rows)


def test_ranking_and_pairwise_confidence_separated_vs_overlapping() -> None:
    params = {"a": 100, "b": 200, "c": 300}
    z = 1.959963984540054
    models = _model_rows({"a": [(1.0, 0.1), (2.0, z)], "b": [(5.0, 0.1), (2.0 + math.sqrt(2.0), z)],
                          "c": [(5.0, 0.1), (0.0, 0.1)]}, params)
    ranks = ranking(models)
    first = ranks[ranks.corpus == "icl-0"]
    assert first.model.tolist()[2] == "a" and first["rank"].tolist() == [1, 2, 3]
    assert first.p_above_next.iloc[0] == pytest.approx(0.5)  # b and c tie exactly
    assert first.p_above_next.iloc[1] == pytest.approx(1.0)  # c (or b) far above a
    assert np.isnan(first.p_above_next.iloc[2])
    second = ranks[ranks.corpus == "icl-1"]
    assert second.model.tolist() == ["b", "a", "c"]
    assert second.p_above_next.iloc[0] == pytest.approx(0.841345, abs=1e-5)  # se = 1 each, gap sqrt(2)
    pooled = ranks[ranks.corpus == ALL_CONDITIONS]
    assert pooled.model.tolist()[0] == "b"
    # the pooled value is the mean over conditions; its half-width the quadrature mean of the halves
    b = pooled[pooled.model == "b"].iloc[0]
    assert b.ie_bits == pytest.approx((5.0 + 2.0 + math.sqrt(2.0)) / 2)
    assert b.ci_high - b.ie_bits == pytest.approx(math.sqrt(0.1**2 + z**2) / 2)
    pairs = pairwise_confidence(models)
    ab = pairs[(pairs.corpus == "icl-0") & (pairs.model_a == "a") & (pairs.model_b == "b")].iloc[0]
    ba = pairs[(pairs.corpus == "icl-0") & (pairs.model_a == "b") & (pairs.model_b == "a")].iloc[0]
    assert ab.p_a_greater + ba.p_a_greater == pytest.approx(1.0)
    assert len(pairs) == 3 * 6  # 2 conditions + pooled, 6 ordered pairs each


def test_compare_tables_explains_what_it_cannot_compute() -> None:
    params = {"small-1m": 10**6, "big-2m": 2 * 10**6}
    models = _model_rows({"small-1m": [(1.0, 0.2), (2.0, 0.2)], "big-2m": [(1.5, 0.2), (2.5, 0.2)]}, params)
    layers = pd.concat([_layers(m, 4, [1, 3], lambda d: d, corpus=f"icl-{k}", shots=2)
                        for m in params for k in range(2)])
    info = model_info_table({m: dict(family="gpt2", n_params=n, n_layers=4, hidden_size=32) for m, n in params.items()})
    cross = compare_tables(RunTables(None, layers, models, info))
    assert len(cross.text_proxies) == 0 and len(cross.scaling) == 0
    assert any("Proxy A (small-1m measuring big-2m)" in n and ">= 3 paired conditions" in n for n in cross.notes)
    assert any("Proxy B" in n and ">= 3 sizes of one family" in n for n in cross.notes)
    assert cross.models.log10_params.tolist()[:2] == pytest.approx([6.0, math.log10(2e6)])


# --- end to end: a random-init family of three sizes ---------------------------------------------------------------


def _write_random_gpt2(path, width: int, n_layer: int, seed: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ie_ray.corpora.tokenizers import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = GPT2Config(n_embd=width, n_layer=n_layer, n_head=4, n_positions=64, vocab_size=len(tokenizer),
                        bos_token_id=0, eos_token_id=1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def family_run(ray_local, tmp_path_factory):
    """Three random-init GPT-2 sizes (2/3/4 blocks, 16/32/64 wide), one ICL condition: the cheapest sweep with
    a scalable family (Ray Data extraction costs seconds per model and cell, so cells are kept to one)."""
    from ie_ray.sweep import run_sweep

    root = tmp_path_factory.mktemp("family")
    names = []
    for size, (width, depth) in zip(["small", "medium", "large"], [(16, 2), (32, 3), (64, 4)]):
        path = root / f"randgpt2-{size}"
        _write_random_gpt2(path, width, depth, seed=len(names))
        names.append(str(path))
    config = parse_config({
        "name": "tiny-family",
        "models": names,
        "corpora": [{"task": "country", "n_entities": 8, "n_samples": 160}],
        "shots": [2],
        "layers": {"depths": [0.5, 1.0]},
        "positions": "last",
        "estimator": {"steps": 30, "batch_size": 64, "n_bootstrap": 40, "min_width": 32},
        "extract": {"batch_size": 80},
        "reduce": {"estimators_per_task": 8},
    })
    run_dir = tmp_path_factory.mktemp("run")
    # compare shows models named by a local path by their directory name
    return run_sweep(config, run_dir), [Path(n).name for n in names]


@pytest.mark.slow
def test_sweep_report_has_the_cross_model_and_proxy_sections(family_run) -> None:
    result, names = family_run
    report = (result.run_dir / "report.md").read_text()
    assert "## Cross-model comparison" in report and "## Proxy estimates" in report
    for name in ["ie_vs_depth.png", "ie_vs_params.png", "ranking.csv", "pairwise.csv", "depth_aligned.csv",
                 "proxy_b.csv", "proxy_b_loo.csv", "proxy_b_predictions.csv"]:
        assert (result.run_dir / "compare" / name).is_file(), name
    ranks = pd.read_csv(result.run_dir / "compare" / "ranking.csv")
    assert ranks["rank"].tolist() == [1, 2, 3] and set(ranks.model) == set(names)
    # relative depths 0.5 and 1.0 in models of 2, 3 and 4 blocks: blocks 0/1, 1/2, 1/3
    layers = pd.read_csv(result.run_dir / "compare" / "layers_by_depth.csv")
    got = layers.groupby("model").layer.apply(lambda s: sorted(set(s))).to_dict()
    assert got == {names[0]: [0, 1], names[1]: [1, 2], names[2]: [1, 3]}
    assert sorted(set(np.round(layers.relative_depth, 3))) == [0.5, 0.667, 1.0]
    # one condition: Proxy A cannot be validated, and the report says so instead of printing a number
    assert "Proxy A (" in report and ">= 3 paired conditions" in report


@pytest.mark.slow
def test_compare_cli_fits_proxy_b_on_the_family(family_run, capsys) -> None:
    from ie_ray.cli import main

    result, names = family_run
    assert main(["compare", str(result.run_dir), "--predict-params", "1e7", "--predict-params", "1e8"]) == 0
    assert "comparison written to" in capsys.readouterr().out
    text = (result.run_dir / "compare.md").read_text()
    assert "### Proxy B" in text
    proxy_b = pd.read_csv(result.run_dir / "compare" / "proxy_b.csv")
    assert proxy_b.family.tolist() == ["randgpt2"] and proxy_b.n_models.tolist() == [3]
    predictions = pd.read_csv(result.run_dir / "compare" / "proxy_b_predictions.csv")
    assert predictions.n_params.tolist() == [1e7, 1e8]
    # the fit is the least-squares line of the run's own model-level table against log10(parameters)
    models = pd.read_csv(result.run_dir / "models.csv")
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    x = np.log10(models.model.map(lambda m: manifest["models"][m]["n_params"]).astype(float))  # full paths here
    slope, intercept = np.polyfit(x, models.ie_mean_bits, 1)
    assert proxy_b.slope_bits_per_decade.iloc[0] == pytest.approx(slope, rel=1e-3, abs=1e-3)
    assert predictions.predicted.iloc[1] == pytest.approx(intercept + 8 * slope, rel=1e-3, abs=1e-3)
    assert main(["compare", str(result.run_dir / "nope")]) == 2


# --- `ie-ray compare` on a hand-made run directory (no Ray): both proxies with known answers ------------------------


def _fake_run(run_dir, per_model: dict[str, tuple[int, int, list[float]]]) -> None:
    """A finished-run directory: manifest (n_params, n_layers) and models/layers tables, one condition per value."""
    manifest = {"models": {m: dict(family="gpt2", n_params=n, n_layers=4, hidden_size=32)
                           for m, (n, _, _) in per_model.items()}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    model_rows, layer_rows = [], []
    for model, (n, _, values) in per_model.items():
        for k, ie in enumerate(values):
            model_rows.append(dict(model=model, corpus=f"text-{k}", shots=1, n_layers=2, ie_mean_bits=ie,
                                   ie_mean_ci_low=ie - 0.1, ie_mean_ci_high=ie + 0.1, ie_sum_bits=2 * ie,
                                   ie_sum_ci_low=2 * ie - 0.14, ie_sum_ci_high=2 * ie + 0.14))
            for layer in (1, 3):
                layer_rows.append(dict(model=model, corpus=f"text-{k}", shots=1, layer=layer, position=7,
                                       ie_bits=ie, ci_low=ie - 0.1, ci_high=ie + 0.1, flag="ok"))
    pd.DataFrame(model_rows).to_csv(run_dir / "models.csv", index=False)
    pd.DataFrame(layer_rows).to_csv(run_dir / "layers.csv", index=False)


def test_compare_cli_on_a_known_run(tmp_path) -> None:
    from ie_ray.cli import main

    # IE = log10(N) - 6 + 0.5 * source effect: linear in log size, and every model orders sources alike
    sources = [0.0, 1.0, 3.0, 2.0]
    sizes = {"gpt2": 10**8, "gpt2-medium": 10**9, "gpt2-large": 10**10, "gpt2-xl": 10**11}
    _fake_run(tmp_path, {m: (n, 4, [math.log10(n) - 6 + 0.5 * s for s in sources]) for m, n in sizes.items()})
    assert main(["compare", str(tmp_path), "--proxy", "gpt2:gpt2-xl", "--predict-params", "1e12"]) == 0
    proxy_a = pd.read_csv(tmp_path / "compare" / "proxy_a.csv")
    assert proxy_a.pearson_r.tolist() == pytest.approx([1.0]) and proxy_a.loo_rmse_bits.iloc[0] < 1e-6
    proxy_b = pd.read_csv(tmp_path / "compare" / "proxy_b.csv")
    assert len(proxy_b) == 4 and proxy_b.loo_rmse_bits.max() < 1e-6 and proxy_b.n_models.tolist() == [4] * 4
    predictions = pd.read_csv(tmp_path / "compare" / "proxy_b_predictions.csv")
    expected = [12 - 6 + 0.5 * s for s in sources]
    assert sorted(predictions.predicted) == pytest.approx(sorted(expected))
    ranks = pd.read_csv(tmp_path / "compare" / "ranking.csv")
    assert ranks[ranks["rank"] == 1].model.unique().tolist() == ["gpt2-xl"]
    assert (tmp_path / "compare" / "proxy_a_gpt2_vs_gpt2-xl.png").is_file()
    assert main(["compare", str(tmp_path), "--proxy", "gpt2-gpt2-xl"]) == 2  # malformed pair: a clear error


def test_compare_refuses_a_single_model_run(tmp_path) -> None:
    from ie_ray.compare import compare_run
    from ie_ray.errors import ConfigError

    _fake_run(tmp_path, {"only-1m": (10**6, 4, [1.0, 2.0])})
    with pytest.raises(ConfigError, match="needs >= 2"):
        compare_run(tmp_path)


# --- the cross-model configs parse (the text proxy first needs `ie-ray generate`) ------------------------------


@pytest.mark.parametrize("name, n_models", [("cross-model-small", 2), ("paper-families-gpt2", 4),
                                            ("paper-families-qwen2.5", 5), ("paper-families-gemma-openllama", 5)])
def test_cross_model_configs_parse_and_each_family_config_can_fit_proxy_b(name: str, n_models: int) -> None:
    from ie_ray.config import RelativeDepths, load_config
    from ie_ray.proxy import family_of
    from ie_ray.store import REPO_ROOT

    config = load_config(REPO_ROOT / "jobs" / "configs" / f"{name}.yaml")
    assert config.name == name and len(config.models) == n_models
    assert isinstance(config.layers, RelativeDepths) and config.positions == "last"
    families = [family_of(m.name) for m in config.models]
    if name.startswith("paper-families"):
        assert max(families.count(f) for f in set(families)) >= 3  # Proxy B needs >= 3 sizes of one family


def test_text_proxy_config_parses_or_asks_for_its_generated_text_first() -> None:
    from ie_ray.config import load_config
    from ie_ray.errors import ConfigError
    from ie_ray.store import REPO_ROOT

    path = REPO_ROOT / "jobs" / "configs" / "cross-model-text-proxy.yaml"
    generated = REPO_ROOT / "results" / "generated"
    if not all((generated / m / "texts.jsonl").exists() for m in ("gemma3-270m-pydoc", "smollm2-135m-pydoc")):
        with pytest.raises(ConfigError, match=r"generated/.*-pydoc.*does not exist.*ie-ray generate"):
            load_config(path)
        return
    config = load_config(path)
    assert [m.name for m in config.models] == ["smollm2-135m", "gemma3-270m"]
    assert len({c.label for c in config.corpora}) == 8  # 8 conditions for the proxy's correlation
