"""Thin LightningModules around a plain ``logah.nn`` target model: the loss, metrics and logging.

Both log the same TensorBoard tags in every run, so runs overlay:
``train/loss``, ``lr``, ``val/loss`` and ``perf/<unit>_per_s``, plus ``val/ppl`` (:class:`CausalLM`)
or ``val/acc1`` / ``val/acc5`` (:class:`ImageClassifier`). The wrapped model stays a plain
``nn.Module`` (``module.model``), so its ``state_dict`` has the canonical names.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from logah.config.specs import CAUSAL_LM
from logah.config.train import OptimConfig
from logah.lit.optim import configure_optimizers

Batch = tuple[torch.Tensor, torch.Tensor]


class TargetModule(L.LightningModule):
    """Shared training logic. Subclasses define ``loss_and_output(batch) -> (mean loss, output)``
    and may override the metric hooks below.

    Args:
        model: a ``logah.nn`` GPT2 or ViT (its ``spec`` is stored in every checkpoint).
        optim: the ``optim.*`` config group.
    """

    unit = "samples"  # perf/<unit>_per_s

    def __init__(self, model: nn.Module, optim: OptimConfig) -> None:
        super().__init__()
        self.model = model
        self.optim_cfg = optim
        self.val_loss = MeanMetric()  # mean over items (tokens or images), synced across ranks
        self._t_last: Optional[float] = None

    # ---- what subclasses may override -------------------------------------------------------
    def items(self, batch: Batch) -> int:
        """Items in the batch (tokens: ``y`` is (B, T); images: ``y`` is (B,)), for loss weights and
        throughput."""
        return int(batch[1].numel())

    def update_val_metrics(self, output: torch.Tensor, batch: Batch) -> None:
        """Update task metrics from one validation batch (default: none)."""

    def val_metric_values(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        """Epoch-level task metrics besides ``val/loss`` (computed, then reset)."""
        return {}

    # ---- Lightning hooks -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.loss_and_output(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        # The rate this step runs at (the scheduler steps after the optimizer).
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if self._t_last is None:
            self._t_last = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        # Time between consecutive batch ends: forward, backward, optimizer step and data loading.
        now = time.perf_counter()
        dt, self._t_last = now - (self._t_last or now), now
        if dt > 0:
            rate = self.items(batch) * self.trainer.world_size / dt
            self.log(f"perf/{self.unit}_per_s", rate, on_step=True, on_epoch=False)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, output = self.loss_and_output(batch)
        self.val_loss.update(loss.detach(), weight=self.items(batch))
        self.update_val_metrics(output.detach(), batch)

    def on_validation_epoch_end(self) -> None:
        if self.val_loss.update_count == 0:  # e.g. limit_val_batches=0
            return
        loss = self.val_loss.compute()  # already synced across ranks
        values = {"val/loss": loss, **self.val_metric_values(loss)}
        self.val_loss.reset()
        for k, v in values.items():
            # Identical on every rank; sync_dist only keeps Lightning's epoch-level check quiet.
            self.log(k, v, prog_bar=k == "val/loss", sync_dist=True)
        self._t_last = None  # validation time is not training throughput

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(
            self.model, self.optim_cfg, int(self.trainer.estimated_stepping_batches)
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        spec = getattr(self.model, "spec", None)
        if spec is not None:  # lets tools rebuild the model from a checkpoint alone
            checkpoint["logah_spec"] = spec.to_dict()


class CausalLM(TargetModule):
    """GPT-2 next-token prediction. Batches ``(x, y)``: LongTensors ``(B, T)``, ``y`` = next tokens.

    ``val/ppl`` is ``exp(val/loss)`` with ``val/loss`` the mean next-token cross-entropy over every
    validation token (torchmetrics ``MeanMetric`` weighted by token count), which is exactly
    torchmetrics' ``Perplexity`` without materialising a softmax over the vocabulary.
    """

    unit = "tokens"

    def loss_and_output(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return loss, logits

    def val_metric_values(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"val/ppl": torch.exp(loss)}


class ImageClassifier(TargetModule):
    """ViT classification. Batches ``(x, y)``: float ``(B, C, H, W)`` and LongTensor ``(B,)``.

    Logs ``val/acc1`` and, with more than 5 classes, ``val/acc5`` (torchmetrics multiclass
    accuracy, micro-averaged over all validation images, as fractions in [0, 1]).
    ``label_smoothing`` applies to the training loss only.
    """

    unit = "images"

    def __init__(self, model: nn.Module, optim: OptimConfig, label_smoothing: float = 0.0) -> None:
        super().__init__(model, optim)
        n = int(model.spec.num_classes)
        self.label_smoothing = float(label_smoothing)
        self.acc1 = MulticlassAccuracy(num_classes=n, top_k=1, average="micro")
        self.acc5 = MulticlassAccuracy(num_classes=n, top_k=5, average="micro") if n > 5 else None

    def loss_and_output(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.model(x)  # (B, num_classes)
        # Smoothing is a training regulariser: val/loss stays the plain cross-entropy, comparable
        # across runs (Lightning puts the module in eval mode for validation).
        smoothing = self.label_smoothing if self.training else 0.0
        return F.cross_entropy(logits, y, label_smoothing=smoothing), logits

    def update_val_metrics(self, output: torch.Tensor, batch: Batch) -> None:
        self.acc1.update(output, batch[1])
        if self.acc5 is not None:
            self.acc5.update(output, batch[1])

    def val_metric_values(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"val/acc1": self.acc1.compute()}
        self.acc1.reset()
        if self.acc5 is not None:
            out["val/acc5"] = self.acc5.compute()
            self.acc5.reset()
        return out


def module_for(model: nn.Module, optim: OptimConfig, label_smoothing: float = 0.0) -> TargetModule:
    """The LightningModule for a model's family: :class:`CausalLM` or :class:`ImageClassifier`
    (``label_smoothing`` applies to image classification only)."""
    if model.spec.family in CAUSAL_LM:
        return CausalLM(model, optim)
    return ImageClassifier(model, optim, label_smoothing=label_smoothing)
