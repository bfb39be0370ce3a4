"""Graphs of the target models: hand-derived counts, structure, parameter mapping, every preset."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from logah.config import PRESETS, ModelSpec, get_preset
from logah.graph import PRIMITIVES, TYPE_ID, build_graph, graph_for_spec, meta_model
from logah.graph.shapes import free4, pad4

# ---- hand-derived counts ----------------------------------------------------------------------
# One pre-LN block (GPT-2 and ViT share it), x = the residual stream entering the block:
#   nodes (14): ln_1; [q,k,v] (ONE fused conv node, Attention.fused_projections) + its fused bias;
#               msa (SDPA, fed by the fused bias); proj + bias; sum (x + attn); ln_2; fc + bias;
#               gelu; mlp.proj + bias; sum.
#   edges (16): x->ln_1; ln_1->qkv; qkv->qkvb; qkvb->msa; msa->proj; proj->pb; pb->sum,
#               x->sum (2); sum->ln_2; ln_2->fc; fc->fcb; fcb->gelu; gelu->mproj; mproj->mpb;
#               mpb->sum2, sum->sum2 (2)               = 1+1+1+1+1+1+2+1+1+1+1+1+1+2
# GPT-2, tied (every preset): input; wte, wpe (pos_enc, both fed by input: idx and arange(T));
#   sum(wte, wpe); 12 blocks; ln_f; LM head = a conv node without a tensor of its own, fed by
#   ln_f and by wte (whose weight it reuses).
#   nodes = 1 + 2 + 1 + 12*14 + 1 + 1 = 174
#   edges = input->wte, input->wpe, wte->sum, wpe->sum (4) + 12*16 + x->ln_f, ln_f->head,
#           wte->head (3) = 199
# ViT-S/16: input; patch_embed conv + bias; cls_token (fed by input); concat(cls, patches);
#   pos_embed (pos_enc, fed by input); sum(concat, pos_embed); 12 blocks; ln_f; select (x[:, 0]);
#   head conv + bias.
#   nodes = 1 + 2 + 1 + 1 + 1 + 1 + 12*14 + 1 + 1 + 2 = 179
#   edges = input->conv, conv->bias, input->cls, cls->cat, bias->cat, input->pos, cat->sum,
#           pos->sum (8) + 12*16 + x->ln_f, ln_f->select, select->head, head->bias (4) = 204
GPT2_SMALL = dict(nodes=174, edges=199, types={
    "input": 1, "pos_enc": 2, "sum": 25, "ln": 25, "conv": 49, "bias": 48, "msa": 12, "gelu": 12})
VIT_SMALL = dict(nodes=179, edges=204, types={
    "input": 1, "conv": 50, "bias": 50, "cls_token": 1, "concat": 1, "pos_enc": 1, "sum": 25,
    "ln": 25, "msa": 12, "gelu": 12, "select": 1})


def _types(g) -> dict[str, int]:
    return dict(Counter(PRIMITIVES[t] for t in g.node_type.tolist()))


@pytest.mark.parametrize("arch,want", [("gpt2-small", GPT2_SMALL), ("vit-small", VIT_SMALL)])
def test_counts_equal_hand_derived(arch, want):
    g = graph_for_spec(get_preset(arch))
    assert g.num_nodes == want["nodes"]
    assert g.edge_index.shape[1] == want["edges"]
    assert _types(g) == want["types"]


def test_gpt2_small_block_wiring():
    """Attention is one msa node fed by the fused Q/K/V bias; the residual adds are sums."""
    g = graph_for_spec(get_preset("gpt2-small"))
    idx = {name: i for i, name in enumerate(g.node_names)}
    preds = {v: set() for v in range(g.num_nodes)}
    for u, v in g.edge_index.t().tolist():
        preds[v].add(u)
    msa = [i for i, t in enumerate(g.node_type.tolist()) if t == TYPE_ID["msa"]][0]
    qkv = idx["blocks.0.attn.[q,k,v]"]
    assert preds[msa] == {idx["blocks.0.attn.[q,k,v].bias"]}
    assert preds[idx["blocks.0.attn.[q,k,v].bias"]] == {qkv}
    assert preds[qkv] == {idx["blocks.0.ln_1"]}
    assert g.node_shape[qkv].tolist() == [3 * 768, 768, 1, 1]
    rows = dict(zip(g.param_names, g.param_rows.tolist()))
    owner = dict(zip(g.param_names, g.param_node_index.tolist()))
    for j, r in enumerate("qkv"):  # each projection is its row slice of the fused tensor
        assert owner[f"blocks.0.attn.{r}.weight"] == qkv
        assert rows[f"blocks.0.attn.{r}.weight"] == rows[f"blocks.0.attn.{r}.bias"] \
            == [768 * j, 768 * (j + 1)]
    assert preds[idx["blocks.0.attn.proj"]] == {msa}
    assert preds[idx["blocks.0.ln_1"]] == {3}  # the wte + wpe sum
    assert preds[idx["wte"]] == preds[idx["wpe"]] == {0}
    head = g.num_nodes - 1
    assert g.node_type[head] == TYPE_ID["conv"] and preds[head] == {idx["ln_f"], idx["wte"]}
    assert g.node_shape[head].tolist() == [0, 0, 0, 0]  # tied: wte.weight belongs to wte


def _check_structure(g, model) -> None:
    """Invariants every graph must satisfy, against the model it came from."""
    n = g.num_nodes
    assert g.node_type[0] == TYPE_ID["input"] and (g.node_type[1:] != TYPE_ID["input"]).all()
    src, dst = g.edge_index
    assert (src < dst).all(), "node ids must be a topological order"
    assert g.edge_index.unique(dim=1).shape[1] == g.edge_index.shape[1]
    assert g.in_degree[0] == 0 and (g.in_degree[1:] > 0).all(), "every node but input has a pred"
    assert torch.equal(g.in_degree, torch.bincount(dst, minlength=n))
    assert torch.equal(g.out_degree, torch.bincount(src, minlength=n))
    assert g.input_dist[0] == 0 and (g.input_dist[1:] > 0).all()
    # every state-dict name exactly once, in named_parameters() order, with its true shape
    params = dict(model.named_parameters())
    assert g.param_names == list(params) == list(model.state_dict())
    assert g.param_shapes == [tuple(p.shape) for p in params.values()]
    assert len(g.param_node_index) == len(params)
    # a node needs a tensor iff its shape is non-zero; each such node owns a name
    needs = set(torch.nonzero(g.node_shape.abs().sum(1)).flatten().tolist())
    assert set(g.param_node_index.tolist()) == needs
    # each parameter is rows [start, stop) of its node's tensor: the node's other dims, and the
    # slices of one node tile its rows exactly (all of them, or a fused group's stacked slices)
    slices: dict[int, list] = {}
    for name, node, (r0, r1) in zip(g.param_names, g.param_node_index.tolist(),
                                    g.param_rows.tolist()):
        shape = params[name].shape
        want = free4(shape) if PRIMITIVES[g.node_type[node]] in ("pos_enc", "cls_token") \
            and "." not in name else pad4(shape)
        assert tuple(g.node_shape[node].tolist())[1:] == want[1:], name
        assert r1 - r0 == want[0], name
        slices.setdefault(node, []).append((r0, r1))
    for node, rows in slices.items():
        total = g.node_shape[node, 0].item()
        assert rows == [(0, total)] * len(rows) or (
            [r[0] for r in rows] == [0] + [r[1] for r in rows[:-1]] and rows[-1][1] == total)


@pytest.mark.parametrize("arch", sorted(PRESETS))
def test_every_preset(arch):
    spec = PRESETS[arch]
    g = graph_for_spec(spec)
    _check_structure(g, meta_model(spec))
    assert g.spec_key == spec.key()
    # counts follow the per-block formula for every depth
    if spec.family == "gpt2":
        assert (g.num_nodes, g.edge_index.shape[1]) == (14 * spec.n_layer + 6,
                                                        16 * spec.n_layer + 7)
    elif spec.family == "llama":  # a tied head adds the wte -> head edge
        assert (g.num_nodes, g.edge_index.shape[1]) == (
            13 * spec.n_layer + 4, 18 * spec.n_layer + 3 + spec.tie_embeddings)
    else:
        assert (g.num_nodes, g.edge_index.shape[1]) == (14 * spec.n_layer + 11,
                                                        16 * spec.n_layer + 12)


def _random_spec(rng: np.random.Generator, family: str) -> ModelSpec:
    heads = int(rng.integers(1, 5))
    d_qk, d_v = int(rng.integers(2, 24)), int(rng.integers(2, 24))
    kw = dict(family=family, n_layer=int(rng.integers(1, 5)), d_model=int(rng.integers(4, 96)),
              n_heads=heads, d_qk=d_qk, d_v=d_v, d_mlp=int(rng.integers(4, 200)))
    if family == "gpt2":
        kw.update(vocab_size=int(rng.integers(10, 500)), n_ctx=int(rng.integers(4, 64)),
                  tie_embeddings=bool(rng.integers(2)))
    else:
        patch = int(rng.choice([2, 4, 8]))
        kw.update(image_size=patch * int(rng.integers(1, 5)), patch_size=patch,
                  in_chans=int(rng.choice([1, 3])), num_classes=int(rng.integers(2, 20)))
    return ModelSpec(**kw)


@pytest.mark.parametrize("seed", range(8))
def test_sampled_architectures(seed):
    """Random depths/widths/heads, d_qk != d_v, odd MLP widths, tied and untied."""
    rng = np.random.default_rng(seed)
    for family in ("gpt2", "vit"):
        spec = _random_spec(rng, family)
        model = meta_model(spec)
        g = build_graph(model)
        _check_structure(g, model)
        L = spec.n_layer
        untied = family == "gpt2" and not spec.tie_embeddings
        want_nodes = 14 * L + (6 if family == "gpt2" else 11)
        want_edges = 16 * L + (12 if family == "vit" else 6 if untied else 7)
        assert (g.num_nodes, g.edge_index.shape[1]) == (want_nodes, want_edges), spec
        idx = {name: i for i, name in enumerate(g.node_names)}
        H = spec.n_heads
        qkv = H * (2 * spec.d_qk + spec.d_v)  # one fused node, rows q | k | v (d_qk != d_v)
        assert g.node_shape[idx["blocks.0.attn.[q,k,v]"]].tolist() == [qkv, spec.d_model, 1, 1]
        rows = dict(zip(g.param_names, g.param_rows.tolist()))
        assert rows["blocks.0.attn.v.weight"] == [2 * H * spec.d_qk, qkv]
        assert g.node_shape[idx["blocks.0.mlp.fc"]].tolist() == [spec.d_mlp, spec.d_model, 1, 1]


def test_vit_special_nodes():
    spec = get_preset("vit-small")
    g = graph_for_spec(spec)
    owner = dict(zip(g.param_names, g.param_node_index.tolist()))
    assert PRIMITIVES[g.node_type[owner["cls_token"]]] == "cls_token"
    assert g.node_shape[owner["cls_token"]].tolist() == [1, 384, 1, 1]
    assert PRIMITIVES[g.node_type[owner["pos_embed"]]] == "pos_enc"
    assert g.node_shape[owner["pos_embed"]].tolist() == [spec.n_patches + 1, 384, 1, 1]
    assert g.node_shape[owner["patch_embed.weight"]].tolist() == [384, 3, 16, 16]
    assert owner["ln_f.weight"] == owner["ln_f.bias"]
    assert math.prod(g.param_shapes[g.param_names.index("head.weight")]) == 384 * 1000


def test_gpt2_large_allocates_no_parameter_memory():
    """768M parameters would be ~3 GiB; the graph is built on meta and stays tiny."""
    psutil = pytest.importorskip("psutil")
    spec = get_preset("gpt2-large")
    rss = psutil.Process().memory_info().rss
    model = meta_model(spec)
    g = build_graph(model)
    grown = psutil.Process().memory_info().rss - rss
    assert all(p.is_meta for p in model.parameters())
    assert g.num_nodes == 14 * 36 + 6
    assert grown < 300 * 2**20, f"graph build grew RSS by {grown / 2**20:.0f} MiB"
