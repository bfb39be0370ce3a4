"""Decoders: the low-rank computation against a naive full-Y reference, normalisation folding,
tiling, and memory that does not grow with K."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from logah.ghn.decoder import LowRankDecoder, TiledDecoder, lowrank_std


def _naive_view(dec: LowRankDecoder, x: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """The reference's computation, materialising Y (g, 2r, K) and its (2K, r) view."""
    s = dec.seeds(x)
    y = s @ dec.expand.weight.t() + dec.expand.bias  # (g, 2r, K)
    pool = y.reshape(x.shape[0], 2 * dec.K, dec.r)
    # B^T starts at pool row K (the reference); a factor wider than K borrows the other's spare
    # rows.
    start_b = min(max(dec.K, m), 2 * dec.K - n)
    return pool[:, :m] @ pool[:, start_b:start_b + n].transpose(1, 2)


def _ones(g: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(g), torch.ones(g)  # std_target 0 (off), scale 1


@pytest.mark.parametrize("m,n", [(7, 5), (37, 37), (37, 1), (40, 34), (70, 3), (3, 70)])
def test_view_layout_matches_the_reference_reshape(m: int, n: int) -> None:
    torch.manual_seed(0)
    dec = LowRankDecoder(hid=16, rank=5, max_width=37)  # K not a multiple of r: rows straddle seeds
    x = torch.randn(3, 16)
    got = dec.decode_nd(x, (m, n, 1, 1), *_ones(3))[..., 0, 0]
    torch.testing.assert_close(got, _naive_view(dec, x, m, n), rtol=1e-5, atol=1e-6)


def test_transpose_layout_matches_its_definition() -> None:
    torch.manual_seed(0)
    dec = LowRankDecoder(hid=16, rank=4, max_width=50, layout="transpose")
    x = torch.randn(2, 16)
    y = dec.seeds(x) @ dec.expand.weight.t() + dec.expand.bias  # (g, 2r, K)
    want = y[:, :4].transpose(1, 2)[:, :30] @ y[:, 4:, :20]
    got = dec.decode_nd(x, (30, 20, 1, 1), *_ones(2))[..., 0, 0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_conv_kernel_reshape_and_prefix_consistency() -> None:
    torch.manual_seed(0)
    dec = LowRankDecoder(hid=16, rank=4, max_width=256)
    x = torch.randn(1, 16)
    w = dec.decode_nd(x, (8, 3, 4, 4), *_ones(1))[0]  # (8, 3, 4, 4)
    flat = _naive_view(dec, x, 8 * 4, 3 * 4)[0]  # (co*kh, ci*kw)
    torch.testing.assert_close(w, flat.view(8, 4, 3, 4).permute(0, 2, 1, 3))
    # Slicing A and B: a smaller request is the top-left corner of a larger one.
    big = dec.decode_nd(x, (20, 12, 1, 1), *_ones(1))
    small = dec.decode_nd(x, (9, 5, 1, 1), *_ones(1))
    torch.testing.assert_close(small, big[:, :9, :5])


def test_std_and_scale_fold_into_the_factors() -> None:
    torch.manual_seed(0)
    dec = LowRankDecoder(hid=16, rank=6, max_width=512)
    x = torch.randn(3, 16)
    raw = dec.decode_nd(x, (64, 48, 1, 1), *_ones(3))
    out = dec.decode_nd(x, (64, 48, 1, 1), torch.tensor([0.02, 0.0, 0.5]),
                        torch.tensor([1.0, 3.0, 1.0]))
    assert out[0].std().item() == pytest.approx(0.02, rel=1e-4)
    assert out[2].std().item() == pytest.approx(0.5, rel=1e-4)
    torch.testing.assert_close(out[1], 3.0 * raw[1])
    a, b = dec.factors(dec.seeds(x), 64, 48)
    torch.testing.assert_close(lowrank_std(a, b).float(), (a @ b).flatten(1).std(dim=1))


def test_vocabulary_sized_embedding_is_not_tiled_at_the_default_K(caplog) -> None:
    torch.manual_seed(0)  # (r = 2: unseeded, both seed rows could be ReLU zeros, rows equal)
    dec = LowRankDecoder(hid=8, rank=4, max_width=2048 * 16)
    for vocab_rows, d_model in [(50257, 768), (50257, 1280), (50257, 1600)]:
        assert dec.capacity(vocab_rows, d_model)
    with caplog.at_level(logging.WARNING, logger="logah.ghn"):
        w = dec.decode_nd(torch.randn(1, 8), (50257, 16, 1, 1), *_ones(1))
    assert w.shape == (1, 50257, 16, 1, 1) and not caplog.records
    # Rows 0 and 32768 differ (a tiled 32768-row block would repeat them).
    assert not torch.allclose(w[0, 0], w[0, 32768])


def test_shapes_beyond_2K_are_tiled_with_a_warning(caplog) -> None:
    torch.manual_seed(0)
    dec = LowRankDecoder(hid=8, rank=2, max_width=16)
    x = torch.randn(1, 8)
    with caplog.at_level(logging.WARNING, logger="logah.ghn"):
        w = dec.decode_nd(x, (40, 5, 1, 1), *_ones(1))[0, :, :, 0, 0]
    assert "tiled" in caplog.text and "40x5" in caplog.text
    block = _naive_view(dec, x, 16, 5)[0]
    torch.testing.assert_close(w, torch.cat([block, block, block[:8]]))


class _MaxNumel(TorchDispatchMode):
    """Largest tensor any op produces while active."""

    def __init__(self) -> None:
        super().__init__()
        self.max = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.max = max(self.max, t.numel())
        return out


def test_lowrank_memory_does_not_grow_with_K(tiny_graphs, make_ghn) -> None:
    vit = tiny_graphs[1]  # largest tensor: 256 x 64
    peaks, counts = {}, {}
    for k in (1024, 2**20):
        ghn = make_ghn("logah-t", hid=32, layers=1, heads=4, rank=4, max_width=k)
        counts[k] = ghn.num_params()
        with torch.no_grad(), _MaxNumel() as probe:
            out = ghn(vit)[0]
        peaks[k] = probe.max
        assert out["blocks.0.mlp.fc.weight"].shape == (256, 64)
    # Parameters differ by exactly the r x K expansion layer (weight + bias) ...
    assert counts[2**20] - counts[1024] == (2**20 - 1024) * (4 + 1)
    # ... and no tensor produced during prediction grows with K.
    assert peaks[2**20] == peaks[1024] < 2**20 // 4


def test_tiled_decoder_slices_tiles_and_uses_the_class_predictor() -> None:
    torch.manual_seed(0)
    dec = TiledDecoder(hid=8, max_shape=6, max_kernel=5, num_classes=7)
    x = torch.randn(2, 8)
    w = dec.decode_nd(x, (14, 4, 3, 3), *_ones(2))  # 14 > C = 6: tiled along out channels
    assert w.shape == (2, 14, 4, 3, 3)
    torch.testing.assert_close(w[:, 6:12], w[:, :6])
    cls = dec.decode_nd(x, (7, 4, 1, 1), *_ones(2), classifier=True)
    assert cls.shape == (2, 7, 4, 1, 1)
    v = dec.decode_1d(x, 9)
    assert v.shape == (2, 2, 9)
    torch.testing.assert_close(v[:, :, 6:], v[:, :, :3])
    assert dec.decode_1d(x, 7, classifier=True).shape == (2, 2, 7)


@pytest.mark.parametrize("shape4", [(40, 24, 1, 1), (8, 3, 4, 4), (600, 8, 1, 1)])
def test_decode_nd_items_are_decode_nd_split_with_their_norms(shape4) -> None:
    # (600, 8) > 2K rows: the tiled fallback (norms from the tensors) is covered too
    torch.manual_seed(0)
    for dec in (LowRankDecoder(hid=16, rank=4, max_width=256), TiledDecoder(16, 6, 2, 10)):
        x, std, scale = torch.randn(3, 16), torch.tensor([0.02, 0.0, 0.0]), torch.ones(3)
        whole = dec.decode_nd(x, shape4, std, scale)
        items, row_sq = dec.decode_nd_items(x, shape4, std, scale)
        assert len(items) == 3 and row_sq.shape == (3, shape4[0])
        for w, item, sq in zip(whole, items, row_sq, strict=True):
            torch.testing.assert_close(item, w, rtol=1e-5, atol=1e-7)
            # per out-channel row: a fused tensor's slices get their own norms from these
            torch.testing.assert_close(sq, w.pow(2).flatten(1).sum(1), rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(sq.sum().sqrt(), w.norm(), rtol=1e-5, atol=1e-7)
        take = dec.prepare_nd(x, shape4, std, scale)  # streaming: a row slice of item 1
        torch.testing.assert_close(take(1, torch.arange(2, 5)), whole[1, 2:5], rtol=1e-5, atol=1e-7)
