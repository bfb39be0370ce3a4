"""Architecture graphs: any supported model -> a PyG graph a hypernetwork reads (see docs/graph.md).

``build_graph(model)`` traces the model with ``torch.fx`` (it may live on the ``meta`` device) and
returns an :class:`ArchGraph`; ``graph_for_spec(spec)`` does so for a ``ModelSpec`` with a cache;
``batch_graphs`` concatenates graphs into a ``torch_geometric.data.Batch``.
"""

from logah.graph.distances import capped_distances, input_distances, virtual_edges
from logah.graph.errors import UnsupportedModuleError
from logah.graph.fused import fused_groups, register_fused
from logah.graph.graph import (
    DEFAULT_VE_CUTOFF,
    ArchGraph,
    GraphCache,
    batch_graphs,
    build_graph,
    clear_cache,
    graph_for_spec,
    graph_hash,
    meta_model,
)
from logah.graph.primitives import PRIMITIVES, TYPE_ID

__all__ = [
    "DEFAULT_VE_CUTOFF",
    "PRIMITIVES",
    "TYPE_ID",
    "ArchGraph",
    "GraphCache",
    "UnsupportedModuleError",
    "fused_groups",
    "register_fused",
    "batch_graphs",
    "build_graph",
    "capped_distances",
    "clear_cache",
    "graph_for_spec",
    "graph_hash",
    "input_distances",
    "meta_model",
    "virtual_edges",
]
