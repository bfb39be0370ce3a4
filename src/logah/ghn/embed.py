"""Node input of every GHN: primitive-type embedding + shape embedding (GHN-2/3, LoGAH).

The shape embedding looks up the four entries of ``node_shape`` (out, in, kh, kw) in two
vocabularies (channels for out/in, spatial for kh/kw), ``hid/4`` wide each, and concatenates them.
Sizes not in a vocabulary map to the nearest entry (size 2 maps to 3 as in the reference); nodes
without a parameter (all-zero shape) use a dedicated "dummy" row, the last one of each table.

Every structural lookup table of a GHN (these and the Graphormer's degree, distance-from-input and
pair-distance tables) is a :class:`TrainedEmbedding`: it records which rows training has read, and
outside training a row that was never trained reads the nearest trained row instead (by size in
log scale, or by distance). A random init row carries no information, so a size or depth the GHN
never saw (a wider or deeper target) otherwise gets noise as its feature (the measured cause of
wider held-out ViTs scoring worse than random init). ``ghn.size_lookup=vocab`` turns the fallback
off (the reference's behaviour).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class TrainedEmbedding(nn.Embedding):
    """``nn.Embedding`` that falls back to the nearest *trained* row outside training.

    Args:
        num, dim: table size.
        keys: a sortable position per row (default: the row index); "nearest" is by key.
        keep: a row never remapped (a dummy row), or None.

    Attributes:
        trained: bool buffer (num,), saved with the weights: rows a training forward has read
            (``module.training`` and grad enabled). Under DDP, rank 0's record is the one kept.
        fallback: remap untrained rows (``True``) or read every row as asked (``False``).
    """

    def __init__(self, num: int, dim: int, keys: Sequence[float] | None = None,
                 keep: int | None = None) -> None:
        super().__init__(num, dim)
        self.register_buffer("trained", torch.zeros(num, dtype=torch.bool))
        self.keys = list(keys) if keys is not None else None
        self.keep, self.fallback = keep, True

    def remap(self) -> torch.Tensor:
        """(num,) row -> the nearest trained row (itself when trained, or when none is)."""
        dev = self.weight.device
        keys = torch.tensor(self.keys if self.keys is not None else range(self.num_embeddings),
                            dtype=torch.float64, device=dev)
        ok = self.trained.clone()
        if self.keep is not None:
            ok[self.keep] = True
        rows = torch.nonzero(ok).flatten()
        if len(rows) == 0 or bool(ok.all()):
            return torch.arange(self.num_embeddings, device=dev)
        k = keys[rows]  # sorted: keys are increasing with the row index
        hi = torch.searchsorted(k, keys).clamp(max=len(rows) - 1)
        lo = (hi - 1).clamp(min=0)
        nearest = torch.where((keys - k[lo]).abs() <= (k[hi] - keys).abs(), rows[lo], rows[hi])
        return torch.where(ok, torch.arange(self.num_embeddings, device=dev), nearest)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            if idx.device.type != "meta":
                self.trained[idx.flatten()] = True
        elif self.fallback and idx.device.type != "meta" and bool(self.trained.any()):
            idx = self.remap()[idx]
        return super().forward(idx)


def channel_vocab() -> list[int]:
    """{1, 3, 10, 100, 1000} U {8..56 step 8} U {64..4080 step 16} U {4096..8192 step 32} U
    {32000, 50257, 128256}: the reference's channel vocabulary (its class counts 10/100/1000 all
    included) plus the LLM sizes LoGAH added (396 values)."""
    values = {1, 3, 10, 100, 1000, 32000, 50257, 128256}
    values |= set(range(8, 57, 8)) | set(range(64, 4081, 16)) | set(range(4096, 8193, 32))
    return sorted(values)


def spatial_vocab() -> list[int]:
    """Odd sizes 1..15 plus 14 and 16 (the reference's list for max kernel 16; 10 values)."""
    return sorted(set(range(1, 16, 2)) | {14, 16})


def nearest_index(values: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
    """Index of the nearest vocabulary entry for each value (ties go to the larger entry).

    Args:
        values: LongTensor (...) of sizes >= 1.
        vocab: sorted LongTensor (V,).
    """
    # first entry >= value
    hi = torch.searchsorted(vocab, values.contiguous()).clamp(max=len(vocab) - 1)
    lo = (hi - 1).clamp(min=0)
    take_lo = (values - vocab[lo]) < (vocab[hi] - values)
    return torch.where(take_lo, lo, hi)


class ShapeEmbedding(nn.Module):
    """``node_shape`` (N, 4) -> (N, hid): [chan(out) | chan(in) | spatial(kh) | spatial(kw)]."""

    def __init__(self, hid: int) -> None:
        super().__init__()
        if hid % 4:
            raise ValueError(f"hid must be a multiple of 4, got {hid}")
        # last row: dummy; nearest = by log size
        chan, spatial = channel_vocab(), spatial_vocab()
        self.chan = TrainedEmbedding(len(chan) + 1, hid // 4,
                                     [math.log(v) for v in chan] + [1e9], keep=len(chan))
        self.spatial = TrainedEmbedding(len(spatial) + 1, hid // 4,
                                        [math.log(v) for v in spatial] + [1e9], keep=len(spatial))
        self.reset_vocab()

    def reset_vocab(self) -> None:
        """(Re-)create the vocabulary buffers on the tables' device. They are fixed functions of
        the code, so they are not saved with the weights (and a GHN built on ``meta`` and then
        loaded with ``assign=True`` calls this to get real ones)."""
        dev = self.chan.weight.device
        self.register_buffer("chan_vocab", torch.tensor(channel_vocab(), device=dev),
                             persistent=False)
        self.register_buffer("spatial_vocab", torch.tensor(spatial_vocab(), device=dev),
                             persistent=False)

    def forward(self, node_shape: torch.Tensor) -> torch.Tensor:
        shape = node_shape.long()
        dummy = (shape == 0).all(dim=1, keepdim=True)  # (N, 1): nodes without a parameter
        size = shape.clamp(min=1)
        # Size 2 maps to 3 (the reference's rule: even kernels are rare, 2 is closest to 3).
        spatial = torch.where(size[:, 2:] == 2, torch.full_like(size[:, 2:], 3), size[:, 2:])
        ci = nearest_index(size[:, :2], self.chan_vocab)
        si = nearest_index(spatial, self.spatial_vocab)
        ci = torch.where(dummy, torch.full_like(ci, self.chan.num_embeddings - 1), ci)
        si = torch.where(dummy, torch.full_like(si, self.spatial.num_embeddings - 1), si)
        return torch.cat([self.chan(ci).flatten(1), self.spatial(si).flatten(1)], dim=1)


class NodeEmbedding(nn.Module):
    """h0 = type_embed[node_type] + shape_embed(node_shape); (N,) and (N, 4) -> (N, hid)."""

    def __init__(self, n_types: int, hid: int) -> None:
        super().__init__()
        self.type_embed = nn.Embedding(n_types, hid)
        self.shape_embed = ShapeEmbedding(hid)

    def forward(self, node_type: torch.Tensor, node_shape: torch.Tensor) -> torch.Tensor:
        return self.type_embed(node_type) + self.shape_embed(node_shape)
