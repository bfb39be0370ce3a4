"""Shared pieces of the growth operators: errors, the checks every step starts with (:func:`begin`),
seeded noise, padding, step records (:class:`Step`).

Every operator is pure: it returns a new spec and a new state dict and never writes into its
inputs. Tensors an operator does not change are shared with the input dict, not copied.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, Optional

import torch

from logah.config.errors import LogahError
from logah.config.grow import GrowInit
from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.nn import param_shapes
from logah.nn.io import check_shapes

State = dict[str, torch.Tensor]
Seed = int | torch.Generator | None

# The dims a growth step records as its source (what the model looked like before the step).
DIMS = ("n_layer", "d_model", "n_heads", "d_qk", "d_v", "d_mlp", "n_ctx", "n_kv_heads")


def source_dims(spec: ModelSpec) -> dict[str, int]:
    """The dims of ``spec`` a growth step records (n_ctx for LMs, n_kv_heads for Llama)."""
    skip = {"n_ctx"} if spec.family not in CAUSAL_LM else set()
    if spec.family != "llama":
        skip.add("n_kv_heads")
    return {k: getattr(spec, k) for k in DIMS if k not in skip}


class GrowError(LogahError):
    """A growth request that cannot be carried out (shrinking, wrong family, bad position, ...)."""


def generator(seed: Seed) -> tuple[torch.Generator, int | None]:
    """A CPU generator from an int seed (``None`` means 0) or a caller's generator."""
    if isinstance(seed, torch.Generator):
        return seed, None
    seed = 0 if seed is None else int(seed)
    return torch.Generator().manual_seed(seed), seed


