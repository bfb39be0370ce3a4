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


def plot_curves(
    runs: list[Run], comp: Comparison, dest: str | os.PathLike, title: str | None = None
) -> None:
    """One panel for ``comp.metric`` (with the baseline's final value dashed) plus one for
    ``val/acc1`` when the runs log it and it is not already the metric. Legend = run names.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display; also keeps tests headless
    import matplotlib.pyplot as plt

    labels = short_names([r.name for r in runs])
    tags = [comp.metric]
    if comp.metric != "val/acc1" and all("val/acc1" in r.scalars for r in runs):
        tags.append("val/acc1")
    fig, axes = plt.subplots(1, len(tags), figsize=(6.4 * len(tags), 4.4), squeeze=False)
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
