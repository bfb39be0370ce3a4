"""What makes :func:`~logah.grow.apply_plan` fast, with results equal bit for bit to running the
operators one by one (tests/grow/test_fast.py).

Step by step, every expansion concatenates whole new tensors, so a tensor that several steps
grow (gpt2-small -> medium: ``mlp.fc.weight`` (3072, 768) -> (4096, 768) -> (4096, 1024)) is
copied once per step, each time into fresh, page-faulting memory. Instead:

* :func:`preallocate` allocates each grown tensor once at its *final* shape (the composed index
  map :func:`~logah.grow.embed.plan_map` gives it) and copies the old tensor into its leading
  corner; inside :func:`~logah.grow.common.growing_into` the operators' ``cat_new`` then writes
  only the new slabs next to that corner. Tensors whose old entries do not stay a leading corner
  (per-head ``d_v`` / ``d_qk`` interleaving, rescaled K or LayerNorm gains) keep the plain path.
* :func:`predraw_layers` draws the new layers of an ``n_layer`` step on a second thread while the
  width steps run: with an int seed every step has its own generator (``seed + i``), and a new
  block's draws depend only on the widths, so they can start at once. For gpt2-small -> medium
  the 12 new blocks are 151M entries (88M of the step's 127M random draws, 63M zeros), and
  drawing is serial (one CPU generator per step), so this is the work worth moving.

What is left is mostly irreducible on CPU: writing 355M float32 entries into fresh memory (page
faults, ~2 ns per entry on the 2-core VM) and drawing 127M normals (~2-3 ns each, serial).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from typing import Optional

import torch

from logah.config.errors import LogahError
from logah.config.grow import GrowInit, GrowStep
from logah.config.specs import ModelSpec
from logah.grow.common import State, generator
from logah.grow.depth import block_shapes, new_block
from logah.grow.embed import Map, grown_spec, plan_map
from logah.nn import param_shapes
from logah.nn.io import state_problems


def _is_prefix(idx: torch.Tensor) -> bool:
    return bool(getattr(idx, "_prefix", False)) or torch.equal(idx, torch.arange(idx.numel()))


def preallocate(spec: ModelSpec, state: State, steps: Sequence[GrowStep],
                emb_map: Optional[Map] = None) -> tuple[State, list[tuple[torch.Tensor,
                                                                           torch.Tensor]]]:
    """``state`` with every tensor the plan grows moved into the leading corner of a buffer of its
    final shape, and the ``(buffer, corner)`` pairs for :func:`~logah.grow.common.growing_into`.
    ``emb_map``: the plan's :func:`~logah.grow.embed.plan_map`, when the caller has it.

    Anything unusual (meta tensors, tensors autograd tracks, a state that does not match
    ``spec``, a plan the operators will reject) returns ``state`` unchanged and no buffers: the
    operators then run as they do alone, and report errors with their own messages.
    """
    found = {n: tuple(t.shape) for n, t in state.items()}
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in state.values())
    if tracked or any(t.is_meta for t in state.values()) or state_problems(param_shapes(spec),
                                                                            found):
        return state, []
    try:
        emb_map = plan_map(spec, steps) if emb_map is None else emb_map
        end = spec
        for step in steps:
            end = grown_spec(end, step)
        final = param_shapes(end)
    except (LogahError, ValueError, KeyError, TypeError):
        return state, []
    out, pairs, used = dict(state), [], set()
    for name, emb in emb_map.items():
        if emb is None or emb.source in used or emb.scale != 1.0:
            continue  # rescaled tensors (K, gains) are computed anew by their operator
        old, shape = state[emb.source], tuple(final[name])
        grows = len(shape) == old.ndim and all(a <= b for a, b in zip(old.shape, shape))
        if not grows or tuple(old.shape) == shape or not all(map(_is_prefix, emb.index)):
            continue  # (a shrinking plan is the operators' error to report)
        buf = torch.empty(shape, dtype=old.dtype, device=old.device)
        corner = buf[tuple(slice(0, s) for s in old.shape)]  # (old shape), strides of buf
        corner.copy_(old)
        out[emb.source] = corner
        pairs.append((buf, corner))
        used.add(emb.source)
    return out, pairs


def predraw_layers(pool: Executor, spec: ModelSpec, state: State, steps: Sequence[GrowStep],
                   base: Optional[int], init: Optional[GrowInit]) -> dict[int, Iterator[State]]:
    """Start drawing the new blocks of the plan's ``n_layer`` step on ``pool``: {step index: the
    blocks, in the order :func:`~logah.grow.depth.add_layers` inserts them}. Empty (the step
    draws its own) for a shared generator (``base`` None: draws depend on the earlier steps), a
    non-CPU state, or a plan with several or no layer steps."""
    idx = [i for i, s in enumerate(steps) if s.op == "n_layer"]
    template = next(iter(state.values()), None)
    if base is None or len(idx) != 1 or template is None or template.device.type != "cpu":
        return {}
    (i,) = idx
    at = spec
    try:
        for step in steps[:i]:
            at = grown_spec(at, step)  # the widths the new blocks are built at
        shapes = block_shapes(at)  # here: building a (meta) model is not for the drawing thread
    except (LogahError, ValueError, KeyError, TypeError):
        return {}  # a bad plan: the operators say what is wrong
    n = steps[i].to - at.n_layer
    if n <= 0:
        return {}

    def draw() -> list[State]:
        gen, _ = generator(base + i)  # the generator add_layers would make for step i
        return [new_block(shapes, template, init or GrowInit(), gen) for _ in range(n)]

    future = pool.submit(draw)
    return {i: _blocks(future)}


def _blocks(future: Future) -> Iterator[State]:
    yield from future.result()  # waits for the drawing thread only when the first block is due


def finish(state: State, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> State:
    """The grown state, every tensor contiguous: a buffer's corner that did not reach the final
    shape (an operator took the plain path half-way) is copied out of its buffer."""
    return {k: (v if v.is_contiguous() else v.contiguous()) for k, v in state.items()} if pairs \
        else state
