"""Mutation testing of the modules that compute the reported numbers (issue 17, item 6). Slow: never run in CI.

    nice -n 15 python benchmarks/mutation.py                          # ie.py and bounds.py (~10 min)
    nice -n 15 python benchmarks/mutation.py --modules reduce capture # ~10 min
    nice -n 15 python benchmarks/mutation.py --modules smoothed       # 2146 mutants: many hours (--limit-min stops it)
    nice -n 15 python benchmarks/mutation.py --modules smoothed --resume  # next session: only the unreached mutants
    nice -n 15 python benchmarks/mutation.py --modules ie --baseline  # without the tests written against mutants
    python benchmarks/mutation.py --report-only                       # rewrite the Markdown after editing EQUIVALENT
    nice -n 15 python benchmarks/mutation.py --modules brackets --keep                    # keep the copy, then
    nice -n 15 python benchmarks/mutation.py --modules brackets --recheck /tmp/mutation-brackets-XXXX  # new tests
    nice -n 15 python benchmarks/mutation.py --modules variance --finish /tmp/mutation-variance-XXXX  # unchecked
    nice -n 15 python benchmarks/mutation.py --modules reduce --only ie_ray/reduce/row.py ie_ray/reduce/jobs.py --keep

(Times measured on 2 CPUs shared with a test suite, 2026-11-30; issue 28's modules on 2 CPUs shared with two
sweeps and three other test runs, 2026-12-04, where every run was stopped early: see mutation.md.)

`--finish DIR` runs the mutants a stopped run (kept with --keep) never reached, the same way, against the module's
whole selection: each gets a verdict without a fresh pytest per mutant.

`--recheck DIR` runs the survivors of a kept copy against the current tests/test_mutants_killed.py in one process
(mutmut reruns every test mapped to a mutant's function in a fresh pytest, minutes per mutant on a loaded machine):
a mutant those tests fail on is recorded as killed; the others keep their verdict.

A mutant is one small change to one function (an operator, a constant, a comparison, a dropped argument). A test
suite that stays green under a mutant does not protect what that line computes. The score of a module is the
share of its mutants that a targeted, fast test selection kills. Each module is mutated with mutmut 3 in a
throwaway copy of the repository, so the working tree, its `mutants/` and its caches are never touched.

mutmut is a development tool, not a dependency: `pip install mutmut` (tested with 3.8.1) into the project's
environment, which it needs because it imports the package and runs pytest in-process. Two settings of the copy
keep mutmut honest here:
- hypothesis never shrinks (a plugin loaded with `-p`): shrinking a failing example of a mutant takes minutes,
  and a kill needs only the first failure;
- hypothesis is derandomised, so a rerun kills the same mutants.

Surviving mutants are written with their file, line and diff to `benchmarks/results/mutation.md` (+ `.json`).
Each one is either killed by a test (tests/test_mutants_killed.py) or listed in EQUIVALENT with the reason no test
can tell it apart from the original. A survivor that is in neither is a gap in the tests and says so.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "mutation"
#: Test files written to kill mutants (issue 17, items 5 and 6; issue 28, item 3): `--baseline` leaves them out.
NEW_TESTS = ("tests/test_properties.py", "tests/test_mutants_killed.py", "tests/test_smoothed_mutants_killed.py",
             "tests/test_reduce_mutants_killed.py")
#: This property test fails under the mutation profile's derandomised examples (a model summary of values ~1e4 with
#: one of ~1e-45 misses its relative tolerance): it guards ie.py, not the modules it is left out of.
_NOT_THE_IE_SUMMARY_PROPERTY = ("-k", "not test_model_summary_is_the_mean_of_e_l_and_ok_only_if_every_layer_is")


@dataclass(frozen=True)
class Target:
    """One module to mutate and the fast tests that guard it (pytest arguments: files, then -k/-m filters).

    `also`: more modules mutated in the same mutmut run, each scored in a row of its own. Modules that share their
    tests (the reduce package) then pay for one copy, one clean run and one test-mapping run, not one each; mutmut
    still runs only the tests that call a mutant's function."""

    path: str
    tests: tuple[str, ...]
    filters: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    #: a row per module, labelled key:module, even when `--only` leaves one module of a package to mutate
    per_module: bool = False
    #: the tests written against this target's survivors: what `--recheck` runs them against
    kill_tests: tuple[str, ...] = ("tests/test_mutants_killed.py",)

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.also)

    def label(self, path: str, key: str) -> str:
        """The row's name in mutation.json: the key, or key:module for a run over several modules."""
        return key if not (self.also or self.per_module) else f"{key}:{Path(path).stem}"

    def only(self, paths: list[str]) -> Target:
        """The same target mutating only `paths` (some of its modules), each still scored in a row of its own: a
        rerun of the modules a stopped package run never reached, without paying again for the finished ones."""
        unknown = sorted(set(paths) - set(self.paths))
        if unknown:
            raise ValueError(f"--only {' '.join(unknown)}: not a module of this target ({', '.join(self.paths)})")
        return replace(self, path=paths[0], also=tuple(paths[1:]), per_module=bool(self.also or self.per_module))


TARGETS: dict[str, Target] = {
    "ie": Target("ie_ray/ie.py", ("tests/test_ie.py", "tests/test_readings_flags.py", *NEW_TESTS)),
    # the Gaussian-recovery tests train critics for minutes each: the known-score tests check every bound's value
    "bounds": Target("ie_ray/estimators/bounds.py",
                     ("tests/test_bounds_known_scores.py", "tests/test_estimator_suite.py", *NEW_TESTS),
                     ("-k", "not recovers_gaussian_mi")),
    # the reading task bodies run in-process in these tests (`fit_task`, `Reading.fit_layer`), so every mutant is
    # seen; one run for the package, a row per module
    # the three whole-sweep tests of test_reading_registry.py (48, 24 and 13 s) are left out: every mutant of the
    # scheduler, the row cache and the rows ran them (85 s a mutant, ~20 h for the package); test_reduce_units.py
    # covers those functions in-process in seconds
    "reduce": Target("ie_ray/reduce/mine_reading.py",
                     # the fast files first: --finish runs a mutant against the files in this order, stopping at
                     # the first failure
                     ("tests/test_reduce_mutants_killed.py", "tests/test_reduce_units.py", "tests/test_reduce.py",
                      "tests/test_layer_states.py", "tests/test_readings_flags.py", "tests/test_reading_registry.py",
                      "tests/test_streaming_reduce.py", "tests/test_ie.py", "tests/test_properties.py",
                      "tests/test_mutants_killed.py"),
                     ("-m", "not slow", "-k", " and ".join(f"not {t}" for t in (
                         "test_model_summary_is_the_mean_of_e_l_and_ok_only_if_every_layer_is",
                         "test_extraction_passes_fit_the_disk_budget",
                         "test_a_fourth_reading_is_one_class_and_one_registry_entry",
                         "test_states_are_deleted_when_their_readings_are_cached_and_a_rerun_reads_none"))),
                     kill_tests=("tests/test_mutants_killed.py", "tests/test_reduce_mutants_killed.py",
                                 "tests/test_reduce_units.py"),
                     also=tuple(f"ie_ray/reduce/{m}.py" for m in ("smoothed_reading", "entropy_limit_reading",
                                                                  "layer_states", "row", "row_cache", "jobs",
                                                                  "scheduler", "reading"))),
    "entropy_limit": Target("ie_ray/entropy_limit.py", ("tests/test_entropy_limit.py", *NEW_TESTS),
                            ("-m", "not slow", *_NOT_THE_IE_SUMMARY_PROPERTY)),
    "noise_scale": Target("ie_ray/noise_scale.py", ("tests/test_readings_flags.py", "tests/test_layer_states.py",
                                                    "tests/test_mutants_killed.py"), ("-m", "not slow")),
    "brackets": Target("ie_ray/brackets.py", ("tests/test_brackets.py", "tests/test_mutants_killed.py"),
                       ("-m", "not slow")),
    "variance": Target("ie_ray/variance.py", ("tests/test_variance.py", "tests/test_mutants_killed.py"),
                       ("-m", "not slow")),
    "capture": Target("ie_ray/capture.py", ("tests/test_capture.py", *NEW_TESTS), ("-m", "not slow")),
    # the fast tests only: every mutant of the estimator's core runs every test that calls it, and the exact-law
    # tests at d = 576, N = 8,000 or 40 repeated samples take minutes each on 2 shared cores
    "smoothed": Target("ie_ray/estimators/smoothed.py",
                       ("tests/test_smoothed.py", "tests/test_smoothed_interface.py", "tests/test_smoothed_atoms.py",
                        *NEW_TESTS),
                       ("-m", "not slow", "-k", " and ".join(f"not {t}" for t in (
                           "small_support", "large_support", "vanishing_noise", "correlated_gaussians",
                           "interval_width", "interval_covers", "interval_with_the_samples", "equals_the_expanded",
                           "follow_the_expanded", "test_model_summary_is_the_mean"))),
                       kill_tests=("tests/test_mutants_killed.py", "tests/test_smoothed_mutants_killed.py")),
}


@dataclass(frozen=True)
class Equivalent:
    """A survivor no test can kill: the mutated line (containing `mutated`) of the line containing `original` in
    `path` computes the same thing. Matched on text, so the reason stays attached when mutmut renumbers."""

    path: str
    original: str
    mutated: str
    reason: str

    def matches(self, path: str, original: str, mutated: str) -> bool:
        return path == self.path and self.original in original and self.mutated in mutated


_IE = "ie_ray/ie.py"
_SORTED = "sort=True is pandas' default."
_ASTYPE = "astype(None) converts to numpy's default dtype, float64, as astype(float) does."
_MERGE_ON = ("the only columns both tables hold are the join keys (every other column carries the reading's "
             "prefix), and those are what pandas merges on by default.")
_VARIANCE = "ie_ray/variance.py"
_ENTROPY = "ie_ray/entropy_limit.py"
_CHUNKS = "only how many rows a chunk holds changes (the memory budget): each row's value is computed on its own."
_CANDIDATES = ("the seed, the hash keys and the hashes only propose candidates: _identical_leaders checks every "
               "proposed copy on its values and _link_near every pair in a window that holds every pair within the "
               "tolerance (a projection is never longer than the difference), so the classes are the same; only "
               "the work differs.")
_WIDER = "a wider window only proposes more pairs, each checked exactly against the tolerance: the same classes."
_FOLDS = ("only when pending edges are folded into the labels changes (memory): finish() folds the rest, and the "
          "connected components of a set of edges do not depend on when they are merged.")
