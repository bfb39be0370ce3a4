"""Growth during training: a Lightning callback that runs ``grow.schedule`` in place.

At the start of the batch whose ``trainer.global_step`` equals a stage's step (the first
micro-batch of that optimizer step), :class:`GrowthCallback`

1. evaluates the batch (``check_loss``), grows the model's state with
   :func:`logah.grow.schedule.grow_stage` and swaps the module's ``model`` for the grown one,
2. rebuilds the optimizer through the module's ``configure_optimizers`` (so weight decay and
   gradient clipping cover the new parameters), moves the optimizer state along the stage's index
   map (``optimizer_state=carry``) or starts it fresh (``reset``), and restores the LR scheduler
   at its current step,
3. re-wraps DDP (every rank grows identically: the free entries come from seeded CPU generators),
4. evaluates the batch again and records the stage in ``history`` (saved in every checkpoint).

The core (index maps, state transplant, the expansions) is in :mod:`logah.grow`; this file only
talks to Lightning.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.nn.parallel import DistributedDataParallel

from logah.config.errors import LogahError
from logah.config.grow import GrowScheduleConfig
from logah.config.specs import ModelSpec
from logah.grow.embed import Map, carry_state
from logah.grow.schedule import Stage, grow_stage
from logah.nn import build_model, param_shapes


def named_state(opt: torch.optim.Optimizer) -> dict[str, dict[str, Any]]:
    """Per-parameter optimizer state keyed by parameter name (groups carry ``names``, see
    :func:`logah.lit.optim.param_groups`)."""
    out = {}
    for g in opt.param_groups:
        for name, p in zip(g["names"], g["params"]):
            if p in opt.state:
                out[name] = opt.state[p]
    return out


def load_named_state(opt: torch.optim.Optimizer, state: dict[str, dict[str, Any]]) -> None:
    for g in opt.param_groups:
        for name, p in zip(g["names"], g["params"]):
            if name in state:
                opt.state[p] = {k: (v.to(p.device) if torch.is_tensor(v) and v.ndim else v)
                                for k, v in state[name].items()}


class GrowthCallback(Callback):
    """Runs resolved growth stages in place during ``fit`` (see the module doc).

    Args:
        stages: :func:`logah.grow.schedule.resolve_schedule` of the run's ``grow`` config.
        cfg: the ``grow.*`` config group (seed, init, optimizer_state, check_loss).
    """

    def __init__(self, stages: list[Stage], cfg: GrowScheduleConfig) -> None:
        self.stages = stages
        self.cfg = cfg
        self.history: list[dict[str, Any]] = []  # one record per stage run

    # ---- checkpointed state ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def done(self, index: int) -> bool:
        return any(h["stage"] == index for h in self.history)

    # ---- the hook ----------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        for stage in self.stages:
            if stage.step == trainer.global_step and not self.done(stage.index):
                self.run_stage(trainer, pl_module, batch, stage)

    def run_stage(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                  stage: Stage) -> None:
        t0 = time.perf_counter()
        before = self._loss(trainer, pl_module, batch)
        old = pl_module.model
        with torch.no_grad():
            state = {k: v.detach() for k, v in old.state_dict().items()}
            spec, grown, emb_map = grow_stage(old.spec, state, stage, self.cfg)
            del state
            model = build_model(spec, "meta")
            model.load_state_dict(grown, strict=True, assign=True)
        model.train(old.training)
        old_opt = named_state(trainer.optimizers[0]) if trainer.optimizers else {}
        pl_module.model = model  # nn.Module.__setattr__ swaps the submodule
        del old, grown
        self._rebuild_optimizer(trainer, emb_map, old_opt, param_shapes(spec))
        seconds = time.perf_counter() - t0
        after = self._loss(trainer, pl_module, batch)
        record = {"stage": stage.index, "step": stage.step, "method": stage.method,
                  "preserving": stage.preserving, "spec": spec.to_dict(),
                  "optimizer_state": self.cfg.optimizer_state if emb_map is not None else "reset",
                  "loss_before": before, "loss_after": after, "seconds": seconds}
        self.history.append(record)
        self._report(trainer, stage, record)

    # ---- helpers -----------------------------------------------------------------------------
    @torch.no_grad()
    def _loss(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any
              ) -> Optional[float]:
        if not self.cfg.check_loss:
            return None
        with trainer.precision_plugin.forward_context():
            loss, _ = pl_module.loss_and_output(batch)
        return float(loss)

    def _rebuild_optimizer(self, trainer: L.Trainer, emb_map: Optional[Map],
                           old_opt: dict[str, dict[str, Any]],
                           shapes: dict[str, tuple[int, ...]]) -> None:
        strategy = trainer.strategy
        sched_state = [c.scheduler.state_dict() for c in trainer.lr_scheduler_configs]
        if isinstance(strategy.model, DistributedDataParallel):
            # DDP's reducer holds the old parameters: wrap the module again (this broadcasts
            # rank 0's weights, identical anyway).
            strategy.model = strategy.lightning_module
            strategy.configure_ddp()
        strategy.setup_optimizers(trainer)  # the module's configure_optimizers, new parameters
        if emb_map is not None and self.cfg.optimizer_state == "carry":
            load_named_state(trainer.optimizers[0], carry_state(old_opt, emb_map, shapes))
        for conf, saved in zip(trainer.lr_scheduler_configs, sched_state):
            sched = conf.scheduler
            sched.load_state_dict(saved)  # continue at the same step of the schedule
            lams = getattr(sched, "lr_lambdas", None)
            if lams is not None:  # LambdaLR: the rate of the coming step, as step() would set
                lrs = [base * lam(sched.last_epoch) for base, lam in zip(sched.base_lrs, lams)]
                for g, lr in zip(sched.optimizer.param_groups, lrs):
                    g["lr"] = lr
                sched._last_lr = lrs

    def _report(self, trainer: L.Trainer, stage: Stage, record: dict[str, Any]) -> None:
        metrics = {f"grow/{k}": record[k] for k in ("loss_before", "loss_after")
                   if record[k] is not None}
        metrics["grow/params"] = float(sum(p.numel() for p in trainer.lightning_module.parameters()))
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        if trainer.is_global_zero:
            loss = ""
            if record["loss_before"] is not None:
                loss = f", batch loss {record['loss_before']:.6f} -> {record['loss_after']:.6f}"
            kind = "" if stage.preserving else ", not function-preserving"
            print(f"grow: step {stage.step}: {stage.describe()}{kind}{loss}, "
                  f"{record['seconds']:.2f} s", flush=True)


def checkpoint_spec(path: Any) -> Optional[ModelSpec]:
    """The model spec a checkpoint recorded (``logah_spec``: a grown run's current spec), if any."""
    from logah.nn.readers import WeightsError, read_checkpoint

    raw = read_checkpoint(path, mmap=True).get("logah_spec")  # weights only: nothing in it runs
    if raw is None:
        return None
    try:
        return ModelSpec.from_dict(raw)
    except (LogahError, KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: logah_spec is not a valid model spec ({e})") from None
