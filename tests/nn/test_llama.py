"""The Llama family: presets, meta builds, init, gradients, rotary, GQA and bad configs."""

from __future__ import annotations

import math

import pytest
import torch

from logah.config import ConfigError, get_preset, llama_spec, load_config
from logah.config.model import ModelConfig, resolve_spec
from logah.nn import build_model, count_params, param_shapes
from logah.nn.llama import rope_tables, rotary

LLAMA_PRESETS = ["llama-tiny", "llama-mini", "tinyllama-1.1b", "llama-3.2-1b", "llama-3.2-3b",
                 "llama-3-8b"]


def test_real_presets_have_the_published_parameter_counts_and_shapes():
    counts = {"tinyllama-1.1b": 1_100_048_384, "llama-3.2-1b": 1_235_814_400,
              "llama-3.2-3b": 3_212_749_824, "llama-3-8b": 8_030_261_248}
    for name, n in counts.items():
        assert count_params(get_preset(name)) == n, name
    s = get_preset("llama-3-8b")
    assert (s.vocab_size, s.n_ctx, s.rope_base, s.kv_heads, s.d_qk, s.tie_embeddings) == (
        128256, 8192, 500000.0, 8, 128, False)
    assert get_preset("llama-3.2-1b").tie_embeddings and get_preset("llama-3.2-3b").d_qk == 128
    assert get_preset("tinyllama-1.1b").vocab_size == 32000
    assert get_preset("llama-3.2-1b").rope_scaling == (32.0, 1.0, 4.0, 8192.0)
    assert not s.rope_scaling  # Llama 3 (8B) predates the llama3 scaling


def test_canonical_names_and_no_biases():
    shapes = param_shapes(get_preset("llama-tiny"))
    assert shapes["wte.weight"] == (50257, 64)
    assert shapes["blocks.0.attn.q.weight"] == (64, 64)
    assert shapes["blocks.0.attn.k.weight"] == (32, 64)  # 2 KV heads of 16
    assert shapes["blocks.1.mlp.gate.weight"] == shapes["blocks.1.mlp.fc.weight"] == (176, 64)
    assert shapes["blocks.1.mlp.proj.weight"] == (64, 176)
    assert shapes["blocks.0.ln_1.weight"] == (64,) and shapes["ln_f.weight"] == (64,)
    assert not any(n.endswith("bias") for n in shapes) and "lm_head.weight" not in shapes
    assert "lm_head.weight" in param_shapes(get_preset("llama-tiny").replace(tie_embeddings=False))


