"""Shared fixtures. Tests never download anything and never need a GPU (``gpu`` marker skips)."""

from __future__ import annotations

import os

import pytest
import torch

# Must be set before transformers / huggingface_hub are imported: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change the default dtype or thread count; put them back."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def transformers():
    """The ``transformers`` module (the ``logah[hf]`` / test extra), offline, progress bars off;
    the test is skipped where it is not installed."""
    tf = pytest.importorskip("transformers")
    tf.utils.logging.disable_progress_bar()
    tf.utils.logging.set_verbosity_error()
    return tf
