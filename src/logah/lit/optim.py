"""Optimisers and the learning-rate schedule shared by every training command.

``configure_optimizers(model, cfg, total_steps)`` returns what a LightningModule's
``configure_optimizers`` hook returns: AdamW or SGD over two parameter groups (with and without
weight decay) and a per-step linear warm-up + cosine schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from logah.config.train import OptimConfig

# Layers whose >=2-D weight is decayed. Everything else (biases, LayerNorm, nn.Embedding tables,
# ViT's cls_token / pos_embed, which belong to the model itself) is not.
_DECAYED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed and a non-decayed group.

    A tied LM head (GPT-2's ``wte.weight``) is an embedding, so it is not decayed. A model with
    a true ``decay_all`` attribute (a GHN with ``ghn.decay_all``, as the reference) decays all.

    Returns:
        ``[{"params": decayed, "weight_decay": wd, "names": [...]},
        {"params": rest, "weight_decay": 0.0, "names": [...]}]``; empty groups are left out.
    """
    decay: dict[str, nn.Parameter] = {}
    rest: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():  # named_parameters de-duplicates tied tensors
        if not p.requires_grad:
            continue
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        decayed = getattr(model, "decay_all", False) or (
            isinstance(owner, _DECAYED_LAYERS) and name.endswith("weight") and p.ndim >= 2)
        (decay if decayed else rest)[name] = p
    groups = [
        {"params": list(decay.values()), "weight_decay": float(weight_decay), "names": list(decay)},
        {"params": list(rest.values()), "weight_decay": 0.0, "names": list(rest)},
    ]
    return [g for g in groups if g["params"]]


class WarmupCosine:
    """LR multiplier for ``LambdaLR``: linear warm-up, then a half cosine down to ``min_ratio``.

    ``step`` counts optimizer steps from 0. Warm-up goes ``1/W, 2/W, ..., 1`` over the first ``W``
    steps; the cosine then reaches ``min_ratio`` at ``step = total_steps - 1`` and stays there.
    A class (not a closure) so ``LambdaLR.state_dict()`` records it in checkpoints.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps = max(int(warmup_steps), 0)
        self.total_steps = max(int(total_steps), 1)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - 1 - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (with momentum) over :func:`param_groups` (``cfg`` checked itself when built:
    ``name`` is one of the two)."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def configure_optimizers(model: nn.Module, cfg: OptimConfig, total_steps: int) -> dict[str, Any]:
    """The return value of ``LightningModule.configure_optimizers``: optimizer + per-step schedule.

    Args:
        total_steps: optimizer steps of the whole run (``trainer.estimated_stepping_batches``).
    """
    opt = build_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
