"""Progressive growth vs training the final model from scratch, at the same training FLOPs.

    python experiments/progressive.py conf/experiment/cpu-progressive [--seeds 0 1 2] \
        [--lrs 1e-3 3e-3 1e-2] [--jobs 2] [--out-dir runs/experiments] [--results experiments/results] \
        [--dry-run]

The folder holds ``finetune-scratch.yaml`` (the final model from scratch: its ``trainer.max_steps``
times the FLOPs of one of its steps is the budget) and one ``finetune-<label>.yaml`` per growth
schedule (``grow.schedule``). Each schedule's ``trainer.max_steps`` is the step at which its
cumulative FLOPs (:func:`logah.nn.flops.step_flops` of each stage's model) reach the budget; the
runner computes it and refuses a file that says otherwise. Every (config, lr, seed) is one
``logah finetune`` run (reruns resume or are no-ops; ``--jobs N`` runs N at once, as
``experiments/run.py`` does). Per config the learning rate with the lowest
mean final ``val/loss`` over seeds is kept (the same tuning for every arm). Per seed, the target is
the scratch run's final ``val/loss``; each arm's "FLOPs to target" is interpolated on its
``val/loss`` curve against ``perf/flops`` (:mod:`logah.report.compare`, ``x="flops"``), and its
ratio to scratch's is reported as mean and range over seeds in ``{results}/{experiment}/``
(``results.json``, ``table.md``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exp_report import unigram_line  # noqa: E402
from run import child_env, launch  # noqa: E402 (the stage runner's process handling)

from logah.config import LogahError, load_config
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig
from logah.utils.fs import atomic_write_text

SCRATCH = "scratch"


def segments(cfg: FinetuneConfig) -> list[tuple[int, object]]:
    """``(first step, spec)`` of each stretch of training with one model shape."""
    from logah.grow.schedule import resolve_schedule

    spec = resolve_spec(cfg.model)
    stages = resolve_schedule(spec, cfg.grow, -1)
    return [(0, spec)] + [(st.step, st.target) for st in stages]


def matched_steps(cfg: FinetuneConfig, budget: float) -> int:
    """The step count whose cumulative training FLOPs first reach ``budget`` (rounded)."""
    from logah.nn.flops import step_flops

    shape = (cfg.data.batch_size, cfg.data.block_size or resolve_spec(cfg.model).n_ctx)
    segs = segments(cfg)
    spent = 0.0
    for (start, spec), nxt in zip(segs, [s for s, _ in segs[1:]] + [None]):
        rate = step_flops(spec, shape)
        if nxt is None or spent + (nxt - start) * rate >= budget:
            return start + round((budget - spent) / rate)
        spent += (nxt - start) * rate
    raise AssertionError("unreachable")


def load(folder: Path, arms: list[str] | None = None
         ) -> tuple[dict[str, Path], dict[str, FinetuneConfig], float]:
    """Config files by label (``arms`` only, plus scratch), their configs, and the FLOPs budget
    (the scratch run's)."""
    from logah.nn.flops import step_flops

    files = {p.stem.removeprefix("finetune-"): p for p in sorted(folder.glob("finetune-*.yaml"))}
    if arms:
        unknown = sorted(set(arms) - set(files))
        if unknown:
            raise LogahError(f"--arms {' '.join(unknown)}: not in {folder} ({', '.join(files)})")
        files = {k: v for k, v in files.items() if k in arms or k == SCRATCH}
    if SCRATCH not in files:
        raise LogahError(f"{folder}: no finetune-{SCRATCH}.yaml (the from-scratch budget)")
    cfgs = {k: load_config(FinetuneConfig, p) for k, p in files.items()}
    s = cfgs[SCRATCH]
    spec = resolve_spec(s.model)
    budget = s.trainer.max_steps * step_flops(spec, (s.data.batch_size, s.data.block_size or spec.n_ctx))
    for label, cfg in cfgs.items():
        try:
            want = matched_steps(cfg, budget)
        except LogahError as e:
            raise LogahError(f"{files[label]}: {e}") from None
        if cfg.trainer.max_steps != want:
            raise LogahError(f"{files[label]}: trainer.max_steps {cfg.trainer.max_steps}, but "
                             f"{want} steps spend the scratch budget of {budget:.4g} FLOPs")
    return files, cfgs, budget


def run_name(exp: str, label: str, lr: float, seed: int) -> str:
    return f"{exp}-{label}-lr{lr:g}-s{seed}"


def run_all(folder: Path, files: dict[str, Path], seeds: list[int], lrs: list[float],
            out_dir: Path, dry_run: bool, jobs: int = 1) -> list[dict]:
    """Every (arm, lr, seed) as ``logah finetune``, ``jobs`` at once (output of each in
    ``{out_dir}/finetune/<run>.log`` when more than one); their wall/CPU seconds and load."""
    cmds = []
    for label, f in files.items():
        for lr in lrs:
            for seed in seeds:
                name = run_name(folder.name, label, lr, seed)
                argv = [sys.executable, "-m", "logah.cli.main", "finetune", "--config", str(f),
                        f"name={name}", f"out_dir={out_dir}", f"seed={seed}", f"optim.lr={lr}"]
                print("$ logah " + " ".join(argv[3:]), flush=True)
                cmds.append((name, argv))
    if dry_run:
        return []

    def one(name: str, argv: list[str]) -> dict:
        log = out_dir / "finetune" / f"{name}.log" if jobs > 1 else None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rc, cpu = launch(argv, child_env(jobs), log)
        if rc != 0:
            raise LogahError(f"run {name} failed (exit {rc})" + (f"; output: {log}" if log else ""))
        return {"run": name, "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(cpu, 1),
                "load_avg_1m": round(os.getloadavg()[0], 2)}

    with cf.ThreadPoolExecutor(max(1, jobs)) as pool:
        return [f.result() for f in [pool.submit(one, n, a) for n, a in cmds]]


def report(folder: Path, files: dict[str, Path], seeds: list[int], lrs: list[float],
           out_dir: Path, results: Path, timing: dict | None = None) -> dict:
    """Best LR per config, FLOPs-to-target ratios vs scratch per seed, mean and range."""
    from logah.report.compare import compare, load_runs
    from logah.report.protocol import Cell, select_lr

    runs = {(lab, lr, s): out_dir / "finetune" / run_name(folder.name, lab, lr, s)
            for lab in files for lr in lrs for s in seeds}
    loaded = {k: load_runs([p])[0] for k, p in runs.items()}
    final = {k: r.curve("val/loss")[1][-1] for k, r in loaded.items()}
    # the fair protocol's rule (best mean final val/loss over seeds; a diverged run ranks last)
    # and each rate's mean, which shows whether the best rate is an edge of the grid
    picked = {lab: select_lr([Cell(lab, lr, s, r.path, r.scalars)
                              for (arm, lr, s), r in loaded.items() if arm == lab])
              for lab in files}
    best_lr = {lab: best for lab, (best, _) in picked.items()}
    rows = {}
    for lab in files:
        ratios, losses = [], []
        for s in seeds:
            base = loaded[(SCRATCH, best_lr[SCRATCH], s)]
            run = loaded[(lab, best_lr[lab], s)]
            c = compare([base, run] if run is not base else [base], baseline=base, x="flops")
            b, r = c.rows[0].steps_to_target, c.rows[-1].steps_to_target
            ratios.append(None if r is None or not b else r / b)
            losses.append(final[(lab, best_lr[lab], s)])
        got = [x for x in ratios if x is not None]
        rows[lab] = {"best_lr": best_lr[lab],
                     "grid": {f"{lr:g}": v for lr, v in picked[lab][1].items()},
                     "final_val_loss": losses,
                     "flops_ratio": ratios, "reached": f"{len(got)}/{len(seeds)}",
                     "flops_ratio_mean": statistics.mean(got) if got else None,
                     "flops_ratio_range": [min(got), max(got)] if got else None}
    out = {"experiment": folder.name, "seeds": seeds, "lrs": lrs,
           "unigram_val_nats": unigram_line(files[SCRATCH]), "arms": rows, "timing": timing or {}}
    dest = results / folder.name
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "results.json", json.dumps(out, indent=2) + "\n")
    atomic_write_text(dest / "table.md", table(out))
    print(table(out), end="")
    return out


