"""The depth-diversity metric on known cases, streaming equals batch, and on GHN predictions."""

from __future__ import annotations

import math

import pytest
import torch

from logah.ghn.diversity import DepthDiversity, depth_diversity, depth_key


def test_known_cosines() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    c = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # one group (blocks.*.w, 2x2): pairs a.b = 0, a.c = b.c = 1/sqrt(2) -> mean sqrt(2)/3
    params = {"blocks.0.w": a, "blocks.1.w": b, "blocks.2.w": c, "wte": a, "blocks.0.b": a[0]}
    assert depth_diversity(params) == pytest.approx(math.sqrt(2) / 3)
    # a second group: one tensor repeated (x3) and scaled -> cosine exactly 1; groups averaged
    params.update({f"blocks.{i}.fc": (i + 1) * c for i in range(3)})
    assert depth_diversity(params) == pytest.approx((math.sqrt(2) / 3 + 1) / 2)
    # opposite tensors: -1; a single layer or no numbered layer: no group
    assert depth_diversity({"h.0.w": a, "h.1.w": -a}) == pytest.approx(-1.0)
    assert depth_diversity({"blocks.0.w": a, "wte": a}) is None


def test_groups_by_role_and_shape() -> None:
    assert depth_key("blocks.11.attn.q.weight", (8, 4)) == ("blocks.*.attn.q.weight", (8, 4))
    assert depth_key("layers.3.0.w", (2, 2)) == ("layers.*.*.w", (2, 2))
    assert depth_key("wte.weight", (8, 4)) is None and depth_key("blocks.0.b", (8,)) is None
    meter = DepthDiversity()
    for i, shape in enumerate([(4, 4), (4, 4), (8, 4)]):  # different widths: different groups
        meter.add(f"blocks.{i}.w", torch.randn(shape))
    assert list(meter.groups()) == ["blocks.*.w 4x4"]


def test_random_tensors_are_near_zero_and_streaming_matches() -> None:
    g = torch.Generator().manual_seed(0)
    params = {f"blocks.{i}.w": torch.randn(64, 64, generator=g) for i in range(6)}
    meter = DepthDiversity()
    for name, t in params.items():
        meter.add(name, t)
    pairs = [torch.nn.functional.cosine_similarity(params[f"blocks.{i}.w"].flatten(),
                                                   params[f"blocks.{j}.w"].flatten(), dim=0)
             for i in range(6) for j in range(i + 1, 6)]
    assert meter.mean() == pytest.approx(float(torch.stack(pairs).mean()), abs=1e-6)
    assert abs(meter.mean()) < 0.05
