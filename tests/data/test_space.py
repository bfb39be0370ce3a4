"""Architecture spaces (:mod:`logah.data.space`): reference ranges, determinism, held-out
disjointness, bad space configs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from logah.config import ConfigError, get_preset
from logah.config.arch import ArchDataConfig, ArchSpaceConfig, DepthBand
from logah.config.load import load_config
from logah.data.space import ArchSpace, draw_heldout, draw_online, draw_train, num_params

GPT = get_preset("gpt2-tiny").replace(n_ctx=32, vocab_size=101, tie_embeddings=False)
VIT = get_preset("vit-tiny").replace(image_size=32, in_chans=1, num_classes=7)


def gpts1k() -> ArchSpaceConfig:
    """The reference GPTs-1K space (ghn-anchors.md §4.2)."""
    return ArchSpaceConfig(
        bands=[DepthBand([6, 9], [72, 176]), DepthBand([4, 5], [128, 176]),
               DepthBand([3, 3], [176, 256])],
        width_step=8, head_groups=[[8]], tie_embeddings=False,
    )


def vits1k() -> ArchSpaceConfig:
    return ArchSpaceConfig(
        bands=[DepthBand([6, 9], [128, 256]), DepthBand([4, 5], [256, 384]),
               DepthBand([3, 3], [384, 512])],
        width_step=32, head_groups=[[3, 6, 12], [4, 8]], patch_sizes=[2, 4],
    )


def test_gpts1k_draws_follow_the_reference_ranges_and_take_the_task_from_the_template():
    space = ArchSpace(gpts1k(), GPT)
    rng = np.random.default_rng(0)
    specs = [space.sample(rng) for _ in range(400)]
    depths = {s.n_layer for s in specs}
    assert depths == set(range(3, 10))
    for s in specs:
        lo, hi = {3: (176, 256), 4: (128, 176), 5: (128, 176)}.get(s.n_layer, (72, 176))
        assert lo <= s.d_model <= hi and s.d_model % 8 == 0
        assert s.n_heads == 8 and s.d_qk == s.d_v == s.d_model // 8 and s.d_mlp == 4 * s.d_model
        # task fields come from the template, never from the space
        assert (s.vocab_size, s.n_ctx, s.tie_embeddings, s.family) == (101, 32, False, "gpt2")
    # depth is uniform over 3..9 (7 values): every depth gets roughly 1/7 of 400 draws
    counts = np.bincount([s.n_layer for s in specs], minlength=10)[3:]
    assert counts.min() > 30


def test_vits1k_heads_rule_patch_sizes_and_template_classes():
    space = ArchSpace(vits1k(), VIT)
    rng = np.random.default_rng(1)
    specs = [space.sample(rng) for _ in range(300)]
    for s in specs:
        expected = [3, 6, 12] if s.d_model % 12 == 0 else [4, 8]
        assert s.n_heads in expected
        assert s.patch_size in (2, 4) and s.num_classes == 7 and s.in_chans == 1
        assert s.image_size == 32 and s.d_mlp == 4 * s.d_model
    assert {s.patch_size for s in specs} == {2, 4}
    assert {s.n_heads for s in specs} >= {3, 4, 6, 8, 12}


def test_patch_size_must_divide_the_task_image_size():
    with pytest.raises(ConfigError, match=r"archs.space.patch_sizes: 5 does not divide .* 32"):
        ArchSpace(ArchSpaceConfig(patch_sizes=[4, 5]), VIT)


def test_draws_are_pure_functions_of_the_seed():
    space = ArchSpace(ArchSpaceConfig(), GPT)
    a = [s.key() for s in draw_train(space, 50, seed=3)]
    b = [s.key() for s in draw_train(ArchSpace(ArchSpaceConfig(), GPT), 50, seed=3)]
    c = [s.key() for s in draw_train(space, 50, seed=4)]
    assert a == b and a != c
    assert draw_online(space, 3, 1, 10, 0).key() == draw_online(space, 3, 1, 10, 0).key()
    online = {draw_online(space, 3, r, i, 0).key() for r in range(2) for i in range(30)}
    assert len(online) > 5


def test_draws_identical_in_a_fresh_process():
    code = (
        "from logah.config import get_preset; from logah.config.arch import ArchSpaceConfig;"
        "from logah.data.space import ArchSpace, draw_train;"
        "t = get_preset('gpt2-tiny').replace(n_ctx=32, vocab_size=101, tie_embeddings=False);"
        "print([s.key() for s in draw_train(ArchSpace(ArchSpaceConfig(), t), 20, seed=5)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = [s.key() for s in draw_train(ArchSpace(ArchSpaceConfig(), GPT), 20, seed=5)]
    assert out.stdout.strip() == str(here)


def test_heldout_is_distinct_disjoint_from_training_and_partly_beyond_the_range():
    space = ArchSpace(ArchSpaceConfig(), GPT)
    held = draw_heldout(space, 5, 4, seed=0, beyond_layers=2, beyond_width=1.5)
    keys = [s.key() for s in held]
    assert len(set(keys)) == 9
    assert all(space.contains(s) for s in held[:5])
    deeper, wider = held[5::2], held[6::2]
    max_depth, max_width = max(space.depths), space.max_width
    assert all(max_depth < s.n_layer <= max_depth + 2 for s in deeper)
    assert all(max_width < s.d_model <= 1.5 * max_width for s in wider)
    assert not any(space.contains(s) for s in held[5:])
    train = draw_train(space, 2000, seed=0, exclude=keys)
    assert not {s.key() for s in train} & set(keys)
    # the draw covers the rest of the (small) space
    assert len({s.key() for s in train}) == len(space.enumerate()) - 5
    online = {draw_online(space, 0, 0, i, j, set(keys)).key() for i in range(300) for j in range(2)}
    assert not online & set(keys)


def test_heldout_cannot_swallow_the_whole_space():
    space = ArchSpace(ArchSpaceConfig(bands=[DepthBand([2, 2], [32, 40])]), GPT)
    with pytest.raises(ConfigError, match="archs.num_heldout: 2 held-out .* of the 2 in the space"):
        draw_heldout(space, 2, 0, seed=0)


def test_max_params_filter_redraws():
    space = ArchSpace(ArchSpaceConfig(max_params=130_000), GPT)
    specs = draw_train(space, 100, seed=0)
    assert max(num_params(s) for s in specs) <= 130_000
    assert all(space.contains(s) for s in specs)
    assert len(space.enumerate()) == 8  # of 20 without the cap
    with pytest.raises(ConfigError, match="archs.space.max_params: no architecture"):
        ArchSpace(ArchSpaceConfig(max_params=1000), GPT).sample(np.random.default_rng(0))


@pytest.mark.parametrize(
    "override, message",
    [
        ("space.bands=[{layers: [2, 3], width: [32, 64]}, {layers: [3, 4], width: [8, 16]}]",
         r"archs.space.bands\[1\].layers: depth 3 is also in bands\[0\]"),
        ("space.head_groups=[[3]]", "archs.space.head_groups: no group divides width 32"),
        ("space.bands=[{layers: [4, 2], width: [32, 64]}]",
         r"archs.space.bands\[0\].layers: expected 1 <= lo <= hi"),
        ("meta_batch=0", "archs.meta_batch: must be >= 1"),
    ],
)
def test_bad_space_configs_name_the_key(override, message):
    # The config checks itself when it is built, so loading it is what fails.
    with pytest.raises(ConfigError, match=message):
        load_config(ArchDataConfig, None, [override])


def test_llama_space_draws_kv_groups_that_divide_the_heads_and_builds_every_spec():
    from logah.nn import build_model

    template = get_preset("llama-tiny").replace(n_ctx=32, vocab_size=101)
    cfg = ArchSpaceConfig(bands=[DepthBand([1, 3], [32, 64])], width_step=16,
                          head_groups=[[4, 8]], kv_groups=[1, 2, 4], mlp_ratios=[2.0, 2.75])
    space = ArchSpace(cfg, template)
    rng = np.random.default_rng(0)
    seen_kv = set()
    for _ in range(60):
        s = space.sample(rng)
        assert s.family == "llama" and s.n_heads % s.kv_heads == 0 and s.d_qk % 2 == 0
        assert (s.vocab_size, s.n_ctx, s.rope_base) == (101, 32, template.rope_base)
        seen_kv.add((s.n_heads, s.kv_heads))
    assert {(4, 1), (4, 2), (4, 4), (8, 1), (8, 2), (8, 4)} <= seen_kv
    specs = space.enumerate()
    assert len(specs) == 3 * 3 * 2 * 3 * 2  # depths x widths x heads x kv x ratios
    assert all(space.contains(s) for s in specs[:5])
    build_model(specs[-1], "meta")  # every drawn spec is a valid Llama
    with pytest.raises(ConfigError, match="kv_groups: only a llama template"):
        ArchSpace(cfg, GPT)
