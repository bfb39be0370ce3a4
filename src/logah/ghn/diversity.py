"""How different a GHN's predictions are across depth (the LoGAH paper's Table 5 analysis).

Same-shape tensors of the same role at different depths (``blocks.0.mlp.fc.weight``,
``blocks.1.mlp.fc.weight``, ...) form a group; the metric is the mean pairwise cosine similarity
of the flattened tensors within each group, averaged over groups. 1.0 means one tensor repeated
at every depth (a collapsed decoder); independent random inits give ~0.

Streaming: the mean pairwise cosine of n unit vectors u_i is ``(||sum_i u_i||^2 - n) / (n (n-1))``
(the sum of all pairwise dot products, without the n self terms), so :class:`DepthDiversity`
keeps one running sum per group instead of every tensor (``logah predict`` feeds it tensor by
tensor).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

_DEPTH = re.compile(r"(?<![^.])\d+(?![^.])")  # a whole path component that is a layer index


def depth_key(name: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]] | None:
    """The group of a parameter: its name with layer indices replaced by ``*`` and its shape;
    ``None`` for tensors outside any numbered layer or with fewer than 2 dims."""
    if len(shape) < 2 or not _DEPTH.search(name):
        return None
    return _DEPTH.sub("*", name), tuple(shape)


class DepthDiversity:
    """Running per-group sums of unit vectors; ``add`` tensors, then read :meth:`groups` /
    :meth:`mean`."""

    def __init__(self) -> None:
        self._sum: dict[tuple, torch.Tensor] = {}
        self._n: dict[tuple, int] = {}

    def add(self, name: str, tensor: torch.Tensor) -> None:
        key = depth_key(name, tuple(tensor.shape))
        if key is None:
            return
        # float32 (two passes over the tensor; no float64 copy of a large weight)
        v = tensor.detach().flatten().float()
        inv = 1.0 / float(v.norm().clamp(min=1e-30))
        if key in self._sum:
            self._sum[key].add_(v, alpha=inv)
        else:
            self._sum[key] = v * inv
        self._n[key] = self._n.get(key, 0) + 1

    def groups(self) -> dict[str, float]:
        """``"pattern shape"`` -> mean pairwise cosine, for groups with >= 2 tensors."""
        out = {}
        for key, s in self._sum.items():
            n = self._n[key]
            if n >= 2:
                name, shape = key
                sq = float(s.double().dot(s.double()))
                out[f"{name} {'x'.join(map(str, shape))}"] = (sq - n) / (n * (n - 1))
        return out

    def mean(self) -> float | None:
        """Mean over groups, or ``None`` when no group has two tensors (a 1-layer model)."""
        values = list(self.groups().values())
        return sum(values) / len(values) if values else None


def depth_diversity(params: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]
                    ) -> float | None:
    """Mean pairwise cosine similarity of same-shape tensors across depth (see module doc)."""
    meter = DepthDiversity()
    for name, tensor in (params.items() if isinstance(params, Mapping) else params):
        meter.add(name, tensor)
    return meter.mean()
