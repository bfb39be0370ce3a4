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
@pytest.mark.skipif(not (ROOT / "data" / "brown" / "train.bin").is_file(),
                    reason="needs `make data` (data/brown)")
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
    cmd = [sys.executable, str(ROOT / "experiments" / "run.py"), str(exp), "--out-dir",
           str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--set", *TINY]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "$ logah train-ghn --config" in first.stdout and "$ logah grow --from" in first.stdout
    res = tmp_path / "res"
    data = json.loads((res / "results.json").read_text())
    group = data["groups"]["cpu-brown-gpt2-4x96"]
    labels = [r["label"] for r in group["compare"]["rows"]]
    assert sorted(labels) == ["ghn3-t", "grow-gpt2-2x64", "logah-t", "random"]
    # the same number of steps for every init (Lightning logs the last validation at step 2 - 1)
    assert [r["last_step"] for r in group["compare"]["rows"]] == [1, 1, 1, 1]
    assert group["target"]["n_layer"] == 4 and group["ghn_spaces"]["logah-t"]["max_layers"] == 3
    assert set(group["seeds"].values()) == {0}
    assert (res / "cpu-brown-gpt2-4x96" / "curves.png").stat().st_size > 10_000
    snippet = (res / "README-snippet.md").read_text()
    assert "**cpu-brown-gpt2-4x96**: target gpt2 4 layers x 96" in snippet
    assert "\n| random | " in snippet and "curves.png)" in snippet
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("[skip]") == 10 and "[run]" not in second.stdout
