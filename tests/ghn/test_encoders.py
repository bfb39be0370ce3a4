"""Encoders: GatedGNN's level sweep equals the reference's node-by-node sweep; Graphormer attends
exactly along virtual edges (+ self); node embeddings see types and shapes."""

from __future__ import annotations

import pytest
import torch

from logah.config import get_preset
from logah.ghn.embed import NodeEmbedding, channel_vocab
from logah.ghn.gatedgnn import GatedGNN
from logah.ghn.graphormer import Graphormer
from logah.graph import batch_graphs, graph_for_spec


def _naive_gatedgnn(gnn: GatedGNN, x: torch.Tensor, g) -> torch.Tensor:
    """GHN-2 as the reference runs it: one node at a time, in topological order, then reversed."""
    n = x.shape[0]
    real = set(map(tuple, g.edge_index.t().tolist()))
    ve = {(u, v): d for (u, v), (d, _) in zip(g.ve_index.t().tolist(), g.ve_attr.tolist()) if d > 0}
    h = x.clone()
    for backward in (False, True):
        for v in (reversed(range(n)) if backward else range(n)):
            m = torch.zeros(x.shape[1])
            for u in range(n):
                e = (v, u) if backward else (u, v)  # backward: messages from successors
                if e in real:
                    m = m + gnn.msg.mlp(h[u])
                if e in ve:
                    m = m + gnn.msg.mlp_ve(h[u]) / ve[e]
            h[v] = gnn.gru(m[None], h[v][None])[0]
    return h


def test_gatedgnn_level_sweep_equals_the_sequential_sweep() -> None:
    torch.manual_seed(0)
    g = graph_for_spec(get_preset("vit-tiny"), cutoff=3)
    gnn = GatedGNN(hid=8, rounds=1)
    x = torch.randn(g.num_nodes, 8)
    with torch.no_grad():
        torch.testing.assert_close(gnn(x, g), _naive_gatedgnn(gnn, x, g), rtol=1e-5, atol=1e-6)


def test_graphormer_attends_along_virtual_edges_and_to_itself() -> None:
    torch.manual_seed(0)
    g = graph_for_spec(get_preset("gpt2-tiny"), cutoff=2)
    enc = Graphormer(hid=16, layers=1, heads=4)
    x = torch.randn(g.num_nodes, 16)
    base = enc(x, g)
    u = 20
    x2 = x.clone()
    x2[u] += torch.randn(16)  # not a constant shift: LayerNorm would remove that
    changed = ((enc(x2, g) - base).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    targets = sorted({v for s, v in g.ve_index.t().tolist() if s == u} | {u})
    assert changed == targets  # one layer: exactly the nodes that attend to u


def test_node_embedding_sees_type_and_shape() -> None:
    torch.manual_seed(0)
    emb = NodeEmbedding(n_types=5, hid=16)
    types = torch.tensor([4, 4, 4, 1])
    shapes = torch.tensor([[768, 768, 1, 1], [770, 768, 1, 1], [50257, 768, 1, 1], [0, 0, 0, 0]])
    h = emb(types, shapes)
    torch.testing.assert_close(h[0], h[1])  # 770 maps to the nearest vocabulary entry, 768
    assert not torch.allclose(h[0], h[2])
    assert 50257 in channel_vocab() and 768 in channel_vocab()


def test_dense_attention_equals_message_passing(tiny_graphs) -> None:
    from logah.graph import batch_graphs

    torch.manual_seed(0)
    batch = batch_graphs([*tiny_graphs, graph_for_spec(get_preset("vit-mini"))])
    enc = Graphormer(hid=16, layers=2, heads=4)
    x = torch.randn(batch.num_nodes, 16, requires_grad=True)
    outs, grads = [], []
    for dense in (False, True):
        enc.dense = dense
        out = enc(x, batch)
        (g,) = torch.autograd.grad(out.square().sum(), x)
        outs.append(out)
        grads.append(g)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)


def _permuted(g, perm: torch.Tensor):
    """The same graph with node i renamed to position inv[i] (new node j is old node perm[j])."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    h = g.__copy__()
    for key in ("node_type", "node_shape", "in_degree", "out_degree", "input_dist"):
        h[key] = g[key][perm]
    h.edge_index, h.ve_index = inv[g.edge_index], inv[g.ve_index]
    h.param_node_index = inv[g.param_node_index]
    return h


@pytest.mark.parametrize("all_pairs", [True, False])
def test_node_embeddings_are_permutation_equivariant(all_pairs) -> None:
    """Renaming nodes (with their edges) renames the embeddings and changes nothing else."""
    from logah.config.ghn import GHNConfig
    from logah.ghn import GHN

    g = graph_for_spec(get_preset("vit-tiny"))
    perm = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0))
    ghn = GHN(GHNConfig(preset="logah-t", all_pairs=all_pairs), seed=0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(ghn.encoder.no_path) if all_pairs else None
        base = ghn.node_embeddings(batch_graphs([g]))
        moved = ghn.node_embeddings(batch_graphs([_permuted(g, perm)]))
    torch.testing.assert_close(moved, base[perm], rtol=1e-5, atol=1e-5)


def test_all_pairs_attend_within_each_graph_only() -> None:
    """One layer, cutoff 2: a change at node u reaches every node of u's graph (pairs without a
    path get the learned no-path bias) and none of the other graph in the batch; a no-path bias
    of -inf is exactly the virtual-edge attention."""
    torch.manual_seed(0)
    graphs = [graph_for_spec(get_preset(a), cutoff=2) for a in ("gpt2-tiny", "vit-tiny")]
    batch = batch_graphs(graphs)
    enc = Graphormer(hid=16, layers=1, heads=4, all_pairs=True)
    x = torch.randn(batch.num_nodes, 16)
    base = enc(x, batch)
    x2 = x.clone()
    x2[20] += torch.randn(16)
    changed = ((enc(x2, batch) - base).abs().sum(1) > 1e-6).nonzero().squeeze(1).tolist()
    assert changed == list(range(graphs[0].num_nodes))
    edges_only = Graphormer(hid=16, layers=1, heads=4)
    edges_only.load_state_dict({k: v for k, v in enc.state_dict().items() if k != "no_path"})
    with torch.no_grad():
        enc.no_path.fill_(float("-inf"))
    torch.testing.assert_close(enc(x, batch), edges_only(x, batch), rtol=1e-5, atol=1e-5)
