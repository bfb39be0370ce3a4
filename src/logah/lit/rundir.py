"""Run folders: ``{out_dir}/{command}/{name}/`` and resuming from ``checkpoints/last.ckpt``.

A run folder holds the resolved ``config.yaml``, ``checkpoints/`` (``last.ckpt``, ``best.ckpt``)
and the TensorBoard event files. Re-running the same command with the same ``name`` continues from
``last.ckpt`` at its global step. Only ``trainer.*`` keys (and the few in ``RESUMABLE_KEYS``) may
change between the runs; any other difference is an error, because the checkpoint would no longer
describe the run the config asks for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from logah.config.errors import ConfigError
from logah.config.load import save_config

CONFIG_FILE = "config.yaml"
CKPT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"
START_OVER = "delete it (or pass another name=...) to start the run over"
# Keys (prefixes) that may differ when resuming: how to run, not what to train.
# max_minutes / snapshot_minutes: a time-capped run is extended by re-running with a larger cap
# (Lightning's Timer and our Snapshots keep the elapsed time in the checkpoint).
RESUMABLE_KEYS = ("trainer.", "data.num_workers", "data.timeout_s", "max_minutes",
                  "snapshot_minutes")


@dataclass(frozen=True)
class Resume:
    """The checkpoint a run continues from."""

    path: Path
    step: int


def run_dir(out_dir: str | os.PathLike, command: str, name: str) -> Path:
    """``{out_dir}/{command}/{name}``; ``name`` must be a plain folder name.

    Raises:
        ConfigError: ``name`` is empty or holds a path separator.
    """
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ConfigError(f"name: {name!r} must be a plain folder name (no '/')")
    return Path(out_dir) / command / name


def is_rank_zero() -> bool:
    """True in the process that writes run files (Lightning's rank-0 view, set from the env)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def find_resume(folder: Path) -> Optional[Resume]:
    """``checkpoints/last.ckpt`` and its global step, or None when the run has no checkpoint.

    The checkpoint is read weights-only (:func:`logah.nn.readers.read_checkpoint`): a file that
    would run code when unpickled is refused, never executed.

    Raises:
        WeightsError: the checkpoint exists but is empty, truncated, foreign or not a logah run's
            (one line naming the file and the way out).
    """
    path = folder / CKPT_DIR / LAST_CKPT
    if not path.is_file():
        return None
    return Resume(path, int(_read_last(path)["global_step"]))


def _read_last(path: Path) -> dict[str, Any]:
    from logah.nn.readers import WeightsError, read_checkpoint

    try:
        ckpt = read_checkpoint(path, mmap=True)
    except WeightsError as e:
        raise WeightsError(f"{e}; {START_OVER}") from None
    if not isinstance(ckpt.get("global_step"), int):
        raise WeightsError(f"{path}: cannot read checkpoint (no global_step: not a Lightning "
                           f"checkpoint); {START_OVER}")
    return ckpt


def check_resume_fits(path: str | os.PathLike, module: Any) -> None:
    """The checkpoint a run resumes from holds ``module``'s tensors (names and shapes), so
    Lightning's restore cannot fail half-way with a multi-line error.

    Raises:
        WeightsError: naming the file, what differs and the way out.
    """
    from logah.nn.io import state_problems
    from logah.nn.readers import WeightsError

    state = _read_last(Path(path)).get("state_dict")
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: cannot read checkpoint (no state_dict: not a Lightning "
                           f"checkpoint); {START_OVER}")
    problems = state_problems({k: tuple(v.shape) for k, v in module.state_dict().items()},
                              {k: tuple(getattr(v, "shape", ())) for k, v in state.items()})
    if problems:
        raise WeightsError(f"{path}: holds the weights of another model ({problems}); "
                           f"{START_OVER}")


def _flat(cfg: Any) -> dict[str, Any]:
    """Dotted key -> leaf value of a config dataclass or mapping."""
    out: dict[str, Any] = {}

    def walk(d: Any, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return out


def config_changes(old: Any, new: Any) -> list[str]:
    """``key: old != new`` for every differing key except the resumable ones."""
    a, b = _flat(old), _flat(new)
    keys = sorted(set(a) | set(b))
    return [
        f"{k}: {a.get(k)!r} != {b.get(k)!r}"
        for k in keys
        if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_KEYS)
    ]


def check_run(folder: Path, cfg: Any) -> Optional[Resume]:
    """Where a run in ``folder`` resumes (None: fresh); read-only, so call it before writing.

    A folder with ``last.ckpt`` resumes; its saved config must match ``cfg`` apart from
    ``RESUMABLE_KEYS``.

    Raises:
        ConfigError: the folder holds a checkpointed run with a different config.
        WeightsError: ``last.ckpt`` is unreadable.
    """
    resume = find_resume(folder)
    saved = folder / CONFIG_FILE
    if resume is not None and saved.is_file():
        changes = config_changes(OmegaConf.to_container(OmegaConf.load(saved)), cfg)
        if changes:
            shown = "; ".join(changes[:6]) + (" ..." if len(changes) > 6 else "")
            raise ConfigError(
                f"{folder}: holds a run with a different config (saved vs now: {shown}); "
                "use another name=... or delete the folder to start over"
            )
    return resume


def start_run(folder: Path, cfg: Any, resume: Optional[Resume]) -> None:
    """Write ``config.yaml`` (atomically, rank 0 only). A fresh run (``resume`` None) first removes
    TensorBoard event files left by an earlier attempt that never checkpointed, so its curves do
    not mix with the new ones."""
    if not is_rank_zero():
        return
    if resume is None:
        for f in folder.glob("events.out.tfevents.*"):
            f.unlink()
    save_config(cfg, folder / CONFIG_FILE)
