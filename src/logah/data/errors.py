"""Data errors: one line naming the file or folder at fault (the CLI prints it, exit code 2)."""

from __future__ import annotations

from logah.config.errors import LogahError


class DataError(LogahError):
    """A dataset file or folder is missing, empty or malformed. The message names the path."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data folder or file does not exist (the message says how to make it)."""


class DataFormatError(DataError, ValueError):
    """A data file exists but its contents are not what the reader expects."""