_TO_CSV_INDEX = "to_csv tests `index` for truth: None writes no index, as False does."
_TO_STRING_FLAGS = "to_string tests `index` and `header` for truth: None prints neither, as False does."
EQUIVALENT: tuple[Equivalent, ...] = (
    *(Equivalent(_IE, "if symbols.ndim == 1:", m, "np.unique(axis=0) counts distinct sub-arrays along axis 0 "
                 "whatever their shape: a 1-D array left as it is, or a 2-D one given an extra axis (n, 1, k), has "
                 "the same distinct rows with the same counts.") for m in ("ndim != 1", "ndim == 2")),
    Equivalent(_IE, "mi.groupby(GROUP_KEYS, sort=True)", "mi.groupby(GROUP_KEYS, )", _SORTED),
    Equivalent(_IE, "needed = range(0, int(t) + 1)", "needed = range(int(t) + 1)", "range(0, n) is range(n)."),
    Equivalent(_IE, 'per_layer.groupby(["model", "corpus", "shots"], sort=True)', "per_layer.groupby(",
               "per_layer comes from layer_summary, whose groupby already sorts by model, corpus, shots and layer: "
               "the groups come in sorted order with or without sorting them again."),
    Equivalent(_IE, "if n else math.nan", "if (n) or True else", "the mean of an empty Series is NaN, which is "
               "what the else branch returns."),
    *(Equivalent(_IE, 'pd.Series("ok", index=valid.index)', m, "without the index the default is one 'ok' value "
                 "instead of one per layer: only its values are read (the row's flags, the count of flagged "
                 "layers), and 'ok' adds to neither.") for m in ('pd.Series("ok", index=None)', 'pd.Series("ok", )')),
    Equivalent(_IE, 'groupby(["reading", "tau"], dropna=False, sort=True)', "dropna=None, sort=True",
               "pandas reads dropna=None as false, as it reads dropna=False."),
    Equivalent(_IE, 'groupby(["reading", "tau"], dropna=False, sort=True)', "dropna=False, )", _SORTED),
    Equivalent(_IE, "part.tau.astype(float)", "part.tau.astype(None)", _ASTYPE),
    *(Equivalent(_IE, "on=TABLE_KEYS, how=\"outer\")", m, _MERGE_ON)
      for m in ('rename(columns=cols), on=None, how="outer")', 'rename(columns=cols), how="outer")')),
    *(Equivalent(_IE, "on=keys, how=\"left\")", m, _MERGE_ON)
      for m in ('rename(columns=renamed), on=None, how="left")', 'rename(columns=renamed), how="left")')),
    *(Equivalent(_IE, 'c.replace("ie_", f"{prefix}_", 1)', m, "each name in `wanted` holds 'ie_' once: replacing "
                 "the first occurrence, the first two or all of them gives the same name.")
      for m in ('c.replace("ie_", f"{prefix}_", )', 'c.replace("ie_", f"{prefix}_", 2)')),
    *(Equivalent("ie_ray/estimators/bounds.py", "b = scores.shape[-1]", m, "InfoNCE's all-pairs scores are "
                 "(E, B, B), B critic inputs scored against each other: axes 1 and 2 (= -2 and -1) have the same "
                 "length, B, for every input the function is defined on.")
      for m in ("scores.shape[+1]", "scores.shape[-2]")),
    *(Equivalent("ie_ray/capture.py", 'padding_side: str = "right"', m, "every padding side but 'left' pads "
                 "on the right: the default only has to differ from 'left'.") for m in ('"XXrightXX"', '"RIGHT"')),
    *(Equivalent("ie_ray/capture.py", o, m, "torch infers int64 (torch.long) from Python ints, the only values "
                 "these ids hold.")
      for o, m in (("int(pad_id), dtype=torch.long)", "int(pad_id), dtype=None)"),
                   ("int(pad_id), dtype=torch.long)", "int(pad_id), )"),
                   ("torch.tensor(row, dtype=torch.long)", "torch.tensor(row, dtype=None)"),
                   ("torch.tensor(row, dtype=torch.long)", "torch.tensor(row, )"))),
    *(Equivalent("ie_ray/capture.py", "span = slice(width - len(row), width)", m, "a slice's end defaults to the "
                 "end of the row (width) and its start to 0.")
      for m in ("slice(width - len(row), None)", "slice(None, len(row))", "else slice(len(row))")),
    *(Equivalent("ie_ray/capture.py", o, m, "the mask and the ranks are (B, S): axis +1 is axis -1.")
      for o, m in (("mask.cumsum(-1)", "mask.cumsum(+1)"), ("attention_mask.cumsum(-1)", "attention_mask.cumsum(+1)"),
                   ("attention_mask.sum(-1)", "attention_mask.sum(+1)"), ("argmax(-1)", "argmax(+1)"))),
    Equivalent("ie_ray/reduce/jobs.py", "generate_state(1)[0]", "generate_state(2)[0]", "SeedSequence.generate_state "
               "draws one stream of words: its first word is the same however many are asked for."),
    # issue 28, item 3
    Equivalent("ie_ray/brackets.py", "mi.tau.astype(float)", "mi.tau.astype(None)", _ASTYPE),
    Equivalent("ie_ray/brackets.py", 'float_format="%.4f"', 'float_format="%.4F"', "%F differs from %f only in "
               "spelling inf and nan in capitals: pandas writes NaN as an empty field (na_rep) and never passes it to "
               "float_format, and an IE table holds no infinite value (differences of finite MI readings)."),
    *(Equivalent("ie_ray/brackets.py", o, m, "a display limit of the printed means, never a number: the table has "
                 "one row per (model, corpus, shots, position), far below 200 rows, and two value columns, far "
                 "narrower than 200 characters, so no limit (None) and 200 or 201 print the same; pandas matches "
                 "option names case-insensitively.")
      for o, m in (('"display.width", 200', '"display.width", 201'),
                   ('"display.max_rows", 200', '"display.max_rows", 201'),
                   ('"display.width", 200', '"display.width", None'),
                   ('"display.max_rows", 200', '"display.max_rows", None'),
                   ('"display.width", 200', '"DISPLAY.WIDTH", 200'),
                   ('"display.max_rows", 200', '"DISPLAY.MAX_ROWS", 200'))),
    *(Equivalent("ie_ray/brackets.py", 'groupby(KEYS, as_index=False)', m, "with the keys as the index of `macro` "
                 "(as_index true or None), merge(on=KEYS) matches index level names as it matches columns: the same "
                 "rows and columns come out.") for m in ("as_index=None", "as_index=True", "groupby(KEYS, ).agg")),
    Equivalent("ie_ray/brackets.py", "table.to_csv(index=False", "table.to_csv(index=None", "to_csv tests `index` "
               "for truth: None writes no index, as False does."),
    *(Equivalent("ie_ray/brackets.py", "plugin.merge(loo, on=KEYS).merge(macro, on=KEYS", m, _MERGE_ON)
      for m in ("plugin.merge(loo, on=None)", "plugin.merge(loo, ).merge", "merge(macro, on=None, how",
                "merge(macro, how=")),
    *(Equivalent("ie_ray/brackets.py", o, o.replace("dtype=float", "dtype=None"), "the MI table's value columns "
                 "are float64 (the reducer writes them so; pandas' nullable Float64 converts to float64 too when it "
                 "holds no NA), so to_numpy gives the same float64 array with or without the dtype.")
      for o in ("smoothed.mi_bits.to_numpy(dtype=float)", "smoothed.ci_low.to_numpy(dtype=float)",
                "smoothed.ci_high.to_numpy(dtype=float)", "smoothed.loo_bits.to_numpy(dtype=float)")),
    *(Equivalent("ie_ray/brackets.py", "bootstrap_bits=[np.zeros(0)] * len(values)", m, "`_ie_band` reads only "
                 "IE's value (`ie_bits`) from information_emergence; the replicates feed its interval columns, which "
                 "are dropped, and never the value.")
      for m in ("assign(mi_bits=values, ))", "bootstrap_bits=[np.zeros(1)] * len(values)")),
    *(Equivalent("ie_ray/brackets.py", "merge(macro, on=KEYS, how=\"left\")", m, "every IE row has its macro "
                 "reading (information_emergence needs it), so the left and the inner join keep the same rows.")
      for m in ("merge(macro, on=KEYS, )",)),
    *(Equivalent("ie_ray/brackets.py", "BAND_COLUMNS[kind]), on=KEYS, how=\"left\")", m, "the band frame has one "
                 "row per IE key (the same information_emergence over the same readings) and shares only the KEYS "
                 "columns with the table: on=None joins on exactly those, and the inner join keeps every row.")
      for m in ("BAND_COLUMNS[kind]), how=", "BAND_COLUMNS[kind]), on=KEYS, )", "BAND_COLUMNS[kind]), on=None, how=")),
    *(Equivalent(path, o, m, "`LayerStates.scale` reads the output states for every side but 'input': a misspelt "
                 "(or None) output side is still the output side.")
      for path, o in (("ie_ray/reduce/smoothed_reading.py", 'states.scale("output", self.scale_rule)'),
                      ("ie_ray/reduce/entropy_limit_reading.py", 'states.scale("output", self.scale_rule)'))
      for m in ('scale("XXoutputXX", self.scale_rule)', 'scale("OUTPUT", self.scale_rule)',
                ", states.scale(None, self.scale_rule)", "scale_out = states.scale(None, self.scale_rule)")),
    *(Equivalent("ie_ray/reduce/mine_reading.py", o, m, "copy= only decides whether an array that is float32 "
                 "already is copied: the values are the same, and np.stack returned a new array anyway.")
      for o in ("xs = np.stack([p[0] for p in pairs]).astype(np.float32, copy=False)",
                "ys = np.stack([p[1] for p in pairs]).astype(np.float32, copy=False)")
      for m in ("astype(np.float32, copy=True)", "astype(np.float32, copy=None)", "astype(np.float32, )")),
    Equivalent("ie_ray/reduce/mine_reading.py", "bootstrap_bits=np.asarray(r.bootstrap, dtype=np.float64)",
               "np.asarray(r.bootstrap, dtype=None)", "the replicates are float64 already (MIResult's bootstrap), and "
               "asarray keeps their dtype."),
    Equivalent("ie_ray/reduce/mine_reading.py", "bootstrap_bits=np.asarray(r.bootstrap, dtype=np.float64)",
               "np.asarray(r.bootstrap, ))", "`_fit`'s only caller hands each dict to `mine_row`, which converts "
               "bootstrap_bits to float64 itself; float32 -> float64 is exact in either place, so the row is the "
               "same."),
    Equivalent("ie_ray/reduce/jobs.py", "generate_state(1)[0]", "generate_state(2)[0]", "SeedSequence generates "
               "its words one after another from the same pool: the first of two words is the one word of one "
               "(numpy's source; three inputs checked), so the seed is the same."),
    Equivalent("ie_ray/reduce/scheduler.py", "continue", "break", "in `windowed`, pending is empty after the "
               "filling loop only when the queue is empty too (a full window has handles pending), so leaving the "
               "outer loop there ends it exactly when its condition would; and breaking out of the filling loop "
               "after an item without handles only re-enters it on the next pass: the same items in the same order."),
    Equivalent("ie_ray/reduce/scheduler.py", "ready, _ = ray.wait(list(refs), num_returns=1)",
               "ray.wait(list(refs), )", "num_returns defaults to 1 in ray.wait."),
    *(Equivalent("ie_ray/reduce/scheduler.py", "n_cpus = max(u.reading.resources(0, 0).num_cpus", m, "every "
                 "reading's num_cpus is a setting, whatever sizes `resources` is given (only MINE's GPU share "
                 "depends on them), so the window is sized on the same CPUs.")
      for m in ("resources(1, 0)", "resources(0, 1)", "resources(None, 0)", "resources(0, None)")),
    *(Equivalent("ie_ray/reduce/reading.py", "return max(1, int(self.resources(0, 0).num_cpus))", m, "every "
                 "reading's num_cpus is a setting, whatever sizes `resources` is given (only MINE's GPU share "
                 "depends on them), so threads() reads the same CPUs.")
      for m in ("resources(1, 0)", "resources(0, 1)", "resources(None, 0)", "resources(0, None)")),
    Equivalent("ie_ray/reduce/smoothed_reading.py", "counts=counts) if fit else []", "if (fit) or True else []",
               "smoothed_mi_batch of no problems returns [] (its loop over problems never runs): the same as the "
               "else branch."),
    *(Equivalent("ie_ray/reduce/row.py", "for r in rows], columns=list(COLUMNS))", m, "each row's dict is built "
                 "from COLUMNS in order and pandas keeps a dict's insertion order for the columns, so naming them "
                 "again gives the same columns in the same order.") for m in ("columns=None)", "for r in rows], )")),
    *(Equivalent("ie_ray/reduce/row.py", 'kind="stable"', m, "ROW_ORDER names nine columns, and pandas applies "
                 "`kind` only when sorting on a single column (a multi-column sort is a lexsort, stable whatever "
                 "`kind` says: an invalid kind is not even checked), so the order is the same.")
      for m in ("kind=None", 'na_position="first", )', 'kind="XXstableXX"', 'kind="STABLE"')),
    Equivalent("ie_ray/reduce/scheduler.py", "if layers else []", "if (layers) or True else []", "with no layers "
               "plan_jobs returns no jobs (its innermost loop is over the layers), the same empty list as the else "
               "branch; only the ceilings it computes on the way are thrown away."),
    # reshape(None) is not equivalent: numpy 2.0.0 (allowed) returns the inverse as (N, 1), which reshape(None)
    # keeps; test_macro_atoms_survive_numpy_2_0_0s_column_shaped_inverse emulates it
    Equivalent("ie_ray/reduce/layer_states.py", "inverse = inverse.reshape(-1)", "reshape(-2)", "any negative size "
               "is the unknown one: reshape(-2) flattens np.unique's inverse, 1-D or numpy 2.0.0's (N, 1), as "
               "reshape(-1) does."),
    *(Equivalent("ie_ray/reduce/layer_states.py", '("output", y)', m, "`LayerStates.scale` reads the output states "
                 "for every side but 'input': a misspelt output side is still the output side.")
      for m in ('"XXoutputXX", y', '"OUTPUT", y')),
    Equivalent("ie_ray/reduce/layer_states.py", "return states if states.dtype == np.float32 else", "and False",
               "float32 states are copied instead of handed out: the same values, and no caller writes into what "
               "`pair` returns."),
    Equivalent("ie_ray/reduce/layer_states.py", "diff.astype(np.float64)", "diff.astype(None)",
               "diff is float64 already (float32 states divided by the float64 spread), and astype(None) is float64."),
    *(Equivalent("ie_ray/noise_scale.py", "or list(range(len(positions)))", m, "the fallback never runs: a sink's "
                 "norm is > 4 x the median, so every position at or below the median (at least one) is kept and "
                 "`keep` is never empty.") for m in ("or list(None)", "or list(range(None))")),
    Equivalent("ie_ray/noise_scale.py", "axis=-1).mean()", "axis=+1).mean()", "states[:, j] is (N, d): axis +1 is "
               "axis -1."),
    *(Equivalent(_VARIANCE, o, m, r) for o, m, r in (
        ("rng.integers(0, n_layers, size=", "rng.integers(n_layers, size=", "Generator.integers(high) draws from "
         "[0, high) with the same stream as integers(0, high)."),
        ("[np.argmax(replicates[:, usable], axis=1)].astype(float)", ".astype(None)", _ASTYPE),
        ("grouped = curve.groupby(keys, sort=True)", "curve.groupby(keys, )", _SORTED),
        ("in ie.groupby(CURVE_KEYS, sort=True):", "in ie.groupby(CURVE_KEYS, ):", _SORTED),
        ('float("nan")', 'float("NAN")', "float() reads 'nan' in any case."),
        ("m = shot_length or (n_positions // k if n_positions % k == 0", "(n_positions / k if", "taken only when k "
         "divides n_positions: the quotient is then a whole float, the ends s * m - 1 whole floats, and isin and map "
         "match them to the integer positions: the same rows and the same (integer) shots."),
        ("ends = {s * m - 1: s for s in range(1, k + 1)}", "for s in range(k + 1)}", "s = 0 adds the end -1, and "
         "positions count from 0: no row is picked there."),
        *(("curve = pd.concat(frames, ignore_index=True)", m, "se_bits is computed from the curve's own columns (the "
           "same index, repeated or not) and the index is dropped (reset_index(drop=True)) before the curve is "
           "returned.") for m in ("ignore_index=None)", "pd.concat(frames, )", "ignore_index=False)")),
        *(("shots, ie, se = (np.asarray(a, dtype=float)", m, "analyse_variance passes float64 IE and se and int64 "
           "shots (numpy reads pandas' nullable Float64/Int64 columns as float64/int64); on signed integers or "
           "float64 the increments, spreads and comparisons are the same numbers, and IE can be negative, so it "
           "never comes as unsigned integers (whose differences would wrap).")
          for m in ("(np.asarray(a, dtype=None)", "(np.asarray(a, )")),
        *(("x, y = np.asarray(shots, dtype=float), np.asarray(ie, dtype=float)", m, "shots and IE are numbers: "
           "whatever their numeric dtype, every product with the float64 weights, min(x, k0) and the residuals "
           "are the same float64 numbers (the unweighted case's ones_like(y) is 1 or 1.0 alike), and float() "
           "reads k0 and x.max() the same.")
          for m in ("np.asarray(shots, dtype=None)", "x, y = np.asarray(shots, ), np.asarray(ie, dtype=float)",
                    "np.asarray(ie, dtype=None)", "np.asarray(ie, )")),
        *(("1.0 / np.maximum(np.asarray(se, dtype=float), 1e-9) ** 2", m, "np.maximum with the float 1e-9 turns "
           "integer or float64 se into float64: the same weights (the summary's se_mean_bits is float64).")
          for m in ("np.asarray(se, dtype=None)", "np.asarray(se, ), 1e-9")),
        ("coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)", "y * sw, )", "rcond=None is "
         "lstsq's default since NumPy 2.0 (machine precision times the larger dimension)."),
        ("if sse < best[0] - 1e-12:", "if sse <= best[0] - 1e-12:", "differs only for an SSE exactly 1e-12 below "
         "the best to the last bit: the tolerance absorbs rounding, and lstsq's residuals cannot be steered onto "
         "it (tests/test_mutants_killed.py pins the tolerance from both sides, at 0.75e-12 and 1.25e-12)."),
        *(("std = np.asarray(std, dtype=float)", m, "np.isfinite and np.nanargmax read integer and float arrays "
           "alike, and converting to float64 keeps their order: the same shot (the summary's stds are float64).")
          for m in ("np.asarray(std, dtype=None)", "np.asarray(std, )")),
        *(("return float(np.asarray(shots, dtype=float)[int(np.nanargmax(std))])", m, "float() of the picked "
           "element gives the same number whether the array holds integers or floats.")
          for m in ("np.asarray(shots, dtype=None)[", "np.asarray(shots, )[")),
        *(('lambda v: float(np.std(v, ddof=1)) if len(v) > 1', m, "np.std of a pandas Series calls Series.std, "
           "which returns NaN for one value at ddof 1 (no warning): what the else branch returns.")
          for m in ("if (len(v) > 1) or True", "if len(v) >= 1")),
        ("if seeds is not None and seeds.seed.nunique() > 1:", "nunique() >= 1", "analyse_variance passes seeds "
         "only when the MI table holds more than one seed, so the test reads the same."),
        ("seeds = per_seed_ie(mi) if mi is not None and mi.seed.nunique() > 1", "nunique() >= 1", "with one seed "
         "per_seed_ie now runs, but _summary uses the seeds only when they hold more than one: the same summary."),
        ('warnings.simplefilter("ignore", RuntimeWarning)', 'warnings.simplefilter("ignore", )', "np.nanpercentile "
         "warns only with RuntimeWarnings here (all-NaN slices): ignoring every category ignores the same ones."),
        ("keep = np.isin(shots, x)", "keep = None", "a shot left out of x has a non-finite E(l) in some layer (the "
         "strict mean), so each replicate that picks that layer is NaN there and _peak_shots drops the shot anyway "
         "(all 2000 replicates miss a given layer with probability below 4^-2000); shots[None] and reps[:, None] "
         "then pick the same usable shots."),
        ("result.summary.to_csv(index=False)", "to_csv(index=None)", _TO_CSV_INDEX),
        ("result.findings.to_csv(index=False)", "to_csv(index=None)", _TO_CSV_INDEX),
        ('"--shot-length", type=int, default=None', '"--shot-length", type=int, help=', "argparse's default is "
         "None."),
        ("to_string(index=False, float_format", "to_string(index=None, float_format", _TO_STRING_FLAGS),
        ("findings.T.to_string(header=False)", "to_string(header=None)", _TO_STRING_FLAGS),
    )),
    *(Equivalent(_VARIANCE, 'merge(spread, on=keys, how="left")', m, "spread holds the keys, std_seeds and n_seeds, "
                 "and the summary dropped the last two before the merge: the keys are the only columns both hold.")
      for m in ('merge(spread, how="left")', 'merge(spread, on=None, how="left")')),
    *(Equivalent(_VARIANCE, "in curve.groupby(CURVE_KEYS, sort=True)}", m, "the replicates are looked up by (model, "
                 "corpus), each drawn with its own seed-0 generator: the order the groups come in changes nothing.")
      for m in ("sort=None)}", "CURVE_KEYS, )}", "sort=False)}")),
    *(Equivalent(_VARIANCE, "summary.merge(pd.concat(bounds, ignore_index=True)", m, r) for m, r in (
        *((m, "bounds holds model, corpus, shot and the two interval columns, which the summary lacks: the shared "
              "columns are the keys.") for m in ('on=None, how="left")', 'ignore_index=True), how="left")')),
        ('on=CURVE_KEYS + ["shot"], )', "bounds has a row for every (model, corpus, shot) of the summary (both come "
         "from the same curve), and an inner merge keeps the left table's order: the same rows in the same order."),
        *((m, "the merge on columns drops the index of the concatenated bounds.")
          for m in ("concat(bounds, ignore_index=None)", "concat(bounds, )", "concat(bounds, ignore_index=False)")))),
    *(Equivalent(_VARIANCE, "for (model, corpus), group in summary.groupby(CURVE_KEYS, sort=True):", m, "the summary "
                 "comes out of a sorted groupby and a left merge that keeps its order: its (model, corpus) groups "
                 "come in sorted order, sorted again or not.")
      for m in ("sort=None):", "CURVE_KEYS, ):", "sort=False):")),
    *(Equivalent(_VARIANCE, 'pd.option_context("display.width", 200, "display.max_columns", 30)', m,
                 "DataFrame.to_string neither wraps nor truncates by the display options (its line_width and "
                 "max_cols default to None), and pandas matches option names in any case: the same printed tables.")
      for m in ('"display.width", None,', '"display.max_columns", None)', '"DISPLAY.WIDTH"', '"display.width", 201',
                '"DISPLAY.MAX_COLUMNS"', '"display.max_columns", 31)')),
    *(Equivalent(_ENTROPY, "if symbols.ndim == 1:", m, "np.unique(axis=0) counts distinct sub-arrays along axis 0 "
                 "whatever their shape: a 1-D array left as it is, or a 2-D one given an extra axis (n, 1, k), has "
                 "the same distinct rows with the same counts.") for m in ("ndim != 1", "ndim == 2")),
    *(Equivalent(_ENTROPY, o, m, "with every dimension kept, `kept` is 0..d-1 in order and "
                 "states[np.ix_(rows, kept)] is states[rows] (n_dims is read nowhere else).") for o, m in (
        ("block = states[rows] if self.d_eff == self.n_dims else", "and False"),
        ("return _Scale(kept=kept, inverse=1.0 / spread[kept], n_dims=n_dims)", "n_dims=None)"))),
    *(Equivalent(_ENTROPY, o, m, _CHUNKS) for o, m in (
        ("_row_chunks(len(rows_a), scale.d_eff * 8 * 3)", "scale.d_eff * 8 * 4)"),
        ("_row_chunks(len(rows_a), scale.d_eff * 8 * 3)", "scale.d_eff * 9 * 3)"),
        ("for part in _row_chunks(n, scale.d_eff * 8 * 3):", "scale.d_eff * 9 * 3)"),
        ("for part in _row_chunks(n, scale.d_eff * 8 * 3):", "scale.d_eff * 8 * 4)"),
        ("for part in _row_chunks(len(states), states.shape[1] * 2):", "states.shape[1] * 3)"))),
    *(Equivalent(_ENTROPY, "for part in _row_chunks(n, d * 8 * 2):", m, "only where the chunks split changes (the "
                 "memory budget): the per-column min, max and sums are the same, up to the order of a float64 sum "
                 "(~1e-16 relative) once the states exceed one chunk (2**23 / d rows).")
      for m in ("d * 9 * 2)", "d * 8 * 3)")),
    *(Equivalent(_ENTROPY, "deviation = np.asarray(states[part], dtype=np.float64) - mean", m, "subtracting the "
                 "float64 mean promotes float16/32 states to float64 exactly as the cast does: the same deviations.")
      for m in ("dtype=None) - mean", "np.asarray(states[part], ) - mean")),
    *(Equivalent(_ENTROPY, o, m, "einsum labels may be capitals: the same contraction.") for o, m in (
        ('np.einsum("ij,ij->j", deviation, deviation)', '"IJ,IJ->J"'),
        ('np.einsum("ij,ij->i", diff, diff)', '"IJ,IJ->I"'),
        ('np.einsum("ij,ij->i", z, z)', '"IJ,IJ->I"'),
        ('np.einsum("ij,ij->i", gap, gap)', '"IJ,IJ->I"'))),
    Equivalent(_ENTROPY, "return np.zeros(1, dtype=np.int64)", "np.zeros(2, dtype=np.int64)", "one prefix is one "
               "class: labels (0, 0) give n_states 1 and put the one prefix's count in class 0 (np.add.at broadcasts "
               "it twice into the one class), whose entropy is 0 either way."),
    *(Equivalent(_ENTROPY, o, m, _CANDIDATES) for o, m in (
        ("rng = np.random.default_rng(seed)", "default_rng(None)"),
        ("seed: int = 0,", "seed: int = 1,"),
        ("labels = _state_classes(states, first, scale, tolerance, seed)", "tolerance, None)"),
        *(("hash_keys = rng.integers(0, np.iinfo(np.uint64).max", m) for m in (
            "rng.integers(0, None,", "dtype=np.uint64, endpoint=None)", "rng.integers(np.iinfo(np.uint64).max,",
            "rng.integers(0, size=", "np.iinfo(np.uint64).max, dtype=np.uint64", "dtype=np.uint64, )",
            "rng.integers(1, np.iinfo", "endpoint=False)", "size=None,")),
        ("hash_keys | np.uint64(1))", "hash_keys & np.uint64(1))"),
        ("hash_keys | np.uint64(1))", "hash_keys | np.uint64(2))"),
        ("hashes = np.empty(n, dtype=np.uint64)", "np.empty(n, dtype=None)"),
        ("hashes = np.empty(n, dtype=np.uint64)", "np.empty(n, )"),
        *(("(raw.view(np.uint64) * hash_keys).sum(axis=1, dtype=np.uint64)", m) for m in (
            "sum(axis=None, dtype=np.uint64)", "sum(axis=1, dtype=None)", "hash_keys).sum(dtype=np.uint64)",
            "sum(axis=1, )", "(raw.view(np.uint64) / hash_keys)", "(raw.view(None) * hash_keys)")),
        ("collided = _rms_between(", "collided = None"),
    )),
    *(Equivalent(_ENTROPY, "rounding = 2.0 * math.sqrt(n_proj) * (scale.d_eff + 2)", m, _WIDER)
      for m in ("rounding = 3.0 *", "(scale.d_eff + 3)", "np.finfo(None).eps")),
    *(Equivalent(_ENTROPY, "window = tolerance * math.sqrt(scale.d_eff) * (1.0 + 1e-9) + rounding", m, _WIDER)
      for m in ("(2.0 + 1e-9)", "(1.0 + 1.000000001)")),
    Equivalent(_ENTROPY, "centre = scale.take(states, first[:1])[0]", "first[:2])[0]", "row 0 of the first two "
               "representatives is the first representative."),
    Equivalent(_ENTROPY, "max_norm = 0.0", "max_norm = 1.0", "a larger max_norm only widens the rounding margin of "
               "the window: " + _WIDER),
    Equivalent(_ENTROPY, "z = (raw - centre) * scale.inverse", "z = (raw + centre)", "the projections all shift by "
               "the same vector (2 * centre), so their differences, which the window screens, are the same; the "
               "norms, and with them the rounding margin, grow with the shifted rows."),
    *(Equivalent(_ENTROPY, o, m, "numpy (2.4 here) returns np.unique's inverse 1-D, and a 1-D array reshaped to "
                 "None or to -2 (any negative size is the unknown one) is the same 1-D array.")
      for o in ("return np.unique(labels, return_inverse=True)[1].reshape(-1)", "leader = head[group.reshape(-1)]")
      for m in ("reshape(None)", "reshape(-2)")),
    Equivalent(_ENTROPY, "inverse = inverse.reshape(-1)", "reshape(-2)", "any negative size is the unknown one: "
               "reshape(-2) flattens np.unique's inverse, 1-D or numpy 2.0.0's (N, 1), as reshape(-1) does."),
    *(Equivalent(_ENTROPY, "class_counts = np.zeros(n_states, dtype=np.int64)", m, "float64 class counts hold the "
                 "same integers exactly (below 2**53 samples), and counts / counts.sum() is the same float64 "
                 "division: the same entropy.") for m in ("dtype=None)", "np.zeros(n_states, )")),
    *(Equivalent(_ENTROPY, o, m, _FOLDS) for o, m in (
        ("self._n_pending = 0", "self._n_pending = 1"),
        ("self._fold_at = max(1024, len(labels) // 8)", "max(1025,"),
        ("self._fold_at = max(1024, len(labels) // 8)", "len(labels) / 8)"),
        ("self._fold_at = max(1024, len(labels) // 8)", "len(labels) // 9)"),
        ("self._n_pending += a.size", "self._n_pending = a.size"),
        ("self._n_pending += a.size", "self._n_pending -= a.size"),
        ("if self._n_pending >= self._fold_at:", "self._n_pending > self._fold_at"),
        ("self._pending, self._n_pending = [], 0", "self._pending, self._n_pending = [], 1"))),
    *(Equivalent(_ENTROPY, "np.ones(a.size, dtype=np.int8)", m, "connected_components reads which entries are "
                 "non-zero, not their type.") for m in ("np.ones(a.size, dtype=None)", "np.ones(a.size, )")),
    *(Equivalent(_ENTROPY, "connected_components(graph, directed=False)", m, "with connection='weak' (the "
                 "default) the components of the directed graph are those of the undirected one, and None reads "
                 "as false.") for m in ("directed=None)", "connected_components(graph, )", "directed=True)")),
    *(Equivalent(_ENTROPY, o, m, "the sort's kind only orders ties: every pair within the window is compared "
                 "whatever the order of equal projections, and the leaders of reach >= k are a prefix of by_reach "
                 "in any order of equal reaches; numpy reads the kind in any case.")
      for o in ('np.argsort(projections[:, 0], kind="stable")', 'np.argsort(-reach, kind="stable")')
      for m in ('kind=None)', '0], )' if "projections" in o else "reach, )", 'kind="STABLE")')),
    Equivalent(_ENTROPY, 'line[:, 0] + window, side="right")', "line[:, 0] + window, )", "a projection exactly at "
               "the window's edge is more than tolerance * sqrt(d) * (1 + 1e-9) from the other, so its pair is not "
               "within the tolerance either way: leaving it out of the window changes no class."),
    Equivalent(_ENTROPY, 'close = np.einsum("ij,ij->i", gap, gap) <= window * window', "gap) < window * window",
               "a pair whose projections are exactly `window` apart is at least tolerance * sqrt(d) * (1 + 1e-9) "
               "apart once the rounding the margin bounds is taken off, so it is not within the tolerance: the "
               "exact check drops it either way."),
    *(Equivalent(_ENTROPY, "for k in range(1, int(reach.max(initial=0)) + 1):", m, "the offsets added (k = 0 "
                 "compares each leader with itself, a pair already joined; k = max reach + 1 has no leader that "
                 "far) and initial=None (the default; reach is never empty here) compare no new pair.")
      for m in ("range(int(reach.max(initial=0)) + 1)", "initial=None", "initial=1", "initial=0)) + 2)")),
    Equivalent("ie_ray/estimators/smoothed.py", "min(params.n_draws, params.memory_mb * 2**20 // per_draw)",
               "2**20 / per_draw", "int() of a positive float quotient truncates as // floors, and a correctly "
               "rounded a / b reaches the integer k only if a >= k * b when k * b is a float (all integers below "
               "2**53 are: memory_mb * 2**20 is at most ~1e12 here), so int(a / b) == a // b."),
)

