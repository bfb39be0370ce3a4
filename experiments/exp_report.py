"""The results of ``experiments/run.py``: per target the fair-protocol table and plots, seeds,
timings.

Writes into the results folder, per target ``{group}/`` (``table.md``, ``curves.png`` — mean over
seeds at each init's best learning rate with the seed band — ``protocol.json`` and, when the
protocol names GHN snapshots, ``ghn_length.png``: steps saved vs GHN training minutes), and:

* ``README-snippet.md``: what the README shows (every target's table and plots, the unigram line
  of GPT targets, missing cells, the machine and the time it took);
* ``results.json``: the same numbers, machine-readable;
* ``timings.md``: wall and CPU seconds of every stage.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from exp_plan import Experiment, Stage, load_protocol, Options  # noqa: E402  (experiments/ on path)
from remap_vocab import unigram_nats  # noqa: E402

from logah.config import load_config
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig, TrainGHNConfig
from logah.report.protocol import Protocol, load_cell, markdown, protocol
from logah.utils.fs import atomic_write_text


def space_limits(ghn_file: Path) -> tuple[int, int]:
    """(deepest, widest) architecture of a GHN config's training space (held-out sets aside)."""
    cfg = load_config(TrainGHNConfig, ghn_file)
    bands = cfg.archs.space.bands
    return max(b.layers[1] for b in bands), max(b.width[1] for b in bands)


def target_dims(exp: Experiment, target: str) -> dict:
    """The target's dims and, per GHN, the limits of the space it trained on."""
    spec = resolve_spec(load_config(FinetuneConfig, exp.targets[target]).model)
    dims = {"family": spec.family, "n_layer": spec.n_layer, "d_model": spec.d_model,
            "n_heads": spec.n_heads, "d_mlp": spec.d_mlp}
    limits = {label: dict(zip(("max_layers", "max_width"), space_limits(f)))
              for label, f in exp.ghns.items()}
    return {"target": dims, "ghn_spaces": limits}


def unigram_line(finetune_file: Path) -> float | None:
    """Unigram cross-entropy of a text target's validation split (None for images / no data)."""
    import numpy as np

    cfg = load_config(FinetuneConfig, finetune_file)
    if cfg.data.name not in ("brown", "text"):
        return None
    root = Path(cfg.data.resolved_root())
    files = [root / "train.bin", root / "val.bin"]
    if not all(f.is_file() for f in files):
        return None
    meta = json.loads((root / "meta.json").read_text()) if (root / "meta.json").is_file() else {}
    train, val = (np.fromfile(f, dtype=np.uint16) for f in files)
    return unigram_nats(train, val, int(meta.get("vocab_size", 50257)))


def missing_cells(members: list[Stage]) -> list[Stage]:
    """Cells whose run has not finished (no exported weights)."""
    return [s for s in members if not s.output.is_file()]


def group_protocol(members: list[Stage]) -> tuple[Protocol | None, list[Stage]]:
    """The protocol over the inits whose cells all finished, and the missing cells."""
    missing = missing_cells(members)
    gone = {s.label for s in missing}
    cells = [load_cell(s.output.parents[1], s.label) for s in members if s.label not in gone]
    if not cells:
        return None, missing
    base = "random" if "random" in {c.label for c in cells} else None
    return protocol(cells, baseline=base), missing


def ghn_length_points(index: Path, proto: Protocol, ghn: str) -> list[dict]:
    """Per GHN training length (snapshots, then the final checkpoint, from the run's
    ``snapshots.json``): minutes, GHN step and the fine-tuning steps saved against tuned random
    (per seed, mean ± spread; None unless every seed reached the target)."""
    entries = json.loads(index.read_text()) if index.is_file() else []
    base = {r.label: r for r in proto.rows}.get(proto.baseline)
    points = []
    for e in entries:
        label = ghn if e["file"] == "last.ckpt" else f"{ghn}-{e['minutes']:g}min"
        row = {r.label: r for r in proto.rows}.get(label)
        if row is None or base is None:
            continue
        saved = [b - s for b, s in zip(base.steps, row.steps) if b is not None and s is not None]
        full = len(saved) == len(row.steps)
        # the other half of the answer when a seed never gets there: how far behind (or ahead)
        # of tuned random the init ends (mean final val/loss difference at each best rate)
        gap = (row.final[0] - base.final[0]) if None not in (row.final[0], base.final[0]) else None
        points.append({"label": label, "minutes": e["elapsed_s"] / 60, "ghn_step": e["step"],
                       "final_gap": gap, "steps_saved": saved if full else None,
                       "mean": statistics.fmean(saved) if full else None,
                       "sd": (statistics.stdev(saved) if len(saved) > 1 else 0.0) if full else None,
                       "speedup": row.speedup})
    return points


