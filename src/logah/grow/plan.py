"""Growth plans: derive the steps from a target spec, apply a list of steps, resolve ``--to``.

A step is ``{"op": FIELD, "to": VALUE}`` (plus ``"positions"`` for ``n_layer``), where FIELD is
the :class:`~logah.config.specs.ModelSpec` field it grows; :data:`OPS` maps each to its operator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from logah.config.errors import ConfigError
from logah.config.grow import GROW_OPS, GrowInit, GrowStep, step_from_dict
from logah.config.model import ModelConfig, override_spec
from logah.config.specs import CAUSAL_LM, PRESETS, ModelSpec
from logah.grow.common import GrowError, Seed, State, generator, growing_into
from logah.grow.depth import add_layers, extend_context, spread_positions
from logah.grow.embed import Map
from logah.grow.fast import finish, predraw_layers, preallocate
from logah.grow.gqa import add_kv_groups
from logah.grow.hidden import expand_hidden
from logah.grow.width import add_heads, expand_attention, expand_heads, expand_mlp

OPS: dict[str, Callable[..., tuple[ModelSpec, State]]] = {
    "n_ctx": extend_context,
    "d_mlp": expand_mlp,
    "n_kv_heads": add_kv_groups,
    "n_heads": add_heads,
    "d_v": expand_heads,
    "d_qk": expand_attention,
    "d_model": expand_hidden,
    "n_layer": add_layers,
}
assert tuple(OPS) == GROW_OPS  # one order, defined in logah.config.grow

# Fields growth cannot change, per family (ln_eps is not here: d_model growth rescales it).
FIXED = {
    "gpt2": ("vocab_size", "tie_embeddings"),
    "vit": ("image_size", "patch_size", "in_chans", "num_classes"),
    "llama": ("vocab_size", "tie_embeddings", "rope_base", "rope_scaling"),
}


def growable(spec: ModelSpec) -> tuple[str, ...]:
    skip = {"n_ctx"} if spec.family not in CAUSAL_LM else set()
    if spec.family != "llama":
        skip.add("n_kv_heads")
    return tuple(op for op in GROW_OPS if op not in skip)


def _dim(spec: ModelSpec, op: str) -> int:
    return spec.kv_heads if op == "n_kv_heads" else getattr(spec, op)


def check_growth(src: ModelSpec, target: ModelSpec) -> None:
    """Raise one :class:`GrowError` line if ``target`` cannot be grown from ``src``."""
    if src.family != target.family:
        raise GrowError(f"target family {target.family!r} != source family {src.family!r}")
    for f in FIXED[src.family]:
        if getattr(src, f) != getattr(target, f):
            raise GrowError(f"{f}: growth keeps it fixed ({getattr(src, f)}), target has "
                            f"{getattr(target, f)}")
    shrinking = [f"{f} {_dim(src, f)} -> {_dim(target, f)}" for f in growable(src)
                 if _dim(target, f) < _dim(src, f)]
    if src.family == "llama" and not shrinking:
        g, g2 = src.n_heads // src.kv_heads, target.n_heads // target.kv_heads
        if g2 < g:
            shrinking = [f"query heads per KV group {g} -> {g2}"]
    if shrinking:
        hint = ""
        if target.n_heads > src.n_heads and any(s.startswith(("d_qk", "d_v")) for s in shrinking):
            hint = (" (per-head widths d_qk/d_v cannot shrink: with more heads, also grow d_model "
                    "or give d_qk/d_v explicitly)")
        raise GrowError(f"target would shrink {', '.join(shrinking)}{hint}")


def plan_growth(src: ModelSpec, target: ModelSpec) -> list[dict[str, Any]]:
    """The steps that grow ``src`` into ``target`` (only the target's dims are used).

    Order: n_ctx, d_mlp, n_kv_heads, n_heads, d_v, d_qk, d_model, n_layer (last, so new layers
    are built at full width); new layers are spread evenly (:func:`spread_positions`). The grown
    spec equals ``target`` except ``ln_eps``, which hidden growth sets to
    ``src.ln_eps * d_model/d_model'`` (and a Llama's ``rope_dims`` after d_qk growth). Llama KV
    groups come first, keeping the group size, so ``n_heads`` then only adds heads per group.
    """
    check_growth(src, target)
    steps = []
    cur = {op: _dim(src, op) for op in growable(src)}
    for op in growable(src):
        if _dim(target, op) != cur[op]:
            step: dict[str, Any] = {"op": op, "to": _dim(target, op)}
            if op == "n_kv_heads":  # each new group brings g query heads
                cur["n_heads"] = _dim(target, op) * (src.n_heads // src.kv_heads)
            if op == "n_layer":
                step["positions"] = spread_positions(src.n_layer, target.n_layer - src.n_layer)
            steps.append(step)
    return steps


def apply_plan(spec: ModelSpec, state: State, steps: Iterable[GrowStep | dict[str, Any]], *,
               seed: Seed = 0, init: GrowInit | None = None,
               emb_map: Map | None = None) -> tuple[ModelSpec, State]:
    """Apply steps in order. With an int ``seed``, step i draws from seed ``seed + i`` (recorded
    in the history, so each step can be replayed alone); a generator is shared by all steps.

    The result equals calling the operators one by one, bit for bit; it is computed faster
    (grown tensors written once at their final shapes, new layers drawn on a second thread:
    :mod:`logah.grow.fast`). ``emb_map``: the steps' :func:`~logah.grow.embed.plan_map`, if the
    caller has it already (it locates the buffers; computed here otherwise).
    """
    gen, base = generator(seed)
    plan = [raw if isinstance(raw, GrowStep) else step_from_dict(dict(raw), f"steps[{i}]")
            for i, raw in enumerate(steps)]
    with ThreadPoolExecutor(1) as pool:
        drawn = predraw_layers(pool, spec, state, plan, base, init)  # first: it runs longest
        state, buffers = preallocate(spec, state, plan, emb_map)
        with growing_into(buffers):
            spec, state = _run(spec, state, plan, drawn, gen if base is None else base, init)
    return spec, finish(state, buffers)


def _run(spec: ModelSpec, state: State, plan: list[GrowStep], drawn: dict[int, Any], seed: Seed,
         init: GrowInit | None) -> tuple[ModelSpec, State]:
    """The steps in order (an int ``seed``: step i uses ``seed + i``; else one shared generator)."""
    for i, step in enumerate(plan):
        kwargs: dict[str, Any] = {"seed": seed if isinstance(seed, torch.Generator) else seed + i,
                                  "init": init}
        if step.positions is not None:
            kwargs["positions"] = step.positions
        if i in drawn:
            kwargs["new_blocks"] = drawn[i]
        try:
            spec, state = OPS[step.op](spec, state, step.to, **kwargs)
        except GrowError as e:
            raise GrowError(f"steps[{i}] ({step.op} -> {step.to}): {e}") from None
    return spec, state


def grow(spec: ModelSpec, state: State, target: ModelSpec, *, seed: Seed = 0,
         init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Grow ``(spec, state)`` to ``target``'s dims: :func:`plan_growth` then :func:`apply_plan`."""
    return apply_plan(spec, state, plan_growth(spec, target), seed=seed, init=init)


