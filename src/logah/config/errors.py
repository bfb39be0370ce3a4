"""The one error type users see: a bad config key, file or tensor, reported in one line."""


class LogahError(Exception):
    """Base class for user-facing errors; the CLI prints ``error: <message>`` and exits with 2."""


class ConfigError(LogahError, ValueError):
    """A config key, value or file is invalid. The message names the key (e.g. ``trainer.max_steps``)."""
