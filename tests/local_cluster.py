"""A real multi-raylet Ray cluster on one machine: `ray start --head` plus worker nodes started as separate
`ray start --address` processes, each with its own temp directory, ports and node resources, and a way to lose
one node the way a machine dies (every process of that node SIGKILLed at once).

Why not `ray.cluster_utils.Cluster`: it starts the nodes from the test process and tears them down politely; a
lost machine is a raylet, its object store and its workers gone in the same instant, noticed by the head only
through missed health checks. Every port is explicit and free, and every process is found through this cluster's
own temp directories, so nothing touches another Ray instance on the same machine (`ray stop` would).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: Health checks of the head: a node missing 3 checks 0.5 s apart is dead (Ray's default waits ~15 s).
HEAD_SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                      "health_check_initial_delay_ms": 1000}


#: `ray start` attempts per node before the cluster counts as unable to start here.
START_ATTEMPTS = 5
#: Ray's waits for the head's dashboard (the job API) and its module processes are 60 s and 30 s by default; a
#: loaded machine needs more. Its other start-up waits are fixed in Ray 2.60's code (see `LocalCluster._start`).
START_ENV = {"RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300", "RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT": "300"}


class ClusterStartError(RuntimeError):
    """`ray start` itself failed (a sandbox without loopback networking, no `ray` command, a machine too loaded for
    Ray's start-up waits, ...)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_command() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if found is None:
        raise ClusterStartError("the `ray` command is missing; install ray[default]")
    return found


def _node_ports() -> list[str]:
    """Ports every node binds; defaults would collide between nodes of one machine (and with other Rays)."""
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            "--min-worker-port=0", "--max-worker-port=0"]


def _names(command_line: str, temp_dir: Path) -> bool:
    """Whether a daemon's command line points into `temp_dir` (its session directory lies under it); with the
    separator, so node `w` is not taken for node `w-r`."""
    return f"{temp_dir}{os.sep}" in command_line


def processes_of(temp_dir: Path) -> list[psutil.Process]:
    """Every process of the node(s) whose temp directory is `temp_dir`: the daemons name it on their command
    line; worker processes rename themselves (`ray::IDLE`), so they are found as the daemons' descendants."""
    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if _names(" ".join(proc.info["cmdline"] or []), temp_dir):
                roots.append(proc)
        except (psutil.Error, TypeError):
            continue
    found = {p.pid: p for p in roots}
    for root in roots:
        try:
            found.update({c.pid: c for c in root.children(recursive=True)})
        except psutil.Error:
            continue
    return list(found.values())


