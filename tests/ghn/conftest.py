"""Fixtures for the hypernetwork tests: small real graphs and small GHNs (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch

from logah.config import get_preset
from logah.config.ghn import GHNConfig
from logah.ghn import GHN
from logah.graph import graph_for_spec


@pytest.fixture(scope="session")
def tiny_graphs():
    """Graphs of gpt2-tiny and vit-tiny (the real ``logah.graph`` builder)."""
    return [graph_for_spec(get_preset("gpt2-tiny")), graph_for_spec(get_preset("vit-tiny"))]


def small_ghn(preset: str = "logah-t", seed: int = 0, **overrides) -> GHN:
    """A GHN of ``preset`` with overrides (e.g. a small K to keep tests fast)."""
    return GHN(GHNConfig(preset=preset, **overrides), seed=seed)


@pytest.fixture
def make_ghn():
    return small_ghn


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP barriers of many small ops stall
    badly when another process holds a core (10x slower than one thread). Restored by the root
    conftest."""
    torch.set_num_threads(1)
