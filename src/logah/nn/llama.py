"""Llama: token embedding, pre-RMSNorm blocks with rotary grouped-query attention and a SwiGLU MLP,
final RMSNorm, LM head (tied to the embedding or not).

Canonical names (HF names appear only in :mod:`logah.nn.hf_llama`): ``wte.weight (V, D)``,
``blocks.{i}.ln_1.weight`` (RMSNorm), ``blocks.{i}.attn.{q,k,v,proj}.weight``,
``blocks.{i}.ln_2.weight``, ``blocks.{i}.mlp.{gate,fc,proj}.weight`` (gate, up, down), ``ln_f.weight``
and ``lm_head.weight`` when untied. No biases anywhere, as in Meta's and HF's Llama.

Rotary embeddings follow HF's ``rotate_half`` convention: dim ``i`` of a head is paired with dim
``i + d_qk/2`` and the pair turns by ``pos * inv_freq[i]``. The frequency table comes from the spec
(:meth:`logah.config.specs.ModelSpec.rope_inv_freq`), not from the tensor shape, so growth of
``d_qk`` can keep the old pairs' frequencies. Like the other families the modules hold no buffers:
cos/sin are computed per forward (a (T, d_qk) table), so a ``meta`` build is exactly the parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from logah.config.specs import ModelSpec
from logah.nn.gpt2 import _check_len


def rope_tables(inv_freq: tuple[float, ...], T: int, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, 2 * len(inv_freq)) for positions 0..T-1 (computed in float64)."""
    pos = torch.arange(T, device=device, dtype=torch.float64)
    freq = torch.tensor(inv_freq, device=device, dtype=torch.float64)
    ang = pos[:, None] * freq[None, :]  # (T, d/2)
    ang = torch.cat([ang, ang], dim=-1)  # (T, d): dims i and i + d/2 share a frequency
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + d/2) of ``x`` (B, H, T, d) by the angles in cos/sin (T, d)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


# One opaque call each for torch.fx (logah.graph): the graph gets a rotary node, not its arithmetic.
torch.fx.wrap("rope_tables")
torch.fx.wrap("rotary")
torch.fx.wrap("_check_len")  # fx.wrap patches the calling module's globals: needed here too


class GQAttention(nn.Module):
    """Grouped-query attention with rotary q/k and no biases.

    Shapes: x (B, T, d_model) -> q (B, H, T, d_qk), k (B, H_kv, T, d_qk), v (B, H_kv, T, d_v);
    query head ``h`` reads key/value head ``h // (H / H_kv)`` (HF's ``repeat_kv`` grouping: the
    query heads of a group are contiguous) -> out (B, T, d_model).
    ``fused_projections``: q, k, v are one graph node of shape (H d_qk + H_kv (d_qk + d_v),
    d_model) (``logah.graph.fused``), so a GHN predicts different q, k and v rows.
    """

    fused_projections = (("q", "k", "v"),)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.d_qk, self.d_v = (
            spec.n_heads, spec.kv_heads, spec.d_qk, spec.d_v)
        self.inv_freq = tuple(spec.rope_inv_freq())
        self.q = nn.Linear(spec.d_model, spec.n_heads * spec.d_qk, bias=False)
        self.k = nn.Linear(spec.d_model, self.n_kv * spec.d_qk, bias=False)
        self.v = nn.Linear(spec.d_model, self.n_kv * spec.d_v, bias=False)
        self.proj = nn.Linear(spec.n_heads * spec.d_v, spec.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.d_qk).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_kv, self.d_qk).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv, self.d_v).transpose(1, 2)
        cos, sin = rope_tables(self.inv_freq, T, x.device, x.dtype)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=self.n_kv != self.n_heads)  # (B, H, T, d_v)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.d_v)
        return self.proj(y)


class SwiGLU(nn.Module):
    """proj(silu(gate(x)) * fc(x)): gate/up (d_model -> d_mlp), down (d_mlp -> d_model), no biases.
    gate and up (``fc``) are one fused graph node (2 d_mlp, d_model)."""

    fused_projections = (("gate", "fc"),)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.gate = nn.Linear(spec.d_model, spec.d_mlp, bias=False)
        self.fc = nn.Linear(spec.d_model, spec.d_mlp, bias=False)
        self.act = nn.SiLU()
        self.proj = nn.Linear(spec.d_mlp, spec.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.gate(x)) * self.fc(x))


class LlamaBlock(nn.Module):
    """x + attn(rms_1(x)), then x + mlp(rms_2(x))."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.ln_1 = nn.RMSNorm(spec.d_model, eps=spec.ln_eps)
        self.attn = GQAttention(spec)
        self.ln_2 = nn.RMSNorm(spec.d_model, eps=spec.ln_eps)
        self.mlp = SwiGLU(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Llama(nn.Module):
    """Causal language model. ``forward(idx (B, T) int64) -> logits (B, T, vocab_size)``.

    With ``spec.tie_embeddings`` the LM head reuses ``wte.weight`` (Llama 3.2 does this).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.family != "llama":
            raise ValueError(f"Llama needs a llama spec, got family={spec.family!r}")
        self.spec = spec
        self.wte = nn.Embedding(spec.vocab_size, spec.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(spec) for _ in range(spec.n_layer))
        self.ln_f = nn.RMSNorm(spec.d_model, eps=spec.ln_eps)
        self.lm_head = None if spec.tie_embeddings else nn.Linear(spec.d_model, spec.vocab_size,
                                                                  bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        _check_len(idx.shape[1], self.spec.n_ctx)
        x = self.wte(idx)  # (B, T, d_model)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight
        return x @ head.t()  # (B, T, vocab_size)
