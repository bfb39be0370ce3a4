"""``logah train-ghn [--config FILE] [task=gpt|vit|llama] [key=value ...]``: train a GHN.

A thin parser: the run itself (folder, resume, held-out report) is :func:`logah.lit.train_ghn.
train_ghn`.

``task=vit`` (without ``--config``) is a shortcut for ``--config conf/train_ghn/vit.yaml``
(``task=gpt``: ``conf/train_ghn/gpt.yaml``, ``task=llama``: ``conf/train_ghn/llama.yaml``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from logah.cli.main import add_config_args
from logah.config.errors import ConfigError

TASKS = ("gpt", "vit", "llama")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-ghn",
        help="train a graph hypernetwork (LoGAH / GHN-3 / GHN-2) on sampled architectures",
        description="Train a GHN on architectures drawn from a ViTs-1K / GPTs-1K-style space, "
        "validating zero-shot on held-out architectures against random init. The run folder is "
        "{out_dir}/train-ghn/{name}/; re-running resumes from checkpoints/last.ckpt. "
        "task=gpt|vit|llama picks conf/train_ghn/<task>.yaml.",
    )
    add_config_args(p)
    p.set_defaults(func=run)


def conf_dir() -> Path:
    """``conf/`` of the working directory, else of the source checkout."""
    here = Path("conf")
    return here if here.is_dir() else Path(__file__).resolve().parents[3] / "conf"


def split_task(config_file: Optional[str], overrides: list[str]) -> tuple[Optional[str], list[str]]:
    """Turn a ``task=NAME`` override into its config file; returns (config file, other overrides).

    Raises:
        ConfigError: unknown task, task given twice or together with ``--config``, missing file.
    """
    tasks = [o.split("=", 1)[1].strip() for o in overrides if o.split("=", 1)[0].strip() == "task"]
    rest = [o for o in overrides if o.split("=", 1)[0].strip() != "task"]
    if not tasks:
        return config_file, rest
    if len(tasks) > 1 or config_file is not None:
        raise ConfigError("task: give task=NAME once, and not together with --config")
    if tasks[0] not in TASKS:
        raise ConfigError(f"task: {tasks[0]!r} is not one of: {', '.join(TASKS)}")
    path = conf_dir() / "train_ghn" / f"{tasks[0]}.yaml"
    if not path.is_file():
        raise ConfigError(f"task: {path} not found; pass --config FILE instead")
    return str(path), rest


def run(args: argparse.Namespace) -> int:
    from logah.config import load_config
    from logah.config.runs import TrainGHNConfig

    config_file, overrides = split_task(args.config, list(args.overrides))
    cfg = load_config(TrainGHNConfig, config_file, overrides)
    from logah.lit.ghn_module import summarize_heldout
    from logah.lit.rundir import is_rank_zero
    from logah.lit.train_ghn import train_ghn  # Lightning import only once the config is valid

    result = train_ghn(cfg)
    if is_rank_zero():
        print(f"train-ghn: {result.run_dir} step {result.global_step}; held-out architectures "
              f"(validation loss of predicted parameters vs random init):")
        print(summarize_heldout(result.heldout))
        print(f"train-ghn: checkpoint {result.run_dir / 'checkpoints' / 'last.ckpt'} "
              f"(logah predict --ghn ...)")
    return 0
