"""Llama attention growth: grouped-query heads and query/key width under rotary embeddings.

Layout (:class:`logah.nn.llama.GQAttention`): ``q.weight`` (H * d_qk, D) is viewed as
(H_kv, g, d_qk, D) with ``g = H / H_kv`` query heads per key/value group, contiguous per group;
``k.weight`` as (H_kv, d_qk, D), ``v.weight`` as (H_kv, d_v, D); ``proj.weight`` (D, H * d_v) as
(D, H_kv, g, d_v). No biases.

- **Query heads per group** (``n_heads``, H_kv fixed): new query heads go at the end of *each*
  group (free rows), and their ``proj`` columns, inserted per group, are 0. K/V are untouched.
- **KV groups** (``n_kv_heads``, g fixed, so ``n_heads`` grows by g per group): a new group's K/V
  rows and its g query heads are free and appended; their ``proj`` columns are 0.
- **Query/key width under rotary** (``d_qk``): dim ``i`` of a head pairs with ``i + d_qk/2``, so the
  new dims go at the end of *both halves* of every head: q ``[a | b] -> [a | new | b | new']``
  (free), k ``[c a | 0 | c b | 0]`` with ``c = sqrt(d_qk'/d_qk)`` for SDPA's 1/sqrt(d_qk) scale.
  Old pair ``i`` stays a pair (``i``, ``i + d_qk'/2``), and rotation only mixes within a pair, so
  the new pairs meet zero keys. The frequencies must not move: HF (and the standard formula)
  recompute ``base^(-2i/d)`` from the new width, which changes every old pair's angle. The spec
  therefore records ``rope_dims`` (the widths the frequencies were fixed at), which keeps the
  function exact in logah's format; such a model has no ``LlamaForCausalLM`` equivalent and HF
  export says so (:func:`logah.nn.hf_llama.llama_export_problem`).
"""

from __future__ import annotations

import math

import torch

from logah.config.grow import GrowInit
from logah.config.specs import ModelSpec
from logah.grow.common import GrowError, Seed, State, begin, cat_new, noise, zeros


def add_query_heads(spec: ModelSpec, state: State, n_heads: int, *, seed: Seed = 0,
                    init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Llama head addition ``n_heads -> n_heads'`` keeping the ``n_kv_heads`` groups: each group
    gets ``(n_heads' - n_heads) / n_kv_heads`` new query heads."""
    step = begin(spec, state, "n_heads", n_heads, seed, init)
    kv = spec.kv_heads
    if step.n == 0:
        return spec, dict(state)
    if n_heads % kv:
        raise GrowError(f"n_heads: {n_heads} is not a multiple of n_kv_heads={kv} (new query "
                        f"heads are added to every key/value group; grow n_kv_heads for groups)")
    g, g2, D, k, v = spec.n_heads // kv, n_heads // kv, spec.d_model, spec.d_qk, spec.d_v
    out = dict(state)
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.attn"
        q = state[f"{pre}.q.weight"].view(kv, g, k, D)
        pw = state[f"{pre}.proj.weight"].view(D, kv, g, v)
        new_q = noise((kv, g2 - g, k, D), step.init.std, q, step.gen)
        out[f"{pre}.q.weight"] = cat_new(q, 1, new_q).reshape(n_heads * k, D)
        out[f"{pre}.proj.weight"] = cat_new(pw, 2, zeros((D, kv, g2 - g, v), pw)).reshape(
            D, n_heads * v)
    return step.record(spec, n_kv_heads=kv), out


def add_kv_groups(spec: ModelSpec, state: State, n_kv_heads: int, *, seed: Seed = 0,
                  init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Llama KV-group addition ``n_kv_heads -> n_kv_heads'``, each new group with the same number
    of query heads as the old ones (``n_heads`` grows to ``n_kv_heads' * g``)."""
    if spec.family != "llama":
        raise GrowError(f"n_kv_heads: only llama has key/value groups (this is a {spec.family} "
                        f"model; grow n_heads)")
    if spec.n_kv_heads == 0:  # implicit MHA: make the current value explicit first
        spec = spec.replace(n_kv_heads=spec.n_heads)
    step = begin(spec, state, "n_kv_heads", n_kv_heads, seed, init)
    if step.n == 0:
        return spec, dict(state)
    g, D, k, v = spec.n_heads // spec.kv_heads, spec.d_model, spec.d_qk, spec.d_v
    n, H2 = step.n, n_kv_heads * g
    out = dict(state)
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.attn"
        for name, rows in (("q", n * g * k), ("k", n * k), ("v", n * v)):
            w = state[f"{pre}.{name}.weight"]
            out[f"{pre}.{name}.weight"] = cat_new(w, 0, noise((rows, D), step.init.std, w,
                                                              step.gen))
        pw = state[f"{pre}.proj.weight"]
        out[f"{pre}.proj.weight"] = cat_new(pw, 1, zeros((D, n * g * v), pw))
    return step.record(spec, n_heads=H2), out


def _halves(t: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """(..., d, D) -> (..., d', D): ``new`` (..., n, D) split in two, each appended to one half of
    the rotary dims (pair i of the old head stays pair i of the new one)."""
    a, b = t.chunk(2, dim=-2)
    na, nb = new.chunk(2, dim=-2)
    return torch.cat([a, na, b, nb], dim=-2)


def expand_rotary_qk(spec: ModelSpec, state: State, d_qk: int, *, seed: Seed = 0,
                     init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Llama attention expansion ``d_qk -> d_qk'`` under rotary embeddings (see module doc)."""
    step = begin(spec, state, "d_qk", d_qk, seed, init)
    if step.n == 0:
        return spec, dict(state)
    if step.n % 2:
        raise GrowError(f"d_qk: rotary embeddings need an even per-head width, got {d_qk}")
    H, kv, D, k, n = spec.n_heads, spec.kv_heads, spec.d_model, spec.d_qk, step.n
    c = math.sqrt(d_qk / k)
    out = dict(state)
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.attn"
        q = state[f"{pre}.q.weight"].view(H, k, D)
        kw = state[f"{pre}.k.weight"].view(kv, k, D)
        out[f"{pre}.q.weight"] = _halves(q, noise((H, n, D), step.init.std, q, step.gen)).reshape(
            H * d_qk, D)
        out[f"{pre}.k.weight"] = _halves(kw * c, zeros((kv, n, D), kw)).reshape(kv * d_qk, D)
    rope_dims = (*(spec.rope_dims or (k,)), d_qk)
    return step.record(spec, rope_dims=rope_dims), out
