"""GHN training with 2 CPU processes (gloo DDP), run in a subprocess (Lightning re-launches the
script for rank 1): both ranks end with identical GHN weights and drew different architectures."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from finetune_synth import write_text_data

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {here!r})
    import lightning as L
    import torch
    from ghn_synth import ghn_overrides
    from logah.lit.train_ghn import train_ghn
    from logah.config import load_config
    from logah.config.runs import TrainGHNConfig

    data, out = sys.argv[1], sys.argv[2]

    class Record(L.Callback):
        keys = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.keys += [s.key() for s in batch["archs"].specs]

        def on_train_end(self, trainer, module):
            r = trainer.global_rank
            torch.save(module.ghn.state_dict(), f"{{out}}/ghn_rank{{r}}.pt")
            with open(f"{{out}}/archs_rank{{r}}.json", "w") as f:
                json.dump({{"archs": self.keys, "world": trainer.world_size}}, f)

    overrides = ghn_overrides(data, out, name="ddp", steps=4) + [
        "trainer.devices=2", "trainer.strategy=ddp", "trainer.val_check_interval=4"]
    cfg = load_config(TrainGHNConfig, None, overrides)
    train_ghn(cfg, callbacks=[Record()])
""")


@pytest.mark.slow
def test_two_gloo_ranks_end_identical_and_draw_different_architectures(tmp_path):
    data = write_text_data(tmp_path / "data", 6_000, 1_500)
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "ddp_train_ghn.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    proc = subprocess.run([sys.executable, str(script), str(data), str(out)], capture_output=True,
                          text=True, timeout=540, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = (torch.load(out / f"ghn_rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drawn = [json.loads((out / f"archs_rank{r}.json").read_text()) for r in (0, 1)]
    assert drawn[0]["world"] == drawn[1]["world"] == 2
    assert len(drawn[0]["archs"]) == len(drawn[1]["archs"]) == 8  # 4 steps x m=2
    assert drawn[0]["archs"] != drawn[1]["archs"]
    # the GHN moved away from its (shared, seeded) initialisation
    from logah.ghn import GHN, GHNConfig

    init = GHN(GHNConfig(preset="logah-t", hid=32, layers=1, heads=4, rank=8, max_width=256),
               seed=0).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a)
    ckpt = out / "train-ghn" / "ddp" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(state[f"ghn.{k}"], a[k]) for k in a)
