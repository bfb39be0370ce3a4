"""The one error the graph builder raises for a model it cannot turn into a graph."""

from __future__ import annotations

from logah.config.errors import LogahError


class UnsupportedModuleError(LogahError, TypeError):
    """A module (or a parameter / traced op inside it) that the graph builder does not support.

    The message always names the module's path in the model (``'<root>'`` for the model itself) and
    its type, e.g. ``module 'encoder.rnn' (torch.nn.modules.rnn.LSTM) is not supported ...``.
    """


def describe(path: str, module: object) -> str:
    """``module 'path' (package.Type)`` as used in every message."""
    cls = type(module)
    return f"module '{path or '<root>'}' ({cls.__module__}.{cls.__qualname__})"