def same_dims(a: ModelSpec, b: ModelSpec) -> bool:
    """Equal apart from ``ln_eps``, rotary frequency bookkeeping (``rope_dims``, which d_qk growth
    writes) and the growth history."""
    return a.replace(ln_eps=b.ln_eps, rope_dims=b.rope_dims, growth=()) == b.replace(growth=())


def resolve_target(src: ModelSpec, to: str) -> ModelSpec:
    """``--to``: a preset name, or ``key=value,...`` dims applied to ``src``; ``d_model`` and
    ``n_heads`` re-tie d_qk/d_v and d_mlp as ``model.*`` overrides do (``n_layer=4,d_model=128``).
    """
    to = to.strip()
    if "=" not in to:
        if to not in PRESETS:
            raise ConfigError(f"--to: {to!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                              "nor key=value dims")
        return PRESETS[to]
    from logah.config.load import load_config

    pairs = [p.strip().removeprefix("model.") for p in to.split(",") if p.strip()]
    if any(p.split("=", 1)[0] == "arch" for p in pairs):
        raise ConfigError("--to: arch is not a dim (give a preset name alone, or key=value dims)")
    try:
        cfg = load_config(ModelConfig, None, pairs)
    except ConfigError as e:
        raise ConfigError(f"--to: {e}") from None
    changes = {k: v for k, v in vars(cfg).items() if k != "arch" and v is not None}
    return override_spec(src.replace(growth=()), changes)