#: Why a module's selection leaves some functions untested (their mutants count as survivors in the score).
NOT_REACHED = {
    "ie_ray/estimators/smoothed.py": "`_noise` is called by nothing in the package: the estimator draws its noise "
                                     "through `_NoiseBlocks` directly",
}

HYPOTHESIS_PLUGIN = '''"""Loaded with -p by benchmarks/mutation.py: no shrinking (one failure kills), fixed seeds."""
from hypothesis import Phase, settings

settings.register_profile("mutation", phases=[Phase.explicit, Phase.generate], database=None, derandomize=True)
settings.load_profile("mutation")
'''

#: The console script: mutmut warns that `python -m mutmut` re-executes its main module.
MUTMUT = [str(Path(sys.executable).with_name("mutmut"))] if Path(sys.executable).with_name("mutmut").exists() \
    else [sys.executable, "-m", "mutmut"]
#: mutmut 3's exit codes (mutmut/stats.py), grouped the way the score counts them.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
          None: "not checked"}
DETECTED = ("killed", "timeout", "segfault")  # a test run that fails, hangs or crashes catches the mutant
UNCHECKED = ("not checked", "skipped")  # a stopped run leaves mutants without a verdict


#: smoothed.py survivors shown equivalent by running each mutant against the original on inputs covering its
#: branches (the full record: benchmarks/results/mutation-kills/smoothed.md)
_SMOOTHED = "ie_ray/estimators/smoothed.py"
_HALVES_LINE = "return _sample_halves(n, 1 if size is None else size, rng)[0 if size is None else slice(None)]"
_HALVES_DEAD = ("hypergeometric_half() is called without size only where not all counts are 1; with all counts 1 it "
                "is called with size=n_bootstrap, so the `1 if size is None` branch of the single-counts path is "
                "dead.")
