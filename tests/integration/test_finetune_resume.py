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


@pytest.mark.slow
def test_sigkill_after_a_growth_step_resumes_the_grown_model(tmp_path):
    """Grow 1x32 -> 2x48 at step 6, SIGKILL once a checkpoint past it exists, re-run: the run
    resumes the grown model at the saved step (same weights, so the same loss) and does not grow
    again."""
    import os
    import signal
    import subprocess
    import time

    import torch

    from logah.config.specs import ModelSpec
    from logah.nn import build_model
    from logah.nn.io import load_state, read_spec

    data = write_text_data(tmp_path / "data", 8_000, 2_000)
    args = text_overrides(data, tmp_path / "runs", name="g", steps=MAX_STEPS)
    args += ["trainer.ckpt_every_n_steps=4", "trainer.val_check_interval=20",
             "grow.schedule=[{step: 6, to: {n_layer: 2, d_model: 48}}]"]
    cmd = [sys.executable, "-m", "logah.cli.main", "finetune", *args]
    run = tmp_path / "runs" / "finetune" / "g"
    last = run / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if last.exists() and checkpoint_step(last) >= 8:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL and "grow: step 6" in out, out[-2000:]
    saved = checkpoint_step(last)
    assert 8 <= saved < MAX_STEPS
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    spec = ModelSpec.from_dict(ckpt["logah_spec"])
    assert (spec.n_layer, spec.d_model) == (2, 48)
    model = build_model(spec, "meta")
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()
                           if k.startswith("model.")}, assign=True)
    x = torch.arange(64).remainder(64).view(2, 32)
    with torch.no_grad():
        loss_ckpt = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())

    # a re-run stopping at the saved step is a no-op that exports the resumed (grown) weights
    stop = [*cmd, f"trainer.max_steps={saved}"]
    rerun_resumes(stop, run, saved, saved, timeout=300)
    weights = run / "weights"
    model2 = build_model(read_spec(weights), "meta")
    model2.load_state_dict(load_state(weights / "model.safetensors"), assign=True)
    with torch.no_grad():
        loss_resumed = torch.nn.functional.cross_entropy(model2(x).flatten(0, 1), x.flatten())
    assert float(loss_resumed) == float(loss_ckpt)

    out = rerun_resumes(cmd, run, saved, MAX_STEPS, timeout=300)
    assert "grow: step" not in out  # the stage is in the checkpoint's history: not run again
    final = torch.load(last, map_location="cpu", weights_only=False)
    (hist,) = [v["history"] for k, v in final["callbacks"].items() if "GrowthCallback" in k]
    assert [h["step"] for h in hist] == [6]
    assert ModelSpec.from_dict(final["logah_spec"]).n_layer == 2
