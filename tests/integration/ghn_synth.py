"""Overrides of a tiny, fast ``logah train-ghn`` run on synthetic tokens (see finetune_synth)."""

from __future__ import annotations

from pathlib import Path

# A small GHN (LoGAH-T's structure, narrower) and a 6-architecture space: seconds per run.
TINY_GHN = ["ghn.preset=logah-t", "ghn.hid=32", "ghn.layers=1", "ghn.heads=4", "ghn.rank=8",
            "ghn.max_width=256"]
TINY_SPACE = ["archs.space.bands=[{layers: [1, 2], width: [16, 32]}]",
              "archs.space.head_groups=[[2]]", "archs.num_train=24", "archs.num_heldout=2",
              "archs.num_beyond=2", "archs.meta_batch=2"]


def ghn_overrides(root: Path, out: Path, name: str = "g", steps: int = 6) -> list[str]:
    """``key=value`` overrides of a tiny GHN training run on ``root`` (from write_text_data)."""
    return [
        *TINY_GHN, *TINY_SPACE, "model.arch=gpt2-tiny", "model.n_ctx=16", "data.name=text",
        f"data.root={root}", "data.batch_size=4", f"out_dir={out}", f"name={name}",
        f"trainer.max_steps={steps}", "trainer.val_check_interval=3", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu", "optim.lr=0.003", "optim.warmup_steps=2",
    ]
