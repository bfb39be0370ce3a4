"""Image classification DataModule: Fashion-MNIST (default), CIFAR-10/100, ImageNet-style folders.

Batches are ``(x, y)``: ``x`` float32 ``(B, C, S, S)`` normalised, ``y`` int64 ``(B,)``; ``C`` and
``S`` come from ``data.channels`` / ``data.image_size`` or the model's ``in_chans`` /
``image_size``. The validation split is each dataset's test split (Fashion-MNIST ``t10k``,
CIFAR ``test``, ImageNet ``val/``). Folder images are decoded with Pillow inside the DataLoader
workers; every transform runs on tensors (:mod:`logah.data.transforms`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from logah.config.data import DataConfig
from logah.config.specs import ModelSpec
from logah.data import image_io
from logah.data.errors import DataError, DataFormatError, DataNotFoundError
from logah.data.loader import task_loader
from logah.data.transforms import (
    ImageNetTransform,
    SmallImageTransform,
    channel_stats,
    imagenet_stats,
)

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
_HOW = {
    "fashion-mnist": "run `make data` or set data.root=DIR holding Fashion-MNIST's 4 idx .gz files",
    "cifar10": "set data.root=DIR holding CIFAR-10's python pickles (cifar-10-batches-py)",
    "cifar100": "set data.root=DIR holding CIFAR-100's python pickles (cifar-100-python)",
    "imagenet": "set data.root=DIR holding train/<class>/<image> and val/<class>/<image>",
}


class ArrayImages(Dataset):
    """In-memory uint8 images ``(N, C, H, W)`` with labels ``(N,)``; transformed per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def decode_image(path: str, channels: int, draft: Optional[int] = None) -> torch.Tensor:
    """Pillow-decode ``path`` to uint8 ``(channels, H, W)`` (``L`` or ``RGB``).

    ``draft`` lets the JPEG decoder downscale by a power of two while keeping both sides
    ``>= draft`` (a large speed-up for evaluation crops).
    """
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as im:
            if draft:
                im.draft(mode, (draft, draft))
            arr = np.array(im.convert(mode))  # a writable copy, (H, W) or (H, W, 3)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataFormatError(f"{path}: cannot decode image ({e})") from e
    t = torch.from_numpy(arr)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