def stop_processes(procs: list[psutil.Process], timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL what is left: only the given processes, never `ray stop` (every Ray on the box)."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def kill_at_once(procs: list[psutil.Process]) -> list[int]:
    """SIGSTOP every process first, then SIGKILL them: none of them sees another one die and reacts (a raylet
    whose worker vanished, a worker whose raylet vanished), as when the machine itself is gone."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGSTOP)
        except psutil.Error:
            pass
    killed = []
    for proc in procs:
        try:
            proc.kill()
            killed.append(proc.pid)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)
    return killed


@dataclass
class Node:
    name: str
    temp_dir: Path
    killed: bool = False

    def processes(self) -> list[psutil.Process]:
        return processes_of(self.temp_dir)


@dataclass
class LocalCluster:
    """A head (no CPUs by default: the driver and Ray's bookkeeping actors only, as on a cluster whose head runs
    no work) and worker nodes, all on 127.0.0.1, all under `root`."""

    root: Path
    env: dict = field(default_factory=dict)
    head_cpus: int = 0
    nodes: list[Node] = field(default_factory=list)
    gcs_address: str = ""
    dashboard_url: str = ""

    def _start(self, name: str, args: Callable[[], list[str]]) -> Path:
        """`ray start` of node `name` under `root`; its temp directory. A failed start is retried from scratch
        (its leftover processes stopped, fresh ports and temp directory): waits fixed in Ray 2.60's code (30 s for a
        new raylet to register with the GCS, 15 s for the raylet's dashboard agent to write its port file while the
        head's ~10 dashboard processes import Ray at the same time) ran out on the 2-core machine here at load 9-50."""
        failures = []
        for attempt in range(START_ATTEMPTS):
            temp_dir = self.root / (name if attempt == 0 else f"{name}-retry{attempt}")
            temp_dir.mkdir(parents=True, exist_ok=True)
            cmd = [ray_command(), "start", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
                   "--disable-usage-stats", *_node_ports(), *args()]
            try:
                subprocess.run(cmd, check=True, env={**START_ENV, **self.env}, capture_output=True, text=True,
                               timeout=600)
                return temp_dir
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                detail = getattr(exc, "stderr", "") or getattr(exc, "stdout", "") or str(exc)
                failures.append(" | ".join(str(detail).strip().splitlines()[-3:]))  # Ray's own message
                stop_processes(processes_of(temp_dir))
                time.sleep(5 * (attempt + 1))  # let the machine's load move
        raise ClusterStartError(f"`ray start` of the {name} node failed {START_ATTEMPTS} times; the last time: "
                                f"{failures[-1]}")

    def start_head(self) -> None:
        ports: dict[str, int] = {}

        def args() -> list[str]:
            ports.update(gcs=free_port(), dashboard=free_port())
            return ["--head", f"--port={ports['gcs']}", f"--num-cpus={self.head_cpus}", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={ports['dashboard']}",
                    f"--system-config={json.dumps(HEAD_SYSTEM_CONFIG)}"]

        self._start("head", args)
        self.gcs_address = f"127.0.0.1:{ports['gcs']}"
        self.dashboard_url = f"http://127.0.0.1:{ports['dashboard']}"

    def add_worker(self, name: str, num_cpus: int, resources: dict) -> Node:
        temp_dir = self._start(name, lambda: [f"--address={self.gcs_address}", f"--num-cpus={num_cpus}",
                                              f"--resources={json.dumps(resources)}"])
        node = Node(name, temp_dir)
        self.nodes.append(node)
        return node

    def node_of_pid(self, pid: int) -> Node | None:
        """The live worker node running process `pid`: up its parents to the raylet, whose command line names its
        node's temp directory (None once the process is gone)."""
        live = [n for n in self.nodes if not n.killed]
        try:
            for parent in psutil.Process(pid).parents():
                line = " ".join(parent.cmdline())
                node = next((n for n in live if _names(line, n.temp_dir)), None)
                if node is not None:
                    return node
        except psutil.Error:
            pass
        return None

    def kill_node(self, node: Node) -> list[int]:
        """Lose a machine: its raylet, object store, agents and every worker process, SIGKILLed together."""
        node.killed = True
        return kill_at_once(node.processes())

    def submit(self, submission_id: str, entrypoint: list[str], runtime_env: dict | None = None) -> str:
        """`ray job submit --no-wait` of `entrypoint`, as a user submits to a cluster; retried while the head's job
        agent is still coming up (some seconds after `ray start` returns)."""
        env_args = [f"--runtime-env-json={json.dumps(runtime_env)}"] if runtime_env else []
        cmd = [ray_command(), "job", "submit", f"--address={self.dashboard_url}", "--no-wait",
               f"--submission-id={submission_id}", *env_args, "--", *entrypoint]
        for _ in range(60):
            done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode == 0:
                return submission_id
            if "No available agent" not in done.stdout + done.stderr:
                raise RuntimeError(f"`ray job submit` failed: {(done.stdout + done.stderr)[-2000:]}")
            time.sleep(2)
        raise RuntimeError("the head node's job agent never became available")

    def jobs(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url)

    def wait_job(self, submission_id: str, timeout: float) -> tuple[str, str]:
        """(final status, logs) of a job."""
        client = self.jobs()
        wait_for(lambda: client.get_job_status(submission_id).is_terminal(), timeout, poll=0.5,
                 what=f"job {submission_id} to end")
        return str(client.get_job_status(submission_id)), client.get_job_logs(submission_id)

    def stop(self) -> None:
        stop_processes(processes_of(self.root))


def wait_for(predicate, timeout: float, poll: float = 0.05, what: str = "a condition"):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
