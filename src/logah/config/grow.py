"""``logah grow`` plans: the init rule for new ("free") entries and a list of growth steps.

A plan file is YAML: a bare list of steps, or a mapping with ``seed``, ``init`` and ``steps``::

    seed: 0
    init: {std: 0.02, bias_std: 0.0, ln_std: 0.0}
    steps:
      - {op: d_mlp, to: 512}
      - {op: n_heads, to: 8}
      - {op: n_layer, to: 4, positions: [1, 3]}

``op`` names the :class:`~logah.config.specs.ModelSpec` field a step grows; ``to`` is its new value.
Torch-free: :mod:`logah.grow` does the work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from logah.config.checked import Checked, check_keys
from logah.config.errors import ConfigError
from logah.config.load import _one_line

# The growable spec fields, in the order a derived plan applies them (n_layer last, so new layers
# are built at full width with the ordinary init).
GROW_OPS = ("n_ctx", "d_mlp", "n_kv_heads", "n_heads", "d_v", "d_qk", "d_model", "n_layer")


@dataclass
class GrowInit:
    """How new "free" entries are drawn (entries that must be zero are always exactly zero).

    Attributes:
        std: new weight entries (new rows/columns of Q/K/V/fc, readers' new input columns, whole new
            layers, new position rows) ~ N(0, std). 0.02 is the GPT-2/ViT init std.
        bias_std: new bias entries ~ N(0, bias_std); 0 gives zeros, like the ordinary init.
        ln_std: noise added to new LayerNorm entries: new-layer gains 1 + N(0, ln_std) and biases
            N(0, ln_std); new hidden-dim gains mean(rescaled old gains) + N(0, ln_std).
    """

    std: float = 0.02
    bias_std: float = 0.0
    ln_std: float = 0.0


@dataclass
class GrowStep:
    """One step: grow spec field ``op`` to ``to``. ``positions`` (n_layer only): the indices the
    new layers take in the grown model (default: spread evenly between the old layers)."""

    op: str = field(default="", metadata={"choices": GROW_OPS})
    to: int = 0
    positions: Optional[list[int]] = None


@dataclass
class GrowPlan:
    seed: int = 0
    init: GrowInit = field(default_factory=GrowInit)
    steps: list[GrowStep] = field(default_factory=list)


def step_from_dict(d: dict[str, Any], where: str = "step") -> GrowStep:
    """Validate one step dict (``op``, ``to``, optional ``positions``) into a :class:`GrowStep`."""
    check_keys(GrowStep, d, where)
    op = d.get("op")
    if op not in GROW_OPS:
        raise ConfigError(f"{where}.op: {op!r} is not one of: {', '.join(GROW_OPS)}")
    to = d.get("to")
    if isinstance(to, bool) or not isinstance(to, int):
        raise ConfigError(f"{where}.to: expected an integer, got {to!r}")
    pos = d.get("positions")
    if pos is not None:
        if op != "n_layer":
            raise ConfigError(f"{where}.positions: only an n_layer step takes positions")
        if isinstance(pos, int) and not isinstance(pos, bool):
            pos = [pos]
        if not isinstance(pos, list) or not all(isinstance(p, int) for p in pos):
            raise ConfigError(f"{where}.positions: expected a list of integers, got {pos!r}")
    return GrowStep(op=op, to=to, positions=list(pos) if pos is not None else None)


def load_plan(path: str | os.PathLike) -> GrowPlan:
    """Read a plan file (a list of steps, or a mapping with ``seed``/``init``/``steps``).

    Raises:
        ConfigError: one line naming the file and the offending key or step.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--plan {p}: file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--plan {p}: cannot parse: {str(e).splitlines()[0]}") from None
    if isinstance(data, list):
        data = {"steps": data}
    if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
        raise ConfigError(f"--plan {p}: expected a list of steps or a mapping with 'steps:'")
    raw_steps = data.pop("steps", [])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(GrowPlan), OmegaConf.create(data))
        plan: GrowPlan = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(f"--plan {p}: {_one_line(e)}") from None
    steps = []
    for i, s in enumerate(raw_steps):
        if not isinstance(s, dict):
            raise ConfigError(
                f"--plan {p}: steps[{i}]: expected a mapping like {{op: d_mlp, to: 512}}")
        steps.append(step_from_dict(s, f"--plan {p}: steps[{i}]"))
    plan.steps = steps
    return plan


