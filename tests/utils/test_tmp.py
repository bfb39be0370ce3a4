"""The temporary folder is switched to a short one when Unix sockets could not be bound under it."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from logah.utils import tmp as tmpmod


@pytest.fixture
def restore_tempdir(monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)
    monkeypatch.setenv("TMPDIR", os.environ.get("TMPDIR", "/tmp"))
    monkeypatch.setattr(tmpmod, "_noted", False)


def test_the_limit_is_where_binding_starts_to_fail(tmp_path):
    """A folder of exactly TEMPDIR_MAX bytes still takes a multiprocessing-style socket; one more
    byte does not (the kernel's limit, not a guess)."""
    base = str(tmp_path)
    for length, ok in ((tmpmod.TEMPDIR_MAX, True), (tmpmod.TEMPDIR_MAX + 1, False)):
        folder = base + "/" + "d" * (length - len(base) - 1)
        os.makedirs(folder + "/pymp-abcdefgh", exist_ok=True)
        path = folder + "/pymp-abcdefgh/listener-abcdefgh"
        assert tmpmod.fits_sockets(folder) is ok
        with socket.socket(socket.AF_UNIX) as s:
            if ok:
                s.bind(path)
            else:
                with pytest.raises(OSError, match="too long"):
                    s.bind(path)


def test_a_deep_tempdir_moves_to_a_short_one(tmp_path, restore_tempdir, capsys):
    deep = tmp_path / ("x" * 90)
    deep.mkdir()
    tempfile.tempdir = str(deep)
    note = tmpmod.ensure_socket_safe_tempdir()
    assert tempfile.gettempdir() == "/tmp" and os.environ["TMPDIR"] == "/tmp"
    assert note == (f"note: temporary folder {deep} is {len(str(deep))} characters, too long for "
                    "the Unix sockets of DataLoader workers (at most 75); using /tmp")
    assert capsys.readouterr().err == note + "\n"
    assert tmpmod.ensure_socket_safe_tempdir() is None  # now fits: nothing more to say


def test_a_short_tempdir_is_left_alone(tmp_path, restore_tempdir, capsys):
    tempfile.tempdir = "/tmp"
    assert tmpmod.ensure_socket_safe_tempdir() is None
    assert tempfile.gettempdir() == "/tmp" and capsys.readouterr().err == ""
