"""Index maps of the growth operators (``logah.grow.embed``) and optimizer-state transplant."""

from __future__ import annotations

import pytest
import torch
from growkit import BIG, SPECS, random_state
from test_grow_compose import random_plan

from logah.grow import apply_plan
from logah.grow.embed import carry_state, place, plan_map, step_map
from logah.nn import param_shapes

ONE_STEP = [("d_mlp", 70), ("n_heads", 3), ("d_v", 11), ("d_qk", 10), ("d_model", 21),
            ("n_layer", 4), ("n_ctx", 9)]


def check_map(s, state, grown, emb_map) -> None:
    """Every old entry is where the map says (times its scale); whole new tensors are marked."""
    assert list(emb_map) == list(grown)
    for name, emb in emb_map.items():
        if emb is None:
            continue
        old = state[emb.source]
        got = grown[name][torch.meshgrid(*emb.index, indexing="ij")]
        torch.testing.assert_close(got, old * emb.scale, rtol=1e-12, atol=0)
        # each old slice lands on a distinct new position
        assert all(len(set(i.tolist())) == len(i) for i in emb.index)


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("op,to", ONE_STEP)
def test_step_map_locates_every_old_entry(family, op, to):
    s = SPECS[family]
    if op == "n_ctx" and s.family != "gpt2":
        pytest.skip("ViT has no context length")
    state = random_state(s)
    step = {"op": op, "to": to}
    s2, grown = apply_plan(s, state, [step], init=BIG)
    m = step_map(s, step)
    check_map(s, state, grown, m)
    n_new = sum(e is None for e in m.values())
    assert n_new == (len(grown) - len(state) if op == "n_layer" else 0)
    scaled = {n for n, e in m.items() if e is not None and e.scale != 1.0}
    if op == "d_qk":
        assert scaled and all(".attn.k." in n for n in scaled)
    elif op == "d_model":
        assert scaled and all(n.endswith("weight") and ("ln_" in n or "norm" in n) for n in scaled)
    else:
        assert not scaled


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plan_map_composes_random_plans(family, seed):
    s = SPECS[family]
    state = random_state(s, seed)
    steps = random_plan(s, seed)
    s2, grown = apply_plan(s, state, steps, seed=seed, init=BIG)
    check_map(s, state, grown, plan_map(s, steps))


def test_negative_control_a_wrong_map_is_caught():
    """Appending d_v instead of inserting per head puts old entries elsewhere: check_map fails."""
    s = SPECS["gpt2-tied"]
    state = random_state(s)
    s2, grown = apply_plan(s, state, [{"op": "d_v", "to": 11}], init=BIG)
    m = step_map(s, {"op": "d_v", "to": 11})
    name = "blocks.0.attn.v.weight"
    e = m[name]
    m[name] = type(e)(e.source, (torch.arange(len(e.index[0])), e.index[1]), e.scale)
    with pytest.raises(AssertionError):
        check_map(s, state, grown, m)


def test_carry_state_keeps_old_moments_and_zeroes_new_entries():
    s = SPECS["gpt2-tied"]
    steps = [{"op": "d_model", "to": 20}, {"op": "d_v", "to": 10}, {"op": "n_layer", "to": 3}]
    shapes = param_shapes(s)
    gen = torch.Generator().manual_seed(0)
    old = {n: {"step": torch.tensor(7.0), "exp_avg": torch.randn(sh, generator=gen),
               "exp_avg_sq": torch.rand(sh, generator=gen) + 0.1} for n, sh in shapes.items()}
    m = plan_map(s, steps)
    s2, _ = apply_plan(s, random_state(s), steps)
    new_shapes = param_shapes(s2)
    new = carry_state(old, m, new_shapes)
    fresh = {n for n, e in m.items() if e is None}
    assert fresh and set(new) == set(new_shapes) - fresh  # new layers start with no state
    for n, st in new.items():
        e = m[n]
        assert st["step"] == 7.0
        for k in ("exp_avg", "exp_avg_sq"):
            v = st[k]
            assert tuple(v.shape) == new_shapes[n]
            ix = torch.meshgrid(*e.index, indexing="ij")
            assert torch.equal(v[ix], old[e.source][k])  # unchanged (not rescaled)
            mask = torch.ones_like(v, dtype=torch.bool)
            mask[ix] = False
            assert torch.all(v[mask] == 0)  # every new entry exactly zero
            assert int((v != 0).sum()) == old[e.source][k].numel()


def test_place_handles_interleaved_and_prefix_dims():
    old = torch.arange(6.0).view(2, 3)
    idx = (torch.tensor([0, 3]), torch.tensor([0, 1, 2]))
    from logah.grow.embed import Embedding

    new = place(old, Embedding("x", idx), (5, 4), scale=2.0)
    assert torch.equal(new[[0, 3]][:, :3], old * 2) and new.sum() == (old * 2).sum()
    both = (torch.tensor([0, 3]), torch.tensor([1, 2, 4]))
    new = place(old, Embedding("x", both), (5, 5))
    assert torch.equal(new[torch.meshgrid(*both, indexing="ij")], old)


@pytest.mark.parametrize("family", ["llama-gqa", "llama-mha-untied"])
@pytest.mark.parametrize("op,to", [("d_mlp", 30), ("n_kv_heads", 3), ("n_heads", 6), ("d_v", 11),
                                   ("d_qk", 12), ("d_model", 21), ("n_layer", 4), ("n_ctx", 9)])
def test_llama_step_maps_locate_every_old_entry(family, op, to):
    """Llama: query heads inserted per group, GQA value heads, d_qk split over the rotary halves."""
    from growkit import LLAMA_SPECS

    s = LLAMA_SPECS[family]
    if op == "n_heads" and to % s.kv_heads:
        to = s.n_heads + s.kv_heads
    state = random_state(s)
    step = {"op": op, "to": to}
    s2, grown = apply_plan(s, state, [step], init=BIG)
    check_map(s, state, grown, step_map(s, step))
