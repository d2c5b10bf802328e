"""`ray job submit` path: start a local head node, submit jobs/sweep.py through JobSubmissionClient, check outputs.

Everything stays on loopback (127.0.0.1). The head node is stopped at the end whatever happens. Ray >= 2.59
turns token authentication on for local clusters; conftest gives the head node and the client one token.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from local_cluster import (  # tests/ is on sys.path
    free_port,
    processes_of,
    stop_processes,
)

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def head_node(tmp_path_factory):
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        pytest.fail("the `ray` command is missing; install ray[default]")
    temp_dir = tmp_path_factory.mktemp("rayhead")
    gcs_port, dashboard_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Every port explicit and free: the session's in-process Ray already runs a dashboard agent on the default
    # agent ports, and a head node whose agent cannot bind them never accepts a job ("No available agent").
    start = [ray_bin, "start", "--head", "--num-cpus=2", "--node-ip-address=127.0.0.1",
             f"--port={gcs_port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
             f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
             "--include-dashboard=true", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    subprocess.run(start, check=True, env=env, capture_output=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{dashboard_port}"
    finally:
        _stop_head(temp_dir)


def _stop_head(temp_dir: Path) -> None:
    """Stop THIS head node only. `ray stop --force` kills every Ray process on the machine, including the test
    session's own in-process Ray (which takes pytest down with it) and anyone else's runs on a shared box."""
    stop_processes(processes_of(temp_dir))


def test_sweep_runs_as_a_ray_job(head_node, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    config = {
        "name": "job-submit",
        "models": ["tiny-qwen2"],
        "corpora": [{"kind": "icl", "task": "animal", "format": "comma", "n_entities": 6, "n_samples": 120}],
        "shots": [2],
        "layers": [1],
        "estimator": {"steps": 20, "batch_size": 32, "n_bootstrap": 20},
    }
    config_path = tmp_path / "job.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out_dir = tmp_path / "out"
    client = JobSubmissionClient(head_node)
    submit = dict(
        entrypoint=f"{sys.executable} jobs/sweep.py --config {config_path} --out {out_dir}",
        runtime_env={"working_dir": str(REPO), "excludes": ["results", ".git", ".venv", "venv", "*.png"],
                     "env_vars": {"HF_HUB_OFFLINE": "1"}},
    )
    for _ in range(60):  # the head's job agent comes up some seconds after `ray start` returns
        try:
            job_id = client.submit_job(**submit)
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc):
                raise
            time.sleep(2)
    else:
        pytest.fail("the head node's job agent never became available")
    deadline = time.time() + 500
    status = client.get_job_status(job_id)
    while status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED) and time.time() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "E(l) = IE at the last position" in logs
    ie = pd.read_csv(out_dir / "ie.csv")
    assert len(ie) == 4 and set(ie.layer) == {1} and set(ie.model) == {"tiny-qwen2"}
    assert (out_dir / "report.md").is_file() and (out_dir / "manifest.json").is_file()
    # the job's logs are the run's console: Ray's own lines are in the run's ray.log instead
    assert "core_worker" not in logs and "\tINFO worker.py" not in logs
    ray_log = (out_dir / "ray.log").read_text()
    assert "Connecting to existing Ray cluster" in ray_log and "core_worker.cc" in ray_log
