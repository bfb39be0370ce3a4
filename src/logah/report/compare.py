"""Compare training runs from their TensorBoard event files: curves, final/best values, speed-up.

The pure part of ``logah compare`` (no Lightning): read every ``events.out.tfevents.*`` file under a
run folder, merge them (a resumed run writes several; the later write of a step wins), and compute

* the final and best value of each validation tag (``val/loss``, ``val/ppl``, ``val/acc1``);
* the *speed-up* of each run over a baseline (the random-init run): ``target`` = the baseline's
  final value of the chosen metric; ``steps(run)`` = the first step at which the run's curve is at
  least as good as ``target``, linearly interpolated between the two evaluations that bracket
  the crossing; ``speed-up(run) = steps(baseline) / steps(run)`` (the baseline is 1.00x by
  construction). A run already there at its first evaluation crossed somewhere before it, so its
  speed-up is a lower bound (shown ``>= 8.29x``).

Plotting lives in :mod:`logah.report.plot`; the command in :mod:`logah.cli.cmd_compare`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from logah.config.errors import LogahError

# Tags reported in the table when present, in this order (the chosen metric always comes first).
REPORT_TAGS = ("val/loss", "val/ppl", "val/acc1")
X_AXES = ("step", "flops")  # what ``--x`` measures the curves and the speed-up in
FLOPS_TAG = "perf/flops"  # cumulative training FLOPs (logah finetune logs it)
EVENT_GLOB = "events.out.tfevents.*"


class CompareError(LogahError):
    """A run folder, event file, tag or baseline given to ``logah compare`` is unusable."""


@dataclass
class Run:
    """One run folder's scalars.

    Attributes:
        name: label used in the legend and table (the folder's name, made unique).
        path: the run folder.
        init: the ``init:`` of the run's saved ``config.yaml`` (``random``, ``weights:...``), or
            None without one.
        scalars: tag -> (steps, values), steps strictly increasing.
    """

    name: str
    path: Path
    init: str | None = None
    scalars: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def curve(self, tag: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of ``tag``; a one-line error listing the tags the run has."""
        if tag not in self.scalars:
            have = ", ".join(sorted(self.scalars)) or "none"
            raise CompareError(f"{self.path}: no scalar tag {tag!r} (tags: {have})")
        return self.scalars[tag]

    def x_curve(self, tag: str, x: str = "step") -> tuple[list[float], list[float]]:
        """``(x, values)`` of ``tag`` with x the optimizer step or the cumulative training FLOPs
        (``perf/flops`` interpolated at the tag's steps, see :func:`flops_at`)."""
        steps, values = self.curve(tag)
        if x == "step":
            return [float(s) for s in steps], values
        if x != "flops":
            raise CompareError(f"--x {x}: expected one of: {', '.join(X_AXES)}")
        if FLOPS_TAG not in self.scalars:
            raise CompareError(f"{self.path}: no {FLOPS_TAG!r} (the run predates FLOPs logging); "
                               "use --x step")
        return flops_at(*self.scalars[FLOPS_TAG], steps), values


def flops_at(flop_steps: list[int], flops: list[float], steps: list[int]) -> list[float]:
    """Cumulative FLOPs at ``steps``: linear between the logged ``(step, flops)`` points (anchored
    at (0, 0)), and past the last point at the last segment's rate. A growing run's rate changes
    at its growth steps, so a point between two logs is off by at most one logging interval's
    change of rate."""
    pts = [(0.0, 0.0)] + [(float(s), float(f)) for s, f in zip(flop_steps, flops) if s > 0]
    out = []
    for s in steps:
        i = next((k for k in range(1, len(pts)) if pts[k][0] >= s), len(pts) - 1)
        (s0, f0), (s1, f1) = pts[max(i - 1, 0)], pts[i]
        out.append(f0 + (f1 - f0) * (s - s0) / (s1 - s0) if s1 > s0 else f1)
    return out


def higher_is_better(tag: str) -> bool:
    """Accuracy-like tags improve upwards; losses and perplexities downwards."""
    return "acc" in tag.rsplit("/", 1)[-1]


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar under ``run_dir`` (recursively), merged over event files.

    Raises:
        CompareError: the folder does not exist or holds no event file.
    """
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    root = Path(run_dir)
    if not root.is_dir():
        raise CompareError(f"{root}: no such run folder")
    files = sorted(root.rglob(EVENT_GLOB))
    if not files:
        raise CompareError(f"{root}: no TensorBoard event files ({EVENT_GLOB}) under it")
    # tag -> step -> (wall_time, value): when a resumed run re-logs a step, the later write wins.
    merged: dict[str, dict[int, tuple[float, float]]] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={SCALARS: 0})  # 0 = keep every point
        acc.Reload()
        for tag in acc.Tags()[SCALARS]:
            by_step = merged.setdefault(tag, {})
            for ev in acc.Scalars(tag):
                old = by_step.get(ev.step)
                if old is None or ev.wall_time >= old[0]:
                    by_step[ev.step] = (ev.wall_time, float(ev.value))
    return {
        tag: ([s for s in sorted(pts)], [pts[s][1] for s in sorted(pts)])
        for tag, pts in merged.items()
    }


def read_init(run_dir: Path) -> str | None:
    """The ``init`` recorded in the run's ``config.yaml`` (``logah finetune`` saves it), if any."""
    import yaml

    for cfg in (run_dir / "config.yaml", *sorted(run_dir.glob("*/config.yaml"))):
        if cfg.is_file():
            try:
                data = yaml.safe_load(cfg.read_text())
            except yaml.YAMLError:
                return None
            value = data.get("init") if isinstance(data, dict) else None
            return str(value) if value is not None else None
    return None


def load_runs(run_dirs: list[str | os.PathLike]) -> list[Run]:
    """Read each folder; names are folder names, prefixed by the parent where two would clash."""
    if not run_dirs:
        raise CompareError("give at least one run folder")
    paths = [Path(d) for d in run_dirs]
    names = [p.resolve().name for p in paths]
    runs = []
    for p, name in zip(paths, names):
        if names.count(name) > 1:
            name = f"{p.resolve().parent.name}/{name}"
        runs.append(Run(name=name, path=p, init=read_init(p), scalars=read_scalars(p)))
    if len({r.name for r in runs}) != len(runs):
        raise CompareError("two run folders have the same name; give distinct folders")
    return runs


def pick_baseline(runs: list[Run], name: str | None) -> Run | None:
    """The baseline: the run named ``name`` (name or folder), else the one with ``init: random``.

    Returns:
        The baseline, or None when no name is given and no run has ``init: random``.

    Raises:
        CompareError: ``name`` matches no run, or several runs have ``init: random``.
    """
    if name is not None:
        for r in runs:
            if name in (r.name, str(r.path), r.path.name):
                return r
        names = ", ".join(r.name for r in runs)
        raise CompareError(f"--baseline {name}: not one of the runs ({names})")
    randoms = [r for r in runs if r.init == "random"]
    if len(randoms) > 1:
        names = ", ".join(r.name for r in randoms)
        raise CompareError(f"several runs have init: random ({names}); choose one with --baseline")
    return randoms[0] if randoms else None


def steps_to_reach(
    steps: list[int], values: list[float], target: float, higher: bool = False
) -> float | None:
    """First (interpolated) step at which the curve is at least as good as ``target``.

    Between two evaluations ``(s0, v0)`` (not yet there) and ``(s1, v1)`` (there) the crossing is
    placed linearly: ``s0 + (target - v0) / (v1 - v0) * (s1 - s0)``. A curve already there at its
    first point returns that step. None when never reached. NaN points never count as reached.
    """

    def reached(v: float) -> bool:
        return v >= target if higher else v <= target

    prev: tuple[int, float] | None = None
    for s, v in zip(steps, values):
        if reached(v):
            if prev is None or math.isnan(prev[1]) or prev[1] == v:
                return float(s)
            s0, v0 = prev
            return s0 + (target - v0) / (v - v0) * (s - s0)
        prev = (s, v)
    return None


@dataclass
class Row:
    """One run's line of the table (values keyed by tag; None where the run lacks the tag)."""

    name: str
    init: str | None
    last_step: int
    final: dict[str, float | None]
    best: dict[str, float | None]
    first: float | None = None  # the metric at its first point: the init's own value when that
    first_step: int | None = None  # point is step 0 (``trainer.val_at_start``)
    steps_to_target: float | None = None
    speedup: float | None = None
    speedup_is_lower_bound: bool = False  # reached at the first evaluation: at least this much


@dataclass
class Comparison:
    """Everything ``logah compare`` reports: rows plus what the speed-up was measured against."""

    metric: str
    tags: list[str]
    rows: list[Row]
    baseline: str | None = None
    target: float | None = None
    x: str = "step"  # what steps_to_target and speed-up count: optimizer steps or FLOPs

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "x": self.x,
            "higher_is_better": higher_is_better(self.metric),
            "baseline": self.baseline,
            "target": self.target,
            "rows": [{k: _json_safe(v) for k, v in vars(r).items()} for r in self.rows],
        }


