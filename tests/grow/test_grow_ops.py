"""Each growth operator alone: exact (float64, <= 1e-10), must-be-zero entries exactly zero and
necessary (negative controls), shapes / parameter counts, purity, seeding, history."""

from __future__ import annotations

import math

import pytest
import torch
from growkit import (
    BIG,
    SPECS,
    TOL,
    assert_exact,
    break_zero_rule,
    grow_case,
    inputs,
    logits,
    max_diff,
    model_of,
    random_state,
)

from logah.grow import OPS, GrowError, add_layers, expand_hidden
from logah.nn import count_params
from logah.nn.io import WeightsError

# op -> target value for a spec
TARGETS = {
    "d_mlp": lambda s: s.d_mlp + 13,
    "n_heads": lambda s: s.n_heads + 2,
    "d_v": lambda s: s.d_v + 3,
    "d_qk": lambda s: s.d_qk + 5,
    "d_model": lambda s: s.d_model + 5,
    "n_layer": lambda s: s.n_layer + 2,
    "n_ctx": lambda s: s.n_ctx + 3,
}
CASES = [(f, op) for f in SPECS for op in TARGETS if not (op == "n_ctx" and f == "vit")]
IDS = [f"{f}-{op}" for f, op in CASES]


def _cols(n_groups: int, old: int, new: int) -> list[int]:
    """Indices of the inserted entries when each of n_groups blocks grows old -> new."""
    return [g * new + j for g in range(n_groups) for j in range(old, new)]


def zero_entries(op: str, s, s2) -> list[tuple[str, tuple]]:
    """(tensor, index) of every entry the op's rule says must be exactly zero."""
    all_ = slice(None)
    L = range(s.n_layer)
    if op == "d_mlp":
        return [(f"blocks.{i}.mlp.proj.weight", (all_, slice(s.d_mlp, None))) for i in L]
    if op == "n_heads":
        return [(f"blocks.{i}.attn.proj.weight", (all_, slice(s.n_heads * s.d_v, None))) for i in L]
    if op == "d_v":
        cols = _cols(s.n_heads, s.d_v, s2.d_v)
        return [(f"blocks.{i}.attn.proj.weight", (all_, cols)) for i in L]
    if op == "d_qk":
        rows = _cols(s.n_heads, s.d_qk, s2.d_qk)
        return [(f"blocks.{i}.attn.k.{w}", (rows,)) for i in L for w in ("weight", "bias")]
    if op == "d_model":
        lns = [f"blocks.{i}.{ln}" for i in L for ln in ("ln_1", "ln_2")] + ["ln_f"]
        return [(f"{ln}.bias", (slice(s.d_model, None),)) for ln in lns]
    if op == "n_layer":
        new = s2.growth[-1]["args"]["positions"]
        return [(f"blocks.{j}.{w}", ()) for j in new
                for w in ("attn.proj.weight", "attn.proj.bias", "mlp.proj.weight", "mlp.proj.bias")]
    return []


def _grow(family: str, op: str, seed: int = 1):
    return grow_case(SPECS[family], op, TARGETS[op](SPECS[family]), seed)


@pytest.mark.parametrize("family,op", CASES, ids=IDS)
def test_op_preserves_the_function_exactly(family, op):
    s, state, s2, state2 = _grow(family, op)
    assert_exact(s, state, s2, state2, zero_entries(op, s, s2))
    assert getattr(s2, op) == TARGETS[op](s)
    step = s2.growth[-1]
    assert (step["op"], step["args"]["to"], step["source"]["d_model"]) == (op, getattr(s2, op), 16)


@pytest.mark.parametrize("family,op", [c for c in CASES if c[1] != "n_ctx"],
                         ids=[i for c, i in zip(CASES, IDS) if c[1] != "n_ctx"])
def test_negative_control_breaking_the_zero_rule_changes_the_output(family, op):
    s, state, s2, state2 = _grow(family, op)
    assert break_zero_rule(s, state, s2, state2, zero_entries(op, s, s2)[0]) > 1e-6


