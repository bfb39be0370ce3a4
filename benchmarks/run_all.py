"""Run every benchmark in ``benchmarks/`` and print one combined table (``make bench``).

Each ``benchmarks/<name>.py`` (except this file and ``_*.py``) runs in its own process, with the
same Python, from the repository root. A benchmark prints its own table and writes JSON to
``benchmarks/results/``; the JSON files it created or updated are read back and flattened into the
combined table, one line per measured record::

    benchmark | case                      | measurements
    predict   | gpt2-large, ghn=random:.. | params=774,030,080, predict.seconds=12.2

``case`` joins a record's short text/boolean fields (``case``/``arch``/``name`` bare, others as
``key=value``), ``measurements`` its numeric fields (nested keys dotted). Each benchmark first gets
a ``status`` line (ok / failed / timed out, seconds); a failure does not stop the others. The
table is also written to ``benchmarks/results/summary.md`` (and ``summary.json``).

Usage: ``python benchmarks/run_all.py [--only NAME ...] [--timeout S] [--args NAME="ARGS" ...]
[-- ARGS for every script]``, e.g. ``--args predict="--repeats 1" ghn_step="--steps 2"``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def discover(bench_dir: Path) -> list[Path]:
    """Benchmark scripts in ``bench_dir``, sorted (this runner and ``_private.py`` excluded)."""
    me = Path(__file__).name
    return sorted(p for p in bench_dir.glob("*.py") if p.name != me and not p.name.startswith("_"))


def _json_mtimes(results: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in results.glob("*.json")} if results.is_dir() else {}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Lists of records under these keys need no label; other list keys name their set in the case.
GENERIC_SETS = ("records", "results", "rows", "cases", "runs")
BARE_KEYS = ("case", "arch", "name", "model", "benchmark")


def records(data: object) -> list[dict]:
    """The measurement records of one benchmark JSON.

    A top-level list of objects is the records; in an object, every list of objects is a set of
    records (a non-generic key becomes part of the case) and the object's own numeric fields
    (e.g. ``cpu_count``) one more record.
    """
    if isinstance(data, list):
        return [_flatten(r) for r in data if isinstance(r, dict)]
    if not isinstance(data, dict):
        return []
    out: list[dict] = []
    top: dict = {}
    for k, v in data.items():
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            label = {} if k in GENERIC_SETS else {"set": k}
            out += [{**label, **_flatten(r)} for r in v]
        elif isinstance(v, dict):
            top.update(_flatten(v, f"{k}."))
        else:
            top[k] = v
    if any(_is_number(v) for v in top.values()):
        out.insert(0, top)
    return out


def rows_of(name: str, data: object) -> list[tuple[str, str, str]]:
    """``(benchmark, case, measurements)`` lines of one benchmark's JSON."""
    rows = []
    for rec in records(data):
        case = ", ".join(
            str(v) if k in BARE_KEYS else f"{k}={v}"
            for k, v in rec.items() if isinstance(v, (str, bool)) and len(str(v)) <= 40
        )
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in rec.items() if _is_number(v))
        if values:
            rows.append((name, case or "-", values))
    return rows


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"


def run_one(script: Path, results: Path, timeout: float, extra: list[str]) -> tuple[str, dict]:
    """Run one benchmark; returns its status and ``{json path: parsed JSON}`` of what it wrote."""
    before = _json_mtimes(results)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(script), *extra], cwd=ROOT, timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    status += f", {time.perf_counter() - t0:.1f} s"
    written = {}
    for p, mtime in _json_mtimes(results).items():
        if before.get(p) != mtime and not p.name.startswith("summary"):
            try:
                written[p] = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                status += f"; {p.name}: bad JSON ({e.msg})"
    return status, written


def format_table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
    """A markdown table with aligned columns."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r: tuple) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows)]) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=HERE, help="folder of benchmark scripts")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these (file stems)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    ap.add_argument("--args", nargs="+", default=[], metavar='NAME="ARGS"',
                    help="arguments for one benchmark (file stem), e.g. predict=\"--repeats 1\"")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: passed to every benchmark")
    args = ap.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    scripts = discover(args.dir)
    own = {}
    for item in args.args:
        name, sep, value = item.partition("=")
        if not sep or name not in {s.stem for s in scripts}:
            print(f"error: --args {item!r}: expected NAME=ARGS with NAME a benchmark in "
                  f"{args.dir}", file=sys.stderr)
            return 2
        own[name] = shlex.split(value)
    if args.only:
        unknown = set(args.only) - {s.stem for s in scripts}
        if unknown:
            names = ", ".join(sorted(unknown))
            print(f"error: --only {names}: no such benchmark in {args.dir}", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.stem in args.only]
    if not scripts:
        print(f"error: no benchmark scripts in {args.dir}", file=sys.stderr)
        return 2
    results = args.dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    rows, summary, failed = [], {}, 0
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        status, written = run_one(script, results, args.timeout, extra + own.get(script.stem, []))
        failed += not status.startswith("ok")
        rows.append((script.stem, "status", status))
        for path, data in sorted(written.items()):
            rows += rows_of(script.stem, data)
        summary[script.stem] = {"status": status, "results": [str(p) for p in sorted(written)]}
    table = format_table(rows, ("benchmark", "case", "measurements"))
    print("\n=== all benchmarks ===\n" + table, end="")
    _atomic_write(results / "summary.md", table)
    _atomic_write(results / "summary.json", json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
