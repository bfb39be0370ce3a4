"""``logah train-ghn``: train a graph hypernetwork on architectures drawn from a space.

The run folder is ``{out_dir}/train-ghn/{name}/``: ``config.yaml``, ``archs.json`` (the drawn
architectures), ``checkpoints/last.ckpt`` (+ ``best.ckpt`` by ``val/zero_shot_loss``), TensorBoard
events and, at the end, ``heldout.json`` (per held-out architecture: zero-shot vs random-init
loss). Re-running the same command resumes from ``last.ckpt`` at its global step. The checkpoint
is what ``logah predict --ghn CKPT`` reads (``ghn.*`` weights + ``hyper_parameters["ghn"]``).
Every input is checked before anything is written, as in :mod:`logah.lit.finetune`; both walk the
run skeleton of :mod:`logah.lit.run`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback

from logah.config.model import resolve_spec
from logah.config.runs import TrainGHNConfig
from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.ghn import GHN
from logah.lit.ghn_module import GHNModule
from logah.lit.run import Run, RunResult, check_data, say

COMMAND = "train-ghn"
HELDOUT_FILE = "heldout.json"


@dataclass
class TrainGHNResult(RunResult):
    """What a finished :func:`train_ghn` call reports."""

    heldout: list[dict[str, Any]]  # per held-out architecture: zero-shot vs random-init numbers


def task_template(cfg: TrainGHNConfig, task_dm: Any) -> ModelSpec:
    """The template spec with the data's vocabulary / classes, checked against the data."""
    spec = resolve_spec(cfg.model)
    if spec.family in CAUSAL_LM and getattr(task_dm, "vocab_size", None):
        spec = spec.replace(vocab_size=int(task_dm.vocab_size))
    if spec.family == "vit":  # the data's size and channels (data.image_size / data.channels)
        spec = spec.replace(image_size=int(getattr(task_dm, "image_size", spec.image_size)),
                            in_chans=int(getattr(task_dm, "channels", spec.in_chans)))
    check_data(task_dm, spec, cfg.data.name)
    return spec


def _trainer_args(cfg: TrainGHNConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """``max_minutes`` as Lightning's ``max_time``; DDP that tolerates unused GHN weights."""
    if cfg.max_minutes is not None:
        overrides.setdefault("max_time", timedelta(minutes=cfg.max_minutes))
    if cfg.trainer.strategy in ("ddp", "ddp_spawn") and "strategy" not in overrides:
        from lightning.pytorch.strategies import DDPStrategy

        # Some GHN weights get no gradient from some architectures (e.g. the 1-D decoder).
        start = "spawn" if cfg.trainer.strategy == "ddp_spawn" else "popen"
        overrides["strategy"] = DDPStrategy(find_unused_parameters=True, start_method=start)
    return overrides


def _final_heldout(trainer: L.Trainer, module: GHNModule, run: Run) -> None:
    """Rank 0 writes heldout.json: the held-out numbers of the last validation, which
    :func:`logah.lit.trainer.fit` runs at the final step however training stopped."""
    cfg = run.cfg
    if 0 < trainer.global_step < trainer.max_steps:
        say(f"train-ghn: stopped at step {trainer.global_step} of {trainer.max_steps} "
            f"(max_minutes={cfg.max_minutes})")
    if trainer.is_global_zero and module.heldout_report:
        from logah.utils.fs import atomic_write_text

        doc = {"global_step": trainer.global_step, "architectures": module.heldout_report}
        atomic_write_text(run.folder / HELDOUT_FILE, json.dumps(doc, indent=1) + "\n")


def train_ghn(cfg: TrainGHNConfig, *, datamodule: Optional[L.LightningDataModule] = None,
              callbacks: Sequence[Callback] = (), **trainer_overrides: Any) -> TrainGHNResult:
    """Run (or resume) one GHN training run; every input is checked before anything is written.

    Args:
        cfg: the resolved ``TrainGHNConfig``.
        datamodule: a task DataModule to use instead of ``build_datamodule(cfg.data, ...)``.
        callbacks, **trainer_overrides: extra Lightning callbacks / ``Trainer`` arguments.

    Raises:
        LogahError: any bad input, as one line, before anything is written.
    """
    from logah.data import build_datamodule
    from logah.data.arch import ArchitectureDataModule

    trainer_overrides = _trainer_args(cfg, trainer_overrides)
    ghn_cfg = cfg.ghn.resolved()
    run = Run(COMMAND, cfg)
    task_dm = datamodule or build_datamodule(cfg.data, resolve_spec(cfg.model), seed=cfg.seed)
    template = task_template(cfg, task_dm)
    resume = run.check()
    archs = ArchitectureDataModule(cfg.archs, task_dm, template, seed=cfg.seed, run_dir=run.folder,
                                   resume=resume is not None)
    module = GHNModule(GHN(ghn_cfg, seed=cfg.seed), cfg.optim, gamma=cfg.gamma,
                       label_smoothing=cfg.label_smoothing, seed=cfg.seed)
    if cfg.snapshot_minutes:  # checkpoints along the way (the GHN-length curve)
        from logah.lit.rundir import CKPT_DIR
        from logah.lit.trainer import Snapshots

        callbacks = [*callbacks, Snapshots(run.folder / CKPT_DIR, cfg.snapshot_minutes)]
    trainer = run.trainer(module, monitor="val/zero_shot_loss", callbacks=callbacks,
                          **trainer_overrides)
    n_ghn = sum(p.numel() for p in module.ghn.parameters())
    say(f"train-ghn: {ghn_cfg.preset} ({n_ghn:,} parameters) on {template.family} "
        f"architectures: {len(archs.train_specs) or 'online'} training, "
        f"{len(archs.heldout)} held out; run folder {run.folder}")
    run.fit(trainer, module, archs)
    _final_heldout(trainer, module, run)
    return TrainGHNResult(**run.result(trainer), heldout=module.heldout_report)
