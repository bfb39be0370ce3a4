"""``logah grow``: a subprocess round trip writes loadable weights computing the source's logits;
bad requests are one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from growkit import TOL, inputs, logits, max_diff, random_state

from logah.cli.main import main
from logah.config import gpt2_spec, vit_spec
from logah.nn.io import HF_DIR, load_state, read_spec, save_weights

GPT2 = gpt2_spec(2, 16, 2, vocab_size=11, n_ctx=7, tie_embeddings=False)
VIT = vit_spec(2, 16, 2, image_size=8, patch_size=4, num_classes=5)


@pytest.fixture
def source(tmp_path):
    """A float64 GPT-2 weights dir with every parameter random (saved without an hf/ export)."""
    state = random_state(GPT2)
    save_weights(state, GPT2, tmp_path / "src", hf=False)
    return tmp_path / "src", state


def test_cli_round_trip_in_a_subprocess(source, tmp_path):
    src, state = source
    out = tmp_path / "grown"
    res = subprocess.run(
        [sys.executable, "-m", "logah.cli.main", "grow", "--from", str(src),
         "--to", "n_layer=3,d_model=24,n_ctx=9", "--out", str(out), "--seed", "3"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout and "n_layer: to=3, positions=[2]" in res.stdout
    spec = read_spec(out)
    assert (spec.n_layer, spec.d_model, spec.d_qk, spec.d_mlp, spec.n_ctx) == (3, 24, 12, 96, 9)
    assert [g["op"] for g in spec.growth] == ["n_ctx", "d_mlp", "d_v", "d_qk", "d_model", "n_layer"]
    assert spec.growth[0]["source"]["d_model"] == 16 and spec.growth[0]["seed"] == 3
    meta = json.loads((out / "logah.json").read_text())
    assert meta["grown_from"] == str(src) and meta["source_spec"]["d_model"] == 16
    grown = load_state(out)
    assert {t.dtype for t in grown.values()} == {torch.float64}  # the source's dtype is kept
    x = inputs(GPT2)
    assert max_diff(logits(spec, grown, x), logits(GPT2, state, x)) <= TOL
    hf = load_state(out / HF_DIR)  # standard dims: a Hugging Face export beside it
    assert all(torch.equal(hf[n], grown[n]) for n in grown)
    # ... which is itself a valid --from (spec read from its config.json)
    assert main(["grow", "--from", str(out / HF_DIR), "--to", "d_mlp=120",
                 "--out", str(tmp_path / "again")]) == 0
    again = read_spec(tmp_path / "again")
    assert (again.d_mlp, again.n_layer, again.ln_eps) == (120, 3, spec.ln_eps)
    assert max_diff(logits(again, load_state(tmp_path / "again"), x), logits(GPT2, state, x)) <= TOL


def test_cli_vit_with_a_plan_file_and_a_bare_safetensors(tmp_path, capsys):
    state = random_state(VIT)
    save_weights(state, VIT, tmp_path / "src", hf=False)
    (tmp_path / "src" / "logah.json").unlink()  # a bare file: the spec comes from --spec
    plan = tmp_path / "plan.yaml"
    plan.write_text("seed: 1\ninit: {std: 3.0}\nsteps:\n  - {op: n_heads, to: 3}\n"
                    "  - {op: n_layer, to: 3, positions: [0]}\n")
    args = ["grow", "--from", str(tmp_path / "src" / "model.safetensors"), "--plan", str(plan),
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "no logah.json" in capsys.readouterr().err and not (tmp_path / "out").exists()
    # vit-tiny's dims are not these, so --spec must name a spec that matches: a wrong one is
    # caught tensor by tensor
    assert main([*args, "--spec", "vit-tiny"]) == 2
    assert "weights do not match the model" in capsys.readouterr().err
    save_weights(state, VIT, tmp_path / "src", hf=False)
    assert main([*args, "--to", "n_heads=3,d_qk=8,d_v=8,n_layer=3"]) == 0
    spec = read_spec(tmp_path / "out")
    assert (spec.n_heads, spec.n_layer, spec.growth[-1]["args"]["positions"]) == (3, 3, [0])
    assert spec.growth[0]["init"]["std"] == 3.0
    x = inputs(VIT)
    assert max_diff(logits(spec, load_state(tmp_path / "out"), x), logits(VIT, state, x)) <= TOL


@pytest.mark.parametrize("extra,match", [
    (["--to", "d_model=8"], "target would shrink"),
    (["--to", "vit-tiny"], "target family 'vit' != source family 'gpt2'"),
    (["--to", "n_heads=4"], "per-head widths d_qk/d_v cannot shrink"),
    (["--to", "vocab_size=50"], "vocab_size: growth keeps it fixed"),
    (["--to", "n_layer=two"], "--to: n_layer"),
    ([], "give --to PRESET_OR_DIMS and/or --plan"),
    (["--plan", "missing.yaml"], "--plan missing.yaml: file not found"),
])
def test_cli_errors_are_one_line_and_write_nothing(source, tmp_path, capsys, extra, match):
    src, _ = source
    out = tmp_path / "out"
    assert main(["grow", "--from", str(src), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_plan_must_end_at_to(source, tmp_path, capsys):
    src, _ = source
    plan = tmp_path / "plan.yaml"
    plan.write_text("- {op: d_mlp, to: 80}\n")
    assert main(["grow", "--from", str(src), "--plan", str(plan), "--to", "n_layer=3",
                 "--out", str(tmp_path / "out")]) == 2
    assert "ends at gpt2 L=2 d=16" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_missing_source(tmp_path, capsys):
    assert main(["grow", "--from", str(tmp_path / "nope"), "--to", "gpt2-mini",
                 "--out", str(tmp_path / "out")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
