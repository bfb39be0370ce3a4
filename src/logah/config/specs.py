"""Architecture specs for the target transformers (torch-free, the bottom layer).

A :class:`ModelSpec` describes one GPT-2, ViT or Llama completely. It is what presets are, what
architecture datasets store (as JSON), what checkpoints record and what graph caches key on.
Per-head query/key width (``d_qk``), per-head value width (``d_v``) and MLP width (``d_mlp``) are
independent of ``d_model`` so every function-preserving expansion of :mod:`logah.grow` can be
represented; presets tie them as GPT-2 and ViT do (``d_qk = d_v = d_model / n_heads``,
``d_mlp = 4 d_model``).

Per-family facts the torch-free layers need (which extra fields a family reads, its norm) live in
:data:`FAMILY_FIELDS` / :data:`NORM_KIND`; a new family adds one entry to each (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from logah.config.checked import Checked, check_keys, choices
from logah.config.errors import ConfigError

Family = Literal["gpt2", "vit", "llama"]
FAMILIES = ("gpt2", "vit", "llama")
# The fields each family reads beyond the shared dims (the rest keep their defaults).
FAMILY_FIELDS: dict[str, tuple[str, ...]] = {
    "gpt2": ("vocab_size", "n_ctx", "tie_embeddings"),
    "vit": ("image_size", "patch_size", "in_chans", "num_classes"),
    "llama": ("vocab_size", "n_ctx", "tie_embeddings", "n_kv_heads", "rope_base", "rope_dims",
              "rope_scaling"),
}
# Which normalisation a family's blocks use (growth of d_model depends on it).
NORM_KIND: dict[str, str] = {"gpt2": "layernorm", "vit": "layernorm", "llama": "rmsnorm"}
CAUSAL_LM = ("gpt2", "llama")  # families that are token -> next-token models


@dataclass(frozen=True)
class ModelSpec(Checked):
    """One target transformer. Fields not used by a family keep their defaults.

    Attributes:
        family: ``gpt2`` / ``llama`` (causal LMs) or ``vit`` (image classifier).
        n_layer: number of pre-norm blocks.
        d_model: residual-stream width.
        n_heads: attention heads per block.
        d_qk: per-head query/key width.
        d_v: per-head value width (the attention output is ``n_heads * d_v`` wide).
        d_mlp: MLP hidden width.
        ln_eps: LayerNorm / RMSNorm epsilon (hidden-dim growth rescales it, so it is a spec field).
        vocab_size, n_ctx, tie_embeddings: GPT-2 and Llama.
        image_size, patch_size, in_chans, num_classes: ViT only.
        n_kv_heads: Llama only: key/value heads (grouped-query attention; must divide
            ``n_heads``); 0 means ``n_heads`` (plain multi-head attention).
        rope_base: Llama only: rotary base (theta); pair ``i`` of a head turns at
            ``rope_base ** (-2 i / d)``.
        rope_dims: Llama only: ``()`` for the standard rotary frequencies (``d = d_qk``); after
            :mod:`logah.grow` widens ``d_qk`` it lists the widths the frequencies were fixed at,
            e.g. ``(16, 32)``: pairs ``i < 8`` keep ``d = 16``, pairs ``8 <= i < 16`` use ``d = 32``
            (so growth stays exact; HF recomputes frequencies from ``head_dim``, see
            :func:`ModelSpec.rope_inv_freq`).
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
    n_kv_heads: int = 0
    rope_base: float = 10000.0
    rope_dims: tuple = ()
    rope_scaling: tuple = ()
    growth: tuple = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rope_dims", tuple(int(d) for d in self.rope_dims))  # JSON lists
        object.__setattr__(self, "rope_scaling", tuple(float(x) for x in self.rope_scaling))
        super().__post_init__()

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
        if self.family == "llama":
            self._check_llama()
        elif self.n_kv_heads not in (0, self.n_heads) or self.rope_dims or self.rope_scaling:
            raise ConfigError(
                f"model.n_kv_heads / model.rope_dims: only llama has grouped-query attention and "
                f"rotary embeddings (family={self.family!r})"
            )

    def _check_llama(self) -> None:
        kv = self.kv_heads
        if kv < 1 or self.n_heads % kv:
            raise ConfigError(
                f"model.n_kv_heads: {self.n_kv_heads} does not divide model.n_heads={self.n_heads} "
                f"(grouped-query attention shares each key/value head among n_heads/n_kv_heads "
                f"query heads)"
            )
        if self.d_qk % 2:
            raise ConfigError(
                f"model.d_qk: rotary embeddings rotate pairs of dims, so the per-head query/key "
                f"width must be even, got {self.d_qk}"
            )
        if self.rope_base <= 1:
            raise ConfigError(f"model.rope_base: must be > 1, got {self.rope_base}")
        dims = list(self.rope_dims)
        if dims and (dims[-1] != self.d_qk or any(d % 2 or d < 2 for d in dims)
                     or dims != sorted(set(dims))):
            raise ConfigError(
                f"model.rope_dims: {dims} must be increasing even widths ending at "
                f"model.d_qk={self.d_qk} (or empty for the standard frequencies)"
            )
        sc = self.rope_scaling
        if sc and (len(sc) != 4 or sc[0] < 1 or not 0 < sc[1] < sc[2] or sc[3] < 1):
            raise ConfigError(
                f"model.rope_scaling: {list(sc)} must be [factor >= 1, low_freq_factor, "
                f"high_freq_factor > low_freq_factor > 0, original_max_position_embeddings] "
                f"(Llama 3.1's 'llama3' rotary scaling) or empty"
            )

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def kv_heads(self) -> int:
        """Key/value heads (``n_kv_heads``, or ``n_heads`` when that is 0 or the family has no GQA)."""
        return self.n_kv_heads or self.n_heads

    @property
    def heads_tied(self) -> bool:
        """``d_qk == d_v == d_model / n_heads``, the tying presets use (``model.*`` re-ties them)."""
        return self.d_qk == self.d_v and self.d_qk * self.n_heads == self.d_model

    @property
    def is_standard(self) -> bool:
        """True when Hugging Face can represent the dims (``logah.nn.hf`` exports exactly then).

        GPT-2 / ViT need ``d_qk == d_v == d_model / n_heads``. HF Llama has its own ``head_dim``
        (``n_heads * head_dim`` may differ from ``d_model``, though its config still wants
        ``n_heads`` to divide ``d_model``) but one width for q/k and v, and it computes the rotary
        frequencies from ``head_dim``, so ``rope_dims`` must be standard.
        """
        if self.family == "llama":
            return (self.d_qk == self.d_v and len(self.rope_dims) <= 1
                    and self.d_model % self.n_heads == 0)
        return self.heads_tied

    def rope_inv_freq(self) -> list[float]:
        """The ``d_qk / 2`` rotary frequencies (pair ``i`` pairs dims ``i`` and ``i + d_qk/2``).

        Standard: ``rope_base ** (-2i / d_qk)``. With ``rope_dims = (d0, d1, ...)`` pair ``i`` uses
        the first ``dj`` with ``i < dj / 2``, so the pairs that existed before a growth step keep
        their frequencies.
        """
        dims = list(self.rope_dims) or [self.d_qk]
        out, lo = [], 0
        for d in dims:
            out += [self.rope_base ** (-2 * i / d) for i in range(lo, d // 2)]
            lo = d // 2
        return [_llama3_scaled(f, *self.rope_scaling) for f in out] if self.rope_scaling else out

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    # ---- (de)serialisation: specs are stored as small JSON dicts ------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["growth"] = [dict(s) for s in self.growth]
        d["rope_dims"] = list(self.rope_dims)
        d["rope_scaling"] = list(self.rope_scaling)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], what: str = "model spec") -> ModelSpec:
        """Inverse of :meth:`to_dict` (the growth history back to a tuple); checked as built."""
        check_keys(cls, d, what)
        d = dict(d)
        d["growth"] = tuple(dict(s) for s in d.get("growth", ()))
        d["rope_dims"] = tuple(int(x) for x in d.get("rope_dims", ()))
        d["rope_scaling"] = tuple(float(x) for x in d.get("rope_scaling", ()))
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


