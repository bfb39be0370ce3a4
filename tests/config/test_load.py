"""``load_config``: schema <- YAML <- key=value, and one-line errors that name the key."""

from __future__ import annotations

import pytest

from logah.config import ConfigError, load_config, save_config
from logah.config.runs import FinetuneConfig


def _error(overrides=(), config_file=None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(FinetuneConfig, config_file, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_defaults_yaml_and_overrides_merge_in_order(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("name: from-yaml\ntrainer:\n  max_steps: 7\n  log_every_n_steps: 2\n"
                 "model:\n  arch: vit-tiny\n")
    cfg = load_config(FinetuneConfig, f, ["trainer.max_steps=9", "optim.lr=0.5"])
    assert isinstance(cfg, FinetuneConfig)
    assert cfg.name == "from-yaml" and cfg.model.arch == "vit-tiny"  # YAML over schema
    assert cfg.trainer.max_steps == 9 and cfg.trainer.log_every_n_steps == 2  # override over YAML
    assert cfg.optim.lr == 0.5 and cfg.optim.name == "adamw"  # schema default kept
    assert isinstance(cfg.trainer.max_steps, int)


def test_save_config_round_trips(tmp_path):
    cfg = load_config(FinetuneConfig, None, ["model.arch=gpt2-mini", "model.d_model=256",
                                             "optim.betas=[0.8,0.9]", "seed=3"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(FinetuneConfig, tmp_path / "config.yaml") == cfg


def test_unknown_preset_names_key_and_choices():
    msg = _error(["model.arch=gpt9"])
    assert msg.startswith("model.arch:") and "'gpt9'" in msg
    assert "gpt2-small" in msg and "vit-tiny" in msg


def test_misspelt_key_names_key_and_valid_keys():
    msg = _error(["trainer.max_stepz=3"])
    assert msg.startswith("trainer.max_stepz:") and "unknown key" in msg and "max_steps" in msg
    assert _error(["modle.arch=gpt2-tiny"]).startswith("modle: unknown key")


def test_wrong_type_names_key():
    msg = _error(["trainer.max_steps=abc"])
    assert msg.startswith("trainer.max_steps:") and "abc" in msg
    assert _error(["model.d_model=1.5"]).startswith("model.d_model:")


@pytest.mark.parametrize("override,choices", [
    ("optim.name=adamx", "adamw, sgd"),
    ("trainer.precision=fp8", "32-true"),
    ("data.name=mnist", "fashion-mnist"),
])
def test_closed_sets_list_the_valid_choices(override, choices):
    key, value = override.split("=")
    msg = _error([override])
    assert msg.startswith(f"{key}: '{value}' is not one of:") and choices in msg


def test_missing_config_file_names_the_file(tmp_path):
    msg = _error(config_file=tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "not found" in msg


def test_yaml_parse_error_names_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("trainer:\n  max_steps: 3\n   log_every_n_steps: 2\n")
    msg = _error(config_file=f)
    assert msg.startswith(f"--config {f}: cannot parse: line 3")


def test_yaml_list_at_top_level_is_rejected(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    assert "expected a mapping" in _error(config_file=f)


def test_bad_key_inside_yaml_is_named(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("optim:\n  lr: 0.1\n  nesterof: true\n")
    assert _error(config_file=f).startswith("optim.nesterof: unknown key")
    f.write_text("model:\n  arch: gpt9\n")
    assert _error(config_file=f).startswith("model.arch:")


def test_override_without_equals_is_rejected():
    assert "expected key=value" in _error(["trainer.max_steps"])
