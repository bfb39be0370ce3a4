"""Predicting Llamas larger than memory: row-block decoding equals whole-tensor decoding, sharded
weights (ours and HF's) load back, and ``logah predict`` writes a Llama with an HF directory that
``from_pretrained`` reads."""

from __future__ import annotations

import json

import pytest
import torch

from logah.cli.main import main
from logah.config import get_preset
from logah.graph import graph_for_spec
from logah.nn import build_model
from logah.nn.io import load_into, load_state
from logah.nn.shards import INDEX_FILE, ShardedWriter, shard_files
from logah.nn.stream import StreamWriteError


@pytest.mark.parametrize("max_width", [32768, 64], ids=["lowrank", "tiled"])
def test_row_blocks_equal_whole_tensors(max_width, make_ghn):
    """Row blocks of every 2-D tensor equal the whole-tensor prediction; with a small K the
    vocabulary-sized embedding is tiled and its std comes from tile counts."""
    ghn = make_ghn(max_width=max_width).eval()
    graph = graph_for_spec(get_preset("llama-tiny"))
    whole = dict(ghn.predict(graph))
    blocks: dict[str, list[torch.Tensor]] = {}
    for name, t in ghn.predict(graph, chunk_numel=5000):
        blocks.setdefault(name, []).append(t)
    assert blocks.keys() == whole.keys()
    assert len(blocks["wte.weight"]) > 100  # 50257 x 64 in blocks of 78 rows
    for name, parts in blocks.items():
        got = torch.cat(parts) if len(parts) > 1 else parts[0]
        torch.testing.assert_close(got, whole[name], rtol=1e-5, atol=1e-6, msg=name)


def test_sharded_writer_writes_an_index_loads_back_and_cleans_up(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {f"t{i}": torch.randn(40, 10, generator=gen) for i in range(5)}
    shapes = {n: t.shape for n, t in state.items()}
    with ShardedWriter(tmp_path, shapes, torch.float32, max_shard_bytes=3000) as w:
        for n, t in state.items():
            for rows in t.split(15):  # row blocks
                w.write(n, rows)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == 5 * 40 * 10 * 4
    assert len(shard_files(tmp_path)) == 5 and not (tmp_path / "model.safetensors").exists()
    back = load_state(tmp_path)
    assert all(torch.equal(back[n], t) for n, t in state.items())
    with ShardedWriter(tmp_path, shapes, torch.float32) as w:  # fits in one file now
        for n, t in state.items():
            w.write(n, t)
    assert [p.name for p in shard_files(tmp_path)] == ["model.safetensors"]
    assert not (tmp_path / INDEX_FILE).exists() and not list(tmp_path.glob("model-*"))


def test_interrupted_sharded_write_leaves_no_index(tmp_path):
    shapes = {"a": (10, 4), "b": (10, 4)}
    with pytest.raises(StreamWriteError, match="closed before"):
        with ShardedWriter(tmp_path, shapes, max_shard_bytes=100) as w:
            w.write("a", torch.zeros(10, 4))
    assert not (tmp_path / INDEX_FILE).exists()
    with pytest.raises(StreamWriteError, match=r"has shape \[3, 5\]"):
        with ShardedWriter(tmp_path / "x", shapes) as w:
            w.write("a", torch.zeros(3, 5))
    assert not list((tmp_path / "x").glob("*.safetensors"))


def test_predict_llama_tiny_sharded_bf16_with_hf_dir(tmp_path, transformers):
    out = tmp_path / "pred"
    assert main(["predict", "--ghn", "random:logah-t", "--arch", "llama-tiny", "--out", str(out),
                 "--no-progress", "--dtype", "bfloat16", "--shard-size", "2e6",
                 "--chunk", "100000", "model.tie_embeddings=false"]) == 0
    spec = get_preset("llama-tiny").replace(tie_embeddings=False)
    for d in (out, out / "hf"):
        assert (d / INDEX_FILE).is_file() and len(shard_files(d)) >= 3
    state = load_state(out)
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    # The same GHN decoding whole tensors gives the same weights (up to bf16 rounding).
    from logah.ghn.io import load_ghn

    want = dict(load_ghn("random:logah-t").predict(graph_for_spec(spec)))
    for n, t in want.items():
        torch.testing.assert_close(state[n].float(), t.to(torch.bfloat16).float(), msg=n,
                                   rtol=1e-2, atol=1e-3)
    model = build_model(spec, seed=0)
    load_into(model, out)
    hf = transformers.LlamaForCausalLM.from_pretrained(out / "hf").float().eval()
    x = torch.randint(0, spec.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model.eval()(x), rtol=1e-4, atol=1e-4)
    assert json.loads((out / "hf" / "config.json").read_text())["dtype"] == "bfloat16"


def test_random_ghn_tells_mha_llama_q_k_v_and_gate_up_apart(make_ghn):
    """With n_kv_heads == n_heads, q, k and v have one shape (and q, k the same rotary path): the
    fused node's row slices must still differ (the reference predicts q_proj == k_proj)."""
    spec = get_preset("llama-tiny").replace(n_kv_heads=4)
    p = dict(make_ghn().eval().predict(graph_for_spec(spec)))
    for i in range(spec.n_layer):
        w = {x: p[f"blocks.{i}.{x}.weight"] for x in ("attn.q", "attn.k", "attn.v", "mlp.gate",
                                                          "mlp.fc")}
        for a, b in (("attn.q", "attn.k"), ("attn.q", "attn.v"), ("attn.k", "attn.v"),
                     ("mlp.gate", "mlp.fc")):
            assert w[a].shape == w[b].shape
            assert (w[a] - w[b]).abs().max() > 0.1 * w[a].abs().max(), (a, b)
