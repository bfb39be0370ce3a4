"""Tiny synthetic data files for the data tests (never the network; real data only when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logah.config.specs import get_preset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    """``train.bin`` holds 0..4999 (token == position, so blocks and the x/y shift are checkable),
    ``val.bin`` 10000..10999 — both uint16, the nanoGPT format."""
    root = tmp_path / "tokens"
    root.mkdir()
    np.arange(5000, dtype=np.uint16).tofile(root / "train.bin")
    np.arange(10_000, 11_000, dtype=np.uint16).tofile(root / "val.bin")
    return root


@pytest.fixture
def gpt2_tiny():
    return get_preset("gpt2-tiny")
