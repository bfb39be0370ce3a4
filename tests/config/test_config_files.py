"""Every YAML under ``conf/`` loads against its schema (the directory names the schema)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from logah.config import load_config

CONF = Path(__file__).resolve().parents[2] / "conf"
# conf/<group>/*.yaml -> "module:Schema". conf/experiment and conf/grow have their own tests
# (tests/experiments, tests/grow); any other unknown group is skipped.
SCHEMAS = {
    "finetune": "logah.config.runs:FinetuneConfig",
    "train_ghn": "logah.config.runs:TrainGHNConfig",
}
FILES = [
    p for p in sorted(CONF.rglob("*.yaml")) + sorted(CONF.rglob("*.yml"))
    if p.relative_to(CONF).parts[0] not in ("experiment", "grow")
]


def _schema(path: Path):
    group = path.relative_to(CONF).parts[0] if len(path.relative_to(CONF).parts) > 1 else None
    if group not in SCHEMAS:
        pytest.skip(f"no known schema for conf/{group or path.name}")
    module, name = SCHEMAS[group].split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONF)))
def test_conf_file_validates(path):
    schema = _schema(path)
    cfg = load_config(schema, path)
    assert isinstance(cfg, schema)
    if hasattr(cfg, "model"):
        from logah.config.model import resolve_spec

        spec = resolve_spec(cfg.model)  # the preset + overrides form a valid spec
        if getattr(cfg, "grow", None) is not None and cfg.grow.schedule:
            from logah.grow.schedule import resolve_schedule

            stages = resolve_schedule(spec, cfg.grow, cfg.trainer.max_steps)  # grows, in order
            assert [s.step for s in stages] == sorted({s.step for s in stages})
