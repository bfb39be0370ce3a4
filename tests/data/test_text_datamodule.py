"""TextDataModule: block shapes and shift, seeded per-rank random blocks, validation, errors."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from logah.config.data import DataConfig
from logah.data import build_datamodule
from logah.data.errors import DataError, DataFormatError, DataNotFoundError
from logah.data.text import RandomBlockSampler, TextDataModule, TokenBlocks


def _dm(root: Path, spec, rank: int = 0, world: int = 1, seed: int = 0, **kw) -> TextDataModule:
    dm = build_datamodule(DataConfig(name="text", root=str(root), **kw), spec, seed=seed)
    dm.trainer = types.SimpleNamespace(global_rank=rank, world_size=world)  # what Lightning sets
    dm.setup("fit")
    return dm


def test_train_batches_shape_and_shift(token_dir, gpt2_tiny):
    dm = _dm(token_dir, gpt2_tiny, batch_size=4, block_size=32)
    assert isinstance(dm, TextDataModule) and dm.vocab_size == 50257 and dm.num_classes is None
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.long
    # train.bin is 0..4999, so each row is a run of consecutive ids and y = x + 1.
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert int(x.max()) < 5000 - 1
    # block_size defaults to model.n_ctx (128 for gpt2-tiny); one epoch ~ train tokens // T blocks.
    dm = _dm(token_dir, gpt2_tiny, batch_size=2)
    loader = dm.train_dataloader()
    assert next(iter(loader))[0].shape == (2, 128) and len(loader) == (4999 // 128) // 2


def test_validation_walks_fixed_blocks(token_dir, gpt2_tiny):
    dm = _dm(token_dir, gpt2_tiny, batch_size=8, block_size=100)
    xs = torch.cat([x for x, _ in dm.val_dataloader()])
    assert xs.shape == (9, 100)  # (1000 - 1) // 100 non-overlapping blocks
    assert torch.equal(xs[:, 0], 10_000 + 100 * torch.arange(9))
    assert torch.equal(torch.cat([x for x, _ in dm.val_dataloader()]), xs)  # deterministic


def test_ranks_draw_different_blocks_and_epochs_differ(token_dir, gpt2_tiny):
    def starts(rank, seed=0):
        dm = _dm(token_dir, gpt2_tiny, rank=rank, world=2, seed=seed, batch_size=8, block_size=16)
        return next(iter(dm.train_dataloader()))[0][:, 0]

    r0, r1 = starts(0), starts(1)
    assert not torch.equal(r0, r1)
    assert torch.equal(r0, starts(0))  # same seed and rank: same blocks
    assert torch.equal(starts(1, seed=0), starts(0, seed=1))  # rank r uses seed + r
    sampler = RandomBlockSampler(1000, 50, seed=3)
    first, second = list(sampler), list(sampler)
    assert first != second  # the epoch advances by itself...
    sampler.set_epoch(0)
    assert list(sampler) == first  # ...and set_epoch (Lightning) replays an epoch exactly


def test_workers_do_not_copy_the_memmap(token_dir, gpt2_tiny):
    ds = TokenBlocks(token_dir / "train.bin", 16)
    ds[0]
    state = ds.__getstate__()
    assert state["_data"] is None and ds._data is not None
    dm = _dm(token_dir, gpt2_tiny, batch_size=4, block_size=16, num_workers=1)
    x, y = next(iter(dm.train_dataloader()))
    assert torch.equal(y, x + 1)


@pytest.mark.parametrize(
    "make, cls, message",
    [
        (lambda r: r.joinpath("train.bin").write_bytes(b""), DataFormatError, r"train\.bin: empty"),
        (lambda r: r.joinpath("val.bin").write_bytes(b"\x00" * 7), DataFormatError,
         r"val\.bin: 7 bytes is odd"),
        (lambda r: np.arange(10, dtype=np.uint16).tofile(r / "val.bin"), DataFormatError,
         r"val\.bin: 10 tokens, shorter than one block of 16 \+ 1"),
        (lambda r: r.joinpath("train.bin").unlink(), DataNotFoundError,
         r"train\.bin: token file not found; run `make data`"),
        (lambda r: r.joinpath("meta.json").write_text("{oops"), DataFormatError,
         r"meta\.json: not valid JSON"),
    ],
)
def test_bad_token_files_name_the_file(token_dir, gpt2_tiny, make, cls, message):
    make(token_dir)
    with pytest.raises(cls, match=message) as info:
        build_datamodule(DataConfig(name="text", root=str(token_dir), block_size=16), gpt2_tiny)
    assert str(token_dir) in str(info.value) and "\n" not in str(info.value)


def test_missing_folder_and_spec_checks(tmp_path, token_dir, gpt2_tiny):
    msg = r"nowhere: data folder not found; run `make data`.*data\.root"
    with pytest.raises(DataNotFoundError, match=msg):
        build_datamodule(DataConfig(name="brown", root=str(tmp_path / "nowhere")), gpt2_tiny)
    dm = build_datamodule(DataConfig(name="text", root=str(token_dir), block_size=256), gpt2_tiny)
    with pytest.raises(DataError, match=r"data\.block_size=256 exceeds model\.n_ctx=128"):
        dm.check_spec(gpt2_tiny)
    with pytest.raises(DataError, match=r"model\.vocab_size=100 < 50257"):
        dm.check_spec(gpt2_tiny.replace(vocab_size=100, n_ctx=256))


def test_real_brown_blocks(repo_root, gpt2_tiny):
    root = repo_root / "data" / "brown"
    if not (root / "train.bin").is_file():
        pytest.skip("data/brown not prepared (run `make data`)")
    dm = _dm(root, gpt2_tiny, batch_size=4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 128) and torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) <= 50256
    assert len(dm.val_set) == (dm.val_tokens - 1) // 128
