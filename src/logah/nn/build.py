"""Build target models from specs, on ``meta`` (shapes only) or materialised with their usual init."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Iterator

import torch
from torch import nn

from logah.config.specs import ModelSpec
from logah.nn.gpt2 import GPT2
from logah.nn.llama import Llama
from logah.nn.vit import ViT

# family -> module class; with logah.config.specs' FAMILY_FIELDS / NORM_KIND, the one place a
# family is registered (docs/architecture.md lists the rest a family provides).
_FAMILIES: dict[str, type[nn.Module]] = {"gpt2": GPT2, "vit": ViT, "llama": Llama}
_NORMS = (nn.LayerNorm, nn.RMSNorm)
INIT_SCHEMES = ("default", "orthogonal")


def build_model(
    spec: ModelSpec,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    init: str = "default",
) -> nn.Module:
    """Build the GPT-2, ViT or Llama for ``spec``.

    Args:
        device: ``"meta"`` builds shapes only (no memory, no init), used by graphs and GHN targets.
        dtype: parameter dtype (default: torch's default dtype).
        seed: seeds a private generator for the init, so the same seed gives the same weights
            without touching the global RNG.
        init: ``default`` (GPT-2: N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer));
            ViT: truncated normal std 0.02; Llama: N(0, 0.02) for every matrix, as HF's
            ``initializer_range``) or ``orthogonal``.
    """
    with torch.device("meta"), _skip_reset_parameters():
        model = _FAMILIES[spec.family](spec)
    if dtype is not None:
        model = model.to(dtype=dtype)
    if torch.device(device).type == "meta":
        return model
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    init_weights(model, init, gen)
    return model


# Modules whose constructors call reset_parameters(). On meta tensors those inits are pure waste,
# and the first one costs ~4 s because meta `normal_` lazily imports torch._dynamo. Every parameter
# is (re)initialised by init_weights anyway, so construction skips them.
_RESETTABLE = tuple(
    next(c for c in cls.__mro__ if "reset_parameters" in c.__dict__)  # the defining class
    for cls in (nn.Linear, nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.Conv2d)
)


# The patch is process-wide: two threads inside at once would save each other's no-ops as the
# "originals" and leave every later model uninitialised, so builds take turns.
_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _skip_reset_parameters() -> Iterator[None]:
    with _PATCH_LOCK:
        saved = {cls: cls.__dict__["reset_parameters"] for cls in _RESETTABLE}
        try:
            for cls in _RESETTABLE:
                cls.reset_parameters = lambda self: None
            yield
        finally:
            for cls, fn in saved.items():
                cls.reset_parameters = fn


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default", gen: torch.Generator | None = None) -> None:
    """(Re-)initialise every parameter of a GPT2/ViT/Llama in place."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init: {scheme!r} is not one of: {', '.join(INIT_SCHEMES)}")
    spec: ModelSpec = model.spec
    std = 0.02
    resid_std = std / math.sqrt(2 * spec.n_layer)
    for name, p in model.named_parameters():
        if isinstance(_owner(model, name), _NORMS):
            p.fill_(1.0 if name.endswith("weight") else 0.0)
        elif name.endswith("bias"):
            p.zero_()
        elif scheme == "orthogonal" and p.ndim >= 2 and not name.endswith(("pos_embed", "cls_token")):
            nn.init.orthogonal_(p.view(p.shape[0], -1), generator=gen)
        elif spec.family == "llama":
            p.normal_(0.0, std, generator=gen)  # HF LlamaPreTrainedModel: no residual scaling
        elif spec.family == "gpt2":
            s = resid_std if name.endswith(("attn.proj.weight", "mlp.proj.weight")) else std
            p.normal_(0.0, s, generator=gen)
        else:
            nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std, generator=gen)


def _owner(model: nn.Module, param_name: str) -> nn.Module:
    return model.get_submodule(param_name.rsplit(".", 1)[0]) if "." in param_name else model


def param_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """State-dict name -> shape, computed on the meta device (no memory). Cached per spec's dims
    (the growth code asks for the same few specs many times; a meta gpt2-medium takes ~10 ms)."""
    return dict(_param_shapes(spec))


@functools.lru_cache(maxsize=64)
def _param_shapes(spec: ModelSpec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # ModelSpec hashes and compares without its growth history, which shapes do not depend on.
    # Every family's blocks are alike and listed together (blocks.0.*, blocks.1.*, ...), so one
    # block is built and its names repeated: a 1-layer meta model instead of n_layer (24: ~8x).
    one = [(n, tuple(p.shape)) for n, p in build_model(spec.replace(n_layer=1),
                                                       "meta").named_parameters()]
    at = next(i for i, (n, _) in enumerate(one) if n.startswith("blocks.0."))
    block = [(n.removeprefix("blocks.0."), s) for n, s in one if n.startswith("blocks.0.")]
    rest = [(n, s) for n, s in one if not n.startswith("blocks.0.")]
    layers = [(f"blocks.{i}.{n}", s) for i in range(spec.n_layer) for n, s in block]
    return tuple(rest[:at] + layers + rest[at:])


def count_params(spec: ModelSpec) -> int:
    return sum(math.prod(s) for s in param_shapes(spec).values())
