"""Data errors: one line naming the file or folder at fault (the CLI prints it, exit code 2)."""

from __future__ import annotations

from logah.config.errors import LogahError


class DataError(LogahError):
    """A dataset file or folder is missing, empty or malformed. The message names the path."""

    def __init__(self, *args: object) -> None:
        # A DataLoader worker re-raises as ``type(msg)`` with msg = "Caught X in DataLoader worker
        # ...\nOriginal Traceback ...\n<module>.X: <message>": keep only the original one line.
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught "):
            last = args[0].rstrip().rsplit("\n", 1)[-1]
            if "Traceback" in args[0] and ": " in last:
                args = (last.split(": ", 1)[1],)
        super().__init__(*args)


class DataNotFoundError(DataError, FileNotFoundError):
    """A data folder or file does not exist (the message says how to make it)."""


class DataFormatError(DataError, ValueError):
    """A data file exists but its contents are not what the reader expects."""
