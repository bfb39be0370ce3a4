"""Fused projections: sibling layers that read one input in parallel become ONE graph node.

Why: Q, K and V (and a gated MLP's gate and up) are Linear layers with the same input, the same
consumer and often the same shape. As separate graph nodes they are indistinguishable to any
message-passing encoder, so a hypernetwork predicts ``q == k == v`` (LoGAH's reference meets this
with Llama's separate ``q_proj``/``k_proj``). The references avoid it for GPT-2 / ViT only because
HF's ``c_attn`` and torchvision's ``in_proj_weight`` are already one tensor: the GHN predicts one
(3d x d) tensor whose Q, K and V rows differ. We do the same for any declared group: the group's
weights become one ``conv`` node of the fused shape (sum of the members' rows, in, kh, kw), their
biases one ``bias`` node, and every member parameter maps to (that node, its row slice).

A module declares its groups by naming child layers (``nn.Linear`` / ``nn.Conv*`` attributes)::

    class Attention(nn.Module):
        fused_projections = (("q", "k", "v"),)     # a class attribute, nothing to import

or, for a module one cannot edit (a third-party class), with :func:`register_fused`. Members must
have the same input features and kernel, and either all or none a bias; each must be *called* on
the same input (checked while tracing). The graph stacks the members' rows in the declared order
(``param_rows``); the GHN reads them from its decoded tensor interleaved in proportion to their
sizes (:mod:`logah.ghn.rows`), so a member's row sits at the same decoder row at every width.
"""

from __future__ import annotations

import threading

from torch import nn

ATTRIBUTE = "fused_projections"
_registry: dict[type[nn.Module], tuple[tuple[str, ...], ...]] = {}
_lock = threading.Lock()


def _check(groups: tuple[tuple[str, ...], ...], where: str) -> tuple[tuple[str, ...], ...]:
    out = tuple(tuple(str(m) for m in g) for g in groups)
    seen: set[str] = set()
    for g in out:
        if len(g) < 2 or len(set(g)) != len(g):
            raise ValueError(f"{where}: a fused group needs >= 2 distinct members, got {list(g)}")
        if seen & set(g):
            raise ValueError(f"{where}: {sorted(seen & set(g))} in more than one fused group")
        seen |= set(g)
    return out


def register_fused(module_type: type[nn.Module], *groups: tuple[str, ...]) -> None:
    """Declare fused groups for ``module_type`` (replaces an earlier registration).

    Example: ``register_fused(LlamaAttention, ("q_proj", "k_proj", "v_proj"))``.
    """
    groups = _check(groups, module_type.__name__)
    with _lock:
        _registry[module_type] = groups


def fused_groups(module: nn.Module) -> tuple[tuple[str, ...], ...]:
    """The groups ``module`` declares (class attribute first, then the registry)."""
    groups = getattr(type(module), ATTRIBUTE, None)
    if groups is None:
        with _lock:
            groups = _registry.get(type(module), ())
    return _check(tuple(groups), type(module).__name__) if groups else ()


def group_of(parent: nn.Module, child: str) -> tuple[str, ...] | None:
    """The fused group of ``parent`` that contains its child ``child``, if any."""
    for g in fused_groups(parent):
        if child in g:
            return g
    return None
