"""`trainer.devices=2 trainer.strategy=ddp` on CPU (gloo): both ranks end with identical weights.

DDP runs in a subprocess: Lightning's ``ddp`` strategy re-launches the running script as rank 1,
which inside pytest would re-run the pytest session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from finetune_synth import write_text_data

SCRIPT = Path(__file__).parent / "finetune_ddp_script.py"


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    data = write_text_data(tmp_path / "data", 8_000, 2_000)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(data), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["step"] == 8 for r in ranks)
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert ranks[0]["first_tokens"] != ranks[1]["first_tokens"]  # each rank saw its own data
    run = tmp_path / "runs" / "finetune" / "ddp"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "weights").is_dir()


@pytest.mark.slow
def test_ddp_ranks_grow_identically(tmp_path):
    """A growth stage at step 4 under 2-rank gloo DDP: both ranks grow to the same weights, keep
    their batch loss across the growth, and train on (DDP re-wrapped around the new parameters)."""
    data = write_text_data(tmp_path / "data", 8_000, 2_000)
    schedule = "grow.schedule=[{step: 4, to: {n_layer: 2, d_model: 48}}]"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(data), str(tmp_path), schedule],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["step"] == 8 and r["dims"] == [2, 48] for r in ranks)
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # identical after growth and 4 more steps
    for r in ranks:
        (h,) = r["growth"]
        assert h["step"] == 4 and abs(h["loss_after"] - h["loss_before"]) <= 1e-5
    # each rank evaluated its own batch at the growth step
    assert ranks[0]["growth"][0]["loss_before"] != ranks[1]["growth"][0]["loss_before"]