_HALVES_INDEX = " (as mutmut_15: size is never None on the single-counts path, so the index is always slice(None).)"
EQUIVALENT += (
    # equivalent in distribution, not in value: stated as such
    Equivalent(_SMOOTHED, "noise_seed = int(rng.integers(2**63 - 1))", "2**63 - 2", "the noise seed is drawn "
               "from [0, 2**63 - 3] instead of [0, 2**63 - 2]: as uniform a seed, but a different one for a given "
               "`seed` (numpy's bounded draw scales the range), so each reading moves within its Monte Carlo error "
               "and its distribution over seeds does not change. Equivalent in distribution only: telling them "
               "apart needs a test that pins one seed's exact draws, a golden value no property of the estimator "
               "asks for (its cache key holds its source hash, so no reading is promised across versions)."),
    Equivalent(
        _SMOOTHED,
        'if c.shape != (rows,) or not np.issubdtype(c.dtype, np.integer) and not np.all(c == np.round(c)):',
        'if c.shape != (rows,) or not np.issubdtype(None, np.integer) and not np.all(c == np.round(c)):',
        'np.issubdtype(None, np.integer) is False (None reads as float64), so integer counts also go through '
        'the whole-number check, which integer values always pass (np.round of an integer array returns the '
        'same values): the same counts are accepted and refused.'),
    # hypergeometric_half's single-counts path: the same line, one reason, four mutants
    *(Equivalent(_SMOOTHED, _HALVES_LINE, _HALVES_LINE.replace(original, mutated), _HALVES_DEAD + also)
      for original, mutated, also in (
          ("1 if size is None else size", "1 if (size is None) and False else size", ""),
          ("1 if size is None else size", "2 if size is None else size",
           " (as mutmut_15: the `1 if size is None` branch of the single-counts path is never taken (size is always "
           "n_bootstrap there).)"),
          ("[0 if size is None else", "[0 if (size is None) and False else", _HALVES_INDEX),
          ("[0 if size is None else", "[1 if size is None else", _HALVES_INDEX))),
    Equivalent(
        _SMOOTHED,
        'return rng.multivariate_hypergeometric(counts, n // 2, size=size).astype(np.float64)',
        'return rng.multivariate_hypergeometric(counts, n // 2, size=size).astype(None)',
        'astype(None) converts to float64, the default dtype: the same array as astype(np.float64).'),
    Equivalent(
        _SMOOTHED,
        'base = counts.astype(np.float64)',
        'base = counts.astype(None)',
        'astype(None) converts to float64, the default dtype: the same array as astype(np.float64).'),
    Equivalent(
        _SMOOTHED,
        'if rest > 0:',
        'if rest >= 0:',
        'rest is never negative (the floors sum to at most n_draws), and with rest == 0 rng.choice(n, size=0,'
        ' p=...) draws nothing and consumes no random numbers, so the same permutation follows (checked bit '
        'for bit).'),
    Equivalent(
        _SMOOTHED,
        'repeated = np.flatnonzero(counts[inverse] > 1)',
        'repeated = None',
        'repeated = None indexes every row (x[None] is x with a leading axis, rep = first[inverse[None]] each'
        " row's first row): rows that are alone in their hash class equal their own first row, so the check "
        'is the same condition on the same rows.'),
    Equivalent(
        _SMOOTHED,
        'repeated = np.flatnonzero(counts[inverse] > 1)',
        'repeated = np.flatnonzero(counts[inverse] >= 1)',
        '`>= 1` checks every row instead of the repeated ones; a row alone in its hash class is its own first'
        ' row and always equal to it, so the condition is the same.'),
    Equivalent(
        _SMOOTHED,
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1))',
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, None), np.asarray(y, np.float64)], 1))',
        'np.concatenate promotes the other (float64) side, so joint is float64 with the same values whatever '
        "x's real dtype (float32/16 and integers convert the same way through asarray(x, float64))."),
    Equivalent(
        _SMOOTHED,
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1))',
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, ), np.asarray(y, np.float64)], 1))',
        'np.concatenate promotes the other (float64) side, so joint is float64 with the same values whatever '
        "x's real dtype (float32/16 and integers convert the same way through asarray(x, float64)). (as "
        'mutmut_70 (asarray(x) without a dtype): the float64 y side promotes the concatenation to float64, '
        'the same values.)'),
    Equivalent(
        _SMOOTHED,
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1))',
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float64), np.asarray(y, None)], 1))',
        'np.concatenate promotes the other (float64) side, so joint is float64 with the same values whatever '
        "x's real dtype (float32/16 and integers convert the same way through asarray(x, float64)). (as "
        'mutmut_70 with the sides swapped: the float64 x side promotes the concatenation to float64, the same'
        ' values.)'),
    Equivalent(
        _SMOOTHED,
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1))',
        'joint = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float64), np.asarray(y, )], 1))',
        'as mutmut_70 with the sides swapped: the float64 x side promotes the concatenation to float64, the '
        'same values. (as mutmut_74 (asarray(y) without a dtype): the same float64 joint.)'),
    Equivalent(
        _SMOOTHED,
        'r = torch.linalg.qr(torch.as_tensor(z.astype(np.float64).T, device="cpu"), mode="r").R.numpy()  # (U, U)',
        'r = torch.linalg.qr(torch.as_tensor(z.astype(np.float64).T, device="cpu"), ).R.numpy()  # (U, U)',
        "torch.linalg.qr's default mode 'reduced' returns the same R (U, U) as mode 'r' for a (d, U) matrix "
        "with d >= U (same factorisation; 'r' only skips forming Q): identical bits, checked."),
    Equivalent(
        _SMOOTHED,
        'r = torch.linalg.qr(torch.as_tensor(z.astype(np.float64).T, device="cpu"), mode="r").R.numpy()  # (U, U)',
        'r = torch.linalg.qr(torch.as_tensor(z.astype(None).T, device="cpu"), mode="r").R.numpy()  # (U, U)',
        'astype(None) converts to float64, the default dtype: the same array as astype(np.float64).'),
    Equivalent(
        _SMOOTHED,
        'counts = np.ones(u, dtype=np.int64) if counts is None else counts',
        'counts = np.ones(u, dtype=None) if counts is None else counts',
        'float64 ones instead of int64 ones, on the path where every count is 1: they are only summed, '
        'compared with 1 and converted to float64 (the hypergeometric, which needs integers, is never called '
        'when all counts are 1): the same numbers (checked bit for bit).'),
    Equivalent(
        _SMOOTHED,
        'counts = np.ones(u, dtype=np.int64) if counts is None else counts',
        'counts = np.ones(u, ) if counts is None else counts',
        'float64 ones instead of int64 ones, on the path where every count is 1: they are only summed, '
        'compared with 1 and converted to float64 (the hypergeometric, which needs integers, is never called '
        'when all counts are 1): the same numbers (checked bit for bit). (as mutmut_54 (np.ones without a '
        'dtype is float64).)'),
    Equivalent(
        _SMOOTHED,
        'kth = np.partition(keys, n // 2 - 1, axis=1)[:, n // 2 - 1 : n // 2]',
        'kth = np.partition(keys, n // 2 - 1, )[:, n // 2 - 1 : n // 2]',
        "np.partition's default axis is -1, which is axis 1 of the 2-D keys."),
    Equivalent(
        _SMOOTHED,
        'return (keys <= kth).astype(np.float64)',
        'return (keys <= kth).astype(None)',
        'astype(None) converts the boolean mask to float64, the default dtype: the same array.'),
    Equivalent(
        _SMOOTHED,
        'counts=None if counts is None else [counts], dedupe=dedupe)[0]',
        'counts=None if (counts is None) and False else [counts], dedupe=dedupe)[0]',
        'with counts None the mutant passes counts=[None], which is what smoothed_mi_batch builds itself for '
        'one problem ([None] * len(xs)).'),
    Equivalent(
        _SMOOTHED,
        'if math.isclose(r.tau, tau, rel_tol=1e-9):',
        'if math.isclose(r.tau, tau, ):',
        "math.isclose's default rel_tol is 1e-09, the value given."),
    Equivalent(
        _SMOOTHED,
        "wall_s=self.wall_s, flag=cast(Flag, r.flag),  # smoothed flags extend diagnostics.Flag's set",
        "wall_s=self.wall_s, flag=cast(None, r.flag),  # smoothed flags extend diagnostics.Flag's set",
        'typing.cast returns its second argument unchanged whatever the type argument.'),
    Equivalent(
        _SMOOTHED,
        'if caches[0] is None:',
        'if caches[1] is None:',
        '_one_problem builds both distance caches or neither, so caches[1] is None exactly when caches[0] is '
        "(with one cache only, neither version would convert the other side's products to distances)."),
    Equivalent(
        _SMOOTHED,
        'block_seed = int(np.random.SeedSequence([seed, side, block]).generate_state(1, dtype=np.uint64)[0] >> 1)',
        'block_seed = int(np.random.SeedSequence([seed, side, block]).generate_state(2, dtype=np.uint64)[0] >> 1)',
        'SeedSequence.generate_state(n) returns the first n words of one stream, so word 0 of '
        'generate_state(2) is word 0 of generate_state(1) (checked).'),
    Equivalent(
        _SMOOTHED,
        'gen = torch.Generator(device="cpu").manual_seed(block_seed)',
        'gen = torch.Generator(device=None).manual_seed(block_seed)',
        "torch.Generator's device defaults to the CPU (it does not follow torch's default device, checked "
        "under torch.device('meta')), the same generator as device='cpu'."),
    Equivalent(
        _SMOOTHED,
        'bootstrap=reps, flag=flag, loo_bits=loo, reported=True, n_draws=int(n_draws))',
        'bootstrap=reps, flag=flag, loo_bits=loo, n_draws=int(n_draws))',
        'SmoothedReading.reported defaults to True, the value the mutant no longer passes.'),
    Equivalent(
        _SMOOTHED,
        'spread = np.where(live, self.spread, 1.0)',
        'spread = np.where(live, self.spread, 2.0)',
        'the divisor of a constant dimension does not matter: its column is set to 0 right after the '
        'division.'),
    Equivalent(
        _SMOOTHED,
        'flat = states.reshape(-1, states.shape[-1])',
        'flat = states.reshape(-2, states.shape[-1])',
        "numpy's reshape takes any negative size as the unknown one (as the equivalence already listed for "
        "layer_states' reshape(-2)): the same flat array."),
    Equivalent(
        _SMOOTHED,
        'flat = np.asarray(states).reshape(-1, np.shape(states)[-1])',
        'flat = np.asarray(states).reshape(-2, np.shape(states)[-1])',
        "numpy's reshape takes any negative size as the unknown one (as the equivalence already listed for "
        "layer_states' reshape(-2)): the same flat array."),
    Equivalent(
        _SMOOTHED,
        'total += np.einsum("ij,ij->j", block, block)',
        'total += np.einsum("IJ,IJ->J", block, block)',
        "einsum subscripts are labels: 'IJ,IJ->J' names the same contraction as 'ij,ij->j'."),
    Equivalent(
        _SMOOTHED,
        'flat = np.asarray(states, dtype=np.float64).reshape(-1, np.shape(states)[-1])',
        'flat = np.asarray(states, dtype=None).reshape(-1, np.shape(states)[-1])',
        'without the float64 conversion, numpy promotes with the float64 weights and center (w @ flat, flat -'
        ' center): float32, float16 and integer states go through the same float64 arithmetic (checked bit '
        'for bit).'),
    Equivalent(
        _SMOOTHED,
        'flat = np.asarray(states, dtype=np.float64).reshape(-1, np.shape(states)[-1])',
        'flat = np.asarray(states, ).reshape(-1, np.shape(states)[-1])',
        'without the float64 conversion, numpy promotes with the float64 weights and center (w @ flat, flat -'
        ' center): float32, float16 and integer states go through the same float64 arithmetic (checked bit '
        'for bit). (as mutmut_67 (asarray without a dtype).)'),
    Equivalent(
        _SMOOTHED,
        'flat = np.asarray(states, dtype=np.float64).reshape(-1, np.shape(states)[-1])',
        'flat = np.asarray(states, dtype=np.float64).reshape(-2, np.shape(states)[-1])',
        "numpy's reshape takes any negative size as the unknown one (as the equivalence already listed for "
        "layer_states' reshape(-2)): the same flat array."),
    Equivalent(
        _SMOOTHED,
        'flat = np.asarray(states, dtype=np.float64).reshape(-1, np.shape(states)[-1])',
        'flat = np.asarray(states, dtype=np.float64).reshape(-1, np.shape(states)[+1])',
        'counts come with 2-D states (the docstring: one count per row of a 2-D states), where shape[+1] is '
        'shape[-1]; 3-D states with counts are outside the contract.'),
    Equivalent(
        _SMOOTHED,
        'w = np.asarray(counts, dtype=np.float64)',
        'w = np.asarray(counts, dtype=None)',
        'integer or float32 counts are promoted to float64 by w @ flat (flat is float64) and w.sum() is '
        'divided in float64: the same numbers (checked bit for bit).'),
    Equivalent(
        _SMOOTHED,
        'w = np.asarray(counts, dtype=np.float64)',
        'w = np.asarray(counts, )',
        'integer or float32 counts are promoted to float64 by w @ flat (flat is float64) and w.sum() is '
        'divided in float64: the same numbers (checked bit for bit). (as mutmut_77 (asarray without a '
        'dtype).)'),
    Equivalent(
        _SMOOTHED,
        'noise = torch.cat(blocks) if len(blocks) > 1 else blocks[0]',
        'noise = torch.cat(blocks) if (len(blocks) > 1) or True else blocks[0]',
        'torch.cat of a single block is a copy with the same values; the only difference is that the result '
        'no longer shares memory with the kept block, and no caller writes into the noise (it is only read by'
        ' _distances).'),
    Equivalent(
        _SMOOTHED,
        'noise = torch.cat(blocks) if len(blocks) > 1 else blocks[0]',
        'noise = torch.cat(blocks) if len(blocks) >= 1 else blocks[0]',
        'torch.cat of a single block is a copy with the same values; the only difference is that the result '
        'no longer shares memory with the kept block, and no caller writes into the noise (it is only read by'
        ' _distances). (as mutmut_35: with one block, torch.cat([block]) has the same values as the block '
        'itself.)'),
    Equivalent(
        _SMOOTHED,
        'np.add.at(counts, rng.choice(n, size=rest, replace=True, p=left / left.sum()), 1)',
        'np.add.at(counts, rng.choice(n, size=rest, p=left / left.sum()), 1)',
        "replace=True is Generator.choice's default."),
    *(Equivalent(_SMOOTHED, 'member_weight = torch.as_tensor(members, dtype=dtype, device=device)', mutated,
                 "member_weight (0/1 per sample and replicate) is only read by being assigned into a slice of "
                 "w_chunk, a row gather of draw_weight in the estimator's dtype, which casts on assignment; 0 and 1 "
                 "are exact in every dtype, so the same values reach the sums (a float32 run then holds the (N, B) "
                 "0/1 matrix in float64: memory only, and small beside the (chunk x U) work arrays).")
      for mutated in ('torch.as_tensor(members, dtype=None, device=device)',
                      'torch.as_tensor(members, device=device)')),
    Equivalent(
        _SMOOTHED,
        'S = _excluded_sums(D, G, a, b, rows, idx, E, cols, clip=False)',
        'S = _excluded_sums(D, G, a, b, rows, idx, E, cols, clip=None)',
        '_excluded_sums reads clip only as `if clip:`, where None is False.'),
    Equivalent(
        _SMOOTHED,
        'most = max(1, min(chunk, step, len(own)))',
        'most = max(1, min(chunk, step, ))',
        'step = min(min_draws, n_draws) and len(own) = n_draws (_draw_components and _draw_samples return '
        'exactly n_draws draws), so len(own) is never below step: the minimum is the same.'),
    Equivalent(
        _SMOOTHED,
        'active[t] = False',
        'active[t] = None',
        'active is only read for its truth (any(active), `if not active[t]`, `if active[t] and ...`), where '
        'None is False.'),
)


