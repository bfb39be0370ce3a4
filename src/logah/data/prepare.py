"""Tokenise documents into nanoGPT-style ``train.bin`` / ``val.bin`` (flat uint16 GPT-2 token ids).

Every document is encoded with the GPT-2 BPE (:func:`~logah.data.tokenizer.gpt2_encoding`) and
followed by ``<|endoftext|>`` (50256). The split is by document, exact and seeded: with ``n``
documents, ``round(val_fraction * n)`` of them (at least one, at most ``n - 1``) go to ``val.bin``.
A single document is split by tokens instead (its last ``val_fraction`` goes to validation), and
sources given with ``val_sources`` (or a DatasetDict's validation split) replace the fraction.
Output files are streamed to temporaries and renamed when complete, so an interrupted run leaves
nothing half-written; ``meta.json`` is written last.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Optional

import numpy as np

from logah.data.errors import DataError
from logah.data.sources import DocStream, WorkItem, read_document, resolve_sources
from logah.data.tokenizer import EOT_TOKEN, VOCAB_SIZE, gpt2_encoding
from logah.utils.fs import atomic_path

TOKEN_DTYPE = np.uint16  # GPT-2 ids < 65536; the nanoGPT .bin format
META_FORMAT = "nanogpt-uint16"


def encode_item(item: WorkItem) -> np.ndarray:
    """Tokens of one document followed by EOT, as uint16 (``(n + 1,)``); empty for blank text."""
    text = read_document(*item)
    if not text.strip():
        return np.empty(0, dtype=TOKEN_DTYPE)
    ids = gpt2_encoding().encode_ordinary(text)
    ids.append(EOT_TOKEN)
    return np.asarray(ids, dtype=TOKEN_DTYPE)


def _warm_worker() -> None:
    gpt2_encoding()  # build the BPE once per worker process, not per document


def _val_mask(n_free: int, val_fraction: float, seed: int) -> np.ndarray:
    """Which of the ``n_free`` splittable documents go to validation (bool ``(n_free,)``)."""
    mask = np.zeros(n_free, dtype=bool)
    if n_free >= 2 and val_fraction > 0:
        n_val = min(max(1, round(val_fraction * n_free)), n_free - 1)
        mask[np.random.default_rng(seed).choice(n_free, size=n_val, replace=False)] = True
    return mask


def _encode_chunk(items: list[WorkItem]) -> list[np.ndarray]:
    return [encode_item(item) for item in items]


def _encoded(
    tagged: Iterator[tuple[Optional[str], WorkItem]], workers: int, chunksize: int
) -> Iterator[tuple[Optional[str], np.ndarray]]:
    """``(split, tokens)`` per document in input order, in-process or from a worker pool.

    With workers, chunks go out through ``apply_async`` with at most ``4 * workers`` in flight:
    ``Pool.imap`` would read the whole input ahead into memory (fatal for OpenWebText).
    """
    if workers <= 0:
        for split, item in tagged:
            yield split, encode_item(item)
        return
    ctx = multiprocessing.get_context("spawn")  # fork after tiktoken's threads is not safe
    with ctx.Pool(workers, initializer=_warm_worker) as pool:
        pending: deque = deque()
        while True:
            chunk = list(itertools.islice(tagged, chunksize))
            if chunk:
                job = pool.apply_async(_encode_chunk, ([item for _, item in chunk],))
                pending.append(([split for split, _ in chunk], job))
            if pending and (not chunk or len(pending) >= 4 * workers):
                splits, job = pending.popleft()
                yield from zip(splits, job.get())
            elif not chunk:
                return


class _SplitWriter:
    """Routes each document's tokens to the train or val file and counts them."""

    def __init__(self, train: BinaryIO, val: BinaryIO, streams: list[DocStream], frac: float,
                 seed: int) -> None:
        self.files = {"train": train, "val": val}
        self.tokens = {"train": 0, "val": 0}
        self.docs = {"train": 0, "val": 0}
        n_free = sum(s.count for s in streams if s.split is None)
        has_val = any(s.split == "val" for s in streams)
        self.frac = 0.0 if has_val else frac
        self.tail_split = n_free == 1 and self.frac > 0  # one document: split its tokens
        self.mask = _val_mask(n_free, self.frac, seed)
        self.free_index = 0

    def add(self, tokens: np.ndarray, split: Optional[str]) -> None:
        if split is None:
            if self.tail_split:
                cut = min(len(tokens) - 1, int(round(len(tokens) * (1 - self.frac))))
                self._write("train", tokens[:cut])
                self._write("val", tokens[cut:])
                return
            split = "val" if self.mask[self.free_index] else "train"
            self.free_index += 1
        self._write(split, tokens)

    def summary(self) -> dict[str, Any]:
        return {
            "train_tokens": self.tokens["train"], "val_tokens": self.tokens["val"],
            "train_docs": self.docs["train"], "val_docs": self.docs["val"],
            "val_fraction": self.frac,
        }

    def _write(self, split: str, tokens: np.ndarray) -> None:
        if len(tokens):
            self.files[split].write(tokens.tobytes())
            self.tokens[split] += len(tokens)
            self.docs[split] += 1


