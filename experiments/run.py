"""Run experiments stage by stage, each stage a plain ``logah`` command; reruns skip done ones.

    python experiments/run.py conf/experiment/cpu-brown conf/experiment/cpu-fashion-mnist
    python experiments/run.py conf/experiment/cifar100 --devices 8 --predict-device cuda
    python experiments/run.py conf/experiment/wikitext103 --target gpt2-l --dry-run
    python experiments/run.py conf/experiment/cpu-brown --only '*random-lr0.003-s1'

Every command is printed (``$ logah ...``) before it runs. A stage that finished writes a marker
``{out_dir}/.stages/<id>.json`` (command, config-file hash, wall and CPU seconds); a rerun skips a
stage whose marker matches and whose output still exists, and an interrupted stage resumes from
its own ``last.ckpt`` (the commands resume by themselves). ``--jobs N`` runs up to N stages at
once, each as soon as the stages it reads from have finished, with ``cpus / N`` torch threads each
and its output in ``{out_dir}/.stages/<id>.log`` (small models scale badly over threads: two
one-thread stages on 2 cores finish far sooner than one two-thread stage after another). So
rerunning the same command runs only the cells that failed or are missing; ``--only GLOB``
restricts a run to matching stage ids. With
``--keep-going`` a failed stage does not stop the others. At the end each target's cells are
compared by the fair protocol (:mod:`logah.report.protocol`) into ``{results}/{experiment}-{target}/``
and the summary, ``{results}/README-snippet.md``, ``results.json`` and ``timings.md`` are written
(see ``exp_report.py``); a target with missing cells is reported as such, with the command that
reruns them.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import fnmatch
import json
import os
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


def child_env(jobs: int = 1) -> dict[str, str]:
    """The stages' environment: OpenMP threads wait passively unless the user chose otherwise
    (spinning threads burn CPU time without speeding anything up on a shared or busy machine);
    with ``jobs`` stages at once each gets ``cpus // jobs`` threads unless OMP_NUM_THREADS is set."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def launch(argv: list[str], env: dict[str, str], log: Path | None) -> tuple[int, float]:
    """Run one command (output to ``log`` when given, else inherited); its exit code and the CPU
    seconds of it and its children (from its own ``wait4``, so exact with other stages running)."""
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 (closed below)
    try:
        proc = subprocess.Popen(argv, env=env, stdout=out,
                                stderr=subprocess.STDOUT if out is not None else None)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if out is not None:
            out.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


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


def run_stage(stage: Stage, out_dir: Path, dry_run: bool, jobs: int = 1) -> dict:
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
    log = marker_path(out_dir, stage).with_suffix(".log") if jobs > 1 else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rc, cpu = launch([*logah_argv(), *argv], child_env(jobs), log)
    wall = time.perf_counter() - t0
    if rc != 0:
        where = f" (output: {log})" if log is not None else ""
        raise ExperimentError(f"stage {stage.id} failed (exit {rc}) after {wall:.0f} s{where}: "
                              f"{shown}")
    if not stage.output.exists():
        raise ExperimentError(f"stage {stage.id} finished but wrote no {stage.output}")
    record = {"id": stage.id, "command": shown, "fingerprint": stage.fingerprint(),
              "deps": stage.deps_state(),
              "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "jobs": jobs,
              "load_avg_1m": round(os.getloadavg()[0], 2),
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


def upstream(stages: list[Stage]) -> dict[str, set[str]]:
    """Stage id -> ids of the listed stages whose outputs it reads (a GHN snapshot comes from the
    ``train-ghn`` stage writing the same checkpoints folder)."""
    def makes(p: Stage, dep: Path) -> bool:
        return dep == p.output or (p.argv[0] == "train-ghn" and dep.parent == p.output.parent)

    return {s.id: {p.id for p in stages if p is not s and any(makes(p, d) for d in s.deps)}
            for s in stages}


def run_all(stages: list[Stage], out_dir: Path, dry_run: bool, keep_going: bool,
            jobs: int = 1) -> tuple[list[dict], list[str]]:
    """Run each stage (skipping done ones), up to ``jobs`` at once, each after its upstream
    stages; with ``keep_going`` a failure is recorded and the others run (stages reading a failed
    one's output are failed too). Returns the timing records (in stage order) and failed ids."""
    needs = upstream(stages)
    records: dict[str, dict] = {}
    failed: list[str] = []
    pending = list(stages)
    with cf.ThreadPoolExecutor(max(1, jobs)) as pool:
        running: dict[cf.Future, Stage] = {}
        while pending or running:
            for s in [s for s in pending if needs[s.id] & set(failed)]:
                pending.remove(s)
                failed.append(s.id)
                print(f"[failed] {s.id}: an upstream stage failed", file=sys.stderr, flush=True)
            ready = [s for s in pending if not needs[s.id] - set(records)]
            if failed and not keep_going:
                ready = []  # stop starting stages; let the running ones finish
            for s in ready[:max(1, jobs) - len(running)]:
                pending.remove(s)
                running[pool.submit(run_stage, s, out_dir, dry_run, jobs)] = s
            if not running:
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                s = running.pop(fut)
                try:
                    records[s.id] = fut.result()
                except ExperimentError as e:
                    print(f"[failed] {e}", file=sys.stderr, flush=True)
                    failed.append(s.id)
    if failed and not keep_going:
        raise ExperimentError(f"stage {failed[0]} failed; rerun the same command to continue")
    return [records[s.id] for s in stages if s.id in records], failed


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
    ap.add_argument("--jobs", type=int, default=1,
                    help="stages run at once, each with cpus/JOBS torch threads (%(default)s; "
                    "make experiment-cpu: 2)")
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
        if args.jobs < 1:
            raise ExperimentError(f"--jobs {args.jobs}: must be >= 1")
        records, failed = run_all(chosen, args.out_dir, args.dry_run, args.keep_going, args.jobs)
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