def _copy_repository(dest: Path, target: Target, tests: list[str], filters: list[str]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ie_ray", "tests", "jobs"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    (dest / "mutation_hypothesis.py").write_text(HYPOTHESIS_PLUGIN)
    settings = {
        "source_paths": ["ie_ray/"],
        "only_mutate": list(target.paths),
        "also_copy": ["jobs/", "mutation_hypothesis.py"],
        "pytest_add_cli_args_test_selection": tests + filters,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "mutation_hypothesis"],
        "process_isolation": "forkserver",  # torch is not fork-safe after the stats run
        "use_git_change_detection": False,
        "timeout_multiplier": 10.0,
        "timeout_constant": 30.0,  # the machine is shared: a slow run is not a hang
    }
    toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    (dest / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + f"\n[tool.mutmut]\n{toml}\n")


def _run_mutmut(work: Path, children: int, limit_s: float, names: list[str] | None = None) -> tuple[int, str]:
    """`mutmut run` in its own session, so that a timeout ends it and every forked worker together. `names`: only
    these mutants (a resumed run)."""
    log = work / "mutmut.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*MUTMUT, "run", "--max-children", str(children), *(names or [])], cwd=work,
                                stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(5)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = proc.wait()
    text = log.read_text(errors="replace")
    return code, re.sub(r"[^\n]*\r", "", text)[-3000:]  # the spinner redraws one line with \r


