"""The one pre-LayerNorm transformer block shared by GPT-2 and ViT.

Every width is independent (``d_model``, ``n_heads``, per-head ``d_qk`` and ``d_v``, ``d_mlp``) so
that each function-preserving expansion of :mod:`logah.grow` stays inside this module. Q, K and V
are separate ``nn.Linear`` layers (not a fused ``c_attn``), so growth edits each projection on its
own; the architecture graph still sees them as one fused node (``Attention.fused_projections``). Modules hold
no buffers, so a model built on the ``meta`` device needs nothing but its parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from logah.config.specs import ModelSpec


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``.

    Shapes: x (B, T, d_model) -> q, k (B, H, T, d_qk), v (B, H, T, d_v) -> out (B, T, d_model).
    ``fused_projections``: for the architecture graph, q, k and v are one node of shape
    (2 H d_qk + H d_v, d_model), as HF's ``c_attn`` (see ``logah.graph.fused``).
    """

    fused_projections = (("q", "k", "v"),)

    def __init__(self, spec: ModelSpec, causal: bool) -> None:
        super().__init__()
        self.n_heads, self.d_qk, self.d_v = spec.n_heads, spec.d_qk, spec.d_v
        self.causal = causal
        self.q = nn.Linear(spec.d_model, spec.n_heads * spec.d_qk)
        self.k = nn.Linear(spec.d_model, spec.n_heads * spec.d_qk)
        self.v = nn.Linear(spec.d_model, spec.n_heads * spec.d_v)
        self.proj = nn.Linear(spec.n_heads * spec.d_v, spec.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.d_qk).transpose(1, 2)  # (B, H, T, d_qk)
        k = self.k(x).view(B, T, self.n_heads, self.d_qk).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_heads, self.d_v).transpose(1, 2)  # (B, H, T, d_v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, d_v)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.d_v)
        return self.proj(y)


class MLP(nn.Module):
    """fc -> GELU -> proj. GPT-2 uses the tanh approximation ("gelu_new"), ViT the exact GELU."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.fc = nn.Linear(spec.d_model, spec.d_mlp)
        self.act = nn.GELU(approximate="tanh" if spec.family == "gpt2" else "none")
        self.proj = nn.Linear(spec.d_mlp, spec.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, spec: ModelSpec, causal: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(spec.d_model, eps=spec.ln_eps)
        self.attn = Attention(spec, causal)
        self.ln_2 = nn.LayerNorm(spec.d_model, eps=spec.ln_eps)
        self.mlp = MLP(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
