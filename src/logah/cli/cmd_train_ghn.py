"""``logah train-ghn [--config FILE] [task=gpt|vit|llama] [key=value ...]``: train a graph hypernetwork.

The run folder is ``{out_dir}/train-ghn/{name}/``: ``config.yaml``, ``archs.json`` (the drawn
architectures), ``checkpoints/last.ckpt`` (+ ``best.ckpt`` by ``val/zero_shot_loss``), TensorBoard
events and, at the end, ``heldout.json`` (per held-out architecture: zero-shot vs random-init
loss). Re-running the same command resumes from ``last.ckpt`` at its global step. The checkpoint
is what ``logah predict --ghn CKPT`` reads (``ghn.*`` weights + ``hyper_parameters["ghn"]``).

``task=vit`` (without ``--config``) is a shortcut for ``--config conf/train_ghn/vit.yaml``
(``task=gpt``: ``conf/train_ghn/gpt.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from datetime import timedelta
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from logah.cli.main import add_config_args
from logah.config.errors import ConfigError

COMMAND = "train-ghn"
HELDOUT_FILE = "heldout.json"
TASKS = ("gpt", "vit", "llama")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        COMMAND,
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


@dataclass
class TrainGHNResult:
    """What a finished :func:`train_ghn` call reports."""

    run_dir: Path
    global_step: int
    resumed_from: Optional[int]
    heldout: list[dict[str, Any]]
    metrics: dict[str, float]


def _say(msg: str) -> None:
    from logah.lit.rundir import is_rank_zero

    if is_rank_zero():
        print(msg, flush=True)


def task_template(cfg: Any, task_dm: Any) -> Any:
    """The template spec with the data's vocabulary / classes, checked against the data."""
    from logah.config.model import resolve_spec
    from logah.config.specs import CAUSAL_LM
    from logah.lit.finetune import check_data

    spec = resolve_spec(cfg.model)
    if spec.family in CAUSAL_LM and getattr(task_dm, "vocab_size", None):
        spec = spec.replace(vocab_size=int(task_dm.vocab_size))
    if spec.family == "vit":  # the data's size and channels (data.image_size / data.channels)
        spec = spec.replace(image_size=int(getattr(task_dm, "image_size", spec.image_size)),
                            in_chans=int(getattr(task_dm, "channels", spec.in_chans)))
    check_data(task_dm, spec, cfg.data.name)
    return spec


def train_ghn(cfg: Any, *, datamodule: Any = None, callbacks: Sequence[Any] = (),
              **trainer_overrides: Any) -> TrainGHNResult:
    """Run (or resume) one GHN training run; every input is checked before anything is written.

    Args:
        cfg: the resolved ``TrainGHNConfig``.
        datamodule: a task DataModule to use instead of ``build_datamodule(cfg.data, ...)``.
        callbacks, **trainer_overrides: extra Lightning callbacks / ``Trainer`` arguments.
    """

    from logah.config.arch import validate_archs
    from logah.config.model import resolve_spec
    from logah.data import build_datamodule
    from logah.data.arch import ArchitectureDataModule
    from logah.lit.ghn_module import GHNModule
    from logah.lit.optim import check_optim_config
    from logah.lit.rundir import check_run, run_dir, start_run
    from logah.lit.trainer import build_trainer, fit

    check_optim_config(cfg.optim)
    validate_archs(cfg.archs)
    if cfg.max_minutes is not None:
        if cfg.max_minutes <= 0:
            raise ConfigError(f"max_minutes: must be > 0, got {cfg.max_minutes}")
        trainer_overrides.setdefault("max_time", timedelta(minutes=cfg.max_minutes))
    ghn_cfg = cfg.ghn.resolved()
    folder = run_dir(cfg.out_dir, COMMAND, cfg.name)
    task_dm = datamodule or build_datamodule(cfg.data, resolve_spec(cfg.model), seed=cfg.seed)
    template = task_template(cfg, task_dm)
    resume = check_run(folder, cfg)
    archs = ArchitectureDataModule(cfg.archs, task_dm, template, seed=cfg.seed, run_dir=folder,
                                   resume=resume is not None)
    module = GHNModule(ghn_cfg.to_dict(), optim=dataclasses.asdict(cfg.optim), gamma=cfg.gamma,
                       label_smoothing=cfg.label_smoothing, seed=cfg.seed)
    if cfg.trainer.strategy in ("ddp", "ddp_spawn") and "strategy" not in trainer_overrides:
        from lightning.pytorch.strategies import DDPStrategy

        # Some GHN weights get no gradient from some architectures (e.g. the 1-D decoder).
        start = "spawn" if cfg.trainer.strategy == "ddp_spawn" else "popen"
        trainer_overrides["strategy"] = DDPStrategy(find_unused_parameters=True,
                                                    start_method=start)
    trainer = build_trainer(cfg.trainer, folder, monitor="val/zero_shot_loss",
                            resume_step=resume.step if resume else None, callbacks=callbacks,
                            **trainer_overrides)
    start_run(folder, cfg, resume)  # the first write: every check above has passed
    n_ghn = sum(p.numel() for p in module.ghn.parameters())
    _say(f"train-ghn: {ghn_cfg.preset} ({n_ghn:,} parameters) on {template.family} "
         f"architectures: {len(archs.train_specs) or 'online'} training, "
         f"{len(archs.heldout)} held out; run folder {folder}")
    if resume is not None:
        _say(f"train-ghn: resuming {folder} from {resume.path.name} at step {resume.step}")
    fit(trainer, module, archs, cfg=cfg.trainer, seed=cfg.seed,
        ckpt_path=str(resume.path) if resume else None)
    if 0 < trainer.global_step < trainer.max_steps:
        _say(f"train-ghn: stopped at step {trainer.global_step} of {trainer.max_steps} "
             f"(max_minutes={cfg.max_minutes})")
    if cfg.trainer.limit_val_batches > 0 and module.report_step != trainer.global_step:
        trainer.validate(module, datamodule=archs, verbose=False)  # the final held-out numbers
    if trainer.is_global_zero and module.heldout_report:
        from logah.utils.fs import atomic_write_text

        doc = {"global_step": trainer.global_step, "architectures": module.heldout_report}
        atomic_write_text(folder / HELDOUT_FILE, json.dumps(doc, indent=1) + "\n")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return TrainGHNResult(folder, trainer.global_step, resume.step if resume else None,
                          module.heldout_report, metrics)


def run(args: argparse.Namespace) -> int:
    from logah.config import load_config
    from logah.config.runs import TrainGHNConfig

    config_file, overrides = split_task(args.config, list(args.overrides))
    cfg = load_config(TrainGHNConfig, config_file, overrides)
    result = train_ghn(cfg)
    from logah.lit.ghn_module import summarize_heldout
    from logah.lit.rundir import is_rank_zero

    if is_rank_zero():
        print(f"train-ghn: {result.run_dir} step {result.global_step}; held-out architectures "
              f"(validation loss of predicted parameters vs random init):")
        print(summarize_heldout(result.heldout))
        print(f"train-ghn: checkpoint {result.run_dir / 'checkpoints' / 'last.ckpt'} "
              f"(logah predict --ghn ...)")
    return 0