@pytest.mark.parametrize("name", ["llama-tiny", "llama-mini"])
def test_every_parameter_of_the_tiny_presets_gets_a_gradient(name):
    spec = get_preset(name).replace(tie_embeddings=False)
    for s in (get_preset(name), spec):
        model = build_model(s, seed=0)
        idx = torch.randint(0, s.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
        torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
        for n, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_default_init_follows_hf_llama():
    model = build_model(get_preset("llama-mini"), seed=0)
    for n, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, torch.ones_like(p)), n  # RMSNorm gains
        else:
            assert abs(p.std().item() - 0.02) < 0.002, n  # N(0, initializer_range)
    again = build_model(get_preset("llama-mini"), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_rotary_rotates_pairs_i_and_i_plus_half_and_keeps_norms():
    spec = llama_spec(1, 16, 2, 1, 32, vocab_size=11, n_ctx=8)
    cos, sin = rope_tables(tuple(spec.rope_inv_freq()), 5, torch.device("cpu"), torch.float64)
    x = torch.randn(1, 1, 5, 8, dtype=torch.float64)
    y = rotary(x, cos, sin)
    assert torch.allclose(y[..., 0, :], x[..., 0, :])  # position 0: no rotation
    pair = lambda t: t[..., [1, 5]].norm(dim=-1)  # noqa: E731  (dims 1 and 1 + 4)
    assert torch.allclose(pair(y), pair(x))
    ang = 3 * 10000.0 ** (-2 / 8)  # position 3, pair 1 of head width 8
    x1, x2 = x[0, 0, 3, 1], x[0, 0, 3, 5]
    assert torch.allclose(y[0, 0, 3, 1], x1 * math.cos(ang) - x2 * math.sin(ang))


def test_scores_depend_only_on_relative_position():
    """<rot(q, m), rot(k, n)> depends on m - n only: the defining property of RoPE."""
    cos, sin = rope_tables(tuple(llama_spec(1, 16, 2, 1, 8).rope_inv_freq()), 9,
                           torch.device("cpu"), torch.float64)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    rq = rotary(q.expand(1, 1, 9, 8), cos, sin)[0, 0]
    rk = rotary(k.expand(1, 1, 9, 8), cos, sin)[0, 0]
    assert torch.allclose(rq[5] @ rk[2], rq[7] @ rk[4]) and torch.allclose(rq[3] @ rk[0], rq[8] @ rk[5])


def test_gqa_equals_mha_with_repeated_kv_heads():
    gqa = llama_spec(1, 32, 4, 2, 48, vocab_size=23, n_ctx=8)
    mha = gqa.replace(n_kv_heads=4)
    a = build_model(gqa, seed=0, dtype=torch.float64).eval()
    b = build_model(mha, seed=1, dtype=torch.float64).eval()
    state = dict(a.state_dict())
    for t in ("k", "v"):  # kv head j serves query heads 2j, 2j+1 (contiguous groups)
        w = state["blocks.0.attn." + t + ".weight"].view(2, 8, 32)
        state["blocks.0.attn." + t + ".weight"] = w.repeat_interleave(2, dim=0).reshape(32, 32)
    b.load_state_dict(state)
    idx = torch.randint(0, 23, (2, 8))
    assert (a(idx) - b(idx)).abs().max() < 1e-12


@pytest.mark.parametrize("changes,match", [
    ({"n_kv_heads": 3}, r"model\.n_kv_heads: 3 does not divide model\.n_heads=4"),
    ({"d_qk": 15}, r"model\.d_qk: rotary .* even, got 15"),
    ({"rope_base": 1.0}, r"model\.rope_base"),
    ({"rope_dims": (8, 12)}, r"model\.rope_dims"),
    ({"rope_scaling": (32.0, 4.0, 1.0, 8192.0)}, r"model\.rope_scaling"),
])
def test_bad_llama_configs_give_one_clear_error(changes, match):
    with pytest.raises(ConfigError, match=match) as e:
        get_preset("llama-tiny").replace(**changes)
    assert "\n" not in str(e.value)


def test_gpt2_rejects_llama_only_fields_and_overrides_work():
    with pytest.raises(ConfigError, match="only llama"):
        get_preset("gpt2-tiny").replace(n_kv_heads=2)
    cfg = load_config(ModelConfig, None, ["arch=llama-tiny", "n_kv_heads=4", "rope_base=500000"])
    spec = resolve_spec(cfg)
    assert (spec.kv_heads, spec.rope_base, spec.family) == (4, 500000.0, "llama")
    with pytest.raises(ConfigError, match=r"model\.n_kv_heads"):
        resolve_spec(load_config(ModelConfig, None, ["arch=llama-tiny", "n_kv_heads=3"]))


def test_grown_rope_dims_keep_old_pair_frequencies():
    spec = llama_spec(1, 16, 2, 1, 8).replace(d_qk=12, d_v=12, rope_dims=(8, 12))
    old = llama_spec(1, 16, 2, 1, 8).rope_inv_freq()
    new = spec.rope_inv_freq()
    assert len(new) == 6 and new[:4] == old
    assert new[4:] == [10000.0 ** (-2 * i / 12) for i in (4, 5)]
    assert not spec.is_standard and spec.replace(rope_dims=()).is_standard
