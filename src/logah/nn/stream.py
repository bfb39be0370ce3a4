"""Streaming safetensors: write a file tensor by tensor, holding one tensor in memory at a time.

The safetensors header (names, dtypes, shapes, byte offsets) is written first from the known
shapes, then each tensor's bytes in header order. :func:`stream_export_hf` converts a written
``model.safetensors`` (or shards, :mod:`logah.nn.shards`) into a Hugging Face directory the same
way, one group of tensors (one block) at a time, so exporting a model never holds the whole model in
memory.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch

from logah.config.errors import LogahError
from logah.config.specs import ModelSpec
from logah.utils.fs import atomic_path

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32"}


class StreamWriteError(LogahError):
    """A streamed tensor does not match the header written up front."""


class SafetensorsStreamWriter:
    """Write a safetensors file whose tensors arrive one at a time, in a fixed order.

    Usage::

        with SafetensorsStreamWriter(path, {"a": (2, 3), "b": (4,)}) as w:
            w.write("a", ta)
            w.write("b", tb)

    The file appears atomically at ``path`` when the block exits without error.

    Args:
        path: destination file.
        shapes: name -> shape, in the order the tensors will be written.
        dtype: the dtype of every tensor (tensors are converted to it).
        metadata: string -> string pairs stored in the header.
    """

    def __init__(self, path: str | os.PathLike, shapes: Mapping[str, Iterable[int]],
                 dtype: torch.dtype = torch.float32,
                 metadata: dict[str, str] | None = None) -> None:
        self.path, self.dtype = Path(path), dtype
        self.shapes = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
        self._order = list(self.shapes)
        self._next = 0
        self._rows = 0  # rows of the current tensor written so far (row-block writes)
        self._file: BinaryIO | None = None
        self._atomic = None
        size = torch.empty((), dtype=dtype).element_size()
        header: dict = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for name, shape in self.shapes.items():
            nbytes = math.prod(shape) * size
            header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        self._header = raw + b" " * (-len(raw) % 8)  # data starts 8-byte aligned

    def __enter__(self) -> SafetensorsStreamWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = open(tmp, "wb")  # noqa: SIM115 (closed in __exit__)
        self._file.write(struct.pack("<Q", len(self._header)) + self._header)
        return self

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor (must be the next name in order, with its declared shape), or
        its next block of rows: consecutive writes of one name with shapes (k_i, *rest) whose
        k_i add up to the declared first dim (row-major bytes are contiguous per row block)."""
        if self._next >= len(self._order):
            raise StreamWriteError(f"{self.path}: unexpected extra tensor {name!r}")
        expected = self._order[self._next]
        if name != expected:
            raise StreamWriteError(f"{self.path}: got tensor {name!r}, expected {expected!r}")
        want, got = self.shapes[name], tuple(tensor.shape)
        rows = self._rows + (got[0] if got else 0)
        if got != want and (len(got) != len(want) or not got or got[1:] != want[1:]
                            or rows > want[0]):
            raise StreamWriteError(f"{self.path}: tensor {name!r} has shape {list(got)}, header "
                                   f"says {list(want)}"
                                   + (f" ({self._rows} rows written)" if self._rows else ""))
        t = tensor.detach().to(device="cpu", dtype=self.dtype).contiguous()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: write the raw 16-bit words
            t = t.view(torch.int16)
        self._file.write(memoryview(t.numpy()).cast("B"))  # no copy of the tensor's bytes
        self._rows = rows if got != want else 0
        if got == want or rows == want[0]:
            self._next, self._rows = self._next + 1, 0

    def __exit__(self, exc_type, exc, tb) -> None:
        ok = exc_type is None and self._next == len(self._order)
        self._file.close()
        if exc_type is None and not ok:
            missing = self._order[self._next]
            err = StreamWriteError(f"{self.path}: closed before tensor {missing!r} was written")
            self._atomic.__exit__(type(err), err, None)
            raise err
        self._atomic.__exit__(exc_type, exc, tb)


