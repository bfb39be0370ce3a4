"""Presets: parameter counts equal Hugging Face's, and meta-device builds cost no memory."""

from __future__ import annotations

import gc
import math

import psutil
import pytest
import torch

from logah.config import PRESETS, get_preset
from logah.nn import build_model, count_params, param_shapes
from logah.nn.hf import hf_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_param_count_equals_hf_built_from_same_config(name, transformers):
    spec = PRESETS[name]
    cls = {"gpt2": transformers.GPT2LMHeadModel, "vit": transformers.ViTForImageClassification,
           "llama": transformers.LlamaForCausalLM}[spec.family]
    with torch.device("meta"):
        hf = cls(hf_config(spec))
    # parameters() lists a tied lm_head once, as our tied GPT-2 (which has no lm_head tensor).
    assert count_params(spec) == sum(p.numel() for p in hf.parameters())


def test_gpt2_large_tied_has_hf_gpt2_large_param_count():
    spec = get_preset("gpt2-large")
    assert spec.tie_embeddings and (spec.n_layer, spec.d_model, spec.n_heads) == (36, 1280, 20)
    assert count_params(spec) == 774_030_080


@pytest.mark.parametrize("name,n_params", [("gpt2-large", 774_030_080),
                                             ("llama-3-8b", 8_030_261_248)])
def test_building_a_large_preset_on_meta_allocates_no_parameter_memory(name, n_params):
    spec = get_preset(name)
    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    model = build_model(spec, device="meta")
    grown = proc.memory_info().rss - before
    params = list(model.parameters())
    assert all(p.is_meta for p in params) and not list(model.buffers())
    assert sum(p.numel() for p in params) == n_params
    # Materialised: 3.1 GB (gpt2-large) / 32 GB (llama-3-8b) in float32; shapes take a few MB.
    assert grown < 100 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB"


def test_param_shapes_names_are_the_canonical_ones():
    shapes = param_shapes(get_preset("gpt2-tiny"))
    assert shapes["wte.weight"] == (50257, 64) and shapes["wpe.weight"] == (128, 64)
    assert shapes["blocks.1.attn.q.weight"] == (64, 64)
    assert shapes["blocks.0.mlp.fc.weight"] == (256, 64)
    assert "lm_head.weight" not in shapes  # tied
    vit = param_shapes(get_preset("vit-tiny"))
    assert vit["cls_token"] == (1, 1, 64) and vit["pos_embed"] == (1, 65, 64)
    assert vit["patch_embed.weight"] == (64, 3, 4, 4) and vit["head.weight"] == (10, 64)
    assert count_params(get_preset("vit-tiny")) == sum(math.prod(s) for s in vit.values())


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_shapes_equal_the_full_model_in_order(name):
    """param_shapes builds one block and repeats its names: the same list as the whole model."""
    spec = PRESETS[name].replace(n_layer=3)
    full = [(n, tuple(p.shape)) for n, p in build_model(spec, "meta").named_parameters()]
    assert list(param_shapes(spec).items()) == full
    shapes = param_shapes(spec)
    shapes.clear()  # a copy: the cache is not mutated through it
    assert param_shapes(spec) and param_shapes(spec.replace(n_layer=2)) != param_shapes(spec)


def test_builds_on_several_threads_leave_the_inits_in_place():
    """build_model patches reset_parameters process-wide while it builds; concurrent builds
    (apply_plan draws new layers on a second thread) must not leave the no-op patch behind."""
    from concurrent.futures import ThreadPoolExecutor

    from torch import nn

    original = nn.Linear.__dict__["reset_parameters"]
    spec = get_preset("gpt2-tiny")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: build_model(spec, "meta"), range(32)))
    assert nn.Linear.__dict__["reset_parameters"] is original
    assert nn.Linear(4, 4).weight.abs().sum() > 0  # initialised, not left empty
