"""Entry point of ``logah``: discovers ``cmd_*`` modules, parses, runs, turns user errors into one line.

A subcommand module defines ``register(subparsers) -> argparse.ArgumentParser`` and a
``run(args) -> int`` function set as the parser's default ``func``. Modules are imported lazily by
name so ``logah models`` does not pay for Lightning or PyG imports.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import logah
from logah.config.errors import LogahError
from logah.utils.tmp import ensure_socket_safe_tempdir


def _command_modules() -> list[str]:
    import logah.cli as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logah",
        description="Predict (graph hypernetworks) and grow transformer initialisations.",
    )
    parser.add_argument("--version", action="version", version=f"logah {logah.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _command_modules():
        importlib.import_module(f"logah.cli.{name}").register(sub)
    return parser


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The convention every config-driven command shares: ``--config FILE`` plus ``key=value``."""
    p.add_argument("--config", metavar="FILE", help="YAML config (see conf/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def main(argv: list[str] | None = None) -> int:
    ensure_socket_safe_tempdir()  # before any worker or DDP rank starts (see logah.utils.tmp)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LogahError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `logah models | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