# ---- growth schedules inside one training run (``logah finetune``, key ``grow``) --------------
SCHEDULE_METHODS = ("expand", "hyperclone", "stack")  # only "expand" is function-preserving
OPTIMIZER_STATE = ("carry", "reset")


@dataclass
class GrowStage(Checked):
    """One scheduled growth: at optimizer step ``step`` the model becomes ``to`` (a preset name,
    ``key=value,...`` dims, or a mapping of dims) or runs the explicit ``steps``.

    ``method``: ``expand`` (Gesmundo & Maile's exact expansions), or the non-function-preserving
    baselines ``hyperclone`` / ``stack`` (marked as such in the run's growth history).
    """

    KEY = "grow.schedule"

    step: int = 0
    to: Any = None
    steps: Optional[list[GrowStep]] = None
    method: str = field(default="expand", metadata={"choices": SCHEDULE_METHODS})


@dataclass
class GrowScheduleConfig(Checked):
    """``grow.*`` of ``logah finetune``: grow the model in place during training.

    Attributes:
        schedule: stages in increasing ``step`` order (empty: no growth).
        optimizer_state: ``carry`` moves AdamW/SGD state with each parameter (old entries kept,
            new entries 0, whole new tensors start fresh); ``reset`` starts a new optimizer state.
            The learning-rate schedule continues either way.
        seed: stage i draws its free entries from seed ``seed + 100 * i`` (+ the step index).
        init: how free entries are drawn (:class:`GrowInit`).
        check_loss: evaluate the growth step's batch before and after growing (two extra forward
            passes per stage) and record both losses in the history (``grow/loss_before`` /
            ``grow/loss_after`` in TensorBoard).
    """

    KEY = "grow"

    schedule: list[GrowStage] = field(default_factory=list)
    optimizer_state: str = field(default="carry", metadata={"choices": OPTIMIZER_STATE})
    seed: int = 0
    init: GrowInit = field(default_factory=GrowInit)
    check_loss: bool = True


def stage_where(i: int, stage: GrowStage) -> str:
    return f"grow.schedule[{i}] (step {stage.step})"


def check_schedule(cfg: GrowScheduleConfig, max_steps: int) -> None:
    """Structural checks (torch-free): steps strictly increasing inside ``(0, max_steps)``, exactly
    one of ``to`` / ``steps`` per stage, a well-formed ``to``. Dim checks (a stage that would
    shrink the model) are :func:`logah.grow.schedule.resolve_schedule`'s.

    Raises:
        ConfigError: one line naming the stage.
    """
    prev = None
    for i, st in enumerate(cfg.schedule):
        where = stage_where(i, st)
        if st.step < 1:
            raise ConfigError(f"{where}: step must be >= 1 (grow a model before training by "
                              "growing its init: logah grow, then init=weights:DIR)")
        if prev is not None and st.step <= prev:
            word = "repeats" if st.step == prev else "comes before"
            raise ConfigError(f"{where}: {word} the previous stage's step {prev}; stages must "
                              "have strictly increasing steps")
        if max_steps > 0 and st.step >= max_steps:
            raise ConfigError(f"{where}: at or after trainer.max_steps={max_steps}, so it would "
                              "never run")
        if (st.to is None) == (st.steps is None):
            raise ConfigError(f"{where}: give exactly one of 'to' (preset, dims) or 'steps' "
                              "(explicit expansions)")
        if st.steps is not None and st.method != "expand":
            raise ConfigError(f"{where}: explicit 'steps' are expansions; method={st.method} "
                              "takes 'to'")
        if st.to is not None and not isinstance(st.to, (str, dict)):
            raise ConfigError(f"{where}.to: expected a preset name, 'key=value,...' dims or a "
                              f"mapping of dims, got {st.to!r}")
        prev = st.step


def target_string(to: Any) -> str:
    """A stage's ``to`` as ``--to`` text: a mapping of dims becomes ``key=value,...``."""
    if isinstance(to, dict):
        return ",".join(f"{k}={v}" for k, v in to.items())
    return str(to)
