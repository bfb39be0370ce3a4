"""The fair comparison protocol: every init over a learning-rate grid and several seeds.

The pure part of ``logah compare --grid`` and of the experiment runner's tables (no Lightning).
A *cell* is one fine-tuning run: an init label, a learning rate and a seed (from its saved
``config.yaml``: ``init``, ``optim.lr``, ``seed``). For each init:

* **best learning rate** — the same rule for every init: the rate whose *final* value of the
  metric (``val/loss``), averaged over the seeds run at that rate, is best; a diverged run (NaN or
  inf) counts as the worst value; ties go to the smaller rate. Every rate must have been run with
  the same seeds as the others of its init, else the choice would compare unequal averages
  (:class:`ProtocolError` names the missing cells).
* **final / best** — mean ± spread (sample standard deviation, 0 for one seed) over the seeds at
  the best rate.
* **steps to target** — the target is the *tuned* baseline's (random init at its best rate) final
  value, paired by seed (the seed also fixes the data order): seed ``s`` of an init, at the
  init's best rate, is measured against the baseline's seed-``s`` final value (the mean over the
  baseline's seeds for a seed it lacks). Steps = the first (interpolated) step where the curve
  reaches it (:func:`logah.report.compare.steps_to_reach`); mean ± spread over the seeds that reach
  it, and how many did. ``speed-up`` = mean over seeds of baseline steps / the init's steps (none
  unless every seed gets there).
* **FLOPs to target** — the run's ``perf/flops`` tag (cumulative training FLOPs) interpolated at
  that step when the run logs it, else ``6 N x tokens per step x steps`` (``N``: the parameters a
  token's forward pass multiplies by — position tables and class token aside, the tied LM head
  counted once; attention's ``T^2`` term ignored, as in Kaplan et al.'s ``C = 6ND``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from logah.report.compare import CompareError, higher_is_better, read_scalars, steps_to_reach

FLOPS_TAG = "perf/flops"
# Parameters that a token's forward pass does not multiply by (lookups and additions).
_NOT_MATMUL = ("wpe.weight", "pos_embed", "cls_token")


class ProtocolError(CompareError):
    """A grid that cannot be compared fairly (missing cells, runs without config)."""


@dataclass
class Cell:
    """One fine-tuning run of the grid."""

    label: str
    lr: float
    seed: int
    path: Path
    scalars: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    flops_per_step: float | None = None  # 6 N x tokens per step, from the run's config

    def curve(self, tag: str) -> tuple[list[int], list[float]]:
        if tag not in self.scalars or not self.scalars[tag][0]:
            raise ProtocolError(f"{self.path}: no points for tag {tag!r}")
        return self.scalars[tag]

    def flops_at(self, step: float) -> float | None:
        """Training FLOPs spent by ``step``: ``perf/flops`` interpolated, else the 6N estimate."""
        if FLOPS_TAG in self.scalars and self.scalars[FLOPS_TAG][0]:
            steps, vals = self.scalars[FLOPS_TAG]
            return _interp(steps, vals, step)
        return None if self.flops_per_step is None else self.flops_per_step * step


def _interp(xs: list[int], ys: list[float], x: float) -> float:
    """Linear interpolation (extrapolated proportionally from 0 before the first point)."""
    if x <= xs[0]:
        return ys[0] * x / xs[0] if xs[0] else ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1] * x / xs[-1]


def init_label(init: str) -> str:
    """A short label for an ``init`` string: ``random``, ``mimetic``, ``ghn:<run name>``, ..."""
    kind, sep, path = init.partition(":")
    if not sep:
        return init
    if path.startswith("random:"):
        return f"{kind}:{path}"
    skip = {"checkpoints", "weights", "last.ckpt", "model.safetensors"}
    parts = [p for p in Path(path).parts if p not in skip]
    return f"{kind}:{parts[-1] if parts else path}"


def run_config(path: Path) -> dict:
    """The run's saved ``config.yaml`` (what ``logah finetune`` wrote)."""
    import yaml

    f = path / "config.yaml"
    if not f.is_file():
        raise ProtocolError(f"{path}: no config.yaml (not a logah finetune run folder)")
    data = yaml.safe_load(f.read_text())
    if not isinstance(data, dict):
        raise ProtocolError(f"{f}: not a mapping")
    return data


def flops_per_step(config_file: Path) -> float | None:
    """``6 N x tokens per optimizer step`` of a saved finetune ``config.yaml`` (None when it does
    not load as one)."""
    from logah.config import load_config
    from logah.config.errors import LogahError
    from logah.config.model import resolve_spec
    from logah.config.runs import FinetuneConfig
    from logah.nn import param_shapes

    try:
        c = load_config(FinetuneConfig, config_file)
        spec = resolve_spec(c.model)
    except LogahError:
        return None
    n = sum(math.prod(s) for k, s in param_shapes(spec).items() if k not in _NOT_MATMUL
            and not (k == "wte.weight" and not spec.tie_embeddings))
    per_item = (c.data.block_size or spec.n_ctx) if spec.family == "gpt2" else spec.n_patches + 1
    devices = c.trainer.devices if isinstance(c.trainer.devices, int) else 1
    items = c.data.batch_size * devices * c.trainer.num_nodes * c.trainer.accumulate_grad_batches
    return 6.0 * n * per_item * items


