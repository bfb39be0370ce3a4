"""``logah compare RUN_DIR...``: validation curves (PNG), a markdown table and JSON of several runs.

Reads the TensorBoard event files under each run folder (``runs/finetune/<name>/``), so it works on
any runs that log the shared tags (``val/loss``, ``val/ppl``, ``val/acc1``). The speed-up column
measures how many steps each run needs to reach the baseline's (random init's) final value; see
:mod:`logah.report.compare` for the exact definition.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare",
        help="plot validation curves of runs and tabulate final/best values and speed-up",
        description="Writes OUT/curves.png, OUT/table.md, OUT/compare.json; prints the table.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders holding event files")
    p.add_argument("--out", default="runs/compare", metavar="DIR", help="output (%(default)s)")
    p.add_argument("--metric", default="val/loss", help="tag for curves and speed-up (%(default)s)")
    p.add_argument(
        "--baseline",
        metavar="NAME",
        help="run the speed-up is measured against (default: the run whose config.yaml has "
        "init: random)",
    )
    p.add_argument("--x", default="step", choices=("step", "flops"),
                   help="x axis of the curves and unit of the speed-up: optimizer steps or "
                   "cumulative training FLOPs (perf/flops) (%(default)s)")
    p.add_argument("--title", help="figure title (default: 'validation curves: METRIC')")
    p.add_argument("--grid", action="store_true",
                   help="the fair protocol: runs are cells (init, optim.lr, seed from their "
                   "config.yaml); per init the best lr (mean final METRIC over seeds), mean ± "
                   "spread over seeds, steps/FLOPs to the tuned baseline's final value; the "
                   "baseline is the init label given by --baseline (default: random); the x "
                   "axis is steps, FLOPs are a column")
    p.add_argument("--label", dest="labels", nargs="+", action="extend", default=[],
                   metavar="RUN_DIR=LABEL",
                   help="--grid: the init label of a run (default: from its init, e.g. "
                   "ghn:<train-ghn run name>); repeatable")
    p.add_argument("--line", dest="lines", nargs="+", action="extend", default=[],
                   metavar="NAME=VALUE",
                   help="--grid: a reference value drawn and tabulated, e.g. unigram=5.642")
    p.set_defaults(func=run)
    return p


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    from logah.report.compare import CompareError

    out = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep or not key or not value:
            raise CompareError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def run_grid(args: argparse.Namespace) -> int:
    """``--grid``: the protocol table (see :mod:`logah.report.protocol`)."""
    from logah.report.compare import CompareError
    from logah.report.plot import plot_protocol
    from logah.report.protocol import load_cell, markdown, protocol

    labels = {str(Path(k)): v for k, v in _pairs(args.labels, "--label").items()}
    lines = {}
    for k, v in _pairs(args.lines, "--line").items():
        try:
            lines[k] = float(v)
        except ValueError:
            raise CompareError(f"--line {k}={v}: not a number") from None
    cells = [load_cell(r, labels.get(str(Path(r)))) for r in args.runs]
    proto = protocol(cells, metric=args.metric, baseline=args.baseline or "random")
    proto.extra_lines = lines
    out = _write(args.out, markdown(proto), "protocol.json", proto.to_dict(),
                 lambda dest: plot_protocol(cells, proto, dest, title=args.title))
    print(f"wrote {out / 'curves.png'}, {out / 'table.md'}, {out / 'protocol.json'}")
    return 0


def _write(out_dir: str, table: str, json_name: str, data: dict, plot) -> Path:
    """``curves.png`` (by ``plot(dest)``), ``table.md`` and ``json_name`` into ``out_dir``,
    atomically; prints the table."""
    from logah.utils.fs import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "curves.png")
    atomic_write_text(out / "table.md", table)
    atomic_write_text(out / json_name, json.dumps(data, indent=2) + "\n")
    print(table, end="")
    return out


def run(args: argparse.Namespace) -> int:
    if args.grid:
        return run_grid(args)
    if args.labels or args.lines:
        from logah.report.compare import CompareError

        raise CompareError("--label and --line belong to --grid")
    from logah.report.compare import compare, load_runs, markdown_table, pick_baseline
    from logah.report.plot import plot_curves

    runs = load_runs(args.runs)
    baseline = pick_baseline(runs, args.baseline)
    comp = compare(runs, metric=args.metric, baseline=baseline, x=args.x)
    out = _write(args.out, markdown_table(comp), "compare.json", comp.to_dict(),
                 lambda dest: plot_curves(runs, comp, dest, title=args.title))
    if baseline is None:
        print("note: no run has init: random and no --baseline was given: no speed-up column")
    print(f"wrote {out / 'curves.png'}, {out / 'table.md'}, {out / 'compare.json'}")
    return 0
