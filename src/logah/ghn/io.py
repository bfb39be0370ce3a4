"""GHNs on disk: a directory with ``ghn.safetensors`` (weights) + ``ghn.json`` (resolved config).

:func:`load_ghn` also accepts ``pretrained:NAME`` (a GHN shipped with the package),
``random:<preset>`` (a seeded random initialisation, for smoke tests and benchmarks) and a
Lightning checkpoint written by ``logah train-ghn`` (its layout is :data:`GHN_CHECKPOINT`:
``state_dict`` keys ``ghn.<GHN keys>``, ``hyper_parameters["ghn"]`` = the GHN config as a dict).
Loading is strict and safe (:mod:`logah.nn.readers`: weights-only checkpoints, safetensors,
strict JSON).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from logah.config.errors import ConfigError
from logah.config.ghn import GHN_PRESETS, GHNConfig
from logah.ghn.ghn import GHN
from logah.nn.io import state_problems
from logah.nn.readers import WeightsError, read_checkpoint, read_json, read_safetensors
from logah.utils.fs import atomic_path

GHN_WEIGHTS = "ghn.safetensors"
GHN_CONFIG = "ghn.json"
FORMAT = "logah-ghn"
RANDOM_PREFIX = "random:"
PRETRAINED_PREFIX = "pretrained:"


@dataclass(frozen=True)
class CheckpointLayout:
    """Where a ``logah train-ghn`` Lightning checkpoint keeps its GHN: written by
    :class:`logah.lit.ghn_module.GHNModule`, read by :func:`load_ghn`.

    ``state_dict`` holds the GHN's weights as ``prefix + <GHN key>`` (the module's ``ghn``
    attribute) and nothing else; ``hyper_parameters`` holds exactly ``hparam_names``, every value
    plain (dicts, lists, str, numbers) so ``torch.load(weights_only=True)`` reads it, with
    ``hyper_parameters[config_key]`` the resolved ``GHNConfig.to_dict()``.
    """

    prefix: str
    config_key: str
    hparam_names: tuple[str, ...]

    def hyper_parameters(self, **values: Any) -> dict[str, Any]:
        """The ``hyper_parameters`` dict, in ``hparam_names`` order; exactly those names."""
        if set(values) != set(self.hparam_names):
            raise ValueError(f"hyper_parameters: expected {self.hparam_names}, "
                             f"got {sorted(values)}")
        return {k: values[k] for k in self.hparam_names}


GHN_CHECKPOINT = CheckpointLayout(
    prefix="ghn.", config_key="ghn",
    hparam_names=("ghn", "optim", "gamma", "label_smoothing", "seed"),
)


class GHNLoadError(WeightsError):
    """A GHN file or directory is missing, unreadable or does not match its config."""


def save_ghn(ghn: GHN, path: str | os.PathLike, extra_files: dict[str, str] | None = None) -> Path:
    """Write ``path/ghn.safetensors`` + ``path/ghn.json`` (atomically, as one directory), plus
    ``extra_files`` (file name -> text, e.g. a pretrained entry's model card) in the same step."""
    out = Path(path)
    meta = {"format": FORMAT, "version": 1, "config": ghn.config.to_dict(),
            "num_params": ghn.num_params()}
    with atomic_path(out, is_dir=True) as tmp:
        state = {k: v.detach().to("cpu").contiguous() for k, v in ghn.state_dict().items()}
        save_file(state, str(tmp / GHN_WEIGHTS), metadata={"format": FORMAT})
        (tmp / GHN_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out


def load_ghn(path: str | os.PathLike, map_location: str | torch.device = "cpu",
             seed: int = 0) -> GHN:
    """A GHN from ``pretrained:NAME`` (shipped with the package, see :mod:`logah.ghn.pretrained`),
    ``random:<preset>``, a :func:`save_ghn` directory (or its ``ghn.safetensors``), or a
    Lightning ``.ckpt`` from ``logah train-ghn``. Returned in eval mode.

    Raises:
        GHNLoadError: naming the path and what is wrong (missing file, no GHN config, weights
            that do not match the config).
    """
    src = str(path)
    if src.startswith(PRETRAINED_PREFIX):
        from logah.ghn.pretrained import load_pretrained

        return load_pretrained(src[len(PRETRAINED_PREFIX):], map_location=map_location)
    if src.startswith(RANDOM_PREFIX):
        preset = src[len(RANDOM_PREFIX):]
        if preset not in GHN_PRESETS:
            raise GHNLoadError(f"--ghn {src}: unknown preset {preset!r} "
                               f"(valid: {', '.join(GHN_PRESETS)})")
        return GHN(GHNConfig(preset=preset), seed=seed).to(map_location).eval()
    p = Path(src)
    if not p.exists():
        raise GHNLoadError(f"{p}: no such file or directory")
    if p.is_dir() or p.suffix == ".safetensors":
        cfg, state = _read_dir(p if p.is_dir() else p.parent)
    else:
        cfg, state = _read_checkpoint(p)
    return _instantiate(cfg, state, str(p)).to(map_location).eval()


def _read_dir(d: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    cfg_file, weights = d / GHN_CONFIG, d / GHN_WEIGHTS
    for f in (cfg_file, weights):
        if not f.is_file():
            raise GHNLoadError(f"{f}: no such file (a GHN directory holds {GHN_CONFIG} and "
                               f"{GHN_WEIGHTS})")
    cfg = read_json(cfg_file).get("config")
    if not isinstance(cfg, dict):
        raise GHNLoadError(f"{cfg_file}: not a GHN config file (no 'config' object)")
    return cfg, read_safetensors(weights)


def _read_checkpoint(p: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    ckpt = read_checkpoint(p)  # weights only: Lightning checkpoints of logah hold plain data
    if not isinstance(ckpt.get("state_dict"), dict):
        raise GHNLoadError(f"{p}: not a Lightning checkpoint (no 'state_dict')")
    layout = GHN_CHECKPOINT
    hparams = ckpt.get("hyper_parameters")
    cfg = hparams.get(layout.config_key) if isinstance(hparams, dict) else None
    if not isinstance(cfg, dict):
        raise GHNLoadError(f"{p}: checkpoint has no hyper_parameters['{layout.config_key}'] "
                           "(the GHN config); is it from logah train-ghn?")
    state = {k.removeprefix(layout.prefix): v for k, v in ckpt["state_dict"].items()
             if isinstance(k, str) and k.startswith(layout.prefix)
             and isinstance(v, torch.Tensor)}
    if not state:
        raise GHNLoadError(f"{p}: checkpoint state_dict has no '{layout.prefix}*' weights")
    return dict(cfg), state


def _instantiate(cfg_dict: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> GHN:
    try:
        cfg = GHNConfig.from_dict(dict(cfg_dict)).resolved()
    except ConfigError as e:
        raise GHNLoadError(f"{source}: {e}") from None
    if cfg.n_types is None and "embed.type_embed.weight" in state:
        cfg.n_types = int(state["embed.type_embed.weight"].shape[0])
    with torch.device("meta"):  # no init work: every tensor is replaced by the stored one
        ghn = GHN(cfg)
    problems = state_problems({k: tuple(v.shape) for k, v in ghn.state_dict().items()},
                              {k: tuple(v.shape) for k, v in state.items()}, shown=6)
    if problems:
        raise GHNLoadError(f"{source}: weights do not match the GHN config: {problems}")
    ghn.load_state_dict(state, strict=True, assign=True)
    ghn._restore_buffers()
    return ghn
