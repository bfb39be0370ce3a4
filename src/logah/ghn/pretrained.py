"""Pretrained GHNs shipped inside the package: ``pretrained:NAME`` (see docs/ghn.md).

Each entry is a directory ``logah/ghn/pretrained/NAME/`` holding a :func:`logah.ghn.io.save_ghn`
pair (``ghn.safetensors`` + ``ghn.json``) and a model card: ``card.json`` (the facts, read by code
and tests) and ``README.md`` (the same facts for people). Only safetensors and JSON are read, so
loading an entry never runs code from it. ``logah export-ghn RUN_DIR --name NAME`` writes one
from a ``logah train-ghn`` run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from logah.ghn.ghn import GHN
from logah.ghn.io import PRETRAINED_PREFIX as PREFIX
from logah.config.files import read_json
from logah.ghn.io import GHNLoadError, load_ghn

CARD_JSON = "card.json"
CARD_MD = "README.md"
CARD_FORMAT = "logah-ghn-card"
# Where entries are looked up, in order (tests add a temporary directory).
ROOTS: list[Path] = [Path(__file__).with_name("pretrained")]
CARD_FIELDS = ("name", "family", "data", "ghn", "architecture_space", "training", "heldout",
               "command")


def _entries() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in ROOTS:
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / CARD_JSON).is_file() and d.name not in found:
                    found[d.name] = d
    return found


def pretrained_ghns() -> dict[str, dict[str, Any]]:
    """Name -> model card (``card.json`` as a dict) of every shipped pretrained GHN."""
    return {name: read_card(d) for name, d in _entries().items()}


def pretrained_dir(name: str) -> Path:
    """The directory of ``pretrained:NAME``.

    Raises:
        GHNLoadError: unknown name (listing the valid ones).
    """
    entries = _entries()
    if name not in entries:
        valid = ", ".join(entries) or "none shipped"
        raise GHNLoadError(f"--ghn {PREFIX}{name}: unknown pretrained GHN {name!r} "
                           f"(valid: {valid})")
    return entries[name]


def read_card(d: str | os.PathLike) -> dict[str, Any]:
    """``d/card.json``, checked for the card fields.

    Raises:
        GHNLoadError: missing / unreadable card or a missing field (naming it).
    """
    f = Path(d) / CARD_JSON
    card = read_json(f)
    missing = [k for k in CARD_FIELDS if not isinstance(card, dict) or k not in card]
    if missing:
        raise GHNLoadError(f"{f}: model card lacks {', '.join(missing)}")
    return card


def load_pretrained(name: str, map_location: Any = "cpu") -> GHN:
    """The GHN of ``pretrained:NAME``; its size must match its card's ``ghn.num_params``.

    Raises:
        GHNLoadError: unknown name, bad files, or a card that does not describe the weights.
    """
    d = pretrained_dir(name)
    card = read_card(d)
    ghn = load_ghn(d, map_location=map_location)
    if ghn.num_params() != card["ghn"].get("num_params"):
        raise GHNLoadError(f"{d}: card says {card['ghn'].get('num_params')} parameters, the "
                           f"weights have {ghn.num_params()}")
    return ghn


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable model card (``README.md``) for a ``card.json`` dict."""
    h, t, g = card["heldout"], card["training"], card["ghn"]
    acc = (f"; top-1 {h['zero_shot_acc1']:.3f} vs {h['random_init_acc1']:.3f}"
           if "zero_shot_acc1" in h else "")
    space = yaml.safe_dump(card["architecture_space"], default_flow_style=None, sort_keys=False)
    archs = h.get("architectures", [])
    patch = bool(archs) and "patch_size" in archs[0]
    rows = "\n".join(
        f"| {r['kind']} | {r['n_layer']} | {r['d_model']} | {r['n_heads']} | "
        + (f"{r['patch_size']} | " if patch else "")
        + f"{r['num_params']:,} | {r['zero_shot_loss']:.4f} | {r['random_init_loss']:.4f} |"
        for r in archs)
    head = "| kind | L | d | H | " + ("patch | " if patch else "") + "params | zero-shot | random init |"
    rule = "| --- | ---: | ---: | ---: | " + ("---: | " if patch else "") + "---: | ---: | ---: |"
    return f"""# {card['name']}

`logah.load_ghn("{PREFIX}{card['name']}")` or `logah predict --ghn {PREFIX}{card['name']} ...`

| | |
| --- | --- |
| family | {card['family']} |
| hypernetwork | {g['preset']} ({g['num_params']:,} parameters) |
| data | {card['data']} |
| training | {t['steps']} steps, {t['minutes']:.1f} min, {t.get('hardware', '?')} |
| held-out zero-shot loss | **{h['zero_shot_loss']:.4f}** (random init {h['random_init_loss']:.4f}){acc}, mean of {len(h.get('architectures', []))} architectures |

Reproduce: `{card['command']}`

Architecture space (`archs.*`, template `model.*`):
```yaml
{space}```

Held-out architectures (validation loss of the predicted parameters vs random init):

{head}
{rule}
{rows}

{card.get('notes', '')}
"""
