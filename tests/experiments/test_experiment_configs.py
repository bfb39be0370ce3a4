"""Every ``conf/experiment/<name>/*.yaml`` validates against its command's real schema, and the
runner turns each folder into the right plain ``logah`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from exp_plan import ROLES, ExperimentError, Options, load_experiment, plan

from logah.config import load_config
from logah.config.model import resolve_spec

ROOT = Path(__file__).resolve().parents[2]
EXP_DIRS = sorted(p for p in (ROOT / "conf" / "experiment").iterdir() if p.is_dir())
FILES = sorted((ROOT / "conf" / "experiment").rglob("*.yaml"))
CPU = ("cpu-brown", "cpu-fashion-mnist")


def test_the_scan_sees_the_experiments():
    names = {p.name for p in EXP_DIRS}
    assert set(CPU) <= names
    assert {"cifar10", "cifar100", "imagenet", "wikitext103", "openwebtext"} <= names
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT / "conf")))
def test_every_experiment_file_validates(path):
    role = path.stem.split("-", 1)[0]
    cfg = load_config(ROLES[role], path)
    spec = resolve_spec(cfg.model)
    if role == "ghn":
        cfg.ghn.resolved()
    else:
        assert cfg.init == "random"  # the runner chooses init per run
    assert spec.family in ("gpt2", "vit")


@pytest.mark.parametrize("exp_dir", EXP_DIRS, ids=lambda p: p.name)
def test_every_experiment_plans(exp_dir):
    exp = load_experiment(exp_dir)
    stages = plan(exp, Options())
    ids = [s.id for s in stages]
    assert len(ids) == len(set(ids))
    for target in exp.targets:
        inits = {s.label for s in stages if s.target == target}
        assert inits == {"random", *exp.ghns, *(f"grow-{g}" for g in exp.grows)}
    # every stage's inputs are produced by an earlier stage
    produced = set()
    for s in stages:
        for tok in s.argv:
            ref = Path(tok.removeprefix("weights:"))
            if tok.startswith("weights:") or tok.endswith(".ckpt"):
                assert any(str(p).startswith(str(ref)) for p in produced), (s.id, tok)
        produced.add(s.output)


@pytest.mark.parametrize("name", CPU)
def test_cpu_targets_are_deeper_and_wider_than_every_ghn_space(name):
    exp = load_experiment(ROOT / "conf" / "experiment" / name)
    for target in exp.targets.values():
        spec = resolve_spec(load_config(ROLES["finetune"], target).model)
        for ghn in exp.ghns.values():
            bands = load_config(ROLES["ghn"], ghn).archs.space.bands
            assert spec.n_layer > max(b.layers[1] for b in bands)
            assert spec.d_model > max(b.width[1] for b in bands)
    assert set(exp.ghns) == {"logah-t", "ghn3-t"} and exp.grows


def test_cpu_brown_commands(tmp_path):
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    out = tmp_path / "r"
    stages = {s.id: s for s in plan(exp, Options(out_dir=out, seed=3, devices=2))}
    ghn = stages["cpu-brown/train-ghn/logah-t-s3"].argv
    assert ghn[:3] == ["train-ghn", "--config", str(exp.ghns["logah-t"])]
    assert {"name=cpu-brown-logah-t-s3", f"out_dir={out}", "seed=3", "trainer.devices=2",
            "trainer.strategy=ddp"} <= set(ghn)
    pred = stages["cpu-brown/predict/gpt2-4x96-logah-t-s3"].argv
    ckpt = out / "train-ghn" / "cpu-brown-logah-t-s3" / "checkpoints" / "last.ckpt"
    assert pred[:5] == ["predict", "--ghn", str(ckpt), "--arch", "gpt2-tiny"]
    assert {"model.n_layer=4", "model.d_model=96", "model.n_ctx=64"} <= set(pred)
    grow = stages["cpu-brown/grow/gpt2-4x96-gpt2-2x64-s3"].argv
    assert grow[grow.index("--to") + 1] == "n_layer=4,d_model=96,d_qk=24,d_v=24,d_mlp=384"
    ft = stages["cpu-brown/finetune/gpt2-4x96-grow-gpt2-2x64-s3"]
    assert f"init=weights:{out}/grow/cpu-brown-gpt2-4x96-from-gpt2-2x64-s3" in ft.argv
    assert ft.group == "cpu-brown-gpt2-4x96-s3"
    # the grown weights' LayerNorm eps is stated once the grow stage has written it
    assert ft.command()[-1].startswith("model.ln_eps=<from ")
    ft.eps_from.mkdir(parents=True)
    (ft.eps_from / "logah.json").write_text('{"spec": {"ln_eps": 6.5e-06}}')
    assert ft.command()[-1] == "model.ln_eps=6.5e-06"


def test_bad_folders_and_overrides(tmp_path):
    with pytest.raises(ExperimentError, match="no such experiment folder"):
        load_experiment(tmp_path / "nope")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "ghn-x.yaml").write_text("seed: 0\n")
    with pytest.raises(ExperimentError, match="no finetune-<target>.yaml"):
        load_experiment(tmp_path / "e")
    (tmp_path / "e" / "notes.yaml").write_text("a: 1\n")
    with pytest.raises(ExperimentError, match="notes.yaml: file names are"):
        load_experiment(tmp_path / "e")
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    with pytest.raises(ExperimentError, match="ghn-ghn3-t.yaml: trainer.max_stepz: unknown key"):
        plan(exp, Options(sets=["trainer.max_stepz=3"]))
    with pytest.raises(ExperimentError, match="--target nope: not in"):
        plan(exp, Options(targets=["nope"]))