def load_cell(path: str | Path, label: str | None = None) -> Cell:
    """A :class:`Cell` from a run folder (its config.yaml and event files)."""
    p = Path(path)
    cfg = run_config(p)
    try:
        lr, seed, init = float(cfg["optim"]["lr"]), int(cfg["seed"]), str(cfg["init"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"{p}/config.yaml: needs init, seed and optim.lr") from None
    return Cell(label or init_label(init), lr, seed, p, read_scalars(p),
                flops_per_step(p / "config.yaml"))


def mean_spread(xs: list[float]) -> tuple[float | None, float | None]:
    """``(mean, sample std)``; std 0 for one value, ``(None, None)`` for none."""
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _final(cell: Cell, metric: str) -> float:
    v = cell.curve(metric)[1][-1]
    if not math.isfinite(v):  # diverged: the worst possible value
        return -math.inf if higher_is_better(metric) else math.inf
    return v


def select_lr(cells: list[Cell], metric: str = "val/loss") -> tuple[float, dict[float, float]]:
    """Best learning rate of one init's cells and the score (mean final value) of each rate.

    Raises:
        ProtocolError: rates run with different seed sets (names the missing cells).
    """
    by_lr: dict[float, dict[int, Cell]] = {}
    for c in cells:
        by_lr.setdefault(c.lr, {})[c.seed] = c
    seeds = set().union(*(set(s) for s in by_lr.values()))
    missing = [f"lr={lr:g} seed={s}" for lr, got in sorted(by_lr.items()) for s in sorted(seeds)
               if s not in got]
    if missing:
        raise ProtocolError(f"{cells[0].label}: missing cells {', '.join(missing)} (rerun them; "
                            "every rate needs the same seeds)")
    higher = higher_is_better(metric)
    scores = {lr: statistics.fmean(_final(c, metric) for c in got.values())
              for lr, got in by_lr.items()}
    rank = sorted(scores, key=lambda lr: ((-scores[lr] if higher else scores[lr]), lr))
    return rank[0], scores


@dataclass
class InitRow:
    """One init's line of the protocol table."""

    label: str
    best_lr: float
    lr_scores: dict[float, float]
    seeds: list[int]
    final: tuple[float | None, float | None]  # mean, spread over seeds at the best rate
    best: tuple[float | None, float | None]
    start: tuple[float | None, float | None]  # the curve's first point (step 0: the init itself)
    other: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    steps: list[float | None] = field(default_factory=list)  # per seed, to the target
    flops: list[float | None] = field(default_factory=list)
    speedup: float | None = None  # mean over seeds of baseline steps / this init's steps
    speedups: list[float] = field(default_factory=list)  # per seed (empty: some seed missed)

    @property
    def reached(self) -> list[float]:
        return [s for s in self.steps if s is not None]

    def to_dict(self) -> dict:
        fl = [f for f in self.flops if f is not None]
        return {"label": self.label, "best_lr": self.best_lr,
                "lr_scores": {f"{k:g}": _safe(v) for k, v in self.lr_scores.items()},
                "seeds": self.seeds, "final": self.final, "best": self.best,
                "start": self.start, "other": self.other, "steps_to_target": self.steps,
                "steps_mean_sd": mean_spread(self.reached), "reached": len(self.reached),
                "flops_to_target": self.flops, "flops_mean_sd": mean_spread(fl),
                "speedup": self.speedup, "speedups": self.speedups}


def _safe(v: object) -> object:
    """Strict JSON: non-finite floats as strings, tuples as lists, recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {k: _safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_safe(x) for x in v]
    return v


def _row(label: str, cells: list[Cell], metric: str, tags: list[str]) -> InitRow:
    lr, scores = select_lr(cells, metric)
    at = sorted((c for c in cells if c.lr == lr), key=lambda c: c.seed)
    higher = higher_is_better(metric)
    pick = max if higher else min
    finals = [_final(c, metric) for c in at]
    bests = [pick(v for v in c.curve(metric)[1] if not math.isnan(v)) for c in at]
    starts = [c.curve(metric)[1][0] for c in at]
    other = {t: mean_spread([c.scalars[t][1][-1] for c in at if t in c.scalars])
             for t in tags if t != metric}
    return InitRow(label, lr, scores, [c.seed for c in at], mean_spread(finals),
                   mean_spread(bests), mean_spread(starts), other)


@dataclass
class Protocol:
    """The whole table: rows per init, the target and what it came from."""

    metric: str
    rows: list[InitRow]
    baseline: str | None = None
    target: float | None = None
    extra_lines: dict[str, float] = field(default_factory=dict)  # e.g. {"unigram": 5.64}

    def row(self, label: str) -> InitRow:
        return next(r for r in self.rows if r.label == label)

    def to_dict(self) -> dict:
        return _safe({"metric": self.metric, "higher_is_better": higher_is_better(self.metric),
                      "baseline": self.baseline, "target": self.target,
                      "extra_lines": self.extra_lines, "rows": [r.to_dict() for r in self.rows]})


def protocol(cells: list[Cell], metric: str = "val/loss", baseline: str | None = "random",
             tags: tuple[str, ...] = ("val/ppl", "val/acc1")) -> Protocol:
    """Group ``cells`` by label, pick each init's rate, and measure steps/FLOPs to the tuned
    baseline's mean final value (see the module doc). ``baseline=None``: no speed-up columns.

    Raises:
        ProtocolError: no cells, a missing cell, or a ``baseline`` label with no cells.
    """
    if not cells:
        raise ProtocolError("no runs to compare")
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.label, []).append(c)
    present = [t for t in tags if any(t in c.scalars for c in cells)]
    rows = [_row(label, g, metric, present) for label, g in groups.items()]
    if baseline is None:
        return Protocol(metric, rows)
    if baseline not in groups:
        raise ProtocolError(f"baseline {baseline!r}: no runs with that init "
                            f"(inits: {', '.join(groups)})")
    base = next(r for r in rows if r.label == baseline)
    target = base.final[0]
    higher = higher_is_better(metric)
    # Paired by seed (the seed also fixes the data order): seed s of every init is measured
    # against the tuned baseline's seed-s final value, so the baseline itself always gets there.
    base_cells = {c.seed: c for c in groups[baseline] if c.lr == base.best_lr}
    targets = {s: _final(c, metric) for s, c in base_cells.items()}
    base_steps = {s: steps_to_reach(*c.curve(metric), targets[s], higher)
                  for s, c in base_cells.items()}
    for r in rows:
        at = sorted((c for c in groups[r.label] if c.lr == r.best_lr), key=lambda c: c.seed)
        r.steps = [steps_to_reach(*c.curve(metric), targets.get(c.seed, target), higher)
                   for c in at]
        r.flops = [None if s is None else c.flops_at(s) for c, s in zip(at, r.steps)]
        # an init already at the target at step 0 needs no step at all: an infinite speed-up
        ratios = [(base_steps[c.seed] / s if s > 0 else math.inf) for c, s in zip(at, r.steps)
                  if s is not None and base_steps.get(c.seed)]
        # an init that some seed never brings to the target gets no speed-up (it is not faster)
        r.speedups = ratios if len(ratios) == len(at) else []
        r.speedup = statistics.fmean(ratios) if r.speedups else None
    return Protocol(metric, rows, baseline, target)


def _pm(ms: tuple[float | None, float | None], tag: str) -> str:
    mean, sd = ms
    if mean is None:
        return "-"
    if not math.isfinite(mean):
        return str(mean)
    if "acc" in tag:
        return f"{100 * mean:.2f} ± {100 * sd:.2f}%"
    digits = 1 if abs(mean) >= 100 else 3
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _flops(x: float) -> str:
    return f"{x:.2e}"


def _below(p: Protocol, line: float) -> str:
    gap = line - p.target
    return f" (tuned {p.baseline} ends {abs(gap):.3f} {'below' if gap >= 0 else 'above'} it)"


def _speed(r: InitRow) -> str:
    if not r.speedups:
        return "-"
    if math.isinf(r.speedup):
        return "**inf** (at the target at step 0)"
    _, sd = mean_spread(r.speedups)
    return f"**{r.speedup:.2f}x** ± {sd:.2f}"


def markdown(p: Protocol) -> str:
    """The protocol table (one row per init) plus the target and any extra reference lines."""
    m = p.metric
    other = sorted({t for r in p.rows for t in r.other})
    head = ["init", "best lr (grid: mean final)", "seeds", f"{m} at start",
            f"final {m}", f"best {m}", *(f"final {t}" for t in other)]
    if p.target is not None:
        head += [f"steps to {_pm((p.target, 0.0), m).split(' ')[0]}", "FLOPs to it", "speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in p.rows:
        grid = ", ".join(f"{lr:g}: {v:.3f}" if math.isfinite(v) else f"{lr:g}: {v}"
                         for lr, v in sorted(r.lr_scores.items()))
        name = f"{r.label} (baseline)" if r.label == p.baseline else r.label
        cells = [name, f"**{r.best_lr:g}** ({grid})", str(len(r.seeds)), _pm(r.start, m),
                 _pm(r.final, m), _pm(r.best, m), *(_pm(r.other.get(t, (None, None)), t)
                                                    for t in other)]
        if p.target is not None:
            n, k = len(r.steps), len(r.reached)
            steps = _pm(mean_spread(r.reached), "").replace(".000", "") if k else "not reached"
            fl = [f for f in r.flops if f is not None]
            mf, sf = mean_spread(fl)
            cells += [f"{steps} ({k}/{n})", f"{_flops(mf)} ± {_flops(sf)}" if fl else "-",
                      _speed(r)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"Target: {p.baseline}'s final {m} at its best rate, per seed (mean {p.target:.4f})."
             if p.target is not None else ""]
    notes += [f"{name}: {v:.3f}" + (_below(p, v) if p.target is not None else "")
              for name, v in p.extra_lines.items()]
    return "\n".join(lines) + "\n\n" + "\n".join(n for n in notes if n) + "\n"
