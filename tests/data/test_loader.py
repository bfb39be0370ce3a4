"""Worker-backed DataLoaders: they work from a folder deeper than Unix sockets allow, and a stalled
worker ends in one error naming the dataset instead of a silent wait."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from logah.config import ConfigError, load_config
from logah.config.data import DataConfig
from logah.config.runs import FinetuneConfig
from logah.data.loader import StalledLoaderError, task_loader

REPO = Path(__file__).resolve().parents[2]

# Runs in a subprocess whose working folder and TMPDIR are both deep (what `make` exported before):
# token and image DataModules with 2 workers each deliver batches, then one short `logah finetune`.
DEEP_SCRIPT = textwrap.dedent("""
    import gzip, struct, sys
    from pathlib import Path
    import numpy as np
    from logah.config.data import DataConfig
    from logah.config.specs import get_preset
    from logah.data import build_datamodule
    from logah.cli.main import main

    here = Path.cwd()
    np.arange(4000, dtype=np.uint16).tofile(here / "train.bin")
    np.arange(1000, dtype=np.uint16).tofile(here / "val.bin")
    fm = here / "fm"
    fm.mkdir()
    for prefix, n in (("train", 64), ("t10k", 32)):
        for kind, arr in (("images-idx3", np.full((n, 28, 28), 7)), ("labels-idx1", np.arange(n) % 10)):
            arr = arr.astype(np.uint8)
            head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (fm / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    gpt = get_preset("gpt2-tiny")
    vit = get_preset("vit-tiny")
    cases = ((DataConfig(name="text", root=str(here), batch_size=4, num_workers=2, timeout_s=30), gpt),
             (DataConfig(name="fashion-mnist", root=str(fm), batch_size=8, num_workers=2,
                         timeout_s=30), vit))
    for cfg, spec in cases:
        dm = build_datamodule(cfg, spec)
        dm.setup("fit")
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            x, y = next(iter(loader))
            print(cfg.name, tuple(x.shape), tuple(y.shape))
    sys.exit(main(["finetune", "model.arch=vit-tiny", "model.d_model=32", "model.n_layer=1",
                   "data.name=fashion-mnist", f"data.root={fm}", "data.batch_size=8",
                   "data.num_workers=2", "data.timeout_s=30", f"out_dir={here / 'runs'}",
                   "trainer.max_steps=3", "trainer.val_check_interval=3",
                   "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
                   "trainer.accelerator=cpu"]))
""")


def test_worker_loaders_run_from_a_folder_deeper_than_unix_sockets_allow(tmp_path):
    deep = tmp_path
    while len(str(deep)) < 125:
        deep = deep / "a-researchers-long-project-folder"
    tmp = deep / ".tmp"
    tmp.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO / "src")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", DEEP_SCRIPT], cwd=deep, env=env, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[:4] == [
        "text (4, 128) (4, 128)", "text (4, 128) (4, 128)",
        "fashion-mnist (8, 3, 32, 32) (8,)", "fashion-mnist (8, 3, 32, 32) (8,)"]
    assert f"note: temporary folder {tmp} is {len(str(tmp))} characters" in proc.stderr
    assert (deep / "runs" / "finetune").is_dir() and time.monotonic() - t0 < 240


class _Stuck(Dataset):
    """Item 0 arrives; every later one takes far longer than the loader's timeout."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        if i > 0:
            time.sleep(2.0)
        return torch.tensor([i])


def test_a_stalled_worker_is_one_error_naming_the_dataset():
    cfg = DataConfig(batch_size=1, num_workers=1, timeout_s=0.3)
    loader = task_loader(_Stuck(), cfg, "data/stuck (val)")
    it = iter(loader)
    assert next(it).tolist() == [[0]]
    t0 = time.monotonic()
    with pytest.raises(StalledLoaderError) as e:
        next(it)
    assert time.monotonic() - t0 < 1.5
    assert str(e.value) == ("data/stuck (val): 1 DataLoader workers delivered no batch within "
                            "0.3 s (data.timeout_s); rerun with data.num_workers=0 to see what a "
                            "worker is stuck on, or raise data.timeout_s for very slow storage")
    del it, loader


def test_timeout_applies_only_with_workers_and_is_validated():
    assert task_loader(list(range(4)), DataConfig(num_workers=0), "x").timeout == 0
    assert task_loader(list(range(4)), DataConfig(num_workers=2), "x").timeout == 120.0
    with pytest.raises(ConfigError, match=r"data\.timeout_s: must be >= 0, got -1\.0"):
        load_config(FinetuneConfig, None, ["data.timeout_s=-1"])
