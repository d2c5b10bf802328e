"""Starting or joining Ray: one place, so the driver, the reducer and tests agree on how.

Ray starts only when there is work for it: a rerun whose shards are all cached never starts it.
"""
from __future__ import annotations

import os
from typing import Any

from ie_ray.ray_logs import route_ray_messages

#: Environment of every Ray worker of an ie-ray job. HF_HUB_DISABLE_PROGRESS_BARS also switches off transformers'
#: own bars (`transformers.utils.logging` reads it at import), so an extraction actor's "Loading weights" bar,
#: which Ray forwards to the driver's console, is never drawn; set it in your environment to override.
WORKER_ENV: dict[str, str] = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def worker_runtime_env() -> dict | None:
    """The job's runtime_env: WORKER_ENV less what the driver's environment already sets (a variable the user or
    `ray job submit --runtime-env` sets wins; Ray refuses a job whose submitted and ray.init env vars clash)."""
    env_vars = {key: value for key, value in WORKER_ENV.items() if key not in os.environ}
    return {"env_vars": env_vars} if env_vars else None


def init_ray(num_cpus: int | None = None, address: str | None = None, resources: dict | None = None) -> None:
    """Connect to `address` or RAY_ADDRESS when set (ray job submit sets it), else start Ray in-process.

    An in-process Ray sizes its object store and spill directory from IE_RAY_OBJECT_STORE_GB and
    IE_RAY_SPILL_DIR: block states travel through the object store between extraction and the Parquet writer,
    and a paper-scale cell (300k samples x 8 positions x 2 x hidden) outgrows RAM, so Ray spills to disk,
    which should be a fast local disk, not /tmp on a small root volume. On a cluster the same settings are
    `ray start` flags (cluster/ configs).
    """
    import ray

    route_ray_messages()  # before ray.init: its start-up lines belong in the run's ray.log too
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # ray.init is annotated as returning BaseContext; a local or `auto` address gives a RayContext (address_info)
        context: Any = ray.init(address=address if "://" not in address else "auto", runtime_env=worker_runtime_env())
        route_ray_messages(context.address_info.get("session_dir"))
        return
    extra: dict = {}
    if os.environ.get("IE_RAY_OBJECT_STORE_GB"):
        extra["object_store_memory"] = int(float(os.environ["IE_RAY_OBJECT_STORE_GB"]) * 1024**3)
    if os.environ.get("IE_RAY_SPILL_DIR"):
        extra["object_spilling_directory"] = os.environ["IE_RAY_SPILL_DIR"]
    # address="local": a NEW in-process instance. Without it ray.init() attaches to whatever cluster `ray start`
    # (or a test) last left in /tmp/ray/ray_current_cluster; use RAY_ADDRESS=auto to mean that on purpose.
    context = ray.init(address="local", num_cpus=num_cpus, resources=resources, include_dashboard=False,
                       log_to_driver=True, runtime_env=worker_runtime_env(), **extra)
    route_ray_messages(context.address_info.get("session_dir"))
