"""The one way configs are checked: every config dataclass checks itself when it is built.

A config dataclass derives from :class:`Checked`. Its ``__post_init__`` checks each field declared
with a closed set of values (``field(metadata=choices(...))``; ``metadata["accepts"]``, a
predicate, admits further values, described by ``metadata["also"]``) and then the class's own rules
(:meth:`Checked.check`), raising one :class:`ConfigError` line that names the dotted key
(``KEY.field``). ``OmegaConf.to_object`` builds the dataclasses of a loaded config bottom-up, so a
config from :func:`logah.config.load_config`, one built in code and one read back from a file
(:meth:`Checked.from_dict`) are all checked the same way, once, before anything uses them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from logah.config.errors import ConfigError

C = TypeVar("C")


def choices(*values: Any) -> dict:
    """Field metadata declaring a closed set of valid values (``{"choices": f}`` with a callable
    ``f`` computes them when checked)."""
    return {"choices": values}


def check_keys(cls: type, d: dict[str, Any], what: str) -> None:
    """``d`` holds only field names of the dataclass ``cls``, else one line naming the others."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown} (valid: {sorted(names)})")


class Checked:
    """Base of the config dataclasses: checked when built (see the module docstring).

    Subclasses set ``KEY`` (their dotted config key, e.g. ``"trainer"``; ``""`` for a root) and
    override :meth:`check` for rules beyond ``choices``.
    """

    KEY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            valid = f.metadata.get("choices")
            value = getattr(self, f.name)
            if valid is None or value is None:
                continue
            valid = tuple(valid() if callable(valid) else valid)
            if value not in valid and not f.metadata.get("accepts", lambda _: False)(value):
                shown = ", ".join(map(str, valid))
                also = f" ({f.metadata['also']})" if "also" in f.metadata else ""
                raise ConfigError(
                    f"{self.config_key(f.name)}: {value!r} is not one of: {shown}{also}")
        self.check()

    def check(self) -> None:
        """The class's own rules; raise :class:`ConfigError` naming ``self.config_key(field)``."""

    @classmethod
    def config_key(cls, name: str) -> str:
        """The dotted config key of field ``name``."""
        return f"{cls.KEY}.{name}" if cls.KEY else name

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any], what: str | None = None) -> C:
        """Build (and so check) from a plain dict, e.g. one read from a file; unknown keys are a
        :class:`ConfigError` naming them (``what``: how the message names the dict)."""
        check_keys(cls, d, what or f"{cls.KEY or cls.__name__} config")
        return cls(**d)