class SafetensorsReader:
    """Read single tensors of a safetensors file with plain reads (no memory map).

    ``safetensors.safe_open`` maps the file: every page it touches stays resident *and counted in
    the process's RSS* while the file is open, so reading a whole 3 GB file tensor by tensor would
    still show 3 GB of RSS. Reading into a fresh tensor keeps only that tensor.
    """

    _TORCH = {v: k for k, v in _DTYPES.items()}

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        self.header, self._start = header, 8 + size

    def keys(self) -> list[str]:
        return list(self.header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def get_tensor(self, name: str) -> torch.Tensor:
        info = self.header[name]
        dtype = self._TORCH[info["dtype"]]
        out = torch.empty(info["shape"], dtype=dtype)
        raw = out.view(torch.int16) if dtype == torch.bfloat16 else out
        begin, end = info["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self._start + begin)
            buf = memoryview(raw.numpy()).cast("B") if out.numel() else memoryview(b"")
            if f.readinto(buf) != end - begin:
                raise StreamWriteError(f"{self.path}: truncated data for tensor {name!r}")
        return out


def _groups(names: list[str]) -> list[list[str]]:
    """Consecutive names grouped by block (``blocks.{i}.``); any other name is its own group."""
    out: list[list[str]] = []
    last = None
    for n in names:
        m = re.match(r"blocks\.\d+\.", n)
        key = m.group(0) if m else n
        if out and key == last:
            out[-1].append(n)
        else:
            out.append([n])
        last = key
    return out


def stream_export_hf(spec: ModelSpec, weights: str | os.PathLike, out_dir: str | os.PathLike,
                     max_shard_bytes: int | float | None = None) -> Path:
    """Convert our weights (a ``model.safetensors`` file, or a directory holding it or shards
    with an index) into an HF directory, one block at a time, in the weights' dtype and sharded
    as ``save_pretrained`` shards (``model.safetensors.index.json``) above ``max_shard_bytes``.

    Same tensors as :func:`logah.nn.hf.export_hf` (which takes a state dict in memory).

    Raises:
        HFConversionError: non-standard dims (nothing is written).
    """
    from logah.nn.hf import HF_CONFIG_FILE, hf_config_dict, to_hf_state_dict
    from logah.nn.shards import DEFAULT_SHARD_BYTES, ShardedWriter, shard_files

    hf_config_dict(spec)  # raises for non-standard dims, before anything is read
    src = Path(weights)
    readers = [SafetensorsReader(f) for f in (shard_files(src) if src.is_dir() else [src])]
    reader_of = {n: r for r in readers for n in r.keys()}
    dtype = SafetensorsReader._TORCH[next(iter(readers[0].header.values()))["dtype"]]
    meta = {n: torch.empty(r.shape(n), device="meta") for n, r in reader_of.items()}
    order = [n for n in _param_order(spec) if n in meta]
    hf_shapes = {k: tuple(v.shape) for k, v in to_hf_state_dict(spec, meta).items()}
    plan = []
    for group in _groups(order):
        # HF tensors built from this group: convert with the group real-but-empty, the rest on
        # meta; an entry whose inputs all lie in the group comes out as a real tensor.
        probe = dict(meta)
        probe.update({n: torch.zeros(1).expand(meta[n].shape) for n in group})
        plan.append((group, [k for k, v in to_hf_state_dict(spec, probe).items() if not v.is_meta]))
    out = Path(out_dir)
    with atomic_path(out, is_dir=True) as tmp:
        config = hf_config_dict(spec, dtype)
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        order_hf = [k for _, produced in plan for k in produced]
        with ShardedWriter(tmp, {k: hf_shapes[k] for k in order_hf}, dtype,
                           max_shard_bytes or DEFAULT_SHARD_BYTES, {"format": "pt"}) as w:
            for group, produced in plan:
                state = dict(meta)
                state.update({n: reader_of[n].get_tensor(n) for n in group})
                converted = to_hf_state_dict(spec, state)
                for k in produced:
                    w.write(k, converted[k])
    return out


def _param_order(spec: ModelSpec) -> list[str]:
    from logah.nn.build import param_shapes

    return list(param_shapes(spec))
