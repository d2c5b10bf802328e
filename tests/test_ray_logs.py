"""Ray's own messages go to the run's ray.log; the console keeps ie-ray's stage lines, progress and tables."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from ie_ray.ray_logs import EXPECTED_WARNINGS, ray_messages_to, route_ray_messages

REPO = Path(__file__).resolve().parent.parent
RAY_RECORD = re.compile(r"\t(DEBUG|INFO|WARNING) \S+\.py:\d+ -- ")  # Ray's format: "<time>\tINFO file.py:12 -- ..."
TQDM_ITEMS = re.compile(r"(\?|\d)it/s")  # a tqdm bar of items: "Loading weights: 100%| 272/272 [..., 13052.91it/s]"
NO_CPU, WHY_NO_CPU = next(iter(EXPECTED_WARNINGS.items()))


def test_routing_sends_ray_records_and_c_level_stderr_to_the_file_and_restores_the_console(tmp_path, capfd):
    import ray  # noqa: F401

    log = tmp_path / "ray.log"
    ray_logger = logging.getLogger("ray")
    fd2 = open(2, "w", closefd=False)
    # Ray's console handler writes to the stream it was made with: outside pytest that is descriptor 2, but in a
    # full test run it can be an earlier test's captured sys.stderr. Point it at descriptor 2 for this test (as
    # in a real run), or add one if Ray has none yet, so what reaches the console is what capfd sees.
    consoles = [h for h in ray_logger.handlers if isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)]
    added = None if consoles else logging.StreamHandler(fd2)
    if added:
        ray_logger.addHandler(added)
        consoles = [added]
    old_streams = [h.setStream(fd2) for h in consoles]
    old_level = ray_logger.level
    if ray_logger.level > logging.INFO or ray_logger.level == logging.NOTSET:
        ray_logger.setLevel(logging.INFO)
    levels = [h.level for h in ray_logger.handlers]
    # a handler made before the run, on descriptor 2 (as Ray's own is, outside pytest's capture)
    other = logging.getLogger("other.library")
    other.addHandler(logging.StreamHandler(fd2))
    try:
        _route_and_check(tmp_path, capfd, log, ray_logger, levels, other)
    finally:
        for handler, stream in zip(consoles, old_streams):
            handler.setStream(stream)
        if added:
            ray_logger.removeHandler(added)
        ray_logger.setLevel(old_level)


def _route_and_check(tmp_path, capfd, log, ray_logger, levels, other) -> None:
    with ray_messages_to(log):
        logging.getLogger("ray._private.worker").info("ray info record")  # before Ray is in use: untouched
        route_ray_messages()
        route_ray_messages("/tmp/ray/session_x")  # idempotent; names the session once
        route_ray_messages("/tmp/ray/session_x")
        logging.getLogger("ray._private.worker").info("routed ray info")
        logging.getLogger("ray.data._internal.progress").info("routed data progress")
        logging.getLogger("ray._private.worker").warning("ray warning")
        logging.getLogger("ray._private.authentication.authentication_token_setup").warning("token notice")
        for _ in range(2):
            logging.getLogger("ray.data.dataset").warning(NO_CPU + ". The Dataset job will hang unless ...")
        os.write(2, b"[2026-01-01 00:00:00,000 E 1 1] core_worker.cc:1: C-level line\n")
        print("python stderr line", file=sys.stderr)
        other.warning("other library warning")
    os.write(2, b"after the run\n")
    other.warning("other library after the run")
    other.handlers.clear()
    console = capfd.readouterr().err
    text = log.read_text()
    for line in ["routed ray info", "routed data progress", "ray warning", "token notice", "core_worker.cc:1",
                 "Ray session directory: /tmp/ray/session_x"]:
        assert line in text, line
    assert text.count("Ray session directory") == 1
    assert text.count(NO_CPU) == 2 and text.count(WHY_NO_CPU) == 1  # explained once, right after the first
    assert text.index(WHY_NO_CPU) > text.index(NO_CPU)
    assert "ray info record" in console  # the route starts with Ray, not before
    for line in ["routed ray info", "routed data progress", "token notice", "core_worker", NO_CPU, WHY_NO_CPU]:
        assert line not in console, line
    for line in ["ray warning", "python stderr line", "other library warning", "after the run",
                 "other library after the run"]:
        assert line in console, line
    for line in ["python stderr line", "other library", "after the run", "ray info record"]:
        assert line not in text, line
    assert [h.level for h in ray_logger.handlers] == levels
    assert not any(isinstance(h, logging.FileHandler) for h in ray_logger.handlers)


def _write_random_gpt2(path: Path) -> None:
    """A 2-block random-init GPT-2 saved like a downloaded model, so that the actor loads it with from_pretrained
    (transformers' "Loading weights" bar; a tiny-<family> model is built in memory and draws none)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ie_ray.corpora.tokenizers import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=32, vocab_size=len(tokenizer), bos_token_id=0,
                        eos_token_id=1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_a_small_sweep_console_holds_no_ray_lines_or_weight_bars_and_its_ray_log_holds_the_ray_lines(tmp_path):
    model = tmp_path / "randgpt2"
    _write_random_gpt2(model)
    config = dict(name="tiny-console", models=[str(model)],
                  corpora=[dict(kind="icl", task="country", format="comma-space", n_entities=8, n_samples=240)],
                  shots=[2], layers=[0], readings=["smoothed", "entropy_limit"], extract=dict(batch_size=50))
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    # the console a user sees: no switch of ours or of a test runner that would hide what a plain run prints
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_DATA_DISABLE_PROGRESS_BARS", "RAY_ADDRESS", "HF_HUB_DISABLE_PROGRESS_BARS",
                        "TQDM_DISABLE", "TRANSFORMERS_VERBOSITY")}
    done = subprocess.run([sys.executable, str(REPO / "jobs" / "sweep.py"), "--config", str(config_path),
                           "--out", str(run_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    for line in [f"[ie-ray] extract {model} done", f"[ie-ray] reduce {model} done", "E(l) = IE at the last",
                 "Model-level IE"]:
        assert line in console, line
    assert not RAY_RECORD.search(console), console
    for line in ["core_worker", "Loading weights", NO_CPU, "MapWorker("]:
        assert line not in console, (line, console)
    assert not TQDM_ITEMS.search(console), console
    log = (run_dir / "ray.log").read_text()
    assert "core_worker.cc" in log and "constructor arguments in the object store" in log
    assert "Started a local Ray instance" in log
    assert "Execution plan of Dataset" in log
    assert "Ray session directory" in log
    # Ray Data's CPU check races the actor start-up: when it fires, ray.log holds it with its reason
    assert (NO_CPU in log) == (WHY_NO_CPU in log)


def test_ray_workers_get_the_progress_bar_switch_unless_the_user_set_it(monkeypatch):
    from ie_ray.ray_start import WORKER_ENV, worker_runtime_env

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    assert worker_runtime_env() == {"env_vars": WORKER_ENV} and WORKER_ENV["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's (or `ray job submit`'s) choice wins
    assert worker_runtime_env() is None
