"""`logah finetune model.arch=<HF config> init=ghn:...`: an HF architecture trained from a GHN's
prediction, the same bits `logah predict --arch <HF config>` writes."""

from __future__ import annotations

import json

import torch
from finetune_synth import VOCAB, read_scalars, text_overrides, write_text_data

from logah.cli.main import main
from logah.config.hf_spec import spec_from_hf_path
from logah.lit.init import build_target, parse_init
from logah.nn.io import load_state

HF_GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 4, "vocab_size": VOCAB,
           "n_positions": 32, "activation_function": "gelu_new"}


def _hf_dir(tmp_path):
    d = tmp_path / "hf-gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(HF_GPT2))
    return d


def _overrides(tmp_path, hf, name, init):
    root = write_text_data(tmp_path / "data", 6_000, 1_000)
    base = [o for o in text_overrides(root, tmp_path / "runs", name=name, steps=3)
            if not o.startswith("model.")]
    return [*base, f"model.arch={hf}", f"init={init}"]


def test_hf_config_arch_with_ghn_init_trains_from_the_predicted_weights(tmp_path):
    hf = _hf_dir(tmp_path)
    assert main(["finetune", *_overrides(tmp_path, hf, "hf-ghn", "ghn:random:logah-t")]) == 0
    run = tmp_path / "runs" / "finetune" / "hf-ghn"
    assert f"arch: {hf}" in (run / "config.yaml").read_text()
    val = sorted(read_scalars(run)["val/loss"])
    assert val[0][0] == 0 and torch.isfinite(torch.tensor([v for _, v in val])).all()
    # The run's starting weights are exactly what `logah predict --arch <HF dir>` writes.
    out = tmp_path / "pred"
    assert main(["predict", "--ghn", "random:logah-t", "--arch", str(hf / "config.json"),
                 "--out", str(out), "--no-progress", "--hf", "no"]) == 0
    model = build_target(spec_from_hf_path(hf), parse_init("ghn:random:logah-t"), seed=0)
    want = load_state(out)
    assert sorted(want) == sorted(n for n, _ in model.named_parameters())
    assert all(torch.equal(model.get_parameter(n), t) for n, t in want.items())


def test_unknown_pretrained_ghn_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    hf = _hf_dir(tmp_path)
    assert main(["finetune", *_overrides(tmp_path, hf, "x", "ghn:pretrained:nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown pretrained GHN 'nope' (valid:" in err[0], err
    assert not (tmp_path / "runs").exists()
