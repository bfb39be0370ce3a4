"""ModelSpec (de)serialisation and validation; ``resolve_spec`` re-tying dims on overrides."""

from __future__ import annotations

import json

import pytest

from logah.config import PRESETS, ConfigError, ModelSpec, get_preset, gpt2_spec, load_config
from logah.config.model import ModelConfig, resolve_spec


def _resolve(*overrides: str) -> ModelSpec:
    return resolve_spec(load_config(ModelConfig, None, list(overrides)))


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_json(name):
    spec = PRESETS[name]
    assert spec.is_standard
    back = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.key() == spec.key()


def test_growth_history_round_trips_but_is_not_part_of_the_key():
    spec = get_preset("gpt2-tiny").replace(growth=({"op": "width", "d_model": 128},), d_qk=24)
    back = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back.growth == ({"op": "width", "d_model": 128},) and back.d_qk == 24
    assert back.key() == spec.replace(growth=()).key()
    assert not spec.is_standard


def test_from_dict_rejects_unknown_keys():
    d = get_preset("vit-tiny").to_dict() | {"d_modle": 3}
    with pytest.raises(ConfigError, match="d_modle"):
        ModelSpec.from_dict(d)


@pytest.mark.parametrize("changes,key", [
    ({"n_layer": 0}, "model.n_layer"),
    ({"ln_eps": 0.0}, "model.ln_eps"),
    ({"patch_size": 5}, "model.image_size"),
    ({"family": "bert"}, "model.family"),
])
def test_invalid_specs_name_the_field(changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        get_preset("vit-tiny").replace(**changes)


def test_gpt2_spec_accepts_a_layernorm_eps():
    assert gpt2_spec(2, 64, 4, ln_eps=1e-6).ln_eps == 1e-6
    assert gpt2_spec(2, 64, 4).ln_eps == 1e-5


def test_resolve_spec_without_overrides_is_the_preset():
    assert _resolve("arch=vit-small-p4") == get_preset("vit-small-p4")


def test_resolve_spec_reties_head_and_mlp_widths():
    spec = _resolve("arch=gpt2-tiny", "d_model=128")  # preset: 64 wide, 4 heads
    assert (spec.d_model, spec.n_heads, spec.d_qk, spec.d_v, spec.d_mlp) == (128, 4, 32, 32, 512)
    spec = _resolve("arch=gpt2-tiny", "n_heads=8")
    assert (spec.d_qk, spec.d_v, spec.d_mlp) == (8, 8, 256)
    assert spec.is_standard


def test_resolve_spec_keeps_explicit_widths():
    spec = _resolve("arch=gpt2-tiny", "d_model=128", "d_qk=16", "d_mlp=300")
    assert (spec.d_qk, spec.d_v, spec.d_mlp) == (16, 32, 300)  # d_v re-tied on its own
    assert not spec.is_standard
    spec = _resolve("arch=gpt2-tiny", "d_model=96", "d_qk=8", "d_v=40")
    assert (spec.d_qk, spec.d_v, spec.d_mlp) == (8, 40, 384)
    spec = _resolve("arch=gpt2-tiny", "d_qk=8")  # d_model/n_heads unchanged: nothing re-tied
    assert (spec.d_qk, spec.d_v) == (8, 16)
    spec = _resolve("arch=vit-tiny", "num_classes=100", "image_size=64")
    assert (spec.num_classes, spec.n_patches, spec.d_qk) == (100, 256, 16)


def test_resolve_spec_rejects_indivisible_heads():
    msg = r"model\.d_model: 100 is not divisible by model\.n_heads=3"
    with pytest.raises(ConfigError, match=msg):
        _resolve("arch=gpt2-tiny", "d_model=100", "n_heads=3")
