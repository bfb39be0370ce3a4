"""Every ``conf/experiment/<name>/*.yaml`` validates against its command's real schema, and the
runner turns each folder into the right plain ``logah`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from exp_plan import ROLES, ExperimentError, Options, load_experiment, load_protocol, plan

from logah.config import load_config
from logah.config.model import resolve_spec

ROOT = Path(__file__).resolve().parents[2]
EXP_DIRS = sorted(p for p in (ROOT / "conf" / "experiment").iterdir() if p.is_dir())
FILES = sorted((ROOT / "conf" / "experiment").rglob("*.yaml"))
CPU = ("cpu-brown", "cpu-fashion-mnist", "cpu-brown-long", "cpu-fashion-mnist-long")


def test_the_scan_sees_the_experiments():
    names = {p.name for p in EXP_DIRS}
    assert set(CPU) <= names
    assert {"cifar10", "cifar100", "imagenet", "wikitext103", "openwebtext"} <= names
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT / "conf")))
def test_every_experiment_file_validates(path):
    if path.name == "protocol.yaml":
        load_protocol(load_experiment(path.parent), Options())
        return
    role = path.stem.split("-", 1)[0]
    cfg = load_config(ROLES[role], path)
    spec = resolve_spec(cfg.model)
    if role == "ghn":
        cfg.ghn.resolved()
    else:
        assert cfg.init == "random"  # the runner chooses init per run
    assert spec.family in ("gpt2", "vit", "llama")


@pytest.mark.parametrize("exp_dir", EXP_DIRS, ids=lambda p: p.name)
def test_every_experiment_plans(exp_dir):
    exp = load_experiment(exp_dir)
    stages = plan(exp, Options())
    ids = [s.id for s in stages]
    assert len(ids) == len(set(ids))
    proto = load_protocol(exp, Options())
    for target in exp.targets:
        cells = [s for s in stages if s.target == target]
        labels = {s.label for s in cells}
        assert {"random", *exp.ghns} <= labels
        n_lr, n_seed = max(len(proto.lrs), 1), max(len(proto.seeds), 1)
        assert len(cells) == len(labels) * n_lr * n_seed  # the full grid
    # every stage's inputs are produced by an earlier stage
    produced = set()
    for s in stages:
        for tok in s.argv:
            kind, _, ref = tok.removeprefix("init=").partition(":")
            if kind in ("weights", "ghn", "grow", "hyperclone", "stack") and ref:
                assert any(str(p).startswith(ref) or ref.startswith(f"{p}/") for p in produced), \
                    (s.id, tok)
        produced.add(s.output)
        if s.argv[0] == "train-ghn":  # it also writes its snapshots beside last.ckpt
            produced.add(s.output.parent)


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


def test_cpu_brown_grid_commands(tmp_path):
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    out = tmp_path / "r"
    stages = {s.id: s for s in plan(exp, Options(out_dir=out, devices=2, seeds=[3, 4]))}
    ghn = stages["cpu-brown/train-ghn/logah-t"].argv
    assert ghn[:3] == ["train-ghn", "--config", str(exp.ghns["logah-t"])]
    assert {"name=cpu-brown-logah-t", f"out_dir={out}", "trainer.devices=2",
            "trainer.strategy=ddp"} <= set(ghn)
    cells = [s for s in stages.values() if s.group == "cpu-brown-gpt2-4x64"]
    # the default's five inits (cloning and stacking are the long run's), at both rates and seeds
    assert {s.label for s in cells} == {"random", "mimetic", "logah-t", "ghn3-t", "grow-gpt2-2x32"}
    assert {(s.lr, s.seed) for s in cells if s.label == "mimetic"} == {
        (0.003, 3), (0.003, 4), (0.01, 3), (0.01, 4)}
    ghn_cell = stages["cpu-brown/finetune/gpt2-4x64-logah-t-lr0.01-s4"]
    ckpt = out / "train-ghn" / "cpu-brown-logah-t" / "checkpoints" / "last.ckpt"
    assert {f"init=ghn:{ckpt}", "optim.lr=0.01", "seed=4",
            "name=cpu-brown-gpt2-4x64-logah-t-lr0.01-s4"} <= set(ghn_cell.argv)
    assert ghn_cell.deps == [ckpt]
    grow = stages["cpu-brown/finetune/gpt2-4x64-grow-gpt2-2x32-lr0.003-s3"]
    weights = out / "finetune" / "cpu-brown-gpt2-2x32" / "weights"
    assert f"init=grow:{weights}" in grow.argv
    assert grow.deps == [weights / "model.safetensors"]


def test_long_experiment_has_every_init_kind(tmp_path):
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown-long")
    stages = {s.id: s for s in plan(exp, Options(out_dir=tmp_path))}
    labels = {s.label for s in stages.values() if s.group}
    assert {"random", "mimetic", "logah-t", "ghn3-t", "grow-gpt2-2x32", "stack-gpt2-2x32",
            "hyperclone-gpt2-4x32"} <= labels
    stack = stages["cpu-brown-long/finetune/gpt2-4x64-stack-gpt2-2x32-lr0.003-s1"]
    weights = tmp_path / "finetune" / "cpu-brown-long-gpt2-2x32" / "weights"
    assert f"init=stack:{weights}" in stack.argv
    assert stack.deps == [weights / "model.safetensors"]


def test_long_experiment_adds_ghn_snapshot_inits(tmp_path):
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown-long")
    stages = plan(exp, Options(out_dir=tmp_path))
    labels = {s.label for s in stages if s.group}
    assert {"logah-t-5min", "logah-t-15min", "logah-t-30min"} <= labels
    snap = next(s for s in stages if s.label == "logah-t-15min")
    assert snap.deps == [tmp_path / "train-ghn" / "cpu-brown-long-logah-t" / "checkpoints" /
                         "snapshot-15min.ckpt"]
    ghn_cfg = load_config(ROLES["ghn"], exp.ghns["logah-t"])
    assert ghn_cfg.max_minutes >= 30 and list(ghn_cfg.snapshot_minutes) == [5, 15, 30]
    assert len(load_protocol(exp, Options()).lrs) >= 2


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
    (tmp_path / "e" / "notes.yaml").unlink()
    (tmp_path / "e" / "finetune-t.yaml").write_text("seed: 0\n")
    (tmp_path / "e" / "protocol.yaml").write_text("inits: [random, xavier]\n")
    with pytest.raises(ExperimentError, match=r"inits must be kinds .*\['xavier'\]"):
        plan(load_experiment(tmp_path / "e"), Options())
    (tmp_path / "e" / "protocol.yaml").write_text("lrz: [1]\n")
    with pytest.raises(ExperimentError, match="protocol.yaml: lrz"):
        plan(load_experiment(tmp_path / "e"), Options())
