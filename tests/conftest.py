"""Shared test setup: thread limits (2-core machine), a per-test seeded RNG, hypothesis profile."""

from __future__ import annotations

import os
import sys
import zlib

# Thread limits must be in the environment before torch / OpenMP runtimes start.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(2)

# Helper module shared by the test files (pytest runs with --import-mode=importlib,
# which does not put tests/ on sys.path by itself).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

settings.register_profile(
    "fastot",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("FASTOT_HYPOTHESIS_PROFILE", "fastot"))


def _seed_for(nodeid: str) -> int:
    return zlib.crc32(nodeid.encode())


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A seed derived from the test's node id: stable across runs, different per test/parameter."""
    return _seed_for(request.node.nodeid)


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def torch_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
