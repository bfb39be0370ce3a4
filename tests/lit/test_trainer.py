"""Run folders (resume detection, config checks, nothing written early) and build_trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from logah.config import load_config
from logah.config.errors import ConfigError, LogahError
from logah.config.runs import FinetuneConfig
from logah.config.train import TrainerConfig
from logah.lit.rundir import check_run, config_changes, find_resume, run_dir, start_run
from logah.lit.trainer import (
    LastCheckpoint,
    StepProgressBar,
    build_trainer,
    resolve_precision,
)


def test_run_dir_convention():
    assert str(run_dir("runs", "finetune", "x")) == "runs/finetune/x"
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(ConfigError, match="name"):
            run_dir("runs", "finetune", bad)


def test_config_changes_ignore_trainer_keys():
    a = load_config(FinetuneConfig, None, ["trainer.max_steps=10"])
    b = load_config(FinetuneConfig, None, ["trainer.max_steps=99", "trainer.devices=2",
                                           "data.num_workers=4"])
    assert config_changes(a, b) == []
    from logah.config.runs import TrainGHNConfig

    g = load_config(TrainGHNConfig, None, ["max_minutes=32"])  # extending a time-capped run
    assert config_changes(g, load_config(TrainGHNConfig, None, [
        "max_minutes=50", "snapshot_minutes=[5,15,40]"])) == []
    assert config_changes(g, load_config(TrainGHNConfig, None, ["max_minutes=32", "seed=3"]))
    c = load_config(FinetuneConfig, None, ["optim.lr=0.5", "model.d_model=32"])
    assert config_changes(a, c) == ["model.d_model: None != 32", "optim.lr: 0.001 != 0.5"]


def test_fresh_resumed_and_mismatched_runs(tmp_path):
    cfg = load_config(FinetuneConfig, None, [])
    assert check_run(tmp_path / "r", cfg) is None and not (tmp_path / "r").exists()
    (tmp_path / "r").mkdir()
    stale = tmp_path / "r" / "events.out.tfevents.1.host.1.0"
    stale.write_bytes(b"x")
    start_run(tmp_path / "r", cfg, None)
    assert not stale.exists() and (tmp_path / "r" / "config.yaml").is_file()

    (tmp_path / "r" / "checkpoints").mkdir()
    torch.save({"global_step": 17}, tmp_path / "r" / "checkpoints" / "last.ckpt")
    resume = check_run(tmp_path / "r", load_config(FinetuneConfig, None, ["trainer.max_steps=5"]))
    assert resume is not None and resume.step == 17
    with pytest.raises(ConfigError, match=r"different config .*init: 'random' != 'orthogonal'"):
        check_run(tmp_path / "r", load_config(FinetuneConfig, None, ["init=orthogonal"]))


def test_unreadable_checkpoint_names_the_file(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(LogahError, match="last.ckpt: cannot read checkpoint"):
        find_resume(tmp_path)


def test_precision_auto_on_cpu():
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "auto") == "32-true"


def test_build_trainer_wires_checkpoints_logger_and_bar(tmp_path):
    cfg = TrainerConfig(max_steps=50, val_check_interval=10, accelerator="cpu",
                        accumulate_grad_batches=2)
    trainer = build_trainer(cfg, tmp_path, resume_step=7)
    last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
    best = [c for c in trainer.callbacks if type(c) is ModelCheckpoint]
    assert len(last) == 1 and last[0]._every_n_train_steps == 10
    assert len(best) == 1 and best[0].monitor == "val/loss" and best[0].filename == "best"
    assert any(isinstance(c, StepProgressBar) for c in trainer.callbacks)
    assert Path(trainer.logger.log_dir) == tmp_path
    assert trainer.logger._kwargs["purge_step"] == 7
    assert trainer.val_check_interval == 20  # optimizer steps x accumulation = batches
    assert trainer.gradient_clip_val == 1.0 and trainer.max_steps == 50


@pytest.mark.parametrize("change,key", [
    ({"max_steps": 0}, "trainer.max_steps"), ({"val_check_interval": 0}, "trainer.val_check_interval"),
    ({"ckpt_every_n_steps": 0}, "trainer.ckpt_every_n_steps"),
    ({"gradient_clip_val": -1.0}, "trainer.gradient_clip_val"),
    ({"max_steps": -1}, "trainer.max_epochs"), ({"devices": "many"}, "trainer"),
])
def test_bad_trainer_values_are_config_errors(tmp_path, change, key):
    with pytest.raises(ConfigError, match=key):
        build_trainer(TrainerConfig(accelerator="cpu", **change), tmp_path)
    assert not any(tmp_path.iterdir())