def _make_readable(path: Path) -> None:
    """Temporaries are created 0600; data files get the usual umask-based mode (e.g. 0644)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _tagged_items(streams: list[DocStream]) -> Iterator[tuple[Optional[str], WorkItem]]:
    for s in streams:
        for item in s.items():
            yield s.split, item


def _tokenize(streams: list[DocStream], writer: _SplitWriter, workers: int, desc: str,
              progress: bool) -> None:
    """Encode every document of ``streams`` (in ``workers`` processes, 0: here) into ``writer``,
    with a tqdm bar of documents and the running token count."""
    from tqdm import tqdm

    total = sum(s.count for s in streams)
    chunksize = max(1, min(256, total // (8 * max(workers, 1)) or 1))
    with tqdm(total=total, unit="doc", desc=desc, disable=not progress, mininterval=0.5) as bar:
        for i, (split, tokens) in enumerate(_encoded(_tagged_items(streams), workers, chunksize)):
            writer.add(tokens, split)
            bar.update(1)
            if i % 64 == 0:
                bar.set_postfix(tokens=f"{sum(writer.tokens.values()):,}", refresh=False)
        bar.set_postfix(tokens=f"{sum(writer.tokens.values()):,}")


def prepare_text(
    srcs: list[str], out: str | Path, *, val_srcs: tuple[str, ...] | list[str] = (),
    val_fraction: float = 0.05, workers: int = 0, fmt: str = "auto", glob: str = "*",
    text_field: str = "text", seed: int = 2357, progress: bool = True, rows: str = "document",
) -> dict[str, Any]:
    """Tokenise ``srcs`` into ``out/train.bin``, ``out/val.bin`` and ``out/meta.json``.

    Args:
        srcs: text files, folders, tar archives or Hugging Face ``save_to_disk`` folders.
        out: output folder (created; existing ``.bin``/``meta.json`` are replaced atomically).
        val_srcs: sources whose documents all go to ``val.bin`` (then ``val_fraction`` is unused).
        val_fraction: share of documents held out for validation.
        workers: tokeniser processes (0 = in this process).
        fmt: ``auto``, ``plain`` or ``brown`` (see :mod:`logah.data.sources`).
        glob: file-name pattern used inside folders and archives.
        text_field: text column of Hugging Face datasets.
        rows: how Hugging Face dataset rows become documents: ``document`` (each row),
            ``wikitext`` (one per article) or ``concat`` (all rows of a split).
        seed: seed of the document split.
        progress: show a tqdm bar (documents, with the token count) on stderr.

    Returns:
        The metadata written to ``meta.json``.

    Raises:
        DataError: a source is missing/unreadable, or a split would be empty.
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"--val-fraction: must be in [0, 1), got {val_fraction}")
    streams = resolve_sources(list(srcs), fmt=fmt, glob=glob, text_field=text_field, rows=rows)
    streams += resolve_sources(
        list(val_srcs), fmt=fmt, glob=glob, text_field=text_field, split="val", rows=rows
    )
    if not any(s.split == "val" for s in streams) and val_fraction == 0:
        raise DataError("--val-fraction: 0 leaves val.bin empty; give --val-from sources instead")
    out = Path(out)
    with atomic_path(out / "train.bin") as train_tmp, atomic_path(out / "val.bin") as val_tmp, \
            open(train_tmp, "wb") as ftrain, open(val_tmp, "wb") as fval:
        writer = _SplitWriter(ftrain, fval, streams, val_fraction, seed)
        _tokenize(streams, writer, workers, f"tokenizing -> {out}", progress)
        for split, tmp in (("train", train_tmp), ("val", val_tmp)):
            if writer.tokens[split] == 0:
                raise DataError(f"{out / (split + '.bin')}: would be empty; check the sources")
            _make_readable(tmp)
    meta = {
        "format": META_FORMAT, "dtype": "uint16", "tokenizer": "gpt2", "vocab_size": VOCAB_SIZE,
        "eot_token": EOT_TOKEN, **writer.summary(), "sources": [str(s) for s in srcs],
        "val_sources": [str(s) for s in val_srcs], "seed": seed, "rows": rows,
    }
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        _make_readable(tmp)
    return meta
