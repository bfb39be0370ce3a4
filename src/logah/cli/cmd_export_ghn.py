"""``logah export-ghn RUN_DIR --name NAME``: a ``logah train-ghn`` run -> a pretrained GHN entry.

Writes ``NAME/`` (by default into the package's ``logah/ghn/pretrained/``, so it ships and
``pretrained:NAME`` finds it): ``ghn.safetensors`` + ``ghn.json`` (the weights and resolved config,
no pickle) and the model card, ``card.json`` + ``README.md``: family, data, architecture space,
training steps and wall time (from the run's TensorBoard events), held-out zero-shot loss vs
random init (``heldout.json``) and the command that reproduces the run. Atomic: on any error
nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from logah.config.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-ghn", help="turn a train-ghn run into a shipped pretrained GHN",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a logah train-ghn run folder")
    p.add_argument("--name", required=True, help="entry name (pretrained:NAME)")
    p.add_argument("--checkpoint", default="last", choices=("last", "best"),
                   help="which checkpoint of the run (default: last, the one heldout.json scores)")
    p.add_argument("--out", metavar="DIR", help="parent folder of the entry "
                   "(default: the package's logah/ghn/pretrained)")
    p.add_argument("--command", dest="train_command", metavar="CMD",
                   help="the command that produced the run (default: logah train-ghn --config "
                        "RUN_DIR/config.yaml)")
    p.add_argument("--minutes", type=float, help="training wall time, when the run's "
                   "TensorBoard events do not tell it")
    p.add_argument("--hardware", default="CPU", help="where it trained, for the card")
    p.add_argument("--notes", default="", help="a paragraph for the card")
    p.set_defaults(func=run)


def _train_minutes(run_dir: Path) -> float | None:
    """Wall time between the first and the last logged training step (resumes included)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if "train/loss" not in acc.Tags().get("scalars", []):
        return None
    times = [e.wall_time for e in acc.Scalars("train/loss")]
    return (max(times) - min(times)) / 60 if len(times) > 1 else None


def _heldout(run_dir: Path) -> dict[str, Any]:
    f = run_dir / "heldout.json"
    try:
        doc = json.loads(f.read_text())
        archs = doc["architectures"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{f}: cannot read the held-out report ({e}); run logah train-ghn "
                          "to its end first") from None
    if not archs:
        raise ConfigError(f"{f}: no held-out architectures were validated")

    def mean(key: str) -> float:
        return sum(a[key] for a in archs) / len(archs)

    out = {"global_step": doc.get("global_step"), "zero_shot_loss": mean("zero_shot_loss"),
           "random_init_loss": mean("random_init_loss"), "architectures": archs}
    if "zero_shot_acc1" in archs[0]:
        out.update(zero_shot_acc1=mean("zero_shot_acc1"), random_init_acc1=mean("random_init_acc1"))
    return out


def build_card(args: argparse.Namespace, run_dir: Path, ghn: Any) -> dict[str, Any]:
    """The ``card.json`` dict of the run (see :mod:`logah.ghn.pretrained`)."""
    import logah
    from logah.config import load_config
    from logah.config.model import resolve_spec
    from logah.config.runs import TrainGHNConfig

    cfg = load_config(TrainGHNConfig, run_dir / "config.yaml")
    heldout = _heldout(run_dir)
    minutes = args.minutes if args.minutes is not None else _train_minutes(run_dir)
    if minutes is None:
        raise ConfigError(f"{run_dir}: no train/loss TensorBoard events to time the training; "
                          "pass --minutes")
    return {
        "format": "logah-ghn-card", "version": 1, "name": args.name,
        "family": resolve_spec(cfg.model).family, "data": cfg.data.name,
        "ghn": {"preset": cfg.ghn.preset, "num_params": ghn.num_params(),
                "config": ghn.config.to_dict()},
        "architecture_space": {"archs": dataclasses.asdict(cfg.archs),
                               "template": dataclasses.asdict(cfg.model)},
        "training": {"steps": heldout["global_step"], "minutes": round(minutes, 2),
                     "hardware": args.hardware, "seed": cfg.seed,
                     "optim": dataclasses.asdict(cfg.optim), "gamma": cfg.gamma},
        "heldout": heldout,
        "command": args.train_command or f"logah train-ghn --config {run_dir}/config.yaml",
        "logah_version": logah.__version__,
        "notes": args.notes,
    }


def run(args: argparse.Namespace) -> int:
    from logah.ghn.io import load_ghn, save_ghn
    from logah.ghn.pretrained import CARD_JSON, CARD_MD, ROOTS, card_markdown

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a logah train-ghn run folder (no config.yaml)")
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise ConfigError(f"--name {args.name!r}: must be a plain folder name")
    ckpt = run_dir / "checkpoints" / f"{args.checkpoint}.ckpt"
    ghn = load_ghn(ckpt)
    card = build_card(args, run_dir, ghn)
    out = Path(args.out) if args.out else ROOTS[0]
    files = {CARD_JSON: json.dumps(card, indent=1) + "\n", CARD_MD: card_markdown(card)}
    dest = save_ghn(ghn, out / args.name, extra_files=files)
    h = card["heldout"]
    print(f"export-ghn: {dest} ({ghn.num_params():,} parameters, {card['training']['steps']} "
          f"steps, {card['training']['minutes']:.1f} min; held-out zero-shot "
          f"{h['zero_shot_loss']:.4f} vs random init {h['random_init_loss']:.4f})")
    return 0
