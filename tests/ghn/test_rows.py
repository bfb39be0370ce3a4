"""Fused members are read interleaved from their unit's decoded tensor (logah.ghn.rows)."""

from __future__ import annotations

import pytest
import torch

from logah.ghn.decoder import LowRankDecoder, TiledDecoder
from logah.ghn.rows import Rows, interleave, split, whole


def _qkv(d: int) -> list[tuple[int, int]]:
    return [(0, d), (d, 2 * d), (2 * d, 3 * d)]


def test_equal_members_take_every_third_row() -> None:
    q, k, v = interleave(_qkv(4))
    assert q.index().tolist() == [0, 3, 6, 9]
    assert k.index().tolist() == [1, 4, 7, 10]
    assert v.index().tolist() == [2, 5, 8, 11]
    assert k.index(1, 3).tolist() == [4, 7]


def test_gqa_members_interleave_in_proportion() -> None:
    """q:k:v = 4:1:1 (Llama GQA): blocks of 4 q rows, 1 k row, 1 v row."""
    q, k, v = interleave([(0, 8), (8, 10), (10, 12)])
    assert q.index().tolist() == [0, 1, 2, 3, 6, 7, 8, 9]
    assert k.index().tolist() == [4, 10] and v.index().tolist() == [5, 11]
    rows = torch.cat([q.index(), k.index(), v.index()])
    assert sorted(rows.tolist()) == list(range(12))  # a partition of the unit's rows


@pytest.mark.parametrize("ranges", [_qkv(64), [(0, 64), (64, 96), (96, 128)]])
def test_a_member_row_sits_at_the_same_unit_row_at_every_width(ranges) -> None:
    """The point of interleaving: at 1.5x the width, member i's first rows are the same decoded
    rows as before (stacked, k's row 0 would move from row 64 to row 96)."""
    wider = [(a * 3 // 2, b * 3 // 2) for a, b in ranges]
    for small, big in zip(interleave(ranges), interleave(wider), strict=True):
        assert torch.equal(big.index(0, small.total), small.index())


def test_equal_ranges_are_one_shared_member_and_bad_ranges_raise() -> None:
    assert interleave([(0, 5), (0, 5)]) == [whole(5), whole(5)]
    with pytest.raises(ValueError, match="disjoint"):
        interleave([(0, 5), (3, 8)])


def test_split_matches_gather_and_routes_gradients() -> None:
    w = torch.randn(12, 3, requires_grad=True)
    members = interleave([(0, 8), (8, 10), (10, 12)])
    parts = split(w, members)
    for p, m in zip(parts, members, strict=True):
        assert torch.equal(p, w[m.index()])
    sum((p * (i + 1)).sum() for i, p in enumerate(parts)).backward()
    want = torch.empty(12)
    for i, m in enumerate(members):
        want[m.index()] = i + 1
    assert torch.equal(w.grad[:, 0], want)
    assert split(w, [whole(12)])[0] is w
    assert torch.equal(split(w, [Rows(6, 4, 1, 2)])[0], w[[4, 10]])  # one member alone


@pytest.mark.parametrize("make", [
    lambda: LowRankDecoder(hid=8, rank=4, max_width=256),
    lambda: TiledDecoder(hid=8, max_shape=256, max_kernel=1, num_classes=10),
])
def test_decoded_members_extend_consistently_to_an_unseen_width(make) -> None:
    """Same node embedding, fused (3d, d) at d = 8 and d = 12, raw (unnormalised) output: k's and
    v's rows at the small width are the top-left corner of theirs at the larger width."""
    torch.manual_seed(0)
    dec, x = make(), torch.randn(1, 8)
    one, zero = torch.ones(1), torch.zeros(1)
    out = {}
    for d in (8, 12):
        with torch.no_grad():
            w = dec.decode_nd(x, (3 * d, d, 1, 1), zero, one)[0, :, :, 0, 0]
        out[d] = split(w, interleave(_qkv(d)))
    for small, big in zip(out[8], out[12], strict=True):
        torch.testing.assert_close(big[:8, :8], small, rtol=1e-5, atol=1e-6)
