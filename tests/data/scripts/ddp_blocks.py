"""Run by test_ddp_sampling: a 2-process gloo DDP fit that records which blocks each rank saw.

Usage: python ddp_blocks.py TOKEN_DIR OUT_DIR. Writes OUT_DIR/rank{r}.json with the first token
of every training and validation block rank r received.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from logah.config.data import DataConfig
from logah.config.specs import get_preset
from logah.data import build_datamodule


class Recorder(L.LightningModule):
    def __init__(self, out: Path) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.out, self.seen = out, {"train": [], "val": []}

    def training_step(self, batch, _):
        x, y = batch
        assert torch.equal(y[:, :-1], x[:, 1:])
        self.seen["train"] += x[:, 0].tolist()
        return self.w * 0 + x.float().mean() * 0 + self.w ** 2

    def validation_step(self, batch, _):
        self.seen["val"] += batch[0][:, 0].tolist()

    def on_fit_end(self) -> None:
        (self.out / f"rank{self.global_rank}.json").write_text(json.dumps(self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(token_dir: str, out: str) -> None:
    cfg = DataConfig(name="text", root=token_dir, batch_size=4, block_size=16, train_blocks=32)
    dm = build_datamodule(cfg, get_preset("gpt2-tiny"), seed=7)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Recorder(Path(out)), datamodule=dm)


if __name__ == "__main__":
    main(*sys.argv[1:])