def _json_safe(v: object) -> object:
    """Strict JSON has no inf/NaN: write them as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    return v


def compare(runs: list[Run], metric: str = "val/loss", baseline: Run | None = None,
            x: str = "step") -> Comparison:
    """Final/best values of ``metric`` (and the other report tags present) plus speed-ups,
    measured in optimizer steps (``x="step"``) or training FLOPs (``x="flops"``).

    Raises:
        CompareError: a run lacks ``metric`` or has no point for it.
    """
    for r in runs:
        if not r.curve(metric)[0]:
            raise CompareError(f"{r.path}: tag {metric!r} has no points")
    tags = [metric] + [t for t in REPORT_TAGS if t != metric and any(t in r.scalars for r in runs)]
    higher = higher_is_better(metric)
    rows = []
    for r in runs:
        final, best = {}, {}
        for t in tags:
            vals = [v for v in r.scalars.get(t, ([], []))[1] if not math.isnan(v)]
            final[t] = r.scalars[t][1][-1] if t in r.scalars and r.scalars[t][1] else None
            best[t] = (max(vals) if higher_is_better(t) else min(vals)) if vals else None
        steps, values = r.curve(metric)
        rows.append(Row(r.name, r.init, steps[-1], final, best, values[0], steps[0]))
    curves = {r.name: r.x_curve(metric, x) for r in runs}
    if baseline is None:
        return Comparison(metric, tags, rows, x=x)
    target = baseline.curve(metric)[1][-1]
    base_steps = steps_to_reach(*curves[baseline.name], target, higher)
    for r, row in zip(runs, rows):
        row.steps_to_target = steps_to_reach(*curves[r.name], target, higher)
        if row.steps_to_target is None or base_steps is None:
            continue
        row.speedup = base_steps / row.steps_to_target if row.steps_to_target > 0 else math.inf
        row.speedup_is_lower_bound = (r is not baseline
                                      and row.steps_to_target == curves[r.name][0][0])
    return Comparison(metric, tags, rows, baseline=baseline.name, target=target, x=x)


def _fmt(v: float | None, tag: str = "") -> str:
    if v is None:
        return "-"
    if math.isnan(v) or math.isinf(v):
        return str(v)
    if "acc" in tag and v <= 1.0:
        return f"{100 * v:.2f}%"  # accuracies are logged as fractions
    return f"{v:.2f}" if abs(v) >= 100 else f"{v:.4f}"


def markdown_table(c: Comparison) -> str:
    """The comparison as a GitHub markdown table (one row per run, baseline marked)."""
    head = ["run", "init", "steps", f"first {c.metric} (step)"]
    for t in c.tags:
        head += [f"final {t}", f"best {t}"]
    if c.baseline is not None:
        unit = "FLOPs" if c.x == "flops" else "steps"
        head += [f"{unit} to {c.metric} {_fmt(c.target, c.metric)}", "speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in c.rows:
        name = f"{r.name} (baseline)" if r.name == c.baseline else r.name
        cells = [name, _short_init(r.init), str(r.last_step),
                 f"{_fmt(r.first, c.metric)} ({r.first_step})"]
        for t in c.tags:
            cells += [_fmt(r.final[t], t), _fmt(r.best[t], t)]
        if c.baseline is not None:
            if r.steps_to_target is None:
                cells += ["not reached", "-"]
            else:
                to = f"{r.steps_to_target:.3g}" if c.x == "flops" else f"{r.steps_to_target:.0f}"
                cells += [to, format_speedup(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_speedup(r: Row | dict) -> str:
    """``1.25x``, ``>= 8.29x`` (reached at the first evaluation), ``inf`` or ``-``."""
    speed = r["speedup"] if isinstance(r, dict) else r.speedup
    bound = r.get("speedup_is_lower_bound") if isinstance(r, dict) else r.speedup_is_lower_bound
    if speed is None:
        return "-"
    if speed in (math.inf, "inf"):
        return "inf"
    return (">= " if bound else "") + f"{float(speed):.2f}x"


def _short_init(init: str | None) -> str:
    if init is None:
        return "?"
    if init.startswith("weights:"):  # weights:runs/.../predict-logah -> weights:predict-logah
        return "weights:" + Path(init[len("weights:"):]).name
    return init
