"""apply_plan's fast path (logah.grow.fast: final-shape buffers, new layers drawn on a second
thread) equals running the operators one by one, bit for bit, and so does carrying AdamW state
along the composed map versus step by step."""

from __future__ import annotations

import pytest
import torch
from growkit import BIG, LLAMA_SPECS, SPECS, model_of, random_state
from test_grow_compose import random_plan

from logah.grow import OPS, apply_plan, plan_growth
from logah.grow.common import cat_new, growing_into
from logah.grow.embed import _zero_outside, carry_state, plan_map, step_map
from logah.nn import param_shapes

ALL = {**SPECS, **LLAMA_SPECS}


def bigger(spec):
    """A target that needs all four of d_mlp, n_heads, d_model, n_layer (as gpt2-small ->
    gpt2-medium does), n_ctx too for the language models; Llama a KV group and a query head
    per group."""
    heads = {"n_heads": spec.n_heads * 2}
    if spec.family == "llama":
        kv = spec.kv_heads
        heads = {"n_kv_heads": kv + 1, "n_heads": (kv + 1) * (spec.n_heads // kv + 1)}
    if spec.family != "vit":
        heads["n_ctx"] = spec.n_ctx + 2
    return spec.replace(d_mlp=spec.d_mlp + 8, d_model=spec.d_model + 8, n_layer=spec.n_layer * 2,
                        **heads)


def step_by_step(spec, state, steps, seed, init):
    """The reference: each operator called alone, on the previous one's output."""
    for i, raw in enumerate(steps):
        kwargs = {"seed": seed if isinstance(seed, torch.Generator) else seed + i, "init": init}
        if "positions" in raw:
            kwargs["positions"] = raw["positions"]
        spec, state = OPS[raw["op"]](spec, state, raw["to"], **kwargs)
    return spec, state


def assert_same(a, b) -> None:
    (sa, ta), (sb, tb) = a, b
    assert sa == sb and sa.growth == sb.growth
    assert list(ta) == list(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].is_contiguous(), k
        assert torch.equal(ta[k], tb[k]), k


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("family", list(ALL))
def test_four_expansions_equal_step_by_step_bit_for_bit(family, dtype):
    s = ALL[family]
    steps = plan_growth(s, bigger(s))
    assert {"d_mlp", "n_heads", "d_model", "n_layer"} <= {st["op"] for st in steps}
    state = {k: v.to(dtype) for k, v in random_state(s).items()}
    assert_same(apply_plan(s, state, steps, seed=5, init=BIG),
                step_by_step(s, state, steps, 5, BIG))
    assert all(torch.equal(v, random_state(s)[k].to(dtype)) for k, v in state.items())  # input kept


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_plans_and_a_shared_generator_equal_step_by_step(family, seed):
    """d_v / d_qk interleave heads and rescale K (the plain path); ops repeat; n_layer anywhere."""
    s = SPECS[family]
    steps = random_plan(s, seed)
    state = random_state(s, seed)
    assert_same(apply_plan(s, state, steps, seed=seed, init=BIG),
                step_by_step(s, state, steps, seed, BIG))
    gen_a, gen_b = (torch.Generator().manual_seed(seed) for _ in range(2))
    assert_same(apply_plan(s, state, steps, seed=gen_a, init=BIG),
                step_by_step(s, state, steps, gen_b, BIG))


def test_only_rescaled_gains_are_concatenated(monkeypatch):
    """The fast path is taken: every other grown tensor is written into its final buffer."""
    s = SPECS["gpt2-untied"]
    calls = []
    real_cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda ts, dim=0: calls.append(ts[0].shape) or
                        real_cat(ts, dim=dim))
    apply_plan(s, random_state(s), plan_growth(s, bigger(s)), init=BIG)
    assert len(calls) == 2 * s.n_layer + 1  # ln_1, ln_2 gains per layer, ln_f: x sqrt(h/h')
    calls.clear()
    step_by_step(s, random_state(s), plan_growth(s, bigger(s)), 0, BIG)
    assert len(calls) > 6 * s.n_layer  # negative control: the plain path concatenates everything


def test_a_corner_grows_in_place_once_then_falls_back():
    buf = torch.full((4, 3), -1.0)
    corner = buf[:2, :2]
    corner.copy_(torch.ones(2, 2))
    with growing_into([(buf, corner)]):
        a = cat_new(corner, 0, torch.full((1, 2), 2.0))
        assert a.untyped_storage().data_ptr() == buf.untyped_storage().data_ptr()
        b = cat_new(corner, 0, torch.full((1, 2), 3.0))  # stale corner: a copy, buf untouched
        c = cat_new(a, 1, torch.full((3, 1), 4.0))
    assert b.untyped_storage().data_ptr() != buf.untyped_storage().data_ptr()
    assert torch.equal(a, torch.tensor([[1.0, 1], [1, 1], [2, 2]]))
    assert torch.equal(b, torch.tensor([[1.0, 1], [1, 1], [3, 3]]))
    assert torch.equal(c, torch.tensor([[1.0, 1, 4], [1, 1, 4], [2, 2, 4]]))
    assert torch.equal(buf[3], torch.full((3,), -1.0))  # never written


def reference_place(old, emb, shape):
    new = torch.zeros(shape, dtype=old.dtype)
    new[torch.meshgrid(*emb.index, indexing="ij")] = old
    return new


@pytest.mark.parametrize("family", ["gpt2-tied", "vit", "llama-gqa"])
def test_adamw_state_carried_at_once_equals_step_by_step(family):
    s = ALL[family]
    steps = plan_growth(s, bigger(s))
    model = model_of(s, random_state(s)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 11, (2, 5)) if s.family != "vit" else torch.randn(2, 3, 8, 8)
    model(x).square().mean().backward()
    opt.step()
    names = {p: n for n, p in model.named_parameters()}
    adam = {names[p]: dict(st) for p, st in opt.state.items()}
    s2, _ = apply_plan(s, random_state(s), steps)
    fused = carry_state(adam, plan_map(s, steps), param_shapes(s2))
    cur, spec = adam, s
    for i, step in enumerate(steps):  # one step at a time, each placed by plain indexing
        nxt, _ = apply_plan(spec, random_state(spec), [step])
        shapes = param_shapes(nxt)
        cur = {n: {k: reference_place(v, e, shapes[n]) if k != "step" else v
                   for k, v in cur[e.source].items()}
               for n, e in step_map(spec, step).items() if e is not None and e.source in cur}
        spec = nxt
    assert list(fused) == list(cur)
    for n in fused:
        assert fused[n]["step"] == cur[n]["step"]
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(fused[n][k], cur[n][k]), (n, k)


def test_zero_outside_tiles_the_outside_once():
    new = torch.full((5, 4, 3), float("nan"))
    box = [slice(1, 3), slice(0, 2), slice(2, 3)]
    _zero_outside(new, box)
    inside = torch.zeros_like(new, dtype=torch.bool)
    inside[tuple(box)] = True
    assert new[inside].isnan().all() and torch.all(new[~inside] == 0)
