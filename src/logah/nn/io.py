"""Weights on disk: ``model.safetensors`` + ``logah.json`` (the spec and its growth history).

A weights directory is what ``logah predict`` and ``logah grow`` write and ``init=weights:PATH``
reads. Where the dims are standard, :func:`save_weights` also writes a Hugging Face directory
(``hf/``) loadable with ``from_pretrained``. Loading is strict: a missing, unexpected or
wrongly-shaped tensor is one error listing the tensors.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from logah.config.errors import ConfigError
from logah.config.specs import ModelSpec
from logah.nn.readers import WeightsError, iter_safetensors, read_json, read_sharded_safetensors
from logah.utils.fs import atomic_path, atomic_write_text

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "logah.json"
HF_DIR = "hf"


def save_weights(
    state: dict[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    spec: ModelSpec,
    out_dir: str | os.PathLike,
    extra: dict | None = None,
    hf: bool | None = None,
) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/logah.json`` atomically.

    ``state`` may be a dict or an iterable of (name, tensor) pairs (streamed into a dict of
    contiguous CPU tensors first: safetensors writes one file from one mapping).

    Args:
        hf: also write a Hugging Face directory ``out_dir/hf/`` (see :func:`logah.nn.hf.export_hf`).
            ``None``: when ``spec.is_standard``; ``True``: always (non-standard dims raise before
            anything is written); ``False``: never.
    """
    if hf and not spec.is_standard:
        from logah.nn.hf import check_hf_exportable

        check_hf_exportable(spec)  # raises HFConversionError naming the offending dims
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = state.items() if isinstance(state, dict) else state
    tensors = {n: t.detach().to("cpu").contiguous() for n, t in items}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "family": spec.family})
    meta = {"spec": spec.to_dict(), **(extra or {})}
    atomic_write_text(out / SPEC_FILE, json.dumps(meta, indent=2))
    if hf or (hf is None and spec.is_standard):
        from logah.nn.hf import export_hf

        export_hf(spec, tensors, out / HF_DIR)
    elif (out / HF_DIR).is_dir():
        shutil.rmtree(out / HF_DIR)  # a stale export of an earlier model would not match
    return out


def read_spec(path: str | os.PathLike) -> ModelSpec | None:
    """The spec stored beside a weights file (``logah.json``), or None if there is none."""
    p = Path(path)
    f = (p if p.is_dir() else p.parent) / SPEC_FILE
    if not f.is_file():
        return None
    spec = read_json(f).get("spec")
    if not isinstance(spec, dict):
        raise WeightsError(f"{f}: not a logah spec file (no 'spec' object)")
    try:
        return ModelSpec.from_dict(spec)
    except (ConfigError, KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"{f}: not a valid logah spec ({e})") from None


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file, a logah weights dir (one file or shards with an index) or a
    Hugging Face dir into our names."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "config.json").is_file() and not (p / SPEC_FILE).is_file():
            from logah.nn.hf import load_hf_dir  # HF names are converted only in logah.nn.hf

            return load_hf_dir(p)[1]
        from logah.nn.shards import INDEX_FILE

        if (p / WEIGHTS_FILE).is_file():
            return dict(iter_safetensors(p / WEIGHTS_FILE))
        if (p / INDEX_FILE).is_file():
            return read_sharded_safetensors(p / INDEX_FILE)
        raise WeightsError(f"{p / WEIGHTS_FILE}: no such file (expected {WEIGHTS_FILE}, "
                           f"shards with {INDEX_FILE}, or an HF config.json)")
    return dict(iter_safetensors(p))


def state_problems(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]],
                   shown: int = 8) -> str:
    """``missing N; unexpected N; N: shape [..] != model [..]`` for every difference between two
    name -> shape maps (the first ``shown`` of them); ``""`` when they agree."""
    problems = [f"missing {n}" for n in expected if n not in found]
    problems += [f"unexpected {n}" for n in found if n not in expected]
    problems += [f"{n}: shape {list(found[n])} != model {list(s)}" for n, s in expected.items()
                 if n in found and tuple(found[n]) != tuple(s)]
    more = f"; ... ({len(problems)} in all)" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict check: same names and shapes as ``model``; one error listing every mismatch."""
    check_shapes({n: tuple(p.shape) for n, p in model.named_parameters()}, state, source)


def check_shapes(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor],
                 source: str) -> None:
    """:func:`check_state` against a name -> shape map (e.g. ``param_shapes(spec)``)."""
    problems = state_problems(expected, {n: tuple(t.shape) for n, t in state.items()})
    if problems:
        raise WeightsError(f"{source}: weights do not match the model: {problems}")


@torch.no_grad()
def load_into(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Strictly load weights from ``path`` into ``model`` (in place)."""
    state = load_state(path)
    check_state(model, state, str(path))
    for n, p in model.named_parameters():
        p.copy_(state[n].to(dtype=p.dtype))
