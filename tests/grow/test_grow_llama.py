"""Exact growth of Llamas (RMSNorm, SwiGLU, rotary GQA): every expansion and random compositions
preserve the function to 1e-10 in float64; negative controls show each rule is needed."""

from __future__ import annotations

import random

import pytest
import torch
from growkit import (
    BIG,
    LLAMA_SPECS,
    TOL,
    assert_exact,
    break_zero_rule,
    grow_case,
    inputs,
    logits,
    max_diff,
    random_state,
)

from logah.grow import OPS, GrowError, apply_plan, plan_growth

TARGETS = {
    "d_mlp": lambda s: s.d_mlp + 13,
    "n_kv_heads": lambda s: s.kv_heads + 1,
    "n_heads": lambda s: s.n_heads + s.kv_heads,  # one more query head in every group
    "d_v": lambda s: s.d_v + 3,
    "d_qk": lambda s: s.d_qk + 4,  # rotary: even
    "d_model": lambda s: s.d_model + 5,
    "n_layer": lambda s: s.n_layer + 2,
    "n_ctx": lambda s: s.n_ctx + 3,
}
CASES = [(f, op) for f in LLAMA_SPECS for op in TARGETS]
IDS = [f"{f}-{op}" for f, op in CASES]


def _rotary_new_rows(heads: int, k: int, k2: int) -> list[int]:
    """Rows of a grown q/k weight that are new: the end of both halves of every head."""
    h, h2 = k // 2, k2 // 2
    return [j * k2 + r for j in range(heads) for r in [*range(h, h2), *range(h2 + h, k2)]]


def zero_entries(op: str, s, s2) -> list[tuple[str, tuple]]:
    """(tensor, index) of every entry the op's rule says must be exactly zero."""
    a, L = slice(None), range(s.n_layer)
    proj = [f"blocks.{i}.attn.proj.weight" for i in L]
    if op == "d_mlp":
        return [(f"blocks.{i}.mlp.proj.weight", (a, slice(s.d_mlp, None))) for i in L]
    if op == "n_kv_heads":
        return [(n, (a, slice(s.n_heads * s.d_v, None))) for n in proj]
    if op == "n_heads":  # per group: heads g.. g2 of each group
        g, g2, v = s.n_heads // s.kv_heads, s2.n_heads // s.kv_heads, s.d_v
        cols = [(grp * g2 + h) * v + c for grp in range(s.kv_heads) for h in range(g, g2)
                for c in range(v)]
        return [(n, (a, cols)) for n in proj]
    if op == "d_v":
        cols = [h * s2.d_v + c for h in range(s.n_heads) for c in range(s.d_v, s2.d_v)]
        return [(n, (a, cols)) for n in proj]
    if op == "d_qk":
        rows = _rotary_new_rows(s.kv_heads, s.d_qk, s2.d_qk)
        return [(f"blocks.{i}.attn.k.weight", (rows,)) for i in L]
    if op == "d_model":
        new = slice(s.d_model, None)
        return ([("wte.weight", (a, new))] + [(n, (new,)) for n in proj]
                + [(f"blocks.{i}.mlp.proj.weight", (new,)) for i in L])
    if op == "n_layer":
        return [(f"blocks.{j}.{w}.weight", ()) for j in s2.growth[-1]["args"]["positions"]
                for w in ("attn.proj", "mlp.proj")]
    return []


def _grow(family: str, op: str, seed: int = 1):
    return grow_case(LLAMA_SPECS[family], op, TARGETS[op](LLAMA_SPECS[family]), seed)


@pytest.mark.parametrize("family,op", CASES, ids=IDS)
def test_llama_op_preserves_the_function_exactly(family, op):
    s, state, s2, state2 = _grow(family, op)
    assert_exact(s, state, s2, state2, zero_entries(op, s, s2))
    assert getattr(s2, "kv_heads" if op == "n_kv_heads" else op) == TARGETS[op](s)
    assert s2.growth[-1]["source"]["n_kv_heads"] == s.n_kv_heads


@pytest.mark.parametrize("family,op", [c for c in CASES if c[1] != "n_ctx"],
                         ids=[i for c, i in zip(CASES, IDS) if c[1] != "n_ctx"])
def test_llama_negative_control_breaking_the_zero_rule_changes_the_output(family, op):
    s, state, s2, state2 = _grow(family, op)
    assert break_zero_rule(s, state, s2, state2, zero_entries(op, s, s2)[0]) > 1e-6


def test_group_structure_after_head_growth():
    s, _, s2, _ = _grow("llama-gqa", "n_heads")
    assert (s2.n_heads, s2.kv_heads) == (6, 2)  # 2 groups of 3
    s, _, s3, _ = _grow("llama-gqa", "n_kv_heads")
    assert (s3.n_heads, s3.kv_heads) == (6, 3)  # 3 groups of 2
    with pytest.raises(GrowError, match="not a multiple of n_kv_heads=2"):
        OPS["n_heads"](s, random_state(s), 5)


