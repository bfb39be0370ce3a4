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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from logah.report.compare import compare, load_runs, markdown_table, pick_baseline
    from logah.report.plot import plot_curves
    from logah.utils.fs import atomic_write_text

    runs = load_runs(args.runs)
    baseline = pick_baseline(runs, args.baseline)
    comp = compare(runs, metric=args.metric, baseline=baseline, x=args.x)
    table = markdown_table(comp)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(runs, comp, out / "curves.png", title=args.title)
    atomic_write_text(out / "table.md", table)
    atomic_write_text(out / "compare.json", json.dumps(comp.to_dict(), indent=2) + "\n")
    print(table, end="")
    if baseline is None:
        print("note: no run has init: random and no --baseline was given: no speed-up column")
    print(f"wrote {out / 'curves.png'}, {out / 'table.md'}, {out / 'compare.json'}")
    return 0
