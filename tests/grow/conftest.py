"""Growth tests run in float64 (the default dtype is restored by tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