def test_rotary_qk_growth_needs_the_recorded_frequencies_halves_and_rescale():
    """Controls for d_qk under rotary: (1) HF's recomputed frequencies (rope_dims dropped), (2)
    new dims appended at the end of the head instead of each half, (3) no key rescale."""
    s, state, s2, state2 = _grow("llama-mha-untied", "d_qk")
    x = inputs(s)
    ref = logits(s, state, x)
    assert s2.rope_dims == (8, 12) and not s2.is_standard
    assert max_diff(logits(s2.replace(rope_dims=()), state2, x), ref) > 1e-6  # (1)
    k, k2 = s.d_qk, s2.d_qk
    perm = [*range(0, k // 2), *range(k2 // 2, k2 // 2 + k // 2),  # old dims first ...
            *range(k // 2, k2 // 2), *range(k2 // 2 + k // 2, k2)]  # ... new dims appended
    appended = dict(state2)
    for i in range(s.n_layer):
        for t in ("q", "k"):
            w = state2[f"blocks.{i}.attn.{t}.weight"].view(-1, k2, s.d_model)
            appended[f"blocks.{i}.attn.{t}.weight"] = w[:, perm].reshape(-1, s.d_model)
    assert max_diff(logits(s2, appended, x), ref) > 1e-6  # (2)
    unscaled = dict(state2)
    for i in range(s.n_layer):
        unscaled[f"blocks.{i}.attn.k.weight"] = state2[f"blocks.{i}.attn.k.weight"] / (k2 / k) ** .5
    assert max_diff(logits(s2, unscaled, x), ref) > 1e-6  # (3)


def test_rmsnorm_hidden_growth_controls_mean_padding_and_unscaled_eps_fail():
    s, state, s2, state2 = _grow("llama-gqa", "d_model")
    x = inputs(s)
    ref = logits(s, state, x)
    assert s2.ln_eps == pytest.approx(s.ln_eps * 16 / 21)
    assert max_diff(logits(s2.replace(ln_eps=s.ln_eps), state2, x), ref) > 1e-9  # eps rule
    meaned = dict(state2)
    w = state["wte.weight"]
    meaned["wte.weight"] = torch.cat([w, w.mean(1, keepdim=True).expand(-1, 5)], 1)
    assert max_diff(logits(s2, meaned, x), ref) > 1e-6  # LayerNorm's rule is wrong for RMSNorm


@pytest.mark.parametrize("family", list(LLAMA_SPECS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_llama_compositions_are_exact(family, seed):
    rng = random.Random(seed)
    s = LLAMA_SPECS[family]
    state = random_state(s, seed)
    x = inputs(s, seed)
    ref = logits(s, state, x)
    cur, cur_state = s, state
    ops = rng.sample(list(TARGETS), k=len(TARGETS)) + rng.choices(list(TARGETS), k=3)
    for i, op in enumerate(ops):
        to = TARGETS[op](cur) if op != "d_qk" else cur.d_qk + 2 * rng.randint(1, 2)
        cur, cur_state = OPS[op](cur, cur_state, to, seed=100 + i, init=BIG)
    assert len(cur.growth) == len(ops) and len(cur.rope_dims) >= 2
    assert max_diff(logits(cur, cur_state, x), ref) <= TOL


def test_derived_llama_plan_reaches_the_target_and_is_exact():
    s = LLAMA_SPECS["llama-gqa"]  # L2 D16 H4 KV2 hd4 mlp24
    target = s.replace(n_layer=3, d_model=24, n_heads=9, n_kv_heads=3, d_qk=6, d_v=6, d_mlp=40)
    steps = plan_growth(s, target)
    assert [st["op"] for st in steps] == ["d_mlp", "n_kv_heads", "n_heads", "d_v", "d_qk",
                                          "d_model", "n_layer"]
    assert steps[1]["to"] == 3 and steps[2]["to"] == 9  # 3 groups of 2, then 3 per group
    state = random_state(s)
    s2, state2 = apply_plan(s, state, steps, seed=0, init=BIG)
    assert s2.replace(ln_eps=target.ln_eps, rope_dims=(), growth=()) == target
    x = inputs(s)
    assert max_diff(logits(s2, state2, x), logits(s, state, x)) <= TOL
    with pytest.raises(GrowError, match="query heads per KV group 2 -> 1"):
        plan_growth(s, s.replace(n_kv_heads=4))


def test_grown_llama_without_qk_growth_still_exports_to_hf(tmp_path, transformers):
    s = LLAMA_SPECS["llama-gqa"]
    state = {n: t.float() for n, t in random_state(s).items()}
    s2, state2 = apply_plan(s, state, [{"op": "n_kv_heads", "to": 3}, {"op": "d_model", "to": 24},
                                       {"op": "n_layer", "to": 3}], seed=0)
    from logah.nn.hf import export_hf

    hf = transformers.LlamaForCausalLM.from_pretrained(export_hf(s2, state2, tmp_path)).eval()
    x = inputs(s)
    with torch.no_grad():
        assert max_diff(hf(x).logits.double(), logits(s, state, x)) <= 1e-4
