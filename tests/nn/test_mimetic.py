"""Mimetic attention init: the products W_q W_k^T and W_o W_v have the prescribed structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from logah.config import gpt2_spec, vit_spec
from logah.nn import build_model
from logah.nn.mimetic import factor, mimetic_, target


def _heads(attn, name, d):
    w = getattr(attn, name).weight.detach().double()
    return w.view(-1, d, w.shape[1])  # (heads, d, D)


@pytest.mark.parametrize("spec", [gpt2_spec(2, 64, 1, vocab_size=11, n_ctx=8),
                                  vit_spec(2, 64, 1, image_size=8, patch_size=4)],
                         ids=["gpt2", "vit"])
def test_full_rank_products_are_alpha_z_plus_beta_i(spec):
    """One head with d_qk = d_v = d_model: the products are alpha Z +- beta I exactly."""
    model = build_model(spec, seed=0)
    assert mimetic_(model, (0.7, 0.7, 0.4, 0.4), torch.Generator().manual_seed(1)) == 2
    D = spec.d_model
    eye = torch.eye(D, dtype=torch.float64)
    for block in model.blocks:
        a = block.attn
        qk = a.q.weight.double().T @ a.k.weight.double()  # Wq^T Wk: (D, D), score = x qk x^T
        vo = a.proj.weight.double() @ a.v.weight.double()  # Wo Wv: (D, D)
        for prod, alpha, beta in ((qk, 0.7, 0.7), (vo, 0.4, -0.4)):
            z = prod - beta * eye  # = alpha Z, Z ~ N(0, 1/D)
            assert abs(torch.diagonal(prod).mean().item() - beta) < 0.1
            assert abs(z.std().item() * D ** 0.5 - alpha) < 0.05
            assert abs(z.mean().item()) < 0.01


def test_multi_head_is_the_best_low_rank_fit():
    """Four heads of d_qk 16 < D 64: each head's product is a rank-16 SVD truncation of its own
    alpha Z + beta I (reproduced with the same generator), so it keeps a positive diagonal."""
    spec = gpt2_spec(1, 64, 4, vocab_size=11, n_ctx=8)
    model = build_model(spec, seed=0)
    mimetic_(model, (0.3, 1.0, 0.2, 0.5), torch.Generator().manual_seed(5))
    attn = model.blocks[0].attn
    q, k = _heads(attn, "q", 16), _heads(attn, "k", 16)
    gen = torch.Generator().manual_seed(5)
    for h in range(4):
        m = target(64, 0.3, 1.0, gen)
        a, b = factor(m, 16)
        prod = q[h].T @ k[h]
        assert torch.allclose(prod, a @ b, atol=1e-5)
        assert torch.linalg.matrix_rank(prod).item() == 16
        assert torch.trace(prod).item() > 0.8 * 16  # ~beta on the kept 16-dim subspace
    vo = attn.proj.weight.double() @ attn.v.weight.double()
    a, b = factor(target(64, 0.2, -0.5, gen), 64)
    assert torch.allclose(vo, a @ b, atol=1e-5)  # n_heads * d_v = D: full rank, exact
    assert torch.diagonal(vo).mean().item() < -0.4


class GroupedAttention(nn.Module):
    """A Llama-style attention shape: 4 query heads sharing 2 key/value heads, output ``o``."""

    def __init__(self, d=32, heads=4, kv=2, dh=8):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.d_qk, self.d_v = heads, kv, dh, dh
        self.q = nn.Linear(d, heads * dh, bias=False)
        self.k = nn.Linear(d, kv * dh, bias=False)
        self.v = nn.Linear(d, kv * dh, bias=False)
        self.o = nn.Linear(heads * dh, d, bias=False)


def test_generic_over_projection_names_and_grouped_heads():
    m = nn.Sequential(GroupedAttention())
    assert mimetic_(m, (0.0, 1.0, 0.0, 1.0)) == 1
    attn = m[0]
    q, k, v = _heads(attn, "q", 8), _heads(attn, "k", 8), _heads(attn, "v", 8)
    for h in range(4):  # query head h scores against key group h // 2: beta * a projection
        prod = q[h].T @ k[h // 2]
        assert torch.allclose(prod, prod.T, atol=1e-6)
        assert torch.allclose(prod @ prod, prod, atol=1e-5)  # idempotent: beta = 1 projection
    # o reads each group's values through its 2 heads: o expanded to the groups
    o = attn.o.weight.double().view(32, 2, 2, 8).sum(2).reshape(32, 16)
    vo = o @ v.reshape(16, 32)
    assert torch.allclose(vo @ vo, -vo, atol=1e-5)  # -1 x a rank-16 projection
    with pytest.raises(ValueError, match="no attention module"):
        mimetic_(nn.Linear(3, 3))


def test_llama_grouped_query_attention():
    """Llama (4 query heads over 2 key/value heads, ``n_kv``): each query head scores against its
    group's key with a positive-diagonal product; the layer's ``Wo Wv`` has a negative one."""
    from logah.config import get_preset

    spec = get_preset("llama-tiny").replace(vocab_size=32, n_ctx=16)
    model = build_model(spec, seed=0)
    assert mimetic_(model, (0.0, 1.0, 0.0, 1.0), torch.Generator().manual_seed(2)) == spec.n_layer
    attn = model.blocks[0].attn
    assert attn.n_kv == 2 and attn.n_heads == 4
    q, k = _heads(attn, "q", spec.d_qk), _heads(attn, "k", spec.d_qk)
    for h in range(4):
        prod = q[h].T @ k[h // 2]
        assert torch.allclose(prod @ prod, prod, atol=1e-4)  # beta = 1: a projection
        assert torch.trace(prod).item() == pytest.approx(spec.d_qk, rel=1e-4)
    o = attn.proj.weight.double().view(spec.d_model, 2, 2, spec.d_v).sum(2).reshape(
        spec.d_model, 2 * spec.d_v)
    vo = o @ attn.v.weight.double()
    assert torch.allclose(vo @ vo, -vo, atol=1e-4)
