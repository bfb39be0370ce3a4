"""``perf/flops``: cumulative training FLOPs of a run, logged beside ``train/loss``.

Each training batch adds :func:`logah.nn.flops.step_flops` of the *current* model (so a run that
grows counts the bigger model from its growth step on) times the number of ranks. The total is
saved in checkpoints, so a resumed run continues the count.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from logah.nn.flops import step_flops

TAG = "perf/flops"


class FlopsCounter(Callback):
    """Adds each batch's forward + backward FLOPs (all ranks) and logs the running total."""

    def __init__(self) -> None:
        self.total = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total = float(state_dict.get("total", 0.0))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        x = batch[0]  # token ids (B, T) / ViT images (B, C, H, W)
        self.total += step_flops(pl_module.model.spec, tuple(x.shape)) * trainer.world_size
        pl_module.log(TAG, self.total, on_step=True, on_epoch=False)
