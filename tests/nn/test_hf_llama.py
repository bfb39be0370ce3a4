"""Hugging Face ``LlamaForCausalLM`` parity: logits both ways, exact round trips, offline
``from_pretrained`` of our exports, sharded directories, and clear errors for what HF cannot hold."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from logah.config import llama_spec
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
from logah.nn.io import load_state, save_weights

SPECS = [
    llama_spec(1, 32, 2, 2, 48, vocab_size=50, n_ctx=16),  # MHA, tied
    llama_spec(2, 48, 4, 2, 100, vocab_size=61, n_ctx=16, tie_embeddings=False),  # GQA, untied
    llama_spec(2, 64, 8, 1, 96, vocab_size=97, n_ctx=24, ln_eps=1e-6, rope_base=500000.0),  # MQA
    # head_dim free of d_model (as Gemma / Qwen3 style configs): 4 heads of 12 in a 32-wide model
    llama_spec(1, 32, 4, 2, 40, vocab_size=29, n_ctx=12, head_dim=12, tie_embeddings=False),
    # Llama 3.1/3.2's "llama3" rotary scaling (original context 8 so every band is exercised)
    llama_spec(2, 48, 4, 2, 100, vocab_size=61, n_ctx=16, rope_base=500000.0,
               rope_scaling=(32.0, 1.0, 4.0, 8.0)),
]


def _ids(spec) -> str:
    tied = "tied" if spec.tie_embeddings else "untied"
    rope = "-llama3" if spec.rope_scaling else ""
    return (f"L{spec.n_layer}-D{spec.d_model}-H{spec.n_heads}-KV{spec.kv_heads}-hd{spec.d_qk}-"
            f"{tied}{rope}")


def _idx(spec, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, spec.vocab_size, (batch, spec.n_ctx),
                         generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_export_loads_with_from_pretrained_and_matches_logits(spec, tmp_path, transformers,
                                                              randomize):
    ours = randomize(build_model(spec, seed=0)).eval()
    out = export_hf(spec, ours.state_dict(), tmp_path / "hf")
    hf, info = transformers.LlamaForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    hf.eval()
    assert (hf.config.num_key_value_heads, hf.config.head_dim) == (spec.kv_heads, spec.d_qk)
    x = _idx(spec)
    with torch.no_grad():
        ref, got = ours(x), hf(x).logits
    assert ref.abs().max() > 1.0
    assert (got - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_hf_random_model_converts_to_ours_with_same_logits(spec, transformers):
    torch.manual_seed(0)
    cfg = hf_config(spec)
    cfg.initializer_range = 0.2
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # HF inits RMSNorm gains to 1: make them non-trivial too
        for n, p in hf.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    spec2, state = from_hf_state_dict(hf.config, hf.state_dict())
    assert spec2 == spec
    ours = build_model(spec, "meta")
    ours = ours.to_empty(device="cpu")
    ours.load_state_dict(state, strict=True)
    x = _idx(spec)
    with torch.no_grad():
        assert (ours.eval()(x) - hf(x).logits).abs().max().item() <= 1e-5


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_round_trip_ours_hf_ours_is_exact(spec, randomize):
    state = randomize(build_model(spec, seed=0)).state_dict()
    hf_state = to_hf_state_dict(spec, state)
    assert ("lm_head.weight" in hf_state) == (not spec.tie_embeddings)
    spec2, back = from_hf_state_dict(hf_config_dict(spec), hf_state)
    assert spec2 == spec and back.keys() == state.keys()
    assert all(torch.equal(back[n], state[n]) for n in state)


def test_our_names_equal_what_save_pretrained_writes(tmp_path, transformers):
    spec = SPECS[1]
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(hf_config(spec))
    hf.save_pretrained(tmp_path)
    on_disk = load_file(tmp_path / "model.safetensors")
    ours = to_hf_state_dict(spec, from_hf_state_dict(hf.config, hf.state_dict())[1])
    assert ours.keys() == on_disk.keys()
    assert all(torch.equal(ours[n], on_disk[n]) for n in ours)
    spec2, _ = load_hf_dir(tmp_path)  # HF's own full config.json
    assert spec2 == spec


def test_sharded_hf_dir_loads(tmp_path, transformers):
    spec = SPECS[2]
    hf = transformers.LlamaForCausalLM(hf_config(spec))
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    spec2, state = load_hf_dir(tmp_path)
    ref = from_hf_state_dict(hf.config, hf.state_dict())[1]
    assert spec2 == spec and all(torch.equal(state[n], ref[n]) for n in ref)
    assert load_state(tmp_path).keys() == ref.keys()


@pytest.mark.parametrize("changes,text", [
    ({"d_v": 24}, "d_qk=12 != d_v=24"),
    ({"d_qk": 24, "d_v": 24, "rope_dims": (12, 24)}, "rope_dims=[12, 24]"),
])
def test_non_standard_llama_gives_a_clear_export_error_and_still_saves(changes, text, tmp_path,
                                                                        randomize):
    spec = SPECS[1].replace(**changes)
    model = randomize(build_model(spec, seed=0)).eval()
    state = model.state_dict()
    for call in (lambda: export_hf(spec, state, tmp_path / "hf"), lambda: hf_config(spec),
                 lambda: save_weights(state, spec, tmp_path / "w", hf=True)):
        with pytest.raises(HFConversionError, match=text.replace("[", r"\[")) as e:
            call()
        assert "\n" not in str(e.value) and "LlamaForCausalLM" in str(e.value)
    assert not (tmp_path / "hf").exists() and not (tmp_path / "w").exists()
    save_weights(state, spec, tmp_path / "w")  # logah's own format: exact
    assert not (tmp_path / "w" / "hf").exists()
    back = load_state(tmp_path / "w")
    assert all(torch.equal(back[n], state[n]) for n in state)


@pytest.mark.parametrize("changes,text", [
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"attention_bias": True}, "attention_bias=True"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}},
     "rope_type='yarn'"),
])
def test_unsupported_hf_llama_configs_are_rejected(changes, text):
    spec = SPECS[0]
    state = to_hf_state_dict(spec, build_model(spec, seed=0).state_dict())
    with pytest.raises(HFConversionError, match=text):
        from_hf_state_dict({**hf_config_dict(spec), **changes}, state)


def test_transformers_4_style_config_with_top_level_rope_theta_imports():
    spec = SPECS[2]
    cfg = hf_config_dict(spec)
    del cfg["rope_parameters"]
    state = to_hf_state_dict(spec, build_model(spec, seed=0).state_dict())
    assert from_hf_state_dict(cfg, state)[0].rope_base == 500000.0