def test_param_count_deltas_match_closed_forms():
    s = SPECS["gpt2-untied"]
    h, E, k, v, p, L, V, T = (s.d_model, s.n_heads, s.d_qk, s.d_v, s.d_mlp, s.n_layer,
                              s.vocab_size, s.n_ctx)
    block = 4 * h + (2 * E * k + E * v) * (h + 1) + (E * v + 1) * h + (h + 1) * p + (p + 1) * h
    expected = {
        "d_mlp": L * 13 * (2 * h + 1),
        "n_heads": L * (2 * ((2 * k + v) * (h + 1)) + 2 * h * v),
        "d_v": L * (E * 3 * (h + 1) + h * E * 3),
        "d_qk": L * 2 * E * 5 * (h + 1),
        "d_model": 5 * (L * (4 + 2 * E * k + E * v + E * v + 1 + p + p + 1) + V + T + 2 + V),
        "n_layer": 2 * block,
        "n_ctx": 3 * h,
    }
    for op, delta in expected.items():
        s2, _ = OPS[op](s, random_state(s), TARGETS[op](s), init=BIG)
        assert count_params(s2) - count_params(s) == delta, op


@pytest.mark.parametrize("op", list(TARGETS))
def test_ops_are_pure_and_seeded(op):
    s = SPECS["gpt2-untied"]
    state = random_state(s)
    before = {n: t.clone() for n, t in state.items()}
    a_spec, a = OPS[op](s, state, TARGETS[op](s), seed=3, init=BIG)
    assert s.growth == () and state.keys() == before.keys()
    assert all(torch.equal(state[n], before[n]) for n in state)  # inputs untouched
    _, b = OPS[op](s, state, TARGETS[op](s), seed=3, init=BIG)
    _, c = OPS[op](s, state, TARGETS[op](s), seed=4, init=BIG)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)  # the free entries follow the seed
    assert a_spec.growth[-1]["seed"] == 3 and a_spec.growth[-1]["init"]["std"] == 3.0
    same_spec, same = OPS[op](s, state, getattr(s, op))  # growing to the same value: no-op
    assert same_spec == s and same_spec.growth == () and same.keys() == state.keys()


@pytest.mark.parametrize("op", list(TARGETS))
def test_shrinking_and_bad_input_are_one_line_errors(op):
    s = SPECS["gpt2-tied"]
    with pytest.raises(GrowError, match=f"{op}: cannot shrink"):
        OPS[op](s, random_state(s), getattr(s, op) - 1)
    bad = random_state(s)
    bad.pop("ln_f.bias")
    with pytest.raises(WeightsError, match=r"grow .*missing ln_f.bias"):
        OPS[op](s, bad, TARGETS[op](s))


def test_attention_expansion_needs_the_key_rescale():
    s, state, s2, state2 = _grow("gpt2-untied", "d_qk")
    x = inputs(s)
    unscaled = dict(state2)
    c = math.sqrt(s2.d_qk / s.d_qk)
    for i in range(s.n_layer):
        for w in ("weight", "bias"):
            unscaled[f"blocks.{i}.attn.k.{w}"] = state2[f"blocks.{i}.attn.k.{w}"] / c
    assert max_diff(logits(s2, unscaled, x), logits(s, state, x)) > 1e-6


def test_heads_expansion_inserts_per_head_appending_breaks():
    s, state, s2, state2 = _grow("vit", "d_v")
    x = inputs(s)
    appended = dict(state2)
    for i in range(s.n_layer):
        pw = state[f"blocks.{i}.attn.proj.weight"]  # old (h, E*v): zeros appended at the end
        appended[f"blocks.{i}.attn.proj.weight"] = torch.cat(
            [pw, torch.zeros(s.d_model, s.n_heads * (s2.d_v - s.d_v))], dim=1)
    assert max_diff(logits(s2, appended, x), logits(s, state, x)) > 1e-6


