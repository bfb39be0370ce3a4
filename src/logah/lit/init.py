"""The ``init`` choice of a training run: ``random``, ``orthogonal`` or ``weights:PATH``.

``weights:PATH`` accepts a ``.safetensors`` file, a logah weights directory (``model.safetensors``
+ ``logah.json``) or an exported Hugging Face directory (``config.json`` + weights). Loading is
strict (:func:`logah.nn.io.load_into`): a missing, unexpected or wrongly-shaped tensor is one error
listing the tensors.

Which spec the model gets when the weights carry one (``logah.json`` or an HF ``config.json``) that
differs from the config's: if the run's config sets no ``model.*`` key the weights' spec is adopted;
if it does, that is an error naming the differing fields (a silent choice either way would train
a model other than the one asked for).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from logah.config.errors import ConfigError
from logah.config.model import ModelConfig
from logah.config.specs import ModelSpec, get_preset

INIT_CHOICES = "random, orthogonal, weights:PATH"
_SCHEMES = {"random": "default", "orthogonal": "orthogonal"}  # our name -> logah.nn init scheme


@dataclass(frozen=True)
class InitChoice:
    """A parsed ``init`` value: ``kind`` is ``random``, ``orthogonal`` or ``weights``."""

    kind: str
    path: Optional[Path] = None


def parse_init(value: str) -> InitChoice:
    """Parse ``init=...``; a ``weights:`` path must exist.

    Raises:
        ConfigError: unknown choice, empty or missing path (the message names ``init``).
    """
    value = str(value).strip()
    if value in _SCHEMES:
        return InitChoice(value)
    if value.startswith("weights:"):
        path = Path(value.removeprefix("weights:")).expanduser()
        if not str(path) or str(path) == ".":
            raise ConfigError("init: weights: needs a path, e.g. init=weights:runs/predict/x")
        if not path.exists():
            raise ConfigError(f"init: {path}: no such file or directory")
        return InitChoice("weights", path)
    raise ConfigError(f"init: {value!r} is not one of: {INIT_CHOICES}")


def weights_spec(path: Path) -> Optional[ModelSpec]:
    """The spec recorded with the weights at ``path`` (logah.json or HF config.json), if any."""
    from logah.nn.io import SPEC_FILE, read_spec

    folder = path if path.is_dir() else path.parent
    if (folder / SPEC_FILE).is_file():
        return read_spec(folder)
    hf_config = folder / "config.json"
    if path.is_dir() and hf_config.is_file():
        from logah.nn.hf import spec_from_hf_config
        from logah.nn.readers import read_json

        return spec_from_hf_config(read_json(hf_config))
    return None


def spec_diff(a: ModelSpec, b: ModelSpec) -> list[str]:
    """``field: a_value != b_value`` for every spec field that differs (growth history aside)."""
    return [
        f"{f.name}: {getattr(a, f.name)!r} != {getattr(b, f.name)!r}"
        for f in dataclasses.fields(ModelSpec)
        if f.name != "growth" and getattr(a, f.name) != getattr(b, f.name)
    ]


def resolve_init_spec(spec: ModelSpec, init: InitChoice, model_given: bool) -> ModelSpec:
    """The spec to build: ``spec`` (from the config) or, see the module doc, the weights' spec.

    Raises:
        ConfigError: the config sets ``model.*`` and the weights' recorded spec differs.
    """
    if init.kind != "weights":
        return spec
    stored = weights_spec(init.path)
    if stored is None or stored == spec:
        return spec
    if not model_given:
        return stored
    diff = "; ".join(spec_diff(spec, stored))
    raise ConfigError(
        f"init: {init.path} holds a different model than model.* asks for (config vs weights: "
        f"{diff}); drop the model.* settings to adopt the weights' spec, or fix them"
    )


def model_config_for(spec: ModelSpec) -> ModelConfig:
    """A :class:`ModelConfig` that resolves to ``spec`` (every field explicit), so a run's saved
    ``config.yaml`` records an adopted spec and re-running it rebuilds the same model."""
    presets = [name for name in ("gpt2-tiny", "vit-tiny") if get_preset(name).family == spec.family]
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"arch"}
    return ModelConfig(arch=presets[0], **{k: getattr(spec, k) for k in fields})


def build_target(spec: ModelSpec, init: InitChoice, seed: int, load_weights: bool = True):
    """Build the plain ``logah.nn`` model for a run and apply the init choice.

    Args:
        seed: seeds the random/orthogonal init (same seed, same weights on every DDP rank).
        load_weights: ``False`` skips reading a ``weights:`` file (a resumed run overwrites the
            weights from its checkpoint anyway).

    Raises:
        WeightsError: unreadable weights, or one error listing mismatched tensors.
    """
    from logah.nn import build_model
    from logah.nn.io import load_into

    scheme = _SCHEMES.get(init.kind, "default")
    model = build_model(spec, seed=seed, init=scheme)
    if init.kind == "weights" and load_weights:
        load_into(model, init.path)
    return model
