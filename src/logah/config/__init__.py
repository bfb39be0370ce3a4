"""Config schemas (omegaconf structured dataclasses), architecture specs and loading. Torch-free."""

from logah.config.errors import ConfigError, LogahError
from logah.config.load import load_config, save_config, to_yaml
from logah.config.specs import PRESETS, ModelSpec, get_preset, gpt2_spec, llama_spec, vit_spec

__all__ = [
    "ConfigError",
    "LogahError",
    "ModelSpec",
    "PRESETS",
    "get_preset",
    "gpt2_spec",
    "llama_spec",
    "vit_spec",
    "load_config",
    "save_config",
    "to_yaml",
]
