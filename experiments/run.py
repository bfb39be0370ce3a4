"""Run experiments stage by stage, each stage a plain ``logah`` command; reruns skip done ones.

    python experiments/run.py conf/experiment/cpu-brown conf/experiment/cpu-fashion-mnist
    python experiments/run.py conf/experiment/cifar100 --devices 8 --predict-device cuda
    python experiments/run.py conf/experiment/wikitext103 --target gpt2-l --dry-run
    python experiments/run.py conf/experiment/cpu-brown --only '*random-lr0.003-s1'

Every command is printed (``$ logah ...``) before it runs. A stage that finished writes a marker
``{out_dir}/.stages/<id>.json`` (command, config-file hash, wall and CPU seconds); a rerun skips a
stage whose marker matches and whose output still exists, and an interrupted stage resumes from
its own ``last.ckpt`` (the commands resume by themselves). So rerunning the same command runs only
the cells that failed or are missing; ``--only GLOB`` restricts a run to matching stage ids. With
``--keep-going`` a failed stage does not stop the others. At the end each target's cells are
compared by the fair protocol (:mod:`logah.report.protocol`) into ``{results}/{experiment}-{target}/``
and the summary, ``{results}/README-snippet.md``, ``results.json`` and ``timings.md`` are written
(see ``exp_report.py``); a target with missing cells is reported as such, with the command that
reruns them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exp_plan import ExperimentError, Options, Stage, load_experiment, plan  # noqa: E402
from exp_report import write_report  # noqa: E402

from logah.config import LogahError  # noqa: E402
from logah.utils.fs import atomic_write_text  # noqa: E402


def logah_argv() -> list[str]:
    """The ``logah`` console script of this interpreter's environment (else ``python -m``)."""
    exe = Path(sys.executable).parent / "logah"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("logah")
    return [found] if found else [sys.executable, "-m", "logah.cli.main"]


def child_env() -> dict[str, str]:
    """The stages' environment: OpenMP threads wait passively unless the user chose otherwise
    (spinning threads burn CPU time without speeding anything up on a shared or busy machine)."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def marker_path(out_dir: Path, stage: Stage) -> Path:
    return out_dir / ".stages" / (stage.id.replace("/", "__") + ".json")


def is_done(out_dir: Path, stage: Stage) -> dict | None:
    """The stage's marker when it matches this command and the output still exists."""
    m = marker_path(out_dir, stage)
    if not (m.is_file() and stage.output.exists()):
        return None
    try:
        data = json.loads(m.read_text())
    except json.JSONDecodeError:
        return None
    if data.get("fingerprint") != stage.fingerprint():
        return None
    # An upstream stage that ran again rewrote this stage's inputs (markers without "deps" predate
    # the check and are trusted).
    if "deps" in data and data["deps"] != stage.deps_state():
        return None
    return data


