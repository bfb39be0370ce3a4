"""Image transforms on tensors (no torchvision): crop, flip, resize, channel conversion, normalise.

Inputs are uint8 tensors ``(C, H, W)``; outputs float32 ``(C', S, S)`` normalised per channel.
Randomness uses torch's global generator, which DataLoader seeds per worker (and Lightning's
``seed_everything`` seeds in the main process), so augmentation is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, what Pillow's "L" mode uses
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_channels(img: torch.Tensor, channels: int) -> torch.Tensor:
    """``(C, H, W)`` -> ``(channels, H, W)``: grey repeated to RGB, or RGB to luma grey."""
    c = img.shape[0]
    if c == channels:
        return img
    if c == 1 and channels == 3:
        return img.expand(3, -1, -1)
    if c == 3 and channels == 1:
        weights = torch.tensor(LUMA, dtype=torch.float32).view(3, 1, 1)
        return (img.float() * weights).sum(0, keepdim=True)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float ``(C, H, W)`` to ``size`` (antialiased when shrinking)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    out = F.interpolate(img[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0]


def pad_to(img: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-pad ``(C, H, W)`` symmetrically to at least ``side`` x ``side`` (28 -> 32 for MNIST)."""
    h, w = img.shape[-2:]
    dh, dw = max(side - h, 0), max(side - w, 0)
    return F.pad(img, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)) if dh or dw else img


def random_crop(img: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop back to the original size at random."""
    h, w = img.shape[-2:]
    padded = F.pad(img, (padding,) * 4)
    top, left = (int(torch.randint(0, 2 * padding + 1, ())) for _ in range(2))
    return padded[..., top : top + h, left : left + w]


def random_hflip(img: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    return img.flip(-1) if float(torch.rand(())) < p else img


def random_resized_crop_box(
    h: int, w: int, scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of an Inception-style crop: random area share and aspect.

    Ten tries to fit a crop of area ``U(scale) * h * w`` and log-uniform aspect ``ratio``; if none
    fits, the largest centred crop whose aspect lies within ``ratio``.
    """
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * float(torch.empty(()).uniform_(*scale))
        aspect = math.exp(float(torch.empty(()).uniform_(log_lo, log_hi)))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, ()))
            left = int(torch.randint(0, w - cw + 1, ()))
            return top, left, ch, cw
    aspect = w / h
    if aspect < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif aspect > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def center_crop(img: torch.Tensor, side: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return img[..., top : top + side, left : left + side]


def resize_shorter(img: torch.Tensor, side: int) -> torch.Tensor:
    """Resize so the shorter side is ``side``, keeping the aspect ratio."""
    h, w = img.shape[-2:]
    s = side / min(h, w)
    return resize(img, (max(side, round(h * s)), max(side, round(w * s))))


def normalize(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=img.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=img.dtype).view(-1, 1, 1)
    return (img - m) / s


@dataclass(frozen=True)
class SmallImageTransform:
    """Fashion-MNIST / CIFAR: uint8 ``(C, h, w)`` -> float ``(channels, size, size)``.

    Order: to ``channels`` in [0, 1]; zero-pad to ``pad_side`` (28 -> 32); when ``augment``,
    random crop with 4-pixel padding and horizontal flip (the usual CIFAR recipe); resize to
    ``size``; normalise with the training set's per-channel ``mean``/``std``.
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    pad_side: int = 0

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = to_channels(img.float() / 255.0, self.channels)
        x = pad_to(x, self.pad_side)
        if self.augment:
            x = random_hflip(random_crop(x, padding=4))
        x = resize(x, (self.size, self.size))
        return normalize(x, self.mean, self.std)


@dataclass(frozen=True)
class ImageNetTransform:
    """Folder images: uint8 ``(C, H, W)`` -> float ``(channels, size, size)``.

    Training (``augment``): random-resized crop (scale 0.08-1, aspect 3/4-4/3) and horizontal
    flip. Evaluation: shorter side to ``size / 0.875``, centre crop. Then normalise.
    """

    size: int
    channels: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    augment: bool = False

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = to_channels(img, self.channels)
        if self.augment:
            top, left, h, w = random_resized_crop_box(*x.shape[-2:])
            crop = x[..., top : top + h, left : left + w].float() / 255.0
            x = random_hflip(resize(crop, (self.size, self.size)))
        else:
            x = resize_shorter(x.float() / 255.0, round(self.size / 0.875))
            x = center_crop(x, self.size)
        return normalize(x, self.mean, self.std)


def channel_stats(
    images: torch.Tensor, channels: int, max_images: int = 10_000
) -> tuple[tuple, tuple]:
    """Per-channel mean/std in [0, 1] units of uint8 images ``(N, C, H, W)`` after ``to_channels``.

    Uses an evenly spaced subset of at most ``max_images`` images (deterministic).
    """
    step = max(1, len(images) // max_images)
    sub = images[::step].float() / 255.0  # (n, C, H, W)
    if sub.shape[1] == 3 and channels == 1:
        sub = (sub * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif sub.shape[1] == 1 and channels == 3:
        sub = sub.expand(-1, 3, -1, -1)
    flat = sub.transpose(0, 1).reshape(channels, -1).double()
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp_min(1e-6).tolist())


def imagenet_stats(channels: int) -> tuple[tuple, tuple]:
    """ImageNet's per-channel mean/std; for grey images their luma-weighted combination."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    luma = lambda v: (sum(w * x for w, x in zip(LUMA, v)),)  # noqa: E731
    return luma(IMAGENET_MEAN), luma(IMAGENET_STD)
