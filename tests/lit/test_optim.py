"""Parameter groups (what is decayed), the warm-up + cosine multiplier, optimizer construction."""

from __future__ import annotations

import math

import pytest
import torch

from logah.config.errors import ConfigError
from logah.config.specs import get_preset
from logah.config.train import OptimConfig
from logah.lit.optim import WarmupCosine, build_optimizer, configure_optimizers, param_groups
from logah.nn import build_model

GPT = get_preset("gpt2-tiny").replace(vocab_size=50, n_ctx=16, n_layer=1)
VIT = get_preset("vit-tiny").replace(n_layer=1)


def _names(model, wd=0.1):
    groups = param_groups(model, wd)
    return {g["weight_decay"]: set(g["names"]) for g in groups}


def test_gpt2_decays_linear_weights_only():
    model = build_model(GPT, seed=0)
    g = _names(model)
    assert g[0.1] == {f"blocks.0.{m}.weight" for m in ("attn.q", "attn.k", "attn.v", "attn.proj",
                                                        "mlp.fc", "mlp.proj")}
    assert {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "blocks.0.attn.q.bias"} <= g[0.0]
    assert len(g[0.1]) + len(g[0.0]) == len(dict(model.named_parameters()))  # tied head counted once


def test_vit_decays_patch_embedding_not_tokens_or_positions():
    g = _names(build_model(VIT, seed=0))
    assert {"patch_embed.weight", "head.weight"} <= g[0.1]
    assert {"cls_token", "pos_embed", "patch_embed.bias", "head.bias"} <= g[0.0]


def test_warmup_cosine_shape():
    f = WarmupCosine(warmup_steps=4, total_steps=20, min_ratio=0.1)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)  # the cosine starts at the peak
    after = [f(s) for s in range(4, 20)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert f(19) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    mid = 4 + (19 - 4) / 2
    assert f(mid) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert WarmupCosine(0, 10, 0.0)(0) == pytest.approx(1.0)


def test_schedule_drives_the_optimizer_and_survives_state_dict():
    model = build_model(GPT, seed=0)
    cfg = OptimConfig(lr=0.1, warmup_steps=2, min_lr_ratio=0.0)
    conf = configure_optimizers(model, cfg, total_steps=6)
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([0.05, 0.1]) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    state = sched.state_dict()
    assert state["lr_lambdas"][0]["total_steps"] == 6  # the multiplier is checkpointed


def test_adamw_and_sgd_settings():
    model = build_model(VIT, seed=0)
    adam = build_optimizer(model, OptimConfig(name="adamw", lr=0.01, betas=[0.8, 0.9], eps=1e-6))
    assert isinstance(adam, torch.optim.AdamW)
    assert adam.param_groups[0]["betas"] == (0.8, 0.9) and adam.param_groups[0]["eps"] == 1e-6
    assert [g["weight_decay"] for g in adam.param_groups] == [0.01, 0.0]
    sgd = build_optimizer(model, OptimConfig(name="sgd", lr=0.2, momentum=0.5))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["lr"] == 0.2
    assert sgd.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("change,key", [
    ({"lr": 0.0}, "optim.lr"), ({"weight_decay": -1.0}, "optim.weight_decay"),
    ({"warmup_steps": -1}, "optim.warmup_steps"), ({"min_lr_ratio": 2.0}, "optim.min_lr_ratio"),
    ({"betas": [0.9]}, "optim.betas"),
])
def test_bad_optim_values_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        build_optimizer(build_model(VIT, seed=0), OptimConfig(**change))
