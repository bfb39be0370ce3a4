"""Width inside a block: MLP expansion, head addition, heads (d_v) and attention (d_qk) expansion.

PyTorch layout: ``nn.Linear.weight`` is (out, in), so new output features are new rows and new
input features are new columns. Attention projections are per-head blocks along their output
dim: ``q/k.weight`` (n_heads * d_qk, d_model) is viewed as (n_heads, d_qk, d_model), ``v.weight``
as (n_heads, d_v, d_model) and ``proj.weight`` (d_model, n_heads * d_v) as (d_model, n_heads, d_v),
exactly as :class:`logah.nn.layers.Attention` splits heads. Llama has no biases (skipped where
absent), a SwiGLU ``gate`` beside ``fc`` and grouped-query attention: its head and d_qk growth
live in :mod:`logah.grow.gqa`, and ``add_heads`` / ``expand_attention`` dispatch there.
"""

from __future__ import annotations

import math

from logah.config.grow import GrowInit
from logah.config.specs import ModelSpec
from logah.grow.common import Seed, State, begin, cat_new, new_shape, noise, zeros
from logah.grow.gqa import add_query_heads, expand_rotary_qk


def _grow_bias(state: State, out: State, name: str, new: int, std: float, gen) -> None:
    """Append ``new`` free entries to bias ``name`` when the model has biases (Llama has none)."""
    b = state.get(name)
    if b is not None:
        out[name] = cat_new(b, 0, noise((new,), std, b, gen))