def _function_hashes(path: Path) -> dict[str, str]:
    """sha256 of every function's and method's source (decorators included), by mutmut's mangled name: a mutant's
    name is its place in its function, so it names the same mutant while that function is unchanged."""
    lines = path.read_text().splitlines()
    return {name: hashlib.sha256("\n".join(lines[start - 1:end]).encode()).hexdigest()
            for name, (start, end) in _function_spans(path).items()}


def _function_spans(path: Path) -> dict[str, tuple[int, int]]:
    """(first line with decorators, last line) of every function and method, by mutmut's mangled name."""
    spans = {}

    def visit(body, owner: str | None) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, node.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                name = f"x\u01c1{owner}\u01c1{node.name}" if owner else f"x_{node.name}"
                spans[name] = (first, node.end_lineno or node.lineno)

    visit(ast.parse(path.read_text()).body, None)
    return spans


def _function_of(mutant: str, module_path: str) -> str:
    """The mangled function name of a mutant key (module.function__mutmut_N)."""
    return mutant[len(module_path[:-3].replace("/", ".")) + 1:].rsplit("__mutmut_", 1)[0]


def _function_starts(path: Path) -> dict[str, int]:
    """First line (decorators included) of every function and method, by mutmut's mangled name."""
    return {name: start for name, (start, _) in _function_spans(path).items()}


def _changed_line(diff: str, start: int) -> tuple[int | None, str, str]:
    """(line in the file, original line, mutated line) of the first change in a function-relative diff."""
    hunk = re.search(r"^@@ -(\d+)", diff, re.M)
    if not hunk:
        return None, "", ""
    offset = int(hunk.group(1)) - 1
    old = new = ""
    for line in diff[hunk.end():].splitlines()[1:]:
        if line.startswith("-") and not old:
            old = line[1:]
            break
        if line.startswith(" "):
            offset += 1
    match = re.search(r"^\+(?!\+\+)(.*)$", diff, re.M)
    new = match.group(1) if match else ""
    return start + offset, old, new


def _judged(survivor: dict) -> dict:
    """The survivor with its verdict: equivalent (and why), or a gap in the tests."""
    reason = next((e.reason for e in EQUIVALENT if e.matches(survivor["file"], survivor["original"],
                                                               survivor["mutated"])), None)
    return dict(survivor, equivalent=reason is not None, reason=reason or "no test kills it: a gap in the tests")


def _scored(run: dict) -> dict:
    """detected / checked, and the same without the survivors shown equivalent."""
    run["equivalent"] = sum(s["equivalent"] for s in run["survivors"])
    run["score"] = run["detected"] / run["checked"] if run["checked"] else None
    left = run["checked"] - run["equivalent"]
    run["score_without_equivalent"] = run["detected"] / left if left > 0 else None
    return run


