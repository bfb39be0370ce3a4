"""``data.*`` config group: the task data (tokens or images)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from logah.config.checked import Checked, choices
from logah.config.errors import ConfigError

TEXT_DATASETS = ("brown", "text")
IMAGE_DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagenet")


@dataclass
class DataConfig(Checked):
    """Which dataset and how to batch it.

    ``name``: ``brown`` (default LM corpus, made by ``make data``), ``text`` (any folder holding
    ``train.bin``/``val.bin`` from ``logah prepare-text``), ``fashion-mnist`` (default images),
    ``cifar10``/``cifar100`` (python-pickle folders) or ``imagenet`` (``train/<class>/*``,
    ``val/<class>/*``). ``root`` defaults to ``data/<name>`` (for Fashion-MNIST, the Debian
    package's ``/usr/share/datasets/fashion-mnist`` when ``data/fashion-mnist`` is absent).
    ``batch_size`` is per device; ``num_workers`` > 0 loads in worker processes, each batch bounded by
    ``timeout_s``. See ``docs/data.md``.
    """

    KEY = "data"

    name: str = field(default="brown", metadata=choices(*TEXT_DATASETS, *IMAGE_DATASETS))
    root: Optional[str] = None
    batch_size: int = 16
    block_size: Optional[int] = None  # text: tokens per sample, default model.n_ctx
    train_blocks: Optional[int] = None  # text: random blocks per epoch, default train tokens // T
    image_size: Optional[int] = None  # images: side in pixels, default model.image_size
    channels: Optional[int] = None  # images: 1 or 3, default model.in_chans
    num_workers: int = 0
    # With workers: seconds a batch may take before the run stops with an error naming the data
    # (a stalled worker otherwise waits forever); 0 waits forever.
    timeout_s: float = 120.0
    augment: bool = True  # images, training split: random crop + flip (random-resized for folders)

    def check(self) -> None:
        for key in ("num_workers", "timeout_s"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key}: must be >= 0, got {getattr(self, key)}")

    def resolved_root(self) -> str:
        return self.root if self.root is not None else f"data/{self.name}"
