"""Load a config: schema <- YAML file <- ``key=value`` overrides, one-line errors.

The schemas check themselves when ``OmegaConf.to_object`` builds them (:mod:`logah.config.checked`),
so a loaded config is checked exactly once.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from logah.config.errors import ConfigError
from logah.utils.fs import atomic_write_text

T = TypeVar("T")


def _one_line(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None) or "?"
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return f"{key}: unknown key{_valid_keys_hint(e, parent)}"
    if isinstance(e, MissingMandatoryValue):
        return f"{key}: missing required value"
    return f"{key}: {msg}"


def _valid_keys_hint(e: OmegaConfBaseException, parent: str) -> str:
    obj_type = getattr(e, "object_type", None)
    if obj_type is not None and dataclasses.is_dataclass(obj_type):
        names = ", ".join(f.name for f in dataclasses.fields(obj_type))
        where = f" of {parent}" if parent else ""
        return f" (valid keys{where}: {names})"
    return ""


def _parse_overrides(overrides: list[str]) -> Any:
    for tok in overrides:
        if "=" not in tok or tok.startswith("="):
            raise ConfigError(f"override {tok!r}: expected key=value (e.g. trainer.max_steps=50)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        raise ConfigError(f"overrides: {str(e).splitlines()[0]}") from None


def _load_file(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: file not found")
    try:
        cfg = OmegaConf.load(p)
    except yaml.MarkedYAMLError as e:  # name the line and the actual problem, not the context
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"--config {p}: cannot parse: {where}{e.problem or e.context}") from None
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        raise ConfigError(f"--config {p}: cannot parse: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"--config {p}: expected a mapping of config keys, got a list")
    return cfg


def load_config(
    schema: type[T], config_file: str | os.PathLike | None = None, overrides: list[str] = ()
) -> T:
    """Merge ``schema`` defaults, the YAML file and dotlist overrides into a typed, validated object.

    Raises:
        ConfigError: one line naming the file or key (unknown key, wrong type, missing value, or a
            value outside its closed set of choices).
    """
    layers = [OmegaConf.structured(schema)]
    if config_file is not None:
        layers.append(_load_file(config_file))
    layers.append(_parse_overrides(list(overrides)))
    try:
        merged = OmegaConf.merge(*layers)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(e)) from None
    return obj  # built, so checked: every group is a logah.config.checked.Checked


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config (atomically) so a run folder records exactly what ran."""
    atomic_write_text(path, to_yaml(cfg))
