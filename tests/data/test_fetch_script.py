"""``make data`` (scripts/fetch_data.sh): idempotent copies, one-line notes when npm/apt are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FMNIST = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _run(repo_root: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    # A PATH with the few tools the script needs but neither npm nor apt-get.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "cp", "mkdir", "rm", "mv", "du", "cut", "id"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    full_env = {"PATH": str(bin_dir), "DATA": str(tmp_path / "data"),
                "FMNIST_SYS": str(tmp_path / "sys"), **env}
    return subprocess.run(["bash", str(repo_root / "scripts" / "fetch_data.sh")], env=full_env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_missing_npm_and_apt_say_so_in_one_line_each(repo_root, tmp_path):
    proc = _run(repo_root, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("data: npm not found") and "data.root=DIR" in lines[0]
    assert "cannot install dataset-fashion-mnist" in lines[1] and "data.root=DIR" in lines[1]
    assert not (tmp_path / "data" / "fashion-mnist").exists()


def test_copies_installed_fashion_mnist_once_and_skips_ready_data(repo_root, tmp_path):
    (tmp_path / "sys").mkdir()
    for name in FMNIST:
        (tmp_path / "sys" / name).write_bytes(b"idx " + name.encode())
    brown = tmp_path / "data" / "brown"
    brown.mkdir(parents=True)
    for name in ("train.bin", "val.bin", "meta.json"):
        (brown / name).write_bytes(b"xx")
    proc = _run(repo_root, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "brown is ready (skipped)" in proc.stdout and "fashion-mnist ready" in proc.stdout
    copied = tmp_path / "data" / "fashion-mnist"
    assert sorted(os.listdir(copied)) == sorted(FMNIST)
    assert (copied / FMNIST[0]).read_bytes() == b"idx " + FMNIST[0].encode()
    again = _run(repo_root, tmp_path)
    assert "fashion-mnist is ready (skipped)" in again.stdout and again.stderr == ""
