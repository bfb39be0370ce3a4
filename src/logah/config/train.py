"""``trainer.*`` and ``optim.*`` config groups (shared by fine-tuning and GHN training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from logah.config.model import choices


@dataclass
class TrainerConfig:
    """A subset of ``lightning.Trainer`` arguments; passed through by name."""

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


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (linear warm-up, then cosine to ``min_lr_ratio``).

    Weight decay applies to the weights of Linear and patch-embedding Conv layers only; biases,
    LayerNorm parameters and embeddings (token, position, class token) are never decayed.
    """

    name: str = field(default="adamw", metadata=choices("adamw", "sgd"))
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8  # adamw only
    momentum: float = 0.9  # sgd only
    warmup_steps: int = 50  # linear warm-up from lr / warmup_steps to lr
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio on the last step
