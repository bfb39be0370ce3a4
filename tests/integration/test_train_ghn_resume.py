"""SIGKILL a `logah train-ghn` mid-epoch, re-run the same command: it resumes at the saved step,
keeps its architectures (archs.json) and finishes at max_steps without overlapping curves."""

from __future__ import annotations

import sys

import pytest
from finetune_synth import (
    checkpoint_step,
    read_scalars,
    rerun_resumes,
    run_until_checkpoint_then_kill,
    write_text_data,
)
from ghn_synth import ghn_overrides

MAX_STEPS = 24


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_at_the_saved_step(tmp_path):
    data = write_text_data(tmp_path / "data", 20_000, 1_500)  # one epoch >> MAX_STEPS batches
    args = ghn_overrides(data, tmp_path / "runs", name="r", steps=MAX_STEPS)
    args += ["trainer.ckpt_every_n_steps=2", "trainer.val_check_interval=12"]
    cmd = [sys.executable, "-m", "logah.cli.main", "train-ghn", *args]
    run = tmp_path / "runs" / "train-ghn" / "r"
    last = run / "checkpoints" / "last.ckpt"

    run_until_checkpoint_then_kill(cmd, last, timeout=300)  # mid-epoch
    saved = checkpoint_step(last)  # atomic saves: whatever is there is a complete checkpoint
    assert 2 <= saved < MAX_STEPS
    archs = (run / "archs.json").read_text()

    out = rerun_resumes(cmd, run, saved, MAX_STEPS, timeout=400)
    assert (run / "archs.json").read_text() == archs  # the same training / held-out sets
    steps = [s for s, _ in read_scalars(run)["train/loss"]]
    assert steps == sorted(set(steps)) and steps[-1] == MAX_STEPS - 1
    assert "mean: zero-shot" in out  # the held-out table is printed at the end
