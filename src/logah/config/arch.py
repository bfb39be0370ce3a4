"""``archs.*`` config group: the architecture space a hypernetwork trains on, and how it is drawn.

The space follows LoGAH's ViTs-1K / GPTs-1K generators (``ghn-anchors.md`` §4.2): a depth is drawn
uniformly from the union of the bands' depth ranges, then a width uniformly from that band's width
range (on a ``width_step`` grid), then a head count from the first ``head_groups`` entry whose
every member divides the width, then an MLP ratio. What the *task* fixes (vocabulary, context,
image size, channels, classes) is never part of the space: it comes from the task template spec
(``model.*``) and the data. Patch sizes are task-level too (they must divide the image size), so
they default to the template's own patch size.

Torch-free; each group checks itself when built (:class:`logah.config.checked.Checked`); what
depends on the task (patch sizes against the image size) is checked by
``logah.data.space.ArchSpace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from logah.config.checked import Checked
from logah.config.errors import ConfigError


@dataclass
class DepthBand:
    """Depths ``layers = [lo, hi]`` (inclusive) use widths ``width = [lo, hi]`` (inclusive)."""

    layers: List[int] = field(default_factory=lambda: [3, 9])
    width: List[int] = field(default_factory=lambda: [72, 176])


def _gpt_tiny_bands() -> list[DepthBand]:
    # GPTs-1K scaled to 2 CPU cores: deep models are narrow, shallow ones wide (as the reference's
    # 6-9 / 4-5 / 3-layer bands), every width a multiple of 8 so 4 heads get >= 8 dims each.
    return [
        DepthBand(layers=[3, 4], width=[32, 64]),
        DepthBand(layers=[2, 2], width=[64, 96]),
        DepthBand(layers=[1, 1], width=[96, 128]),
    ]


@dataclass
class ArchSpaceConfig(Checked):
    """The distribution of target architectures.

    Attributes:
        bands: depth bands, each ``{layers: [lo, hi], width: [lo, hi]}``; depth ranges must not
            overlap. GPTs-1K is ``[{layers: [6, 9], width: [72, 176]}, {layers: [4, 5],
            width: [128, 176]}, {layers: [3, 3], width: [176, 256]}]`` with ``width_step: 8``.
        width_step: widths are ``lo, lo + step, ..., <= hi``.
        head_groups: the first group whose every entry divides the width gives the head choices
            (ViTs-1K: ``[[3, 6, 12], [4, 8]]``; GPTs-1K: ``[[8]]``).
        mlp_ratios: ``d_mlp = round(ratio * width)``, ratio uniform over this list.
        patch_sizes: ViT only; empty = the task template's patch size. Each must divide the
            image size.
        tie_embeddings: GPT / Llama only; ``null`` = the template's choice (GPTs-1K is untied).
        kv_groups: Llama only: key/value head counts (grouped-query attention); a draw picks one
            of those that divide its head count (none divides: plain multi-head attention).
            Empty = the template's ratio is ignored and every draw is multi-head.
        max_params: reject (and redraw) architectures above this many parameters; ``null`` = no cap.
    """

    KEY = "archs.space"

    bands: List[DepthBand] = field(default_factory=_gpt_tiny_bands)
    width_step: int = 8
    head_groups: List[List[int]] = field(default_factory=lambda: [[4]])
    mlp_ratios: List[float] = field(default_factory=lambda: [4.0])
    patch_sizes: List[int] = field(default_factory=list)
    tie_embeddings: Optional[bool] = None
    kv_groups: List[int] = field(default_factory=list)
    max_params: Optional[int] = None

    def check(self) -> None:
        _check_space(self, self.KEY)


@dataclass
class ArchDataConfig(Checked):
    """How architectures are drawn for GHN training (``archs.*``).

    Attributes:
        space: the training distribution (:class:`ArchSpaceConfig`).
        num_train: size of the fixed training set (drawn once from ``seed``; saved as
            ``archs.json`` in the run folder). Ignored with ``online``.
        online: draw a fresh architecture for every slot of every step instead of using a fixed set.
        meta_batch: architectures per step on each rank (``m``); every one sees the same task batch
            (LoGAH: 1 per GPU, GHN-3: 8).
        num_heldout: held-out architectures from inside the training ranges (never trained on).
        num_beyond: held-out architectures outside them: half deeper than the deepest band,
            half wider than the widest band.
        beyond_layers: deeper ones have ``max_depth + 1 .. max_depth + beyond_layers`` layers.
        beyond_width: wider ones have widths above the widest band, up to ``beyond_width x`` it.
        graph_cache: graphs kept in memory per process (online sampling evicts the oldest).
    """

    KEY = "archs"

    space: ArchSpaceConfig = field(default_factory=ArchSpaceConfig)
    num_train: int = 1000
    online: bool = False
    meta_batch: int = 1
    num_heldout: int = 6
    num_beyond: int = 4
    beyond_layers: int = 2
    beyond_width: float = 1.5
    graph_cache: int = 2048

    def check(self) -> None:
        _check_archs(self, self.KEY)


def _int_pair(value: object, key: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{key}: expected [lo, hi], got {value!r}")
    lo, hi = (int(v) for v in value)
    if lo < 1 or hi < lo:
        raise ConfigError(f"{key}: expected 1 <= lo <= hi, got {list(value)}")
    return lo, hi


def _get(band: object, name: str, key: str) -> object:
    value = band.get(name) if isinstance(band, dict) else getattr(band, name, None)
    if value is None:
        raise ConfigError(
            f"{key}.{name}: missing (a band is {{layers: [lo, hi], width: [lo, hi]}})")
    return value


def _check_space(cfg: ArchSpaceConfig, prefix: str) -> None:
    """The space alone (task-independent parts): empty or overlapping bands, a width with no
    fitting head group, bad ratios; one ``ConfigError`` naming the key."""
    if not cfg.bands:
        raise ConfigError(f"{prefix}.bands: at least one band is needed")
    if cfg.width_step < 1:
        raise ConfigError(f"{prefix}.width_step: must be >= 1, got {cfg.width_step}")
    seen: dict[int, int] = {}
    for i, band in enumerate(cfg.bands):
        key = f"{prefix}.bands[{i}]"
        lo, hi = _int_pair(_get(band, "layers", key), f"{key}.layers")
        wlo, whi = _int_pair(_get(band, "width", key), f"{key}.width")
        for depth in range(lo, hi + 1):
            if depth in seen:
                raise ConfigError(f"{key}.layers: depth {depth} is also in bands[{seen[depth]}]")
            seen[depth] = i
        for w in range(wlo, whi + 1, cfg.width_step):
            if not any(all(w % int(h) == 0 for h in g) for g in cfg.head_groups):
                raise ConfigError(
                    f"{prefix}.head_groups: no group divides width {w} of {key} "
                    f"(groups: {cfg.head_groups})"
                )
    if not cfg.head_groups or any(not g or min(int(h) for h in g) < 1 for g in cfg.head_groups):
        raise ConfigError(f"{prefix}.head_groups: expected non-empty lists of positive head counts")
    if not cfg.mlp_ratios or min(float(r) for r in cfg.mlp_ratios) <= 0:
        raise ConfigError(f"{prefix}.mlp_ratios: expected a non-empty list of ratios > 0")
    if any(int(p) < 1 for p in cfg.patch_sizes):
        raise ConfigError(f"{prefix}.patch_sizes: patch sizes must be >= 1")
    if cfg.max_params is not None and cfg.max_params < 1:
        raise ConfigError(f"{prefix}.max_params: must be >= 1 or null")
    if any(int(k) < 1 for k in cfg.kv_groups):
        raise ConfigError(f"{prefix}.kv_groups: key/value head counts must be >= 1")


def _check_archs(cfg: ArchDataConfig, prefix: str) -> None:
    """The ``archs.*`` group's own values (its space checked itself when it was built)."""
    if cfg.num_train < 1:
        raise ConfigError(f"{prefix}.num_train: must be >= 1, got {cfg.num_train}")
    if cfg.meta_batch < 1:
        raise ConfigError(f"{prefix}.meta_batch: must be >= 1, got {cfg.meta_batch}")
    for name in ("num_heldout", "num_beyond", "beyond_layers"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{prefix}.{name}: must be >= 0, got {getattr(cfg, name)}")
    if cfg.num_beyond and (cfg.beyond_layers < 1 or cfg.beyond_width <= 1.0):
        raise ConfigError(
            f"{prefix}.beyond_width: must be > 1 (and beyond_layers >= 1) when num_beyond > 0"
        )
    if cfg.num_heldout + cfg.num_beyond < 1:
        raise ConfigError(f"{prefix}.num_heldout: at least one held-out architecture is needed")