def expand_mlp(spec: ModelSpec, state: State, d_mlp: int, *, seed: Seed = 0,
               init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """MLP expansion ``d_mlp -> d_mlp'`` in every layer.

    New ``fc`` rows/bias entries are free (N(0, std) / N(0, bias_std)); new ``mlp.proj`` columns
    are zero, so the new hidden units are multiplied by 0 and the output is unchanged. SwiGLU
    (Llama): new ``gate`` rows are free too; ``silu(gate) * fc`` of a new unit meets a zero column.
    """
    step = begin(spec, state, "d_mlp", d_mlp, seed, init)
    if step.n == 0:
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    out = dict(state)
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.mlp"
        for name in ("gate", "fc"):
            w = state.get(f"{pre}.{name}.weight")
            if w is not None:  # gate: SwiGLU only
                out[f"{pre}.{name}.weight"] = cat_new(w, 0, noise(new_shape(w, 0, n), init.std,
                                                                  w, gen))
            _grow_bias(state, out, f"{pre}.{name}.bias", n, init.bias_std, gen)
        pw = state[f"{pre}.proj.weight"]
        out[f"{pre}.proj.weight"] = cat_new(pw, 1, zeros(new_shape(pw, 1, n), pw))  # must be 0
    return step.record(spec), out


def add_heads(spec: ModelSpec, state: State, n_heads: int, *, seed: Seed = 0,
              init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Head addition ``n_heads -> n_heads'`` in every layer (per-head widths unchanged).

    The new heads' Q/K/V rows and biases are free; their ``attn.proj`` columns are zero. Heads are
    contiguous blocks of the projections' output dim, so new heads are appended at the end of each
    of Q, K and V separately (not of a fused qkv). Llama: query heads are added to every
    key/value group (:func:`logah.grow.gqa.add_query_heads`).
    """
    if spec.family == "llama":
        return add_query_heads(spec, state, n_heads, seed=seed, init=init)
    step = begin(spec, state, "n_heads", n_heads, seed, init)
    if step.n == 0:
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    out = dict(state)
    widths = {"q": spec.d_qk, "k": spec.d_qk, "v": spec.d_v}
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.attn"
        for name, d in widths.items():
            w, b = state[f"{pre}.{name}.weight"], state[f"{pre}.{name}.bias"]
            new_w = noise(new_shape(w, 0, n * d), init.std, w, gen)
            out[f"{pre}.{name}.weight"] = cat_new(w, 0, new_w)
            out[f"{pre}.{name}.bias"] = cat_new(b, 0, noise((n * d,), init.bias_std, b, gen))
        pw = state[f"{pre}.proj.weight"]  # (d_model, n_heads * d_v)
        out[f"{pre}.proj.weight"] = cat_new(pw, 1, zeros(new_shape(pw, 1, n * spec.d_v), pw))
    return step.record(spec), out


def expand_heads(spec: ModelSpec, state: State, d_v: int, *, seed: Seed = 0,
                 init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Heads expansion: per-head value width ``d_v -> d_v'`` in every layer.

    Each head's V gets free new rows (and bias entries); ``attn.proj`` gets zero columns inserted
    after *each* head's block (not appended at the end). The attention scale depends on d_qk only
    (SDPA's default 1/sqrt(q.size(-1))), so the attention weights are untouched. With GQA the
    value heads are the ``kv_heads`` groups: each gets new rows, and ``attn.proj`` gets zero columns
    after each of the ``n_heads`` query heads' blocks.
    """
    step = begin(spec, state, "d_v", d_v, seed, init)
    if step.n == 0:
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    out = dict(state)
    H, Hv, D = spec.n_heads, spec.kv_heads, spec.d_model
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.attn"
        w = state[f"{pre}.v.weight"].view(Hv, spec.d_v, D)
        pw = state[f"{pre}.proj.weight"].view(D, H, spec.d_v)
        out[f"{pre}.v.weight"] = cat_new(w, 1, noise((Hv, n, D), init.std, w, gen)).reshape(-1, D)
        if f"{pre}.v.bias" in state:
            b = state[f"{pre}.v.bias"].view(Hv, spec.d_v)
            out[f"{pre}.v.bias"] = cat_new(b, 1, noise((Hv, n), init.bias_std, b,
                                                       gen)).reshape(-1)
        out[f"{pre}.proj.weight"] = cat_new(pw, 2, zeros((D, H, n), pw)).reshape(D, H * d_v)
    return step.record(spec), out


def expand_attention(spec: ModelSpec, state: State, d_qk: int, *, seed: Seed = 0,
                     init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Attention expansion: per-head query/key width ``d_qk -> d_qk'`` in every layer.

    New Q rows/bias entries are free; new K rows/bias entries are zero, so ``q.k`` is unchanged.
    SDPA scales scores by ``1/sqrt(d_qk)`` computed from the tensor shape, so the old K rows and
    bias are multiplied by ``sqrt(d_qk'/d_qk)``: ``q.(c k) / sqrt(d_qk') = q.k / sqrt(d_qk)``.
    Llama (rotary): :func:`logah.grow.gqa.expand_rotary_qk`.
    """
    if spec.family == "llama":
        return expand_rotary_qk(spec, state, d_qk, seed=seed, init=init)
    step = begin(spec, state, "d_qk", d_qk, seed, init)
    if step.n == 0:
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    out = dict(state)
    H, D, k = spec.n_heads, spec.d_model, spec.d_qk
    c = math.sqrt(d_qk / k)
    for i in range(spec.n_layer):
        pre = f"blocks.{i}.attn"
        qw, qb = state[f"{pre}.q.weight"].view(H, k, D), state[f"{pre}.q.bias"].view(H, k)
        kw, kb = state[f"{pre}.k.weight"].view(H, k, D), state[f"{pre}.k.bias"].view(H, k)
        out[f"{pre}.q.weight"] = cat_new(qw, 1, noise((H, n, D), init.std, qw, gen)).reshape(-1, D)
        out[f"{pre}.q.bias"] = cat_new(qb, 1, noise((H, n), init.bias_std, qb, gen)).reshape(-1)
        out[f"{pre}.k.weight"] = cat_new(kw * c, 1, zeros((H, n, D), kw)).reshape(-1, D)
        out[f"{pre}.k.bias"] = cat_new(kb * c, 1, zeros((H, n), kb)).reshape(-1)
    return step.record(spec), out
