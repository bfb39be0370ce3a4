"""Readers for the image datasets: idx (Fashion-MNIST), CIFAR python pickles, class folders.

Every reader returns uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)`` as numpy arrays (or
file lists for folders, decoded later in DataLoader workers) and turns malformed input into one
:class:`DataFormatError` line naming the file.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from logah.data.errors import DataFormatError, DataNotFoundError

# ---- idx (LeCun's MNIST format, used by Fashion-MNIST) ----------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (maybe gzipped): magic ``00 00 <dtype> <ndim>``, big-endian int32 dims, data.

    Raises:
        DataFormatError: bad magic, unknown dtype, or a size that does not match the header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFormatError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFormatError(f"{path}: not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: idx header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) - header != int(np.prod(shape)) * dtype.itemsize:
        raise DataFormatError(
            f"{path}: {len(raw) - header} data bytes, the header {list(shape)} says "
            f"{int(np.prod(shape)) * dtype.itemsize}"
        )
    # bytearray: a writable buffer, so torch.from_numpy can share it without a warning.
    return np.frombuffer(bytearray(raw), dtype=dtype, offset=header).reshape(shape)


def find_idx_file(root: Path, stem: str) -> Path:
    """``root/stem.gz`` or ``root/stem``; a clear error naming the missing file."""
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataNotFoundError(
        f"{root / stem}.gz: Fashion-MNIST file not found; run `make data` or set data.root=DIR "
        "holding the 4 idx files"
    )


def load_fashion_mnist(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of ``split`` (train/val)."""
    img_path, lab_path = (find_idx_file(Path(root), s) for s in FASHION_MNIST_FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(f"{img_path}: expected uint8 images (N, H, W), got {images.shape}")
    if labels.shape != (len(images),):
        raise DataFormatError(f"{lab_path}: {labels.shape[0]} labels for {len(images)} images")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataFormatError(f"{lab_path}: label {labels.max()} out of range 0..9")
    return images[:, None], labels.astype(np.int64)


# ---- CIFAR-10 / CIFAR-100 python pickles ------------------------------------------------------
CIFAR_LAYOUT = {  # classes -> (sub-folder, train files, test file, meta file, label key, names key)
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
         "batches.meta", "labels", "label_names"),
    100: ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names"),
}
_NUMPY_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Loads dicts of lists/strings/numpy arrays only: a CIFAR file cannot run arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.", 1)  # NumPy 1.x pickles
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with ``str`` keys (Python 2 pickles: bytes decoded as latin-1)."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataFormatError(f"{path}: not a CIFAR python pickle ({e})") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def cifar_dir(root: str | Path, num_classes: int) -> Path:
    """``root`` itself or its standard sub-folder (``cifar-10-batches-py``/``cifar-100-python``)."""
    root = Path(root)
    sub = root / CIFAR_LAYOUT[num_classes][0]
    return sub if sub.is_dir() else root


def load_cifar(root: str | Path, num_classes: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10/100 images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 (train/val)."""
    _, train_files, test_file, _, label_key, _ = CIFAR_LAYOUT[num_classes]
    folder = cifar_dir(root, num_classes)
    images, labels = [], []
    for name in train_files if split == "train" else [test_file]:
        path = folder / name
        if not path.is_file():
            raise DataNotFoundError(f"{path}: CIFAR file not found (set data.root=DIR)")
        batch = load_pickle(path)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            lab = np.asarray(batch[label_key], dtype=np.int64)
        except KeyError as e:
            raise DataFormatError(f"{path}: no {e.args[0]!r} entry") from e
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or lab.shape != (len(data),):
            raise DataFormatError(f"{path}: data {data.shape}, labels {lab.shape}: not CIFAR")
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise DataFormatError(f"{path}: label {lab.max()} out of range 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are R plane, G plane, B plane
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def cifar_classes(root: str | Path, num_classes: int) -> list[str]:
    """Class names from the meta pickle (``[]`` if it is absent)."""
    _, _, _, meta, _, names_key = CIFAR_LAYOUT[num_classes]
    path = cifar_dir(root, num_classes) / meta
    return [str(n) for n in load_pickle(path).get(names_key, [])] if path.is_file() else []


# ---- class folders (ImageNet layout) ----------------------------------------------------------
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif")


def list_classes(split_dir: Path) -> list[str]:
    """Sorted class sub-folder names of ``split_dir`` (``train/<class>/...``)."""
    if not split_dir.is_dir():
        raise DataNotFoundError(
            f"{split_dir}: folder not found; expected {split_dir.parent}/{{train,val}}/<class>/"
            "<image> (set data.root=DIR)"
        )
    with os.scandir(split_dir) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataFormatError(f"{split_dir}: no class folders (expected <class>/<image> inside)")
    return classes


def scan_folder(split_dir: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Image paths (a compact numpy string array) and labels for ``split_dir/<class>/*``.

    A class missing from ``split_dir`` is allowed (e.g. a partial val set); a class folder that is
    present but holds no images, or one not in ``classes``, is an error.
    """
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    for name in list_classes(split_dir):
        if name not in index:
            raise DataFormatError(f"{split_dir / name}: class not among the training classes")
        with os.scandir(split_dir / name) as it:
            files = sorted(
                e.path for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
            )
        if not files:
            raise DataFormatError(f"{split_dir / name}: class folder holds no images")
        paths += files
        labels += [index[name]] * len(files)
    # One numpy string array instead of a list of str: no per-object refcounts for forked workers.
    return np.array(paths), np.array(labels, dtype=np.int64)
