"""Llama graphs: the reference's node types for RMSNorm, rotary embeddings and the SwiGLU gate."""

from __future__ import annotations

from collections import Counter

from logah.config import get_preset
from logah.graph import PRIMITIVES, graph_for_spec


def test_llama_block_has_rmsnorm_rotary_and_gate_nodes():
    spec = get_preset("llama-mini")
    g = graph_for_spec(spec)
    types = Counter(PRIMITIVES[int(t)] for t in g.node_type)
    L = spec.n_layer
    assert types["rmsnorm"] == 2 * L + 1  # ln_1, ln_2 per block + ln_f
    assert types["rot_emb"] == 2 * L  # rotary on q and on k
    assert types["gate"] == L  # silu(gate) * up
    assert types["act"] == L and types["msa"] == L
    assert "ln" not in types and "bias" not in types  # no LayerNorm, no biases
    names = dict(zip(g.node_names, (PRIMITIVES[int(t)] for t in g.node_type)))
    by_name = {n: i for i, n in enumerate(g.node_names)}
    edges = set(zip(*(e.tolist() for e in g.edge_index)))
    qkv = by_name["blocks.0.attn.[q,k,v]"]  # one fused node (logah.graph.fused)
    rot = [by_name[n] for n, t in names.items() if t == "rot_emb" and n.startswith("blocks.0.")]
    msa = next(by_name[n] for n, t in names.items() if t == "msa" and n.startswith("blocks.0."))
    assert len(rot) == 2 and all((qkv, r) in edges and (r, msa) in edges for r in rot)
    assert (qkv, msa) in edges  # v reaches attention unrotated
    gate = next(by_name[n] for n, t in names.items() if t == "gate" and n.startswith("blocks.0."))
    act = by_name["blocks.0.mlp.act"]
    gu = by_name["blocks.0.mlp.[gate,fc]"]
    assert {(gu, act), (act, gate), (gu, gate)} <= edges  # silu(gate) * up


def test_every_llama_preset_parameter_has_a_node():
    for arch in ("llama-tiny", "llama-3-8b"):
        spec = get_preset(arch)
        g = graph_for_spec(spec)
        assert len(g.param_names) == len(set(g.param_names))
        assert {n for n in g.param_names} >= {"wte.weight", "ln_f.weight",
                                              "blocks.0.mlp.gate.weight"}
