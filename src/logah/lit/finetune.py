"""``logah finetune``: train one GPT-2 / ViT from a chosen initialisation on a task dataset.

Everything that can be wrong with the inputs (config values, init choice, weights, data folder,
model/data mismatch, trainer arguments) is checked before the run folder is touched, so a bad
command writes nothing. The run folder is ``{out_dir}/finetune/{name}/``; a re-run of the same
command resumes from its ``last.ckpt``. At the end rank 0 writes the final weights to
``{run}/weights/`` (``model.safetensors`` + ``logah.json``), ready for ``init=weights:PATH``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback

from logah.config.errors import ConfigError
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig
from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.grow.schedule import resolve_schedule
from logah.lit.flops import FlopsCounter
from logah.lit.growth import GrowthCallback, checkpoint_spec
from logah.lit.init import build_target, model_config_for, parse_init, resolve_init_spec
from logah.lit.run import Run, RunResult, check_data, say
from logah.lit.target_module import module_for

COMMAND = "finetune"
WEIGHTS_DIR = "weights"


@dataclass
class FinetuneResult(RunResult):
    """What a finished :func:`finetune` call reports."""

    spec: ModelSpec
    weights_dir: Optional[Path]  # None on ranks other than 0


def check_label_smoothing(value: float, spec: ModelSpec) -> None:
    """``label_smoothing`` (in [0, 1): checked by the config) is only set for image
    classification."""
    if value and spec.family in CAUSAL_LM:
        raise ConfigError(f"label_smoothing: applies to image classification; the model is a "
                          f"{spec.family} language model")


def resolve_run_spec(cfg: FinetuneConfig, model_given: bool) -> tuple[FinetuneConfig, ModelSpec]:
    """The spec to train and the config to record (with an adopted weights spec written out)."""
    init = parse_init(cfg.init)
    spec = resolve_spec(cfg.model)
    chosen = resolve_init_spec(spec, init, model_given, cfg.init_opts)
    if init.kind == "weights" and chosen != spec:
        say(f"finetune: model spec taken from {init.path} (no model.* setting given)")
        cfg = dataclasses.replace(cfg, model=model_config_for(chosen))
    return cfg, chosen


def finetune(
    cfg: FinetuneConfig,
    *,
    model_given: bool = True,
    datamodule: Optional[L.LightningDataModule] = None,
    callbacks: Sequence[Callback] = (),
    **trainer_overrides: Any,
) -> FinetuneResult:
    """Run (or resume) one fine-tuning run.

    Args:
        cfg: the resolved ``FinetuneConfig``.
        model_given: whether the user set any ``model.*`` key (file or override); decides what
            happens when ``init=weights:PATH`` records a different spec (see :mod:`logah.lit.init`).
        datamodule: use this instead of ``build_datamodule(cfg.data, ...)`` (tests, notebooks).
        callbacks: extra Lightning callbacks.
        **trainer_overrides: extra ``lightning.Trainer`` arguments.

    Raises:
        LogahError: any bad input, as one line, before anything is written.
    """
    init = parse_init(cfg.init)
    cfg, spec = resolve_run_spec(cfg, model_given)
    check_label_smoothing(cfg.label_smoothing, spec)
    run = Run(COMMAND, cfg)
    if datamodule is None:
        from logah.data import build_datamodule

        datamodule = build_datamodule(cfg.data, spec, seed=cfg.seed)
    check_data(datamodule, spec, cfg.data.name)
    stages = resolve_schedule(spec, cfg.grow, cfg.trainer.max_steps)
    resume = run.check()
    # A resumed run takes its weights from the checkpoint, so the init file is not read again; a
    # run that grew resumes with the spec its checkpoint recorded.
    run_spec = (checkpoint_spec(resume.path) or spec) if resume is not None else spec
    model = build_target(run_spec, init, seed=cfg.seed, load_weights=resume is None,
                         opts=cfg.init_opts)
    module = module_for(model, cfg.optim, cfg.label_smoothing)
    callbacks = [*callbacks, FlopsCounter()]  # perf/flops: cumulative training FLOPs
    if stages:
        callbacks = [*callbacks, GrowthCallback(stages, cfg.grow)]
    trainer = run.trainer(module, callbacks=callbacks, **trainer_overrides)
    run.fit(trainer, module, datamodule)
    weights = None
    if trainer.is_global_zero:
        from logah.nn.io import save_weights

        extra = {"source": f"logah finetune name={cfg.name}", "global_step": trainer.global_step}
        weights = save_weights(module.model.state_dict(), module.model.spec,
                               run.folder / WEIGHTS_DIR, extra=extra, hf=False)
    return FinetuneResult(**run.result(trainer), spec=module.model.spec, weights_dir=weights)
