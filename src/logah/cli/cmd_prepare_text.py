"""``logah prepare-text SRC... --out DIR``: tokenise text into nanoGPT-style train.bin/val.bin."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare-text",
        help="tokenise text files/folders/archives or a HF dataset into train.bin/val.bin",
        description=(
            "Each file (or archive member, or dataset row) is one document, followed by "
            "<|endoftext|>. Writes DIR/train.bin, DIR/val.bin (uint16 GPT-2 token ids) and "
            "DIR/meta.json atomically."
        ),
    )
    p.add_argument("srcs", nargs="+", metavar="SRC",
                   help="text file, folder (recursive), .tar/.tgz archive, or a Hugging Face "
                        "dataset folder written by save_to_disk")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="share of documents held out for val.bin (default 0.05)")
    p.add_argument("--val-from", nargs="+", default=[], metavar="SRC",
                   help="sources that make up val.bin instead of --val-fraction")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="tokeniser processes (default 0: in this process)")
    p.add_argument("--format", dest="fmt", default="auto", choices=("auto", "plain", "brown"),
                   help="brown: part-of-speech-tagged Brown corpus files (tags are stripped); "
                        "auto detects it")
    p.add_argument("--glob", default="*", help="file-name pattern inside folders/archives")
    p.add_argument("--text-field", default="text", help="text column of a HF dataset")
    p.add_argument("--rows", default="document", choices=("document", "wikitext", "concat"),
                   help="HF dataset rows -> documents: each row (default); wikitext: one per "
                        "article (rows between ' = Title = ' headings); concat: all rows of a split")
    p.add_argument("--seed", type=int, default=2357, help="seed of the document split")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from logah.data.prepare import prepare_text

    if args.workers < 0:
        from logah.data.errors import DataError

        raise DataError(f"--workers: must be >= 0, got {args.workers}")
    start = time.perf_counter()
    meta = prepare_text(
        args.srcs, args.out, val_srcs=args.val_from, val_fraction=args.val_fraction,
        workers=args.workers, fmt=args.fmt, glob=args.glob, text_field=args.text_field,
        seed=args.seed, progress=not args.no_progress, rows=args.rows,
    )
    print(
        f"{args.out}: train {meta['train_tokens']:,} tokens ({meta['train_docs']} docs), "
        f"val {meta['val_tokens']:,} tokens ({meta['val_docs']} docs) "
        f"in {time.perf_counter() - start:.1f}s"
    )
    return 0
