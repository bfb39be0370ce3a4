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
