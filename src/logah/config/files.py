"""Files read safely without torch: what a file is (from its first bytes) and strict JSON.

The torch-free half of logah's safe readers (:mod:`logah.nn.readers` adds checkpoints and
safetensors on top). JSON (``logah.json``, ``ghn.json``, Hugging Face ``config.json``, a sharded
index, a model card) is parsed strictly: one object, no duplicate keys, no ``NaN``/``Infinity``.
A problem is one :class:`UnreadableFileError` ``"<file>: <what is wrong>"``, and what is wrong
is found from the bytes, so an empty, truncated or foreign file (a PNG, a text file) is named
as such rather than as a parser's complaint.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
from pathlib import Path
from typing import Any

from logah.config.errors import LogahError

ZIP_HEAD = b"PK\x03\x04"
EMPTY = "an empty file"
_MAGIC = (  # leading bytes -> what the file is (for "a PNG image, not a checkpoint")
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (ZIP_HEAD, "a zip archive"),
    (b"\x7fELF", "an executable"),
)


class UnreadableFileError(LogahError):
    """A file is missing, empty, truncated, corrupt or of another kind; the message starts with
    the file."""


def head_of(path: Path, n: int = 64) -> tuple[bytes, int]:
    """The first ``n`` bytes and the size; a missing or unreadable file is one error."""
    try:
        with open(path, "rb") as f:
            return f.read(n), os.fstat(f.fileno()).st_size
    except OSError as e:
        raise UnreadableFileError(f"{path}: cannot open ({e.strerror or e})") from None


def describe(head: bytes, size: int) -> str:
    """What a file looks like from its first bytes (e.g. ``a PNG image``, ``a text file``)."""
    if size == 0:
        return EMPTY
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < size:
        return "a safetensors file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickle"
    try:  # a multi-byte character cut at the end of `head` is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "binary data of an unknown kind"
    if not all(c.isprintable() or c in "\t\r\n" for c in text):
        return "binary data of an unknown kind"
    return "JSON text" if text.lstrip()[:1] in ("{", "[") else "a text file"


def not_a(kind: str, expected: str) -> str:
    """``a PNG image, not JSON text`` (an empty file is just that)."""
    return kind if kind == EMPTY else f"{kind}, not {expected}"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def strict_json(raw: bytes) -> dict[str, Any]:
    doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                     parse_constant=_no_constant)
    if not isinstance(doc, dict):
        raise ValueError(f"holds a {type(doc).__name__}, expected a JSON object")
    return doc


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object, parsed strictly (see the module doc); one error naming the file."""
    p = Path(path)
    head, size = head_of(p)
    kind = describe(head, size)
    if kind not in ("JSON text", "a text file"):
        raise UnreadableFileError(f"{p}: cannot read JSON ({not_a(kind, 'JSON text')})")
    raw = p.read_bytes()
    try:
        return strict_json(raw)
    except UnicodeDecodeError as e:
        raise UnreadableFileError(f"{p}: cannot read JSON (not UTF-8 text at byte {e.start})") from None
    except json.JSONDecodeError as e:
        what = ("a text file, not JSON text: " if kind == "a text file" else
                "truncated: " if raw.rstrip()[-1:] not in (b"}", b"]") else "")
        raise UnreadableFileError(f"{p}: cannot read JSON ({what}line {e.lineno} column {e.colno}: "
                           f"{e.msg})") from None
    except ValueError as e:
        raise UnreadableFileError(f"{p}: cannot read JSON ({e})") from None
