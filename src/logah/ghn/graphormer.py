"""Graphormer encoder of GHN-3 / LoGAH, as torch-geometric message passing.

Each layer is pre-LN multi-head attention followed by a pre-LN feed-forward block:
``x = x + Attn(LN1(x)); x = x + FF(LN2(x))`` (FF = Linear(d, 4d) -> GELU -> Linear(4d, d); q/k/v
without bias, no dropout). The attention logits get
a learned per-head bias from the pair's forward and backward shortest-path distances, computed once
and shared by all layers; in/out-degree and distance-from-input embeddings are added to the node
features before the first layer.

``all_pairs=True`` (``ghn.all_pairs``, the default): every node attends to every node of its
graph, as in the reference. Pairs joined by a path within the cutoff (either way) get the
distance bias; pairs with no such path (``wte`` and ``wpe``, the class token and the patch
embedding, or any pair more than ``cutoff`` hops apart) get a learned per-head ``no_path`` bias (the reference gives them its distance-0 row, the same as
a node's own pair). ``all_pairs=False``: only the virtual-edge pairs and the node itself attend
(message passing or the same softmax through dense kernels).

The attention is written as message passing (``propagate`` over the attending pairs); for the
usual architecture graphs, where those pairs are most of all node pairs, the same softmax over the
same pairs runs through dense masked kernels instead (:class:`DenseAttention`, ~20x faster for
GPT-2 Large; a test checks both give the same result).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from logah.ghn.embed import TrainedEmbedding

MAX_DEGREE = 100
MAX_INPUT_DIST = 1000
MAX_DIST = 256  # table rows 0..256; distances are stored + 2 (rows 0/1 unused, as in GHN-3)


def sinusoidal(n: int, d: int) -> torch.Tensor:
    """(n, d) sine/cosine position table with row 0 all zeros."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    table[0] = 0
    return table


class StructuralEncoding(nn.Module):
    """x + Emb_in(in_degree) + Emb_out(out_degree) + Emb_dist(distance from the input node)."""

    def __init__(self, hid: int) -> None:
        super().__init__()
        self.in_degree = TrainedEmbedding(MAX_DEGREE + 1, hid)
        self.out_degree = TrainedEmbedding(MAX_DEGREE + 1, hid)
        self.input_dist = TrainedEmbedding(MAX_INPUT_DIST + 1, hid)

    def forward(self, x: torch.Tensor, in_degree: torch.Tensor, out_degree: torch.Tensor,
                input_dist: torch.Tensor) -> torch.Tensor:
        return (x + self.in_degree(in_degree.clamp(max=MAX_DEGREE))
                + self.out_degree(out_degree.clamp(max=MAX_DEGREE))
                + self.input_dist(input_dist.clamp(max=MAX_INPUT_DIST)))


