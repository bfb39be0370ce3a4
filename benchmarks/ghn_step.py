"""One GHN training step vs one ordinary training step of the same GPT-2, on 2 CPU cores.

The case of issue #6 and ``shared/reference/reference-cpu-bench.md`` row 4: LoGAH-T (m = 1) on a
GPT-2 with 6 layers x 256 wide, 8 heads, an untied 50,257-token vocabulary and context 256, fed
2 x 256 random tokens. The GHN step is ``GHNModule.step_losses`` (the training path: predict every
parameter, run the target on the meta device through ``functional_call``, task loss + 3e-5 x sum
of Frobenius norms), backward, clip to 5, AdamW on the GHN. The plain step is the same GPT-2
materialised: forward, cross-entropy, backward, AdamW (lr 3e-4, wd 1e-2) on its 30.5M parameters.
The two alternate in each process (paired under the same machine load); the graph is built once
and cached, as in training on a fixed architecture set (its build time is reported apart).

Every process is pinned to 2 cores with 2 torch threads (``--threads``); one discarded warm-up
process, then
``--repeats`` processes, medians. Target: GHN step <= 1.25 x plain step (the reference: 2.97 s
vs about 1.3 s). Writes ``benchmarks/results/ghn_step.json`` and prints a table.

Usage: ``python benchmarks/ghn_step.py [--repeats 3] [--steps 5] [--threads 2]``
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
OUT = ROOT / "benchmarks" / "results" / "ghn_step.json"
TARGET_RATIO = 1.25
REFERENCE = dict(ghn_step_s=2.97, plain_step_s=1.3)

CHILD = r"""
import json, os, sys, time
steps, warmup, threads = json.loads(sys.argv[1])
cores = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, set(cores))
import torch
torch.set_num_threads(threads)
import torch.nn.functional as F
from logah.config import get_preset
from logah.config.ghn import GHNConfig
from logah.ghn import GHN
from logah.config.train import OptimConfig
from logah.data.arch import arch_batch
from logah.graph import GraphCache
from logah.lit.ghn_module import GHNModule
from logah.lit.optim import build_optimizer
from logah.nn import build_model

spec = get_preset("gpt2-small").replace(n_layer=6, d_model=256, n_heads=8, d_qk=32, d_v=32,
                                         d_mlp=1024, n_ctx=256, tie_embeddings=False)
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 50257, (2, 256), generator=g)
y = torch.randint(0, 50257, (2, 256), generator=g)
optim = OptimConfig(lr=3e-4, weight_decay=1e-2)

module = GHNModule(GHN(GHNConfig(preset="logah-t"), seed=0), optim, seed=0)
ghn_opt = build_optimizer(module.ghn, optim)
cache = GraphCache(8)
t = time.perf_counter(); archs = arch_batch(cache, [spec], ["bench"]); graph_s = time.perf_counter() - t
plain = build_model(spec, seed=0)
plain_opt = build_optimizer(plain, optim)
sync = lambda: None

def ghn_step():
    t0 = time.perf_counter()
    loss = module.step_losses((x, y), archs)["loss"]  # the training path, m = 1
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(module.ghn.parameters(), 5.0)
    ghn_opt.step(); ghn_opt.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    return t3 - t0, dict(forward=t1 - t0, backward=t2 - t1, clip_adamw=t3 - t2)

def plain_step():
    t0 = time.perf_counter()
    loss = F.cross_entropy(plain(x).flatten(0, 1), y.flatten())
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    plain_opt.step(); plain_opt.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    return t3 - t0, dict(forward=t1 - t0, backward=t2 - t1, adamw=t3 - t2)

for _ in range(warmup):
    ghn_step(); plain_step()
ghn, plain_t, ghn_ph, plain_ph = [], [], [], []
for _ in range(steps):  # alternate: each pair sees the same machine load
    a, pa = ghn_step(); b, pb = plain_step()
    ghn.append(a); plain_t.append(b); ghn_ph.append(pa); plain_ph.append(pb)
