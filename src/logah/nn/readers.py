"""Safe readers of every file logah loads weights from: nothing in a file runs, a bad file is one line.

- PyTorch checkpoints (a Lightning ``.ckpt``, ``pytorch_model.bin``): ``torch.load(weights_only=True)``
  only, so tensors and plain containers come back and a pickled callable (``os.system``, ``exec``)
  is refused instead of called;
- safetensors files, single or sharded (``model.safetensors.index.json`` naming shards beside it);
- JSON through :func:`logah.config.files.read_json` (strict; torch-free, so configs use it too).

Every problem is one :class:`WeightsError` ``"<file>: <what is wrong>"``. What is wrong is found
from the bytes (:func:`logah.config.files.describe`), so an empty, truncated or foreign file (a
PNG, a text file, a safetensors file where a checkpoint was expected) is named as such rather
than as a parser's complaint."""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from logah.config.files import (
    ZIP_HEAD,
    UnreadableFileError,
    describe,
    head_of,
    not_a,
    read_json,
    strict_json,
)

_ZIP_END = b"PK\x05\x06"
_MAX_SAFETENSORS_HEADER = 100 << 20  # what the safetensors library itself accepts

__all__ = ["WeightsError", "describe", "read_checkpoint", "read_json", "read_safetensors",
           "read_index", "read_sharded_safetensors", "iter_safetensors", "check_safetensors"]


class WeightsError(UnreadableFileError):
    """A weights file, checkpoint or the JSON beside it is missing, unreadable, or does not match
    what it should hold. The message starts with the file."""


# ---- PyTorch checkpoints ------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """A PyTorch checkpoint as a dict, loaded with ``weights_only=True`` (nothing in it runs).

    Args:
        mmap: map a zip-format checkpoint instead of reading it (large optimizer states).

    Raises:
        WeightsError: ``"<path>: cannot read checkpoint (<what>)"`` — empty, truncated, another
            kind of file, not a dict — or ``"<path>: refused ..."`` when unpickling would call code.
    """
    p = Path(path)
    head, size = head_of(p)
    is_zip = head.startswith(ZIP_HEAD)
    is_pickle = describe(head, size) == "a pickle"
    if not (is_zip or is_pickle):
        kind = not_a(describe(head, size), "a PyTorch checkpoint")
        raise WeightsError(f"{p}: cannot read checkpoint ({kind})")
    if is_zip and not _zip_is_complete(p, size):
        raise WeightsError(f"{p}: cannot read checkpoint (truncated: the zip archive ends before "
                           f"its directory; {size:,} bytes)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it all
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as e:
        raise WeightsError(f"{p}: {_refusal(str(e))}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{p}: cannot read checkpoint (truncated or corrupt: {reason})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{p}: cannot read checkpoint (it holds a {type(obj).__name__}, not a "
                           "dict)")
    return obj


def _zip_is_complete(p: Path, size: int) -> bool:
    """A zip file ends with its end-of-directory record (within the last 64 KiB + 22 bytes)."""
    with open(p, "rb") as f:
        f.seek(max(0, size - (65536 + 22)))
        return _ZIP_END in f.read()


def _refusal(message: str) -> str:
    """One line for torch's multi-paragraph ``weights_only`` refusal."""
    called = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if called:
        return (f"refused to load: unpickling it would call {called.group(1)} (only tensors and "
                "plain data are loaded; a checkpoint that runs code is never trusted)")
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
    what = detail.group(1).strip() if detail else "not tensors and plain data"
    return f"cannot read checkpoint (corrupt or not weights-only: {what})"


# ---- safetensors ----------------------------------------------------------------------------
def check_safetensors(path: str | os.PathLike) -> None:
    """Raise one :class:`WeightsError` unless ``path`` is a complete safetensors file.

    Checks the 8-byte header length, the JSON header and that the file covers every tensor's
    byte range, so an empty, truncated or foreign file is named as such.
    """
    p = Path(path)
    head, size = head_of(p, 16)
    prefix = f"{p}: cannot read safetensors"
    n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else 0
    if size < 9 or head[8:9] != b"{" or n > _MAX_SAFETENSORS_HEADER:
        raise WeightsError(f"{prefix} ({not_a(describe(head, size), 'a safetensors file')})")
    if 8 + n > size:
        raise WeightsError(f"{prefix} (truncated: the header needs {8 + n:,} bytes, the file has "
                           f"{size:,})")
    with open(p, "rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        header = strict_json(raw)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise WeightsError(f"{prefix} (corrupt header: {e})") from None
    if 8 + n + end > size:
        raise WeightsError(f"{prefix} (truncated: the tensors need {8 + n + end:,} bytes, the file "
                           f"has {size:,})")


def iter_safetensors(path: str | os.PathLike) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a checked safetensors file, one tensor in memory at a time."""
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
    except Exception as e:  # noqa: BLE001 — safetensors raises SafetensorError(Exception)
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"{path}: cannot read safetensors ({str(e).splitlines()[0]})") from None


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return dict(iter_safetensors(path))


def read_index(index: str | os.PathLike) -> dict[str, list[str]]:
    """Shard file -> tensor names of a safetensors index (``*.safetensors.index.json``), checked:
    a ``weight_map`` of name -> plain file name beside the index, each file present."""
    index = Path(index)
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise WeightsError(f"{index}: not a safetensors index (no 'weight_map' of name -> file)")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    for shard in shards:
        if Path(shard).name != shard or shard in (".", ".."):
            raise WeightsError(f"{index}: shard {shard!r} is not a file name beside the index")
        if not (index.parent / shard).is_file():
            raise WeightsError(f"{index.parent / shard}: no such file (listed in {index.name})")
    return shards


def read_sharded_safetensors(index: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded checkpoint (see :func:`read_index`); each tensor the index lists
    must be in its shard."""
    index = Path(index)
    state: dict[str, torch.Tensor] = {}
    for shard, names in read_index(index).items():
        tensors = read_safetensors(index.parent / shard)
        missing = [k for k in names if k not in tensors]
        if missing:
            raise WeightsError(f"{index.parent / shard}: lacks {len(missing)} tensors that "
                               f"{index.name} lists for it (first: {missing[0]})")
        state.update(tensors)
    return state
