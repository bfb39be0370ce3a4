"""Baseline growth: width by cloning (HyperCloning) and depth by stacking layers (G_stack).

Unlike the six expansions (:mod:`logah.grow.width` etc.), these grow by *copying* trained
weights instead of adding zero-writers, as two published baselines do:

* :func:`hyperclone` — HyperCloning (Samragh et al., "Scaling Smart: Accelerating Large Language
  Model Pre-training with Small Model Initialization", 2024). Every width grows by an integer
  factor; the hidden state of the big model is the small one's repeated, ``x' = [x, x, ...]``
  (``a = d_model'/d_model`` copies). A linear layer with ``r_in`` input copies and ``r_out``
  output copies becomes ``W' = tile(W, (r_out, r_in)) / r_in``, so ``W' x' = [W x, W x, ...]``.
  LayerNorm of a repeated vector has the same mean and variance, so its gain and bias are only
  tiled (eps unchanged); heads are cloned (head ``c * H + g`` is a copy of head ``g``) and each
  head's query/key/value dims repeat too, with Q scaled by ``r_qk^-1/2`` so that SDPA's
  ``1/sqrt(d_qk')`` gives the same scores. The output (LM head / classifier) reads ``a`` copies,
  so it is divided by ``a`` (the tied GPT-2 head through ``ln_f``). Logits are preserved exactly.
  ``noise`` adds, per layer, zero-sum noise across the input copies (the paper's "noisy"
  variant): the copies see identical inputs, so the sum — the function — is unchanged, but the
  clones receive different gradients and stop being copies once trained.
* :func:`stack_layers` — G_stack (Du et al., "Stacking Your Transformers", NeurIPS 2024): the
  deeper model's layer ``j`` is the small model's layer ``j mod L`` (the whole stack repeated;
  the last repetition may be partial). Not function-preserving, by design.

:func:`clone_to` does width, :func:`stack_to` depth and (when the target is also wider) width
first. Pure functions ``(spec, state, target) -> (spec', state')``; inputs are never written.
"""

from __future__ import annotations

import math

import torch

from logah.config.specs import ModelSpec
from logah.grow.common import GrowError, Seed, State, check_input, generator
from logah.grow.plan import FIXED

# Widths HyperCloning multiplies, in the order errors report them.
WIDTHS = ("d_model", "n_heads", "d_qk", "d_v", "d_mlp")
# Families whose tensors have cloning rules (Llama's RMSNorm, gated MLP, grouped K/V and rotary
# per-head dims would each need their own; stacking is family-agnostic).
CLONABLE = ("gpt2", "vit")


