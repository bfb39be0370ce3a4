"""Imports point one way (cli -> lit -> data -> ghn -> graph -> nn -> config -> utils; grow -> nn;
cli -> report -> nn -> config)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "logah"
# Each package may import only the packages listed for it (plus itself and third-party code).
ALLOWED = {
    "utils": set(),
    "config": {"utils"},
    "nn": {"config", "utils"},
    "graph": {"nn", "config", "utils"},
    "ghn": {"graph", "nn", "config", "utils"},
    "grow": {"nn", "config", "utils"},
    "data": {"ghn", "graph", "nn", "config", "utils"},
    "report": {"nn", "config", "utils"},
    "lit": {"data", "ghn", "graph", "grow", "nn", "config", "utils"},
    "cli": {"lit", "report", "data", "ghn", "graph", "grow", "nn", "config", "utils"},
}
NO_LIGHTNING = {"utils", "config", "nn", "graph", "ghn", "grow", "report"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _files():
    for pkg in ALLOWED:
        for f in sorted((SRC / pkg).rglob("*.py")) if (SRC / pkg).is_dir() else []:
            yield pkg, f


@pytest.mark.parametrize("pkg,path", list(_files()), ids=lambda v: str(v).split("src/")[-1])
def test_imports_point_one_way(pkg: str, path: Path) -> None:
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] in ("lightning", "pytorch_lightning"):
            assert pkg not in NO_LIGHTNING, f"{path}: logah.{pkg} must not import {name}"
        if parts[0] == "logah" and len(parts) > 1 and parts[1] in ALLOWED:
            target = parts[1]
            assert target == pkg or target in ALLOWED[pkg], f"{path}: logah.{pkg} imports {name}"


def test_the_scan_sees_the_packages() -> None:
    """Guard against the scan silently passing on an empty tree."""
    assert {"config", "nn", "cli", "report"} <= {pkg for pkg, _ in _files()}
