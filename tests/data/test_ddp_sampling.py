"""Real 2-process gloo DDP (in a subprocess): ranks draw different random train blocks and
validation blocks are sharded across ranks without overlap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "ddp_blocks.py"


@pytest.mark.slow
def test_ddp_ranks_draw_different_blocks(tmp_path):
    np.arange(5000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(10_000, 11_000, dtype=np.uint16).tofile(tmp_path / "val.bin")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # train_blocks=32 per epoch over 2 ranks -> 16 per rank per epoch, 2 epochs.
    assert [len(s["train"]) for s in seen] == [32, 32]
    assert seen[0]["train"] != seen[1]["train"]
    assert seen[0]["train"][:16] != seen[0]["train"][16:]  # a new draw each epoch
    # Validation: 62 fixed blocks of 16 tokens, split between the ranks, the same each epoch.
    val = [s["val"][: len(s["val"]) // 2] for s in seen]
    assert all(s["val"] == v * 2 for s, v in zip(seen, val))
    assert not set(val[0]) & set(val[1])
    assert sorted(val[0] + val[1]) == [10_000 + 16 * i for i in range(62)]