@pytest.mark.parametrize("family", list(SPECS))
def test_hidden_expansion_controls_zero_padding_and_unscaled_eps_fail(family):
    s, state, s2, state2 = _grow(family, "d_model")
    x = inputs(s)
    y0 = logits(s, state, x)
    zero_padded = dict(state2)  # the paper's RMSNorm rule: writers' new columns = 0
    for name in ("wpe.weight", "pos_embed", "cls_token"):
        if name in state:
            zero_padded[name] = torch.cat(
                [state[name], torch.zeros(*state[name].shape[:-1], s2.d_model - s.d_model)], -1)
    assert max_diff(logits(s2, zero_padded, x), y0) > 1e-3
    # forgetting eps * h/h' gives a small but real error, far above float64 noise
    assert max_diff(logits(s2.replace(ln_eps=s.ln_eps), state2, x), y0) > 1e3 * TOL
    assert s2.ln_eps == pytest.approx(s.ln_eps * s.d_model / s2.d_model, rel=1e-15)


@pytest.mark.parametrize("family", ["gpt2-tied", "vit"])
def test_hidden_expansion_keeps_the_residual_stream_mean_padded(family):
    """After every block the residual is [x | mu(x)]: old entries equal the old model's."""
    s, state, s2, state2 = _grow(family, "d_model")
    x = inputs(s)
    seen: dict[str, list[torch.Tensor]] = {"old": [], "new": []}
    for key, spec, st in (("old", s, state), ("new", s2, state2)):
        model = model_of(spec, st)
        for blk in model.blocks:
            blk.register_forward_hook(lambda m, i, o, key=key: seen[key].append(o))
        with torch.no_grad():
            model(x)
    for old, new in zip(seen["old"], seen["new"], strict=True):
        h = s.d_model
        assert max_diff(new[..., :h], old) <= TOL
        mu = old.mean(-1, keepdim=True).expand(*old.shape[:-1], s2.d_model - h)
        assert max_diff(new[..., h:], mu) <= TOL


@pytest.mark.parametrize("positions", [[0], [1], [2], [0, 3], [2, 3]])
def test_layer_addition_at_any_position_adds_exact_identity_blocks(positions):
    s = SPECS["gpt2-untied"]
    state = random_state(s)
    s2, state2 = add_layers(s, state, s.n_layer + len(positions), positions, init=BIG)
    assert s2.growth[-1]["args"]["positions"] == positions
    model = model_of(s2, state2)
    pairs = []
    for j in positions:
        model.blocks[j].register_forward_hook(lambda m, i, o: pairs.append((i[0], o)))
    x = inputs(s)
    with torch.no_grad():
        y = model(x)
    assert len(pairs) == len(positions) and all(torch.equal(i, o) for i, o in pairs)
    assert max_diff(y, logits(s, state, x)) <= TOL
    old_at = [j for j in range(s2.n_layer) if j not in positions]
    for i, j in enumerate(old_at):  # old blocks keep their order and values
        assert torch.equal(state2[f"blocks.{j}.mlp.fc.weight"], state[f"blocks.{i}.mlp.fc.weight"])


@pytest.mark.parametrize("positions", [[3], [0, 0], [1]])
def test_layer_addition_rejects_bad_positions(positions):
    s = SPECS["gpt2-tied"]
    with pytest.raises(GrowError, match="positions"):
        add_layers(s, random_state(s), s.n_layer + 2 if positions == [1] else 3, positions)


def test_hidden_expansion_of_a_float32_state_stays_float32_and_close():
    s = SPECS["vit"]
    state = {n: t.float() for n, t in random_state(s).items()}
    s2, state2 = expand_hidden(s, state, 24, init=BIG)
    assert {t.dtype for t in state2.values()} == {torch.float32}
    x = inputs(s).float()
    with torch.no_grad():
        y0, y1 = model_of(s, state)(x), model_of(s2, state2)(x)
    torch.testing.assert_close(y1, y0)  # float32 defaults (~1e-5)
