"""Sharded safetensors, as Hugging Face lays them out: ``model-00001-of-00004.safetensors`` ... plus
``model.safetensors.index.json`` (``{"metadata": {"total_size": bytes}, "weight_map": {name:
file}}``). A model whose bytes fit in one shard is written as a plain ``model.safetensors``.

:class:`ShardedWriter` streams tensors (or row blocks of them) in a fixed order, one shard file open
at a time, so writing a model larger than memory holds one block. :func:`shard_files` lists what a
weights directory holds in either layout (used by :func:`logah.nn.io.load_state` and the streaming
HF export).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from logah.nn.readers import read_index
from logah.nn.stream import SafetensorsStreamWriter, StreamWriteError
from logah.utils.fs import atomic_write_text

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 10**9  # what save_pretrained uses ("5GB")


def shard_name(i: int, n: int) -> str:
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def plan_shards(shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype,
                max_bytes: int) -> list[dict[str, tuple[int, ...]]]:
    """Consecutive tensors grouped greedily into shards of at most ``max_bytes`` (a tensor larger
    than that gets a shard of its own)."""
    size = torch.empty((), dtype=dtype).element_size()
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    used = 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * size
        if shards[-1] and used + nbytes > max_bytes:
            shards.append({})
            used = 0
        shards[-1][name] = tuple(shape)
        used += nbytes
    return shards


def shard_files(directory: str | os.PathLike) -> list[Path]:
    """The safetensors files of a weights directory: ``model.safetensors`` or the shards its
    index names (empty when there is neither)."""
    d = Path(directory)
    if (d / SINGLE_FILE).is_file():
        return [d / SINGLE_FILE]
    if (d / INDEX_FILE).is_file():
        return [d / f for f in read_index(d / INDEX_FILE)]
    return []


class ShardedWriter:
    """Write ``shapes`` (in order) into ``out_dir`` as one file or as shards plus an index.

    Usage::

        with ShardedWriter(out_dir, shapes, torch.bfloat16, max_shard_bytes=5e9) as w:
            for name, rows in blocks:
                w.write(name, rows)

    Each shard appears atomically when complete and the index last, so an interrupted write
    leaves no index (a reader then finds no model). On success, files of the other layout left
    by an earlier write into ``out_dir`` are removed, so a directory never mixes two models.
    """

    def __init__(self, out_dir: str | os.PathLike, shapes: Mapping[str, Iterable[int]],
                 dtype: torch.dtype = torch.float32,
                 max_shard_bytes: int | float = DEFAULT_SHARD_BYTES,
                 metadata: dict[str, str] | None = None) -> None:
        self.out, self.dtype, self.metadata = Path(out_dir), dtype, metadata
        shapes = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
        self.plan = plan_shards(shapes, dtype, int(max_shard_bytes))
        n = len(self.plan)
        self.files = [SINGLE_FILE] if n == 1 else [shard_name(i, n) for i in range(n)]
        self.shard_of = {name: i for i, shard in enumerate(self.plan) for name in shard}
        self.bytes = sum(math.prod(s) for s in shapes.values()) * torch.empty(
            (), dtype=dtype).element_size()
        self._current: SafetensorsStreamWriter | None = None
        self._index = -1

    def __enter__(self) -> ShardedWriter:
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def _open(self, i: int) -> None:
        self._close(None)
        self._index = i
        self._current = SafetensorsStreamWriter(self.out / self.files[i], self.plan[i],
                                                self.dtype, self.metadata).__enter__()

    def _close(self, exc: BaseException | None) -> None:
        if self._current is not None:
            cur, self._current = self._current, None
            cur.__exit__(type(exc) if exc else None, exc, None)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """The next tensor, or the next row block of it (see ``SafetensorsStreamWriter.write``)."""
        i = self.shard_of.get(name)
        if i is None:
            raise StreamWriteError(f"{self.out}: unexpected tensor {name!r}")
        if i != self._index:
            if i != self._index + 1:
                raise StreamWriteError(f"{self.out}: tensor {name!r} is out of order")
            self._open(i)
        self._current.write(name, tensor)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._index != len(self.plan) - 1:
            exc = StreamWriteError(f"{self.out}: closed before every shard was written")
            self._close(exc)
            raise exc
        self._close(exc)
        if exc_type is not None:
            return
        if len(self.plan) > 1:
            weight_map = {n: self.files[i] for n, i in self.shard_of.items()}
            index = {"metadata": {"total_size": self.bytes}, "weight_map": weight_map}
            atomic_write_text(self.out / INDEX_FILE, json.dumps(index, indent=2) + "\n")
        keep = set(self.files) | ({INDEX_FILE} if len(self.plan) > 1 else set())
        stale = [self.out / SINGLE_FILE, self.out / INDEX_FILE,
                 *self.out.glob("model-*-of-*.safetensors")]
        for p in stale:
            if p.name not in keep and p.is_file():
                p.unlink()
