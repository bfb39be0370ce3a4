"""The run skeleton every training command shares: one run folder, the resume check, the trainer,
fit, the final metrics; plus the data/model check both commands make.

A command (:mod:`logah.lit.finetune`, :mod:`logah.lit.train_ghn`) checks its own inputs, then
walks the same steps::

    run = Run(COMMAND, cfg)          # {out_dir}/{command}/{name}; the name is checked
    ...                              # command checks (data, init, ...): still nothing written
    resume = run.check()             # last.ckpt + same config, or a fresh run (read-only)
    ...                              # build the LightningModule (resume may matter)
    trainer = run.trainer(module, monitor=...)
    run.fit(trainer, module, datamodule)   # the first write: config.yaml, then Lightning's fit
    return Result(**run.result(trainer), ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback

from logah.config.errors import ConfigError
from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.lit.rundir import (
    Resume,
    check_resume_fits,
    check_run,
    is_rank_zero,
    run_dir,
    start_run,
)
from logah.lit.trainer import build_trainer, fit


@dataclass
class RunResult:
    """What every finished run reports (commands extend it)."""

    run_dir: Path
    global_step: int
    resumed_from: Optional[int]  # the step of the checkpoint it resumed from; None: fresh
    metrics: dict[str, float]  # the trainer's final scalar metrics (``val/loss``, ...)


def say(msg: str) -> None:
    """Print on rank 0 only (one line per message, flushed: DDP ranks and progress bars mix)."""
    if is_rank_zero():
        print(msg, flush=True)


class Run:
    """One training run: its folder, where it resumes, its trainer, its fit and final metrics.

    Args:
        command: the subcommand (``finetune``, ``train-ghn``): ``{out_dir}/{command}/{name}``.
        cfg: the command's resolved config (``out_dir``, ``name``, ``seed``, ``trainer``).

    Raises:
        ConfigError: ``cfg.name`` is not a plain folder name.
    """

    def __init__(self, command: str, cfg: Any) -> None:
        self.command, self.cfg = command, cfg
        self.folder = run_dir(cfg.out_dir, command, cfg.name)
        self.resume: Optional[Resume] = None

    def check(self) -> Optional[Resume]:
        """Where the run resumes (None: fresh). Read-only; raises on a folder holding a run with
        another config or an unreadable ``last.ckpt``."""
        self.resume = check_run(self.folder, self.cfg)
        return self.resume

    def trainer(self, module: L.LightningModule, *, monitor: Optional[str] = "val/loss",
                callbacks: Sequence[Callback] = (), **overrides: Any) -> L.Trainer:
        """The Lightning Trainer for this folder (see :func:`logah.lit.trainer.build_trainer`).

        A resumed run's ``last.ckpt`` must hold ``module``'s tensors: checked first, so a wrong
        checkpoint is one line naming it before Lightning starts (nothing written yet).
        """
        if self.resume is not None:
            check_resume_fits(self.resume.path, module)
        return build_trainer(
            self.cfg.trainer, self.folder, monitor=monitor,
            resume_step=self.resume.step if self.resume else None, callbacks=callbacks,
            **overrides,
        )

    def fit(self, trainer: L.Trainer, module: L.LightningModule,
            datamodule: L.LightningDataModule) -> None:
        """Write ``config.yaml`` (the first write: every check has passed), then fit, from
        ``last.ckpt`` when resuming."""
        start_run(self.folder, self.cfg, self.resume)
        if self.resume is not None:
            say(f"{self.command}: resuming {self.folder} from {self.resume.path.name} "
                f"at step {self.resume.step}")
        fit(trainer, module, datamodule, cfg=self.cfg.trainer, seed=self.cfg.seed,
            ckpt_path=str(self.resume.path) if self.resume else None)

    def result(self, trainer: L.Trainer) -> dict[str, Any]:
        """The :class:`RunResult` fields after fit, as keyword arguments for a command's result."""
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        return dict(run_dir=self.folder, global_step=trainer.global_step,
                    resumed_from=self.resume.step if self.resume else None, metrics=metrics)


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
