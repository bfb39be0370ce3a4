"""Weights on disk: safetensors + logah.json, the optional hf/ export, strict loading."""

from __future__ import annotations

import json

import pytest
import torch

from logah.config import gpt2_spec, vit_spec
from logah.nn import build_model
from logah.nn.hf import HFConversionError
from logah.nn.io import (
    HF_DIR,
    WeightsError,
    check_state,
    load_into,
    load_state,
    read_spec,
    save_weights,
)

STANDARD = vit_spec(1, 32, 2, image_size=8, patch_size=4, num_classes=3)
NON_STANDARD = gpt2_spec(1, 32, 2, vocab_size=40, n_ctx=8).replace(d_qk=8, d_v=24)


def _listing(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_standard_spec_saves_logah_and_hf_dirs_that_load_back_exactly(tmp_path):
    model = build_model(STANDARD, seed=0)
    state = model.state_dict()
    out = save_weights(state, STANDARD, tmp_path / "w", extra={"source": "test"})
    assert _listing(out) == ["hf", "hf/config.json", "hf/model.safetensors", "logah.json",
                             "model.safetensors"]
    assert json.loads((out / "logah.json").read_text())["source"] == "test"
    assert read_spec(out) == STANDARD
    for path in (out, out / "model.safetensors", out / HF_DIR):
        loaded = load_state(path)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[n], state[n]) for n in state)
    other = build_model(STANDARD, seed=1)
    load_into(other, out / HF_DIR)
    assert all(torch.equal(p, state[n]) for n, p in other.named_parameters())


def test_non_standard_dims_still_save_as_safetensors_and_load_back_exactly(tmp_path):
    model = build_model(NON_STANDARD, seed=0)
    x = torch.randint(0, 40, (2, 8))
    out = save_weights(model.state_dict(), NON_STANDARD, tmp_path / "w")  # hf=None: skipped
    assert _listing(out) == ["logah.json", "model.safetensors"]
    spec = read_spec(out)
    assert spec == NON_STANDARD and (spec.d_qk, spec.d_v) == (8, 24)
    clone = build_model(spec, seed=1)
    load_into(clone, out)
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_hf_true_with_non_standard_dims_fails_before_writing(tmp_path):
    state = build_model(NON_STANDARD, seed=0).state_dict()
    with pytest.raises(HFConversionError, match="d_qk=8.*d_v=24"):
        save_weights(state, NON_STANDARD, tmp_path / "w", hf=True)
    assert not (tmp_path / "w").exists()


def test_hf_false_skips_export_and_removes_a_stale_one(tmp_path):
    save_weights(build_model(STANDARD, seed=0).state_dict(), STANDARD, tmp_path / "w")
    assert (tmp_path / "w" / HF_DIR).is_dir()
    save_weights(build_model(STANDARD, seed=1).state_dict(), STANDARD, tmp_path / "w", hf=False)
    assert not (tmp_path / "w" / HF_DIR).exists()


def test_save_weights_accepts_an_iterable_of_pairs(tmp_path):
    model = build_model(STANDARD, seed=0)
    out = save_weights(model.named_parameters(), STANDARD, tmp_path / "w", hf=False)
    assert load_state(out).keys() == model.state_dict().keys()


def test_check_state_lists_every_mismatch_in_one_error():
    model = build_model(STANDARD, device="meta")
    state = {n: torch.zeros(p.shape) for n, p in model.named_parameters()}
    del state["head.bias"]
    state["head.weight"] = torch.zeros(5, 32)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as e:
        check_state(model, state, "src.safetensors")
    msg = str(e.value)
    assert msg.startswith("src.safetensors:") and "\n" not in msg
    assert "missing head.bias" in msg and "unexpected extra.weight" in msg
    assert "head.weight: shape [5, 32] != model [3, 32]" in msg


def test_load_state_errors_name_the_path(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        load_state(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="model.safetensors"):
        load_state(tmp_path / "empty")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_state(tmp_path / "bad.safetensors")
