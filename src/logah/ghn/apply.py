"""``init_from_ghn(model, ghn)``: fill every parameter of a model in place with a GHN's prediction.

Three kinds of model, one path each (see docs/ghn.md, "Use it on your model"):

* a logah ``GPT2`` / ``ViT`` / ``Llama``: the graph of its spec, names as they are;
* a Hugging Face ``GPT2LMHeadModel`` / ``ViTForImageClassification`` / ``LlamaForCausalLM``: its
  config becomes our
  spec, our prediction is converted with :func:`logah.nn.hf.stream_to_hf` (GPT-2's Conv1D
  transposes, the fused ``c_attn``), so the result is what ``logah predict`` exports to ``hf/``;
* any other ``nn.Module`` built from supported layers: :func:`logah.graph.build_graph` of the
  module itself (an unsupported layer is its one-line ``UnsupportedModuleError``).

Each predicted tensor is copied into the existing parameter with ``copy_`` (so the parameter keeps
its dtype, device and identity: optimisers, hooks and ``device_map`` dispatch stay valid), one
tensor at a time, under ``no_grad``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from logah.config.errors import LogahError
from logah.config.hf_spec import spec_from_hf_config
from logah.config.specs import ModelSpec
from logah.ghn.ghn import GHN
from logah.graph import build_graph, graph_for_spec
from logah.nn import GPT2, Llama, ViT

# HF classes whose every parameter has a logah counterpart (class name -> config model_type).
HF_CLASSES = {"GPT2LMHeadModel": "gpt2", "ViTForImageClassification": "vit",
              "LlamaForCausalLM": "llama"}


class InitFromGHNError(LogahError):
    """The model cannot be filled (a parameter on ``meta``, a shape or name mismatch)."""


@dataclass
class InitReport:
    """What :func:`init_from_ghn` did.

    Attributes:
        kind: ``logah`` (our GPT2/ViT/Llama), ``hf`` (a Hugging Face model) or ``module`` (your own).
        predicted: state-dict names that received a predicted tensor (one per distinct tensor).
        left: state-dict name -> why it was left as it was (buffers, tied aliases).
        seconds: wall time of the whole call (graph, GHN, copies).
    """

    kind: str
    predicted: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"init_from_ghn ({self.kind}): {len(self.predicted)} tensors predicted, "
                 f"{len(self.left)} left as they were, {self.seconds:.2f} s"]
        lines += [f"  left {name}: {why}" for name, why in self.left.items()]
        return "\n".join(lines)


def model_kind(model: nn.Module) -> tuple[str, ModelSpec | None]:
    """``("logah", spec)``, ``("hf", spec)`` or ``("module", None)``."""
    if isinstance(model, (GPT2, ViT, Llama)):
        return "logah", model.spec
    cfg = getattr(model, "config", None)
    expected = HF_CLASSES.get(type(model).__name__)
    if expected is not None and getattr(cfg, "model_type", None) == expected:
        return "hf", spec_from_hf_config(cfg)
    return "module", None


@torch.no_grad()
def init_from_ghn(model: nn.Module, ghn: GHN | str | os.PathLike, *, seed: int = 0
                  ) -> tuple[nn.Module, InitReport]:
    """Fill every parameter of ``model`` in place with ``ghn``'s prediction.

    Args:
        model: a logah ``GPT2``/``ViT``/``Llama``, an HF ``GPT2LMHeadModel``/
            ``ViTForImageClassification``/``LlamaForCausalLM`` or your own module of supported
            layers, on any device and in any dtype.
        ghn: a :class:`GHN` or anything :func:`logah.ghn.io.load_ghn` reads
            (``pretrained:NAME``, ``random:PRESET``, a GHN directory or checkpoint).
        seed: seed of a ``random:PRESET`` GHN.

    Returns:
        ``(model, report)``: the same object, filled, and an :class:`InitReport`.

    Raises:
        UnsupportedModuleError: a layer the graph builder does not support (naming it).
        InitFromGHNError: a parameter on the ``meta`` device, or a shape/name mismatch; raised
            before any parameter is changed.
    """
    t0 = time.perf_counter()
    if not isinstance(ghn, GHN):
        from logah.ghn.io import load_ghn

        ghn = load_ghn(ghn, seed=seed)
    kind, spec = model_kind(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    on_meta = [n for n, p in params.items() if p.is_meta]
    if on_meta:
        raise InitFromGHNError(
            f"init_from_ghn: parameter {on_meta[0]!r} is on the meta device (no storage to fill); "
            f"materialise the model first, e.g. model.to_empty(device='cpu')")
    if kind == "module":
        graph = build_graph(model)
        stream: Iterator[tuple[list[str], torch.Tensor]] = (
            ([n], t) for n, t in ghn.predict(graph))
    else:
        graph = graph_for_spec(spec)
        stream = (([n], t) for n, t in ghn.predict(graph))
        if kind == "hf":
            from logah.nn.hf import stream_to_hf

            stream = stream_to_hf(spec, ghn.predict(graph))
    _check_targets(graph, kind, spec, params)
    report = InitReport(kind)
    for names, tensor in stream:
        name = next((n for n in names if n in params), None)
        if name is None:
            raise InitFromGHNError(f"init_from_ghn: {type(model).__name__} has no parameter "
                                   f"{names[0]!r} (known spellings: {names})")
        params[name].copy_(tensor)  # converts to the parameter's dtype and device
        report.predicted.append(name)
        del tensor
    report.left = _left_alone(model, params, set(report.predicted))
    report.seconds = time.perf_counter() - t0
    return model, report


def _check_targets(graph, kind: str, spec: ModelSpec | None,
                   params: dict[str, nn.Parameter]) -> None:
    """Every tensor the GHN will write exists with the same shape (checked before any write)."""
    shapes = dict(zip(graph.param_names, map(tuple, graph.param_shapes), strict=True))
    if kind == "hf":
        from logah.nn.hf import hf_param_shapes

        shapes = hf_param_shapes(spec, set(params))
    for name, shape in shapes.items():
        if name not in params:
            raise InitFromGHNError(f"init_from_ghn: the model has no parameter {name!r}")
        if tuple(params[name].shape) != tuple(shape):
            raise InitFromGHNError(f"init_from_ghn: {name}: the model's shape "
                                   f"{list(params[name].shape)} != predicted {list(shape)}")


def _left_alone(model: nn.Module, params: dict[str, nn.Parameter],
                predicted: set[str]) -> dict[str, str]:
    by_id = {id(params[n]): n for n in predicted}
    left = {}
    for name, p in params.items():
        if name in predicted:
            continue
        owner = by_id.get(id(p))
        left[name] = f"tied to {owner} (filled with it)" if owner else "no counterpart in the GHN's graph"
    for name, _ in model.named_buffers():
        left[name] = "buffer (not a parameter)"
    return left
