"""CausalLM / ImageClassifier: losses and validation metrics against hand computations."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from logah.config.specs import get_preset
from logah.config.train import OptimConfig
from logah.lit.target_module import CausalLM, ImageClassifier, module_for
from logah.nn import build_model

GPT = get_preset("gpt2-tiny").replace(vocab_size=40, n_ctx=16, n_layer=1)
VIT = get_preset("vit-tiny").replace(n_layer=1, d_model=32, d_qk=8, d_v=8, d_mlp=64,
                                     image_size=8, patch_size=4, num_classes=12)


def _validate(module, dataset, batch_size):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    return trainer.validate(module, DataLoader(dataset, batch_size=batch_size), verbose=False)[0]


def test_causal_lm_loss_is_next_token_cross_entropy():
    module = module_for(build_model(GPT, seed=0), OptimConfig())
    assert isinstance(module, CausalLM) and module.unit == "tokens"
    x = torch.randint(0, 40, (3, 16))
    y = torch.randint(0, 40, (3, 16))
    loss, logits = module.loss_and_output((x, y))
    assert logits.shape == (3, 16, 40)
    expected = F.cross_entropy(logits.reshape(-1, 40), y.reshape(-1))
    assert loss.item() == pytest.approx(expected.item())


def test_val_loss_is_token_weighted_and_ppl_is_its_exp():
    torch.manual_seed(0)
    model = build_model(GPT, seed=0)
    x, y = torch.randint(0, 40, (5, 16)), torch.randint(0, 40, (5, 16))
    # batch_size 2 over 5 samples: batches of 2, 2, 1 -> weighting by tokens matters.
    metrics = _validate(CausalLM(model, OptimConfig()), TensorDataset(x, y), batch_size=2)
    with torch.no_grad():
        expected = F.cross_entropy(model(x).reshape(-1, 40), y.reshape(-1))
    assert metrics["val/loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(expected.exp().item(), rel=1e-5)


def test_image_classifier_top1_top5_match_hand_counts():
    model = build_model(VIT, seed=0)
    module = module_for(model, OptimConfig())
    assert isinstance(module, ImageClassifier) and module.unit == "images"
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, 8, 8, generator=g), torch.randint(0, 12, (20,), generator=g)
    metrics = _validate(module, TensorDataset(x, y), batch_size=8)
    with torch.no_grad():
        logits = model(x)
    top5 = logits.topk(5, dim=1).indices
    assert metrics["val/acc1"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert metrics["val/acc5"] == pytest.approx((top5 == y[:, None]).any(1).float().mean().item())
    assert metrics["val/loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)


def test_label_smoothing_applies_to_the_training_loss_only():
    model = build_model(VIT, seed=0)
    module = module_for(model, OptimConfig(), label_smoothing=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 12, (6,), generator=g)
    module.train()
    loss, logits = module.loss_and_output((x, y))
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())
    assert loss.item() != pytest.approx(F.cross_entropy(logits, y).item())
    metrics = _validate(module, TensorDataset(x, y), batch_size=6)
    assert metrics["val/loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert isinstance(module_for(build_model(GPT, seed=0), OptimConfig(), 0.1), CausalLM)


def test_few_classes_log_no_top5():
    spec = VIT.replace(num_classes=3)
    module = ImageClassifier(build_model(spec, seed=0), OptimConfig())
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,))
    metrics = _validate(module, TensorDataset(x, y), batch_size=3)
    assert "val/acc1" in metrics and "val/acc5" not in metrics


def test_checkpoints_record_the_spec():
    module = CausalLM(build_model(GPT, seed=0), OptimConfig())
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["logah_spec"] == GPT.to_dict()
