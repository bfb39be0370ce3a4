"""Loading never runs code and never prints a traceback: every reader of weights and checkpoints,
fed a bad file, exits with code 2 and one ``error:`` line naming the file."""

from __future__ import annotations

import pytest
from bad_files import KINDS, PICKLE_READERS, READERS, bad_bytes, build_assets, evil_bytes, run_case


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_assets(tmp_path_factory.mktemp("assets"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", READERS, ids=lambda r: f"{r.name}:{r.target}")
def test_a_bad_file_is_one_error_line_naming_it(reader, kind, assets, tmp_path, capsys):
    good = (assets / reader.folder / reader.target).read_bytes()
    wrong = (assets / reader.wrong).read_bytes()
    code, err, target = run_case(reader, bad_bytes(kind, good, wrong), assets, tmp_path,
                                 capsys.readouterr)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    # The line names the bad file (a model that does not fit may be named by its folder).
    named = lines[0].startswith((f"error: {target}:", f"error: --from {target}:"))
    if kind == "wrong family":
        named = named or str(target.parent) in lines[0]
    assert named, lines[0]
    if kind in ("zero bytes", "PNG image", "text file"):
        assert {"zero bytes": "an empty file", "PNG image": "a PNG image",
                "text file": "a text file"}[kind] in lines[0]
    if kind == "truncated":
        assert "truncated" in lines[0]
    if reader.name == "finetune (resume)" and kind != "wrong family":
        assert lines[0].endswith("delete it (or pass another name=...) to start the run over")


@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("reader", PICKLE_READERS, ids=lambda r: f"{r.name}:{r.target}")
def test_a_checkpoint_that_runs_code_is_refused_without_running_it(reader, fmt, assets, tmp_path,
                                                                    capsys):
    marker = tmp_path / "pwned"
    code, err, target = run_case(reader, evil_bytes(fmt, marker, tmp_path), assets, tmp_path,
                                 capsys.readouterr)
    assert not marker.exists(), "unpickling ran code from the checkpoint"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {target}: refused to load: unpickling it would call exec")


def test_the_evil_checkpoint_really_runs_code_when_unpickled_unsafely(tmp_path):
    """Guard against the refusal test passing on a harmless file."""
    import torch

    marker = tmp_path / "pwned"
    (tmp_path / "e.ckpt").write_bytes(evil_bytes("zip", marker, tmp_path))
    torch.load(tmp_path / "e.ckpt", weights_only=False)
    assert marker.read_text() == "ran"
