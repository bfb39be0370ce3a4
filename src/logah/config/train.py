"""``trainer.*`` and ``optim.*`` config groups (shared by fine-tuning and GHN training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from logah.config.checked import Checked, choices
from logah.config.errors import ConfigError


@dataclass
class TrainerConfig(Checked):
    """A subset of ``lightning.Trainer`` arguments; passed through by name."""

    KEY = "trainer"

    max_steps: int = 300  # -1: run max_epochs instead
    max_epochs: Optional[int] = None
    val_check_interval: int = 100  # optimizer steps between validations (and best.ckpt checks)
    ckpt_every_n_steps: Optional[int] = None  # last.ckpt every N optimizer steps; None: val_check_interval
    limit_val_batches: int = 20  # batches per validation; 0 disables validation
    val_at_start: bool = True  # validate once at step 0 of a fresh run (the init's own quality)
    num_sanity_val_steps: int = 2
    accelerator: str = field(default="auto", metadata=choices("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = 1  # int, "auto" or a list of device ids
    num_nodes: int = 1
    strategy: str = field(default="auto", metadata=choices("auto", "ddp", "ddp_spawn", "fsdp"))
    precision: str = field(
        default="auto",  # bf16-mixed where the accelerator supports it, else 32-true
        metadata=choices("auto", "32-true", "bf16-mixed", "16-mixed", "64-true"),
    )
    gradient_clip_val: float = 1.0  # global grad-norm clipping; 0 disables
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    deterministic: bool = False
    enable_progress_bar: bool = True

    def check(self) -> None:
        if self.max_steps < 1 and self.max_steps != -1:
            raise ConfigError(f"trainer.max_steps: must be >= 1 (or -1), got {self.max_steps}")
        if self.max_steps == -1 and not self.max_epochs:
            raise ConfigError("trainer.max_epochs: needed when trainer.max_steps=-1")
        for key in ("val_check_interval", "log_every_n_steps", "accumulate_grad_batches"):
            if getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key}: must be >= 1, got {getattr(self, key)}")
        if self.ckpt_every_n_steps is not None and self.ckpt_every_n_steps < 1:
            raise ConfigError(
                f"trainer.ckpt_every_n_steps: must be >= 1, got {self.ckpt_every_n_steps}")
        if self.limit_val_batches < 0:
            raise ConfigError(
                f"trainer.limit_val_batches: must be >= 0, got {self.limit_val_batches}")
        if self.gradient_clip_val < 0:
            raise ConfigError(
                f"trainer.gradient_clip_val: must be >= 0, got {self.gradient_clip_val}")


@dataclass
class OptimConfig(Checked):
    """Optimiser and learning-rate schedule (linear warm-up, then cosine to ``min_lr_ratio``).

    Weight decay applies to the weights of Linear and patch-embedding Conv layers only; biases,
    LayerNorm parameters and embeddings (token, position, class token) are never decayed.
    """

    KEY = "optim"

    name: str = field(default="adamw", metadata=choices("adamw", "sgd"))
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8  # adamw only
    momentum: float = 0.9  # sgd only
    warmup_steps: int = 50  # linear warm-up from lr / warmup_steps to lr
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio on the last step

    def check(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay: must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas: need two values in [0, 1), got {list(self.betas)}")
