"""Architecture specs for the target transformers (torch-free, the bottom layer).

A :class:`ModelSpec` describes one GPT-2 or ViT completely. It is what presets are, what
architecture datasets store (as JSON), what checkpoints record and what graph caches key on.
Per-head query/key width (``d_qk``), per-head value width (``d_v``) and MLP width (``d_mlp``) are
independent of ``d_model`` so every function-preserving expansion of :mod:`logah.grow` can be
represented; presets tie them as GPT-2 and ViT do (``d_qk = d_v = d_model / n_heads``,
``d_mlp = 4 d_model``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from logah.config.checked import Checked, check_keys, choices
from logah.config.errors import ConfigError

Family = Literal["gpt2", "vit"]
FAMILIES = ("gpt2", "vit")


@dataclass(frozen=True)
class ModelSpec(Checked):
    """One target transformer. Fields not used by a family keep their defaults.

    Attributes:
        family: ``gpt2`` (causal LM) or ``vit`` (image classifier).
        n_layer: number of pre-LayerNorm blocks.
        d_model: residual-stream width.
        n_heads: attention heads per block.
        d_qk: per-head query/key width.
        d_v: per-head value width (the attention output is ``n_heads * d_v`` wide).
        d_mlp: MLP hidden width.
        ln_eps: LayerNorm epsilon (hidden-dim growth rescales it, so it is a spec field).
        vocab_size, n_ctx, tie_embeddings: GPT-2 only.
        image_size, patch_size, in_chans, num_classes: ViT only.
        growth: growth history (list of step dicts) recorded by :mod:`logah.grow`.
    """

    KEY = "model"

    family: Family = field(metadata=choices(*FAMILIES))
    n_layer: int
    d_model: int
    n_heads: int
    d_qk: int
    d_v: int
    d_mlp: int
    ln_eps: float = 1e-5
    vocab_size: int = 50257
    n_ctx: int = 1024
    tie_embeddings: bool = True
    image_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    growth: tuple = field(default=(), compare=False)

    def check(self) -> None:
        for name in ("n_layer", "d_model", "n_heads", "d_qk", "d_v", "d_mlp"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if self.ln_eps <= 0:
            raise ConfigError(f"model.ln_eps: must be > 0, got {self.ln_eps}")
        if self.family == "vit":
            if self.image_size % self.patch_size:
                raise ConfigError(
                    f"model.image_size: {self.image_size} is not divisible by "
                    f"model.patch_size={self.patch_size}"
                )
        elif self.vocab_size < 1 or self.n_ctx < 1:
            raise ConfigError("model.vocab_size and model.n_ctx must be >= 1")

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def is_standard(self) -> bool:
        """True when the dims are tied as GPT-2/ViT (and Hugging Face) assume."""
        return (
            self.d_qk == self.d_v
            and self.d_qk * self.n_heads == self.d_model
        )

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    # ---- (de)serialisation: specs are stored as small JSON dicts ------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["growth"] = [dict(s) for s in self.growth]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], what: str = "model spec") -> ModelSpec:
        """Inverse of :meth:`to_dict` (the growth history back to a tuple); checked as built."""
        check_keys(cls, d, what)
        d = dict(d)
        d["growth"] = tuple(dict(s) for s in d.get("growth", ()))
        return cls(**d)

    def key(self) -> str:
        """A stable string key (used by graph caches); growth history is not part of it."""
        d = self.to_dict()
        d.pop("growth")
        return json.dumps(d, sort_keys=True)


def gpt2_spec(n_layer: int, d_model: int, n_heads: int, **kw: Any) -> ModelSpec:
    """GPT-2 with the usual tied dims (head width d_model / n_heads, MLP 4x)."""
    head = d_model // n_heads
    kw.setdefault("d_mlp", 4 * d_model)
    kw.setdefault("ln_eps", 1e-5)
    return ModelSpec("gpt2", n_layer, d_model, n_heads, head, head, **kw)


def vit_spec(n_layer: int, d_model: int, n_heads: int, **kw: Any) -> ModelSpec:
    """ViT with the usual tied dims; LayerNorm eps 1e-6 as in timm/torchvision ViTs."""
    head = d_model // n_heads
    kw.setdefault("d_mlp", 4 * d_model)
    kw.setdefault("ln_eps", 1e-6)
    return ModelSpec("vit", n_layer, d_model, n_heads, head, head, **kw)


def _vit_family(name: str, n_layer: int, d_model: int, n_heads: int) -> dict[str, ModelSpec]:
    return {
        # ImageNet resolution: patch 16 at 224 px, 1000 classes.
        f"vit-{name}": vit_spec(n_layer, d_model, n_heads),
        # CIFAR resolution as in LoGAH: patch 2 at 32 px (override model.num_classes=100 for C-100).
        f"vit-{name}-p2": vit_spec(n_layer, d_model, n_heads, image_size=32, patch_size=2,
                                   num_classes=10),
        f"vit-{name}-p4": vit_spec(n_layer, d_model, n_heads, image_size=32, patch_size=4,
                                   num_classes=10),
    }


PRESETS: dict[str, ModelSpec] = {
    "gpt2-small": gpt2_spec(12, 768, 12),
    "gpt2-medium": gpt2_spec(24, 1024, 16),
    "gpt2-large": gpt2_spec(36, 1280, 20),
    "gpt2-xl": gpt2_spec(48, 1600, 25),
    # CPU-sized: trains in seconds to minutes on 2 cores (real GPT-2 BPE vocabulary).
    "gpt2-tiny": gpt2_spec(2, 64, 4, n_ctx=128),
    "gpt2-mini": gpt2_spec(4, 128, 4, n_ctx=256),
    **_vit_family("small", 12, 384, 6),
    **_vit_family("base", 12, 768, 12),
    **_vit_family("large", 24, 1024, 16),
    # CPU-sized ViTs for 32x32 images (Fashion-MNIST / CIFAR), 10 classes.
    "vit-tiny": vit_spec(2, 64, 4, image_size=32, patch_size=4, num_classes=10),
    "vit-mini": vit_spec(4, 128, 4, image_size=32, patch_size=4, num_classes=10),
}


def get_preset(name: str) -> ModelSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"model.arch: {name!r} is not a preset (valid: {', '.join(sorted(PRESETS))})"
        ) from None