class EdgeBias(nn.Module):
    """(forward, backward) distances (E, 2) -> per-head attention bias (E, heads).

    Each distance (+2, clipped to 256) indexes a learned table initialised with sinusoids; the two
    rows are concatenated and mapped by Linear(2d, d) -> ReLU -> Linear(d, heads).
    """

    def __init__(self, hid: int, heads: int) -> None:
        super().__init__()
        self.table = TrainedEmbedding(MAX_DIST + 1, hid)
        self.mlp = nn.Sequential(nn.Linear(2 * hid, hid), nn.ReLU(), nn.Linear(hid, heads))

    def reset_table(self) -> None:
        with torch.no_grad():
            self.table.weight.copy_(sinusoidal(MAX_DIST + 1, self.table.embedding_dim))

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        idx = dist.clamp(min=0, max=MAX_DIST - 2) + 2  # (E, 2)
        if idx.device.type == "meta":
            return self.mlp(self.table(idx).flatten(1))
        # Few distinct (forward, backward) pairs (<= 51^2 at cutoff 50) among up to ~10^6 pairs:
        # run the MLP once per distinct pair and gather (same values, a fraction of the work).
        code = idx[:, 0] * (MAX_DIST + 1) + idx[:, 1]
        uniq, inverse = torch.unique(code, return_inverse=True)
        pairs = torch.stack([uniq // (MAX_DIST + 1), uniq % (MAX_DIST + 1)], dim=1)
        return self.mlp(self.table(pairs).flatten(1))[inverse]


class DenseAttention:
    """The same attention as the message passing, computed with dense per-graph kernels.

    Architecture graphs are small (hundreds of nodes) and, with the cutoff used everywhere, the
    virtual edges cover most node pairs (85% for GPT-2 Large), so gathering per-edge query/key/
    value rows costs far more than a masked dense attention over each graph. The per-head bias
    sits at each attending pair and -inf elsewhere: the softmax runs over exactly the same pairs.

    Args:
        edge_index: (2, E) source -> target pairs (self pairs included); bias: (E, heads).
        batch: (N,) graph of each node; ptr: (B + 1,) first node of each graph.
    """

    def __init__(self, edge_index: torch.Tensor, bias: torch.Tensor, batch: torch.Tensor,
                 ptr: torch.Tensor, no_path: torch.Tensor | None = None) -> None:
        counts = ptr[1:] - ptr[:-1]
        b, n_max, heads = len(counts), int(counts.max()), bias.shape[1]
        self.batch, self.local = batch, torch.arange(len(batch), device=batch.device) - ptr[batch]
        src, dst = edge_index
        pad = torch.arange(n_max, device=bias.device)
        if no_path is None:
            mask = torch.full((b, n_max, n_max, heads), float("-inf"), device=bias.device,
                              dtype=bias.dtype)
        else:  # all pairs within a graph attend; those without a listed pair get ``no_path``
            real = pad[None, :] < counts[:, None]  # (B, n_max)
            inside = (real[:, :, None] & real[:, None, :])[..., None]  # (B, n, n, 1)
            mask = torch.where(inside, no_path.to(bias.dtype), float("-inf"))
        mask[:, pad, pad] = 0.0  # padded queries attend to themselves (no NaN; dropped later)
        mask = mask.index_put((batch[dst], self.local[dst], self.local[src]), bias)
        self.mask = mask.permute(0, 3, 1, 2)  # (B, heads, query, key)
        self.shape = (b, n_max)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v (N, heads, dh) -> (N, heads, dh)."""
        def dense(t: torch.Tensor) -> torch.Tensor:
            out = t.new_zeros(*self.shape, *t.shape[1:])
            out[self.batch, self.local] = t
            return out.transpose(1, 2)  # (B, heads, n_max, dh)

        out = F.scaled_dot_product_attention(dense(q), dense(k), dense(v), attn_mask=self.mask)
        return out.transpose(1, 2)[self.batch, self.local]


class GraphormerLayer(MessagePassing):
    """One pre-LN transformer layer whose attention runs over the edges it is given."""

    def __init__(self, hid: int, heads: int) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.heads, self.dh = heads, hid // heads
        self.ln1 = nn.LayerNorm(hid)
        self.qkv = nn.Linear(hid, 3 * hid, bias=False)
        self.out = nn.Linear(hid, hid)
        self.ln2 = nn.LayerNorm(hid)
        self.ff = nn.Sequential(nn.Linear(hid, 4 * hid), nn.GELU(), nn.Linear(4 * hid, hid))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, bias: torch.Tensor,
                dense: DenseAttention | None = None) -> torch.Tensor:
        """x (N, d); edge_index (2, E) source -> target (the target attends); bias (E, heads).

        ``dense``: the same attention through dense kernels (see :class:`DenseAttention`).
        """
        n = x.shape[0]
        q, k, v = self.qkv(self.ln1(x)).view(n, 3, self.heads, self.dh).unbind(1)  # (N, H, dh)
        if dense is None:
            att = self.propagate(edge_index, q=q, k=k, v=v, bias=bias, size=(n, n))
        else:
            att = dense.attend(q, k, v)  # (N, H, dh)
        x = x + self.out(att.reshape(n, -1))
        return x + self.ff(self.ln2(x))

    def message(self, q_i: torch.Tensor, k_j: torch.Tensor, v_j: torch.Tensor, bias: torch.Tensor,
                index: torch.Tensor, ptr: torch.Tensor | None, size_i: int | None) -> torch.Tensor:
        logits = (q_i * k_j).sum(-1) / math.sqrt(self.dh) + bias  # (E, H)
        alpha = softmax(logits, index, ptr, size_i)  # normalised over each target's sources
        return v_j * alpha.unsqueeze(-1)  # (E, H, dh)


class Graphormer(nn.Module):
    """Structural encodings + ``layers`` Graphormer layers over a PyG (batched) ArchGraph.

    Attributes:
        dense: ``None`` (auto: dense kernels when the padded pair count is at most
            ``DENSE_FACTOR`` times the attending pairs), ``True`` or ``False`` (message passing).
    """

    DENSE_FACTOR = 16

    def __init__(self, hid: int, layers: int, heads: int, all_pairs: bool = False) -> None:
        super().__init__()
        self.structure = StructuralEncoding(hid)
        self.edge_bias = EdgeBias(hid, heads)
        self.layers = nn.ModuleList(GraphormerLayer(hid, heads) for _ in range(layers))
        self.dense: bool | None = None
        # all pairs: a learned per-head logit bias for pairs with no path within the cutoff
        self.no_path = nn.Parameter(torch.zeros(heads)) if all_pairs else None

    def forward(self, x: torch.Tensor, g) -> torch.Tensor:
        """x (N, d) node inputs; ``g`` a graph/batch with the contract's fields -> (N, d)."""
        n = x.shape[0]
        loops = torch.arange(n, device=x.device)
        # Source u -> target v: v (the query) attends to u (the key). The query's features are
        # (d(v -> u), d(u -> v)) = (ve_attr[:, 1], ve_attr[:, 0]); self pairs get (0, 0).
        edge_index = torch.cat([g.ve_index, torch.stack([loops, loops])], dim=1)
        dist = torch.cat([g.ve_attr.flip(1), loops.new_zeros(n, 2)], dim=0)
        bias = self.edge_bias(dist)
        dense = self._dense(edge_index, bias, g)
        x = self.structure(x, g.in_degree, g.out_degree, g.input_dist)
        for layer in self.layers:
            x = layer(x, edge_index, bias, dense)
        return x

    def _dense(self, edge_index: torch.Tensor, bias: torch.Tensor, g) -> DenseAttention | None:
        pairs = edge_index.shape[1]
        batch = getattr(g, "batch", None)
        ptr = getattr(g, "ptr", None)
        if batch is None or ptr is None:
            batch = torch.zeros(g.num_nodes, dtype=torch.long, device=edge_index.device)
            ptr = torch.tensor([0, g.num_nodes], device=edge_index.device)
        if edge_index.device.type == "meta":
            return None
        if self.no_path is not None:  # all pairs: always dense (the listed pairs are a subset)
            return DenseAttention(edge_index, bias, batch, ptr, self.no_path)
        use = self.dense
        if use is None:
            counts = (ptr[1:] - ptr[:-1])
            use = len(counts) * int(counts.max()) ** 2 <= self.DENSE_FACTOR * pairs
        return DenseAttention(edge_index, bias, batch, ptr) if use else None
