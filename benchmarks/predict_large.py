"""Predicting a model larger than memory: ``logah predict --arch llama-3-8b --dtype bfloat16``.

One fresh ``logah predict`` process writes every parameter of the 8B shape (8,030,261,248) as
sharded safetensors plus the Hugging Face directory (``hf/``, written in the same pass), and is
measured for wall time, peak RSS (the process's VmHWM) and bytes written. Its natural reference,
paired in the same run: a plain sequential write of the same number of bytes into files of the
same sizes (16 MiB ``write`` calls of a preallocated buffer) — the physical limit of this disk.
Both are timed until the data is on disk (each ends with ``os.sync()``), and both outputs are
deleted afterwards (32 GB). The 1-minute load average is recorded before and after: on a shared
machine the CPU-bound part (decoding 8e9 values) is slowed by other load, the disk part less.

Usage: ``python benchmarks/predict_large.py [--arch llama-3-8b] [--ghn random:logah-t]
[--dir /tmp]``. Writes ``benchmarks/results/predict_large.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from logah.utils.fs import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "predict_large.json"
RSS_TARGET_MIB = 2048
BLOCK = 16 * 2**20


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def run_predict(arch: str, ghn: str, dtype: str, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "logah.cli.main", "predict", "--ghn", ghn, "--arch", arch,
           "--dtype", dtype, "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"logah predict failed:\n{proc.stderr[-3000:]}")
    t_sync = time.perf_counter()
    os.sync()
    sync_s = time.perf_counter() - t_sync
    rss = re.search(r"peak RSS ([\d,]+) MiB", proc.stdout)
    files = _files(out)
    progress = proc.stderr.count("\r") + proc.stderr.count("\n")
    return dict(seconds=seconds, sync_s=sync_s, wall_s=seconds + sync_s,
                peak_rss_mib=float(rss.group(1).replace(",", "")) if rss else None,
                bytes=sum(p.stat().st_size for p in files), files=len(files),
                shards=sum(p.name.startswith("model-") for p in files),
                progress_updates=progress, stdout=proc.stdout.strip().splitlines()[-1])


def plain_write(sizes: list[int], out: Path) -> dict:
    """The same bytes, in files of the same sizes, written as fast as Python can."""
    out.mkdir(parents=True)
    buf = memoryview(os.urandom(BLOCK))
    t = time.perf_counter()
    for i, size in enumerate(sizes):
        with open(out / f"f{i}", "wb") as f:
            left = size
            while left:
                n = min(left, BLOCK)
                f.write(buf[:n])
                left -= n
    write_s = time.perf_counter() - t
    os.sync()
    wall = time.perf_counter() - t
    return dict(seconds=write_s, wall_s=wall, bytes=sum(sizes))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="llama-3-8b")
    ap.add_argument("--ghn", default="random:logah-t")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--dir", default=None, help="where the outputs go (default: a temp dir)")
    args, _ = ap.parse_known_args(argv)  # tolerate options run_all passes to every benchmark
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="predict_large-") as d:
        pred = run_predict(args.arch, args.ghn, args.dtype, Path(d) / "pred")
        sizes = [p.stat().st_size for p in _files(Path(d) / "pred")]
        shutil.rmtree(Path(d) / "pred")
        plain = plain_write(sizes, Path(d) / "plain")
    load_after = os.getloadavg()[0]
    gb = pred["bytes"] / 1e9
    rec = dict(case=args.arch, ghn=args.ghn, dtype=args.dtype, predict=pred, plain_write=plain,
               predict_gb_per_s=gb / pred["wall_s"], plain_gb_per_s=gb / plain["wall_s"],
               predict_vs_plain_time=pred["wall_s"] / plain["wall_s"],
               rss_target_met=bool(pred["peak_rss_mib"] and pred["peak_rss_mib"] <= RSS_TARGET_MIB))
    head = f"{'case':<12} {'GB':>6} {'files':>5} | {'predict s':>9} {'GB/s':>5} {'peak MiB':>8} " \
           f"| {'plain s':>7} {'GB/s':>5} | {'ratio':>5}"
    row = (f"{args.arch:<12} {gb:6.2f} {pred['files']:5d} | {pred['wall_s']:9.1f} "
           f"{rec['predict_gb_per_s']:5.2f} {pred['peak_rss_mib'] or float('nan'):8,.0f} | "
           f"{plain['wall_s']:7.1f} {rec['plain_gb_per_s']:5.2f} | {rec['predict_vs_plain_time']:5.1f}")
    table = "\n".join([head, "-" * len(head), row])
    print(table)
    print(f"peak RSS target <= {RSS_TARGET_MIB} MiB: {'OK' if rec['rss_target_met'] else 'OVER'}; "
          f"ratio = predict wall / plain sequential write of the same bytes (both incl. sync); "
          f"1-min load {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} CPUs)")
    payload = dict(description=__doc__.split("\n\n")[0], cpu_count=os.cpu_count(),
                   load_avg_before=load_before, load_avg_after=load_after, records=[rec],
                   table=table)
    atomic_write_text(OUT, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
