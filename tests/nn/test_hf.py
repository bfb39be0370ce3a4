"""Hugging Face parity: logits, exact round trips, offline ``from_pretrained`` of our exports."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from logah.config import gpt2_spec, vit_spec
from logah.nn import build_model
from logah.nn.hf import (
    HFConversionError,
    export_hf,
    from_hf_state_dict,
    hf_config,
    hf_config_dict,
    load_hf_dir,
    to_hf_state_dict,
)
from logah.nn.io import load_state

GPT2_SPECS = [
    gpt2_spec(1, 32, 2, vocab_size=50, n_ctx=16),
    gpt2_spec(2, 48, 3, vocab_size=61, n_ctx=16, tie_embeddings=False, d_mlp=100),
    gpt2_spec(3, 64, 8, vocab_size=97, n_ctx=24, ln_eps=1e-6),
]
VIT_SPECS = [
    vit_spec(1, 32, 2, image_size=8, patch_size=4, num_classes=5),
    vit_spec(2, 48, 4, image_size=16, patch_size=4, in_chans=1, num_classes=3, d_mlp=96),
    vit_spec(2, 64, 8, image_size=12, patch_size=2, num_classes=10, ln_eps=1e-12),
]
ALL_SPECS = GPT2_SPECS + VIT_SPECS
NON_STANDARD = [
    gpt2_spec(1, 32, 2, vocab_size=50, n_ctx=16).replace(d_qk=8),  # d_qk != d_v
    # n_heads * d_qk != d_model
    vit_spec(1, 32, 2, image_size=8, patch_size=4, num_classes=3).replace(d_qk=8, d_v=8),
]


def _ids(spec) -> str:
    tied = "" if spec.family == "vit" else ("-tied" if spec.tie_embeddings else "-untied")
    return f"{spec.family}-L{spec.n_layer}-D{spec.d_model}-H{spec.n_heads}{tied}"


def _inputs(spec, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if spec.family == "gpt2":
        return torch.randint(0, spec.vocab_size, (batch, spec.n_ctx), generator=gen)
    return torch.randn(batch, spec.in_chans, spec.image_size, spec.image_size, generator=gen)


def _hf_class(tf, spec):
    return tf.GPT2LMHeadModel if spec.family == "gpt2" else tf.ViTForImageClassification


@torch.no_grad()
def _hf_logits(hf_model, spec, x: torch.Tensor) -> torch.Tensor:
    out = hf_model(x) if spec.family == "gpt2" else hf_model(pixel_values=x)
    return out.logits


@torch.no_grad()
def _our_model(spec, state):
    model = build_model(spec, seed=0).eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("spec", ALL_SPECS, ids=_ids)
def test_export_loads_with_from_pretrained_and_matches_logits(
    spec, tmp_path, transformers, randomize
):
    ours = randomize(build_model(spec, seed=0)).eval()
    out = export_hf(spec, ours.state_dict(), tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    hf, info = _hf_class(transformers, spec).from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no missing / unexpected / mismatched keys
    hf.eval()
    x = _inputs(spec)
    with torch.no_grad():
        ref = ours(x)
    assert ref.abs().max() > 1.0  # the weights are not near-trivial
    assert (_hf_logits(hf, spec, x) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("spec", ALL_SPECS, ids=_ids)
def test_hf_random_model_converts_to_ours_with_same_logits(spec, transformers):
    torch.manual_seed(0)
    cfg = hf_config(spec)
    cfg.initializer_range = 0.2  # HF's own init, but large enough for logits to be non-trivial
    hf = _hf_class(transformers, spec)(cfg).eval()
    spec2, state = from_hf_state_dict(hf.config, hf.state_dict())  # transformers 5 in-memory names
    assert spec2 == spec
    x = _inputs(spec)
    ref = _hf_logits(hf, spec, x)
    assert (_our_model(spec, state)(x) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("spec", ALL_SPECS, ids=_ids)
def test_round_trip_ours_hf_ours_is_exact(spec, randomize):
    state = randomize(build_model(spec, seed=0)).state_dict()
    hf_state = to_hf_state_dict(spec, state)
    spec2, back = from_hf_state_dict(hf_config_dict(spec), hf_state)
    assert spec2 == spec
    assert back.keys() == state.keys()
    assert all(torch.equal(back[n], state[n]) for n in state)
    if spec.family == "gpt2":
        assert ("lm_head.weight" in hf_state) == (not spec.tie_embeddings)


@pytest.mark.parametrize("spec", [GPT2_SPECS[1], VIT_SPECS[1]], ids=_ids)
def test_our_hf_names_and_layout_equal_what_save_pretrained_writes(spec, tmp_path, transformers):
    torch.manual_seed(0)
    hf = _hf_class(transformers, spec)(hf_config(spec))
    hf.save_pretrained(tmp_path)
    on_disk = load_file(tmp_path / "model.safetensors")
    ours = to_hf_state_dict(spec, from_hf_state_dict(hf.config, hf.state_dict())[1])
    assert ours.keys() == on_disk.keys()
    assert all(torch.equal(ours[n], on_disk[n]) for n in ours)
    spec2, state = load_hf_dir(tmp_path)  # HF's own directory (with its full config.json)
    assert spec2 == spec and state.keys() == build_model(spec, "meta").state_dict().keys()


def test_gpt2_hf_config_fields(transformers):
    spec = gpt2_spec(2, 48, 3, vocab_size=50257, n_ctx=32, tie_embeddings=False, d_mlp=100)
    cfg = hf_config(spec)
    assert isinstance(cfg, transformers.GPT2Config)
    assert (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_inner, cfg.n_positions, cfg.vocab_size) == (
        48, 2, 3, 100, 32, 50257)
    assert cfg.activation_function == "gelu_new" and cfg.tie_word_embeddings is False
    assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
    assert cfg.eos_token_id == 50256


def test_vit_hf_config_fields(transformers):
    spec = VIT_SPECS[1]
    cfg = hf_config(spec)
    assert isinstance(cfg, transformers.ViTConfig)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size,
            cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.num_labels) == (
        48, 2, 4, 96, 16, 4, 1, 3)
    assert cfg.hidden_act == "gelu" and cfg.qkv_bias and cfg.layer_norm_eps == spec.ln_eps
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.0


@pytest.mark.parametrize("spec", NON_STANDARD, ids=_ids)
def test_non_standard_dims_give_a_clear_error_on_hf_export(spec, tmp_path):
    state = build_model(spec, seed=0).state_dict()
    for call in (lambda: export_hf(spec, state, tmp_path / "hf"), lambda: hf_config(spec),
                 lambda: to_hf_state_dict(spec, state)):
        with pytest.raises(HFConversionError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and f"d_qk={spec.d_qk}" in msg and f"d_v={spec.d_v}" in msg
        assert f"n_heads={spec.n_heads}" in msg and f"d_model={spec.d_model}" in msg
    assert not (tmp_path / "hf").exists()


def test_hf_dir_is_read_by_load_state_and_accepts_old_gpt2_checkpoint_layout(tmp_path, randomize):
    spec = GPT2_SPECS[0]
    state = randomize(build_model(spec, seed=0)).state_dict()
    export_hf(spec, state, tmp_path / "hf")
    loaded = load_state(tmp_path / "hf")
    assert all(torch.equal(loaded[n], state[n]) for n in state) and loaded.keys() == state.keys()
    # The original GPT-2 checkpoints: no "transformer." prefix, causal-mask buffers, .bin file.
    old = {n.removeprefix("transformer."): t for n, t in to_hf_state_dict(spec, state).items()}
    old["h.0.attn.bias"] = torch.ones(1, 1, spec.n_ctx, spec.n_ctx)
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / "pytorch_model.bin")
    (tmp_path / "old" / "config.json").write_text(json.dumps(hf_config_dict(spec)))
    spec2, back = load_hf_dir(tmp_path / "old")
    assert spec2 == spec and all(torch.equal(back[n], state[n]) for n in state)


def test_sharded_hf_dir_loads(tmp_path, transformers):
    spec = VIT_SPECS[2]
    hf = _hf_class(transformers, spec)(hf_config(spec))
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    spec2, state = load_hf_dir(tmp_path)
    ref = from_hf_state_dict(hf.config, hf.state_dict())[1]
    assert spec2 == spec and all(torch.equal(state[n], ref[n]) for n in ref)


def _corrupt(kind: str, hf_state: dict) -> str:
    """Damage an HF GPT-2 state dict; returns the text the error must contain."""
    if kind == "missing":
        del hf_state["transformer.h.0.mlp.c_fc.bias"]
        return "transformer.h.0.mlp.c_fc.bias"
    if kind == "unexpected":
        hf_state["transformer.h.0.attn.rotary.weight"] = torch.zeros(3)
        return "transformer.h.0.attn.rotary.weight"
    hf_state["transformer.h.0.mlp.c_fc.weight"] = torch.zeros(7, 7)
    return "transformer.h.0.mlp.c_fc.weight"


@pytest.mark.parametrize("kind", ["missing", "unexpected", "shape"])
def test_from_hf_rejects_bad_state_dicts_naming_the_tensor(kind):
    spec = GPT2_SPECS[0]
    hf_state = to_hf_state_dict(spec, build_model(spec, seed=0).state_dict())
    name = _corrupt(kind, hf_state)
    with pytest.raises(HFConversionError, match=name.replace(".", r"\.")):
        from_hf_state_dict(hf_config_dict(spec), hf_state)


def test_from_hf_rejects_unsupported_configs():
    spec = GPT2_SPECS[0]
    state = to_hf_state_dict(spec, build_model(spec, seed=0).state_dict())
    cfg = {**hf_config_dict(spec), "activation_function": "relu"}
    with pytest.raises(HFConversionError, match="activation_function='relu'"):
        from_hf_state_dict(cfg, state)
    with pytest.raises(HFConversionError, match="model_type='bert'"):
        from_hf_state_dict({"model_type": "bert"}, state)


def test_missing_transformers_gives_install_hint_but_export_still_works(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    spec = VIT_SPECS[0]
    with pytest.raises(HFConversionError, match=r"pip install 'logah\[hf\]'"):
        hf_config(spec)
    state = build_model(spec, seed=0).state_dict()
    export_hf(spec, state, tmp_path / "hf")  # needs no transformers: config.json is plain JSON
    assert load_hf_dir(tmp_path / "hf")[0] == spec
