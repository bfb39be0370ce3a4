"""One in-training growth step, gpt2-small -> gpt2-medium shapes: wall time and peak memory.

What ``grow.schedule`` does at a growth step, minus Lightning (:mod:`logah.lit.growth`), in a fresh
process per measurement, float32, 2 CPU threads:

* ``grow``    — :func:`logah.grow.schedule.grow_stage` (the four exact expansions d_mlp, n_heads,
  d_model, n_layer of gpt2-small's state, plus their index map), then the grown model built on
  ``meta`` and given the new tensors (``load_state_dict(assign=True)``), the old state dropped;
* ``grow+adam`` — the same plus AdamW's ``exp_avg``/``exp_avg_sq`` carried along the index map
  (:func:`logah.grow.embed.carry_state`);
* ``init``    — ``build_model(gpt2-medium, seed=0)``: a fresh random init of the grown shapes
  (the natural reference: what starting the big model from scratch costs).

Wall time on a shared machine depends on the load, so the CPU time (user + sys of the process) is
recorded beside it, and the CPU time of the calling thread alone. The step uses two threads
(:mod:`logah.grow.fast`: the new layers are drawn on a second thread while the widths grow), so on
an idle machine the wall time is below the CPU time; most of the CPU time is first-touch page
faults of the grown model's fresh memory (~1.5-2 ns per float32 on the 2-core VM) and the serial
random draws of the free entries. A full garbage collection is run before the timer starts, so a
backlog left by the setup is not charged to the step. Memory: the process's peak RSS (VmHWM, reset
through ``/proc/self/clear_refs`` once gpt2-small's state exists) minus its RSS before gpt2-small
was built, in units of the fp32 size of gpt2-medium's parameters ("copies of the model"; the small
model itself is 0.35 of one). For ``grow+adam`` the unit is the grown model's parameters + moments
(3 x its size). Targets (issue #16): ``grow`` <= 1 s and <= 2 copies. Each mode: one discarded
warm-up process, then the median of ``--repeats``.

Usage: ``python benchmarks/grow_step.py [--repeats 3] [--threads 2]``. Writes
``benchmarks/results/grow_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from logah.utils.fs import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "grow_step.json"
MIB = 1024 * 1024

WORKER = r"""
import gc, json, sys, time
import torch
mode, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
from logah.config import get_preset
from logah.config.grow import GrowScheduleConfig, GrowStage
from logah.grow.embed import carry_state
from logah.grow.schedule import grow_stage, resolve_schedule
from logah.nn import build_model, param_shapes

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
small, medium = get_preset("gpt2-small"), get_preset("gpt2-medium")
unit = sum(torch.Size(s).numel() for s in param_shapes(medium).values()) * 4
rss0 = status("VmRSS")
if mode == "init":
    gc.collect()
    t, c, m = time.perf_counter(), time.process_time(), time.thread_time()
    model = build_model(medium, "cpu", seed=0)
    seconds, cpu, main = time.perf_counter() - t, time.process_time() - c, time.thread_time() - m
    peak = status("VmHWM")
else:
    model = build_model(small, "cpu", seed=0)
    cfg = GrowScheduleConfig(schedule=[GrowStage(step=1, to="gpt2-medium")])
    (stage,) = resolve_schedule(small, cfg, 2)
    adam = {}
    if mode == "grow+adam":
        adam = {n: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p),
                    "exp_avg_sq": torch.rand_like(p)} for n, p in model.named_parameters()}
    gc.collect()  # else the setup's pending full collection (~0.1 s) lands in the timed step
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
    t, c, m = time.perf_counter(), time.process_time(), time.thread_time()
    with torch.no_grad():
        state = {k: v.detach() for k, v in model.state_dict().items()}
        del model
        spec, grown, emb = grow_stage(small, state, stage, cfg)
        del state
        model = build_model(spec, "meta")
        model.load_state_dict(grown, strict=True, assign=True)
        del grown
        if adam:
            adam = carry_state(adam, emb, param_shapes(spec))
    seconds, cpu, main = time.perf_counter() - t, time.process_time() - c, time.thread_time() - m
    peak = status("VmHWM")
    if mode == "grow+adam":
        unit *= 3
n = sum(p.numel() for p in model.parameters())
print(json.dumps(dict(mode=mode, seconds=seconds, cpu_s=cpu, main_cpu_s=main, params=n, peak_over_start_mib=(peak - rss0) / 2**20,
                      copies=(peak - rss0) / unit, unit_mib=unit / 2**20)))
"""

MODES = ("grow", "grow+adam", "init")


def run_worker(mode: str, threads: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-c", WORKER, mode, str(threads)], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(threads: int, repeats: int) -> list[dict]:
    for mode in MODES:  # warm-up (file cache, lazy imports), discarded
        run_worker(mode, threads)
    samples: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode in MODES:  # interleaved, so load changes hit every mode alike
            samples[mode].append(run_worker(mode, threads))
    rows = []
    for mode, runs in samples.items():
        med = {k: statistics.median(r[k] for r in runs)
               for k in ("seconds", "cpu_s", "main_cpu_s", "peak_over_start_mib", "copies")}
        rows.append({"case": mode, "params": runs[0]["params"], "unit_mib": runs[0]["unit_mib"],
                     **med, "seconds_all": [round(r["seconds"], 3) for r in runs]})
    return rows


def _table(rows: list[dict], load: str) -> str:
    lines = [f"growth step gpt2-small -> gpt2-medium (float32; load average {load})",
             "| case | wall s (median) | CPU s | main thread CPU s | peak over start (MiB) | "
             "copies of the model | target |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        target = {"grow": "<= 1 s, <= 2 copies", "grow+adam": "(params + moments unit)",
                  "init": "reference"}[r["case"]]
        lines.append(f"| {r['case']} | {r['seconds']:.2f} | {r['cpu_s']:.2f} | "
                     f"{r['main_cpu_s']:.2f} | "
                     f"{r['peak_over_start_mib']:.0f} | "
                     f"{r['copies']:.2f} | {target} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = bench(args.threads, args.repeats)
    table = _table(rows, load)
    print(table)
    atomic_write_text(OUT, json.dumps({"results": rows, "load_average": load,
                                       "threads": args.threads, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
