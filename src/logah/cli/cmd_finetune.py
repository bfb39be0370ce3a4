"""``logah finetune [--config FILE] [key=value ...]``: train a GPT-2 / ViT from an init choice."""

from __future__ import annotations

import argparse

from logah.cli.main import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="train a GPT-2 / ViT (init=random|orthogonal|mimetic|weights:|grow:|hyperclone:|stack:PATH|"
        "ghn:CKPT); re-run to resume",
        description="Train one target model on a task dataset. The run folder is "
        "{out_dir}/finetune/{name}/ (config.yaml, checkpoints/, TensorBoard events, weights/); "
        "running the same command again resumes from checkpoints/last.ckpt. "
        "Examples: conf/finetune/*.yaml.",
    )
    add_config_args(p)
    p.set_defaults(func=run)


def sets_model(config_file: str | None, overrides: list[str]) -> bool:
    """Whether the user chose the model: a ``model.*`` override or a ``model`` key in the file."""
    if any(o.split("=", 1)[0].strip().startswith("model.") for o in overrides):
        return True
    if config_file is None:
        return False
    from omegaconf import OmegaConf

    return "model" in OmegaConf.load(config_file)  # load_config has already parsed this file


def run(args: argparse.Namespace) -> int:
    from logah.config import load_config
    from logah.config.runs import FinetuneConfig

    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    from logah.lit.finetune import finetune  # Lightning import only once the config is valid

    result = finetune(cfg, model_given=sets_model(args.config, args.overrides))
    if result.weights_dir is not None:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items())
                          if k.startswith("val/"))
        print(f"finetune: {result.run_dir} step {result.global_step}"
              + (f" ({shown})" if shown else ""))
        print(f"finetune: weights -> {result.weights_dir}")
    return 0
