"""``ghn.*`` config group: which hypernetwork (a preset name plus optional per-field overrides).

Torch-free. A :class:`GHNConfig` with ``None`` fields is *unresolved*; :meth:`GHNConfig.resolved`
fills every ``None`` from the preset, and that fully resolved form is what a GHN records in its
save files and checkpoints (so a later change of a preset never changes a saved GHN).

Presets (hid / layers / heads / decoder sizes as in the LoGAH paper, Table 1, and GHN-2/GHN-3):

=========  =========  ======  ====  =====  =======  ====================================
preset     encoder    hid     L     heads  decoder  decoder size
=========  =========  ======  ====  =====  =======  ====================================
logah-t    graphormer 64      3     8      lowrank  r 32,  K 32768
logah-s    graphormer 128     5     16     lowrank  r 90,  K 32768
logah-b    graphormer 256     5     16     lowrank  r 128, K 32768
logah-l    graphormer 256     12    16     lowrank  r 256, K 32768
ghn3-t     graphormer 64      3     8      tiled    C 64,  s 16, 1000 classes
ghn3-s     graphormer 128     5     16     tiled    C 128, s 16, 1000 classes
ghn3-l     graphormer 256     12    16     tiled    C 256, s 16, 1000 classes
ghn3-xl    graphormer 384     24    16     tiled    C 384, s 16, 1000 classes
ghn2       gatedgnn   32      1     -      tiled    C 64,  s 11, 10 classes (GHN-2 CIFAR)
=========  =========  ======  ====  =====  =======  ====================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from logah.config.checked import Checked, choices
from logah.config.errors import ConfigError

ENCODERS = ("graphormer", "gatedgnn")
DECODERS = ("lowrank", "tiled")
# auto: per target family (gpt2 -> std, vit -> fan_in); see docs/ghn.md.
NORMS = ("auto", "fan_in", "std", "none")
FACTOR_LAYOUTS = ("view", "transpose")


def _lowrank(hid: int, layers: int, heads: int, rank: int) -> dict[str, Any]:
    return dict(encoder="graphormer", hid=hid, layers=layers, heads=heads, decoder="lowrank",
                rank=rank, max_width=2048 * 16)


def _tiled(hid: int, layers: int, heads: int) -> dict[str, Any]:
    return dict(encoder="graphormer", hid=hid, layers=layers, heads=heads, decoder="tiled",
                max_shape=hid, max_kernel=16, num_classes=1000, decoder_init="ghn3")


GHN_PRESETS: dict[str, dict[str, Any]] = {
    "logah-t": _lowrank(64, 3, 8, 32),
    "logah-s": _lowrank(128, 5, 16, 90),
    "logah-b": _lowrank(256, 5, 16, 128),
    "logah-l": _lowrank(256, 12, 16, 256),
    "ghn3-t": _tiled(64, 3, 8),
    "ghn3-s": _tiled(128, 5, 16),
    "ghn3-l": _tiled(256, 12, 16),
    "ghn3-xl": _tiled(384, 24, 16),
    # GHN-2 (CIFAR): hid 32, one GatedGNN round, max_shape (2 hid, 2 hid, 11, 11).
    "ghn2": dict(encoder="gatedgnn", hid=32, layers=1, heads=1, decoder="tiled", max_shape=64,
                 max_kernel=11, num_classes=10, crop="corner", decoder_init="ghn3"),
}

# Defaults shared by every preset (a preset or an override may change them).
_COMMON: dict[str, Any] = dict(
    rank=32, max_width=2048 * 16, factor_layout="view", max_shape=64, max_kernel=16,
    num_classes=1000, crop="centre", layernorm=True, norm="auto", norm_std=0.02,
    norm_embeddings=False, scale_residual=True, n_types=None, fused=True, size_lookup="trained",
    decoder_init="default", decay_all=True, all_pairs=True, norm_tied=True, standardize=False,
)
SIZE_LOOKUPS = ("trained", "vocab")
DECODER_INITS = ("default", "ghn3")


@dataclass
class GHNConfig(Checked):
    """A graph hypernetwork. Any field left ``None`` keeps the preset's value.

    Attributes:
        preset: one of :data:`GHN_PRESETS`.
        encoder: ``graphormer`` (GHN-3 / LoGAH) or ``gatedgnn`` (GHN-2).
        hid: node-embedding width d. layers: encoder layers (GatedGNN: rounds).
        heads: attention heads.
        decoder: ``lowrank`` (LoGAH) or ``tiled`` (GHN-3 dense decoder, tiled beyond max_shape).
        rank: low-rank r. max_width: K, width of the shared Linear(r, K); a tensor whose rows plus
            columns (channels x kernel) exceed 2K is tiled (see docs/ghn.md).
        factor_layout: ``view`` (the reference's memory reinterpretation, the default) or
            ``transpose`` (the "natural" layout, an ablation).
        max_shape, max_kernel, num_classes, crop: tiled decoder block C, spatial size s, class
            predictor width and spatial crop (``centre`` GHN-3, ``corner`` GHN-2).
        layernorm: LayerNorm on the final node embeddings.
        norm: normalisation of predicted tensors (``auto``, ``fan_in``, ``std``, ``none``).
        norm_std: target std of ``std`` normalisation (GPT-2's initializer range).
        norm_embeddings: also normalise embeddings (the reference leaves them raw).
        scale_residual: ``std`` mode scales GPT-2 residual projections by 1/sqrt(2 n_layer).
        n_types: rows of the node-type table (``None``: ``len(logah.graph.PRIMITIVES)``).
        fused: predict a fused node's tensor once and slice it into its parameters (q/k/v rows
            differ). ``false`` is the ablation that decodes every slice on its own from the one
            node embedding, reproducing the old identical Q = K = V.
        size_lookup: ``trained``: a shape / degree / distance lookup of a row training never read
            reads the nearest trained row instead; ``vocab``: read it (the reference).
        decoder_init: ``default`` (PyTorch's init, as the reference's low-rank decoder) or
            ``ghn3`` (last decoder layer's weights / 5 and zero bias: GHN-3's dense decoder).
        decay_all: weight decay on every GHN parameter (the reference), not only Linear weights.
        all_pairs: Graphormer attention over all node pairs of a graph, with a learned per-head
            bias for "no path within the cutoff" (the reference); ``false``: virtual-edge pairs.
        norm_tied: a tied embedding (GPT-2's ``wte``, also the LM head) is scaled to the family's
            std like a weight (``norm_std``); ``false``: left raw like other embeddings.
        standardize: ``fan_in`` mode standardises a weight first (std exactly sqrt(beta/fan_in))
            instead of scaling the raw output by sqrt(beta/fan_in).
    """

    KEY = "ghn"

    preset: str = field(default="logah-t", metadata=choices(*GHN_PRESETS))
    encoder: Optional[str] = field(default=None, metadata=choices(*ENCODERS))
    hid: Optional[int] = None
    layers: Optional[int] = None
    heads: Optional[int] = None
    decoder: Optional[str] = field(default=None, metadata=choices(*DECODERS))
    rank: Optional[int] = None
    max_width: Optional[int] = None
    factor_layout: Optional[str] = field(default=None, metadata=choices(*FACTOR_LAYOUTS))
    max_shape: Optional[int] = None
    max_kernel: Optional[int] = None
    num_classes: Optional[int] = None
    crop: Optional[str] = field(default=None, metadata=choices("centre", "corner"))
    layernorm: Optional[bool] = None
    norm: Optional[str] = field(default=None, metadata=choices(*NORMS))
    norm_std: Optional[float] = None
    norm_embeddings: Optional[bool] = None
    scale_residual: Optional[bool] = None
    n_types: Optional[int] = None
    fused: Optional[bool] = None
    size_lookup: Optional[str] = field(default=None, metadata=choices(*SIZE_LOOKUPS))
    decoder_init: Optional[str] = field(default=None, metadata=choices(*DECODER_INITS))
    decay_all: Optional[bool] = None
    all_pairs: Optional[bool] = None
    norm_tied: Optional[bool] = None
    standardize: Optional[bool] = None

    def _values(self) -> dict[str, Any]:
        """Every field: the preset's value where this config leaves it ``None``."""
        base = {**_COMMON, **GHN_PRESETS[self.preset]}
        return {f.name: base.get(f.name) if getattr(self, f.name) is None else getattr(self, f.name)
                for f in dataclasses.fields(self)}

    def resolved(self) -> GHNConfig:
        """A copy with every ``None`` filled from the preset (``n_types`` may stay ``None``);
        ``self`` when it is resolved already."""
        values = self._values()
        return self if values == dataclasses.asdict(self) else GHNConfig(**values)

    def check(self) -> None:
        """Sizes of the resolved form (the preset and the choices were checked before this)."""
        v = self._values()
        for name in ("hid", "layers", "heads", "rank", "max_width", "max_shape", "max_kernel",
                     "num_classes"):
            if int(v[name]) < 1:
                raise ConfigError(f"ghn.{name}: must be >= 1, got {v[name]}")
        if v["encoder"] == "graphormer" and v["hid"] % v["heads"]:
            raise ConfigError(f"ghn.hid: {v['hid']} is not divisible by ghn.heads={v['heads']}")
        if v["hid"] % 4:
            raise ConfigError(f"ghn.hid: must be a multiple of 4 (shape embedding), got {v['hid']}")
        if v["n_types"] is not None and v["n_types"] < 1:
            raise ConfigError(f"ghn.n_types: must be >= 1, got {v['n_types']}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
