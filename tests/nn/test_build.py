"""GPT-2 / ViT behaviour: shapes, gradients, seeding, causality and the two init schemes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from logah.config import get_preset
from logah.nn import build_model

VOCAB = 256  # a small vocabulary keeps the GPT-2 tests fast
TINY = ["gpt2-tiny", "gpt2-mini", "vit-tiny", "vit-mini"]


def _spec(name: str):
    spec = get_preset(name)
    return spec.replace(vocab_size=VOCAB) if spec.family == "gpt2" else spec


def _batch(spec, batch: int = 3, seq: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if spec.family == "gpt2":
        idx = torch.randint(0, spec.vocab_size, (batch, seq + 1), generator=gen)
        return idx[:, :-1], idx[:, 1:]
    x = torch.randn(batch, spec.in_chans, spec.image_size, spec.image_size, generator=gen)
    return x, torch.randint(0, spec.num_classes, (batch,), generator=gen)


def test_output_shapes():
    gpt = build_model(_spec("gpt2-tiny"), seed=0)
    assert gpt(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, VOCAB)
    with pytest.raises(ValueError, match="n_ctx=128"):
        gpt(torch.zeros(1, 129, dtype=torch.long))
    vit = build_model(_spec("vit-tiny"), seed=0)
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", TINY)
def test_every_parameter_receives_a_nonzero_gradient(name):
    spec = _spec(name)
    model = build_model(spec, seed=0)
    x, y = _batch(spec)
    logits = model(x)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient for {dead}"


@pytest.mark.parametrize("name", ["gpt2-tiny", "vit-tiny"])
def test_same_seed_same_weights_different_seed_different(name):
    spec = _spec(name)
    rng = torch.get_rng_state()
    a = build_model(spec, seed=7).state_dict()
    b = build_model(spec, seed=7).state_dict()
    c = build_model(spec, seed=8).state_dict()
    assert torch.equal(torch.get_rng_state(), rng)  # a seeded build leaves the global RNG alone
    assert all(torch.equal(a[n], b[n]) for n in a)
    random_tensors = [n for n in a if a[n].ndim >= 2]  # LayerNorms / biases are constants
    assert random_tensors and not any(torch.equal(a[n], c[n]) for n in random_tensors)


def test_gpt2_is_causal():
    spec = _spec("gpt2-tiny")
    model = build_model(spec, seed=0).eval()
    idx = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(0))
    for t in (0, 7, 18):
        changed = idx.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % VOCAB
        with torch.no_grad():
            a, b = model(idx), model(changed)
        assert torch.allclose(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t + 1], b[:, t + 1], rtol=0, atol=1e-4)


def test_vit_attention_is_bidirectional():
    model = build_model(_spec("vit-tiny"), seed=0).eval()
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[..., -4:, -4:] += 1.0  # only the last patch changes; the class token must see it
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y), atol=1e-5)


def _is_orthogonal(w: torch.Tensor) -> bool:
    w = w.reshape(w.shape[0], -1).double()
    gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
    return torch.allclose(gram, torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2-tiny", "vit-tiny"])
def test_orthogonal_init_gives_orthogonal_matrices(name):
    model = build_model(_spec(name), seed=0, init="orthogonal")
    mats = {n: p for n, p in model.named_parameters()
            if p.ndim >= 2 and n not in ("cls_token", "pos_embed")}
    assert len(mats) >= 10
    bad = [n for n, p in mats.items() if not _is_orthogonal(p.detach())]
    assert not bad, f"not orthogonal: {bad}"
    # The default init is not orthogonal (so the check above can fail).
    default = build_model(_spec(name), seed=0)
    assert not _is_orthogonal(default.get_parameter("blocks.0.attn.q.weight").detach())


def test_unknown_init_scheme_is_rejected():
    with pytest.raises(ValueError, match="orthogonal"):
        build_model(_spec("vit-tiny"), seed=0, init="xavier")


def test_gpt2_default_init_statistics():
    spec = get_preset("gpt2-mini").replace(vocab_size=4096)  # 4 layers
    sd = build_model(spec, seed=0).state_dict()
    resid = 0.02 / math.sqrt(2 * spec.n_layer)
    assert sd["wte.weight"].std().item() == pytest.approx(0.02, rel=0.03)
    assert sd["blocks.0.attn.q.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert sd["blocks.0.mlp.fc.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    for n in ("blocks.0.attn.proj.weight", "blocks.3.mlp.proj.weight"):
        assert sd[n].std().item() == pytest.approx(resid, rel=0.05), n
    assert torch.equal(sd["blocks.1.ln_1.weight"], torch.ones(spec.d_model))
    assert not sd["blocks.1.attn.v.bias"].any() and not sd["ln_f.bias"].any()


def test_vit_default_init_is_truncated_normal():
    spec = get_preset("vit-mini")
    sd = build_model(spec, seed=0).state_dict()
    w = sd["blocks.0.mlp.fc.weight"]
    assert w.abs().max().item() <= 0.04  # truncated at 2 std
    # std of N(0, 0.02) truncated at +-2 std is 0.02 * 0.8796
    assert w.std().item() == pytest.approx(0.02 * 0.8796, rel=0.03)
    assert sd["pos_embed"].abs().max().item() <= 0.04 and sd["pos_embed"].std() > 0.01
    assert torch.equal(sd["ln_f.weight"], torch.ones(spec.d_model)) and not sd["head.bias"].any()


def test_meta_model_materialises_with_to_empty_and_dtype():
    spec = _spec("vit-tiny")
    model = build_model(spec, device="meta", dtype=torch.float64)
    assert all(p.is_meta and p.dtype == torch.float64 for p in model.parameters())
    real = build_model(spec, seed=0, dtype=torch.float64)
    assert all(p.device.type == "cpu" and p.dtype == torch.float64 for p in real.parameters())
    assert real(torch.randn(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
