"""``logah.init_from_ghn``: logah, Hugging Face and user models filled in place, bit for bit what
``logah predict`` writes for the same architecture; unsupported models rejected before any write."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import logah
from logah.cli.main import main
from logah.config import get_preset
from logah.ghn.apply import InitFromGHNError
from logah.ghn.io import load_ghn
from logah.graph import UnsupportedModuleError, build_graph
from logah.nn import build_model
from logah.nn.hf import hf_config, hf_config_dict
from logah.nn.io import load_state

GHN = "random:logah-t"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module")
def ghn():
    return load_ghn(GHN)


def _predict(tmp_path, arch: str, dtype: str = "float32", *overrides: str):
    out = tmp_path / f"pred-{dtype}"
    assert main(["predict", "--ghn", GHN, "--arch", arch, "--out", str(out), "--no-progress",
                 "--dtype", dtype, "--hf", "auto", *overrides]) == 0
    return out


def _assert_same_bits(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype, name
        assert torch.equal(got[name].cpu(), t), name  # exact, not close


@pytest.mark.parametrize("arch", ["gpt2-tiny", "vit-tiny", "llama-tiny"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_logah_model_equals_logah_predict(tmp_path, ghn, arch, dtype):
    spec = get_preset(arch)
    model = build_model(spec, seed=3, dtype=DTYPES[dtype])
    before = {n: id(p) for n, p in model.named_parameters()}
    out, report = logah.init_from_ghn(model, ghn)
    assert out is model and {n: id(p) for n, p in model.named_parameters()} == before  # in place
    assert report.kind == "logah" and report.left == {}
    assert sorted(report.predicted) == sorted(before)
    _assert_same_bits(model.state_dict(), load_state(_predict(tmp_path, arch, dtype)))
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())


def _hf_model(transformers, spec, dtype):
    cls = getattr(transformers, {"gpt2": "GPT2LMHeadModel", "vit": "ViTForImageClassification",
                                 "llama": "LlamaForCausalLM"}[spec.family])
    return cls(hf_config(spec)).to(DTYPES[dtype]), cls


@pytest.mark.parametrize("arch,overrides", [
    ("gpt2-tiny", ()), ("gpt2-tiny", ("model.tie_embeddings=false",)), ("vit-tiny", ()),
    ("llama-tiny", ())])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hf_model_equals_logah_predict_hf_export(tmp_path, ghn, transformers, arch, overrides,
                                                 dtype):
    from logah.config.model import override_spec

    spec = override_spec(get_preset(arch), {"tie_embeddings": False} if overrides else {})
    model, cls = _hf_model(transformers, spec, dtype)
    _, report = logah.init_from_ghn(model, ghn)
    assert report.kind == "hf"
    emb = {"gpt2": "transformer.wte.weight", "llama": "model.embed_tokens.weight"}.get(spec.family)
    want_left = {n: "buffer (not a parameter)" for n, _ in model.named_buffers()}  # rotary freqs
    if spec.family != "vit" and spec.tie_embeddings:
        want_left["lm_head.weight"] = f"tied to {emb} (filled with it)"
    assert report.left == want_left
    # What `logah predict` exports to hf/, loaded by transformers itself (its in-memory names).
    want = cls.from_pretrained(_predict(tmp_path, arch, dtype, *overrides) / "hf",
                               dtype=DTYPES[dtype]).state_dict()
    _assert_same_bits(model.state_dict(), want)


@pytest.mark.parametrize("arch", ["gpt2-tiny", "vit-tiny", "llama-tiny"])
def test_hf_config_as_arch_predicts_the_same_weights(tmp_path, arch):
    """`logah predict --arch config.json` (or its directory) = the preset it describes."""
    spec = get_preset(arch)
    hf_dir = tmp_path / "hf-target"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps(hf_config_dict(spec)))
    want = load_state(_predict(tmp_path, arch))
    for i, path in enumerate([hf_dir, hf_dir / "config.json"]):
        out = tmp_path / f"from-hf-{i}"
        assert main(["predict", "--ghn", GHN, "--arch", str(path), "--out", str(out),
                     "--no-progress", "--hf", "no"]) == 0
        _assert_same_bits(load_state(out), want)


def test_bad_hf_config_arch_is_one_error_line(tmp_path, capsys):
    bert = tmp_path / "bert.json"
    bert.write_text(json.dumps({"model_type": "bert"}))
    for arch, culprit in [(tmp_path / "nope" / "config.json", "is not one of: gpt2-large"),
                          (bert, "model_type='bert' is not supported")]:
        assert main(["predict", "--ghn", GHN, "--arch", str(arch),
                     "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and culprit in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


class UserNet(nn.Module):
    """A user's own model: conv stem, BatchNorm (buffers), a transformer-ish block, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.ln = nn.LayerNorm(16)
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x))).flatten(2).transpose(1, 2)  # (B, HW, 16)
        a, _ = self.mha(self.ln(h), self.ln(h), self.ln(h))
        h = h + a
        h = h + self.mlp(h)
        return self.head(h.mean(1))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_user_module_equals_the_ghn_prediction_of_its_graph(ghn, dtype):
    model = UserNet().to(DTYPES[dtype])
    _, report = logah.init_from_ghn(model, ghn)
    assert report.kind == "module"
    assert set(report.left) == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert sorted(report.predicted) == sorted(n for n, _ in model.named_parameters())
    with torch.device("meta"):
        meta = UserNet()
    graph = build_graph(meta)
    streamed = {n: t.to(DTYPES[dtype]) for n, t in ghn.predict(graph)}
    _assert_same_bits(dict(model.named_parameters()), streamed)
    batched = ghn(graph)[0]  # the differentiable forward agrees with the streamed prediction
    for n, t in batched.items():
        torch.testing.assert_close(model.get_parameter(n).float(), t.detach().to(DTYPES[dtype])
                                   .float(), rtol=2e-2 if dtype == "bfloat16" else 1e-5,
                                   atol=1e-6, msg=n)
    assert model.bn.running_var.eq(1).all()  # buffers untouched
    with torch.no_grad():
        assert torch.isfinite(model.eval().float()(torch.randn(2, 3, 8, 8))).all()


