"""Root schemas, one per command that trains (``logah finetune``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field

from logah.config.data import DataConfig
from logah.config.model import ModelConfig
from logah.config.train import OptimConfig, TrainerConfig


@dataclass
class FinetuneConfig:
    """``logah finetune``: train one ViT / GPT-2 from a chosen initialisation.

    ``init``: ``random`` (the family's ordinary init), ``orthogonal``, or ``weights:PATH`` (a
    safetensors file, a ``logah`` weights directory or an exported Hugging Face directory).
    Runs go to ``{out_dir}/finetune/{name}/``.
    """

    name: str = "default"
    seed: int = 0
    out_dir: str = "runs"
    init: str = "random"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