def set_aside_stale(out_dir: Path, stage: Stage) -> Path | None:
    """Move the folder of a stage this runner finished with another command, config or inputs
    to ``{out_dir}/.stale/`` (else ``logah`` would refuse the changed config, or resume the old run
    from its ``last.ckpt`` and skip the training). Interrupted runs (no marker) are left to resume.
    """
    if not marker_path(out_dir, stage).is_file() or not stage.folder.exists():
        return None
    dest = out_dir / ".stale" / f"{stage.folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage.folder, dest)
    marker_path(out_dir, stage).unlink()
    return dest


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_stage(stage: Stage, out_dir: Path, dry_run: bool) -> dict:
    """Run one stage unless done; returns its timing record."""
    argv = stage.command()
    shown = "logah " + shlex.join(argv)
    done = is_done(out_dir, stage)
    if done is not None:
        print(f"[skip] {stage.id}: done ({done['wall_s']:.0f} s)  $ {shown}", flush=True)
        return {**done, "skipped": True}
    print(f"\n[run] {stage.id}\n$ {shown}", flush=True)
    if dry_run:
        return {"id": stage.id, "command": shown, "dry_run": True}
    stale = set_aside_stale(out_dir, stage)
    if stale is not None:
        print(f"[redo] {stage.id}: command, config or inputs changed; the old run -> {stale}",
              flush=True)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    rc = subprocess.call([*logah_argv(), *argv], env=child_env())
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    if rc != 0:
        raise ExperimentError(f"stage {stage.id} failed (exit {rc}) after {wall:.0f} s: {shown}")
    if not stage.output.exists():
        raise ExperimentError(f"stage {stage.id} finished but wrote no {stage.output}")
    record = {"id": stage.id, "command": shown, "fingerprint": stage.fingerprint(),
              "deps": stage.deps_state(),
              "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(marker_path(out_dir, stage), json.dumps(record, indent=1) + "\n")
    print(f"[done] {stage.id}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    return record


def select(stages: list[Stage], only: list[str] | None) -> list[Stage]:
    """The stages ``--only`` globs match (all without it); one error when nothing matches."""
    if not only:
        return stages
    chosen = [s for s in stages if any(fnmatch.fnmatchcase(s.id, g) for g in only)]
    if not chosen:
        raise ExperimentError(f"--only {' '.join(only)}: matches no stage id (e.g. "
                              f"{stages[-1].id})")
    return chosen


def run_all(stages: list[Stage], out_dir: Path, dry_run: bool,
            keep_going: bool) -> tuple[list[dict], list[str]]:
    """Run each stage (skipping done ones); with ``keep_going`` a failure is recorded and the
    next stage runs. Returns the timing records and the ids that failed."""
    records, failed = [], []
    for s in stages:
        try:
            records.append(run_stage(s, out_dir, dry_run))
        except ExperimentError as e:
            if not keep_going:
                raise
            print(f"[failed] {e}", file=sys.stderr, flush=True)
            failed.append(s.id)
    return records, failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("experiments", nargs="+", metavar="EXP_DIR", help="conf/experiment/<name>")
    ap.add_argument("--out-dir", type=Path, default=Path("runs/experiments"),
                    help="where runs go (%(default)s)")
    ap.add_argument("--results", type=Path,
                    help="tables, plots, summary (default: OUT_DIR/results; make experiment-cpu: "
                    "experiments/results)")
    ap.add_argument("--lrs", type=float, nargs="+", metavar="LR",
                    help="learning-rate grid of every target (default: protocol.yaml's)")
    ap.add_argument("--seeds", type=int, nargs="+", metavar="S",
                    help="fine-tuning seeds (default: protocol.yaml's)")
    ap.add_argument("--only", nargs="+", metavar="GLOB",
                    help="run only stages whose id matches (e.g. '*random-lr0.003-s1'); the "
                    "report still covers every cell")
    ap.add_argument("--keep-going", action="store_true",
                    help="a failed stage does not stop the others (exit 1 at the end)")
    ap.add_argument("--devices", type=int, help="trainer.devices of training stages (ddp if > 1)")
    ap.add_argument("--ghn-devices", type=int,
                    help="trainer.devices of train-ghn stages (default --devices); the meta-batch "
                    "is archs.meta_batch per device, so the paper's /m1 GHNs use 1")
    ap.add_argument("--predict-device", default="cpu", help="device of logah predict (cpu, cuda)")
    ap.add_argument("--target", dest="targets", nargs="+", metavar="NAME",
                    help="only these finetune-<NAME>.yaml targets")
    ap.add_argument("--set", dest="sets", nargs="+", default=[], metavar="KEY=VALUE",
                    help="extra overrides for every train-ghn / finetune stage")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results = args.results or args.out_dir / "results"
    opts = Options(out_dir=args.out_dir, lrs=args.lrs, seeds=args.seeds, devices=args.devices,
                   ghn_devices=args.ghn_devices, sets=args.sets,
                   predict_device=args.predict_device, targets=args.targets)
    t0 = time.perf_counter()
    try:
        exps = [load_experiment(p) for p in args.experiments]
        stages = [s for e in exps for s in plan(e, opts)]  # validates every config first
        chosen = select(stages, args.only)
        records, failed = run_all(chosen, args.out_dir, args.dry_run, args.keep_going)
        if not args.dry_run:
            write_report(exps, stages, records, args.results,
                         total_wall=time.perf_counter() - t0, argv=sys.argv)
    except LogahError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to continue", file=sys.stderr)
        return 130
    if failed:
        print(f"failed: {', '.join(failed)}; rerun the same command to retry only these",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
