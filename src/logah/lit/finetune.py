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
from logah.lit.init import (
    build_target,
    check_init_options,
    model_config_for,
    parse_init,
    resolve_init_spec,
)
from logah.lit.optim import check_optim_config
from logah.lit.rundir import check_run, is_rank_zero, run_dir, start_run
from logah.lit.target_module import module_for
from logah.lit.trainer import build_trainer, fit

COMMAND = "finetune"
WEIGHTS_DIR = "weights"


@dataclass
class FinetuneResult:
    """What a finished :func:`finetune` call reports."""

    run_dir: Path
    spec: ModelSpec
    global_step: int
    resumed_from: Optional[int]
    metrics: dict[str, float]
    weights_dir: Optional[Path]  # None on ranks other than 0


def check_label_smoothing(value: float, spec: ModelSpec) -> None:
    """``label_smoothing`` is in [0, 1) and only set for image classification."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"label_smoothing: must be in [0, 1), got {value}")
    if value and spec.family in CAUSAL_LM:
        raise ConfigError(f"label_smoothing: applies to image classification; the model is a "
                          f"{spec.family} language model")


def check_data(dm: Any, spec: ModelSpec, data_name: str) -> None:
    """The DataModule can feed the model: same modality, vocabulary / context / classes fit.

    Raises:
        ConfigError / DataError: one line naming the config keys that disagree.
    """
    is_text = getattr(dm, "vocab_size", None) is not None
    if spec.family in CAUSAL_LM and not is_text:
        raise ConfigError(f"data.name: {data_name!r} is image data but the model is a "
                          f"{spec.family} language model; "
                          "use data.name=brown or data.name=text")
    if spec.family == "vit" and is_text:
        raise ConfigError(f"data.name: {data_name!r} is text but the model is a ViT; "
                          "use an image dataset (e.g. data.name=fashion-mnist)")
    if hasattr(dm, "check_spec"):
        dm.check_spec(spec)
    classes = getattr(dm, "num_classes", None)
    if spec.family == "vit" and classes is not None and classes != spec.num_classes:
        raise ConfigError(f"model.num_classes: {spec.num_classes}, but {data_name} has {classes} "
                          f"classes; set model.num_classes={classes}")


def _say(msg: str) -> None:
    if is_rank_zero():
        print(msg, flush=True)


def resolve_run_spec(cfg: FinetuneConfig, model_given: bool) -> tuple[FinetuneConfig, ModelSpec]:
    """The spec to train and the config to record (with an adopted weights spec written out)."""
    init = parse_init(cfg.init)
    spec = resolve_spec(cfg.model)
    check_init_options(cfg.init_opts)
    chosen = resolve_init_spec(spec, init, model_given, cfg.init_opts)
    if init.kind == "weights" and chosen != spec:
        _say(f"finetune: model spec taken from {init.path} (no model.* setting given)")
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
    check_optim_config(cfg.optim)
    init = parse_init(cfg.init)
    cfg, spec = resolve_run_spec(cfg, model_given)
    check_label_smoothing(cfg.label_smoothing, spec)
    folder = run_dir(cfg.out_dir, COMMAND, cfg.name)
    if datamodule is None:
        from logah.data import build_datamodule

        datamodule = build_datamodule(cfg.data, spec, seed=cfg.seed)
    check_data(datamodule, spec, cfg.data.name)
    stages = resolve_schedule(spec, cfg.grow, cfg.trainer.max_steps)
    resume = check_run(folder, cfg)
    # A resumed run takes its weights from the checkpoint, so the init file is not read again; a
    # run that grew resumes with the spec its checkpoint recorded.
    run_spec = (checkpoint_spec(resume.path) or spec) if resume is not None else spec
    model = build_target(run_spec, init, seed=cfg.seed, load_weights=resume is None,
                         opts=cfg.init_opts)
    module = module_for(model, cfg.optim, cfg.label_smoothing)
    callbacks = [*callbacks, FlopsCounter()]  # perf/flops: cumulative training FLOPs
    if stages:
        callbacks = [*callbacks, GrowthCallback(stages, cfg.grow)]
    trainer = build_trainer(
        cfg.trainer, folder, resume_step=resume.step if resume else None, callbacks=callbacks,
        **trainer_overrides,
    )
    start_run(folder, cfg, resume)  # the first write: every check above has passed
    if resume is not None:
        _say(f"finetune: resuming {folder} from {resume.path.name} at step {resume.step}")
    fit(trainer, module, datamodule, cfg=cfg.trainer, seed=cfg.seed,
        ckpt_path=str(resume.path) if resume else None)
    weights = None
    if trainer.is_global_zero:
        from logah.nn.io import save_weights

        extra = {"source": f"logah finetune name={cfg.name}", "global_step": trainer.global_step}
        weights = save_weights(module.model.state_dict(), module.model.spec, folder / WEIGHTS_DIR,
                               extra=extra, hf=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return FinetuneResult(folder, module.model.spec, trainer.global_step,
                          resume.step if resume else None, metrics, weights)