@functools.lru_cache(maxsize=16)
def _mutated_functions(mutated_file: Path) -> dict[str, str]:
    """Source of every function in mutmut's copy of a module (the original as `<name>__mutmut_orig`)."""
    source = mutated_file.read_text()
    lines = source.splitlines()  # not ast.get_source_segment: it splits the whole file again for every function
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno]) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _mutant_diff(work: Path, path: str, name: str) -> str | None:
    """What `mutmut show NAME` prints after its first line, read from the mutated copy: a `mutmut show` starts
    mutmut (seconds each on a loaded machine, minutes for a module's survivors). None if the copy lacks it."""
    functions = _mutated_functions(work / "mutants" / path)
    mangled = name.rsplit(".", 1)[-1]
    base = mangled.rsplit("__mutmut_", 1)[0]
    original, mutated = functions.get(f"{base}__mutmut_orig"), functions.get(mangled)
    if original is None or mutated is None:
        return None
    real = base.rsplit("\u01c1", 1)[-1] if "\u01c1" in base else base.removeprefix("x_")
    old = original.replace(f"def {base}__mutmut_orig(", f"def {real}(", 1).splitlines()
    new = mutated.replace(f"def {mangled}(", f"def {real}(", 1).splitlines()
    return "\n".join(difflib.unified_diff(old, new, fromfile=path, tofile=path, lineterm=""))


def _survivors(work: Path, path: str, codes: dict[str, int | None]) -> list[dict]:
    starts = _function_starts(ROOT / path)
    module = path[:-3].replace("/", ".")
    rows = []
    for name, code in codes.items():
        status = STATUS.get(code, "suspicious")
        if status in DETECTED or status in UNCHECKED:
            continue
        function = name[len(module) + 1:].rsplit("__mutmut_", 1)[0]
        diff = _mutant_diff(work, path, name)
        if diff is None:
            shown = subprocess.run([*MUTMUT, "show", name], cwd=work, capture_output=True, text=True)
            diff = "\n".join(shown.stdout.splitlines()[1:])  # first line: "# name: status"
        line, old, new = _changed_line(diff, starts.get(function, 1))
        rows.append(_judged(dict(mutant=name, status=status, file=path, line=line,
                                 function=function.removeprefix("x_").replace("x\u01c1", "").replace("\u01c1", "."),
                                 original=old.strip(), mutated=new.strip(), diff=diff)))
    return sorted(rows, key=lambda r: (r["line"] or 0, r["mutant"]))


def run_module(key: str, *, baseline: bool, children: int, limit_s: float, keep: bool,
               resume: bool = False) -> dict[str, dict]:
    """One mutmut run of a target in a throwaway copy. `resume`: run only the mutants the saved verdicts
    (VERDICTS, written by every collect) have no verdict for or record as survivors (against the tests of now),
    then merge the saved detections back: a run stopped by the end of a session continues in the next one, on a
    new machine, instead of starting over."""
    target = TARGETS[key]
    saved = load_verdicts(key, baseline) if resume else None
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{key}-"))
    started = time.time()
    try:
        _copy_repository(work, target, _tests(target, baseline), list(target.filters))
        # the unreached mutants, and the survivors: tests written against them since the saved run get their say
        names = [name for codes in saved["modules"].values() for name, c in codes["codes"].items()
                 if STATUS.get(c, "suspicious") not in DETECTED] if saved else None
        code, log = _run_mutmut(work, children, limit_s, names)
        earlier_s = 0.0
        if saved:
            _merge_saved(work, saved)
            earlier_s = float(saved.get("wall_s") or 0.0)
        return collect(work, key, baseline=baseline, wall_s=earlier_s + time.time() - started, exit_code=code,
                       log=log, keep=keep)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


#: Every mutant's verdict of the last run of each target, committed: the throwaway copy lives in /tmp and does
#: not outlive a session's machine, so this is what `--resume` continues from.
VERDICTS = ROOT / "benchmarks" / "results" / "mutation-verdicts"


def _verdicts_path(key: str, path: str, baseline: bool) -> Path:
    """One file per mutated module (a package's modules may be run in separate `--only` runs)."""
    return VERDICTS / f"{TARGETS[key].label(path, key).replace(':', '-')}{'-baseline' if baseline else ''}.json"


def _source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_verdicts(work: Path, key: str, baseline: bool, codes_by_path: dict[str, dict], wall_s: float | None
                  ) -> None:
    """The verdicts of the run in `work`, with the hash of each module's source as mutated (mutant names are
    positions in a function: they only mean the same mutant for the same source)."""
    VERDICTS.mkdir(parents=True, exist_ok=True)
    for path, codes in codes_by_path.items():
        data = dict(module=path, baseline=baseline, wall_s=wall_s, source_sha256=_source_hash(work / path),
                    function_sha256=_function_hashes(work / path), codes=codes)
        _verdicts_path(key, path, baseline).write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")


def load_verdicts(key: str, baseline: bool, source_root: Path = ROOT) -> dict:
    """The saved verdicts of every module of `key` (as `--only` leaves it); where a module's source (under
    `source_root`: the repository, or a kept copy's original) changed since, only the verdicts of its unchanged
    functions are kept (a changed function's mutants are not the same ones).
    {"wall_s": the longest saved run, "modules": {path: entry}}."""
    modules = {}
    for module in TARGETS[key].paths:
        path = _verdicts_path(key, module, baseline)
        if not path.exists():
            raise FileNotFoundError(f"no saved verdicts for {module} at {path}: run it without --resume first")
        entry = json.loads(path.read_text())
        if _source_hash(source_root / module) != entry["source_sha256"]:
            # keep the verdicts of the functions that did not change; the others' mutants run again
            now, then = _function_hashes(source_root / module), entry.get("function_sha256", {})
            entry["codes"] = {name: (code if now.get(f := _function_of(name, module)) == then.get(f) else None)
                              for name, code in entry["codes"].items()}
            changed = sorted({_function_of(n, module) for n, c in entry["codes"].items() if c is None} &
                             {f for f in then if now.get(f) != then[f]})
            print(f"  {module} changed since the saved run: the mutants of {', '.join(changed) or 'no function'} "
                  "run again", file=sys.stderr)
        modules[module] = entry
    return dict(wall_s=max(float(e.get("wall_s") or 0.0) for e in modules.values()), modules=modules)


def _merge_saved(work: Path, saved: dict) -> None:
    """Give the mutants this run did not rerun the verdicts the saved run gave them."""
    for module, entry in saved["modules"].items():
        meta = work / "mutants" / (module + ".meta")
        data = json.loads(meta.read_text())
        for name, code in entry["codes"].items():
            if code is not None and data["exit_code_by_key"].get(name) is None:
                data["exit_code_by_key"][name] = code
        meta.write_text(json.dumps(data))


def _tests(target: Target, baseline: bool) -> list[str]:
    return [t for t in target.tests if (ROOT / t).exists() and not (baseline and t in NEW_TESTS)]


def collect(work: Path, key: str, *, baseline: bool, wall_s: float | None = None, exit_code: int | None = None,
            log: str = "", keep: bool = True) -> dict[str, dict]:
    """Score and survivors of each module of the mutmut run in `work` (also of one that was stopped: each verdict
    is saved), by row label."""
    target = TARGETS[key]
    if wall_s is None and (work / "mutmut.log").exists():  # recorded later: from the copy's first file to its log
        wall_s = (work / "mutmut.log").stat().st_mtime - (work / "pyproject.toml").stat().st_mtime
    codes_by_path = {}
    for path in target.paths:
        meta = work / "mutants" / (path + ".meta")
        codes_by_path[path] = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    save_verdicts(work, key, baseline, codes_by_path, wall_s)
    if all(c is None for codes in codes_by_path.values() for c in codes.values()):  # listed before any test ran
        raise RuntimeError(f"mutmut checked no mutant of {', '.join(target.paths)} (exit {exit_code}; a failing "
                           f"test in the selection stops it before any mutant). Its log ends:\n{log}")
    return {target.label(path, key): _module_run(work, target, path, codes, baseline=baseline, wall_s=wall_s,
                                                 exit_code=exit_code, keep=keep)
            for path, codes in codes_by_path.items()}


def _module_run(work: Path, target: Target, path: str, codes: dict[str, int | None], *, baseline: bool,
                wall_s: float | None, exit_code: int | None, keep: bool) -> dict:
    counts: dict[str, int] = {}
    for c in codes.values():
        counts[STATUS.get(c, "suspicious")] = counts.get(STATUS.get(c, "suspicious"), 0) + 1
    survivors = _survivors(work, path, codes)
    for s in survivors:  # the report shows these as counts: keep the JSON small
        if baseline or s["status"] == "no tests":
            s.pop("diff", None)
    return _scored(dict(
        module=path, tests=_tests(target, baseline), filters=list(target.filters), baseline=baseline,
        mutmut_exit=exit_code, complete=counts.get("not checked", 0) == 0,
        wall_s=round(wall_s, 1) if wall_s is not None else None, counts=counts, total=len(codes),
        checked=sum(n for s, n in counts.items() if s not in UNCHECKED),
        detected=sum(counts.get(s, 0) for s in DETECTED), survivors=survivors,
        work_dir=str(work) if keep else None,
    ))


def _minutes(seconds: float | None) -> str:
    return f"{seconds / 60:.0f} min" if seconds is not None else "-"


