"""Mimetic initialisation of self-attention (Trockman & Kolter, "Mimetic Initialization of
Self-Attention Layers", ICML 2023): a data-free closed form that makes a fresh attention layer
look like a trained one.

Trained attention heads have ``W_q W_k^T`` close to a positive multiple of the identity (a token
attends to similar tokens) and ``W_v W_o`` close to a negative multiple of it. Per head ``h`` the
score matrix is ``x Wq_h^T Wk_h x^T`` (``Wq_h``, ``Wk_h``: the head's ``(d_qk, d_model)`` row
blocks), so the init draws ``M_h = alpha_1 Z + beta_1 I`` (``Z`` ~ N(0, 1/d_model), d_model x
d_model) and takes its best rank-``d_qk`` factorisation from the SVD ``M_h = U S V^T``:
``Wk_h = sqrt(S_k) V_k^T`` and ``Wq_h`` the least-squares solution of ``Wq_h^T Wk_h = M_h``
(``= sqrt(S_k) U_k^T``; with grouped K/V heads — several query heads sharing one key head, as
Llama-style GQA — every query head still gets its own ``M_h`` against the group's key).
The value/output product of the whole layer, ``Wo Wv`` (d_model x d_model, rank ``n_heads*d_v``
at most), is set the same way to ``alpha_2 Z' - beta_2 I``.

:func:`mimetic_` works on any module that has ``q``, ``k``, ``v`` and ``proj`` (or ``o``)
``nn.Linear`` projections and ``n_heads``, ``d_qk``, ``d_v`` (optionally ``n_kv_heads`` or
``n_kv``, the key/value heads of grouped-query attention) attributes, so every family built on
such a block (GPT-2, ViT, Llama) gets it; all other parameters keep the
family's init. Defaults are the paper's ViT values (alpha_1, beta_1, alpha_2, beta_2) =
(0.7, 0.7, 0.4, 0.4).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

DEFAULT = (0.7, 0.7, 0.4, 0.4)


def attention_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of every attention module: Linear ``q``, ``k``, ``v`` and ``proj``/``o``
    plus ``n_heads``, ``d_qk``, ``d_v`` attributes."""
    for name, m in model.named_modules():
        lin = [getattr(m, a, None) for a in ("q", "k", "v")]
        out = getattr(m, "proj", None) or getattr(m, "o", None)
        if all(isinstance(x, nn.Linear) for x in (*lin, out)) and all(
                hasattr(m, a) for a in ("n_heads", "d_qk", "d_v")):
            yield name, m


def kv_heads(attn: nn.Module) -> int:
    """Key/value heads: ``n_kv_heads`` or ``n_kv`` (grouped-query attention), else ``n_heads``."""
    return getattr(attn, "n_kv_heads", None) or getattr(attn, "n_kv", None) or attn.n_heads


def target(d: int, alpha: float, beta: float, gen: torch.Generator) -> torch.Tensor:
    """``alpha Z + beta I`` with ``Z`` ~ N(0, 1/d), (d, d), float64."""
    z = torch.randn(d, d, generator=gen, dtype=torch.float64) / d ** 0.5
    return alpha * z + beta * torch.eye(d, dtype=torch.float64)


def factor(m: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A`` (d, rank), ``B`` (rank, d) and ``A @ B`` the best rank-``rank``
    approximation of ``m`` (d, d); when ``rank > d`` the extra columns/rows are zero."""
    u, s, vh = torch.linalg.svd(m)
    k = min(rank, m.shape[0])
    root = s[:k].sqrt()
    a = torch.zeros(m.shape[0], rank, dtype=m.dtype)
    b = torch.zeros(rank, m.shape[1], dtype=m.dtype)
    a[:, :k] = u[:, :k] * root
    b[:k] = root[:, None] * vh[:k]
    return a, b


@torch.no_grad()
def mimetic_qk(attn: nn.Module, alpha: float, beta: float, gen: torch.Generator) -> None:
    """Set ``attn.q`` / ``attn.k`` weights so each head's ``Wq_h^T Wk_h ~ alpha Z + beta I``."""
    H, dqk = attn.n_heads, attn.d_qk
    n_kv = kv_heads(attn)
    D = attn.q.weight.shape[1]
    wq = torch.empty(H, dqk, D, dtype=torch.float64)
    wk = torch.empty(n_kv, dqk, D, dtype=torch.float64)
    per_group = H // n_kv
    for g in range(n_kv):
        ms = [target(D, alpha, beta, gen) for _ in range(per_group)]
        _, b = factor(ms[0], dqk)  # the group's key: (d_qk, D)
        wk[g] = b
        pinv = torch.linalg.pinv(b)  # (D, d_qk)
        for j, m in enumerate(ms):  # Wq_h^T = M_h Wk^+  (least squares; exact rank-k for j=0)
            wq[g * per_group + j] = (m @ pinv).T
    attn.q.weight.copy_(wq.reshape(H * dqk, D))
    attn.k.weight.copy_(wk.reshape(n_kv * dqk, D))


@torch.no_grad()
def mimetic_vo(attn: nn.Module, alpha: float, beta: float, gen: torch.Generator) -> None:
    """Set ``attn.v`` / output weights so ``Wo Wv ~ alpha Z - beta I`` (whole layer).

    With grouped value heads the product is taken through the expansion: each output column
    block of head ``h`` reads value group ``h // (H / n_kv)``, so the factor is formed at rank
    ``n_kv * d_v`` and the output columns of a group's heads share it equally.
    """
    out = getattr(attn, "proj", None) or getattr(attn, "o")
    H, dv = attn.n_heads, attn.d_v
    n_kv = kv_heads(attn)
    D = attn.v.weight.shape[1]
    a, b = factor(target(D, alpha, -beta, gen), n_kv * dv)  # a (D, n_kv*dv), b (n_kv*dv, D)
    per_group = H // n_kv
    # heads of one group read the same values: split that group's columns of `a` between them
    wo = (a.view(D, n_kv, 1, dv) / per_group).expand(D, n_kv, per_group, dv)
    attn.v.weight.copy_(b)
    out.weight.copy_(wo.reshape(D, H * dv))


@torch.no_grad()
def mimetic_(model: nn.Module, params: tuple[float, float, float, float] = DEFAULT,
             gen: torch.Generator | None = None) -> int:
    """Mimetic init of every attention module of ``model``, in place (like ``nn.init``).

    Args:
        params: ``(alpha_1, beta_1, alpha_2, beta_2)`` (see the module doc).
        gen: the random generator (seeded by the caller for reproducibility).

    Returns:
        How many attention modules were initialised.

    Raises:
        ValueError: a model without any attention module of the shape above.
    """
    a1, b1, a2, b2 = params
    gen = gen or torch.Generator().manual_seed(0)
    found = 0
    for _, attn in attention_modules(model):
        mimetic_qk(attn, a1, b1, gen)
        mimetic_vo(attn, a2, b2, gen)
        found += 1
    if not found:
        raise ValueError(f"mimetic init: {type(model).__name__} has no attention module with "
                         "q/k/v/proj projections")
    return found
