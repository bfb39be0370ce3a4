"""Shortest-path distances on a DAG whose node ids are a topological order, and virtual edges.

Because every edge goes from a smaller to a larger id, the distances from all sources to node v
follow from those to v's predecessors: ``d(., v) = 1 + min_{u in pred(v)} d(., u)``. One pass
over the nodes, each a vectorised min over a few rows of an (N, N) int16 matrix, gives all-pairs
distances (capped at the cutoff) in O(E * N) numpy work: a few milliseconds for GPT-2 Large's 654
nodes, where the reference runs networkx all-pairs BFS.
"""

from __future__ import annotations

import numpy as np

MAX_CUTOFF = 30000  # distances are int16, capped at cutoff + 1


def check_cutoff(cutoff: int) -> int:
    """Validate a virtual-edge cutoff (>= 1; 1 keeps only real edges)."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | np.integer):
        raise ValueError(f"ve_cutoff must be an int, got {cutoff!r}")
    if not 1 <= cutoff <= MAX_CUTOFF:
        raise ValueError(f"ve_cutoff must be in [1, {MAX_CUTOFF}], got {cutoff}")
    return int(cutoff)


def _preds_by_dst(edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sources sorted by destination, and CSR offsets: preds of v = src[start[v]:start[v + 1]]."""
    src, dst = edge_index
    if src.size and not (src < dst).all():
        raise ValueError("edges must go from a smaller to a larger node id (topological order)")
    order = np.argsort(dst, kind="stable")
    start = np.searchsorted(dst[order], np.arange(num_nodes + 1))
    return src[order], start


def capped_distances(edge_index: np.ndarray, num_nodes: int, cutoff: int) -> np.ndarray:
    """``D[v, u]`` = length of the shortest path u -> v, or ``cutoff + 1`` if longer / none.

    Note the transposed layout (row = destination), so each step reads whole contiguous rows.

    Args:
        edge_index: int array (2, E), every edge ``u < v``.
        num_nodes: N.
        cutoff: largest distance kept.

    Returns:
        int16 array (N, N), 0 on the diagonal.
    """
    cutoff = check_cutoff(cutoff)
    inf = np.int16(cutoff + 1)
    src, start = _preds_by_dst(np.asarray(edge_index, dtype=np.int64), num_nodes)
    dist = np.full((num_nodes, num_nodes), inf, dtype=np.int16)
    for v in range(num_nodes):
        a, b = start[v], start[v + 1]
        if b > a:
            row = (dist[src[a]] if b - a == 1 else dist[src[a:b]].min(axis=0)) + np.int16(1)
            np.minimum(row, inf, out=row)
            dist[v] = row
        dist[v, v] = 0
    return dist


def input_distances(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Shortest-path length from node 0 to every node, uncapped (0 for node 0 and unreachable)."""
    src, start = _preds_by_dst(np.asarray(edge_index, dtype=np.int64), num_nodes)
    far = num_nodes + 1
    d = [0] + [far] * (num_nodes - 1)
    src_list, start_list = src.tolist(), start.tolist()
    for v in range(1, num_nodes):
        preds = src_list[start_list[v]:start_list[v + 1]]
        if preds:
            d[v] = min(d[u] for u in preds) + 1
    out = np.asarray(d, dtype=np.int64)
    out[out >= far] = 0
    return out


def virtual_edges(dist: np.ndarray, cutoff: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (u, v), u != v, connected within ``cutoff`` in either direction.

    Args:
        dist: the output of :func:`capped_distances` (row = destination).
        cutoff: the same cutoff.

    Returns:
        ``ve_index`` int64 (2, V) in row-major (u, v) order and ``ve_attr`` int64 (V, 2):
        forward distance u -> v and backward distance v -> u, 0 where none within the cutoff.
    """
    reach = dist <= cutoff  # reach[v, u]: u -> v within cutoff
    np.fill_diagonal(reach, False)
    u, v = np.nonzero(reach | reach.T)
    fw = np.where(reach[v, u], dist[v, u], 0)
    bw = np.where(reach[u, v], dist[u, v], 0)
    return np.stack([u, v]).astype(np.int64), np.stack([fw, bw], axis=1).astype(np.int64)
