"""Growth schedules: resolve ``grow.schedule`` against a spec, and run one stage on a state dict.

A stage grows ``(spec, state)`` at a training step. ``expand`` stages are plans of the exact
expansions (:func:`~logah.grow.apply_plan`) and come with the index map of every parameter
(:func:`~logah.grow.embed.plan_map`), which the trainer uses to carry optimizer state over.
``hyperclone`` / ``stack`` stages use the non-function-preserving baselines of
:mod:`logah.grow` when that version has them; they have no index map (the optimizer restarts).
Pure functions: no Lightning, no optimizer objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from logah.config.errors import ConfigError
from logah.config.grow import GrowScheduleConfig, check_schedule, stage_where, step_from_dict, target_string
from logah.config.specs import ModelSpec
from logah.grow.common import GrowError, State
from logah.grow.embed import Map, plan_map
from logah.nn import build_model
from logah.grow.plan import apply_plan, check_growth, plan_growth, resolve_target, same_dims

# Seeds of different stages never overlap (apply_plan uses seed + step index inside a stage).
STAGE_SEED_STRIDE = 1000


@dataclass(frozen=True)
class Stage:
    """A resolved stage: at optimizer step ``step``, grow from ``source`` to ``target``'s dims."""

    index: int
    step: int
    method: str
    source: ModelSpec
    target: ModelSpec
    steps: tuple[dict[str, Any], ...]  # the expansions (expand only)

    @property
    def preserving(self) -> bool:
        """Whether the stage keeps the model's function: the expansions and HyperCloning do
        (exactly, up to float rounding), stacking layers does not."""
        return self.method != "stack"

    def describe(self) -> str:
        a, b = self.source, self.target
        return f"{a.n_layer}x{a.d_model} -> {b.n_layer}x{b.d_model} ({self.method})"


# Baseline methods: (module, function) of the pure ``(spec, state, target, *, seed)`` growers.
BASELINES = {"hyperclone": ("logah.grow.clone", "clone_to"), "stack": ("logah.grow.clone", "stack_to")}


def _baseline(method: str) -> Callable[..., tuple[ModelSpec, State]]:
    """HyperCloning / G_stack (:mod:`logah.grow.clone`), when this version ships them."""
    import importlib

    module, name = BASELINES[method]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"grow: method {method!r} needs {module}.{name}, which this version "
                          "lacks") from None


def resolve_schedule(spec: ModelSpec, cfg: GrowScheduleConfig, max_steps: int) -> list[Stage]:
    """Check ``cfg.schedule`` against the starting ``spec`` and resolve every stage's target.

    Raises:
        ConfigError: one line naming the stage (unordered or repeated steps, a target that would
            shrink the model or change its family/vocabulary, a bad step list, ...).
    """
    check_schedule(cfg, max_steps)
    stages = []
    for i, st in enumerate(cfg.schedule):
        where = stage_where(i, st)
        try:
            if st.steps is not None:
                steps = [step_from_dict(_plain(s), f"{where}.steps[{j}]")
                         for j, s in enumerate(st.steps)]
                raw = [{k: v for k, v in vars(s).items() if v is not None} for s in steps]
                target = _dims_after(spec, raw)
            else:
                target = resolve_target(spec, target_string(st.to))
                check_growth(spec, target)
                raw = plan_growth(spec, target) if st.method == "expand" else []
            if same_dims(spec, target):
                raise GrowError("does not change the model (same dims as the previous stage)")
            if st.method != "expand":  # a dry run on meta tensors checks e.g. integer factors
                meta = dict(build_model(spec, "meta").named_parameters())
                _baseline(st.method)(spec, meta, target, seed=0)
        except (GrowError, ConfigError) as e:
            msg = str(e).removeprefix("--to: ")
            raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        stages.append(Stage(i, st.step, st.method, spec, target, tuple(raw)))
        spec = target
    return stages


def _plain(step: Any) -> dict[str, Any]:
    return dict(vars(step)) if not isinstance(step, dict) else dict(step)


def _dims_after(spec: ModelSpec, steps: list[dict[str, Any]]) -> ModelSpec:
    target = spec
    for j, s in enumerate(steps):
        if s["to"] < getattr(target, s["op"]):
            raise GrowError(f"steps[{j}]: would shrink {s['op']} {getattr(target, s['op'])} -> "
                            f"{s['to']}")
        target = target.replace(**{s["op"]: s["to"]})
    check_growth(spec, target)
    return target


def grow_stage(spec: ModelSpec, state: State, stage: Stage, cfg: GrowScheduleConfig
               ) -> tuple[ModelSpec, State, Optional[Map]]:
    """Run one stage: the grown spec and state, and the index map (None for the baselines).

    ``spec`` is the current spec (with its growth history); its dims must be the stage's source.
    """
    if not same_dims(spec, stage.source):
        raise GrowError(f"grow.schedule[{stage.index}]: the model is {spec.key()}, expected the "
                        f"stage's source {stage.source.key()}")
    seed = cfg.seed + STAGE_SEED_STRIDE * stage.index
    if stage.method == "expand":
        emb_map = plan_map(spec, stage.steps)
        new_spec, new_state = apply_plan(spec, state, stage.steps, seed=seed, init=cfg.init,
                                         emb_map=emb_map)
        return new_spec, new_state, emb_map
    new_spec, new_state = _baseline(stage.method)(spec, state, stage.target, seed=seed)
    # stacking shares tensors between layers: give every parameter its own storage
    seen: set[int] = set()
    for k, v in new_state.items():
        if id(v) in seen:
            new_state[k] = v.clone()
        seen.add(id(v))
    return new_spec, new_state, None
