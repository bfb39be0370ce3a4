"""Decoders: node embeddings -> parameter tensors.

Both decoders answer the same two requests for a group of g nodes that receive tensors of one
shape, so prediction batches every node of a shape into one call:

* ``decode_nd(x (g, hid), shape4=(co, ci, kh, kw), std_target (g,), scale (g,), classifier)``
  -> (g, co, ci, kh, kw), already normalised: item j is multiplied by
  ``std_target[j] / (std(w_j) + 1e-7)`` where ``std_target[j] > 0`` (std normalisation) and by
  ``scale[j]`` otherwise (fan-in or no normalisation).
* ``decode_1d(x (g, hid), c, classifier)`` -> (g, 2, c) raw: row 0 feeds a norm weight, row 1 a
  bias (the reference's convention; the caller applies the 1-D nonlinearities).
* ``decode_nd_items(...)`` -> ``decode_nd``'s g tensors as a list plus the squared norms of their
  out-channel rows (g, co), for the training regulariser (a fused tensor's slices each get their
  own norm; the low-rank decoder gets them from r x r Gram matrices, never from W).
* ``prepare_rows(...)`` -> ``rows(j, idx)``: rows ``idx`` (int64) of item j of a 2-D request, so
  a tensor larger than memory (a 128256 x 4096 embedding is 2.1 GB in float32) is produced in row
  blocks. Low-rank: ``A[idx] B`` (tiled: rows of the tiled block, scaled by the tiled tensor's
  exact std from per-row/column tile counts); the dense decoder decodes the item once and indexes.

:class:`LowRankDecoder` (LoGAH) never materialises a K-wide intermediate: it computes only the
slices of the shared Linear(r, K)'s output that the requested factors need, folds normalisation
into the left factor (the std of W = A B follows from the r x r Gram matrices), and its one
full-size operation is the final product. :class:`TiledDecoder` is GHN-3's dense decoder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("logah.ghn")
EPS = 1e-7


def ghn3_init(*layers: nn.Linear) -> None:
    """GHN-3's decoder init: the last layers' weights divided by 5, their biases zero. It makes
    same-shape outputs of different nodes start nearly equal (cosine ~1.000 in the low-rank
    decoder), so the low-rank decoder does not use it by default (``ghn.decoder_init``)."""
    with torch.no_grad():
        for lin in layers:
            lin.weight.div_(5)
            lin.bias.zero_()


def tile(w: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Repeat a (g, m, n, ...) block along dims 1 and 2 and cut it to (g, rows, cols, ...)."""
    m, n = w.shape[1], w.shape[2]
    reps = [1, math.ceil(rows / m), math.ceil(cols / n)] + [1] * (w.dim() - 3)
    return w.repeat(reps)[:, :rows, :cols]


