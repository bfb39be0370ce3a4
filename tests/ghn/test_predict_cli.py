"""``logah predict``: weights that load strictly, equal the GHN's own prediction, and an HF
directory that reproduces our logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from logah.cli.main import main
from logah.config import get_preset
from logah.ghn.io import load_ghn
from logah.graph import graph_for_spec
from logah.nn import build_model
from logah.nn.io import load_into, load_state, read_spec


def test_predict_gpt2_tiny_in_a_subprocess(tmp_path, transformers) -> None:
    out = tmp_path / "pred"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "logah.cli.main", "predict", "--ghn", "random:logah-t",
         "--arch", "gpt2-tiny", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "36 tensors, 3,324,736 parameters" in proc.stdout
    spec = get_preset("gpt2-tiny")
    assert read_spec(out) == spec
    assert json.loads((out / "logah.json").read_text())["predicted_by"]["ghn"] == "random:logah-t"
    model = build_model(spec, seed=1)
    load_into(model, out)  # strict: every tensor present with its shape
    # The written weights are the GHN's prediction.
    want = load_ghn("random:logah-t")(graph_for_spec(spec))[0]
    got = load_state(out)
    for n, t in want.items():
        torch.testing.assert_close(got[n], t.detach(), rtol=1e-5, atol=1e-6, msg=n)
    # The Hugging Face directory reproduces our logits.
    hf = transformers.GPT2LMHeadModel.from_pretrained(out / "hf").eval()
    x = torch.randint(0, spec.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.eval()(x)
        torch.testing.assert_close(hf(x).logits, ours, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(ours).all()


def test_predict_vit_with_overrides_and_hf(tmp_path, transformers, capsys) -> None:
    out = tmp_path / "vit"
    assert main(["predict", "--ghn", "random:ghn2", "--arch", "vit-tiny", "--out", str(out),
                 "--no-progress", "model.num_classes=7"]) == 0
    spec = get_preset("vit-tiny").replace(num_classes=7)
    model = build_model(spec, seed=0).eval()
    load_into(model, out)
    # the depth diversity it prints is the metric of the written tensors
    from logah.ghn.diversity import depth_diversity

    line = [ln for ln in capsys.readouterr().out.splitlines() if "depth diversity" in ln][0]
    want = depth_diversity(dict(model.named_parameters()))
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(want, abs=1.5e-3)
    hf = transformers.ViTForImageClassification.from_pretrained(out / "hf").eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x), rtol=1e-4, atol=1e-4)
    # bf16 output without the HF directory
    assert main(["predict", "--ghn", "random:ghn2", "--arch", "vit-tiny", "--out", str(out),
                 "--no-progress", "--dtype", "bfloat16", "--hf", "no"]) == 0
    assert not (out / "hf").exists()
    assert all(t.dtype == torch.bfloat16 for t in load_state(out).values())


@pytest.mark.parametrize("argv,msg", [
    (["--ghn", "random:nope", "--arch", "gpt2-tiny"], "unknown preset 'nope'"),
    (["--ghn", "random:ghn2", "--arch", "gpt2-tiny", "model.d_modle=3"], "model.d_modle"),
    (["--ghn", "random:ghn2", "--arch", "gpt2-nope"], "gpt2-nope"),
    (["--ghn", "random:ghn2", "--arch", "gpt2-tiny", "--device", "nodevice"], "--device nodevice"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, msg) -> None:
    assert main(["predict", *argv, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0]
    assert not (tmp_path / "o" / "model.safetensors").exists()


@pytest.mark.slow
def test_predict_gpt2_large_streams_within_memory(tmp_path) -> None:
    """774M parameters on this machine: completes, and the process never holds the model."""
    out = tmp_path / "large"
    proc = subprocess.run(
        [sys.executable, "-m", "logah.cli.main", "predict", "--ghn", "random:logah-t",
         "--arch", "gpt2-large", "--out", str(out), "--hf", "no", "--no-progress"],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    size = 774_030_080 * 4
    assert (out / "model.safetensors").stat().st_size > size
    peak_mib = float(proc.stdout.split("peak RSS ")[1].split(" MiB")[0].replace(",", ""))
    assert peak_mib * 2**20 < 0.5 * size  # streaming: far below one copy of the model