def _llama3_scaled(freq: float, factor: float, low: float, high: float, ctx: float) -> float:
    """Llama 3.1's "llama3" rotary scaling of one frequency: wavelengths longer than ctx/low are
    slowed by ``factor``, shorter than ctx/high kept, and those between interpolated."""
    wavelen = 2 * math.pi / freq
    if wavelen < ctx / high:
        return freq
    if wavelen > ctx / low:
        return freq / factor
    smooth = (ctx / wavelen - low) / (high - low)
    return (1 - smooth) * freq / factor + smooth * freq


def llama_spec(n_layer: int, d_model: int, n_heads: int, n_kv_heads: int, d_mlp: int,
               **kw: Any) -> ModelSpec:
    """Llama (RMSNorm, SwiGLU, rotary, GQA) with head width d_model / n_heads unless given."""
    head = kw.pop("head_dim", d_model // n_heads)
    kw.setdefault("ln_eps", 1e-5)
    return ModelSpec("llama", n_layer, d_model, n_heads, head, head, d_mlp,
                     n_kv_heads=n_kv_heads, **kw)


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


# Llama 3.2's rope_scaling: factor, low_freq_factor, high_freq_factor, original context.
LLAMA3_SCALING = (32.0, 1.0, 4.0, 8192.0)

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
    # CPU-sized Llamas on the GPT-2 BPE vocabulary (Brown works offline), tied like gpt2-tiny.
    "llama-tiny": llama_spec(2, 64, 4, 2, 176, n_ctx=128),
    "llama-mini": llama_spec(4, 128, 4, 2, 352, n_ctx=256),
    # The real shapes (vocabulary, context, rope theta, tying) of the published checkpoints.
    # Llama 3.2 carries Llama 3.1's "llama3" rotary scaling (factor 32); Llama-3-8B has none.
    "tinyllama-1.1b": llama_spec(22, 2048, 32, 4, 5632, vocab_size=32000, n_ctx=2048,
                                 tie_embeddings=False),
    "llama-3.2-1b": llama_spec(16, 2048, 32, 8, 8192, vocab_size=128256, n_ctx=131072,
                               rope_base=500000.0, rope_scaling=LLAMA3_SCALING),
    "llama-3.2-3b": llama_spec(28, 3072, 24, 8, 8192, vocab_size=128256, n_ctx=131072,
                               rope_base=500000.0, rope_scaling=LLAMA3_SCALING),
    "llama-3-8b": llama_spec(32, 4096, 32, 8, 14336, vocab_size=128256, n_ctx=8192,
                             rope_base=500000.0, tie_embeddings=False),
}


def get_preset(name: str) -> ModelSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"model.arch: {name!r} is not a preset (valid: {', '.join(sorted(PRESETS))})"
        ) from None