def plot_ghn_length(points: list[dict], dest: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from logah.utils.fs import atomic_path

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    try:
        got = [p for p in points if p["mean"] is not None]
        ax.errorbar([p["minutes"] for p in got], [p["mean"] for p in got],
                    yerr=[p["sd"] for p in got], marker="o", capsize=3, label="reached (mean ± sd)")
        for p in points:
            if p["mean"] is None:
                ax.plot([p["minutes"]], [0], marker="x", color="red")
                ax.annotate("not reached", (p["minutes"], 0), fontsize=7)
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xlabel("GHN training minutes (this machine)")
        ax.set_ylabel("fine-tuning steps saved vs tuned random")
        ax.grid(True, alpha=0.3)
        gaps = [p for p in points if p.get("final_gap") is not None]
        ax2.plot([p["minutes"] for p in gaps], [p["final_gap"] for p in gaps], marker="o")
        ax2.axhline(0, color="grey", linewidth=1)
        ax2.set_xlabel("GHN training minutes (this machine)")
        ax2.set_ylabel("final val/loss minus tuned random's (< 0: better)")
        ax2.grid(True, alpha=0.3)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1_5_15": [round(x, 1) for x in os.getloadavg()],
            "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "platform": platform.platform(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def timings_table(records: list[dict]) -> str:
    lines = ["| stage | wall s | CPU s | this invocation |", "|---|---|---|---|"]
    for r in records:
        state = "skipped (done earlier)" if r.get("skipped") else "ran"
        wall, cpu = r.get("wall_s", 0), r.get("cpu_s", 0)
        lines.append(f"| {r['id']} | {wall:.0f} | {cpu:.0f} | {state} |")
    total_wall = sum(r.get("wall_s", 0) for r in records)
    total_cpu = sum(r.get("cpu_s", 0) for r in records)
    lines.append(f"| **all stages** | **{total_wall:.0f}** | **{total_cpu:.0f}** | |")
    return "\n".join(lines) + "\n"


def collect_group(exp: Experiment, stages: list[Stage], group: str, results: Path) -> dict:
    """One target: protocol table/plots into ``results/group/``, and its numbers."""
    from logah.report.plot import plot_protocol

    members = [s for s in stages if s.group == group]
    target = members[0].target
    folder = results / group
    folder.mkdir(parents=True, exist_ok=True)
    proto, missing = group_protocol(members)
    rerun = sorted({f"*{s.id.split('/', 2)[2]}" for s in missing})
    out = {**target_dims(exp, target), "missing_cells": [s.id for s in missing],
           "rerun_only": rerun, "unigram_val_nats": unigram_line(exp.targets[target])}
    if proto is None:
        return out
    if out["unigram_val_nats"] is not None:
        proto.extra_lines["unigram (val split)"] = out["unigram_val_nats"]
    cells = [load_cell(s.output.parents[1], s.label) for s in members if s not in missing
             and s.label in {r.label for r in proto.rows}]
    plot_protocol(cells, proto, folder / "curves.png", title=f"{group}: mean over seeds at each "
                  "init's best lr (band: min-max over seeds)")
    table = markdown(proto)
    atomic_write_text(folder / "table.md", table)
    atomic_write_text(folder / "protocol.json", json.dumps(proto.to_dict(), indent=1) + "\n")
    out.update(protocol=proto.to_dict(), table=table, plot=str(folder / "curves.png"))
    curves = {}
    for ghn in load_protocol(exp, Options()).ghn_snapshots:
        ghn_stage = next(s for s in stages if s.id == f"{exp.name}/train-ghn/{ghn}")
        points = ghn_length_points(ghn_stage.output.parent / "snapshots.json", proto, ghn)
        if points:
            dest = folder / f"ghn_length-{ghn}.png"
            plot_ghn_length(points, dest, f"{group}: {ghn} init vs its training length")
            curves[ghn] = {"points": points, "plot": str(dest)}
    out["ghn_length"] = curves
    return out


def _snippet(data: dict, command: str) -> str:
    m = data["machine"]
    jobs = max([r.get("jobs", 1) for r in data["stages"]] or [1])
    ran = [r for r in data["stages"] if not r.get("skipped")]
    when = (f"{data['this_invocation_wall_s'] / 60:.0f} min wall, {jobs} stage(s) at a time"
            if len(ran) == len(data["stages"]) else
            f"stages run over several invocations, {data['stage_wall_s'] / 60:.0f} min wall summed")
    parts = [f"Results of `{command}` ({m['date']}, {m['cpus']} CPU cores, torch {m['torch']}; "
             f"{when}; {data['stage_cpu_s'] / 60:.0f} min CPU; 15-min load average at the end "
             f"{m['load_avg_1_5_15'][2]:.1f}).",
             "Protocol: every init is fine-tuned with the same recipe at every learning rate of "
             "the grid and every seed; its best rate is the one with the best mean final "
             "validation loss over seeds (the same rule for every init). Values are mean ± sample "
             "std over seeds at that rate; at start = step 0, before any update. Steps to the "
             "target: the first (interpolated) evaluation where seed s reaches the tuned random "
             "run's seed-s final loss; FLOPs = 6N x tokens per step x steps (or `perf/flops`). "
             "Growth inits start from a small model trained on the task first, GHN inits from "
             "a trained GHN: neither upfront cost is counted.", ""]
    for group, g in data["groups"].items():
        t = g["target"]
        spaces = "; ".join(f"{k}: L <= {v['max_layers']}, d <= {v['max_width']}"
                           for k, v in g["ghn_spaces"].items())
        parts += [f"**{group}**: target {t['family']} {t['n_layer']} layers x {t['d_model']} "
                  f"({t['n_heads']} heads, MLP {t['d_mlp']}); GHN training spaces: {spaces}.", ""]
        if "table" in g:
            parts += [g["table"], f"![{group}]({_rel(g['plot'])})", ""]
        for ghn, c in g.get("ghn_length", {}).items():
            pts = ", ".join(f"{p['minutes']:.0f} min: " + ("not reached" if p["mean"] is None
                            else f"{p['mean']:.0f} ± {p['sd']:.0f}")
                            + ("" if p.get("final_gap") is None
                               else f" (final loss {p['final_gap']:+.3f})") for p in c["points"])
            parts += [f"Steps saved by {ghn} vs its training length, and its final val/loss "
                      f"minus tuned random's: {pts}.",
                      f"![{group} {ghn}]({_rel(c['plot'])})", ""]
        if g["missing_cells"]:
            parts += [f"Missing cells ({len(g['missing_cells'])}; their inits are left out): "
                      f"rerun only them with `--only {' '.join(g['rerun_only'])}`.", ""]
    parts.append("Per-stage timings: `timings.md`.")
    return "\n".join(parts) + "\n"


def _rel(path: str) -> str:
    return os.path.relpath(Path(path), Path.cwd())


def write_report(exps: list[Experiment], stages: list[Stage], records: list[dict],
                 results: Path, total_wall: float, argv: list[str]) -> None:
    """Write every target's protocol output, ``README-snippet.md``, ``results.json`` and
    ``timings.md`` into ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    groups = {}
    for exp in exps:
        for group in dict.fromkeys(s.group for s in stages
                                   if s.group and s.experiment == exp.name):
            groups[group] = collect_group(exp, stages, group, results)
    data = {"command": " ".join(argv), "machine": machine(), "groups": groups,
            "stages": records, "this_invocation_wall_s": round(total_wall, 1),
            "stage_wall_s": round(sum(r.get("wall_s", 0) for r in records), 1),
            "stage_cpu_s": round(sum(r.get("cpu_s", 0) for r in records), 1)}
    command = os.environ.get("EXPERIMENT_COMMAND", "").strip() or "python " + " ".join(argv)
    atomic_write_text(results / "results.json", json.dumps(data, indent=1, default=str) + "\n")
    atomic_write_text(results / "timings.md", timings_table(records))
    atomic_write_text(results / "README-snippet.md", _snippet(data, command))
    print(f"\nwrote {results}/README-snippet.md, results.json, timings.md")
    for group, g in groups.items():
        print(f"{group}\n{g.get('table', 'no finished init yet')}")