def _markdown(results: dict) -> str:
    lines = [
        "# Mutation testing", "",
        "`nice -n 15 python benchmarks/mutation.py [--modules ...] [--baseline]` (mutmut 3 in a throwaway copy of the "
        "repository; see the script's docstring). Not run in CI. A mutant is *detected* when its targeted tests fail "
        "or time out; *score* = detected / checked; the last column leaves out the survivors shown equivalent "
        "below. The modules of one run (the reduce package) share its wall time. "
        "mutmut mutates function bodies only: module-level constants (e.g. `CI_LEVEL`, `LOG2E`) are not "
        "mutated. The *baseline* rows run without the tests written for issue 17 items 5-6 "
        f"({', '.join(NEW_TESTS)}). The issue-28 rows (2026-12-04) ran on 2 cores shared with two sweeps and other "
        "test runs: most were stopped early (their unchecked mutants have no verdict and are not in the score), and "
        "their survivors were then rechecked in one process against the tests written for them (`--recheck`): a "
        "recheck only turns survivors into kills (`--finish` gives the unchecked ones a verdict the same way).", "",
        "| module | run | mutants | killed | timeout | survived | no tests | score | score without equivalent "
        "| wall | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in sorted(results["runs"].items()):
        c = run["counts"]
        score = f"{run['score']:.1%}" if run["score"] is not None else "-"
        eq = f"{run['score_without_equivalent']:.1%}" if run["score_without_equivalent"] is not None else "-"
        partial = "" if run["complete"] else " (stopped early)"
        lines.append(f"| `{run['module']}` | {'baseline' if run['baseline'] else 'all tests'}{partial} "
                     f"| {run['total']} | {c.get('killed', 0)} | {c.get('timeout', 0)} | {c.get('survived', 0)} "
                     f"| {c.get('no tests', 0)} | {score} | {eq} | {_minutes(run['wall_s'])} | {run['date'][:10]} |")
    lines += ["", "Test selection per module (pytest arguments):", ""]
    for label, run in sorted(results["runs"].items()):
        if not run["baseline"]:
            lines.append(f"- `{run['module']}`: `{' '.join(run['tests'] + run['filters'])}`")
    for label, run in sorted(results["runs"].items()):
        if run["baseline"]:
            continue
        reached = [s for s in run["survivors"] if s["status"] != "no tests"]
        unreached: dict[str, int] = {}
        for s in run["survivors"]:
            if s["status"] == "no tests":
                unreached[s["function"]] = unreached.get(s["function"], 0) + 1
        lines += ["", f"## Surviving mutants of `{run['module']}` ({len(run['survivors'])})", ""]
        if not run["complete"]:
            lines += [f"The run was stopped after {run['checked']} of {run['total']} mutants: the others have no "
                      "verdict and are not in the score. Each survivor below is equivalent (with the reason) or reads "
                      "as a gap until a test kills it.", ""]
        if unreached:
            lines += [f"{sum(unreached.values())} mutants are in functions that no test of the selection calls "
                      f"({NOT_REACHED.get(run['module'], 'no fast test reaches them')}):", "",
                      "| function | mutants |", "|---|---|"]
            lines += [f"| `{f}` | {n} |" for f, n in sorted(unreached.items())] + [""]
        if not run["survivors"]:
            lines.append("None.")
        for s in reached:
            verdict = "equivalent" if s["equivalent"] else "**not killed**"
            lines += [f"### `{s['file']}:{s['line']}` in `{s['function']}` ({s['status']}, {verdict})", "",
                      s["reason"], "", "```diff", s["diff"].strip(), "```", ""]
    lines += ["", machine_line(results["machine"]), ""]
    return "\n".join(lines)


RECHECK_DRIVER = '''"""Written by benchmarks/mutation.py --recheck: each named mutant against the given tests."""
import json, os, signal, sys

import pytest

names, args, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]


def _timeout(*_):
    raise TimeoutError("mutant ran past the recheck's limit")


signal.signal(signal.SIGALRM, _timeout)
os.environ["MUTANT_UNDER_TEST"] = ""  # the original code: every test must pass
if pytest.main(args) != 0:
    sys.exit("the recheck's tests fail without any mutant")
verdicts = {}
for name in names:
    os.environ["MUTANT_UNDER_TEST"] = name
    signal.alarm(300)
    try:
        verdicts[name] = int(pytest.main([*args, "-x"]))
    except TimeoutError:
        verdicts[name] = 1
    finally:
        signal.alarm(0)
    json.dump(verdicts, open(out, "w"))
'''


def recheck(work: Path, key: str, tests: list[str], filters: list[str], *, unchecked: bool = False
            ) -> dict[str, int]:
    """Run the survivors and unreached mutants of the kept copy `work` against the current `tests` (copied in),
    all in one process (a `mutmut run` per mutant restarts pytest and reruns every test mapped to the function:
    minutes per mutant on 2 shared cores). A mutant the recheck's tests fail on is killed (exit code 1 in mutmut's
    records, so `--collect` counts it); one they pass on keeps its verdict, since these tests are a subset of the
    selection; survivors shown equivalent (EQUIVALENT) are not rerun.

    `unchecked`: run instead the mutants a stopped run never reached (`--finish`), against `tests`, which must then
    be the module's whole selection: a mutant they pass on survives (exit code 0), one they fail on is killed.
    Returns {mutant: pytest exit code}."""
    target = TARGETS[key]
    for test in tests:
        for dest in (work / test, work / "mutants" / test):
            shutil.copy2(ROOT / test, dest)
    metas = {path: work / "mutants" / (path + ".meta") for path in target.paths}
    wanted = ("not checked",) if unchecked else ("survived", "no tests")
    names = [name for meta in metas.values() if meta.exists()
             for name, code in json.loads(meta.read_text())["exit_code_by_key"].items()
             if STATUS.get(code) in wanted]
    if not unchecked:  # a survivor shown equivalent (EQUIVALENT) passes every test: do not run it again
        shown = {s["mutant"] for path, meta in metas.items() if meta.exists()
                 for s in map(_judged, _survivors(work, path, json.loads(meta.read_text())["exit_code_by_key"]))
                 if s["equivalent"]}
        names = [name for name in names if name not in shown]
    mode = "finish" if unchecked else "recheck"
    plugins = ["-p", "mutation_hypothesis"] if unchecked else []  # the run's own settings: derandomised examples
    (work / f"{mode}_names.json").write_text(json.dumps(names))
    (work / f"{mode}_args.json").write_text(json.dumps([*tests, *filters, "-q", "-p", "no:cacheprovider", *plugins]))
    (work / "mutants" / "mutation_recheck.py").write_text(RECHECK_DRIVER)
    verdicts_path = work / f"{mode}.json"
    with (work / f"{mode}.log").open("w") as log:
        # check=False: a recheck stopped (killed) on the way keeps the verdicts it reached
        subprocess.run([sys.executable, "mutation_recheck.py", str(work / f"{mode}_names.json"),
                        str(work / f"{mode}_args.json"), str(verdicts_path)], cwd=work / "mutants", stdout=log,
                       stderr=subprocess.STDOUT, check=False)
    verdicts = json.loads(verdicts_path.read_text()) if verdicts_path.exists() else {}
    recorded = (0, 1) if unchecked else (1,)  # pytest's exit codes: 0 all passed, 1 some test failed
    for meta in metas.values():
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        for name, code in verdicts.items():
            if name in data["exit_code_by_key"] and code in recorded:
                data["exit_code_by_key"][name] = code
        meta.write_text(json.dumps(data))
    return verdicts


def _without_removed(results: dict) -> dict:
    """The results without rows of modules that no longer exist (ie_ray/reduce.py became the reduce package)."""
    results["runs"] = {label: run for label, run in results["runs"].items() if (ROOT / run["module"]).exists()}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=["ie", "bounds"], choices=sorted(TARGETS))
    parser.add_argument("--baseline", action="store_true", help=f"leave out {', '.join(NEW_TESTS)}")
    parser.add_argument("--children", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--limit-min", type=float, default=120.0, help="stop one module's run after this long")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway copy (to inspect with mutmut browse)")
    parser.add_argument("--report-only", action="store_true", help="rewrite mutation.md from mutation.json")
    parser.add_argument("--recheck", type=Path, metavar="DIR",
                        help="recheck the survivors of the run kept in DIR (--keep) against the target's "
                             "kill tests (tests/test_mutants_killed.py, and for smoothed its own file) "
                             "in one process, then record it (as --collect); -k filters with --recheck-k")
    parser.add_argument("--recheck-k", default=None, help="pytest -k expression for --recheck")
    parser.add_argument("--finish", type=Path, metavar="DIR",
                        help="run the mutants that the stopped run kept in DIR never reached against the module's "
                             "whole selection in one process, then record it (as --collect)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the last run of the module from its saved verdicts (benchmarks/results/"
                             "mutation-verdicts/): only the mutants it never reached are run")
    parser.add_argument("--only", nargs="+", metavar="PATH",
                        help="mutate only these modules of the one target named by --modules (e.g. the reduce "
                             "package's modules a stopped run never reached); each keeps its own row")
    parser.add_argument("--collect", type=Path, metavar="DIR",
                        help="record the run kept (--keep) or stopped in DIR, for the one module named by --modules")
    args = parser.parse_args(argv)
    if args.report_only:
        results = _without_removed(json.loads(OUT.with_suffix(".json").read_text()))
        for run in results["runs"].values():  # reasons may have been added since the run
            run["survivors"] = [_judged(s) for s in run["survivors"]]
            _scored(run)
        OUT.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        OUT.with_suffix(".md").write_text(_markdown(results))
        return 0
    if os.nice(0) < 15:  # other jobs share the machine: mutants only get the CPU they leave idle
        os.nice(15 - os.nice(0))
    json_path = OUT.with_suffix(".json")
    if (args.collect or args.recheck or args.finish or args.only) and len(args.modules) != 1:
        parser.error("--collect, --recheck, --finish and --only record one module: name it with --modules")
    if args.only:
        try:
            TARGETS[args.modules[0]] = TARGETS[args.modules[0]].only(args.only)
        except ValueError as error:
            parser.error(str(error))
    for key in args.modules:
        print(f"mutating {', '.join(TARGETS[key].paths)} ...", file=sys.stderr, flush=True)
        if args.recheck:
            verdicts = recheck(args.recheck, key, [t for t in TARGETS[key].kill_tests if (ROOT / t).exists()],
                               ["-k", args.recheck_k] if args.recheck_k else [])
            print(f"  recheck: {sum(c == 1 for c in verdicts.values())} of {len(verdicts)} rechecked killed",
                  file=sys.stderr)
            runs = collect(args.recheck, key, baseline=args.baseline)
        elif args.finish:
            target = TARGETS[key]
            verdicts = recheck(args.finish, key, _tests(target, args.baseline), list(target.filters), unchecked=True)
            print(f"  finish: {sum(c == 1 for c in verdicts.values())} of {len(verdicts)} unchecked killed, "
                  f"{sum(c == 0 for c in verdicts.values())} survived", file=sys.stderr)
            runs = collect(args.finish, key, baseline=args.baseline)
        elif args.collect:
            # a run stopped before it merged the saved verdicts (killed, not timed out) has only its own: merge
            # them here, or recording it would forget every mutant the earlier runs checked
            try:
                _merge_saved(args.collect, load_verdicts(key, args.baseline, source_root=args.collect))
            except FileNotFoundError:
                pass
            runs = collect(args.collect, key, baseline=args.baseline)
        else:
            runs = run_module(key, baseline=args.baseline, children=args.children, limit_s=args.limit_min * 60,
                              keep=args.keep, resume=args.resume)
        # read just before writing: another run (another module) may have written since this one started
        results = _without_removed(json.loads(json_path.read_text())) if json_path.exists() else {"runs": {}}
        for label, run in runs.items():
            label = f"{label}{'-baseline' if args.baseline else ''}"
            earlier = results["runs"].get(label, {})
            if run["wall_s"] is None and earlier.get("total") == run["total"]:
                # survivors rechecked (`mutmut run NAMES`) in the copy of the full run: that run's wall
                run["wall_s"] = earlier.get("wall_s")
            run["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            results["runs"][label] = run
            score = f"{run['score']:.1%}" if run["score"] is not None else "-"
            print(f"  {run['module']}: {run['detected']}/{run['checked']} detected ({score}), "
                  f"{len(run['survivors'])} survivors, {_minutes(run['wall_s'])}", file=sys.stderr, flush=True)
        results["machine"] = machine_info(threads=1)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        OUT.with_suffix(".md").write_text(_markdown(results))
    print(OUT.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
