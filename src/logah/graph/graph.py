"""``ArchGraph``: the PyG graph a hypernetwork sees. Built from a model, cached, batched."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from logah.config.specs import ModelSpec
from logah.graph.distances import capped_distances, check_cutoff, input_distances, virtual_edges
from logah.graph.errors import UnsupportedModuleError, describe
from logah.graph.primitives import PRIMITIVES, TYPE_ID
from logah.graph.trace import trace_nodes

# One cutoff everywhere (train, eval, prediction): the GHN-2/GHN-3 training value. The reference
# mixes 50 and 250 between training and evaluation, shifting the distance features between them.
DEFAULT_VE_CUTOFF = 50
CACHE_SIZE = 256


class ArchGraph(Data):
    """A target model as a graph (PyG ``Data``). N nodes, P parameters, E real and V virtual edges.

    Attributes:
        node_type: int64 (N,), ids into :data:`PRIMITIVES`; node 0 is ``input``; ids topological.
        node_shape: int64 (N, 4), the shape (out, in, kh, kw) of the parameter the node receives
            (zeros for nodes without one).
        edge_index: int64 (2, E), real edges in the forward direction (always u < v).
        ve_index: int64 (2, V), every ordered pair u != v within ``cutoff`` hops, either way.
        ve_attr: int64 (V, 2), forward distance u -> v and backward distance v -> u (0 if none).
        in_degree, out_degree: int64 (N,), over real edges.
        input_dist: int64 (N,), shortest-path distance from node 0 (not capped by the cutoff).
        param_names: every parameter name (``named_parameters()`` order), each exactly once.
        param_node_index: int64 (P,), the node owning each name (offset by PyG when batched).
        param_rows: int64 (P, 2), the rows [start, stop) of the owner's tensor (``node_shape``
            dim 0) that are this parameter: all of them, or its slice of a fused group.
        param_shapes: the true shape of each parameter.
        node_names: a readable name per node (module path, parameter name or ``path:op``).
        cutoff: the virtual-edge cutoff; spec_key: ``ModelSpec.key()`` or ``''``.
    """

    def type_counts(self) -> dict[str, int]:
        """Node count per primitive name, in vocabulary order."""
        counts = Counter(self.node_type.tolist())
        return {PRIMITIVES[i]: counts[i] for i in sorted(counts)}

    def summary(self) -> str:
        """One line: nodes, edges, virtual edges, parameters, cutoff and the type histogram."""
        types = ", ".join(f"{k} {v}" for k, v in self.type_counts().items())
        return (f"{self.num_nodes} nodes, {self.edge_index.shape[1]} edges, "
                f"{self.ve_index.shape[1]} virtual edges (cutoff {self.cutoff}), "
                f"{len(self.param_names)} parameters; {types}")


def _spec_key(model: nn.Module, spec: ModelSpec | None) -> str:
    spec = spec if spec is not None else getattr(model, "spec", None)
    return spec.key() if isinstance(spec, ModelSpec) else ""


def build_graph(model: nn.Module, cutoff: int = DEFAULT_VE_CUTOFF,
                spec: ModelSpec | None = None) -> ArchGraph:
    """Build the graph of ``model`` (any device; ``meta`` costs no memory).

    Args:
        model: a GPT2/ViT or any module made of supported modules (see ``docs/graph.md``).
        cutoff: virtual-edge cutoff (shortest-path hops), stored on the graph.
        spec: recorded as ``spec_key`` (default: ``model.spec`` when it is a ModelSpec).

    Raises:
        UnsupportedModuleError: naming the module path and type that cannot be represented.
    """
    cutoff = check_cutoff(cutoff)
    nodes, owner, rows = trace_nodes(model)
    names, node_of, shapes, param_rows = [], [], [], []
    for name, p in model.named_parameters():
        if id(p) not in owner:
            path = name.rpartition(".")[0]
            raise UnsupportedModuleError(
                f"{describe(path, model.get_submodule(path))}: parameter '{name}' is never used "
                "by forward(), so no graph node can receive it"
            )
        names.append(name)
        node_of.append(owner[id(p)])
        shapes.append(tuple(p.shape))
        param_rows.append(rows[id(p)])
    n = len(nodes)
    edges = sorted((u, v) for v, node in enumerate(nodes) for u in node.preds)
    edge_index = np.array(edges, dtype=np.int64).reshape(-1, 2).T  # (2, E)
    ve_index, ve_attr = virtual_edges(capped_distances(edge_index, n, cutoff), cutoff)
    return ArchGraph(
        node_type=torch.tensor([TYPE_ID[x.type] for x in nodes], dtype=torch.long),
        node_shape=torch.tensor([x.shape for x in nodes], dtype=torch.long),
        edge_index=torch.from_numpy(edge_index.copy()),
        ve_index=torch.from_numpy(ve_index),
        ve_attr=torch.from_numpy(ve_attr),
        in_degree=torch.from_numpy(np.bincount(edge_index[1], minlength=n)),
        out_degree=torch.from_numpy(np.bincount(edge_index[0], minlength=n)),
        input_dist=torch.from_numpy(input_distances(edge_index, n)),
        param_names=names,
        param_node_index=torch.tensor(node_of, dtype=torch.long),
        param_rows=torch.tensor(param_rows, dtype=torch.long).reshape(-1, 2),
        param_shapes=shapes,
        node_names=[x.name for x in nodes],
        cutoff=cutoff,
        spec_key=_spec_key(model, spec),
        num_nodes=n,
    )


def meta_model(spec: ModelSpec) -> nn.Module:
    """The model of ``spec`` on the meta device (no memory; ``build_model`` skips init on meta)."""
    from logah.nn import build_model

    return build_model(spec, device="meta")


class GraphCache:
    """Graphs of specs, built on meta, keyed by ``(spec.key(), cutoff)``; least-recently-used
    eviction beyond ``capacity``; thread-safe. The one graph cache: :func:`graph_for_spec` uses a
    shared instance, an architecture DataModule its own (``archs.graph_cache`` graphs).

    ``cache(spec)`` returns the cached graph itself (treat it as read-only).
    """

    def __init__(self, capacity: int = CACHE_SIZE, cutoff: int | None = None) -> None:
        self.capacity = max(int(capacity), 1)
        self.cutoff = check_cutoff(DEFAULT_VE_CUTOFF if cutoff is None else cutoff)
        self._graphs: OrderedDict[tuple[str, int], ArchGraph] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, spec: ModelSpec, cutoff: int | None = None) -> ArchGraph:
        key = (spec.key(), self.cutoff if cutoff is None else check_cutoff(cutoff))
        with self._lock:
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
                return graph
        graph = build_graph(meta_model(spec), key[1], spec)
        with self._lock:
            graph = self._graphs.setdefault(key, graph)
            while len(self._graphs) > self.capacity:
                self._graphs.popitem(last=False)
        return graph

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        with self._lock:
            self._graphs.clear()


_shared = GraphCache(CACHE_SIZE)


def graph_for_spec(spec: ModelSpec, cutoff: int = DEFAULT_VE_CUTOFF) -> ArchGraph:
    """The graph of ``spec``'s model, built on meta and cached by ``(spec.key(), cutoff)``.

    Returns a fresh ``Data`` object each call (tensors shared with the cache: treat them as
    read-only; ``.to(device)`` and batching make copies).
    """
    return _shared(spec, cutoff).__copy__()


def clear_cache() -> None:
    """Forget every graph of the shared :func:`graph_for_spec` cache."""
    _shared.clear()


def batch_graphs(graphs: list[ArchGraph]) -> Batch:
    """Concatenate graphs into one PyG ``Batch``.

    Node-index fields (``edge_index``, ``ve_index``, ``param_node_index``) are offset by the
    nodes of the graphs before them; ``batch`` maps nodes to graphs; lists become lists of lists.

    Raises:
        ValueError: on an empty list or graphs built with different cutoffs.
    """
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph")
    cutoffs = {int(g.cutoff) for g in graphs}
    if len(cutoffs) > 1:
        raise ValueError(f"graphs built with different ve cutoffs {sorted(cutoffs)} in one batch")
    return Batch.from_data_list(graphs)


def graph_hash(graph: ArchGraph) -> str:
    """SHA-256 of every field (tensors: dtype, shape, bytes; others: repr)."""
    h = hashlib.sha256()
    for key in sorted(graph.keys()):
        value = graph[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            h.update(f"{value.dtype}{tuple(value.shape)}".encode())
            h.update(value.contiguous().numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()
