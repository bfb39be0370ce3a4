"""Image data: idx / CIFAR pickle / JPEG-folder readers, tensor transforms, DataModule, errors."""

from __future__ import annotations

import gzip
import pickle
import struct
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from logah.config.data import DataConfig
from logah.config.specs import get_preset
from logah.data import build_datamodule
from logah.data.errors import DataError, DataFormatError, DataNotFoundError
from logah.data.image_io import load_pickle, read_idx
from logah.data.images import ImageDataModule
from logah.data.transforms import ImageNetTransform, SmallImageTransform, random_resized_crop_box

VIT = get_preset("vit-tiny")  # 32 x 32, 3 channels, 10 classes


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


@pytest.fixture
def fmnist(tmp_path: Path) -> Path:
    """A 12-image (train) / 6-image (test) Fashion-MNIST in the 4 original idx.gz files."""
    root = tmp_path / "fmnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def _cifar(tmp_path: Path, n_classes: int, numpy1_names: bool = False) -> Path:
    root = tmp_path / f"c{n_classes}"
    sub = root / ("cifar-10-batches-py" if n_classes == 10 else "cifar-100-python")
    sub.mkdir(parents=True)
    key = "labels" if n_classes == 10 else "fine_labels"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if n_classes == 100:
        files = ["train", "test"]
    rng = np.random.default_rng(1)
    for name in files:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        batch = {"data": data, key: [0, 1, 2, n_classes - 1]}
        blob = pickle.dumps(batch, protocol=2)
        if numpy1_names:  # as written by NumPy 1.x (the real CIFAR files)
            blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (sub / name).write_bytes(blob)
    meta = "batches.meta" if n_classes == 10 else "meta"
    names_key = "label_names" if n_classes == 10 else "fine_label_names"
    (sub / meta).write_bytes(pickle.dumps({names_key: [f"class{i}" for i in range(n_classes)]}))
    return root


def _jpeg_folder(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "imagenet"
    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("n01", "n02"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40 + 7 * i, 56, 3), dtype=np.uint8)  # varied shapes
                Image.fromarray(arr).save(root / split / cls / f"img{i}.JPEG", quality=90)
    return root


def _batch(dm: ImageDataModule, train: bool = True):
    dm.trainer = types.SimpleNamespace(global_rank=0, world_size=1)
    dm.setup("fit")
    return next(iter(dm.train_dataloader() if train else dm.val_dataloader()))


@pytest.mark.parametrize("channels", [1, 3])
def test_fashion_mnist_32px_1_or_3_channels(fmnist, channels):
    cfg = DataConfig(name="fashion-mnist", root=str(fmnist), batch_size=4, channels=channels)
    dm = build_datamodule(cfg, VIT)
    assert isinstance(dm, ImageDataModule) and dm.num_classes == 10 and dm.vocab_size is None
    x, y = _batch(dm, train=False)
    assert x.shape == (4, channels, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.long and y.tolist() == [0, 1, 2, 3]
    raw = torch.from_numpy(read_idx(fmnist / "t10k-images-idx3-ubyte.gz")[:4]).float() / 255
    m, s = dm.mean[0], dm.std[0]
    # Validation: 2-pixel zero border, then exactly the normalised pixels; channels repeat grey.
    assert torch.allclose(x[:, 0, 2:30, 2:30], (raw - m) / s, atol=1e-5)
    assert torch.allclose(x[:, :, :2], torch.full_like(x[:, :, :2], -m / s))
    assert torch.equal(x[:, 0], x[:, -1])
    xt, yt = _batch(dm, train=True)  # augmented: same shape, still normalised pixel values
    assert xt.shape == (4, channels, 32, 32) and set(yt.tolist()) <= set(range(10))


def test_fashion_mnist_stats_and_resize(fmnist):
    dm = build_datamodule(DataConfig(name="fashion-mnist", root=str(fmnist), image_size=48,
                                     batch_size=12, augment=False), VIT)
    x, _ = _batch(dm)
    assert x.shape == (12, 3, 48, 48)
    raw = read_idx(fmnist / "train-images-idx3-ubyte.gz") / 255.0
    assert dm.mean[0] == pytest.approx(raw.mean()) and dm.std[0] == pytest.approx(raw.std(ddof=1))
    with pytest.raises(DataError, match=r"model\.image_size=32 but .* gives 48"):
        dm.check_spec(VIT)
    dm.check_spec(VIT.replace(image_size=48))


@pytest.mark.parametrize("n_classes, numpy1", [(10, True), (100, False)])
def test_cifar_pickles(tmp_path, n_classes, numpy1):
    root = _cifar(tmp_path, n_classes, numpy1_names=numpy1)
    name = f"cifar{n_classes}"
    dm = build_datamodule(DataConfig(name=name, root=str(root), batch_size=4, augment=False), VIT)
    assert dm.num_classes == n_classes and dm.classes[1] == "class1"
    x, y = _batch(dm, train=False)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 1, 2, n_classes - 1]
    test_file = "cifar-10-batches-py/test_batch" if n_classes == 10 else "cifar-100-python/test"
    rgb = load_pickle(root / test_file)["data"].reshape(4, 3, 32, 32) / 255.0  # R, G, B planes
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    assert torch.allclose(x, (torch.from_numpy(rgb).float() - mean) / std, atol=1e-5)
    assert len(dm.train_set) == (20 if n_classes == 10 else 4) and len(dm.val_set) == 4
    # Grey from RGB: luma weights, one channel.
    dm1 = build_datamodule(DataConfig(name=name, root=str(root), batch_size=4, channels=1), VIT)
    assert _batch(dm1, train=False)[0].shape == (4, 1, 32, 32)


