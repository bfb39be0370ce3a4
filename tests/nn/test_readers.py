"""Checkpoints hold only tensors and plain data, or are refused (the CLI-level matrix of every
reader x bad file is tests/cli/test_bad_files.py)."""

from __future__ import annotations

import pytest
import torch

from logah.config.files import UnreadableFileError
from logah.nn.readers import WeightsError, read_checkpoint


def test_a_checkpoint_comes_back_as_plain_data_or_not_at_all(tmp_path):
    torch.save({"step": 3, "w": torch.ones(2)}, tmp_path / "ok.ckpt")
    ckpt = read_checkpoint(tmp_path / "ok.ckpt", mmap=True)
    assert ckpt["step"] == 3 and torch.equal(ckpt["w"], torch.ones(2))
    torch.save([torch.ones(1)], tmp_path / "list.ckpt")
    with pytest.raises(WeightsError, match=r"list\.ckpt: cannot read checkpoint \(it holds a list"):
        read_checkpoint(tmp_path / "list.ckpt")
    with pytest.raises(UnreadableFileError, match=r"nope\.ckpt: cannot open"):
        read_checkpoint(tmp_path / "nope.ckpt")
