"""Which rows of a decoded tensor belong to each member of a fused unit (interleaved, not stacked).

A fused unit (q/k/v, a gated MLP's gate/up: :mod:`logah.graph.fused`) is decoded as one tensor of
R = r_1 + ... + r_G rows. The graph lists its members as contiguous row ranges in declared order
(``param_rows``); reading the decoded tensor the same way would make member i's row j sit at a
width-dependent position (k's first row is row d of a 3d-row q/k/v tensor, so it moves with d).
A GHN trained on widths <= 80 then reads, at width 96, decoder rows trained for *another* member:
measured on ViT, wider held-out models fell from 2.15 (unfused) to 2.67 zero-shot loss, worse than
random init (2.32), while in-range models were unaffected.

So the GHN reads members interleaved in proportion to their sizes. With u = gcd(r_1, ..., r_G),
c_i = r_i / u and C = c_1 + ... + c_G, the decoded (R, ...) tensor is viewed as (u, C, ...) and
member i is ``[:, o_i:o_i + c_i]`` flattened (o_i = c_1 + ... + c_{i-1}): member i's row j is
decoded row ``(j // c_i) * C + o_i + j % c_i``, the same at every width with the same ratios
(three equal members: row 3j + i; Llama's 4:1:1 GQA q/k/v: blocks of 4 q rows, 1 k, 1 v).
A unit with one member is read as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Rows:
    """A member's rows in its unit's decoded tensor: ``count`` rows at ``offset`` of every block
    of ``period`` rows; ``total`` rows in all (``total // count`` blocks)."""

    period: int
    offset: int
    count: int
    total: int

    @property
    def whole(self) -> bool:
        """The member is the unit's whole tensor (not fused)."""
        return self.period == self.count

    def index(self, r0: int = 0, r1: int | None = None, device=None) -> torch.Tensor:
        """Decoded-tensor rows of the member's rows [r0, r1): int64 (r1 - r0,)."""
        j = torch.arange(r0, self.total if r1 is None else r1, device=device)
        return torch.div(j, self.count, rounding_mode="floor") * self.period + self.offset \
            + j % self.count


def whole(n: int) -> Rows:
    """All n rows of an unfused tensor."""
    return Rows(n, 0, n, n)


def interleave(ranges: Sequence[tuple[int, int]]) -> list[Rows]:
    """Members' contiguous graph ranges [start, stop) (together [0, R)) -> their interleaved rows,
    in the order given. Equal ranges are one member (parameters sharing a tensor)."""
    distinct = sorted(set(ranges))  # declared (graph) order
    sizes = [stop - start for start, stop in distinct]
    if any(s <= 0 for s in sizes) or any(a[1] > b[0] for a, b in zip(distinct, distinct[1:])):
        raise ValueError(f"fused members need disjoint, non-empty rows, got {list(ranges)}")
    if len(sizes) == 1:
        return [whole(sizes[0])] * len(ranges)
    u = math.gcd(*sizes)
    period, offset, rows = sum(sizes) // u, 0, {}
    for rng, size in zip(distinct, sizes, strict=True):
        rows[rng] = Rows(period, offset, size // u, size)
        offset += size // u
    return [rows[r] for r in ranges]


def split(w: torch.Tensor, members: Sequence[Rows]) -> list[torch.Tensor]:
    """A unit's decoded tensor w (R, ...) -> each member's rows (r_i, ...), in ``members``' order.

    One ``split`` of a (u, C, ...) view: its backward concatenates the members' gradients once,
    instead of one zero-filled R-row gradient per member as slicing would."""
    if len(members) == 1 and members[0].whole:
        return [w]
    period = members[0].period
    if sum(m.count for m in members) != period or len({m.offset for m in members}) != len(members):
        # not the unit's full set of members: gather each one's rows
        return [w.index_select(0, m.index(device=w.device)) for m in members]
    order = sorted(range(len(members)), key=lambda i: members[i].offset)
    parts = w.unflatten(0, (-1, period)).split([members[i].count for i in order], dim=1)
    out: list[torch.Tensor] = [None] * len(members)  # type: ignore[list-item]
    for i, part in zip(order, parts, strict=True):
        out[i] = part.flatten(0, 1)
    return out
