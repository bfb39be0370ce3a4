"""The init choice: parsing, random/orthogonal, strict weights loading and spec adoption."""

from __future__ import annotations

import pytest
import torch

from logah.config.errors import ConfigError
from logah.config.model import resolve_spec
from logah.config.specs import get_preset
from logah.lit.init import (
    InitChoice,
    build_target,
    model_config_for,
    parse_init,
    resolve_init_spec,
)
from logah.nn import build_model
from logah.nn.io import WeightsError, save_weights

GPT = get_preset("gpt2-tiny").replace(vocab_size=50, n_ctx=16, n_layer=1)
VIT = get_preset("vit-tiny").replace(n_layer=1, num_classes=7)


def test_parse_init(tmp_path):
    assert parse_init("random") == InitChoice("random")
    assert parse_init("orthogonal") == InitChoice("orthogonal")
    assert parse_init(f"weights:{tmp_path}") == InitChoice("weights", tmp_path)
    for bad, msg in [("xavier", "is not one of"), ("weights:", "needs a path"),
                     (f"weights:{tmp_path}/none", "no such file")]:
        with pytest.raises(ConfigError, match=f"init: .*{msg}|{msg}"):
            parse_init(bad)


def test_random_is_seeded_and_orthogonal_is_orthogonal():
    a = build_target(GPT, InitChoice("random"), seed=3)
    b = build_target(GPT, InitChoice("random"), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    o = build_target(GPT, InitChoice("orthogonal"), seed=3)
    w = o.blocks[0].mlp.fc.weight  # (d_mlp, d_model): orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1]), atol=1e-5)


@pytest.mark.parametrize("spec", [GPT, VIT], ids=["gpt2", "vit"])
@pytest.mark.parametrize("form", ["dir", "file", "hf"])
def test_weights_round_trip_reproduces_logits(tmp_path, spec, form):
    src = build_model(spec, seed=7)
    out = save_weights(src.state_dict(), spec, tmp_path / "w", hf=form == "hf")
    path = {"dir": out, "file": out / "model.safetensors", "hf": out / "hf"}[form]
    init = parse_init(f"weights:{path}")
    assert resolve_init_spec(spec, init, model_given=True) == spec
    model = build_target(spec, init, seed=0)
    x = (torch.randint(0, spec.vocab_size, (2, 16)) if spec.family == "gpt2"
         else torch.randn(2, spec.in_chans, spec.image_size, spec.image_size))
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_wrong_shape_lists_the_tensors(tmp_path):
    from safetensors.torch import save_file

    state = build_model(GPT, seed=0).state_dict()
    state["blocks.0.attn.q.weight"] = torch.zeros(3, 3)
    del state["ln_f.bias"]
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError) as e:
        build_target(GPT, parse_init(f"weights:{tmp_path / 'w.safetensors'}"), seed=0)
    msg = str(e.value)
    assert "missing ln_f.bias" in msg and "blocks.0.attn.q.weight: shape [3, 3]" in msg


def test_a_different_recorded_spec_is_adopted_or_refused(tmp_path):
    grown = GPT.replace(d_mlp=96, n_layer=2)
    save_weights(build_model(grown, seed=0).state_dict(), grown, tmp_path / "w", hf=False)
    init = parse_init(f"weights:{tmp_path / 'w'}")
    assert resolve_init_spec(GPT, init, model_given=False) == grown
    with pytest.raises(ConfigError, match=r"n_layer: 1 != 2; d_mlp: 256 != 96"):
        resolve_init_spec(GPT, init, model_given=True)
    # The adopted spec is written back as an explicit model config that resolves to it.
    assert resolve_spec(model_config_for(grown)) == grown
    assert resolve_spec(model_config_for(VIT)) == VIT
