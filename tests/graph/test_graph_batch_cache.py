"""Batching offsets, the per-spec cache, and identical graphs across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch_geometric.data import Batch

from logah.config import get_preset
from logah.graph import (
    DEFAULT_VE_CUTOFF, ArchGraph, batch_graphs, build_graph, clear_cache, graph_for_spec,
    graph_hash, meta_model,
)
from logah.nn import build_model


def test_batch_offsets_node_indices():
    graphs = [graph_for_spec(get_preset(a)) for a in ("gpt2-tiny", "vit-tiny", "gpt2-tiny")]
    b = batch_graphs(graphs)
    assert isinstance(b, Batch) and b.num_graphs == 3
    sizes = [g.num_nodes for g in graphs]
    starts = [0, sizes[0], sizes[0] + sizes[1]]
    assert b.num_nodes == sum(sizes)
    assert torch.equal(b.batch, torch.repeat_interleave(torch.arange(3), torch.tensor(sizes)))
    p0 = 0
    e0 = v0 = 0
    for g, s in zip(graphs, starts):
        p, e, v = len(g.param_names), g.edge_index.shape[1], g.ve_index.shape[1]
        assert torch.equal(b.param_node_index[p0:p0 + p], g.param_node_index + s)
        assert torch.equal(b.edge_index[:, e0:e0 + e], g.edge_index + s)
        assert torch.equal(b.ve_index[:, v0:v0 + v], g.ve_index + s)
        assert torch.equal(b.ve_attr[v0:v0 + v], g.ve_attr)
        p0, e0, v0 = p0 + p, e0 + e, v0 + v
    assert torch.equal(b.node_type, torch.cat([g.node_type for g in graphs]))
    assert torch.equal(b.node_shape, torch.cat([g.node_shape for g in graphs]))
    assert b.param_names[1] == graphs[1].param_names  # lists are kept per graph
    assert b.cutoff.tolist() == [DEFAULT_VE_CUTOFF] * 3
    back = b.get_example(1)
    assert torch.equal(back.param_node_index, graphs[1].param_node_index)
    assert torch.equal(back.ve_index, graphs[1].ve_index)


def test_batch_rejects_mixed_cutoffs_and_empty():
    spec = get_preset("gpt2-tiny")
    with pytest.raises(ValueError, match="cutoff"):
        batch_graphs([graph_for_spec(spec, cutoff=3), graph_for_spec(spec, cutoff=4)])
    with pytest.raises(ValueError):
        batch_graphs([])


def test_cache_keyed_by_spec_and_cutoff():
    clear_cache()
    spec = get_preset("vit-tiny")
    a, b = graph_for_spec(spec), graph_for_spec(spec)
    assert isinstance(a, ArchGraph) and a is not b
    assert a.ve_index is b.ve_index  # second call served from the cache
    c = graph_for_spec(spec, cutoff=2)
    assert int(c.cutoff) == 2 and c.ve_index.shape[1] < a.ve_index.shape[1]
    # growth history is not part of the key; any dimension is
    assert graph_for_spec(spec.replace(growth=({"op": "x"},))).ve_index is a.ve_index
    assert graph_for_spec(spec.replace(d_mlp=spec.d_mlp + 1)).ve_index is not a.ve_index
    # a returned graph is a separate object: replacing its fields leaves the cache intact
    a.node_type = a.node_type + 1
    assert torch.equal(graph_for_spec(spec).node_type, b.node_type)
    assert graph_hash(graph_for_spec(spec)) == graph_hash(build_graph(meta_model(spec)))
    # a materialised model gives the same graph as its meta twin
    assert graph_hash(build_graph(build_model(spec, seed=0))) == graph_hash(b)


_HASHES = """
import json, torch
from torch import nn
from logah.config import get_preset, ModelSpec
from logah.graph import build_graph, graph_for_spec, graph_hash

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)
    def forward(self, idx):
        x = self.emb(idx)
        return self.fc(x + self.mha(x, x, x)[0]).mean(1)

with torch.device("meta"):
    net = Net()
odd = ModelSpec("gpt2", 3, 40, 5, 7, 3, 72, vocab_size=99, n_ctx=17, tie_embeddings=False)
out = {a: graph_hash(graph_for_spec(get_preset(a))) for a in ("gpt2-small", "vit-small")}
out["odd"] = graph_hash(graph_for_spec(odd, cutoff=7))
out["net"] = graph_hash(build_graph(net))
print(json.dumps(out))
"""


def test_identical_graphs_across_processes():
    """Two fresh processes (different string-hash seeds) and this one agree on every hash."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _HASHES], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONHASHSEED": seed})
        for seed in ("1", "2")
    ]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    local: dict = {}
    exec(_HASHES.replace("print(json.dumps(out))", ""), local)
    assert local["out"] == outs[0]
