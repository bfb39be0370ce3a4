"""Ablation of the GHN fixes (issue 13): held-out zero-shot loss vs random init, per split.

Each cell is one ``logah train-ghn --config conf/train_ghn/<task>.yaml ...`` run (the project's own
command) with the GHN flags of its stage, a fixed step budget (the wall-clock cap is lifted) and a
seed. Stages are cumulative:

=========  =====================================================================================
baseline   every fix off: Q = K = V (``ghn.fused=false``), vocabulary lookups (untrained rows),
           GHN-3 decoder init (/5, zero bias), decay on Linear weights only, virtual-edge
           attention, raw tied embedding, fan-in scaling of the raw output
+fused     ``ghn.fused=true``: Q, K, V are slices of one fused prediction
+size      ``ghn.size_lookup=trained``: unseen sizes / depths read the nearest trained row
+decoder   ``ghn.decoder_init=default ghn.decay_all=true``: the reference's low-rank decoder init,
           weight decay on every GHN parameter
+pairs     ``ghn.all_pairs=true``: attention over all node pairs, learned no-path bias
+norms     ``ghn.norm_tied=true ghn.standardize=true``: tied ``wte`` at std 0.02 (GPT), weights
           standardised before fan-in scaling (ViT)
=========  =====================================================================================

Resumable cell by cell: a finished cell's JSON in ``<out>/cells/`` is kept; an interrupted run
resumes from its ``last.ckpt`` (train-ghn's own resume). After every cell the table
(``<out>/table.md``) and ``<out>/results.json`` are rewritten. Each record has the seed, wall
time, CPU load average (start / end) and the per-split means of the held-out architectures
(``in_range``, ``deeper``, ``wider``) for the predicted parameters and for random init, plus the
depth diversity (mean pairwise cosine of same-shape predicted tensors across depth) of the
trained GHN on the held-out architectures with two or more layers.

Usage: ``nice python experiments/ghn_ablation.py [--tasks gpt vit] [--seeds 0 1]
[--steps gpt=300 vit=600] [--jobs 1] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFF = dict(fused=False, size_lookup="vocab", decoder_init="ghn3", decay_all=False,
           all_pairs=False, norm_tied=False, standardize=False)
STAGES: list[tuple[str, dict]] = [
    ("baseline", {}),
    ("+fused", dict(fused=True)),
    ("+size", dict(size_lookup="trained")),
    ("+decoder", dict(decoder_init="default", decay_all=True)),
    ("+pairs", dict(all_pairs=True)),
    ("+norms", dict(norm_tied=True, standardize=True)),
]
SPLITS = ("in_range", "deeper", "wider")


def stage_flags(stage: str) -> dict:
    """The cumulative GHN flags of ``stage``."""
    flags = dict(OFF)
    for name, change in STAGES:
        flags.update(change)
        if name == stage:
            return flags
    raise ValueError(f"unknown stage {stage!r}")


def _fmt(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def command(task: str, stage: str, seed: int, steps: int, runs: Path) -> list[str]:
    """The ``logah train-ghn`` command line of one cell."""
    flags = [f"ghn.{k}={_fmt(v)}" for k, v in stage_flags(stage).items()]
    return [sys.executable, "-m", "logah.cli.main", "train-ghn",
            "--config", str(ROOT / "conf" / "train_ghn" / f"{task}.yaml"),
            f"name={cell_name(task, stage, seed)}", f"out_dir={runs}", f"seed={seed}",
            "max_minutes=100000", f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}", "trainer.enable_progress_bar=false", *flags]


def cell_name(task: str, stage: str, seed: int) -> str:
    return f"{task}-{stage.lstrip('+')}-s{seed}"


def split_means(heldout: dict) -> dict:
    """Per split: mean zero-shot and random-init loss (and top-1 for images) and the count."""
    out = {}
    for split in SPLITS:
        rows = [r for r in heldout["architectures"] if r["kind"] == split]
        if not rows:
            continue
        rec = {"n": len(rows)}
        for key in ("zero_shot_loss", "random_init_loss", "zero_shot_acc1", "random_init_acc1"):
            if key in rows[0]:
                rec[key] = sum(r[key] for r in rows) / len(rows)
        out[split] = rec
    return out


def diversity(run_dir: Path) -> float | None:
    """Depth diversity of the trained GHN over the held-out architectures (>= 2 layers)."""
    import torch

    from logah.data.arch import read_archs
    from logah.ghn.diversity import depth_diversity
    from logah.ghn.io import load_ghn
    from logah.graph import graph_for_spec

    ghn = load_ghn(str(run_dir / "checkpoints" / "last.ckpt"))
    _, heldout, _ = read_archs(run_dir / "archs.json")
    values = []
    with torch.no_grad():
        for spec in heldout:
            if spec.n_layer >= 2:
                c = depth_diversity(ghn(graph_for_spec(spec))[0])
                values.append(c)
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def diversity_in_subprocess(run_dir: Path) -> float | None:
    """:func:`diversity` in a fresh process (torch work inside a runner thread can hang)."""
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'src')!r}, {str(ROOT / 'experiments')!r}]; "
            f"import ghn_ablation as g, pathlib; print(g.diversity(pathlib.Path({str(run_dir)!r})))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip().splitlines()[-1]
    return None if out == "None" else float(out)


def record(task: str, stage: str, seed: int, run_dir: Path, wall: float | None,
           load0: tuple | None, load1: tuple | None) -> dict:
    """The record of a finished cell (its run folder has ``heldout.json``)."""
    heldout = json.loads((run_dir / "heldout.json").read_text())
    rnd = (lambda xs: None if xs is None else [round(x, 2) for x in xs])  # noqa: E731
    return dict(task=task, stage=stage, seed=seed, steps=heldout["global_step"],
                flags=stage_flags(stage), wall_s=None if wall is None else round(wall, 1),
                load_start=rnd(load0), load_end=rnd(load1), splits=split_means(heldout),
                depth_cosine=diversity_in_subprocess(run_dir), run_dir=str(run_dir))


def collect(task: str, stage: str, seed: int, runs: Path) -> dict | None:
    """A record for a cell whose run finished outside a runner (wall time from file times;
    load average not recorded)."""
    run_dir = runs.resolve() / "train-ghn" / cell_name(task, stage, seed)
    if not (run_dir / "heldout.json").is_file():
        return None
    wall = (run_dir / "heldout.json").stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime
    return record(task, stage, seed, run_dir, wall, None, None)


def run_cell(task: str, stage: str, seed: int, steps: int, args: argparse.Namespace) -> dict:
    """Train (or resume) one cell and measure it; returns its record."""
    runs = Path(args.runs).resolve()
    run_dir = runs / "train-ghn" / cell_name(task, stage, seed)
    log = Path(args.out) / "logs" / f"{cell_name(task, stage, seed)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load0, t0 = os.getloadavg(), time.time()
    with open(log, "a") as fh:
        rc = subprocess.run(command(task, stage, seed, steps, runs), cwd=ROOT, env=env,
                            stdout=fh, stderr=subprocess.STDOUT).returncode
    wall, load1 = time.time() - t0, os.getloadavg()
    if rc != 0:
        raise RuntimeError(f"{cell_name(task, stage, seed)}: train-ghn exited {rc}; see {log}")
    return record(task, stage, seed, run_dir, wall, load0, load1)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def table(records: list[dict]) -> str:
    """Markdown: per task and stage, seed-mean zero-shot loss per split (random init beside)."""
    lines = []
    for task in sorted({r["task"] for r in records}):
        rows = [r for r in records if r["task"] == task]
        seeds = sorted({r["seed"] for r in rows})
        lines += [f"**{task}** (seeds {', '.join(map(str, seeds))}; steps "
                  f"{', '.join(sorted({str(r['steps']) for r in rows}))}; zero-shot loss, seed "
                  "mean (per seed); random init in the last row)", "",
                  "| stage | in range | deeper | wider | depth cosine | wall s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for stage, _ in STAGES:
            cells = [r for r in rows if r["stage"] == stage]
            if not cells:
                continue
            parts = []
            for split in SPLITS:
                v = [c["splits"].get(split, {}).get("zero_shot_loss") for c in cells]
                m = _mean(v)
                parts.append("–" if m is None else
                             f"{m:.3f} ({' / '.join(f'{x:.3f}' for x in v if x is not None)})")
            cos = _mean([c["depth_cosine"] for c in cells])
            wall = _mean([c["wall_s"] for c in cells])
            lines.append(f"| {stage} | {' | '.join(parts)} | "
                         f"{'–' if cos is None else f'{cos:.3f}'} | "
                         f"{'–' if wall is None else f'{wall:.0f}'} |")
        rnd = [_mean([c["splits"].get(s, {}).get("random_init_loss") for c in rows])
               for s in SPLITS]
        lines += ["| random init | " + " | ".join("–" if v is None else f"{v:.3f}" for v in rnd)
                  + " | | |", ""]
    return "\n".join(lines)


def write_outputs(out: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    from logah.utils.fs import atomic_write_text

    atomic_write_text(out / "results.json", json.dumps(records, indent=1) + "\n")
    atomic_write_text(out / "table.md", table(records) + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["gpt", "vit"], choices=["gpt", "vit"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--stages", nargs="+", default=[s for s, _ in STAGES])
    p.add_argument("--steps", nargs="+", default=["gpt=300", "vit=600"])
    p.add_argument("--jobs", type=int, default=1, help="cells run at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "ghn-ablation"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "ghn-ablation"))
    p.add_argument("--collect", action="store_true",
                   help="only record cells whose runs finished (no training)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    steps = {k: int(v) for k, v in (s.split("=") for s in args.steps)}
    out = Path(args.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    todo = [(t, s, seed) for seed in args.seeds for t in args.tasks for s in args.stages
            if not (out / "cells" / f"{cell_name(t, s, seed)}.json").is_file()]
    print(f"ghn-ablation: {len(todo)} cells to {'collect' if args.collect else 'run'} -> {out}",
          flush=True)
    if args.collect:
        from logah.utils.fs import atomic_write_text

        for cell in todo:
            rec = collect(*cell, Path(args.runs))
            if rec is not None:
                atomic_write_text(out / "cells" / f"{cell_name(*cell)}.json", json.dumps(rec))
        print(table(write_outputs(out)))
        return 0

    def one(cell: tuple[str, str, int]) -> None:
        task, stage, seed = cell
        rec = run_cell(task, stage, seed, steps[task], args)
        from logah.utils.fs import atomic_write_text

        atomic_write_text(out / "cells" / f"{cell_name(*cell)}.json", json.dumps(rec, indent=1))
        write_outputs(out)
        print(f"ghn-ablation: {cell_name(*cell)} done in {rec['wall_s']:.0f} s: "
              f"{json.dumps(rec['splits'])} cos {rec['depth_cosine']}", flush=True)

    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        for f in [pool.submit(one, c) for c in todo]:
            f.result()
    write_outputs(out)
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
