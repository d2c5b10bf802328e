"""`ie_ray.measure` (the notebook API) runs the sweep's own code path: its tables are the tables of a sweep of
the equivalent config, number for number; a loaded model object measures as its name does; a list of strings is
a natural-text corpus; bad input fails in seconds with a message naming the fix."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest

from ie_ray import api, measure
from ie_ray.compare import load_run
from ie_ray.config import CorpusConfig, parse_config
from ie_ray.errors import ConfigError
from ie_ray.models import ModelSpec, load_model
from ie_ray.sweep import run_sweep
from ie_ray.variance import write_variance

ICL = {"kind": "icl", "task": "country", "n_entities": 8}
#: small and fast: 2 blocks of a 4-block model, two readings, a short tau grid
KNOBS = dict(n_samples=120, shots=2, layers=[0, -1], readings=["smoothed", "entropy_limit"],
             settings={"extract": {"batch_size": 60}, "smoothed": {"taus": [0.1, 0.25], "n_draws": 500,
                                                                   "n_bootstrap": 20}})
#: the same measurement written as a sweep config (what `measure` must be equivalent to)
SWEEP = {"name": "measure", "models": ["tiny-llama"], "corpora": [{**ICL, "n_samples": 120, "seed": 0}],
         "shots": [2], "layers": [0, -1], "positions": "all", "readings": ["smoothed", "entropy_limit"],
         "extract": {"batch_size": 60}, "smoothed": {"taus": [0.1, 0.25], "n_draws": 500, "n_bootstrap": 20}}
#: distinct sentences (capitalised, ending in a period, no : ? - ;) for the list-of-strings corpus
SENTENCES = [f"The {a} {b} saw the {c} bird in the garden." for a, b, c in itertools.product(
    ["quick", "lazy", "small", "brown", "red"], ["cat", "dog", "fox", "girl"], ["green", "blue", "dark"])]


@pytest.fixture(scope="module")
def measured(ray_local, one_torch_thread, tmp_path_factory):
    return measure("tiny-llama", corpus=ICL, run_dir=tmp_path_factory.mktemp("api") / "run", **KNOBS)


@pytest.fixture(scope="module")
def swept(ray_local, one_torch_thread, tmp_path_factory):
    return run_sweep(parse_config(SWEEP), tmp_path_factory.mktemp("sweep") / "run")


def test_tables_equal_those_of_the_equivalent_sweep(measured, swept):
    assert measured.config == parse_config(SWEEP)
    for stem in ("ie", "layers", "models"):
        pd.testing.assert_frame_equal(getattr(measured, stem), pd.read_parquet(swept.run_dir / f"{stem}.parquet"),
                                      check_exact=True, obj=stem)
    assert len(measured.ie) == 2 * 4 and sorted(measured.layers.layer) == [0, 3]
    assert {"ie_bits", "ci_low", "ci_high", "flag", "ie_limit_bits"} <= set(measured.ie.columns)


def test_save_writes_a_run_directory_that_compare_and_variance_read(measured, tmp_path):
    saved = measured.save(tmp_path / "kept")
    for name in ("ie.parquet", "layers.parquet", "models.parquet", "mi.parquet", "manifest.json", "config.yaml",
                 "report.md"):
        assert (saved / name).is_file(), name
    tables = load_run(saved)
    pd.testing.assert_frame_equal(tables.layers, measured.layers)
    assert write_variance(saved).summary is not None and (saved / "variance.csv").is_file()
    with pytest.raises(FileExistsError, match="new directory"):
        measured.save(saved)


def test_plot_draws_position_and_tau_panels(measured):
    fig = measured.plot()
    assert len(fig.axes) == 2
    assert fig.axes[0].get_xlabel().startswith("position") and fig.axes[1].get_xscale() == "log"


def test_a_loaded_model_object_measures_as_its_name_does(measured, one_torch_thread):
    loaded = load_model(ModelSpec("tiny-llama"))
    result = measure(loaded.model, loaded.tokenizer, corpus=ICL, **KNOBS)
    name = result.ie.model.iloc[0]
    assert name.startswith("saved-") and result.temporary and result.run_dir.is_dir()
    numbers = ["layer", "position", "ie_bits", "ci_low", "ci_high", "ie_limit_bits"]
    pd.testing.assert_frame_equal(result.ie[numbers], measured.ie[numbers], check_exact=True)
    # the same weights map to the same saved model: a second call saves nothing new
    assert api._model_entry((loaded.model, loaded.tokenizer), None)["name"] == name
    run_dir = result.run_dir
    del result
    assert not run_dir.exists()  # a temporary run directory goes with its Measurement


def test_a_list_of_strings_is_a_natural_corpus(ray_local, one_torch_thread):
    result = measure("tiny-gpt2", corpus=SENTENCES, positions=[0, 1, 2, 3], n_samples=40, layers=[-1],
                     readings=["entropy_limit"], settings={"extract": {"batch_size": 40}})
    assert result.config.corpora[0].kind == "natural" and result.config.corpora[0].length == 4
    assert list(result.ie.corpus.unique()) == ["texts-start4"] and sorted(result.ie.position) == [0, 1, 2, 3]
    assert result.ie.ie_limit_bits.notna().all()


def test_defaults_are_the_sweeps():
    config = parse_config({})
    assert (api.DEFAULT_N_SAMPLES, api.DEFAULT_SHOTS) == (config.corpora[0].n_samples, config.shots[0])
    assert api.DEFAULT_LENGTH == CorpusConfig(kind="natural").length
    defaults = measure.__kwdefaults__
    assert (defaults["layers"], defaults["positions"], tuple(defaults["readings"])) == \
        (config.layers, config.positions, config.readings)


# (case id, measure() arguments, words the error must contain); all fail before Ray or any extraction
BAD = [
    ("unknown-model", dict(model="no-such-model-xyz"), ["'no-such-model-xyz'", "embedded model"]),
    ("unknown-corpus-string", dict(corpus="planets"), ["'planets'", "ICL task", "list of strings"]),
    ("missing-corpus-path", dict(corpus=__import__("pathlib").Path("/no/such/file.txt")), ["does not exist"]),
    ("empty-list", dict(corpus=[]), ["empty list"]),
    ("non-string-text", dict(corpus=["A fine text.", 3]), ["corpus[1]", "int"]),
    ("blank-texts", dict(corpus=["", "  "]), ["blank"]),
    ("texts-shorter-than-positions", dict(corpus=SENTENCES, positions=list(range(30)), n_samples=20),
     ["windows of 30 tokens", "positions up to 29", "earlier positions"]),
    ("corpus-too-short", dict(corpus=SENTENCES, positions=[0, 1, 2, 3], n_samples=500),
     ["only 60 windows", "n_samples=500", "lower n_samples"]),
    ("layer-out-of-range", dict(layers=[9]), ["layer 9", "0..3"]),
    ("stray-setting", dict(settings={"models": ["x"]}), ["'models'", "measure()'s own arguments"]),
    ("bad-setting-value", dict(settings={"extract": {"batchsize": 8}}), ["'batchsize'", "batch_size"]),
    ("unknown-reading", dict(readings=["magic"]), ["readings", "'magic'"]),
    ("unknown-dtype", dict(dtype="float8"), ["'float8'", "float32"]),
    ("not-a-model", dict(model=object()), ["object", "PreTrainedModel"]),
]


@pytest.mark.parametrize("args,words", [pytest.param(a, w, id=i) for i, a, w in BAD])
def test_bad_input_names_the_problem_and_the_fix(args, words):
    kwargs = dict(model="tiny-llama", corpus=ICL, n_samples=120, shots=2, readings=["smoothed", "entropy_limit"])
    kwargs.update(args)
    with pytest.raises(ConfigError) as caught:
        measure(**kwargs)
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)


def test_a_loaded_model_needs_its_tokenizer():
    loaded = load_model(ModelSpec("tiny-gpt2"))
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        measure(loaded.model, corpus=ICL)


@pytest.mark.parametrize("kind", ["dataset", "dataset-dict", "file"])
def test_a_dataset_or_a_file_is_the_same_natural_corpus(kind, tmp_path):
    """Planned only (no Ray): every text route gives the windows of the list-of-strings corpus."""
    import datasets

    from ie_ray.sweep import plan_sweep

    if kind == "file":
        corpus = tmp_path / "sentences.txt"
        corpus.write_text("\n\n".join(SENTENCES))
    else:
        corpus = datasets.Dataset.from_dict({"body": SENTENCES, "n": list(range(len(SENTENCES)))})
        corpus = datasets.DatasetDict(test=corpus) if kind == "dataset-dict" else corpus
    knobs = dict(n_samples=40, seed=0, positions=[0, 1, 2, 3], length=None, anchor="start", split="test")

    def windows(entry: dict):
        config = parse_config({"models": ["tiny-gpt2"], "corpora": [entry], "layers": [0],
                               "readings": ["entropy_limit"]})
        return plan_sweep(config)[0].cells[0].corpus.input_ids

    entry = api._corpus_entry(corpus, text_field="body", **knobs)
    reference = api._corpus_entry(SENTENCES, text_field="text", **knobs)
    assert entry["kind"] == "natural" and entry["length"] == 4
    assert (windows(entry) == windows(reference)).all()
