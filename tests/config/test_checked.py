"""Configs check themselves when built: in code, from a file, from a dict; once, naming the key."""

from __future__ import annotations

import pytest

from logah.config import ConfigError, load_config
from logah.config.arch import ArchDataConfig, ArchSpaceConfig
from logah.config.checked import Checked
from logah.config.ghn import GHNConfig
from logah.config.runs import FinetuneConfig, InitOptions, TrainGHNConfig
from logah.config.specs import ModelSpec
from logah.config.train import OptimConfig, TrainerConfig


@pytest.mark.parametrize("build, message", [
    (lambda: TrainerConfig(accelerator="tpu"), "trainer.accelerator: 'tpu' is not one of: auto"),
    (lambda: TrainerConfig(max_steps=0), r"trainer.max_steps: must be >= 1 \(or -1\), got 0"),
    (lambda: OptimConfig(lr=0.0), "optim.lr: must be > 0, got 0.0"),
    (lambda: OptimConfig(name="lion"), "optim.name: 'lion' is not one of: adamw, sgd"),
    (lambda: ArchSpaceConfig(head_groups=[[3]]), "archs.space.head_groups: no group divides"),
    (lambda: ArchDataConfig(meta_batch=0), "archs.meta_batch: must be >= 1, got 0"),
    (lambda: GHNConfig(hid=30), "ghn.hid: 30 is not divisible by ghn.heads=8"),
    (lambda: GHNConfig(preset="nope"), "ghn.preset: 'nope' is not one of: logah-t"),
    (lambda: FinetuneConfig(label_smoothing=1.0), r"label_smoothing: must be in \[0, 1\)"),
    (lambda: FinetuneConfig(init="random", init_opts=InitOptions(ghn_keep=["wte.*"])),
     "init_opts.ghn_keep: applies to init=ghn:CKPT only, got init=random"),
    (lambda: InitOptions(ghn_keep=[""]), "init_opts.ghn_keep: expected parameter-name globs"),
    (lambda: TrainGHNConfig(max_minutes=0), "max_minutes: must be > 0, got 0"),
    (lambda: ModelSpec("bert", 1, 8, 1, 8, 8, 32), "model.family: 'bert' is not one of: gpt2"),
])
def test_a_config_built_in_code_checks_itself(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_a_loaded_config_is_checked_while_it_is_built():
    with pytest.raises(ConfigError, match="optim.warmup_steps: must be >= 0, got -1"):
        load_config(FinetuneConfig, None, ["optim.warmup_steps=-1"])
    cfg = load_config(TrainGHNConfig, None, ["ghn.hid=32", "ghn.heads=4"])
    assert isinstance(cfg.ghn, Checked) and cfg.ghn.resolved().hid == 32


def test_from_dict_names_unknown_keys_and_checks_values():
    with pytest.raises(ConfigError, match=r"ghn config: unknown key\(s\) \['size'\]"):
        GHNConfig.from_dict({"preset": "logah-t", "size": 3})
    with pytest.raises(ConfigError, match="ghn.rank: must be >= 1, got 0"):
        GHNConfig.from_dict({"preset": "logah-t", "rank": 0})
    with pytest.raises(ConfigError, match=r"model spec: unknown key\(s\) \['depth'\]"):
        ModelSpec.from_dict({"family": "gpt2", "depth": 2})
    resolved = GHNConfig(preset="ghn2").resolved()
    assert resolved.resolved() is resolved  # nothing left to fill: not rebuilt (or re-checked)