def noise(shape: tuple[int, ...] | torch.Size, std: float, like: torch.Tensor,
          gen: torch.Generator, mean: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``mean + N(0, std)`` of ``shape`` in ``like``'s dtype, drawn where ``like`` lives.

    float32/float64 states draw in their own precision (half precisions in float32), so growing
    a model mid-training makes no float64 temporaries and no host copies: a float32 draw is ~4x
    faster than a float64 one on CPU, which is most of an expansion's time. On an accelerator the
    draw uses a device generator seeded by one draw of ``gen``. The same seed, dtype and device
    type give the same values (ranks of a DDP run grow identically).
    """
    if like.is_meta:  # shapes only (a grown spec derived without reading any weights)
        return torch.empty(tuple(shape), dtype=like.dtype, device="meta")
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    if like.device.type == "cpu":
        x = torch.empty(tuple(shape), dtype=dtype).normal_(0.0, std, generator=gen)
    else:
        dev_gen = torch.Generator(like.device)
        dev_gen.manual_seed(int(torch.randint(0, 2**62, (), generator=gen)))
        x = torch.empty(tuple(shape), dtype=dtype, device=like.device)
        x.normal_(0.0, std, generator=dev_gen)
    if not (isinstance(mean, float) and mean == 0.0):
        x += mean
    return x.to(like.dtype)


def zeros(shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(tuple(shape), dtype=like.dtype, device=like.device)


# Grown tensors preallocated at their final shapes by apply_plan (logah.grow.fast), keyed by
# storage address: [buffer, shape of the corner filled so far]. Empty outside :func:`growing_into`.
_BUFFERS: contextvars.ContextVar[dict[int, list[Any]]] = contextvars.ContextVar("grow_buffers",
                                                                               default={})


@contextlib.contextmanager
def growing_into(buffers: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Within: :func:`cat_new` appends into these ``(buffer, corner)`` pairs in place (``corner``:
    the view ``buffer[:a, :b, ...]`` holding the tensor so far) instead of allocating a new tensor,
    so a tensor grown by several steps is written once, at its final shape."""
    token = _BUFFERS.set({b.untyped_storage().data_ptr(): [b, tuple(c.shape)] for b, c in buffers})
    try:
        yield
    finally:
        _BUFFERS.reset(token)


def _append_in_place(t: torch.Tensor, dim: int, new: torch.Tensor) -> Optional[torch.Tensor]:
    """``cat([t, new], dim)`` written into ``t``'s buffer, when ``t`` is the corner filled so far
    (so nothing else can see the entries written) and the buffer has room; else None."""
    entry = _BUFFERS.get().get(t.untyped_storage().data_ptr()) if not t.is_meta else None
    if entry is None or tuple(t.shape) != entry[1] or t.storage_offset() != 0:
        return None
    buf, shape = entry
    if (t.stride() != buf.stride() or new.ndim != t.ndim or new.dtype != t.dtype
            or new.device != t.device):
        return None
    n = new.shape[dim]
    if shape[dim] + n > buf.shape[dim] or any(new.shape[d] != shape[d] for d in range(t.ndim)
                                              if d != dim):
        return None
    corner = [slice(0, s) for s in shape]
    corner[dim] = slice(shape[dim], shape[dim] + n)  # the new slab, beside the old corner
    buf[tuple(corner)].copy_(new)
    corner[dim] = slice(0, shape[dim] + n)
    entry[1] = tuple(s + (n if d == dim else 0) for d, s in enumerate(shape))
    return buf[tuple(corner)]


def cat_new(t: torch.Tensor, dim: int, new: torch.Tensor) -> torch.Tensor:
    """``t`` with the entries ``new`` appended along ``dim`` (in place inside
    :func:`growing_into` when ``t`` is a buffer's filled corner: the old entries are not copied)."""
    dim %= max(t.ndim, 1)
    grown = _append_in_place(t, dim, new) if _BUFFERS.get() else None
    return torch.cat([t, new], dim=dim) if grown is None else grown


def new_shape(t: torch.Tensor, dim: int, n: int) -> tuple[int, ...]:
    """The shape of ``n`` new slices of ``t`` along ``dim``."""
    shape = list(t.shape)
    shape[dim] = n
    return tuple(shape)


def check_input(spec: ModelSpec, state: State, op: str) -> None:
    """The state must be exactly the spec's parameters (names and shapes), else one error line."""
    check_shapes(param_shapes(spec), state, f"grow {op}")


def check_target(spec: ModelSpec, field: str, to: int) -> int:
    """Validate a step's target value; returns how much the field grows (0 means no-op)."""
    if isinstance(to, bool) or not isinstance(to, int):
        raise GrowError(f"{field}: expected an integer target, got {to!r}")
    old = getattr(spec, field)
    if to < old:
        raise GrowError(f"{field}: cannot shrink {old} -> {to} (growth only adds)")
    return to - old


@dataclasses.dataclass(frozen=True)
class Step:
    """One growth step under way: which spec field grows to what, by how much, and its draws."""

    field: str
    to: int
    n: int  # how much ``field`` grows; 0: the step is a no-op
    gen: torch.Generator
    seed: int | None  # recorded in the history (None: the caller passed a generator)
    init: GrowInit

    def record(self, spec: ModelSpec, args: dict[str, Any] | None = None,
               **changes: Any) -> ModelSpec:
        """``spec`` grown (``field = to`` plus ``changes``), with this step appended to its
        growth history; ``args`` are recorded beside ``to``."""
        step = {
            "op": self.field,
            "args": {"to": self.to, **(args or {})},
            "seed": self.seed,
            "init": dataclasses.asdict(self.init),
            "source": source_dims(spec),
        }
        return spec.replace(growth=(*spec.growth, step), **{self.field: self.to}, **changes)


def begin(spec: ModelSpec, state: State, field: str, to: int, seed: Seed,
          init: GrowInit | None) -> Step:
    """What every operator does first: check the state against the spec and the target against
    the current value, default the init, make the seeded generator. ``step.n == 0``: no-op."""
    check_input(spec, state, field)
    n = check_target(spec, field, to)
    gen, s = generator(seed)
    return Step(field, to, n, gen, s, init or GrowInit())
