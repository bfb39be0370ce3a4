"""Token blocks for causal LM training from nanoGPT-style ``train.bin`` / ``val.bin`` memmaps.

Training draws random blocks: :class:`TokenBlocks` indexes every token offset and
:class:`RandomBlockSampler` (main process, seeded with ``seed + global_rank`` and the epoch) picks
offsets, so each DDP rank draws different blocks, with or without Lightning's sampler wrapper, and
``num_workers`` never duplicates blocks. Validation walks fixed, non-overlapping blocks in order
(the ``DistributedSampler`` Lightning inserts shards them across ranks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from logah.config.data import DataConfig
from logah.config.specs import ModelSpec
from logah.data.errors import DataError, DataFormatError, DataNotFoundError
from logah.data.loader import task_loader
from logah.data.tokenizer import VOCAB_SIZE

HOW_TO_MAKE = (
    "run `make data` (Brown corpus) or `logah prepare-text SRC --out DIR` and set data.root=DIR"
)


def check_token_file(path: Path, block_size: int) -> int:
    """Number of uint16 tokens in ``path``; one clear error if it cannot feed one block.

    Raises:
        DataNotFoundError: the file is missing.
        DataFormatError: empty, odd-sized (not uint16), or shorter than ``block_size + 1`` tokens.
    """
    if not path.is_file():
        raise DataNotFoundError(f"{path}: token file not found; {HOW_TO_MAKE}")
    size = path.stat().st_size
    if size == 0:
        raise DataFormatError(f"{path}: empty token file; re-run `logah prepare-text`")
    if size % 2:
        raise DataFormatError(f"{path}: {size} bytes is odd, so not a uint16 token file")
    n = size // 2
    if n < block_size + 1:
        raise DataFormatError(
            f"{path}: {n} tokens, shorter than one block of {block_size} + 1; "
            "lower data.block_size or add text"
        )
    return n


def read_meta(root: Path) -> dict[str, Any]:
    """``root/meta.json`` from ``logah prepare-text`` (``{}`` when absent, e.g. nanoGPT files)."""
    path = root / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("dtype", "uint16") != "uint16":
        raise DataFormatError(f"{path}: expected a JSON object with dtype 'uint16'")
    return meta


class TokenBlocks(Dataset):
    """Item ``i`` is ``(x, y)``, LongTensors ``(T,)``: ``x = tokens[o:o+T]``,
    ``y = tokens[o+1:o+T+1]``, ``o = i * stride``. ``stride=1`` indexes every offset (random training blocks),
    ``stride=T`` the non-overlapping blocks (validation).
    """

    def __init__(self, path: str | Path, block_size: int, stride: int = 1) -> None:
        self.path = Path(path)
        self.block_size, self.stride = int(block_size), int(stride)
        self.n_tokens = check_token_file(self.path, self.block_size)
        self._data: Optional[np.memmap] = None  # opened lazily in each (worker) process

    def __len__(self) -> int:
        return (self.n_tokens - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._data is None:
            self._data = np.memmap(self.path, dtype=np.uint16, mode="r")
        o = int(i) * self.stride
        chunk = torch.from_numpy(self._data[o : o + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None  # a pickled memmap would copy the whole file into the worker
        return state


class RandomBlockSampler(Sampler[int]):
    """``num_samples`` uniform random indices of ``[0, num_offsets)`` per epoch.

    The draw depends only on ``(seed, epoch)``: Lightning calls :meth:`set_epoch` each epoch
    (also through its ``DistributedSamplerWrapper``); without it the epoch advances by itself.
    """

    def __init__(self, num_offsets: int, num_samples: int, seed: int) -> None:
        self.num_offsets, self.num_samples = int(num_offsets), int(num_samples)
        self.seed = int(seed) % 2**63
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        yield from rng.integers(0, self.num_offsets, size=self.num_samples).tolist()


class TextDataModule(L.LightningDataModule):
    """Causal-LM batches ``(x, y)``: LongTensors ``(B, T)``; ``y`` is ``x`` shifted left by one.

    Attributes:
        root: the folder holding ``train.bin``, ``val.bin`` (and optionally ``meta.json``).
        block_size: ``T`` (``data.block_size``, default ``model.n_ctx``).
        vocab_size: the tokenizer's vocabulary (from ``meta.json``, default GPT-2's 50257).
        num_classes: ``None`` (text).
    """

    def __init__(self, cfg: DataConfig, spec: ModelSpec, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, int(seed)
        self.root = Path(cfg.resolved_root())
        self.block_size = int(cfg.block_size or spec.n_ctx)
        if self.block_size < 1:
            raise DataError(f"data.block_size: must be >= 1, got {self.block_size}")
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: data folder not found; {HOW_TO_MAKE}")
        self.meta = read_meta(self.root)
        self.vocab_size: int = int(self.meta.get("vocab_size", VOCAB_SIZE))
        self.num_classes: Optional[int] = None
        # Fail now, before a trainer starts, if a file cannot feed one block.
        self.train_tokens = check_token_file(self.root / "train.bin", self.block_size)
        self.val_tokens = check_token_file(self.root / "val.bin", self.block_size)
        self.train_set: Optional[TokenBlocks] = None
        self.val_set: Optional[TokenBlocks] = None
        self.rank, self.world_size = 0, 1

    def check_spec(self, spec: ModelSpec) -> None:
        """Raise :class:`DataError` if ``spec`` cannot consume these blocks (vocab, context)."""
        if spec.vocab_size < self.vocab_size:
            raise DataError(
                f"model.vocab_size={spec.vocab_size} < {self.vocab_size}, "
                f"the vocabulary of {self.root}"
            )
        if spec.n_ctx < self.block_size:
            raise DataError(f"data.block_size={self.block_size} exceeds model.n_ctx={spec.n_ctx}")

    def setup(self, stage: Optional[str] = None) -> None:
        # Lightning attaches the trainer before setup(): its global rank seeds this rank's sampler.
        trainer = self.trainer
        self.rank = int(getattr(trainer, "global_rank", 0) or 0)
        self.world_size = int(getattr(trainer, "world_size", 1) or 1)
        self.train_set = TokenBlocks(self.root / "train.bin", self.block_size, stride=1)
        self.val_set = TokenBlocks(self.root / "val.bin", self.block_size, stride=self.block_size)

    def train_blocks_per_epoch(self) -> int:
        """Random blocks per epoch over all ranks: ``data.train_blocks`` or train tokens // T."""
        n = self.cfg.train_blocks or (self.train_tokens - 1) // self.block_size
        return max(int(n), self.cfg.batch_size * self.world_size)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        sampler = RandomBlockSampler(
            len(self.train_set), self.train_blocks_per_epoch(), seed=self.seed + self.rank
        )
        return task_loader(self.train_set, self.cfg, f"{self.root} (train)", sampler=sampler,
                           drop_last=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        return task_loader(self.val_set, self.cfg, f"{self.root} (val)", shuffle=False)
