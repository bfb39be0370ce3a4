"""Random compositions of all six operators stay exact; grown models train (every new entry
gets a gradient, symmetry broken)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from growkit import BIG, SPECS, TOL, inputs, logits, max_diff, model_of, random_state

from logah.config.grow import GrowInit
from logah.grow import OPS, apply_plan

SIX = ("d_mlp", "n_heads", "d_v", "d_qk", "d_model", "n_layer")
TARGETS = {"d_mlp": lambda s: s.d_mlp + 5, "n_heads": lambda s: s.n_heads + 1,
           "d_v": lambda s: s.d_v + 2, "d_qk": lambda s: s.d_qk + 2,
           "d_model": lambda s: s.d_model + 3, "n_layer": lambda s: s.n_layer + 1}


def random_plan(spec, seed: int) -> list[dict]:
    """All six ops (n_ctx too for GPT-2) in a random order, some twice, random amounts/positions."""
    rng = random.Random(seed)
    ops = list(SIX) + rng.sample(SIX, 2) + (["n_ctx"] if spec.family == "gpt2" else [])
    rng.shuffle(ops)
    dims = {op: getattr(spec, op) for op in ops}
    steps = []
    for op in ops:
        n_new = rng.randint(1, 4) if op != "n_layer" else rng.randint(1, 2)
        dims[op] += n_new
        step = {"op": op, "to": dims[op]}
        if op == "n_layer" and rng.random() < 0.5:
            step["positions"] = sorted(rng.sample(range(dims[op]), n_new))
        steps.append(step)
    return steps


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_compositions_of_all_six_are_exact(family, seed):
    s = SPECS[family]
    state = random_state(s, seed)
    steps = random_plan(s, seed)
    s2, state2 = apply_plan(s, state, steps, seed=seed, init=BIG)
    x = inputs(s, seed)  # GPT-2: full old context (new positions are beyond it)
    assert max_diff(logits(s2, state2, x), logits(s, state, x)) <= TOL
    assert [g["op"] for g in s2.growth] == [st["op"] for st in steps]
    # the recorded history replays step by step to the same weights
    spec_r, state_r = s, state
    for step in s2.growth:
        kw = {"positions": step["args"]["positions"]} if "positions" in step["args"] else {}
        spec_r, state_r = OPS[step["op"]](spec_r, state_r, step["args"]["to"], seed=step["seed"],
                                          init=GrowInit(**step["init"]), **kw)
    assert spec_r == s2 and all(torch.equal(state_r[n], state2[n]) for n in state2)


def test_two_orders_reach_the_same_dims_and_both_are_exact():
    s = SPECS["gpt2-tied"]
    state = random_state(s)
    steps = [{"op": "d_model", "to": 20}, {"op": "n_heads", "to": 3}, {"op": "d_qk", "to": 10},
             {"op": "d_v", "to": 9}, {"op": "d_mlp", "to": 70}, {"op": "n_layer", "to": 3}]
    a, sa = apply_plan(s, state, steps, init=BIG)
    b, sb = apply_plan(s, state, steps[::-1], init=BIG)
    assert a == b and a.ln_eps == pytest.approx(b.ln_eps)
    x = inputs(s)
    y0 = logits(s, state, x)
    assert max_diff(logits(a, sa, x), y0) <= TOL and max_diff(logits(b, sb, x), y0) <= TOL


# ---- trainability ---------------------------------------------------------------------------
TEXT = ("the quick brown fox jumps over the lazy dog while a cat naps in the sun and the dog "
        "barks at the fox who runs into the woods")


def realish_batch(spec) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-2: character tokens of English text (next-token targets); ViT: oriented sinusoid
    gratings whose orientation is the class, plus noise."""
    gen = torch.Generator().manual_seed(0)
    if spec.family == "gpt2":
        ids = torch.tensor([ord(c) % spec.vocab_size for c in TEXT])
        T = spec.n_ctx
        starts = range(0, len(ids) - T - 1, 7)
        x = torch.stack([ids[i:i + T] for i in starts])
        y = torch.stack([ids[i + 1:i + T + 1] for i in starts])
        return x, y
    n, size = 10, spec.image_size
    y = torch.arange(n) % spec.num_classes
    ang = y.double()[:, None, None] * torch.pi / spec.num_classes
    u, v = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                          torch.arange(size, dtype=torch.float64), indexing="ij")
    img = torch.sin(0.9 * (torch.cos(ang) * u + torch.sin(ang) * v))
    x = img[:, None].expand(n, spec.in_chans, size, size)
    return x + 0.1 * torch.randn(x.shape, generator=gen), y


def loss_of(model, spec, batch) -> torch.Tensor:
    x, y = batch
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def grown(family: str, init: GrowInit):
    s = SPECS[family]
    state = random_state(s)
    s2, state2 = apply_plan(s, state, random_plan(s, 5), seed=5, init=init)
    model = model_of(s2, {n: t.clone() for n, t in state2.items()})
    return s2, state2, model


# Softmax ignores a shift common to all keys, so d loss / d attn.k.bias is identically 0 (in any
# attention, old or new entries alike): it is left out of the gradient checks.
def _checked(name: str) -> bool:
    return not name.endswith("attn.k.bias")


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("op", SIX)
def test_must_be_zero_entries_get_gradients_in_the_first_backward(family, op):
    """One op at a time (in a composition, zeros downstream of other zeros, e.g. the K rows of a
    brand-new layer, wait one step for the writers to move: the next test covers that)."""
    s = SPECS[family]
    # Free entries non-zero (so the only zeros are the rule's), but not so large that GELU units
    # saturate to exactly 0 (dead units legitimately get no gradient).
    s2, state2 = OPS[op](s, random_state(s), TARGETS[op](s), init=GrowInit(0.3, 0.3, 0.3))
    model = model_of(s2, {n: t.clone() for n, t in state2.items()})
    loss_of(model, s2, realish_batch(s2)).backward()
    n_zero = 0
    for name, p in model.named_parameters():
        zero = state2[name] == 0
        if _checked(name) and zero.any():
            n_zero += int(zero.sum())
            assert (p.grad[zero].abs() > 1e-12).all(), name
    assert n_zero >= 10


@pytest.mark.parametrize("family", list(SPECS))
def test_every_entry_gets_a_gradient_after_one_step_and_symmetry_is_broken(family):
    s2, _, model = grown(family, GrowInit())  # the default init users get
    batch = realish_batch(s2)
    loss_of(model, s2, batch).backward()
    with torch.no_grad():  # one plain SGD step (torch.optim's first import costs seconds)
        for p in model.parameters():
            p -= 0.5 * p.grad
            p.grad = None
    loss_of(model, s2, batch).backward()
    for name, p in model.named_parameters():
        if not _checked(name):
            continue
        # units along dim 0 (embedding-like (1, T, D) tensors: along T)
        rows = p.shape[0] if p.shape[0] > 1 or p.ndim == 1 else -1
        g = p.grad.reshape(rows, p.shape[-1] if rows == -1 else -1)
        # exact zeros only: second-order entries (e.g. Q rows meeting K rows that were zero one
        # step ago, in hidden dims that were zero too) are legitimately as small as ~1e-13
        assert (g != 0).all(), f"{name}: {(g == 0).sum()} dead entries"
        for m in (g, g.t()) if p.ndim > 1 else ():
            # no two rows (units) or columns (inputs) receive the same gradient
            d = torch.cdist(m, m, compute_mode="donot_use_mm_for_euclid_dist")
            assert (d + torch.eye(m.shape[0])).min() > 0, f"{name}: units with equal gradients"
