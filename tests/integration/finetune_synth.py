"""Tiny synthetic task data for fine-tuning tests (nothing downloaded, learnable in a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

VOCAB = 64
# Tiny model overrides: fast on 2 CPU cores, still a real GPT-2 / ViT.
GPT_TINY = ["model.arch=gpt2-tiny", f"model.vocab_size={VOCAB}", "model.n_ctx=32",
            "model.d_model=32", "model.n_layer=1"]
VIT_TINY = ["model.arch=vit-tiny", "model.d_model=32", "model.n_layer=1", "model.image_size=16",
            "model.patch_size=4"]


def _tokens(n: int, seed: int) -> np.ndarray:
    """A near-deterministic sequence (period-8 runs over 4 phrases, 5 % noise): easy to learn."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    seq = idx % 8 + 8 * (idx // 64 % 4)
    noise = rng.random(n) < 0.05
    seq[noise] = rng.integers(0, VOCAB, int(noise.sum()))
    return seq.astype(np.uint16)


def write_text_data(root: Path, n_train: int = 20_000, n_val: int = 4_000) -> Path:
    """``root/{train,val}.bin`` (uint16 tokens < VOCAB) + ``meta.json``, as `logah prepare-text` writes."""
    root.mkdir(parents=True, exist_ok=True)
    _tokens(n_train, 0).tofile(root / "train.bin")
    _tokens(n_val, 1).tofile(root / "val.bin")
    (root / "meta.json").write_text(json.dumps({"vocab_size": VOCAB, "dtype": "uint16"}))
    return root


def text_overrides(root: Path, out: Path, name: str = "t", steps: int = 40) -> list[str]:
    """``key=value`` overrides of a fast text fine-tuning run."""
    return [
        *GPT_TINY, "data.name=text", f"data.root={root}", "data.batch_size=8",
        f"out_dir={out}", f"name={name}", f"trainer.max_steps={steps}", "trainer.val_check_interval=10",
        "trainer.limit_val_batches=4", "trainer.log_every_n_steps=2", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "optim.lr=0.01",
        "optim.warmup_steps=5",
    ]


class SyntheticImages(L.LightningDataModule):
    """Class ``k`` images are a fixed random template plus noise: ``x`` float (B, C, H, W), ``y`` (B,)."""

    def __init__(self, num_classes: int = 10, size: int = 16, chans: int = 3, n_train: int = 512,
                 n_val: int = 128, batch_size: int = 32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        templates = torch.randn(num_classes, chans, size, size, generator=g)

        def make(n: int) -> TensorDataset:
            y = torch.randint(0, num_classes, (n,), generator=g)
            return TensorDataset(templates[y] + 0.5 * torch.randn(n, chans, size, size, generator=g), y)

        self.train_set, self.val_set = make(n_train), make(n_val)
        self.num_classes, self.vocab_size, self.batch_size = num_classes, None, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in a run folder's TensorBoard events: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def checkpoint_step(ckpt: Path) -> int:
    """The ``global_step`` a Lightning checkpoint was saved at."""
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


def rerun_resumes(cmd: list[str], run: Path, saved: int, max_steps: int, timeout: float) -> str:
    """Re-run ``cmd`` after a kill: it exits 0, says it resumed ``run`` at ``saved`` and leaves
    ``last.ckpt`` at ``max_steps``. Returns its stdout."""
    import subprocess

    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {run} from last.ckpt at step {saved}" in proc.stdout
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == max_steps
    return proc.stdout


def run_until_checkpoint_then_kill(cmd: list[str], last: Path, timeout: float) -> str:
    """Start ``cmd``, SIGKILL its process group as soon as ``last`` exists; return its output.

    Asserts the process really died by SIGKILL (not a clean exit before the kill).
    """
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out[-2000:]
    return out
