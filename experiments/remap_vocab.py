"""Restrict a token folder to its K most frequent training tokens (+ one UNK) and report the
unigram line of its validation split.

    python experiments/remap_vocab.py data/brown data/brown-v4k --vocab 4096

Why: with GPT-2's 50,257-way head a CPU-sized GPT on Brown spends most of its compute on the
output layer and, within a CPU budget, never gets past unigram statistics (the comparison then
measures who learns token frequencies fastest). Keeping the ``K - 1`` most frequent training
tokens (ids ``0..K-2``, most frequent first) and mapping every other token to ``UNK = K - 1``
keeps the same corpus and tokenizer with a 12x cheaper head, so the targets learn context.

Writes ``OUT/{train,val}.bin`` (uint16) and ``OUT/meta.json`` (``vocab_size`` K, the id map's
provenance, the share of tokens mapped to UNK, and ``unigram_val_nats``: the cross-entropy of the
validation split under the training split's add-one smoothed unigram distribution — the loss a
model that ignores context reaches). The same function gives the unigram line of any token folder
(:func:`unigram_nats`), which the experiment report prints beside the GPT tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from logah.utils.fs import atomic_write_text


def unigram_nats(train: np.ndarray, val: np.ndarray, vocab: int) -> float:
    """Mean ``-log p(t)`` over ``val`` with ``p`` the add-one smoothed unigram of ``train``."""
    counts = np.bincount(train, minlength=vocab).astype(np.float64)
    p = (counts + 1.0) / (counts.sum() + vocab)
    return float(-np.log(p[val]).mean())


def remap(train: np.ndarray, val: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(train', val', info)``: the ``vocab - 1`` most frequent training ids -> ``0..vocab-2``
    (ties by id), everything else -> ``vocab - 1``."""
    counts = np.bincount(train)
    order = np.lexsort((np.arange(len(counts)), -counts))  # by count desc, then id
    keep = order[: vocab - 1]
    table = np.full(max(len(counts), int(val.max()) + 1), vocab - 1, dtype=np.uint16)
    table[keep] = np.arange(vocab - 1, dtype=np.uint16)
    t, v = table[train], table[val]
    info = {"kept_ids": keep.tolist(), "unk_id": vocab - 1,
            "unk_share_train": float((t == vocab - 1).mean()),
            "unk_share_val": float((v == vocab - 1).mean())}
    return t, v, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="token folder (train.bin, val.bin, meta.json)")
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--vocab", type=int, default=4096, help="K: vocabulary incl. UNK (%(default)s)")
    args = ap.parse_args(argv)
    if not 2 <= args.vocab <= 65535:
        print(f"error: --vocab: must be in [2, 65535], got {args.vocab}", file=sys.stderr)
        return 2
    files = [args.src / f for f in ("train.bin", "val.bin")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"error: {', '.join(missing)}: no such file (run make data)", file=sys.stderr)
        return 2
    train, val = (np.fromfile(f, dtype=np.uint16) for f in files)
    t, v, info = remap(train, val, args.vocab)
    src_meta = json.loads((args.src / "meta.json").read_text()) if (
        args.src / "meta.json").is_file() else {}
    meta = {"format": "nanogpt-uint16", "dtype": "uint16", "vocab_size": args.vocab,
            "remapped_from": str(args.src), "source_vocab_size": src_meta.get("vocab_size"),
            "tokenizer": f"{src_meta.get('tokenizer', '?')} top-{args.vocab - 1} + UNK",
            "train_tokens": int(len(t)), "val_tokens": int(len(v)),
            "unigram_val_nats": unigram_nats(t, v, args.vocab), **info}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, arr in (("train.bin", t), ("val.bin", v)):
        tmp = args.out / f".{name}.tmp"
        arr.tofile(tmp)
        tmp.replace(args.out / name)
    atomic_write_text(args.out / "meta.json", json.dumps(meta, indent=1) + "\n")
    print(f"{args.out}: vocab {args.vocab} (UNK share: train {info['unk_share_train']:.1%}, "
          f"val {info['unk_share_val']:.1%}); unigram line of val: "
          f"{meta['unigram_val_nats']:.3f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
