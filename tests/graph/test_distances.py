"""Virtual edges and distances against networkx shortest paths."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from logah.config import get_preset
from logah.graph import capped_distances, graph_for_spec, input_distances, virtual_edges


def _random_dag(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Edges u -> v (u < v) kept with probability p, plus a chain so some paths are long."""
    u, v = np.triu_indices(n, k=1)
    keep = rng.random(u.size) < p
    keep |= (v == u + 1) & (rng.random(u.size) < 0.7)
    return np.stack([u[keep], v[keep]])


def _expected(edge_index: np.ndarray, n: int, cutoff: int) -> dict:
    """networkx: (u, v) -> (d(u->v), d(v->u)) for every pair within the cutoff either way."""
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edge_index.T.tolist())
    d = {s: dict(t) for s, t in nx.all_pairs_shortest_path_length(g, cutoff=cutoff)}
    out = {}
    for u in range(n):
        for v in range(n):
            if u != v and (v in d[u] or u in d[v]):
                out[(u, v)] = (d[u].get(v, 0), d[v].get(u, 0))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_virtual_edges_equal_networkx_shortest_paths(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    edges = _random_dag(rng, n, p=float(rng.choice([0.02, 0.08, 0.3])))
    cutoff = int(rng.choice([1, 2, 3, 5, 50]))
    ve_index, ve_attr = virtual_edges(capped_distances(edges, n, cutoff), cutoff)
    got = {(u, v): (f, b) for (u, v), (f, b) in zip(ve_index.T.tolist(), ve_attr.tolist())}
    assert got == _expected(edges, n, cutoff)
    assert len(got) == ve_index.shape[1], "no duplicate pairs"
    # input distances: uncapped BFS from node 0, 0 where unreachable
    g = nx.DiGraph(edges.T.tolist())
    g.add_nodes_from(range(n))
    bfs = nx.single_source_shortest_path_length(g, 0)
    assert input_distances(edges, n).tolist() == [bfs.get(v, 0) for v in range(n)]


def test_graph_virtual_edges_match_networkx():
    """Full pipeline: ve_index/ve_attr of a real graph, with a small cutoff so it matters."""
    g = graph_for_spec(get_preset("gpt2-tiny"), cutoff=4)
    edges = g.edge_index.numpy()
    got = {(u, v): (f, b) for (u, v), (f, b) in zip(g.ve_index.t().tolist(), g.ve_attr.tolist())}
    assert got == _expected(edges, g.num_nodes, 4)
    assert int(g.cutoff) == 4
    real = {tuple(e) for e in edges.T.tolist()}
    assert {k for k, (f, _) in got.items() if f == 1} == real  # real edges are distance 1


def test_bad_cutoff_and_order_are_rejected():
    with pytest.raises(ValueError, match="ve_cutoff"):
        capped_distances(np.zeros((2, 0), dtype=np.int64), 3, 0)
    with pytest.raises(ValueError, match="topological"):
        capped_distances(np.array([[2], [1]]), 3, 5)
