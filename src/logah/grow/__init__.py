"""Function-preserving growth of GPT-2 / ViT / Llama: Gesmundo & Maile's six expansions, exact for
LayerNorm (mean-padding) and RMSNorm (zero-padding), with grouped-query heads and rotary q/k.

Each operator is a pure function ``(spec, state_dict, new_value, *, seed, init) -> (spec',
state_dict')`` whose output model computes the same function as the input (float64: max |diff| of
logits ~1e-14). They compose in any order; each appends a step to ``spec.growth``.

=====================  =========  ============================================================
operator               grows      must-be-zero / rescaled
=====================  =========  ============================================================
expand_mlp             d_mlp      new mlp.proj columns = 0
add_heads              n_heads    new attn.proj columns = 0
expand_heads           d_v        attn.proj columns inserted after each head = 0
expand_attention       d_qk       new K rows/bias = 0; old K x sqrt(d_qk'/d_qk)
expand_hidden          d_model    writers mean-padded, new LN bias = 0; gains x sqrt(h/h'),
                                  ln_eps x h/h'
add_layers             n_layer    new blocks' attn.proj, mlp.proj (weight, bias) = 0
extend_context         n_ctx      (new positions only reachable by longer sequences)
add_kv_groups          n_kv_heads Llama: new groups' attn.proj columns = 0
=====================  =========  ============================================================

Llama specifics (heads per KV group, d_qk split over the rotary halves with the old frequencies
recorded in ``spec.rope_dims``, zero-padded writers under RMSNorm): :mod:`logah.grow.gqa`,
docs/grow.md. Free entries are drawn from :class:`~logah.config.grow.GrowInit` (N(0, std) weights). Plans:
:func:`plan_growth` derives the steps from a target spec, :func:`apply_plan` runs them.
No Lightning here: this package depends on ``logah.nn`` and ``logah.config`` only.
"""

from logah.config.grow import GROW_OPS, GrowInit, GrowPlan, GrowStep, load_plan
from logah.grow.common import GrowError
from logah.grow.depth import add_layers, extend_context, spread_positions
from logah.grow.gqa import add_kv_groups
from logah.grow.hidden import expand_hidden
from logah.grow.plan import (
    OPS,
    apply_plan,
    check_growth,
    grow,
    plan_growth,
    resolve_target,
    same_dims,
)
from logah.grow.width import add_heads, expand_attention, expand_heads, expand_mlp

__all__ = [
    "GROW_OPS",
    "OPS",
    "GrowError",
    "GrowInit",
    "GrowPlan",
    "GrowStep",
    "add_heads",
    "add_kv_groups",
    "add_layers",
    "apply_plan",
    "check_growth",
    "expand_attention",
    "expand_heads",
    "expand_hidden",
    "expand_mlp",
    "extend_context",
    "grow",
    "load_plan",
    "plan_growth",
    "resolve_target",
    "same_dims",
    "spread_positions",
]
