"""Parameter prediction vs ordinary random init: wall time and peak memory, 2 CPU threads.

For each target (default gpt2-large, gpt2-small, vit-base; tied GPT-2 as in our presets), three
kinds of fresh process, paired in the same run:

* ``init``    — ``build_model(spec, seed=0)``: the model with its ordinary random init (the bar);
* ``predict`` — ``load_ghn(GHN)`` + ``graph_for_spec`` + every tensor from ``ghn.predict(graph)``
  kept in a dict (the whole model in memory, like ``init``);
* ``write``   — what ``logah predict --hf no`` does: predict and stream each tensor to
  ``model.safetensors`` (+ ``logah.json``) in a temporary directory, freeing it as it goes.

Times exclude the Python/torch import (same for all three); peak RSS is the process's VmHWM
(imports included). Every worker runs with ``OMP_WAIT_POLICY=PASSIVE`` (what ``logah predict``
sets; ``--omp-wait-policy ACTIVE`` for OpenMP's default): on a shared machine spinning OpenMP
threads double the CPU time of parallel work. Init (``normal_``) is single-threaded either way. Each series starts with one discarded warm-up process; medians over
``--repeats`` processes, run in interleaved order (init, predict, write, init, ...). Targets (issue
#5): predict time <= 1.0 x init, peak RSS <= 1.3 x the fp32 model size. The reference LoGAH code's
figures for the same LoGAH-Tiny configuration on this kind of machine
(``shared/reference/reference-cpu-bench.md``) are printed beside ours.

Usage: ``python benchmarks/predict.py [--archs gpt2-large gpt2-small vit-base] [--repeats 3]
[--ghn random:logah-t] [--threads 2]``. Writes ``benchmarks/results/predict.json``.
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
OUT = ROOT / "benchmarks" / "results" / "predict.json"
MIB = 1024 * 1024

# reference-cpu-bench.md (LoGAH-Tiny, random GHN, 2 cores): HF random init of the model and the
# reference GHN forward (cold, fresh process) with its process peak RSS. Tied GPT-2: rows 3e/3f/3g.
REFERENCE = {
    "gpt2-large": {"init_s": 12.6, "ghn_forward_cold_s": 14.8, "ghn_forward_warm_s": 6.4,
                   "peak_rss_mib": 8257, "init_peak_rss_mib": 3528, "rows": "3e, 3g"},
    "gpt2-small": {"init_s": 2.00, "ghn_forward_cold_s": 1.47, "ghn_forward_warm_s": 1.57,
                   "peak_rss_mib": 2860, "init_peak_rss_mib": 905, "rows": "3e, 3f"},
    "vit-small": {"ghn_forward_cold_s": 0.67, "ghn_forward_warm_s": 0.77, "peak_rss_mib": 1754,
                  "rows": "5a (ViT-S/16; no ViT-B figure)"},
}

WORKER = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import torch
mode, arch, ghn_path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
from logah.config import get_preset
from logah.ghn.io import load_ghn
from logah.graph import graph_for_spec
from logah.nn import build_model
from logah.cli.main import main
t_import = time.perf_counter() - t0

def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

spec = get_preset(arch)
rss0 = status("VmRSS:")
phases = {}
t = time.perf_counter()
c = time.process_time()
if mode == "init":
    model = build_model(spec, seed=0)
    n = sum(p.numel() for p in model.parameters())
elif mode == "predict":
    ghn = load_ghn(ghn_path)
    phases["ghn_load_s"] = time.perf_counter() - t
    g = graph_for_spec(spec)
    phases["graph_s"] = time.perf_counter() - t - phases["ghn_load_s"]
    t1 = time.perf_counter()
    state = dict(ghn.predict(g))
    phases["predict_s"] = time.perf_counter() - t1
    n = sum(v.numel() for v in state.values())
else:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        rc = main(["predict", "--ghn", ghn_path, "--arch", arch, "--out", d, "--hf", "no",
                   "--no-progress"])
        assert rc == 0
        n = os.path.getsize(os.path.join(d, "model.safetensors")) // 4
seconds = time.perf_counter() - t
cpu = time.process_time() - c
print(json.dumps(dict(mode=mode, seconds=seconds, cpu_s=cpu, import_s=t_import, numel=n,
                      peak_rss_mib=status("VmHWM:") / 2**20, rss_after_import_mib=rss0 / 2**20,
                      **phases)))
"""


