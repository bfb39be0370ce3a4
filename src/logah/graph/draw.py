"""A picture of an architecture graph: layered by depth, coloured by node type, with a legend."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from logah.graph.graph import ArchGraph
from logah.graph.primitives import PRIMITIVES
from logah.utils.fs import atomic_path

LAYER_IN = 0.32  # vertical inches per depth layer
# One fixed colour per primitive id, so every picture uses the same colours (blue = conv, ...).
COLOURS = [
    "#7f7f7f", "#bcbcbc", "#17becf", "#9edae5", "#1f77b4", "#9467bd", "#c5b0d5", "#ff7f0e",
    "#ffbb78", "#222222", "#98df8a", "#ff9896", "#d62728", "#e377c2", "#8c564b", "#c49c94",
    "#f7b6d2", "#bcbd22", "#2ca02c", "#006d2c", "#74c476", "#dbdb8d", "#8c6d31",
]
assert len(COLOURS) == len(PRIMITIVES)
_BLOCK = re.compile(r"^([A-Za-z_]\w*\.\d+)\.")  # "blocks.3.attn.q" -> "blocks.3"


def depths(graph: ArchGraph) -> np.ndarray:
    """Longest-path depth from node 0 (every real edge goes exactly downwards)."""
    n = int(graph.num_nodes)
    d = np.zeros(n, dtype=np.int64)
    src, dst = graph.edge_index.numpy()
    for v, u in sorted(zip(dst.tolist(), src.tolist())):  # by destination: d[u] is final (u < v)
        d[v] = max(d[v], d[u] + 1)
    return d


def layout(graph: ArchGraph) -> np.ndarray:
    """(N, 2) positions: y = -depth; x spreads each layer, ordered by the mean x of predecessors."""
    depth = depths(graph)
    pos = np.zeros((len(depth), 2))
    pos[:, 1] = -depth
    preds: dict[int, list[int]] = {}
    for u, v in graph.edge_index.t().tolist():
        preds.setdefault(v, []).append(u)
    for level in range(int(depth.max()) + 1):
        members = np.flatnonzero(depth == level).tolist()
        key = {v: (np.mean([pos[u, 0] for u in preds.get(v, [])] or [0.0]), v) for v in members}
        members.sort(key=key.__getitem__)
        for j, v in enumerate(members):
            pos[v, 0] = (j - (len(members) - 1) / 2) * 1.4
    return pos


def _label(graph: ArchGraph, i: int) -> str:
    """Short text beside a node: module name for parameter nodes, op type otherwise."""
    kind = PRIMITIVES[int(graph.node_type[i])]
    name = graph.node_names[i]
    if "(" in name:  # a node that reuses another node's parameter (tied LM head)
        return f"{kind}, tied to {name[name.index('(') + 1:-1]}"
    if kind in ("bias", "input") or not any(graph.node_shape[i].tolist()):
        return kind
    return name.split(":")[0].rsplit(".", 1)[-1]


def _edge(p0: np.ndarray, p1: np.ndarray, span: int, lane: float):
    """Adjacent layers: straight; skip connections: an arc; very long edges (a tied head back to
    its embedding): along a lane left of everything, so they cross nothing."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MplPath

    style = dict(arrowstyle="-|>", mutation_scale=8, lw=0.6, color="0.5", zorder=1)
    if span <= 16:
        rad = 0 if span <= 1 else 0.35
        return FancyArrowPatch(p0, p1, shrinkA=4, shrinkB=5, connectionstyle=f"arc3,rad={rad}",
                               **style)
    points = [p0, (lane, p0[1]), (lane, p1[1]), (p1[0] - 0.18, p1[1])]
    return FancyArrowPatch(path=MplPath(points), **style)


def draw_graph(graph: ArchGraph, out: str | os.PathLike, title: str | None = None) -> Path:
    """Draw ``graph`` to ``out`` (format from the suffix: png, pdf, svg), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pos = layout(graph)
    types = graph.node_type.numpy()
    present = sorted(set(types.tolist()))
    colour = {t: COLOURS[t] for t in present}
    n_layers = int(-pos[:, 1].min()) + 1
    per_layer = min(LAYER_IN, 600 / n_layers)  # keep under matplotlib's pixel limit
    width = max(7.0, 1.4 * (pos[:, 0].max() - pos[:, 0].min()) + 5)
    fig, ax = plt.subplots(figsize=(width, per_layer * n_layers + 2.2))
    lane = pos[:, 0].min() - 0.9
    for u, v in graph.edge_index.t().tolist():
        ax.add_patch(_edge(pos[u], pos[v], int(round(pos[u, 1] - pos[v, 1])), lane))
    ax.scatter(pos[:, 0], pos[:, 1], s=70, c=[colour[t] for t in types], edgecolors="0.2",
               linewidths=0.5, zorder=2)
    for i in range(len(types)):
        ax.annotate(_label(graph, i), pos[i], xytext=(6, -2), textcoords="offset points",
                    fontsize=6, color="0.15", zorder=3)
    _block_marks(ax, graph, pos)
    ax.set_xlim(pos[:, 0].min() - 2.5, pos[:, 0].max() + 2.5)
    ax.set_ylim(pos[:, 1].min() - 1, 1)
    ax.axis("off")
    counts = np.bincount(types, minlength=len(PRIMITIVES))
    handles = [Patch(facecolor=colour[t], edgecolor="0.2", label=f"{PRIMITIVES[t]} ({counts[t]})")
               for t in present]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
              title="node type (count)", title_fontsize=7, frameon=True)
    head = title or "architecture graph"
    ax.set_title(f"{head}\n{graph.num_nodes} nodes, {graph.edge_index.shape[1]} edges, "
                 f"{graph.ve_index.shape[1]} virtual edges (cutoff {int(graph.cutoff)}), "
                 f"{len(graph.param_names)} parameters", fontsize=9, loc="left")
    fig.tight_layout()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def _block_marks(ax, graph: ArchGraph, pos: np.ndarray) -> None:
    """Name each repeated block ("blocks.3") at the height of its first node, on the left."""
    seen: set[str] = set()
    left = pos[:, 0].min() - 2.4
    for i, name in enumerate(graph.node_names):
        m = _BLOCK.match(name)
        if m and m.group(1) not in seen:
            seen.add(m.group(1))
            ax.axhline(pos[i, 1] + 0.5, color="0.85", lw=0.5, zorder=0)
            ax.text(left, pos[i, 1], m.group(1), fontsize=7, color="0.3", va="center")
