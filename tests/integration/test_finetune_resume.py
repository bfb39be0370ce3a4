"""SIGKILL a `logah finetune` mid-run, re-run the same command: it resumes at the saved step."""

from __future__ import annotations

import sys

import pytest
from finetune_synth import (
    checkpoint_step,
    read_scalars,
    rerun_resumes,
    run_until_checkpoint_then_kill,
    text_overrides,
    write_text_data,
)

MAX_STEPS = 60


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_at_the_saved_step(tmp_path):
    data = write_text_data(tmp_path / "data", 8_000, 2_000)
    args = text_overrides(data, tmp_path / "runs", name="r", steps=MAX_STEPS)
    args += ["trainer.ckpt_every_n_steps=5", "trainer.val_check_interval=20"]
    cmd = [sys.executable, "-m", "logah.cli.main", "finetune", *args]
    run = tmp_path / "runs" / "finetune" / "r"
    last = run / "checkpoints" / "last.ckpt"

    run_until_checkpoint_then_kill(cmd, last, timeout=240)  # mid-epoch
    saved = checkpoint_step(last)  # atomic saves: whatever is there is a complete checkpoint
    assert 5 <= saved < MAX_STEPS

    rerun_resumes(cmd, run, saved, MAX_STEPS, timeout=300)
    steps = [s for s, _ in read_scalars(run)["train/loss"]]
    assert steps == sorted(set(steps))  # the killed run's later points were purged, no overlap
    assert steps[-1] >= MAX_STEPS - 2
