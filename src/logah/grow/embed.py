"""Where each old tensor sits inside the grown one: the index maps of the growth operators.

Every function-preserving expansion keeps the old entries of a tensor (possibly rescaled) and adds
new ones around them. :func:`step_map` says, for one step, where: for each parameter of the grown
model either ``None`` (a whole new tensor, e.g. a new layer) or an :class:`Embedding` — the old
tensor's name, for every dim the new position of each old slice, and the factor the operator
multiplied the old entries by (``sqrt(d_qk'/d_qk)`` for K, ``sqrt(h/h')`` for LayerNorm gains,
1 elsewhere)::

    grown[name][ix(index)] == old[source] * scale        (ix: the outer product of the indices)

:func:`plan_map` composes the maps of a list of steps, and :func:`carry_state` uses one to move
per-parameter optimizer state (AdamW ``exp_avg`` / ``exp_avg_sq``, SGD ``momentum_buffer``, the
``step`` count) into the grown shapes: old entries unchanged, new entries zero. Pure functions of
specs and tensors (no Lightning, no optimizer objects).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch

from logah.config.grow import GrowStep, step_from_dict
from logah.config.specs import ModelSpec
from logah.grow.depth import spread_positions
from logah.grow.hidden import _role
from logah.nn import param_shapes

Index = tuple[torch.Tensor, ...]  # per dim: LongTensor (old size,) of new positions


@dataclass(frozen=True)
class Embedding:
    """``grown[ix(index)] == old[source] * scale`` (``index[d]``: new positions of the old slices
    along dim d)."""

    source: str
    index: Index
    scale: float = 1.0

    def then(self, nxt: Embedding) -> Embedding:
        """This embedding followed by ``nxt`` (which maps this one's tensor further)."""
        index = tuple(_compose(a, b) for a, b in zip(self.index, nxt.index))
        return Embedding(self.source, index, self.scale * nxt.scale)


def _compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Positions ``a`` (old -> mid) followed by ``b`` (mid -> new): ``b[a]``, without the gather
    when either is a prefix (most dims of most steps)."""
    if getattr(b, "_prefix", False):
        return a
    if getattr(a, "_prefix", False):
        return b[: a.numel()]
    return b[a]


Map = dict[str, Optional[Embedding]]


def _ar(n: int) -> torch.Tensor:
    """``arange(n)``, marked as a prefix so composing with it needs no gather."""
    t = torch.arange(n)
    t._prefix = True  # type: ignore[attr-defined]
    return t


def _identity(shape: tuple[int, ...], source: str) -> Embedding:
    return Embedding(source, tuple(_ar(n) for n in shape))


def _per_head(n_heads: int, old: int, new: int) -> torch.Tensor:
    """New positions of head-major (n_heads, old) slices in (n_heads, new): head h's slice j goes
    to h * new + j (per-head widths grow inside each head's block)."""
    return (torch.arange(n_heads)[:, None] * new + torch.arange(old)[None, :]).reshape(-1)


def _dims_changed(spec: ModelSpec, step: GrowStep, name: str,
                  shape: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """For one tensor of ``spec``: dim -> new positions of its old slices, for the dims ``step``
    changes (every other dim keeps its positions)."""
    op, local = step.op, name.split(".", 2)[-1] if name.startswith("blocks.") else name
    H = spec.n_heads
    if spec.family == "llama" and op in ("n_heads", "d_v", "d_qk"):
        return _llama_dims_changed(spec, step, local)
    if op == "d_mlp" and local in ("mlp.fc.weight", "mlp.fc.bias", "mlp.gate.weight"):
        return {0: _ar(shape[0])}
    if op == "d_mlp" and local == "mlp.proj.weight":
        return {1: _ar(shape[1])}
    if op == "d_v" and local in ("attn.v.weight", "attn.v.bias"):
        return {0: _per_head(H, spec.d_v, step.to)}
    if op == "d_v" and local == "attn.proj.weight":
        return {1: _per_head(H, spec.d_v, step.to)}
    if op == "d_qk" and local.startswith(("attn.q.", "attn.k.")):
        return {0: _per_head(H, spec.d_qk, step.to)}
    if op == "d_model":
        role, dim = _role(name)
        return {} if role == "unchanged" else {dim % len(shape): _ar(spec.d_model)}
    # n_heads appends whole heads (old entries keep their positions); n_ctx appends wpe rows.
    return {}


def _llama_dims_changed(spec: ModelSpec, step: GrowStep, local: str) -> dict[int, torch.Tensor]:
    """Llama's per-group query heads, GQA value heads and rotary halves (logah.grow.gqa)."""
    H, kv, k, v = spec.n_heads, spec.kv_heads, spec.d_qk, spec.d_v
    if step.op == "n_heads":  # query head (group, h) moves to group * g' + h
        g, g2 = H // kv, step.to // kv
        heads = (torch.arange(kv)[:, None] * g2 + torch.arange(g)[None, :]).reshape(-1)
        per = {"attn.q.weight": (0, k), "attn.proj.weight": (1, v)}.get(local)
        if per is None:
            return {}
        dim, width = per
        return {dim: (heads[:, None] * width + torch.arange(width)[None, :]).reshape(-1)}
    if step.op == "d_v":
        if local == "attn.v.weight":
            return {0: _per_head(kv, v, step.to)}
        return {1: _per_head(H, v, step.to)} if local == "attn.proj.weight" else {}
    heads = {"attn.q.weight": H, "attn.k.weight": kv}.get(local)  # d_qk: both rotary halves
    if heads is None:
        return {}
    h, h2 = k // 2, step.to // 2
    inside = torch.cat([torch.arange(h), h2 + torch.arange(h)])  # old dim -> new dim in a head
    return {0: (torch.arange(heads)[:, None] * step.to + inside[None, :]).reshape(-1)}


def _scale(spec: ModelSpec, step: GrowStep, name: str) -> float:
    if step.op == "d_qk" and ".attn.k." in f".{name}":
        return (step.to / spec.d_qk) ** 0.5
    if step.op == "d_model" and _role(name)[0] == "gain":
        return (spec.d_model / step.to) ** 0.5
    return 1.0


def grown_spec(spec: ModelSpec, step: GrowStep) -> ModelSpec:
    """The spec's dims after ``step`` (``ln_eps`` and the history are not tracked here)."""
    if spec.family == "llama":  # what logah.grow.gqa records beside the grown field
        if step.op == "n_heads":
            return spec.replace(n_heads=step.to, n_kv_heads=spec.kv_heads)
        if step.op == "n_kv_heads":
            return spec.replace(n_kv_heads=step.to, n_heads=step.to * spec.n_heads // spec.kv_heads)
        if step.op == "d_qk":
            return spec.replace(d_qk=step.to, rope_dims=(*(spec.rope_dims or (spec.d_qk,)), step.to))
    return spec.replace(**{step.op: step.to})


def step_map(spec: ModelSpec, step: GrowStep | Mapping[str, Any]) -> Map:
    """The index map of one growth step on ``spec`` (see the module doc).

    Keys are the grown model's parameter names, in its state-dict order.
    """
    step = step if isinstance(step, GrowStep) else step_from_dict(dict(step))
    old_shapes = param_shapes(spec)
    new_shapes = param_shapes(grown_spec(spec, step))
    rename: dict[str, Optional[str]] = {n: n for n in new_shapes}
    if step.op == "n_layer" and step.to > spec.n_layer:
        positions = step.positions or spread_positions(spec.n_layer, step.to - spec.n_layer)
        old_of = iter(range(spec.n_layer))
        layer = {j: (None if j in positions else next(old_of)) for j in range(step.to)}
        for n in new_shapes:
            if n.startswith("blocks."):
                j, rest = n.split(".", 2)[1:]
                i = layer[int(j)]
                rename[n] = None if i is None else f"blocks.{i}.{rest}"
    out: Map = {}
    for n in new_shapes:
        src = rename[n]
        if src is None:
            out[n] = None
            continue
        shape = old_shapes[src]
        index = [_ar(s) for s in shape]
        for d, idx in _dims_changed(spec, step, src, shape).items():
            index[d] = idx
        out[n] = Embedding(src, tuple(index), _scale(spec, step, src))
    return out


def plan_map(spec: ModelSpec, steps: Iterable[GrowStep | Mapping[str, Any]]) -> Map:
    """The composed index map of steps applied in order (as :func:`~logah.grow.apply_plan` does)."""
    total: Map = {n: _identity(s, n) for n, s in param_shapes(spec).items()}
    for raw in steps:
        step = raw if isinstance(raw, GrowStep) else step_from_dict(dict(raw))
        m = step_map(spec, step)
        total = {n: (None if e is None or total[e.source] is None else total[e.source].then(e))
                 for n, e in m.items()}
        spec = grown_spec(spec, step)
    return total


@torch.no_grad()
def place(old: torch.Tensor, emb: Embedding, shape: tuple[int, ...] | torch.Size,
          scale: float = 1.0) -> torch.Tensor:
    """A zero tensor of ``shape`` with ``old * scale`` at ``emb``'s positions (old's dtype and
    device). Contiguous index ranges become slices, so no index grid is materialised for them;
    when every dim is one, only the entries outside the old block are zero-filled (each entry
    is written once: AdamW's two moments of gpt2-medium are 2.7 GB)."""
    new = torch.empty(tuple(shape), dtype=old.dtype, device=old.device)
    view_index: list[Any] = []
    picked: list[tuple[int, torch.Tensor]] = []
    for d, idx in enumerate(emb.index):
        n = idx.numel()
        start = int(idx[0]) if n else 0
        if n == 0 or torch.equal(idx, torch.arange(start, start + n)):
            view_index.append(slice(start, start + n))
        else:
            view_index.append(slice(None))
            picked.append((d, idx.to(old.device)))
    if picked:
        new.zero_()
    else:
        _zero_outside(new, view_index)
    view = new[tuple(view_index)]  # a view: writes land in ``new``
    src = old * scale if scale != 1.0 else old
    if not picked:
        view.copy_(src)
    elif len(picked) == 1:
        view.index_copy_(picked[0][0], picked[0][1], src)
    else:  # several interleaved dims at once (does not happen for a single step); small tensors
        grid = [slice(None)] * old.ndim
        for d, idx in picked:
            shape_d = [1] * old.ndim
            shape_d[d] = -1
            grid[d] = idx.view(shape_d)
        view[tuple(grid)] = src
    return new


def _zero_outside(new: torch.Tensor, box: list[slice]) -> None:
    """Zero ``new`` outside ``new[box]``: for each dim d, the slabs before and after box[d]
    within box[:d] (all of the later dims), which tile the outside exactly once."""
    for d, s in enumerate(box):
        for part in (slice(0, s.start), slice(s.stop, new.shape[d])):
            if part.stop > part.start:
                new[(*box[:d], part)].zero_()


def carry_state(old: Mapping[str, Mapping[str, Any]], emb_map: Mapping[str, Optional[Embedding]],
                shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    """Per-parameter optimizer state (keyed by parameter name) moved into the grown shapes.

    Tensors shaped like their parameter (``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``, ...)
    keep their old entries unchanged at the embedding's positions and are zero elsewhere; other
    values (the ``step`` count) are copied. Moments are *not* rescaled with the parameter (a
    transplant, as MSG does); whole new parameters get no state, so the optimizer starts them
    fresh (step 0).

    Args:
        old: name -> state of the model before growth.
        emb_map: :func:`plan_map` of the growth.
        shapes: name -> shape of the grown model's parameters.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, emb in emb_map.items():
        if emb is None or emb.source not in old:
            continue
        src_shape = tuple(len(i) for i in emb.index)
        out[name] = {
            k: (place(v, emb, shapes[name]) if torch.is_tensor(v) and tuple(v.shape) == src_shape
                and v.ndim > 0 else (v.clone() if torch.is_tensor(v) else v))
            for k, v in old[emb.source].items()
        }
    return out
