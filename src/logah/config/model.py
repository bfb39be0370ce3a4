"""``model.*`` config group: a preset name plus optional per-field overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from logah.config.checked import Checked, choices
from logah.config.hf_spec import is_hf_arch, spec_from_hf_path
from logah.config.specs import PRESETS, ModelSpec, get_preset

__all__ = ["ModelConfig", "ModelOnlyConfig", "choices", "override_spec", "resolve_spec"]


@dataclass
class ModelConfig(Checked):
    """Which target transformer. Any field left ``None`` keeps the preset's value.

    ``arch`` is a preset name or the path of a Hugging Face ``config.json`` (or a model directory
    holding one; GPT-2, ViT or Llama): its spec is the starting point the overrides apply to.

    Changing ``d_model`` or ``n_heads`` re-ties ``d_qk``/``d_v`` (= d_model / n_heads) and ``d_mlp``
    (= 4 d_model) when the preset had them tied and they are not given explicitly.
    """

    KEY = "model"

    arch: str = field(default="gpt2-tiny", metadata={
        "choices": lambda: sorted(PRESETS), "accepts": is_hf_arch,
        "also": "or an HF config.json / model directory"})
    n_layer: Optional[int] = None
    d_model: Optional[int] = None
    n_heads: Optional[int] = None
    d_qk: Optional[int] = None
    d_v: Optional[int] = None
    d_mlp: Optional[int] = None
    ln_eps: Optional[float] = None
    vocab_size: Optional[int] = None
    n_ctx: Optional[int] = None
    tie_embeddings: Optional[bool] = None
    image_size: Optional[int] = None
    patch_size: Optional[int] = None
    in_chans: Optional[int] = None
    num_classes: Optional[int] = None
    n_kv_heads: Optional[int] = None
    rope_base: Optional[float] = None
    rope_dims: Optional[list[int]] = None
    rope_scaling: Optional[list[float]] = None


def resolve_spec(cfg: ModelConfig) -> ModelSpec:
    """Preset (or HF config) + overrides -> a validated :class:`ModelSpec`."""
    base = get_preset(cfg.arch) if cfg.arch in PRESETS else spec_from_hf_path(cfg.arch)
    changes = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name != "arch" and getattr(cfg, f.name) is not None
    }
    return override_spec(base, changes)


def override_spec(base: ModelSpec, changes: dict) -> ModelSpec:
    """``base`` with ``changes`` applied, re-tying head/MLP widths as :class:`ModelConfig` says."""
    changes = dict(changes)
    d_model = changes.get("d_model", base.d_model)
    n_heads = changes.get("n_heads", base.n_heads)
    if "d_model" in changes or "n_heads" in changes:
        # Each of d_qk / d_v is re-tied on its own unless given explicitly.
        if base.heads_tied and not ("d_qk" in changes and "d_v" in changes):
            if d_model % n_heads:
                from logah.config.errors import ConfigError

                raise ConfigError(
                    f"model.d_model: {d_model} is not divisible by model.n_heads={n_heads}"
                )
            changes.setdefault("d_qk", d_model // n_heads)
            changes.setdefault("d_v", d_model // n_heads)
        if base.d_mlp == 4 * base.d_model and "d_mlp" not in changes:
            changes["d_mlp"] = 4 * d_model
    return base.replace(**changes)


@dataclass
class ModelOnlyConfig(Checked):
    """Root schema of commands that only need a model (``logah summary``, ``logah graph``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
