"""logah: predict (LoGAH / GHN-3 / GHN-2 hypernetworks) and grow transformer initialisations.

The one-line API (imported lazily, so ``import logah`` stays light)::

    ghn = logah.load_ghn("pretrained:logah-t-gpt-brown")   # or random:logah-t, a dir, a .ckpt
    model, report = logah.init_from_ghn(model, ghn)       # logah, Hugging Face or your own model
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["init_from_ghn", "load_ghn", "pretrained_ghns"]

_LAZY = {
    "init_from_ghn": "logah.ghn.apply",
    "load_ghn": "logah.ghn.io",
    "pretrained_ghns": "logah.ghn.pretrained",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'logah' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
