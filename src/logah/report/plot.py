"""Validation-curve figure of ``logah compare`` (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import os

from logah.report.compare import Comparison, Run, higher_is_better
from logah.utils.fs import atomic_path


def short_names(names: list[str]) -> dict[str, str]:
    """Legend labels: the names without the prefix (up to a ``-``) they all share, if any."""
    if len(names) < 2:
        return {n: n for n in names}
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind("-") + 1]  # cut at a word boundary
    if not prefix or any(n == prefix for n in names):
        return {n: n for n in names}
    return {n: n[len(prefix):] for n in names}


def _panels(metric: str, scalars: list[dict], size: tuple[float, float]):
    """``(plt, fig, axes, tags)``: one panel for ``metric`` plus one for ``val/acc1`` when every
    run logs it and it is not already the metric (Agg backend: no display, headless tests)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    tags = [metric]
    if metric != "val/acc1" and all("val/acc1" in s for s in scalars):
        tags.append("val/acc1")
    fig, axes = plt.subplots(1, len(tags), figsize=(size[0] * len(tags), size[1]), squeeze=False)
    return plt, fig, axes, tags


def plot_curves(
    runs: list[Run], comp: Comparison, dest: str | os.PathLike, title: str | None = None
) -> None:
    """One panel for ``comp.metric`` (with the baseline's final value dashed) plus one for
    ``val/acc1`` when the runs log it and it is not already the metric. Legend = run names.
    """
    labels = short_names([r.name for r in runs])
    plt, fig, axes, tags = _panels(comp.metric, [r.scalars for r in runs], (6.4, 4.4))
    try:
        for ax, tag in zip(axes[0], tags):
            for r in runs:
                steps, values = r.x_curve(tag, comp.x)
                label = labels[r.name] + (" (baseline)" if r.name == comp.baseline else "")
                ax.plot(steps, values, marker="o", markersize=3, linewidth=1.6, label=label)
            if tag == comp.metric and comp.target is not None:
                ax.axhline(comp.target, color="grey", linestyle="--", linewidth=1,
                           label=f"{labels[comp.baseline]} final ({comp.target:.4g})")
            ax.set_xlabel("training FLOPs" if comp.x == "flops" else "optimizer step")
            better = "higher" if higher_is_better(tag) else "lower"
            ax.set_ylabel(f"{tag} ({better} is better)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(title or f"validation curves: {comp.metric}")
        fig.tight_layout()
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def plot_protocol(cells: list, proto, dest: str | os.PathLike, title: str | None = None) -> None:
    """The protocol's curves: per init, at its best learning rate, the mean over seeds (line)
    and the band between the lowest and highest seed (shaded); the target dashed; a second
    panel with ``val/acc1`` when every cell logs it. ``cells``: :class:`logah.report.protocol.Cell`.
    """
    import numpy as np

    plt, fig, axes, tags = _panels(proto.metric, [c.scalars for c in cells], (6.8, 4.6))
    try:
        for ax, tag in zip(axes[0], tags):
            for row in proto.rows:
                at = [c for c in cells if c.label == row.label and c.lr == row.best_lr]
                steps = sorted(set.intersection(*(set(c.scalars[tag][0]) for c in at)))
                ys = np.array([[dict(zip(*c.scalars[tag]))[s] for s in steps] for c in at])
                label = f"{row.label} (lr {row.best_lr:g}, {len(at)} seeds)"
                line, = ax.plot(steps, ys.mean(0), linewidth=1.6, label=label)
                if len(at) > 1:
                    ax.fill_between(steps, ys.min(0), ys.max(0), color=line.get_color(),
                                    alpha=0.2, linewidth=0)
            if tag == proto.metric and proto.target is not None:
                ax.axhline(proto.target, color="grey", linestyle="--", linewidth=1,
                           label=f"tuned {proto.baseline} final ({proto.target:.4g})")
            for name, v in (proto.extra_lines.items() if tag == proto.metric else ()):
                ax.axhline(v, color="black", linestyle=":", linewidth=1, label=f"{name} ({v:.4g})")
            ax.set_xlabel("optimizer step")
            better = "higher" if higher_is_better(tag) else "lower"
            ax.set_ylabel(f"{tag} ({better} is better)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(title or f"{proto.metric}: mean over seeds at each init's best lr "
                     "(band: min-max over seeds)")
        fig.tight_layout()
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
