"""Fixtures for the target-model tests (``transformers``, offline, comes from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@torch.no_grad()
def _randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Give every parameter (LayerNorms and biases included) non-trivial random values, so
    parity tests exercise every tensor rather than ones/zeros."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        is_ln_weight = p.ndim == 1 and name.endswith("weight")
        p.copy_(1.0 + 0.1 * noise if is_ln_weight else scale * noise)
    return model


@pytest.fixture
def randomize():
    """``randomize(model, seed=0, scale=0.2)``: non-trivial random values for every parameter."""
    return _randomize
