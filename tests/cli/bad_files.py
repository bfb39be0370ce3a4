"""Every reader of weights and checkpoints, fed bad files (used by test_bad_files.py).

Run ``python tests/cli/bad_files.py`` to print the table "reader x bad file -> the line it prints".

A *reader* is one way a user points logah at a file (``predict --ghn``, ``finetune init=weights:``,
``grow --from``, a resumed run's ``last.ckpt``); :func:`build_assets` writes one valid file of each
kind, a case copies the folder it needs, replaces one file by a bad one and runs the command.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

GPT = ["model.arch=gpt2-tiny", "model.vocab_size=64", "model.n_ctx=16", "model.d_model=32",
       "model.n_layer=1", "model.n_heads=2"]
VIT = ["model.arch=vit-tiny", "model.d_model=32", "model.n_layer=1", "model.n_heads=2",
       "model.image_size=16", "model.patch_size=4"]
KINDS = ("random bytes", "truncated", "zero bytes", "PNG image", "text file", "wrong family")
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
TEXT = b"model weights are in the other folder\n"


def _spec(overrides: list[str]):
    from logah.config import load_config
    from logah.config.model import ModelOnlyConfig, resolve_spec

    return resolve_spec(load_config(ModelOnlyConfig, None, overrides).model)


def _shard(hf: Path) -> None:
    """Split ``hf/model.safetensors`` into two shards + ``model.safetensors.index.json``."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(hf / "model.safetensors"))
    names = sorted(state)
    half = {f"model-0000{i + 1}-of-00002.safetensors": names[i::2] for i in range(2)}
    for shard, keys in half.items():
        save_file({k: state[k] for k in keys}, str(hf / shard))
    weight_map = {k: shard for shard, keys in half.items() for k in keys}
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (hf / "model.safetensors").unlink()


def _family(root: Path, name: str, overrides: list[str]) -> None:
    """``root/name``: logah weights dir (+ hf/), a sharded HF dir, a pytorch_model.bin HF dir."""
    from safetensors.torch import load_file

    from logah.nn import build_model
    from logah.nn.io import save_weights

    spec = _spec(overrides)
    w = save_weights(build_model(spec, seed=0).state_dict(), spec, root / name, hf=True)
    shutil.copytree(w / "hf", root / f"{name}-sharded")
    _shard(root / f"{name}-sharded")
    shutil.copytree(w / "hf", root / f"{name}-bin")
    bin_dir = root / f"{name}-bin"
    torch.save(load_file(str(bin_dir / "model.safetensors")), bin_dir / "pytorch_model.bin")
    (bin_dir / "model.safetensors").unlink()
    (root / f"{name}-file").mkdir()
    shutil.copy(w / "model.safetensors", root / f"{name}-file" / "w.safetensors")


def build_assets(root: Path) -> Path:
    """Valid files of every kind the readers take, plus task data for ``finetune``."""
    from logah.config.ghn import GHNConfig
    from logah.ghn.ghn import GHN
    from logah.ghn.io import save_ghn

    _family(root, "gpt", GPT)
    _family(root, "vit", VIT)
    ghn = GHN(GHNConfig(preset="logah-t", hid=16, layers=1, heads=2, rank=4, max_width=256), seed=0)
    save_ghn(ghn, root / "ghn")
    ghn_ckpt = {"global_step": 3, "hyper_parameters": {"ghn": ghn.config.to_dict()},
                "state_dict": {f"ghn.{k}": v for k, v in ghn.state_dict().items()}}
    (root / "ghn-ckpt").mkdir()
    torch.save(ghn_ckpt, root / "ghn-ckpt" / "g.ckpt")
    from logah.nn import build_model

    model = build_model(_spec(GPT), seed=0)  # what a finetune run's last.ckpt holds
    last = root / "run" / "finetune" / "t" / "checkpoints"
    last.mkdir(parents=True)
    torch.save({"global_step": 3, "state_dict": {f"model.{k}": v for k, v in
                                                 model.state_dict().items()}}, last / "last.ckpt")
    data = root / "data"
    data.mkdir()
    for split, n in (("train", 4000), ("val", 1000)):
        (np.arange(n) % 64).astype(np.uint16).tofile(data / f"{split}.bin")
    (data / "meta.json").write_text(json.dumps({"vocab_size": 64, "dtype": "uint16"}))
    return root


@dataclass(frozen=True)
class Reader:
    """One reader: ``folder`` (under the assets) is copied, ``target`` in it made bad, ``argv``
    run; ``wrong`` is the same file of another model family (or of another kind of run)."""

    name: str
    folder: str
    target: str
    wrong: str
    argv: Callable[[Path, Path, Path], list[str]]  # (assets, copied folder, scratch) -> argv