def test_unsupported_module_is_one_error_and_changes_nothing(ghn):
    model = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(UnsupportedModuleError, match=r"module '1' \(torch\.nn\.modules\.rnn\.LSTM\)"
                       ) as e:
        logah.init_from_ghn(model, ghn)
    assert "\n" not in str(e.value)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_meta_parameters_are_refused_before_any_work(ghn):
    with torch.device("meta"):
        model = UserNet()
    with pytest.raises(InitFromGHNError, match=r"'stem\.weight' is on the meta device.*to_empty"):
        logah.init_from_ghn(model, ghn)


def test_ghn_argument_may_be_a_source_string():
    a, b = (build_model(get_preset("vit-tiny"), seed=0) for _ in range(2))
    logah.init_from_ghn(a, GHN, seed=1)
    logah.init_from_ghn(b, load_ghn(GHN, seed=1))
    _assert_same_bits(a.state_dict(), b.state_dict())
    logah.init_from_ghn(b, load_ghn(GHN, seed=2))
    assert not torch.equal(a.head.weight, b.head.weight)  # the seed reaches the random GHN


def test_import_logah_stays_light():
    code = ("import sys, logah; assert 'torch' not in sys.modules, 'torch imported'; "
            "f = logah.init_from_ghn; assert callable(f) and callable(logah.load_ghn); "
            "assert 'init_from_ghn' in dir(logah)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.gpu
def test_model_on_gpu_gets_the_same_bits_as_on_cpu(ghn):
    spec = get_preset("gpt2-tiny")
    cpu = build_model(spec, seed=0)
    logah.init_from_ghn(cpu, ghn)
    gpu = build_model(spec, "cuda", dtype=torch.bfloat16, seed=0)
    logah.init_from_ghn(gpu, ghn)  # GHN on CPU, each tensor copied to the GPU in bf16
    for n, p in gpu.named_parameters():
        assert p.device.type == "cuda" and p.dtype == torch.bfloat16
        assert torch.equal(p.cpu(), cpu.get_parameter(n).to(torch.bfloat16)), n
    on_gpu = build_model(spec, "cuda", seed=0)
    logah.init_from_ghn(on_gpu, load_ghn(GHN, map_location="cuda"))  # GHN on the GPU as well
    for n, p in on_gpu.named_parameters():
        torch.testing.assert_close(p.cpu(), cpu.get_parameter(n), rtol=1e-4, atol=1e-5, msg=n)
