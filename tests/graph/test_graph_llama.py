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
    src, dst = g.edge_index
    by_name = {n: i for i, n in enumerate(g.node_names)}
    edges = set(zip(src.tolist(), dst.tolist()))
    rot = [n for n, t in names.items() if t == "rot_emb" and n.startswith("blocks.0.")]
    q, k, v = (by_name[f"blocks.0.attn.{x}"] for x in "qkv")
    assert {(q, by_name[rot[0]]), (k, by_name[rot[1]])} <= edges  # q -> rot, k -> rot
    msa = next(by_name[n] for n, t in names.items() if t == "msa" and n.startswith("blocks.0."))
    assert (v, msa) in edges and (q, msa) not in edges  # v is not rotated


def test_every_llama_preset_parameter_has_a_node():
    for arch in ("llama-tiny", "llama-3-8b"):
        spec = get_preset(arch)
        g = graph_for_spec(spec)
        assert len(g.param_names) == len(set(g.param_names))
        assert {n for n in g.param_names} >= {"wte.weight", "ln_f.weight",
                                              "blocks.0.mlp.gate.weight"}
