"""``logah graph ARCH --out FILE``: a summary line and a PNG picture."""

from __future__ import annotations

import struct

import pytest

from logah.cli.main import main


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_graph_gpt2_small_writes_a_png(tmp_path, capsys):
    out = tmp_path / "g.png"
    assert main(["graph", "gpt2-small", "--out", str(out)]) == 0
    width, height = _png_size(out)
    # 12 blocks of 14 layers, ~0.32 in each at 100 dpi: a tall, readable column
    assert 600 <= width <= 3000 and 4000 <= height <= 20000
    assert out.stat().st_size > 50_000
    text = capsys.readouterr().out
    assert "gpt2-small: 174 nodes, 199 edges" in text and f"wrote {out}" in text
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temporary left behind


def test_graph_overrides_cutoff_and_node_list(capsys):
    assert main(["graph", "vit-tiny", "model.n_layer=3", "--cutoff", "2", "--nodes"]) == 0
    text = capsys.readouterr().out
    assert "vit-tiny: 53 nodes, 60 edges" in text and "(cutoff 2)" in text
    assert "cls_token" in text and "blocks.2.mlp.fc.weight" in text


@pytest.mark.parametrize("args,culprit", [
    (["graph", "gpt9"], "gpt9"),
    (["graph", "gpt2-tiny", "model.d_modl=3"], "d_modl"),
    (["graph", "gpt2-tiny", "--cutoff", "0"], "--cutoff"),
    (["graph", "gpt2-tiny", "--out", "x.jpgx"], "--out"),
])
def test_bad_input_is_one_error_line(args, culprit, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--out" not in args:
        args = [*args, "--out", "x.png"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and culprit in err and "\n" not in err
    assert not list(tmp_path.iterdir())
