"""Plans: derived from target dims only, reaching the target exactly; YAML plans; ``--to``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from growkit import BIG, SPECS, TOL, inputs, logits, max_diff, random_state

from logah.config import ConfigError, get_preset
from logah.config.grow import GrowInit, load_plan
from logah.grow import (
    GrowError,
    apply_plan,
    grow,
    plan_growth,
    resolve_target,
    same_dims,
    spread_positions,
)
from logah.nn import build_model

CONF = Path(__file__).resolve().parents[2] / "conf" / "grow"

TARGETS = [
    ("gpt2-tied", {"n_layer": 5, "d_model": 24, "n_heads": 3, "d_qk": 9, "d_v": 10, "d_mlp": 70,
                   "n_ctx": 9}),
    ("gpt2-untied", {"n_layer": 3, "d_model": 20, "d_mlp": 64}),
    ("vit", {"n_layer": 4, "d_model": 21, "n_heads": 4, "d_qk": 8, "d_v": 11, "d_mlp": 80}),
    ("vit", {"n_heads": 3}),
]


@pytest.mark.parametrize("family,dims", TARGETS, ids=[f"{f}-{sorted(d)}" for f, d in TARGETS])
def test_derived_plan_reaches_the_target_exactly_and_preserves_the_function(family, dims):
    s = SPECS[family]
    target = s.replace(**dims)
    steps = plan_growth(s, target)
    assert [st["op"] for st in steps] == [op for op in
                                          ("n_ctx", "d_mlp", "n_heads", "d_v", "d_qk", "d_model",
                                           "n_layer") if op in dims and dims[op] != getattr(s, op)]
    state = random_state(s)
    s2, state2 = apply_plan(s, state, steps, init=BIG)
    assert same_dims(s2, target) and len(s2.growth) == len(steps)
    assert s2.replace(ln_eps=target.ln_eps, growth=()) == target
    assert s2.ln_eps == pytest.approx(s.ln_eps * s.d_model / target.d_model, rel=1e-15)
    x = inputs(s)
    assert max_diff(logits(s2, state2, x), logits(s, state, x)) <= TOL
    s3, _ = grow(s, state, target, init=BIG)  # the one-call form
    assert s3 == s2


def test_preset_plans_and_identity():
    tiny, mini = get_preset("gpt2-tiny"), get_preset("gpt2-mini")
    assert plan_growth(tiny, mini) == [
        {"op": "n_ctx", "to": 256}, {"op": "d_mlp", "to": 512}, {"op": "d_v", "to": 32},
        {"op": "d_qk", "to": 32}, {"op": "d_model", "to": 128},
        {"op": "n_layer", "to": 4, "positions": [1, 3]},
    ]
    assert [s["op"] for s in plan_growth(get_preset("vit-tiny"), get_preset("vit-mini"))] == [
        "d_mlp", "d_v", "d_qk", "d_model", "n_layer"]
    assert plan_growth(tiny, tiny) == []


@pytest.mark.parametrize("n_old,n_new,expected", [
    (2, 2, [1, 3]), (2, 1, [2]), (2, 4, [1, 2, 4, 5]), (4, 2, [2, 5]), (3, 1, [3]), (3, 2, [2, 4]),
])
def test_spread_positions(n_old, n_new, expected):
    assert spread_positions(n_old, n_new) == expected


@pytest.mark.parametrize("target,match", [
    (get_preset("vit-tiny"), "target family 'vit' != source family 'gpt2'"),
    (get_preset("gpt2-tiny").replace(vocab_size=100), "vocab_size: growth keeps it fixed"),
    (get_preset("gpt2-tiny").replace(tie_embeddings=False), "tie_embeddings: growth keeps"),
    (get_preset("gpt2-tiny").replace(n_layer=1), r"target would shrink n_layer 2 -> 1"),
    (get_preset("gpt2-tiny").replace(n_heads=8, d_qk=8, d_v=8),
     r"shrink d_v 16 -> 8, d_qk 16 -> 8 \(per-head widths d_qk/d_v cannot shrink: with more heads"),
])
def test_impossible_targets_are_one_line_errors(target, match):
    with pytest.raises(GrowError, match=match):
        plan_growth(get_preset("gpt2-tiny"), target)


def test_vit_fixed_fields():
    with pytest.raises(GrowError, match="num_classes: growth keeps it fixed"):
        plan_growth(get_preset("vit-tiny"), get_preset("vit-tiny").replace(num_classes=100))


def test_resolve_target_presets_and_dims():
    tiny = get_preset("gpt2-tiny")
    assert resolve_target(tiny, "gpt2-mini") == get_preset("gpt2-mini")
    wide = resolve_target(tiny, "n_layer=4, d_model=128")  # re-ties d_qk/d_v/d_mlp like model.*
    assert (wide.n_layer, wide.d_model, wide.d_qk, wide.d_v, wide.d_mlp, wide.n_ctx) == (
        4, 128, 32, 32, 512, 128)
    assert resolve_target(tiny, "model.d_mlp=300").d_mlp == 300
    more_heads = resolve_target(tiny, "n_heads=8,d_model=128")
    assert (more_heads.d_qk, more_heads.d_v) == (16, 16)


@pytest.mark.parametrize("to,match", [
    ("gpt9", "--to: 'gpt9' is neither a preset"),
    ("n_layer=x", "--to: n_layer"),
    ("foo=3", "--to: foo: unknown key"),
    ("arch=gpt2-mini", "--to: arch is not a dim"),
    ("n_heads=5,d_model=128", "model.d_model: 128 is not divisible by model.n_heads=5"),
])
def test_resolve_target_errors(to, match):
    with pytest.raises(ConfigError, match=match):
        resolve_target(get_preset("gpt2-tiny"), to)


def test_yaml_plans_list_and_mapping_forms(tmp_path):
    s = SPECS["gpt2-tied"]
    (tmp_path / "list.yaml").write_text(
        "- {op: d_mlp, to: 80}\n- {op: n_layer, to: 3, positions: 0}\n")
    (tmp_path / "map.yaml").write_text(
        "seed: 4\ninit: {std: 3.0, bias_std: 3.0}\nsteps:\n  - {op: d_mlp, to: 80}\n"
        "  - {op: n_layer, to: 3, positions: [0]}\n")
    a, b = load_plan(tmp_path / "list.yaml"), load_plan(tmp_path / "map.yaml")
    assert a.seed == 0 and a.init == GrowInit() and a.steps == b.steps
    assert b.seed == 4 and b.init == GrowInit(std=3.0, bias_std=3.0)
    state = random_state(s)
    s2, st2 = apply_plan(s, state, b.steps, seed=b.seed, init=b.init)
    s3, st3 = apply_plan(s, state, [{"op": "d_mlp", "to": 80},
                                    {"op": "n_layer", "to": 3, "positions": [0]}],
                         seed=4, init=GrowInit(std=3.0, bias_std=3.0))
    assert s2 == s3 and all(torch.equal(st2[n], st3[n]) for n in st2)
    assert s2.growth[1]["args"]["positions"] == [0]


@pytest.mark.parametrize("text,match", [
    ("- {op: d_foo, to: 3}\n", r"steps\[0\].op: 'd_foo' is not one of"),
    ("- {op: d_mlp, to: 3}\n- {op: d_mlp, to: big}\n", r"steps\[1\].to: expected an integer"),
    ("- {op: d_mlp, to: 3, positions: [1]}\n", r"steps\[0\].positions: only an n_layer step"),
    ("- {op: d_mlp, to: 3, where: 1}\n", r"steps\[0\]: unknown key\(s\) \['where'\]"),
    ("- d_mlp\n", r"steps\[0\]: expected a mapping"),
    ("init: {stdev: 1}\nsteps: []\n", "init.stdev: unknown key"),
    ("steps: {op: d_mlp}\n", "expected a list of steps"),
    ("- {op: [\n", "cannot parse"),
])
def test_bad_yaml_plans_are_one_line_errors(tmp_path, text, match):
    p = tmp_path / "plan.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_plan(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_apply_plan_names_the_failing_step():
    s = SPECS["gpt2-tied"]
    match = r"steps\[1\] \(d_model -> 8\): d_model: cannot shrink 16 -> 8"
    with pytest.raises(GrowError, match=match):
        apply_plan(s, random_state(s), [{"op": "d_mlp", "to": 80}, {"op": "d_model", "to": 8}])


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_example_plans_reach_their_targets(path):
    """conf/grow/<source>-to-<target>.yaml reaches <target>'s dims; others start at the named
    tiny preset and stay exact."""
    name = path.stem
    src = get_preset("vit-tiny" if name.startswith("vit") else "gpt2-tiny")
    plan = load_plan(path)
    model = build_model(src, seed=0, dtype=torch.float64).eval()
    state = model.state_dict()
    s2, state2 = apply_plan(src, state, plan.steps, seed=plan.seed, init=plan.init)
    if "-to-" in name:
        assert same_dims(s2, get_preset(f"{src.family}-{name.split('-to-')[1]}"))
    x = inputs(src, batch=1, T=16)
    assert max_diff(logits(s2, state2, x), logits(src, state, x)) <= TOL
