"""The results of ``experiments/run.py``: a summary table, plots, seeds and timings.

Writes into the results folder (next to each target's ``logah compare`` output ``{group}/``):

* ``README-snippet.md``: what the README shows (summary table of every target, the plots, the
  seeds, the machine and the time it took);
* ``results.json``: the same numbers, machine-readable (every ``compare.json`` plus seeds, target
  and GHN-space dims, stage timings);
* ``timings.md``: wall and CPU seconds of every stage.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import yaml

from exp_plan import Experiment, Stage  # noqa: E402  (experiments/ is on sys.path)

from logah.config import load_config
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig, TrainGHNConfig
from logah.report.compare import format_speedup
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


def _run_seed(run_dir: Path) -> int | None:
    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        return None
    data = yaml.safe_load(cfg.read_text()) or {}
    return data.get("seed")


def _fmt(v: float | None, tag: str) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if "acc" in tag else (f"{v:.1f}" if v >= 100 else f"{v:.3f}")


def group_table(g: dict) -> str:
    """One target's markdown table: per init, final/best metric, the other tag, steps, speed-up."""
    c, metric = g["compare"], g["compare"]["metric"]
    other = next((t for t in ("val/acc1", "val/ppl") if t in c["rows"][0]["final"]), None)
    head = ["init", f"{metric} at start", f"final {metric}", f"best {metric}"]
    head += [f"final {other}"] if other else []
    head += [f"steps to random's final {metric} ({_fmt(c['target'], metric)})", "speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in c["rows"]:
        steps = r["steps_to_target"]
        start = _fmt(r.get("first"), metric)
        if r.get("first_step"):  # no step-0 validation: say which step the first value is from
            start += f" (step {r['first_step']})"
        cells = [r["label"], start, _fmt(r["final"][metric], metric),
                 _fmt(r["best"][metric], metric)]
        cells += [_fmt(r["final"][other], other)] if other else []
        cells += ["not reached" if steps is None else f"{steps:.0f} of {r['last_step']}",
                  f"**{format_speedup(r)}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_table(groups: dict[str, dict]) -> str:
    """Every target's table under its name (printed at the end of a run)."""
    return "\n".join(f"{group}\n{group_table(g)}" for group, g in groups.items())


def collect(exps: list[Experiment], stages: list[Stage], groups: dict[str, Path]) -> dict:
    """Per group: the compare.json (rows labelled by init), seeds and dims."""
    out = {}
    for group, folder in groups.items():
        members = [s for s in stages if s.group == group]  # fine-tuning runs: output = weights
        labels = {s.output.parents[1].name: s.label for s in members}
        comp = json.loads((folder / "compare.json").read_text())
        for r in comp["rows"]:
            r["label"] = labels.get(r["name"], r["name"])
        exp = next(e for e in exps if e.name == members[0].experiment)
        # Every training run of the experiment records its seed in its config.yaml (the run
        # folder is output.parents[1] for both last.ckpt and weights/model.safetensors).
        seeds = {s.id.split("/", 1)[1]: _run_seed(s.output.parents[1]) for s in stages
                 if s.experiment == exp.name and s.argv[0] in ("train-ghn", "finetune")
                 and (s.group is None or s.group == group)}
        out[group] = {"compare": comp, "seeds": seeds, **target_dims(exp, members[0].target),
                      "table": str(folder / "table.md"), "plot": str(folder / "curves.png")}
    return out


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


def _snippet(data: dict, results: Path, command: str) -> str:
    m = data["machine"]
    parts = [f"Results of `{command}` ({m['date']}, {m['cpus']} CPU cores, torch {m['torch']}; "
             f"all stages {data['stage_wall_s'] / 60:.0f} min wall, "
             f"{data['stage_cpu_s'] / 60:.0f} min CPU; load average at the end "
             f"{m['load_avg_1_5_15'][2]:.1f}).",
             "Each target is deeper and wider than every architecture its GHNs trained on; every "
             "initialisation is fine-tuned with the same recipe for the same number of steps. "
             "At start = the initialisation's own validation loss (step 0, before any update). "
             "Speed-up = steps random init needs to reach its final validation loss / steps the "
             "run needs (interpolated between evaluations; `>=`: already there at the first "
             "evaluation). `grow-*` starts from a small model trained on the task first.", ""]
    for group, g in data["groups"].items():
        t = g["target"]
        spaces = "; ".join(f"{k}: L <= {v['max_layers']}, d <= {v['max_width']}"
                           for k, v in g["ghn_spaces"].items())
        seeds = ", ".join(f"{k} {v}" for k, v in g["seeds"].items())
        rel = os.path.relpath(Path(g["plot"]), Path.cwd())
        parts += [f"**{group}**: target {t['family']} {t['n_layer']} layers x {t['d_model']} "
                  f"({t['n_heads']} heads, MLP {t['d_mlp']}); GHN training spaces: {spaces}. "
                  f"Seeds: {seeds}.", "", group_table(g), f"![{group}]({rel})", ""]
    parts.append(f"Per-stage timings: `{os.path.relpath(results / 'timings.md', Path.cwd())}`.")
    return "\n".join(parts) + "\n"


def write_report(exps: list[Experiment], stages: list[Stage], records: list[dict],
                 groups: dict[str, Path], results: Path, total_wall: float,
                 argv: list[str]) -> None:
    """Write ``README-snippet.md``, ``results.json`` and ``timings.md`` into ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    data = {"command": " ".join(argv), "machine": machine(),
            "groups": collect(exps, stages, groups),
            "stages": records, "this_invocation_wall_s": round(total_wall, 1),
            "stage_wall_s": round(sum(r.get("wall_s", 0) for r in records), 1),
            "stage_cpu_s": round(sum(r.get("cpu_s", 0) for r in records), 1)}
    command = os.environ.get("EXPERIMENT_COMMAND", "").strip() or "python " + " ".join(argv)
    atomic_write_text(results / "results.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(results / "timings.md", timings_table(records))
    atomic_write_text(results / "README-snippet.md", _snippet(data, results, command))
    print(f"\nwrote {results}/README-snippet.md, results.json, timings.md")
    print(summary_table(data["groups"]), end="")