med = lambda xs: sorted(xs)[len(xs) // 2]
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps(dict(
    ghn_step_s=med(ghn), plain_step_s=med(plain_t), graph_build_s=graph_s,
    ghn_phases={k: med([p[k] for p in ghn_ph]) for k in ghn_ph[0]},
    plain_phases={k: med([p[k] for p in plain_ph]) for k in plain_ph[0]},
    ratios=[a / b for a, b in zip(ghn, plain_t)], cores=cores,
    ghn_params=module.ghn.num_params(), target_params=sum(p.numel() for p in plain.parameters()),
    peak_rss_mib=hwm / 1024)))
"""


def run_child(steps: int, warmup: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps([steps, warmup, threads])],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    if res.returncode:
        raise RuntimeError(f"child failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(rec: dict) -> str:
    rows = [
        ("GHN step (LoGAH-T, m=1)", rec["ghn_step_s"], REFERENCE["ghn_step_s"]),
        ("plain step (fwd+bwd+AdamW)", rec["plain_step_s"], REFERENCE["plain_step_s"]),
        ("ratio GHN / plain", rec["ratio"], REFERENCE["ghn_step_s"] / REFERENCE["plain_step_s"]),
    ]
    lines = [f"{'measure':<28} {'ours':>8} {'reference':>10}", "-" * 48]
    lines += [f"{n:<28} {v:>8.3f} {r:>10.2f}" for n, v, r in rows]
    lines.append("GHN step phases (s): " + ", ".join(f"{k} {v:.3f}"
                                                 for k, v in rec["ghn_phases"].items()))
    lines.append("plain step phases (s): " + ", ".join(f"{k} {v:.3f}"
                                                   for k, v in rec["plain_phases"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes")
    ap.add_argument("--steps", type=int, default=5, help="timed step pairs per process")
    ap.add_argument("--warmup", type=int, default=2, help="untimed step pairs per process")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (2 = the target setting; 1 is less sensitive to load)")
    args, _ = ap.parse_known_args(argv)  # tolerate options run_all passes to every benchmark
    load_before = os.getloadavg()[0]
    run_child(1, 1, args.threads)  # discarded warm-up process (file cache, lazy imports)
    runs = [run_child(args.steps, args.warmup, args.threads) for _ in range(args.repeats)]
    load_after = os.getloadavg()[0]
    med = statistics.median
    rec = dict(
        case="gpt2 6x256 h8 untied vocab 50257 ctx 256, tokens 2x256, logah-t m=1",
        threads=str(args.threads),
        ghn_step_s=med(r["ghn_step_s"] for r in runs),
        plain_step_s=med(r["plain_step_s"] for r in runs),
        ratio=med(x for r in runs for x in r["ratios"]),  # median of the paired ratios
        graph_build_s=med(r["graph_build_s"] for r in runs),
        ghn_phases={k: med(r["ghn_phases"][k] for r in runs) for k in runs[0]["ghn_phases"]},
        plain_phases={k: med(r["plain_phases"][k] for r in runs) for k in runs[0]["plain_phases"]},
        peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
        ghn_params=runs[0]["ghn_params"], target_params=runs[0]["target_params"],
        target_ratio=TARGET_RATIO, reference=REFERENCE,
    )
    print(table(rec))
    verdict = "OK" if rec["ratio"] <= TARGET_RATIO else "OVER"
    print(f"ratio {rec['ratio']:.3f} vs target <= {TARGET_RATIO}: {verdict}")
    print(f"1-min load average {load_before:.1f} before, {load_after:.1f} after "
          f"({os.cpu_count()} CPUs): timings on a busy machine are inflated")
    payload = dict(description=__doc__.split("\n\n")[0], cpu_count=os.cpu_count(),
                   load_avg_before=load_before, load_avg_after=load_after,
                   repeats=args.repeats, steps=args.steps, records=[rec])
    atomic_write_text(OUT, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
