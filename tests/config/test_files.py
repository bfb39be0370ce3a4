"""Strict JSON and file kinds named from their bytes (the torch-free half of the safe readers)."""

from __future__ import annotations

import pytest

from logah.config.files import UnreadableFileError, describe, read_json


@pytest.mark.parametrize("text,msg", [
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('{"a": NaN}', "NaN is not valid JSON"),
    ("[1, 2]", "holds a list, expected a JSON object"),
    ('{"a": [1, 2', "truncated: line 1"),
])
def test_json_is_parsed_strictly(tmp_path, text, msg):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(UnreadableFileError) as e:
        read_json(tmp_path / "x.json")
    assert str(e.value).startswith(f"{tmp_path / 'x.json'}: cannot read JSON (") and msg in str(e.value)


def test_kinds_are_named_from_the_first_bytes():
    assert describe(b"", 0) == "an empty file"
    assert describe(b"\x89PNG\r\n\x1a\n", 100) == "a PNG image"
    assert describe(b"\x80\x02}q\x00", 100) == "a pickle"
    assert describe(b'{"spec": {}}', 12) == "JSON text"
    assert describe("caf\u00e9 au lait\n".encode()[:4], 100) == "a text file"  # cut mid-character
    assert describe(b"\x00\x01\x02\xff", 4) == "binary data of an unknown kind"
    assert describe(b"\x10\x00\x00\x00\x00\x00\x00\x00{", 100) == "a safetensors file"
