"""The offline GPT-2 tokenizer: real GPT-2 ids, verified files, same ranks as tiktoken's loader."""

from __future__ import annotations

import hashlib

import pytest

from logah.data import tokenizer
from logah.data.errors import DataError
from logah.data.tokenizer import EOT_TOKEN, gpt2_encoding, gpt2_files


def test_known_gpt2_ids():
    enc = gpt2_encoding()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    # Leading space, digits, unicode and the special token exercise the byte map and the pattern.
    assert enc.encode_ordinary(" The quick brown fox") == [383, 2068, 7586, 21831]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [EOT_TOKEN]
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    text = "naïve café — 1234 tokens\n\n  end"
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_files_match_pinned_sha256():
    encoder, vocab = gpt2_files()
    assert hashlib.sha256(encoder.read_bytes()).hexdigest() == tokenizer.ENCODER_JSON_SHA256
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == tokenizer.VOCAB_BPE_SHA256


def test_ranks_equal_tiktoken_loader(monkeypatch):
    """Our encoder.json-derived ranks are exactly what tiktoken builds from both files."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # "" disables tiktoken's on-disk cache
    encoder, vocab = gpt2_files()
    expected = data_gym_to_mergeable_bpe_ranks(str(vocab), str(encoder))
    assert tokenizer.gpt2_mergeable_ranks() == expected


def test_tampered_file_is_rejected(tmp_path, monkeypatch):
    encoder, vocab = gpt2_files()
    bad = tmp_path / "encoder.json"
    bad.write_bytes(encoder.read_bytes().replace(b'"Hello"', b'"Hellp"'))
    monkeypatch.setattr(tokenizer, "gpt2_files", lambda: (bad, vocab))
    with pytest.raises(DataError, match=r"encoder\.json: sha256 .* does not match"):
        tokenizer.gpt2_mergeable_ranks()