def _finetune(assets: Path, init: Path, scratch: Path) -> list[str]:
    return ["finetune", *GPT, "data.name=text", f"data.root={assets / 'data'}",
            f"out_dir={scratch / 'runs'}", "name=t", "trainer.max_steps=1",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", f"init=weights:{init}"]


def _predict(ghn: Path, scratch: Path) -> list[str]:
    return ["predict", "--ghn", str(ghn), "--arch", "gpt2-tiny", "--out", str(scratch / "out"),
            "--no-progress"]


def _grow(src: Path, scratch: Path) -> list[str]:
    return ["grow", "--from", str(src), "--to", "n_layer=2", "--out", str(scratch / "grown")]


def _resume(assets: Path, run: Path, scratch: Path) -> list[str]:
    return ["finetune", *GPT, "data.name=text", f"data.root={assets / 'data'}",
            f"out_dir={run.parent.parent}", "name=t", "trainer.max_steps=4",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


READERS = (
    Reader("predict --ghn CKPT", "ghn-ckpt", "g.ckpt", "run/finetune/t/checkpoints/last.ckpt",
           lambda a, d, s: _predict(d / "g.ckpt", s)),
    Reader("predict --ghn DIR", "ghn", "ghn.safetensors", "gpt/model.safetensors",
           lambda a, d, s: _predict(d, s)),
    Reader("predict --ghn DIR", "ghn", "ghn.json", "gpt/logah.json",
           lambda a, d, s: _predict(d, s)),
    Reader("finetune init=weights:FILE", "gpt-file", "w.safetensors", "vit/model.safetensors",
           lambda a, d, s: _finetune(a, d / "w.safetensors", s)),
    Reader("finetune init=weights:DIR", "gpt", "logah.json", "vit/logah.json",
           lambda a, d, s: _finetune(a, d, s)),
    Reader("finetune init=weights:DIR", "gpt", "model.safetensors", "vit/model.safetensors",
           lambda a, d, s: _finetune(a, d, s)),
    Reader("finetune init=weights:HF", "gpt/hf", "config.json", "vit/hf/config.json",
           lambda a, d, s: _finetune(a, d, s)),
    Reader("finetune init=weights:HF", "gpt/hf", "model.safetensors", "vit/hf/model.safetensors",
           lambda a, d, s: _finetune(a, d, s)),
    Reader("finetune init=weights:HF (sharded)", "gpt-sharded", "model.safetensors.index.json",
           "vit-sharded/model.safetensors.index.json", lambda a, d, s: _finetune(a, d, s)),
    Reader("finetune init=weights:HF (sharded)", "gpt-sharded",
           "model-00001-of-00002.safetensors", "vit-sharded/model-00001-of-00002.safetensors",
           lambda a, d, s: _finetune(a, d, s)),
    Reader("finetune init=weights:HF (.bin)", "gpt-bin", "pytorch_model.bin",
           "vit-bin/pytorch_model.bin", lambda a, d, s: _finetune(a, d, s)),
    Reader("grow --from DIR", "gpt", "model.safetensors", "vit/model.safetensors",
           lambda a, d, s: _grow(d, s)),
    Reader("grow --from DIR", "gpt", "logah.json", "vit/logah.json", lambda a, d, s: _grow(d, s)),
    Reader("grow --from HF", "gpt/hf", "model.safetensors", "vit/hf/model.safetensors",
           lambda a, d, s: _grow(d, s)),
    Reader("grow --from HF (.bin)", "gpt-bin", "pytorch_model.bin", "vit-bin/pytorch_model.bin",
           lambda a, d, s: _grow(d, s)),
    Reader("finetune (resume)", "run", "finetune/t/checkpoints/last.ckpt", "ghn-ckpt/g.ckpt",
           lambda a, d, s: _resume(a, d / "finetune" / "t", s)),
)
# The readers that unpickle (torch.load): each must refuse a checkpoint that runs code.
PICKLE_READERS = tuple(r for r in READERS if r.target.endswith((".ckpt", ".bin")))


def bad_bytes(kind: str, good: bytes, wrong: bytes) -> bytes:
    if kind == "random bytes":
        return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return {"truncated": good[: len(good) // 2], "zero bytes": b"", "PNG image": PNG,
            "text file": TEXT, "wrong family": wrong}[kind]


class Evil:
    """Unpickling this creates ``marker`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('ran')",))


def evil_bytes(fmt: str, marker: Path, scratch: Path) -> bytes:
    """A checkpoint that runs code when unpickled: torch's zip format, its legacy format, or a
    bare pickle."""
    obj = {"global_step": 1, "state_dict": {}, "x": Evil(marker)}
    if fmt == "pickle":
        return pickle.dumps(obj, protocol=2)
    f = scratch / "evil.tmp"
    torch.save(obj, f, _use_new_zipfile_serialization=fmt == "zip")
    data = f.read_bytes()
    f.unlink()
    return data


def run_case(reader: Reader, content: bytes, assets: Path, scratch: Path,
             capsys_read: Callable[[], tuple[str, str]]) -> tuple[int, str, Path]:
    """Copy the reader's folder into ``scratch``, write ``content`` over its target, run the
    command in process. Returns (exit code, stderr, the bad file)."""
    from logah.cli.main import main

    folder = scratch / "case"
    shutil.copytree(assets / reader.folder, folder)
    target = folder / reader.target
    target.write_bytes(content)
    capsys_read()
    code = main(reader.argv(assets, folder, scratch))
    return code, capsys_read()[1], target


def table(workdir: Path) -> str:
    """The markdown table of every reader x bad file -> its stderr (paths relative)."""
    import contextlib
    import io

    assets = build_assets(workdir / "assets")
    rows = ["| reader | file | bad file | exit | what it prints |", "|---|---|---|---|---|"]
    for i, reader in enumerate(READERS):
        good = (assets / reader.folder / reader.target).read_bytes()
        wrong = (assets / reader.wrong).read_bytes()
        for j, kind in enumerate(KINDS):
            scratch = workdir / f"r{i}k{j}"
            scratch.mkdir()
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code, out, target = run_case(reader, bad_bytes(kind, good, wrong), assets,
                                             scratch, lambda e=err: ("", e.getvalue()))
            line = out.strip().replace(str(workdir) + os.sep, "").replace("|", "\\|")
            rows.append(f"| `{reader.name}` | {reader.target} | {kind} | {code} | {line} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    with tempfile.TemporaryDirectory() as d:
        print(table(Path(d)))