def clone_factors(src: ModelSpec, target: ModelSpec) -> dict[str, int]:
    """Integer factor per width (``d_model``, ``n_heads``, ``d_qk``, ``d_v``, ``d_mlp``).

    Raises:
        GrowError: another family, a fixed field that differs, a different depth or context,
            or a width that is not an integer multiple of the source's.
    """
    if src.family != target.family:
        raise GrowError(f"target family {target.family!r} != source family {src.family!r}")
    fixed = FIXED[src.family] + (("n_ctx",) if src.family == "gpt2" else ())
    for f in fixed:
        if getattr(src, f) != getattr(target, f):
            raise GrowError(f"{f}: cloning keeps it fixed ({getattr(src, f)}), target has "
                            f"{getattr(target, f)}")
    if src.family not in CLONABLE and any(getattr(src, f) != getattr(target, f) for f in WIDTHS):
        # Llama: repeating head dims would split rotary pairs (i, i + d/2); KV groups, RMSNorm
        # and the gated MLP would each need their own rule
        raise GrowError(f"cloning widths is implemented for {' and '.join(CLONABLE)}, not "
                        f"{src.family} (stacking at the same width works; for wider, use the "
                        "exact expansions of logah.grow)")
    bad = [f"{f} {getattr(src, f)} -> {getattr(target, f)}" for f in WIDTHS
           if getattr(target, f) % getattr(src, f) != 0 or getattr(target, f) < getattr(src, f)]
    if bad:
        raise GrowError(f"cloning multiplies widths by whole factors; not a multiple: "
                        f"{', '.join(bad)}")
    return {f: getattr(target, f) // getattr(src, f) for f in WIDTHS}


def _tile(w: torch.Tensor, reps: tuple[int, ...], in_dim: int | None, noise: float,
          gen: torch.Generator) -> torch.Tensor:
    """``w.repeat(reps)``, divided by the copies along ``in_dim`` (the input side), plus zero-sum
    noise across those copies (std = ``noise`` x the std of one divided block)."""
    out = w.repeat(*reps)
    n_in = reps[in_dim] if in_dim is not None else 1
    if n_in == 1:
        return out
    out = out / n_in
    if noise > 0:
        shape = list(out.shape)  # split in_dim into (copies, size): noise sums to 0 over copies
        shape[in_dim:in_dim + 1] = [n_in, w.shape[in_dim]]
        std = noise * float(w.double().std()) / n_in
        eta = torch.randn(shape, generator=gen, dtype=torch.float64) * std
        eta = eta - eta.mean(dim=in_dim, keepdim=True)  # zero-sum across the copies
        out = out + eta.reshape(out.shape).to(out.dtype)
    return out


def _clone_block(spec: ModelSpec, state: State, pre: str, f: dict[str, int], noise: float,
                 gen: torch.Generator) -> State:
    """One block's tensors (names under ``pre``), cloned by the factors ``f``."""
    a, h, q, v, m = (f[k] for k in WIDTHS)
    H, D, dqk, dv = spec.n_heads, spec.d_model, spec.d_qk, spec.d_v
    out = {}
    for ln in ("ln_1", "ln_2"):
        for p in ("weight", "bias"):
            out[f"{pre}{ln}.{p}"] = state[f"{pre}{ln}.{p}"].repeat(a)
    for name, d in (("q", dqk), ("k", dqk), ("v", dv)):
        r = q if name != "v" else v
        scale = 1 / math.sqrt(q) if name == "q" else 1.0  # SDPA divides by sqrt(d_qk')
        w = state[f"{pre}attn.{name}.weight"].view(H, d, D)  # (H, d, D): per-head blocks
        b = state[f"{pre}attn.{name}.bias"].view(H, d)
        out[f"{pre}attn.{name}.weight"] = (_tile(w, (h, r, a), 2, noise, gen)
                                           * scale).reshape(h * H * r * d, a * D)
        out[f"{pre}attn.{name}.bias"] = (b.repeat(h, r) * scale).reshape(-1)
    # proj (D, H*d_v) -> (a*D, h*H*v*d_v): column (c*H + g, j*d_v + u) reads copy (c, j) of head
    # g's value dim u; the h*v copies of each input are equal, so they share W / (h*v).
    pw0 = state[f"{pre}attn.proj.weight"]
    pw = pw0.view(D, 1, H, 1, dv).repeat(a, h, 1, v, 1) / (h * v)  # (aD, h, H, v, d_v)
    if noise > 0 and h * v > 1:
        pw = pw + _zero_sum_noise(pw, (1, 3), noise * float(pw0.double().std()) / (h * v), gen)
    out[f"{pre}attn.proj.weight"] = pw.reshape(a * D, h * H * v * dv)
    out[f"{pre}attn.proj.bias"] = state[f"{pre}attn.proj.bias"].repeat(a)
    out[f"{pre}mlp.fc.weight"] = _tile(state[f"{pre}mlp.fc.weight"], (m, a), 1, noise, gen)
    out[f"{pre}mlp.fc.bias"] = state[f"{pre}mlp.fc.bias"].repeat(m)
    out[f"{pre}mlp.proj.weight"] = _tile(state[f"{pre}mlp.proj.weight"], (a, m), 1, noise, gen)
    out[f"{pre}mlp.proj.bias"] = state[f"{pre}mlp.proj.bias"].repeat(a)
    return out


def _zero_sum_noise(like: torch.Tensor, dims: tuple[int, ...], std: float,
                    gen: torch.Generator) -> torch.Tensor:
    """N(0, std) noise shaped like ``like`` whose sum over ``dims`` (the copies) is zero."""
    eta = torch.randn(like.shape, generator=gen, dtype=torch.float64) * std
    return (eta - eta.mean(dim=dims, keepdim=True)).to(like.dtype)


def _clone_outer(spec: ModelSpec, state: State, a: int) -> State:
    """Embeddings, final LayerNorm and output layer for ``a`` copies of the hidden state."""
    out = {}
    for name, t in state.items():
        if name.startswith("blocks."):
            continue
        if name in ("wte.weight", "wpe.weight", "cls_token", "pos_embed"):
            out[name] = t.repeat(*([1] * (t.ndim - 1)), a)  # hidden dim last
        elif name.startswith("patch_embed."):
            out[name] = t.repeat(a, *([1] * (t.ndim - 1)))  # out-channels first
        elif name.startswith("ln_f."):
            # The tied GPT-2 head reads wte' = [E, ..., E]: a copies, so ln_f carries the 1/a.
            tied = spec.family == "gpt2" and spec.tie_embeddings
            out[name] = t.repeat(a) / (a if tied else 1)
        elif name in ("lm_head.weight", "head.weight"):
            out[name] = t.repeat(1, a) / a
        elif name == "head.bias":
            out[name] = t
        else:
            raise GrowError(f"hyperclone: no cloning rule for tensor {name!r}")
    return out


def hyperclone(spec: ModelSpec, state: State, target: ModelSpec, *, noise: float = 0.0,
               seed: Seed = 0) -> tuple[ModelSpec, State]:
    """Width growth by cloning (see the module doc); logits preserved exactly.

    Args:
        target: the wider spec (same depth; every width an integer multiple of ``spec``'s).
        noise: std of the zero-sum symmetry-breaking noise, relative to each divided block's
            weight std (0: exact copies, which stay copies under training).

    Returns:
        ``target`` (with ``spec``'s ``ln_eps`` and one ``hyperclone`` growth record) and its state.
    """
    if noise < 0:
        raise GrowError(f"noise: must be >= 0, got {noise}")
    check_input(spec, state, "hyperclone")
    if target.n_layer != spec.n_layer:
        raise GrowError(f"n_layer {spec.n_layer} -> {target.n_layer}: cloning grows width only "
                        "(use stacking for depth)")
    f = clone_factors(spec, target)
    gen, s = generator(seed)
    out = _clone_outer(spec, state, f["d_model"])
    for i in range(spec.n_layer):
        out.update(_clone_block(spec, state, f"blocks.{i}.", f, noise, gen))
    new = target.replace(ln_eps=spec.ln_eps, growth=(*spec.growth, {
        "op": "hyperclone", "args": {"factors": f, "noise": noise}, "seed": s,
        "source": {k: getattr(spec, k) for k in ("n_layer", *WIDTHS)}}))
    return new, _ordered(new, out)


def stack_layers(spec: ModelSpec, state: State, n_layer: int) -> tuple[ModelSpec, State]:
    """Depth growth by stacking: layer ``j`` of the result is layer ``j mod L`` of ``spec``.

    Tensors are shared (not copied) with ``state``; a caller that trains them must clone first
    (``load_state_dict`` copies).
    """
    check_input(spec, state, "stack")
    if n_layer < spec.n_layer:
        raise GrowError(f"n_layer: cannot shrink {spec.n_layer} -> {n_layer} by stacking")
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    for j in range(n_layer):
        pre = f"blocks.{j % spec.n_layer}."
        out.update({f"blocks.{j}.{k.removeprefix(pre)}": v for k, v in state.items()
                    if k.startswith(pre)})
    new = spec.replace(n_layer=n_layer, growth=(*spec.growth, {
        "op": "stack", "args": {"to": n_layer, "map": layer_map(spec.n_layer, n_layer)},
        "source": {"n_layer": spec.n_layer}}))
    return new, _ordered(new, out)


def layer_map(n_src: int, n_layer: int) -> list[int]:
    """The source layer of each stacked layer: ``[j mod n_src for j < n_layer]``."""
    return [j % n_src for j in range(n_layer)]


def clone_to(spec: ModelSpec, state: State, target: ModelSpec, *, noise: float = 0.0,
             seed: Seed = 0) -> tuple[ModelSpec, State]:
    """``hyperclone`` to ``target``'s widths (a no-op copy when they already match)."""
    if all(getattr(spec, k) == getattr(target, k) for k in WIDTHS):
        clone_factors(spec, target)  # still checks family and fixed fields
        return spec, dict(state)
    return hyperclone(spec, state, target.replace(n_layer=spec.n_layer), noise=noise, seed=seed)


def stack_to(spec: ModelSpec, state: State, target: ModelSpec, *, noise: float = 0.0,
             seed: Seed = 0) -> tuple[ModelSpec, State]:
    """G_stack to ``target``'s depth; when ``target`` is also wider, HyperCloning first."""
    spec, state = clone_to(spec, state, target, noise=noise, seed=seed)
    return stack_layers(spec, state, target.n_layer)


def _ordered(spec: ModelSpec, state: State) -> State:
    """``state`` in the model's canonical parameter order, checked against ``spec``."""
    from logah.nn import param_shapes

    shapes = param_shapes(spec)
    out = {k: state[k] for k in shapes}
    check_input(spec, out, "clone")
    return out
