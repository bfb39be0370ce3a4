"""End to end: train a tiny GPT-2 with ``logah finetune``, ``logah grow`` it wider and deeper, and
fine-tune from the grown weights: the grown run starts at the small model's validation loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from logah.cli.main import main
from logah.config import load_config
from logah.config.runs import FinetuneConfig

VOCAB = 64


def write_text_data(root, n_train: int = 20_000, n_val: int = 4_000):
    """``train.bin``/``val.bin`` (uint16) + ``meta.json`` as ``logah prepare-text`` writes: a
    learnable pattern (period-8 runs over 4 phrases) with 5 % random tokens."""
    root.mkdir(parents=True)
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        rng = np.random.default_rng(seed)
        idx = np.arange(n)
        seq = idx % 8 + 8 * (idx // 64 % 4)
        noise = rng.random(n) < 0.05
        seq[noise] = rng.integers(0, VOCAB, int(noise.sum()))
        seq.astype(np.uint16).tofile(root / f"{split}.bin")
    (root / "meta.json").write_text(json.dumps({"vocab_size": VOCAB, "dtype": "uint16"}))
    return root


class FirstValLoss(Callback):
    """The validation loss before any update: Lightning's sanity check runs the validation loop
    on the untouched model (num_sanity_val_steps = limit_val_batches: the same batches)."""

    loss: float | None = None

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        self.loss = float(trainer.callback_metrics["val/loss"])


@pytest.mark.slow
def test_finetune_from_grown_weights_starts_at_the_small_models_val_loss(tmp_path):
    from logah.lit.finetune import finetune

    root = write_text_data(tmp_path / "data")
    runs = tmp_path / "runs"
    common = [
        "data.name=text", f"data.root={root}", "data.batch_size=8", f"out_dir={runs}",
        "trainer.limit_val_batches=4", "trainer.num_sanity_val_steps=4", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "optim.lr=0.01",
        "optim.warmup_steps=5",
    ]
    small_model = ["model.arch=gpt2-tiny", f"model.vocab_size={VOCAB}", "model.n_ctx=32",
                   "model.d_model=32", "model.n_layer=1"]
    assert main(["finetune", *common, *small_model, "name=small", "trainer.max_steps=40",
                 "trainer.val_check_interval=20"]) == 0
    small = runs / "finetune" / "small" / "weights"
    grown = tmp_path / "grown"
    assert main(["grow", "--from", str(small), "--to", "n_layer=3,d_model=64",
                 "--out", str(grown)]) == 0

    def first_val_loss(name: str, init: str, model: list[str] = ()):
        cfg = load_config(FinetuneConfig, None, [*common, *model, f"name={name}", f"init={init}",
                                                 "trainer.max_steps=5",
                                                 "trainer.val_check_interval=5"])
        rec = FirstValLoss()
        result = finetune(cfg, model_given=bool(model), callbacks=[rec])
        return rec.loss, result

    small_loss, _ = first_val_loss("from-small", f"weights:{small}")
    grown_loss, result = first_val_loss("from-grown", f"weights:{grown}")
    grown_dims = [*small_model, "model.d_model=64", "model.n_layer=3"]
    random_loss, _ = first_val_loss("random", "random", grown_dims)

    print(f"first val/loss: small {small_loss:.6f}, grown {grown_loss:.6f}, "
          f"random {random_loss:.4f}")  # shown with -s
    # the grown run trains the grown model (spec and growth history adopted from the weights)
    spec = result.spec
    assert (spec.n_layer, spec.d_model, spec.d_mlp, spec.n_heads) == (3, 64, 256, 4)
    assert [g["op"] for g in spec.growth] == ["d_mlp", "d_v", "d_qk", "d_model", "n_layer"]
    assert abs(grown_loss - small_loss) <= 1e-4, (grown_loss, small_loss)
    assert random_loss > small_loss + 1.0, (random_loss, small_loss)  # not a random-init start
    assert result.metrics["val/loss"] < random_loss  # and it trains on from there
