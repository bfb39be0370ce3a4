"""The one mapping from a parameter's shape to a node's 4-D shape (out, in, kh, kw).

The graph stores it as ``node_shape``; the GHN decodes every node's tensor at that shape and
reshapes it back to each parameter's true shape (a pure reshape: only singleton dims move).
"""

from __future__ import annotations

import torch


def pad4(shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int, int]:
    """A module weight's shape as (out, in, kh, kw): (C,) -> (C,1,1,1), (o,i) -> (o,i,1,1),
    Conv1d (o,i,k) -> (o,i,k,1)."""
    s = tuple(int(d) for d in shape)
    return (s + (1, 1, 1, 1))[:4]  # type: ignore[return-value]


def free4(shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int, int]:
    """A free parameter's shape without leading singleton dims: (1, T, D) -> (T, D, 1, 1),
    ViT ``cls_token`` (1, 1, D) -> (1, D, 1, 1)."""
    s = [int(d) for d in shape]
    while len(s) > 2 and s[0] == 1:
        s.pop(0)
    return pad4(s)
