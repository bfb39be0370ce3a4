"""``build_trainer``: one Lightning Trainer convention for every training command.

Given the ``trainer.*`` config group and a run folder (see :mod:`logah.lit.rundir`) it returns a
``lightning.Trainer`` that logs to TensorBoard in the run folder, keeps
``checkpoints/last.ckpt`` (every ``ckpt_every_n_steps`` optimizer steps and at the end) and
``checkpoints/best.ckpt`` (lowest ``monitor``, checked at each validation), shows a progress bar,
and resolves ``precision=auto``. Multi-GPU is ``devices=N strategy=ddp``, nothing else.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import Metric

from logah.config.errors import ConfigError
from logah.config.train import TrainerConfig
from logah.lit.rundir import BEST_CKPT, CKPT_DIR

# Messages Lightning emits on every resume or CPU run that say nothing actionable here.
_QUIET = (
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*does not have many workers.*",
    r".*You're resuming from a checkpoint that ended before the epoch ended.*",
    r".*isinstance\(treespec, LeafSpec\).* is deprecated.*",  # Lightning 2.6 vs torch 2.13
)


class StepProgressBar(TQDMProgressBar):
    """One training bar counting optimizer steps to ``max_steps`` across epochs, so short
    step-based runs, multi-epoch runs and resumed runs all read as "step n of N"."""

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        bar = self.train_progress_bar
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        total = convert_inf(total)
        if bar.total != total:  # first epoch of this process (possibly resumed mid-run)
            bar.reset(total=total)
            bar.initial = bar.n = trainer.global_step
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        bar, n = self.train_progress_bar, trainer.global_step
        if bar is not None and self._should_update(n, bar.total):
            bar.n = n
            bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` only (no top-k): every ``every_n_train_steps`` steps and at the end of fit.

    Lightning's own ``save_last`` skips the final step when it falls between two saves; a run that
    finishes must leave ``last.ckpt`` at its final step so re-running it is a no-op.
    """

    def __init__(self, dirpath: Path, every_n_train_steps: int) -> None:
        super().__init__(
            dirpath=dirpath, save_top_k=0, save_last=True, every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class Snapshots(Callback):
    """Keep checkpoints along the way: ``snapshot-{M}min.ckpt`` once training has run ``M``
    minutes (wall clock, summed over resumes), for each ``M`` in ``minutes``, plus an index
    ``snapshots.json`` (minutes, step, elapsed seconds, file). Used to ask how an init depends
    on how long its GHN trained, from one run.

    The elapsed time travels in the checkpoint (callback state), so a resumed run continues the
    clock. Under DDP rank 0's clock decides and is broadcast (every rank must save together).
    """

    INDEX = "snapshots.json"

    def __init__(self, dirpath: Path, minutes: Sequence[float]) -> None:
        self.dirpath, self.minutes = Path(dirpath), sorted(float(m) for m in minutes)
        self.carried = 0.0  # seconds trained before this process started (from the checkpoint)
        self.done: list[dict] = []
        self._t0: Optional[float] = None

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed(), "done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.carried, self.done = float(state["elapsed_s"]), list(state["done"])

    def elapsed(self) -> float:
        import time

        return self.carried + (time.monotonic() - self._t0 if self._t0 is not None else 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        self._t0 = time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Index the end of training too (``file: last.ckpt``), so a curve over snapshots has
        its final point without reading a checkpoint."""
        if trainer.is_global_zero:
            final = {"minutes": round(self.elapsed() / 60, 2), "step": trainer.global_step,
                     "elapsed_s": round(self.elapsed(), 1), "file": "last.ckpt"}
            self._write([*self.done, final])

    def _write(self, entries: list[dict]) -> None:
        import json

        from logah.utils.fs import atomic_write_text

        atomic_write_text(self.dirpath / self.INDEX, json.dumps(entries, indent=1) + "\n")

    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        taken = {d["minutes"] for d in self.done}
        due = [m for m in self.minutes if m not in taken and self.elapsed() >= 60 * m]
        due = trainer.strategy.broadcast(due, src=0)
        for m in due:
            name = f"snapshot-{m:g}min.ckpt"
            self.done.append({"minutes": m, "step": trainer.global_step,
                              "elapsed_s": round(self.elapsed(), 1), "file": name})
            # a full checkpoint (optimizer, loops) said explicitly: Lightning logs a line otherwise
            trainer.save_checkpoint(self.dirpath / name, weights_only=False)
            if trainer.is_global_zero:
                self._write(self.done)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` -> ``bf16-mixed`` on a CUDA device that supports bf16, else ``32-true``."""
    if precision != "auto":
        return precision
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def checkpoint_callbacks(
    cfg: TrainerConfig, ckpt_dir: Path, monitor: Optional[str], mode: str
) -> list[Callback]:
    """``last.ckpt`` (:class:`LastCheckpoint`) and, with a monitor, ``best.ckpt``."""
    every = cfg.ckpt_every_n_steps or cfg.val_check_interval
    callbacks: list[Callback] = [LastCheckpoint(ckpt_dir, every)]
    if monitor and cfg.limit_val_batches > 0:
        callbacks.append(ModelCheckpoint(
            dirpath=ckpt_dir, filename=Path(BEST_CKPT).stem, monitor=monitor, mode=mode,
            save_top_k=1, save_last=False, auto_insert_metric_name=False,
            enable_version_counter=False,
        ))
    return callbacks


def build_trainer(
    cfg: TrainerConfig,
    run_dir: str | Path,
    *,
    monitor: Optional[str] = "val/loss",
    mode: str = "min",
    resume_step: Optional[int] = None,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> L.Trainer:
    """A Lightning Trainer for a run folder.

    Args:
        cfg: the ``trainer.*`` config group.
        run_dir: the run folder (TensorBoard events, ``checkpoints/``).
        monitor: the metric ``best.ckpt`` minimises (``mode="max"`` to maximise); None: no best.
        resume_step: the global step a resumed run starts at; TensorBoard drops events at or
            after it from the interrupted run, so curves do not overlap.
        callbacks: extra callbacks (appended after the checkpoint callbacks).
        **overrides: further ``lightning.Trainer`` arguments (tests, special commands).

    Raises:
        ConfigError: a ``trainer.*`` value Lightning rejects (e.g. an accelerator this machine
            lacks), as one line. The values themselves were checked when ``cfg`` was built.
    """
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    run_dir = Path(run_dir)
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name="", version="", default_hp_metric=False,
        purge_step=resume_step,
    )
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts on tensor cores
    accumulate = cfg.accumulate_grad_batches
    kwargs: dict[str, Any] = dict(
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=precision, max_steps=cfg.max_steps,
        max_epochs=cfg.max_epochs,
        # Counted in batches by Lightning; the config counts optimizer steps, across epochs.
        val_check_interval=cfg.val_check_interval * accumulate, check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches, num_sanity_val_steps=cfg.num_sanity_val_steps,
        gradient_clip_val=cfg.gradient_clip_val or None, accumulate_grad_batches=accumulate,
        log_every_n_steps=cfg.log_every_n_steps, deterministic=cfg.deterministic,
        enable_progress_bar=cfg.enable_progress_bar, logger=logger, default_root_dir=str(run_dir),
        callbacks=[
            *checkpoint_callbacks(cfg, run_dir / CKPT_DIR, monitor, mode),
            *([StepProgressBar()] if cfg.enable_progress_bar else []),
            *callbacks,
        ],
    )
    kwargs.update(overrides)
    try:
        return L.Trainer(**kwargs)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"trainer: {str(e).strip().splitlines()[0]}") from None


class _LastValidation(L.Callback):
    """Whether a fit trained any step, and the step of its last validation."""

    def __init__(self) -> None:
        self.trained, self.step = False, None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.trained = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, *,
        cfg: TrainerConfig, seed: int, ckpt_path: Optional[str] = None) -> None:
    """Seed, validate at step 0 when ``cfg.val_at_start`` (fresh runs only: the curves then start
    at the initialisation's own value), re-seed so training does not depend on that choice, fit;
    then validate once more when training ended between two validations (``max_steps`` not a
    multiple of ``val_check_interval``, or a time limit), so a run's final value is that of its
    final weights (a FLOPs-matched schedule of 1,790 steps validated every 150 would otherwise
    end its curve 140 steps early).
    """
    if cfg.val_at_start and ckpt_path is None and cfg.limit_val_batches > 0:
        L.seed_everything(seed, workers=True, verbose=False)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        # validate() ran under inference mode, so the metrics' states are inference tensors that
        # fit's validation could not update in place: reset them out here (fresh, normal tensors).
        for m in module.modules():
            if isinstance(m, Metric):
                m.reset()
    L.seed_everything(seed, workers=True, verbose=False)
    # weights_only: Lightning's own restore cannot run code from the checkpoint either.
    last = _LastValidation()
    trainer.callbacks.append(last)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    trainer.callbacks.remove(last)
    if last.trained and last.step != trainer.global_step and cfg.limit_val_batches > 0 \
            and not trainer.interrupted:
        # Logged at the last trained batch's index, as Lightning logs in-fit validation (step
        # N-1 after N steps): the curve stays on one convention, and a resumed run's new event
        # file (which purges events from its first step on) keeps this point.
        loop = trainer.fit_loop.epoch_loop
        loop._batches_that_stepped -= 1
        try:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        finally:
            loop._batches_that_stepped += 1