def run_worker(mode: str, arch: str, ghn: str, threads: int, wait_policy: str) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": wait_policy}
    proc = subprocess.run([sys.executable, "-c", WORKER, mode, arch, ghn, str(threads)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} {arch} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(arch: str, ghn: str, threads: int, repeats: int, wait_policy: str) -> dict:
    from logah.config import get_preset
    from logah.nn import count_params

    numel = count_params(get_preset(arch))
    run_worker("predict", arch, ghn, threads, wait_policy)  # discarded warm-up process
    samples: dict[str, list[dict]] = {"init": [], "predict": [], "write": []}
    for _ in range(repeats):
        for mode in samples:
            samples[mode].append(run_worker(mode, arch, ghn, threads, wait_policy))
            print(f"  {arch:<11} {mode:<8} {samples[mode][-1]['seconds']:7.2f} s  "
                  f"{samples[mode][-1]['peak_rss_mib']:8,.0f} MiB", flush=True)

    def med(mode: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[mode])

    size_mib = numel * 4 / MIB
    res = {"arch": arch, "ghn": ghn, "threads": threads, "omp_wait_policy": wait_policy,
           "repeats": repeats, "params": numel, "fp32_size_mib": size_mib,
           "load_avg_start": os.getloadavg()[0]}
    for mode in samples:
        res[mode] = {"seconds": med(mode, "seconds"), "cpu_s": med(mode, "cpu_s"),
                     "peak_rss_mib": med(mode, "peak_rss_mib")}
    res["predict"].update({k: med("predict", k) for k in ("ghn_load_s", "graph_s", "predict_s")})
    res["rss_after_import_mib"] = med("init", "rss_after_import_mib")
    res["load_avg_end"] = os.getloadavg()[0]
    base = res["rss_after_import_mib"]
    res["ratios"] = {
        "predict_time_vs_init": res["predict"]["seconds"] / res["init"]["seconds"],
        "predict_cpu_vs_init": res["predict"]["cpu_s"] / res["init"]["cpu_s"],
        "write_time_vs_init": res["write"]["seconds"] / res["init"]["seconds"],
        "predict_peak_rss_vs_fp32_size": res["predict"]["peak_rss_mib"] / size_mib,
        "write_peak_rss_vs_fp32_size": res["write"]["peak_rss_mib"] / size_mib,
        "init_peak_rss_vs_fp32_size": res["init"]["peak_rss_mib"] / size_mib,
        # without the ~340 MiB that importing torch/PyG/logah costs every process
        "predict_rss_above_import_vs_fp32_size": (res["predict"]["peak_rss_mib"] - base) / size_mib,
    }
    res["targets_met"] = {
        "time <= 1.0 x init": res["ratios"]["predict_time_vs_init"] <= 1.0,
        "peak RSS <= 1.3 x fp32 size": res["ratios"]["predict_peak_rss_vs_fp32_size"] <= 1.3,
    }
    ref_key = "vit-small" if arch.startswith("vit") else arch
    res["reference"] = REFERENCE.get(ref_key)
    res["samples"] = samples
    return res


def _table(results: list[dict]) -> str:
    head = (f"{'arch':<11} {'params':>8} {'MiB':>6} | {'init s':>6} {'pred s':>6} {'write s':>7} "
            f"{'t ratio':>7} {'cpu ratio':>9} | {'init MiB':>8} {'pred MiB':>8} {'write MiB':>9} "
            f"{'RSS/size':>8} {'extra/size':>10} | {'ref fwd s':>9} {'ref init s':>10} "
            f"{'ref MiB':>7}")
    lines = [head, "-" * len(head)]
    nan = float("nan")
    for r in results:
        ref, q = r["reference"] or {}, r["ratios"]
        lines.append(
            f"{r['arch']:<11} {r['params'] / 1e6:7.1f}M {r['fp32_size_mib']:6,.0f} | "
            f"{r['init']['seconds']:6.2f} {r['predict']['seconds']:6.2f} "
            f"{r['write']['seconds']:7.2f} {q['predict_time_vs_init']:7.2f} "
            f"{q['predict_cpu_vs_init']:9.2f} | {r['init']['peak_rss_mib']:8,.0f} "
            f"{r['predict']['peak_rss_mib']:8,.0f} {r['write']['peak_rss_mib']:9,.0f} "
            f"{q['predict_peak_rss_vs_fp32_size']:8.2f} "
            f"{q['predict_rss_above_import_vs_fp32_size']:10.2f} | "
            f"{ref.get('ghn_forward_cold_s', nan):9.2f} {ref.get('init_s', nan):10.2f} "
            f"{ref.get('peak_rss_mib', nan):7,.0f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=["gpt2-large", "gpt2-small", "vit-base"])
    ap.add_argument("--ghn", default="random:logah-t")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE"),
                    help="OMP_WAIT_POLICY of every worker (logah predict defaults to PASSIVE)")
    args = ap.parse_args()
    results = []
    for arch in args.archs:
        results.append(bench(arch, args.ghn, args.threads, args.repeats, args.omp_wait_policy))
    table = _table(results)
    print(table)
    print("t ratio = predict s / init s (target <= 1.0); cpu ratio = the same in CPU seconds "
          "(less sensitive to other load); RSS/size = predict peak RSS / fp32 model size (target "
          "<= 1.3); extra/size = the same without the ~340 MiB every process spends on imports. "
          "ref = reference LoGAH-Tiny (reference-cpu-bench.md): GHN forward alone (cold), HF "
          "random init, process peak RSS.")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, json.dumps({"results": results, "table": table}, indent=2))


if __name__ == "__main__":
    main()
