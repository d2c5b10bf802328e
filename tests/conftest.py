"""Shared fixtures: one in-process Ray (num_cpus=2) for the whole session, and an isolated model cache."""
from __future__ import annotations

import os
import secrets

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray >= 2.59 turns token auth on for local clusters, and a process caches its auth mode at first use: every
# Ray in the test session (in-process and the head node of the job-submission test) shares one fresh token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_local():
    """In-process Ray with 2 CPUs, shared by every test that needs it (start-up costs seconds)."""
    import ray

    if not ray.is_initialized():
        # address="local": never attach to a cluster another test or `ray start` left behind
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """2 shared cores: OpenMP with 2 threads under load is ~30x slower than 1 thread for tiny-model matmuls."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
