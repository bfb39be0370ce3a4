"""Root schemas, one per command that trains (``logah finetune``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from logah.config.arch import ArchDataConfig
from logah.config.checked import Checked
from logah.config.data import DataConfig
from logah.config.errors import ConfigError
from logah.config.ghn import GHNConfig
from logah.config.grow import GrowScheduleConfig
from logah.config.model import ModelConfig
from logah.config.train import OptimConfig, TrainerConfig


@dataclass
class InitOptions(Checked):
    """Knobs of the baseline inits (``init_opts.*``; see :mod:`logah.lit.init`)."""

    KEY = "init_opts"

    noise: float = 0.0  # hyperclone/stack: zero-sum symmetry-breaking noise (relative std)
    mimetic: list = field(default_factory=lambda: [0.7, 0.7, 0.4, 0.4])  # a1, b1, a2, b2
    ghn_device: str = "cpu"  # ghn:CKPT: the device the hypernetwork predicts on
    # ghn:CKPT: parameter-name globs (fnmatch, e.g. ["wte.*"]) that keep the ordinary seeded init
    # instead of the prediction: predict the blocks, keep e.g. the token table random
    ghn_keep: list = field(default_factory=list)

    def check(self) -> None:
        if self.noise < 0:
            raise ConfigError(f"init_opts.noise: must be >= 0, got {self.noise}")
        if len(self.mimetic) != 4:
            raise ConfigError("init_opts.mimetic: expected [alpha_1, beta_1, alpha_2, beta_2], "
                              f"got {list(self.mimetic)}")
        bad = [g for g in self.ghn_keep if not isinstance(g, str) or not g.strip()]
        if bad:
            raise ConfigError(f"init_opts.ghn_keep: expected parameter-name globs, got {bad[0]!r}")


@dataclass
class FinetuneConfig(Checked):
    """``logah finetune``: train one ViT / GPT-2 from a chosen initialisation.

    ``init``: ``random`` (the family's ordinary init), ``orthogonal``, ``mimetic``,
    ``weights:PATH`` (a safetensors file, a ``logah`` weights directory or an exported Hugging Face
    directory, loaded strictly), ``grow:PATH`` / ``hyperclone:PATH`` / ``stack:PATH`` (a smaller
    trained model grown to ``model.*``) or ``ghn:CKPT`` (predicted inline); ``init_opts.*`` tunes
    them. When those weights record a spec (``logah.json`` / HF ``config.json``) that differs
    from ``model.*``: adopted if the run sets no ``model.*`` key, else an error naming the fields.
    Runs go to ``{out_dir}/finetune/{name}/`` (``config.yaml``, ``checkpoints/{last,best}.ckpt``,
    TensorBoard events, final ``weights/``); re-running the same command resumes from
    ``last.ckpt``. ``seed`` seeds the init and the data order (rank ``r`` samples with
    ``seed + r``).
    """

    name: str = "default"  # the run folder's name (a plain folder name)
    seed: int = 0
    out_dir: str = "runs"
    init: str = "random"  # random|orthogonal|mimetic|weights:|grow:|hyperclone:|stack:PATH|ghn:CKPT
    init_opts: InitOptions = field(default_factory=InitOptions)
    label_smoothing: float = 0.0  # image classification (the paper's ImageNet runs use 0.1)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    grow: GrowScheduleConfig = field(default_factory=GrowScheduleConfig)  # growth during training

    def check(self) -> None:
        # Whether the model is an image classifier is known once the init is resolved (an
        # adopted weights spec may change the family): checked by logah.lit.finetune.
        _check_label_smoothing(self.label_smoothing)
        if self.init_opts.ghn_keep and not str(self.init).strip().startswith("ghn:"):
            raise ConfigError(f"init_opts.ghn_keep: applies to init=ghn:CKPT only, got "
                              f"init={self.init}")


@dataclass
class TrainGHNConfig(Checked):
    """``logah train-ghn``: train a graph hypernetwork on sampled architectures.

    ``model`` is the *task template*: its family and task fields (vocabulary and context, or image
    size, channels and classes) are shared by every sampled architecture, whose depth and widths
    come from ``archs.space``. The defaults train LoGAH-T on a tiny GPTs-1K-style space over the
    Brown corpus; ``conf/train_ghn/vit.yaml`` does ViTs over Fashion-MNIST. Runs go to
    ``{out_dir}/train-ghn/{name}/``.
    """

    name: str = "default"
    seed: int = 0
    out_dir: str = "runs"
    gamma: float = 3e-5  # weight of sum ||p||_F over predicted tensors (Frobenius, not squared)
    max_minutes: Optional[float] = None  # wall-clock cap on training (stops before max_steps)
    snapshot_minutes: list = field(default_factory=list)  # keep checkpoints/snapshot-{M}min.ckpt
    label_smoothing: float = 0.0  # image tasks
    ghn: GHNConfig = field(default_factory=GHNConfig)
    archs: ArchDataConfig = field(default_factory=ArchDataConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(arch="gpt2-tiny", n_ctx=64))
    data: DataConfig = field(default_factory=lambda: DataConfig(name="brown", batch_size=8))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01, warmup_steps=20,
                                            min_lr_ratio=0.1)
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=600, val_check_interval=100, limit_val_batches=4, gradient_clip_val=5.0,
            num_sanity_val_steps=0, log_every_n_steps=10, val_at_start=False,
        )
    )

    def check(self) -> None:
        _check_label_smoothing(self.label_smoothing)
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes: must be > 0, got {self.max_minutes}")
        if any(isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0
               for m in self.snapshot_minutes):
            raise ConfigError(f"snapshot_minutes: minutes > 0 expected, got "
                              f"{list(self.snapshot_minutes)}")


def _check_label_smoothing(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"label_smoothing: must be in [0, 1), got {value}")
