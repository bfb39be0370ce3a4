"""The graph hypernetwork: architecture graph(s) -> every parameter of every model.

``GHN(cfg)`` = node embedding (type + shape) -> encoder (Graphormer or GatedGNN) -> optional
LayerNorm -> decoder (low-rank LoGAH or tiled GHN-3) -> per-family normalisation.

* ``ghn(graphs)`` -> ``list[dict[name, Tensor]]``: differentiable, batched (all tensors of one
  shape are decoded in one call); plug into a meta-built target with
  ``torch.func.functional_call(model, params, x)``.
* ``ghn.predict(graph)`` -> iterator of ``(name, tensor)`` under ``no_grad``: one tensor at a time,
  so a caller can write and free each before the next (``logah predict``). With
  ``chunk_numel``, 2-D tensors larger than that come as consecutive row blocks under one name
  (``logah predict`` of llama-3-8b: a 128256 x 4096 embedding never exists whole in float32).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from logah.config.errors import LogahError
from logah.config.ghn import GHNConfig
from logah.ghn.decoder import LowRankDecoder, TiledDecoder
from logah.ghn.embed import NodeEmbedding, TrainedEmbedding
from logah.ghn.gatedgnn import GatedGNN
from logah.ghn.graphormer import Graphormer
from logah.ghn.normalize import WEIGHT_TYPES, Rule, apply_1d, family_of, rule_for
from logah.ghn.rows import Rows, interleave, split
from logah.graph import PRIMITIVES, batch_graphs


class GHNInputError(LogahError):
    """A graph the GHN cannot read (unknown node type, unsupported parameter shape)."""


@dataclass(frozen=True)
class Item:
    """One tensor to predict: the node whose tensor it is a slice of, and how to make it.

    ``unit`` identifies the predicted tensor (its node, or with ``ghn.fused=false`` the parameter
    itself); ``unit_shape`` is that tensor's 4-D shape (the graph's ``node_shape``) and ``rows``
    the out-channel rows of it that are this parameter (all of them unless fused; interleaved
    with the other members when fused, :mod:`logah.ghn.rows`).
    """

    graph: int
    name: str
    shape: tuple[int, ...]
    node: int
    rule: Rule
    classifier: bool
    unit_shape: tuple[int, int, int, int] = (0, 0, 0, 0)
    rows: Rows = Rows(0, 0, 0, 0)
    unit: Hashable = None

    @property
    def key(self) -> tuple:
        """Units with equal keys are decoded in one batched call."""
        if len(self.shape) == 1:
            return ("1d", self.unit_shape[0], self.classifier)
        return ("nd", self.unit_shape, self.classifier)


def _with_rows(items: list[Item], ranges: dict[Hashable, list[tuple[int, int]]]) -> list[Item]:
    """Items with their rows of their unit: each unit's graph ranges (in item order) interleaved."""
    rows = {unit: iter(interleave(rs)) for unit, rs in ranges.items()}
    return [dataclasses.replace(it, rows=next(rows[it.unit])) for it in items]


def units_of(items: Sequence[Item]) -> dict[tuple, dict[Hashable, list[Item]]]:
    """key -> unit -> the items sliced from it (insertion order)."""
    groups: dict[tuple, dict[Hashable, list[Item]]] = {}
    for it in items:
        groups.setdefault(it.key, {}).setdefault(it.unit, []).append(it)
    return groups