def test_imagenet_folder_decoded_in_workers(tmp_path):
    root = _jpeg_folder(tmp_path)
    cfg = DataConfig(name="imagenet", root=str(root), batch_size=2, num_workers=1, image_size=32)
    dm = build_datamodule(cfg, VIT)
    assert dm.num_classes == 2 and dm.classes == ["n01", "n02"]
    x, y = _batch(dm, train=True)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    xv, yv = _batch(dm, train=False)
    assert xv.shape == (2, 3, 32, 32) and yv.tolist() == [0, 1]
    assert -2.2 < float(xv.min()) and float(xv.max()) < 2.7  # ImageNet-normalised range


def test_transforms_shapes_and_normalisation():
    torch.manual_seed(0)
    img = torch.full((3, 40, 60), 255, dtype=torch.uint8)
    tf = ImageNetTransform(size=24, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = tf(img)
    assert out.shape == (3, 24, 24) and torch.allclose(out, torch.full_like(out, 2.0))
    train = ImageNetTransform(size=24, channels=1, mean=(0.0,), std=(1.0,), augment=True)
    assert train(img).shape == (1, 24, 24) and torch.allclose(train(img), torch.ones(1, 24, 24))
    for _ in range(50):  # crop boxes always lie inside the image
        top, left, h, w = random_resized_crop_box(40, 60)
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 60 and h > 0 and w > 0
    grad = torch.arange(28, dtype=torch.uint8).repeat(1, 28, 1)  # (1, 28, 28), values = column
    small = SmallImageTransform(size=32, channels=1, mean=(0.0,), std=(1.0,), pad_side=32)
    out = small(grad)
    assert out.shape == (1, 32, 32) and torch.equal(out[0, 5, 2:30] * 255, torch.arange(28.0))
    flipped = SmallImageTransform(32, 1, (0.0,), (1.0,), augment=True, pad_side=32)
    assert flipped(grad).shape == (1, 32, 32)


def test_bad_idx_and_pickles_name_the_file(tmp_path, fmnist):
    bad = tmp_path / "bad-idx.gz"
    bad.write_bytes(gzip.compress(b"\x01\x02\x08\x01\x00\x00\x00\x05abc"))
    with pytest.raises(DataFormatError, match=r"bad-idx\.gz: not an idx file"):
        read_idx(bad)
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abc"))
    with pytest.raises(DataFormatError, match=r"bad-idx\.gz: 3 data bytes, the header \[5\] says"):
        read_idx(bad)
    bad.write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(DataFormatError, match=r"bad-idx\.gz: cannot read"):
        read_idx(bad)
    evil = tmp_path / "evil_batch"
    evil.write_bytes(pickle.dumps({"data": types.SimpleNamespace()}))
    with pytest.raises(DataFormatError, match=r"evil_batch: not a CIFAR python pickle .*allowed"):
        load_pickle(evil)
    evil.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataFormatError, match=r"evil_batch: expected a pickled dict"):
        load_pickle(evil)
    (fmnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz: Fashion-MNIST file"):
        build_datamodule(DataConfig(name="fashion-mnist", root=str(fmnist)), VIT)


def test_bad_folders_one_clear_line(tmp_path):
    empty = tmp_path / "inet"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"inet/train: no class folders"):
        build_datamodule(DataConfig(name="imagenet", root=str(empty)), VIT)
    with pytest.raises(DataNotFoundError, match=r"nowhere: data folder not found; set data\.root"):
        build_datamodule(DataConfig(name="cifar10", root=str(tmp_path / "nowhere")), VIT)
    with pytest.raises(DataError, match=r"data\.channels: must be 1 or 3, got 2"):
        build_datamodule(DataConfig(name="imagenet", root=str(empty), channels=2), VIT)
    root = _jpeg_folder(tmp_path)
    (root / "val" / "n03").mkdir()
    dm = build_datamodule(DataConfig(name="imagenet", root=str(root), batch_size=2), VIT)
    with pytest.raises(DataFormatError, match=r"val/n03: class not among the training classes"):
        dm.setup("fit")


def test_corrupt_image_in_a_worker_is_one_line(tmp_path):
    root = _jpeg_folder(tmp_path)
    for p in (root / "val").rglob("*.JPEG"):
        p.write_bytes(b"not a jpeg")
    cfg = DataConfig(name="imagenet", root=str(root), batch_size=2, image_size=32)
    dm = build_datamodule(cfg, VIT)
    dm.setup("fit")
    # A plain (non-persistent) worker loader: torch re-raises the worker's error in this process
    # with its traceback in the message; DataError keeps only the original line.
    batches = iter(torch.utils.data.DataLoader(dm.val_set, batch_size=2, num_workers=1))
    try:
        with pytest.raises(DataFormatError) as info:
            next(batches)
        msg = str(info.value)
    finally:
        batches._shutdown_workers()  # the traceback keeps the iterator alive past this test
    assert "\n" not in msg and msg.startswith(str(root / "val" / "n01" / "img0.JPEG"))
    assert msg.endswith("cannot decode image (cannot identify image file " + repr(
        str(root / "val" / "n01" / "img0.JPEG")) + ")")


def test_real_fashion_mnist(repo_root):
    root = repo_root / "data" / "fashion-mnist"
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("data/fashion-mnist not present (run `make data`)")
    dm = build_datamodule(DataConfig(name="fashion-mnist", root=str(root), batch_size=8), VIT)
    x, y = _batch(dm)
    assert len(dm.train_set) == 60_000 and len(dm.val_set) == 10_000
    assert x.shape == (8, 3, 32, 32) and dm.mean[0] == pytest.approx(0.286, abs=2e-3)
    assert torch.bincount(dm.train_set.labels, minlength=10).tolist() == [6000] * 10
