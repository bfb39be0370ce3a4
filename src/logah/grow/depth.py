"""Layer addition at any positions, and context extension of the language models.

A new pre-LN block ``x + attn(ln_1(x))``, ``+ mlp(ln_2(x))`` is the identity when both residual
writers are zero: ``attn.proj`` and ``mlp.proj`` (weights and biases) = 0. Everything else in the
block is free: LayerNorm gains 1 + N(0, ln_std) and biases N(0, ln_std), Q/K/V/fc weights
N(0, std), their biases N(0, bias_std). The writers then receive gradients at once, and the rest
of the block as soon as they move off zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from logah.config.grow import GrowInit
from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.grow.common import GrowError, Seed, State, begin, cat_new, new_shape, noise, zeros
from logah.nn import param_shapes

# Suffixes of the block tensors that must be zero for the block to be the identity.
IDENTITY_ZEROS = ("attn.proj.weight", "attn.proj.bias", "mlp.proj.weight", "mlp.proj.bias")


def spread_positions(n_old: int, n_new: int) -> list[int]:
    """Default places for ``n_new`` new layers: spread evenly, new layer j goes right after old
    layer ``ceil((j+1) n_old / n_new) - 1`` (2 -> 4 gives [old, new, old, new]). Returns the new
    layers' indices in the grown model."""
    return [math.ceil((j + 1) * n_old / n_new) - 1 + 1 + j for j in range(n_new)]


def block_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The shapes of one block at ``spec``'s widths, keyed by their name in the block."""
    pre = "blocks.0."
    return {n.removeprefix(pre): s for n, s in param_shapes(spec).items() if n.startswith(pre)}


def new_block(shapes: dict[str, tuple[int, ...]], like: torch.Tensor, init: GrowInit,
              gen: torch.Generator) -> State:
    """One fresh identity block's tensors of ``shapes`` (:func:`block_shapes`), keyed by their
    name in the block (``attn.q.weight``), in ``like``'s dtype and device. Builds no model, so it
    can run on another thread."""
    block = {}
    for local, shape in shapes.items():
        if local in IDENTITY_ZEROS:
            block[local] = zeros(shape, like)
        elif local.startswith(("ln_1.", "ln_2.")):
            mean = 1.0 if local.endswith("weight") else 0.0
            block[local] = noise(shape, init.ln_std, like, gen, mean=mean)
        elif local.endswith("bias"):
            block[local] = noise(shape, init.bias_std, like, gen)
        else:
            block[local] = noise(shape, init.std, like, gen)
    return block


def add_layers(spec: ModelSpec, state: State, n_layer: int, positions: list[int] | None = None,
               *, seed: Seed = 0, init: GrowInit | None = None,
               new_blocks: Iterator[State] | None = None) -> tuple[ModelSpec, State]:
    """Layer addition ``n_layer -> n_layer'``: identity blocks inserted at ``positions``.

    Args:
        positions: the indices the new layers have in the grown model (distinct, in
            ``[0, n_layer')``; the old layers keep their order in the remaining slots). Default:
            :func:`spread_positions`.
        new_blocks: the new blocks already drawn (:func:`new_block` with this step's generator,
            in position order), as :func:`~logah.grow.apply_plan` does on a second thread;
            default: drawn here.
    """
    step = begin(spec, state, "n_layer", n_layer, seed, init)
    if step.n == 0:
        if positions:
            raise GrowError(f"n_layer: positions {positions} given but no layer is added")
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    positions = spread_positions(spec.n_layer, n) if positions is None else list(positions)
    in_range = all(0 <= p < n_layer for p in positions)
    if len(positions) != n or len(set(positions)) != n or not in_range:
        raise GrowError(
            f"n_layer: positions {positions} must be {n} distinct indices in [0, {n_layer}) "
            f"(where the new layers sit in the grown model)"
        )
    new_at, template = set(positions), next(iter(state.values()))  # dtype / device of new ones
    shapes = block_shapes(spec)
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    old = iter(range(spec.n_layer))
    for j in range(n_layer):
        if j in new_at:
            # blocks are built in order of position so the draws do not depend on old layers
            block = next(new_blocks) if new_blocks is not None else new_block(shapes, template,
                                                                              init, gen)
        else:
            i = next(old)
            pre = f"blocks.{i}."
            block = {k.removeprefix(pre): v for k, v in state.items() if k.startswith(pre)}
        out.update({f"blocks.{j}.{k}": v for k, v in block.items()})
    order = list(param_shapes(spec.replace(n_layer=n_layer)))
    out = {k: out[k] for k in order}  # canonical order, as the model's state_dict
    new_spec = step.record(spec, {"positions": sorted(positions)})
    return new_spec, out


def extend_context(spec: ModelSpec, state: State, n_ctx: int, *, seed: Seed = 0,
                   init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Context extension ``n_ctx -> n_ctx'``. GPT-2: new ``wpe`` rows ~ N(0, std). Llama: no
    tensor changes (rotary positions have no parameters; only the length bound moves).

    Outputs on every sequence the old model accepts (length <= old n_ctx) are unchanged: the new
    positions are only used by longer sequences.
    """
    if spec.family not in CAUSAL_LM:
        raise GrowError(f"n_ctx: only the language models have a context length (this is a "
                        f"{spec.family} model)")
    step = begin(spec, state, "n_ctx", n_ctx, seed, init)
    if step.n == 0:
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    out = dict(state)
    if "wpe.weight" not in state:  # rotary (Llama): nothing to add
        return step.record(spec), out
    w = state["wpe.weight"]  # (n_ctx, d_model)
    out["wpe.weight"] = cat_new(w, 0, noise(new_shape(w, 0, n), init.std, w, gen))
    return step.record(spec), out
