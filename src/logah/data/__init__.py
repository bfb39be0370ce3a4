"""Task data: GPT-2 token memmaps and image datasets as Lightning DataModules.

``build_datamodule(data_cfg, spec, seed)`` is the one entry point trainers use. Submodules are
imported lazily so ``logah prepare-text`` and the tokenizer never pay for torch/Lightning imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logah.data.errors import DataError, DataFormatError, DataNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    import lightning

    from logah.config.data import DataConfig
    from logah.config.specs import ModelSpec

__all__ = [
    "ArchitectureDataModule",
    "DataError",
    "DataFormatError",
    "DataNotFoundError",
    "ImageDataModule",
    "TextDataModule",
    "build_datamodule",
]

_LAZY = {"TextDataModule": "logah.data.text", "ImageDataModule": "logah.data.images",
         "ArchitectureDataModule": "logah.data.arch"}


def build_datamodule(
    data_cfg: DataConfig, spec: ModelSpec, seed: int = 0
) -> lightning.LightningDataModule:
    """The DataModule for ``data_cfg.name``: token blocks (``brown``, ``text``) or images.

    Args:
        data_cfg: the ``data.*`` config group.
        spec: the model the data feeds (default block size, image size, channels).
        seed: base seed; the training sampler of global rank ``r`` uses ``seed + r``.

    Returns:
        A :class:`TextDataModule` or :class:`ImageDataModule`, with ``num_classes`` and
        ``vocab_size`` attributes (``None`` where they do not apply).

    Raises:
        DataError: the data folder is missing or malformed (one line naming the path).
    """
    from logah.config.data import TEXT_DATASETS

    if data_cfg.name in TEXT_DATASETS:
        from logah.data.text import TextDataModule

        return TextDataModule(data_cfg, spec, seed=seed)
    from logah.data.images import ImageDataModule

    return ImageDataModule(data_cfg, spec, seed=seed)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'logah.data' has no attribute {name!r}")
