"""Architecture spaces: pure, seeded samplers of :class:`ModelSpec`s (ViTs-1K / GPTs-1K style, and
Llamas: the same bands and head groups plus a number of key/value groups per draw).

An :class:`ArchSpace` joins a space config (depth bands, width grid, head groups, MLP ratios; see
:mod:`logah.config.arch`) with a *task template* spec that fixes everything the task decides:
vocabulary and context (GPT-2), image size, channels and classes (ViT), LayerNorm epsilon. Every
draw is a pure function of a ``numpy.random.Generator``, so ``(seed, stream)`` pins the result in
every process. The reference's generators are ``ghn-anchors.md`` §4.2; their hard-coded patch size,
class count and vocabulary come from the template here.

Three kinds of draws:
- :func:`draw_heldout`: distinct architectures for validation, some inside the training ranges and
  some *beyond* them (deeper than the deepest band, wider than the widest);
- :func:`draw_train`: the fixed training set (with repeats, as the reference's ViTs-1K), never a
  held-out spec;
- :func:`draw_online`: one architecture for ``(seed, rank, step, slot)``, never a held-out spec.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Collection
from typing import Optional

import numpy as np

from logah.config.arch import ArchSpaceConfig
from logah.config.errors import ConfigError
from logah.config.specs import ModelSpec
from logah.nn.build import count_params

# Stream ids keep the three kinds of draws independent for one seed.
_HELDOUT, _TRAIN, _ONLINE = 1, 2, 3
_MAX_TRIES = 10_000


@functools.lru_cache(maxsize=65536)
def _count(key: str) -> int:
    return count_params(ModelSpec.from_dict(json.loads(key)))


def num_params(spec: ModelSpec) -> int:
    """Parameter count, cached by ``spec.key()`` (sampled spaces repeat specs a lot)."""
    return _count(spec.key())


class ArchSpace:
    """A validated architecture space bound to a task template.

    Args:
        cfg: the space (bands, width grid, head groups, MLP ratios, patch sizes, ...).
        template: the task's spec; its family, vocabulary/context or image/channels/classes and
            ``ln_eps`` are copied into every drawn spec. Its depth and widths are ignored.
        prefix: config path used in error messages.

    Raises:
        ConfigError: a patch size does not divide the image size (the space alone checked itself
            when ``cfg`` was built).
    """

    def __init__(self, cfg: ArchSpaceConfig, template: ModelSpec,
                 prefix: str = "archs.space") -> None:
        self.cfg, self.template, self.prefix = cfg, template, prefix
        self.family = template.family
        if cfg.kv_groups and self.family != "llama":
            raise ConfigError(f"{prefix}.kv_groups: only a llama template has key/value groups "
                              f"(model family {self.family!r})")
        self.patch_sizes = [int(p) for p in cfg.patch_sizes] or [template.patch_size]
        if self.family == "vit":
            for p in self.patch_sizes:
                if template.image_size % p:
                    raise ConfigError(
                        f"{prefix}.patch_sizes: {p} does not divide the image size "
                        f"{template.image_size}"
                    )
        # depth -> (width lo, width hi) of its band
        self.band_of: dict[int, tuple[int, int]] = {}
        for band in cfg.bands:
            lo, hi = (int(v) for v in band.layers)
            for depth in range(lo, hi + 1):
                self.band_of[depth] = (int(band.width[0]), int(band.width[1]))
        self.depths = sorted(self.band_of)
        self.max_width = max(hi for _, hi in self.band_of.values())
        self._keys: Optional[frozenset[str]] = None

    # ---- building blocks ------------------------------------------------------------------------
    def widths(self, depth: int) -> list[int]:
        lo, hi = self.band_of[depth]
        return list(range(lo, hi + 1, self.cfg.width_step))

    def head_choices(self, width: int) -> list[int]:
        """The first head group whose every entry divides ``width`` (empty if none)."""
        for group in self.cfg.head_groups:
            if all(width % int(h) == 0 for h in group):
                return [int(h) for h in group]
        return []

    def kv_choices(self, heads: int) -> list[int]:
        """Llama: the ``kv_groups`` that divide ``heads`` (``[heads]``, i.e. MHA, if none)."""
        return [int(k) for k in self.cfg.kv_groups if heads % int(k) == 0] or [heads]

    def make(self, n_layer: int, width: int, heads: int, mlp_ratio: float,
             patch_size: Optional[int] = None, kv_heads: Optional[int] = None) -> ModelSpec:
        """The spec with these dims and everything else from the template."""
        head = width // heads
        changes = dict(
            n_layer=n_layer, d_model=width, n_heads=heads, d_qk=head, d_v=head,
            d_mlp=max(1, int(round(mlp_ratio * width))), growth=(),
        )
        if self.family == "llama":
            changes.update(n_kv_heads=int(kv_heads or heads), rope_dims=())
        if self.family == "vit":
            changes["patch_size"] = int(patch_size or self.patch_sizes[0])
        elif self.cfg.tie_embeddings is not None:
            changes["tie_embeddings"] = bool(self.cfg.tie_embeddings)
        return self.template.replace(**changes)

    def _finish(self, rng: np.random.Generator, depth: int, width: int) -> ModelSpec:
        heads = self.head_choices(width)
        if not heads:
            raise ConfigError(f"{self.prefix}.head_groups: no group divides width {width}")
        h = int(rng.choice(heads))
        ratio, patch = float(rng.choice(self.cfg.mlp_ratios)), int(rng.choice(self.patch_sizes))
        kv = int(rng.choice(self.kv_choices(h))) if self.family == "llama" else None
        return self.make(depth, width, h, ratio, patch, kv)

    def _fits(self, spec: ModelSpec) -> bool:
        return self.cfg.max_params is None or num_params(spec) <= self.cfg.max_params

    # ---- draws ----------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> ModelSpec:
        """One draw: depth uniform over all bands' depths, then width, heads, MLP ratio, patch.

        Architectures above ``max_params`` are redrawn (as the reference's 50M filter).
        """
        for _ in range(_MAX_TRIES):
            depth = int(rng.choice(self.depths))
            spec = self._finish(rng, depth, int(rng.choice(self.widths(depth))))
            if self._fits(spec):
                return spec
        raise ConfigError(f"{self.prefix}.max_params: no architecture of the space fits under it")

    def sample_beyond(self, rng: np.random.Generator, deeper: bool, max_extra_layers: int,
                      max_width_ratio: float) -> ModelSpec:
        """An architecture outside the training ranges (no ``max_params`` cap).

        ``deeper``: ``max_depth + 1 .. max_depth + max_extra_layers`` layers with the deepest
        band's widths. Otherwise wider: a width on the grid above the widest band, up to
        ``max_width_ratio`` times it, with the depths of the widest band.
        """
        step = self.cfg.width_step
        if deeper:
            depth = self.depths[-1] + int(rng.integers(1, max_extra_layers + 1))
            return self._finish(rng, depth, int(rng.choice(self.widths(self.depths[-1]))))
        top = max(self.max_width + step, int(math.floor(self.max_width * max_width_ratio)))
        wide = [w for w in range(self.max_width + step, top + 1, step) if self.head_choices(w)]
        if not wide:
            raise ConfigError(
                f"{self.prefix}.head_groups: no width in ({self.max_width}, {top}] fits a "
                "head group"
            )
        depths = [d for d in self.depths if self.band_of[d][1] == self.max_width]
        return self._finish(rng, int(rng.choice(depths)), int(rng.choice(wide)))

    def enumerate(self) -> list[ModelSpec]:
        """Every distinct spec of the training ranges (under ``max_params``)."""
        out = []
        for depth in self.depths:
            for width in self.widths(depth):
                for heads in self.head_choices(width):
                    kvs = self.kv_choices(heads) if self.family == "llama" else [None]
                    for ratio in sorted(set(float(r) for r in self.cfg.mlp_ratios)):
                        for patch in sorted(set(self.patch_sizes)):
                            for kv in sorted(set(kvs), key=lambda k: k or 0):
                                spec = self.make(depth, width, heads, ratio, patch, kv)
                                if self._fits(spec):
                                    out.append(spec)
        return out

    def contains(self, spec: ModelSpec) -> bool:
        """True when ``spec`` could be drawn by :meth:`sample` (growth history ignored)."""
        if self._keys is None:
            self._keys = frozenset(s.key() for s in self.enumerate())
        return spec.key() in self._keys


def draw_heldout(space: ArchSpace, num_in: int, num_beyond: int, seed: int,
                 beyond_layers: int = 2, beyond_width: float = 1.5) -> list[ModelSpec]:
    """Distinct held-out specs: ``num_in`` from the space, then ``num_beyond`` outside it.

    The beyond ones alternate deeper / wider (deeper first). In-range ones follow the space's own
    distribution, with repeats redrawn.

    Raises:
        ConfigError: the space has too few distinct architectures to hold ``num_in`` out and still
            leave some to train on.
    """
    size = len(space.enumerate())
    if num_in >= size:
        raise ConfigError(
            f"archs.num_heldout: {num_in} held-out architectures would leave none of the "
            f"{size} in the space to train on"
        )
    rng = np.random.default_rng([int(seed), _HELDOUT])
    out: dict[str, ModelSpec] = {}
    for _ in range(_MAX_TRIES):
        if len(out) >= num_in:
            break
        spec = space.sample(rng)
        out.setdefault(spec.key(), spec)
    beyond: dict[str, ModelSpec] = {}
    for i in range(_MAX_TRIES):
        if len(beyond) >= num_beyond:
            break
        spec = space.sample_beyond(rng, deeper=len(beyond) % 2 == 0,
                                   max_extra_layers=beyond_layers, max_width_ratio=beyond_width)
        beyond.setdefault(spec.key(), spec)
    if len(out) < num_in or len(beyond) < num_beyond:
        raise ConfigError(
            "archs.num_heldout: could not draw that many distinct held-out architectures")
    return list(out.values()) + list(beyond.values())


def draw_train(space: ArchSpace, num: int, seed: int,
               exclude: Collection[str] = ()) -> list[ModelSpec]:
    """The fixed training set: ``num`` draws (repeats allowed) skipping keys in ``exclude``."""
    rng = np.random.default_rng([int(seed), _TRAIN])
    banned = set(exclude)
    out: list[ModelSpec] = []
    while len(out) < num:
        spec = space.sample(rng)
        if spec.key() not in banned:
            out.append(spec)
    return out


def draw_online(space: ArchSpace, seed: int, rank: int, step: int, slot: int,
                exclude: Collection[str] = ()) -> ModelSpec:
    """The architecture of ``slot`` at ``step`` on ``rank``: a pure function of its arguments."""
    rng = np.random.default_rng([int(seed), _ONLINE, int(rank), int(step), int(slot)])
    for _ in range(_MAX_TRIES):
        spec = space.sample(rng)
        if spec.key() not in exclude:
            return spec
    raise ConfigError("archs.num_heldout: the held-out set covers the whole space")
