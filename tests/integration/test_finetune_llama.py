"""`logah finetune` on a Llama: the shared TensorBoard tags, and SIGKILL + re-run resumes."""

from __future__ import annotations

import sys

import pytest
from finetune_synth import (
    GPT_TINY,
    VOCAB,
    checkpoint_step,
    read_scalars,
    rerun_resumes,
    run_until_checkpoint_then_kill,
    text_overrides,
    write_text_data,
)

LLAMA_TINY = ["model.arch=llama-tiny", f"model.vocab_size={VOCAB}", "model.n_ctx=32",
              "model.d_model=32", "model.n_layer=1"]  # 4 heads of 8 in 2 KV groups
MAX_STEPS = 24


@pytest.mark.slow
def test_llama_finetune_logs_the_shared_tags_and_resumes_after_sigkill(tmp_path):
    data = write_text_data(tmp_path / "data", 8_000, 2_000)
    args = [a for a in text_overrides(data, tmp_path / "runs", name="ll", steps=MAX_STEPS)
            if a not in GPT_TINY] + LLAMA_TINY
    args += ["trainer.ckpt_every_n_steps=4", "trainer.val_check_interval=12"]
    cmd = [sys.executable, "-m", "logah.cli.main", "finetune", *args]
    run = tmp_path / "runs" / "finetune" / "ll"
    last = run / "checkpoints" / "last.ckpt"
    run_until_checkpoint_then_kill(cmd, last, timeout=300)
    saved = checkpoint_step(last)
    assert 4 <= saved < MAX_STEPS
    rerun_resumes(cmd, run, saved, MAX_STEPS, timeout=300)
    scalars = read_scalars(run)
    assert {"train/loss", "val/loss", "val/ppl", "lr", "perf/tokens_per_s"} <= set(scalars)
    loss = [v for _, v in scalars["train/loss"]]
    assert loss[-1] < loss[0]  # a Llama learns the synthetic sequence
