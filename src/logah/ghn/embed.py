"""Node input of every GHN: primitive-type embedding + shape embedding (GHN-2/3, LoGAH).

The shape embedding looks up the four entries of ``node_shape`` (out, in, kh, kw) in two
vocabularies (channels for out/in, spatial for kh/kw), ``hid/4`` wide each, and concatenates them.
Sizes not in a vocabulary map to the nearest entry (size 2 maps to 3 as in the reference); nodes
without a parameter (all-zero shape) use a dedicated "dummy" row, the last one of each table.
"""

from __future__ import annotations

import torch
from torch import nn


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
        self.chan = nn.Embedding(len(channel_vocab()) + 1, hid // 4)  # last row: dummy
        self.spatial = nn.Embedding(len(spatial_vocab()) + 1, hid // 4)
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
