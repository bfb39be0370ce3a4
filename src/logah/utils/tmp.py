"""A temporary folder short enough for Unix sockets, from whatever folder logah runs.

``multiprocessing`` (DataLoader workers handing tensors over, DDP) binds ``AF_UNIX`` sockets at
``<tempdir>/pymp-XXXXXXXX/listener-XXXXXXXX``. Linux limits a socket path to 107 bytes, so a
temporary folder longer than 75 bytes (e.g. ``TMPDIR`` inside a deep clone) makes the bind fail in
a worker's helper thread and the loader wait forever for a batch. :func:`ensure_socket_safe_tempdir`
moves the process (and its children, through ``TMPDIR``) to a short folder before that can happen.
"""

from __future__ import annotations

import os
import sys
import tempfile

SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) = 108 bytes, minus the terminating NUL
# What multiprocessing appends to the temporary folder for a listener socket.
SOCKET_SUFFIX = len("/pymp-XXXXXXXX/listener-XXXXXXXX")
TEMPDIR_MAX = SOCKET_PATH_MAX - SOCKET_SUFFIX  # 75 bytes
FALLBACKS = ("/tmp", "/var/tmp", "/dev/shm")

_noted = False


def fits_sockets(folder: str) -> bool:
    """True when sockets under ``folder`` (as multiprocessing names them) can be bound."""
    return len(os.fsencode(folder)) <= TEMPDIR_MAX


def ensure_socket_safe_tempdir() -> str | None:
    """Switch ``tempfile`` and ``TMPDIR`` to a short folder if the current one is too long.

    Returns:
        The one-line note printed to stderr (first switch in this process), or None when the
        current temporary folder already fits.
    """
    global _noted
    current = tempfile.gettempdir()
    if fits_sockets(current):
        return None
    short = next((d for d in FALLBACKS if fits_sockets(d) and os.path.isdir(d)
                  and os.access(d, os.W_OK | os.X_OK)), None)
    if short is None:
        note = (f"note: temporary folder {current} is {len(current)} characters, too long for the "
                f"Unix sockets of DataLoader workers (at most {TEMPDIR_MAX}), and none of "
                f"{', '.join(FALLBACKS)} is writable; set TMPDIR to a short folder")
    else:
        tempfile.tempdir = short
        os.environ["TMPDIR"] = short  # spawned workers and DDP ranks inherit it
        note = (f"note: temporary folder {current} is {len(current)} characters, too long for the "
                f"Unix sockets of DataLoader workers (at most {TEMPDIR_MAX}); using {short}")
    if not _noted:
        print(note, file=sys.stderr, flush=True)
        _noted = True
    return note