def table(out: dict) -> str:
    lines = ["| arm | best lr (grid: mean final) | final val/loss (per seed) | FLOPs to scratch's "
             "final loss, x scratch (mean [range]) | reached |", "|---|---|---|---|---|"]
    for lab, r in out["arms"].items():
        loss = ", ".join(f"{v:.4f}" for v in r["final_val_loss"])
        ratio = "-" if r["flops_ratio_mean"] is None else (
            f"{r['flops_ratio_mean']:.3f} [{r['flops_ratio_range'][0]:.3f}, "
            f"{r['flops_ratio_range'][1]:.3f}]")
        lr = f"{r['best_lr']:g}"
        if r.get("grid"):  # results written before the grid was recorded have none
            lr += " (" + ", ".join(f"{k}: {v:.3f}" for k, v in r["grid"].items()) + ")"
        lines.append(f"| {lab} | {lr} | {loss} | {ratio} | {r['reached']} |")
    if out.get("unigram_val_nats") is not None:
        lines.append(f"\nUnigram line (cross-entropy of the validation split under the training "
                     f"split's unigram distribution): {out['unigram_val_nats']:.3f} nats.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    ap.add_argument("--jobs", type=int, default=1, help="runs at once, cpus/JOBS threads each")
    ap.add_argument("--out-dir", type=Path, default=Path("runs/experiments"))
    ap.add_argument("--results", type=Path, default=Path("experiments/results"))
    ap.add_argument("--arms", nargs="+", help="only these finetune-<label>.yaml (scratch always)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and the budget")
    args = ap.parse_args(argv)
    try:
        files, cfgs, budget = load(args.folder, args.arms)
    except LogahError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"budget: {budget:.4g} training FLOPs per run ("
          + ", ".join(f"{k}: {c.trainer.max_steps} steps" for k, c in cfgs.items()) + ")")
    t0, load0 = time.perf_counter(), os.getloadavg()
    try:
        runs = run_all(args.folder, files, args.seeds, args.lrs, args.out_dir, args.dry_run,
                       args.jobs)
    except LogahError as e:
        print(f"error: {e}; rerun the same command to continue", file=sys.stderr)
        return 1
    if not args.dry_run:
        timing = {"command": " ".join(sys.argv), "jobs": args.jobs, "cpus": os.cpu_count(),
                  "wall_s": round(time.perf_counter() - t0, 1),
                  "load_avg_1_5_15_start": [round(x, 2) for x in load0],
                  "load_avg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
                  "date": time.strftime("%Y-%m-%d %H:%M"), "runs": runs}
        report(args.folder, files, args.seeds, args.lrs, args.out_dir, args.results, timing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