BIG = 1 << 20  # tensors at least this large use every intra-op thread for their product


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Temporarily use at most ``n`` intra-op threads (never spans a ``yield`` of the caller)."""
    old = torch.get_num_threads()
    if n >= old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def as_batch(graphs: Data | Sequence[Data]) -> Batch:
    """One ArchGraph, a list of them or a Batch -> a Batch."""
    if isinstance(graphs, Batch):
        return graphs
    if isinstance(graphs, Data):
        return batch_graphs([graphs])
    return batch_graphs(list(graphs))


class GHN(nn.Module):
    """A GHN-2 / GHN-3 / LoGAH hypernetwork built from a :class:`GHNConfig` (preset + overrides).

    Args:
        cfg: the config (default: the ``logah-t`` preset); resolved and kept as ``self.config``.
        seed: seeds the initialisation (without touching the global RNG) when given.
    """

    def __init__(self, cfg: GHNConfig | None = None, seed: int | None = None) -> None:
        super().__init__()
        cfg = (cfg or GHNConfig()).resolved()
        if cfg.n_types is None:
            cfg = dataclasses.replace(cfg, n_types=len(PRIMITIVES))
        self.config = cfg
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            self._build(cfg)

    def _build(self, cfg: GHNConfig) -> None:
        self.embed = NodeEmbedding(cfg.n_types, cfg.hid)
        if cfg.encoder == "graphormer":
            self.encoder: nn.Module = Graphormer(cfg.hid, cfg.layers, cfg.heads, cfg.all_pairs)
        else:
            self.encoder = GatedGNN(cfg.hid, cfg.layers)
        self.ln = nn.LayerNorm(cfg.hid) if cfg.layernorm else nn.Identity()
        if cfg.decoder == "lowrank":
            self.decoder: nn.Module = LowRankDecoder(cfg.hid, cfg.rank, cfg.max_width,
                                                     cfg.factor_layout, cfg.decoder_init)
        else:
            self.decoder = TiledDecoder(cfg.hid, cfg.max_shape, cfg.max_kernel, cfg.num_classes,
                                        cfg.crop, cfg.decoder_init)
        # Read by the optimiser's parameter grouping (logah.lit.optim.param_groups).
        self.decay_all = bool(cfg.decay_all)
        # GHN-3 init: embeddings trunc-normal with std hid^-0.5; the distance table sinusoidal.
        std = cfg.hid ** -0.5
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if isinstance(m, TrainedEmbedding):
                m.fallback = cfg.size_lookup == "trained"
        if isinstance(self.encoder, Graphormer):
            self.encoder.edge_bias.reset_table()

    def _restore_buffers(self) -> None:
        """After ``load_state_dict(assign=True)`` into a meta-built GHN: real vocabulary buffers."""
        self.embed.shape_embed.reset_vocab()

    @property
    def device(self) -> torch.device:
        return self.embed.type_embed.weight.device

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- stages ---------------------------------------------------------------------------------
    def node_embeddings(self, batch: Batch) -> torch.Tensor:
        """Batch -> final node embeddings (N, hid)."""
        x = self.embed(batch.node_type, batch.node_shape)
        return self.ln(self.encoder(x, batch))

    def plan(self, batch: Batch) -> list[list[Item]]:
        """Per graph, one :class:`Item` per parameter (in ``param_names`` order)."""
        node_type = batch.node_type.tolist()
        if node_type and max(node_type) >= self.config.n_types:
            raise GHNInputError(
                f"graph node type {max(node_type)} is outside this GHN's type table "
                f"({self.config.n_types} rows); build the GHN with a larger ghn.n_types")
        ptr = batch.ptr.tolist()
        owners = batch.param_node_index.tolist()
        node_shape = batch.node_shape.tolist()
        rows = batch.param_rows.tolist()
        # tied: the owner also feeds a weight node without a tensor (reuses the owner's)
        tied = {u for u, v in batch.edge_index.t().tolist()
                if PRIMITIVES[node_type[v]] in WEIGHT_TYPES and not any(node_shape[v])}
        plans, k = [], 0
        for gi, (names, shapes, key) in enumerate(
                zip(batch.param_names, batch.param_shapes, batch.spec_key, strict=True)):
            family, n_layer = family_of(key)
            last = ptr[gi + 1] - 1  # the graph's last node
            nodes = owners[k:k + len(names)]
            cls_w = {n for n, s in zip(nodes, shapes) if n >= last - 1 and len(s) > 1
                     and PRIMITIVES[node_type[n]] == "conv"}
            items, ranges = [], {}
            for j, (name, shape, node) in enumerate(zip(names, shapes, nodes, strict=True)):
                shape = tuple(int(d) for d in shape)
                owner = PRIMITIVES[node_type[node]]
                if len(shape) > 4 or len(shape) == 0:
                    raise GHNInputError(f"{name}: cannot predict a tensor of shape {list(shape)}")
                classifier = node in cls_w or (len(shape) == 1 and node == last
                                               and owner == "bias" and last - 1 in cls_w)
                unit4, r, unit = tuple(node_shape[node]), tuple(rows[k + j]), node
                if not self.config.fused and r != (0, unit4[0]):  # ablation: slice = own tensor
                    unit4, r, unit = (r[1] - r[0], *unit4[1:]), (0, r[1] - r[0]), (node, name)
                rule = rule_for(self.config, name, shape, unit4, owner, family, n_layer,
                                node in tied)
                items.append(Item(gi, name, shape, node, rule, classifier, unit4, unit=unit))
                ranges.setdefault(unit, []).append(r)
            k += len(names)
            plans.append(_with_rows(items, ranges))
        return plans

    def _decode(self, x: torch.Tensor, key: tuple, units: Sequence[list[Item]]
                ) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Decode one group of equal-key units; x (g, hid) are their nodes' embeddings.

        Returns, per unit, (tensor, Frobenius norm) for each of its items (its row slice).
        """
        kind, size, classifier = key
        out = []
        if kind == "1d":
            v = self.decoder.decode_1d(x, size, classifier)  # (g, 2, c)
            # unbind, not v[j]: one backward node for the group instead of g zero-filled copies
            for vj, items in zip(v.unbind(0), units, strict=True):
                # each member's rule on the unit's vector, then its rows (a whole one: itself)
                ts = [split(apply_1d(vj[None], it.rule)[0], [it.rows])[0] for it in items]
                out.append([(t, t.norm()) for t in ts])
            return out
        # a unit is normalised as one tensor (a fused q/k/v as the reference's c_attn)
        std = x.new_tensor([items[0].rule.std_target for items in units])
        scale = x.new_tensor([items[0].rule.scale for items in units])
        ws, row_sq = self.decoder.decode_nd_items(x, size, std, scale, classifier)  # g x 4-D
        for w, sq, items in zip(ws, row_sq.unbind(0), units, strict=True):
            rows = [it.rows for it in items]
            out.append([(t.reshape(it.shape), s.sum().clamp(min=1e-30).sqrt())
                        for t, s, it in zip(split(w, rows), split(sq, rows), items, strict=True)])
        return out

    def _no_autocast(self):
        # Decoders run in float32 even under mixed precision (as the reference does).
        return torch.autocast(self.device.type, enabled=False) if self.device.type in (
            "cpu", "cuda") else contextlib.nullcontext()

    # ---- prediction -----------------------------------------------------------------------------
    def forward(self, graphs: Data | Sequence[Data], norms: bool = False
                ) -> list[dict[str, torch.Tensor]] | tuple[list[dict[str, torch.Tensor]],
                                                           list[torch.Tensor]]:
        """Predict every parameter of every graph's model (differentiable).

        Args:
            graphs: an ArchGraph, a list of them, or a Batch from ``batch_graphs``.
            norms: also return, per graph, the Frobenius norm of every predicted tensor, (P,) in
                ``param_names`` order (the training regulariser). The low-rank decoder computes
                them from its factors, so neither the forward nor the backward pass touches the
                full tensors for them.

        Returns:
            One dict per graph, ``param_names`` order: name -> tensor of the parameter's shape
            (on the GHN's device, the GHN's dtype); with ``norms``, ``(dicts, norms)``.
        """
        batch = as_batch(graphs)
        plans = self.plan(batch)
        h = self.node_embeddings(batch.to(self.device))
        out: list[dict[str, torch.Tensor]] = [{} for _ in plans]
        fro: list[dict[str, torch.Tensor]] = [{} for _ in plans]
        with self._no_autocast():
            h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
            for key, units in units_of([it for items in plans for it in items]).items():
                groups = list(units.values())
                x = h[torch.tensor([items[0].node for items in groups], device=h.device)]
                for items, results in zip(groups, self._decode(x, key, groups), strict=True):
                    for it, (t, n) in zip(items, results, strict=True):
                        out[it.graph][it.name], fro[it.graph][it.name] = t, n
        params = [{it.name: d[it.name] for it in items} for d, items in zip(out, plans, strict=True)]
        if not norms:
            return params
        return params, [torch.stack([f[it.name] for it in items])
                        for f, items in zip(fro, plans, strict=True)]

    @torch.no_grad()
    def predict(self, graph: Data, chunk_numel: int | None = None
                ) -> Iterator[tuple[str, torch.Tensor]]:
        """Stream ``(name, tensor)`` for every parameter of one graph, one tensor at a time.

        ``chunk_numel``: a 2-D tensor with more elements is yielded as consecutive row blocks
        ``(name, rows)`` of at most that many elements (same values up to rounding).

        The encoder runs once. When the iterator first reaches a shape, the small per-node work
        of every node of that shape is done at once (low-rank: seeds, factors, std — a few
        percent of the target's size in all); each tensor's one full-size product happens only
        when the iterator reaches it, so a caller that writes and drops each tensor holds about
        one tensor at a time.
        """
        small = (lambda: _threads(1)) if self.device.type == "cpu" else contextlib.nullcontext
        with small():  # small ops: one thread (no OpenMP start/barrier cost per op)
            batch = as_batch(graph)
            (items,) = self.plan(batch)
            h = self.node_embeddings(batch.to(self.device))
        groups = units_of(items)
        ready: dict[tuple, tuple[dict[Hashable, int], Callable[..., torch.Tensor]]] = {}
        for it in items:
            if chunk_numel and len(it.shape) == 2 and math.prod(it.shape) > chunk_numel:
                yield from self._predict_rows(h, it, groups[it.key], chunk_numel)
                continue
            with self._no_autocast():
                if it.key not in ready:
                    with small():
                        ready[it.key] = self._prepare(h, it.key, list(groups[it.key].values()))
                index, take = ready[it.key]
                with small() if math.prod(it.shape) < BIG else contextlib.nullcontext():
                    tensor = take(index[it.unit], it)
            yield it.name, tensor

    def _predict_rows(self, h: torch.Tensor, it: Item, group: Sequence[Item],
                      chunk_numel: int) -> Iterator[tuple[str, torch.Tensor]]:
        """Item ``it`` as row blocks (prepared for this item alone, so nothing else is held)."""
        with self._no_autocast():
            x = h[torch.tensor([it.node], device=h.device)]
            std = x.new_tensor([it.rule.std_target])
            scale = x.new_tensor([it.rule.scale])
            rows = self.decoder.prepare_rows(x, it.key[1], std, scale, it.classifier)
            step = max(1, chunk_numel // it.shape[1])
            for r0 in range(0, it.shape[0], step):  # a fused member: its rows of the unit
                yield it.name, rows(0, it.rows.index(r0, min(r0 + step, it.shape[0]), x.device))

    def _prepare(self, h: torch.Tensor, key: tuple, units: Sequence[list[Item]]
                 ) -> tuple[dict[Hashable, int], Callable[..., torch.Tensor]]:
        """Per-shape small work; returns unit -> index and ``take(index, item)`` -> its tensor."""
        kind, size, classifier = key
        x = h[torch.tensor([items[0].node for items in units], device=h.device)]
        index = {items[0].unit: j for j, items in enumerate(units)}
        if kind == "1d":
            v = self.decoder.decode_1d(x, size, classifier)  # (g, 2, c), tiny
            return index, lambda j, it: split(apply_1d(v[j:j + 1], it.rule)[0], [it.rows])[0]
        std = x.new_tensor([items[0].rule.std_target for items in units])
        scale = x.new_tensor([items[0].rule.scale for items in units])
        take = self.decoder.prepare_nd(x, size, std, scale, classifier)
        return index, lambda j, it: take(
            j, None if it.rows.whole else it.rows.index(device=x.device)).reshape(it.shape)