def _std_scale(std: torch.Tensor, std_target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-item multiplier: std_target / (std + eps) where std_target > 0, else ``scale``."""
    use_std = std_target > 0
    return torch.where(use_std, std_target / (std.to(std_target.dtype) + EPS), scale)


def _to_4d(w: torch.Tensor, shape4: tuple[int, int, int, int]) -> torch.Tensor:
    """(..., co*kh, ci*kw) -> (..., co, ci, kh, kw): rows are (co, kh), columns (ci, kw), as the
    reference reshapes them (then swaps kh and ci)."""
    co, ci, kh, kw = shape4
    w = w.view(*w.shape[:-2], co, kh, ci, kw)
    return w.transpose(-3, -2) if kh * kw > 1 else w.view(*w.shape[:-4], co, ci, kh, kw)


def _tile_counts(total: int, block: int) -> torch.Tensor:
    """How many times each of ``block`` rows occurs when tiled (cut) to ``total`` rows: (block,)."""
    full, rest = divmod(total, block)
    return torch.full((block,), full, dtype=torch.float64).index_fill_(
        0, torch.arange(rest), full + 1)


def _tiled_std(w: torch.Tensor, rows: int, cols: int, block: int = 2048) -> torch.Tensor:
    """Unbiased std of ``tile(w, rows, cols)`` for one (m, n) block, without tiling: sums weighted
    by how often each row / column occurs, in float64, ``block`` rows at a time (a 32768 x 4096
    block in float64 would be 1 GB, twice)."""
    cr, cc = _tile_counts(rows, w.shape[0]).to(w.device), _tile_counts(cols, w.shape[1]).to(w.device)
    total = sq = torch.zeros((), dtype=torch.float64, device=w.device)
    for r0 in range(0, w.shape[0], block):
        w64 = w[r0:r0 + block].double()
        total = total + cr[r0:r0 + block] @ w64 @ cc
        sq = sq + cr[r0:r0 + block] @ w64.square_() @ cc
    numel = rows * cols
    return ((sq - total * total / numel) / max(numel - 1, 1)).clamp(min=0).sqrt()


class _DecoderBase:
    """Shared by both decoders: streaming preparation and once-per-shape tiling messages."""

    def prepare_rows(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                     std_target: torch.Tensor, scale: torch.Tensor, classifier: bool = False
                     ) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """``rows(j, idx)`` -> rows ``idx`` (int64) of item j (co, ci) of a 2-D request. This
        fallback decodes item j once (kept until another item is asked for) and indexes it."""
        take = self.prepare_nd(x, shape4, std_target, scale, classifier)
        last: dict[int, torch.Tensor] = {}

        def rows(j: int, idx: torch.Tensor) -> torch.Tensor:
            if j not in last:
                last.clear()
                last[j] = take(j).reshape(shape4[0], shape4[1])
            return last[j][idx]

        return rows

    def prepare_nd(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                   std_target: torch.Tensor, scale: torch.Tensor,
                   classifier: bool = False) -> Callable[..., torch.Tensor]:
        """A function ``take(j, rows=None)`` -> item j of ``decode_nd(x, ...)`` (one item at a
        time), or only its out-channel rows ``rows`` (int64; a fused member's rows)."""
        def take(j: int, rows: torch.Tensor | None = None) -> torch.Tensor:
            w = self.decode_nd(x[j:j + 1], shape4, std_target[j:j + 1], scale[j:j + 1],
                               classifier)[0]
            return w if rows is None else w[rows]
        return take

    def decode_nd_items(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                        std_target: torch.Tensor, scale: torch.Tensor,
                        classifier: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``decode_nd`` as g tensors (co, ci, kh, kw) plus the squared norm of each tensor's
        out-channel rows (g, co): a slice's Frobenius norm is the root of its rows' sum."""
        w = self.decode_nd(x, shape4, std_target, scale, classifier)
        return list(w.unbind(0)), w.pow(2).flatten(2).sum(2)

    _tile_level = logging.WARNING

    def _warn(self, shape: tuple, block: tuple) -> None:
        seen = self.__dict__.setdefault("_tiled_seen", set())
        if shape not in seen:
            seen.add(shape)
            log.log(self._tile_level, "%s: a %s tensor exceeds the decoder's size; tiled from %s "
                    "blocks", type(self).__name__, "x".join(map(str, shape)),
                    "x".join(map(str, block)))


class LowRankDecoder(_DecoderBase, nn.Module):
    """LoGAH: x -> MLP -> seeds (2r, r) -> shared Linear(r, K) -> factors A, B -> W = A B.

    ``layout='view'`` (default, the reference's computation): the (2r, K) output Y is read as a
    pool P of 2K rows of r numbers (``Y.view(2K, r)``, a memory reinterpretation). A takes the
    first m pool rows and B^T the n rows starting at row K (exactly the reference) — or, when
    m > K, right after A's rows, so one factor may borrow the other's spare rows as long as
    m + n <= 2K. That lets a vocabulary-sized embedding (50257 rows, 1280 columns) be predicted
    without tiling at the paper's K = 32768; only m + n > 2K is tiled.
    ``layout='transpose'`` (ablation): A = Y[:r]^T, B = Y[r:]; m, n <= K, else tiled.
    """

    def __init__(self, hid: int, rank: int, max_width: int, layout: str = "view",
                 init: str = "default") -> None:
        super().__init__()
        self.r, self.K, self.layout = rank, max_width, layout
        self.mlp = nn.Sequential(
            nn.Linear(hid, 4 * hid), nn.ReLU(), nn.Linear(4 * hid, 8 * hid), nn.ReLU(),
            nn.Linear(8 * hid, 2 * rank * rank),
        )
        self.expand = nn.Linear(rank, max_width)  # the shared r -> K layer
        if init == "ghn3":  # GHN-3's dense-decoder init; the reference's low-rank one has none
            ghn3_init(self.mlp[-1])

    # ---- factors --------------------------------------------------------------------------------
    def seeds(self, x: torch.Tensor) -> torch.Tensor:
        """(g, hid) -> ReLU(M) (g, 2r, r)."""
        return F.relu(self.mlp(x).view(-1, 2 * self.r, self.r))

    def _flat(self, s: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Elements [start, stop) of Y.flatten() per item, Y = s W^T + b (2r, K): (g, stop - start).

        Within one seed row, only those elements are computed (one GEMV-like product). A range
        spanning several rows computes those rows whole in one batched GEMM and slices them (a
        view): at most 2K extra numbers per item, and only for requests that are themselves
        longer than K, so the work and memory stay proportional to the request, never to K.
        """
        K, W, b = self.K, self.expand.weight, self.expand.bias  # W (K, r)
        i0, i1 = start // K, (stop - 1) // K
        if i0 == i1:
            lo, hi = start - i0 * K, stop - i0 * K
            return torch.addmm(b[lo:hi], s[:, i0], W[lo:hi].t())
        g = s.shape[0]
        rows = torch.addmm(b, s[:, i0:i1 + 1].reshape(-1, s.shape[2]), W.t())  # (g * rows, K)
        return rows.view(g, -1)[:, start - i0 * K:stop - i0 * K]

    def capacity(self, m: int, n: int) -> bool:
        """Whether an (m x n) matrix is produced exactly (no tiling)."""
        if self.layout == "view":
            return m + n <= 2 * self.K
        return m <= self.K and n <= self.K

    def factors(self, s: torch.Tensor, m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeds (g, 2r, r) -> A (g, m, r), B (g, r, n) with m, n within :meth:`capacity`."""
        r = self.r
        if self.layout == "transpose":
            W, b = self.expand.weight, self.expand.bias
            a = torch.matmul(W[:m], s[:, :r].transpose(1, 2)) + b[:m, None]  # (g, m, r)
            bt = torch.matmul(s[:, r:], W[:n].t()) + b[:n]  # (g, r, n)
            return a, bt
        start_b = min(max(self.K, m), 2 * self.K - n)
        a = self._flat(s, 0, m * r).view(-1, m, r)
        bt = self._flat(s, start_b * r, (start_b + n) * r).view(-1, n, r)
        return a, bt.transpose(1, 2)

    # ---- requests -------------------------------------------------------------------------------
    def decode_nd(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                  std_target: torch.Tensor, scale: torch.Tensor,
                  classifier: bool = False) -> torch.Tensor:
        co, ci, kh, kw = shape4
        factors = self._scaled_factors(x, shape4, std_target, scale)
        if factors is not None:
            w = torch.matmul(*factors[:2])  # (g, m, n): the one full-size op
        else:
            m, n = co * kh, ci * kw
            bm, bn = min(m, self.K), min(n, self.K)
            self._warn((m, n), (bm, bn))
            a, b = self.factors(self.seeds(x), bm, bn)
            w = tile(torch.matmul(a, b), m, n)
            mult = _std_scale(w.flatten(1).std(dim=1), std_target, scale)
            w = w * mult[:, None, None]
        return _to_4d(w, shape4)

    def decode_nd_items(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                        std_target: torch.Tensor, scale: torch.Tensor,
                        classifier: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One product per item, so each item's gradient flows back into its own (m, r) and
        (r, n) factors (no full-size stack of the group's gradients), and the row norms come
        from r x r Gram matrices (no full-size pass, forward or backward)."""
        factors = self._scaled_factors(x, shape4, std_target, scale)
        if factors is None:  # tiled
            return super().decode_nd_items(x, shape4, std_target, scale, classifier)
        a, b = factors
        return ([_to_4d(aj @ bj, shape4) for aj, bj in zip(a.unbind(0), b.unbind(0))],
                lowrank_row_sq(a, b).view(a.shape[0], shape4[0], -1).sum(2).to(a.dtype))

    def prepare_nd(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                   std_target: torch.Tensor, scale: torch.Tensor,
                   classifier: bool = False) -> Callable[..., torch.Tensor]:
        """Streaming: the small per-item work (seeds, factors, std) for the whole group at once;
        ``take(j, rows)`` then does item j's one full-size product (only those rows' part)."""
        factors = self._scaled_factors(x, shape4, std_target, scale)
        if factors is None:
            return super().prepare_nd(x, shape4, std_target, scale, classifier)
        a, b = factors
        co, ci, kh, kw = shape4

        def take(j: int, rows: torch.Tensor | None = None) -> torch.Tensor:
            if rows is None:
                return _to_4d(torch.matmul(a[j], b[j]), shape4)
            aj = a[j].view(co, kh, -1)[rows].flatten(0, 1)  # A's rows are (co, kh)
            return _to_4d(torch.matmul(aj, b[j]), (len(rows), ci, kh, kw))
        return take

    def prepare_rows(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                     std_target: torch.Tensor, scale: torch.Tensor, classifier: bool = False
                     ) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """Row blocks of 2-D items (see the module doc); equal to ``decode_nd`` up to rounding."""
        co, ci, kh, kw = shape4
        if kh * kw != 1:
            return super().prepare_rows(x, shape4, std_target, scale, classifier)
        factors = self._scaled_factors(x, shape4, std_target, scale)
        if factors is not None:
            a, b = factors
            return lambda j, idx: torch.matmul(a[j, idx], b[j])
        bm, bn = min(co, self.K), min(ci, self.K)
        self._warn((co, ci), (bm, bn))
        a, b = self.factors(self.seeds(x), bm, bn)
        blocks: dict[int, torch.Tensor] = {}

        def rows(j: int, idx: torch.Tensor) -> torch.Tensor:
            if j not in blocks:  # item j's (bm, bn) block, scaled as decode_nd scales the tile
                blocks.clear()
                w = torch.matmul(a[j], b[j])
                mult = _std_scale(_tiled_std(w, co, ci)[None], std_target[j:j + 1],
                                  scale[j:j + 1])
                blocks[j] = w.mul_(mult.to(w.dtype))  # in place: the block is 0.5 GB at 8B
            w = blocks[j]
            return tile(w[idx % bm][None], len(idx), ci)[0]

        return rows

    def _scaled_factors(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                        std_target: torch.Tensor, scale: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(A * multiplier, B) for the group, or None when the shape needs tiling."""
        co, ci, kh, kw = shape4
        m, n = co * kh, ci * kw  # rows = out channels x kernel, cols = in channels x kernel
        if not self.capacity(m, n):
            return None
        a, b = self.factors(self.seeds(x), m, n)
        total, sq = lowrank_moments(a, b)
        mult = _std_scale(_moments_std(total, sq, m * n), std_target, scale)[:, None, None]
        # In place when nothing needs A for a backward pass (streaming prediction).
        return (a * mult if torch.is_grad_enabled() else a.mul_(mult)), b

    def decode_1d(self, x: torch.Tensor, c: int, classifier: bool = False) -> torch.Tensor:
        s = self.seeds(x)
        if not self.capacity(2 * c, 1):
            self._warn((2 * c,), (self.K,))
            a, b = self.factors(s, self.K, 1)
            v = tile(torch.matmul(a, b), 2 * c, 1)
        else:
            a, b = self.factors(s, 2 * c, 1)
            v = torch.matmul(a, b)  # (g, 2c, 1)
        return v.view(-1, 2, c)


def lowrank_moments(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sum(W) and sum(W^2) of each W = A B without forming W. a (g, m, r), b (g, r, n) -> (g,) x 2.

    sum(W) = (1^T A)(B 1); sum(W^2) = <A^T A, B B^T> (Frobenius); float64, so the cancellation in
    E[w^2] - E[w]^2 costs nothing visible in float32.
    """
    a64, b64 = a.double(), b.double()
    total = (a64.sum(1) * b64.sum(2)).sum(1)  # (g,)
    sq = (a64.transpose(1, 2) @ a64 * (b64 @ b64.transpose(1, 2))).sum((1, 2))
    return total, sq


def lowrank_row_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared norm of each row of W = A B without forming W: a (g, m, r), b (g, r, n) -> (g, m)
    float64, ``sum_k (A G)_ik A_ik`` with G = B B^T (r x r)."""
    a64, b64 = a.double(), b.double()
    return ((a64 @ (b64 @ b64.transpose(1, 2))) * a64).sum(2).clamp(min=0)


def _moments_std(total: torch.Tensor, sq: torch.Tensor, numel: int) -> torch.Tensor:
    var = (sq - total * total / numel) / max(numel - 1, 1)
    return var.clamp(min=0).sqrt()


def lowrank_std(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unbiased std of each W = A B without forming W. a (g, m, r), b (g, r, n) -> (g,) float64."""
    return _moments_std(*lowrank_moments(a, b), a.shape[1] * b.shape[2])


class TiledDecoder(_DecoderBase, nn.Module):
    """GHN-3's dense decoder (GHN-2 with ``crop='corner'``), tiled beyond its block size C.

    x -> Linear(hid, 4 hid s s) + ReLU -> (4 hid, s, s) -> k x k crop (centre: GHN-3; top-left:
    GHN-2; bilinear up-sampling when k > s) -> per position Linear(4 hid, 8 hid) + ReLU +
    Linear(8 hid, C C) -> (C, C, k, k) block, sliced to the target and tiled beyond C. The
    classifier (the graph's last weight / bias) goes through a class predictor Linear(C, classes)
    over the out dimension, as in the reference; 1-D tensors use ``decoder_1d`` (2, C).
    """

    _tile_level = logging.INFO  # tiling is how GHN-3 reaches every width: not worth a warning

    def __init__(self, hid: int, max_shape: int, max_kernel: int, num_classes: int,
                 crop: str = "centre", init: str = "ghn3") -> None:
        super().__init__()
        self.C, self.s, self.crop, self.hid = max_shape, max_kernel, crop, hid
        self.fc = nn.Linear(hid, 4 * hid * max_kernel * max_kernel)
        self.conv = nn.Sequential(nn.Linear(4 * hid, 8 * hid), nn.ReLU(),
                                  nn.Linear(8 * hid, max_shape * max_shape))
        self.class_pred = nn.Linear(max_shape, num_classes)  # over the out dimension
        self.decoder_1d = nn.Sequential(nn.Linear(hid, 2 * hid), nn.ReLU(),
                                        nn.Linear(2 * hid, 2 * max_shape))
        self.bias_class = nn.Linear(max_shape, num_classes)
        if init == "ghn3":
            ghn3_init(self.conv[-1], self.decoder_1d[-1], self.class_pred)

    def _crop(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """(g, 4hid, s, s) -> (g, 4hid, k, k)."""
        s = self.s
        if k > s:
            return F.interpolate(h, size=(k, k), mode="bilinear", align_corners=False)
        o = (s - k) // 2 if self.crop == "centre" else 0
        return h[:, :, o:o + k, o:o + k]

    def decode_nd(self, x: torch.Tensor, shape4: tuple[int, int, int, int],
                  std_target: torch.Tensor, scale: torch.Tensor,
                  classifier: bool = False) -> torch.Tensor:
        co, ci, kh, kw = shape4
        k = max(kh, kw)
        h = F.relu(self.fc(x)).view(-1, 4 * self.hid, self.s, self.s)
        h = self._crop(h, k).permute(0, 2, 3, 1)  # (g, k, k, 4hid)
        w = self.conv(h).view(-1, k, k, self.C, self.C).permute(0, 3, 4, 1, 2)  # (g, C, C, k, k)
        w = w[..., (k - kh) // 2:(k - kh) // 2 + kh, (k - kw) // 2:(k - kw) // 2 + kw]
        if classifier:  # (g, C, ci', k, k) -> class predictor over the out dim -> (g, classes, ...)
            w = self.class_pred(F.relu(w).movedim(1, -1)).movedim(-1, 1)
        block = (min(co, w.shape[1]), min(ci, w.shape[2]))
        if co > w.shape[1] or ci > w.shape[2]:
            self._warn((co, ci, kh, kw), block)
        w = tile(w[:, :block[0], :block[1]], co, ci)
        mult = _std_scale(w.flatten(1).std(dim=1), std_target, scale)
        return w * mult.view(-1, 1, 1, 1, 1)

    def decode_1d(self, x: torch.Tensor, c: int, classifier: bool = False) -> torch.Tensor:
        v = self.decoder_1d(x).view(-1, 2, self.C)
        if classifier:  # the classifier bias: bias_class on the bias row -> (g, 2, classes)
            bias = self.bias_class(F.relu(v[:, 1]))
            v = torch.stack([bias, bias], dim=1)
        if c > v.shape[2]:
            self._warn((c,), (v.shape[2],))
        return tile(v.transpose(1, 2), c, 2).transpose(1, 2)  # (g, 2, c)