class FolderImages(Dataset):
    """Images listed as file paths, decoded on access (in DataLoader workers)."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, transform: ImageNetTransform) -> None:
        self.paths, self.labels, self.transform = paths, torch.from_numpy(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.transform
        draft = None if t.augment else round(t.size / 0.875)
        return t(decode_image(str(self.paths[i]), t.channels, draft)), self.labels[i]


def _default_root(cfg: DataConfig) -> Path:
    root = Path(cfg.resolved_root())
    if cfg.root is None and cfg.name == "fashion-mnist" and not root.is_dir():
        if SYSTEM_FASHION_MNIST.is_dir():  # installed by apt but not copied by `make data`
            return SYSTEM_FASHION_MNIST
    return root


class ImageDataModule(L.LightningDataModule):
    """Image batches for ``data.name``: ``fashion-mnist``, ``cifar10``, ``cifar100``, ``imagenet``.

    Attributes:
        num_classes: classes in the dataset (:meth:`check_spec` compares ``model.num_classes``).
        classes: class names (may be empty for CIFAR without its meta file).
        image_size, channels: the output ``S`` and ``C``.
        mean, std: per-channel normalisation (training-set statistics; ImageNet's for folders).
        vocab_size: ``None`` (images).
    """

    def __init__(self, cfg: DataConfig, spec: ModelSpec, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, int(seed)
        self.name = cfg.name
        self.root = _default_root(cfg)
        self.image_size = int(cfg.image_size or spec.image_size)
        self.channels = int(cfg.channels or spec.in_chans)
        if self.channels not in (1, 3):
            raise DataError(f"data.channels: must be 1 or 3, got {self.channels}")
        if self.image_size < 1:
            raise DataError(f"data.image_size: must be >= 1, got {self.image_size}")
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: data folder not found; {_HOW[self.name]}")
        self.vocab_size: Optional[int] = None
        self.classes: list[str] = self._check_files()
        self.num_classes = len(self.classes)
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None

    def _check_files(self) -> list[str]:
        """Cheap checks before any training starts; returns the class names."""
        if self.name == "fashion-mnist":
            for stems in image_io.FASHION_MNIST_FILES.values():
                for stem in stems:
                    image_io.find_idx_file(self.root, stem)
            return list(image_io.FASHION_MNIST_CLASSES)
        if self.name in ("cifar10", "cifar100"):
            n = 10 if self.name == "cifar10" else 100
            _, train_files, test_file, *_ = image_io.CIFAR_LAYOUT[n]
            folder = image_io.cifar_dir(self.root, n)
            for name in [*train_files, test_file]:
                if not (folder / name).is_file():
                    raise DataNotFoundError(
                        f"{folder / name}: CIFAR file not found; {_HOW[self.name]}"
                    )
            names = image_io.cifar_classes(self.root, n)
            return names if len(names) == n else [str(i) for i in range(n)]
        if self.name == "imagenet":
            return image_io.list_classes(self.root / "train")
        raise DataError(f"data.name: {self.name!r} is not an image dataset")

    def check_spec(self, spec: ModelSpec) -> None:
        """Raise :class:`DataError` if ``spec`` does not fit these images (classes, size, chans)."""
        for key, model, data in (
            ("num_classes", spec.num_classes, self.num_classes),
            ("image_size", spec.image_size, self.image_size),
            ("in_chans", spec.in_chans, self.channels),
        ):
            if model != data:
                raise DataError(f"model.{key}={model} but {self.root} gives {data}")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        if self.name == "imagenet":
            self._setup_folders()
        else:
            self._setup_arrays()

    def _load_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "fashion-mnist":
            return image_io.load_fashion_mnist(self.root, split)
        return image_io.load_cifar(self.root, 10 if self.name == "cifar10" else 100, split)

    def _setup_arrays(self) -> None:
        (xtr, ytr), (xva, yva) = self._load_arrays("train"), self._load_arrays("val")
        train_images = torch.from_numpy(np.ascontiguousarray(xtr))
        self.mean, self.std = channel_stats(train_images, self.channels)
        pad = 32 if self.name == "fashion-mnist" else 0  # 28 x 28 -> 32 x 32, the LeNet padding
        kw: dict[str, Any] = dict(size=self.image_size, channels=self.channels, mean=self.mean,
                                  std=self.std, pad_side=pad)
        train_tf = SmallImageTransform(augment=self.cfg.augment, **kw)
        self.train_set = ArrayImages(train_images, torch.from_numpy(ytr), train_tf)
        self.val_set = ArrayImages(
            torch.from_numpy(np.ascontiguousarray(xva)), torch.from_numpy(yva),
            SmallImageTransform(augment=False, **kw),
        )

    def _setup_folders(self) -> None:
        self.mean, self.std = imagenet_stats(self.channels)
        kw: dict[str, Any] = dict(size=self.image_size, channels=self.channels, mean=self.mean,
                                  std=self.std)
        paths, labels = image_io.scan_folder(self.root / "train", self.classes)
        train_tf = ImageNetTransform(augment=self.cfg.augment, **kw)
        self.train_set = FolderImages(paths, labels, train_tf)
        paths, labels = image_io.scan_folder(self.root / "val", self.classes)
        self.val_set = FolderImages(paths, labels, ImageNetTransform(augment=False, **kw))

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        rank = int(getattr(self.trainer, "global_rank", 0) or 0)
        gen = torch.Generator().manual_seed(self.seed + rank)  # order + worker augmentation seeds
        return task_loader(self.train_set, self.cfg, f"{self.root} (train)", shuffle=True,
                           drop_last=True, generator=gen)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return task_loader(self.val_set, self.cfg, f"{self.root} (val)", shuffle=False)
