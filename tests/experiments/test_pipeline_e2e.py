"""The experiment runner end to end on the real CPU experiment, shrunk to a few steps (slow).

Every stage is a real ``logah`` command; checks the results it writes and that a rerun skips every
finished stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["trainer.max_steps=2", "trainer.val_check_interval=1", "trainer.limit_val_batches=1"]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 14 stages of ~30 s each, two at a time, twice
@pytest.mark.skipif(not (ROOT / "data" / "brown-v4k" / "train.bin").is_file(),
                    reason="needs `make data data/brown-v4k/meta.json`")
def test_cpu_brown_pipeline_runs_and_reruns_skip(tmp_path):
    exp = tmp_path / "cpu-brown"
    exp.mkdir()
    # The real files; the GHN configs draw fewer architectures (--set reaches every training
    # stage, and fine-tuning configs have no archs.* keys).
    for f in (ROOT / "conf" / "experiment" / "cpu-brown").glob("*.yaml"):
        text = f.read_text()
        if f.name.startswith("ghn-"):
            text = text.replace("num_train: 1000", "num_train: 4").replace(
                "num_heldout: 4", "num_heldout: 1").replace("num_beyond: 2", "num_beyond: 0")
        (exp / f.name).write_text(text)
    # one rate, two seeds: 5 inits x 2 cells through the real `logah finetune` (cloning and
    # stacking cells: tests/integration/test_finetune_baseline_inits.py)
    cmd = [sys.executable, str(ROOT / "experiments" / "run.py"), str(exp), "--out-dir",
           str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--lrs", "0.003",
           "--seeds", "0", "1", "--jobs", "2", "--set", *TINY]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for init in ("init=mimetic", "init=ghn:", "init=grow:"):
        assert init in first.stdout, init
    res = tmp_path / "res"
    data = json.loads((res / "results.json").read_text())
    group = data["groups"]["cpu-brown-gpt2-4x64"]
    rows = {r["label"]: r for r in group["protocol"]["rows"]}
    assert sorted(rows) == ["ghn3-t", "grow-gpt2-2x32", "logah-t", "mimetic", "random"]
    assert all(r["seeds"] == [0, 1] and r["best_lr"] == 0.003 for r in rows.values())
    assert group["missing_cells"] == [] and group["unigram_val_nats"] == pytest.approx(5.642, 1e-3)
    assert group["target"]["n_layer"] == 4 and group["ghn_spaces"]["logah-t"]["max_layers"] == 3
    assert (res / "cpu-brown-gpt2-4x64" / "curves.png").stat().st_size > 10_000
    snippet = (res / "README-snippet.md").read_text()
    assert "**cpu-brown-gpt2-4x64**: target gpt2 4 layers x 64" in snippet
    assert "unigram (val split): 5.642" in snippet
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("[skip]") == 4 + 14 and "[run]" not in second.stdout
