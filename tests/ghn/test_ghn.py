"""The GHN end to end: every parameter of every target preset, predicted models that run, gradients
to every GHN parameter, streaming == batched prediction, per-family normalisation, preset sizes."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from logah.config import PRESETS, get_preset
from logah.config.ghn import GHN_PRESETS, GHNConfig
from logah.ghn import GHN
from logah.graph import batch_graphs, graph_for_spec
from logah.nn import build_model, param_shapes

PAPER_COUNTS = {  # LoGAH paper, Table 1
    "logah-t": 2.5e6, "logah-s": 21.4e6, "logah-b": 78.2e6, "logah-l": 289.4e6,
    "ghn3-t": 6.9e6, "ghn3-s": 35.8e6, "ghn3-l": 214.7e6, "ghn3-xl": 654.4e6,
}


@pytest.mark.parametrize("preset", sorted(PAPER_COUNTS))
def test_preset_parameter_counts_match_the_paper(preset: str) -> None:
    with torch.device("meta"):  # sizes only: no memory, no init work
        ghn = GHN(GHNConfig(preset=preset))
    assert ghn.num_params() == pytest.approx(PAPER_COUNTS[preset], rel=0.02)
    if preset.startswith("logah"):  # the low-rank model never holds a dense decoder
        assert not any("conv" in n or "fc" in n for n, _ in ghn.decoder.named_parameters())


def test_every_parameter_of_every_target_preset_has_its_shape_and_dtype() -> None:
    with torch.device("meta"):  # a shape-only GHN: the graphs are real, the arithmetic is not
        ghn = GHN(GHNConfig(preset="logah-t"))
    for name, spec in PRESETS.items():
        (params,) = ghn(graph_for_spec(spec))
        want = param_shapes(spec)
        assert list(params) == list(want), name
        bad = [n for n, t in params.items()
               if tuple(t.shape) != want[n] or t.dtype != torch.float32]
        assert not bad, f"{name}: {bad[:3]}"


# The larger presets (hundreds of millions of parameters) are covered on meta above.
SMALL_PRESETS = [p for p in GHN_PRESETS if p not in ("logah-b", "logah-l", "ghn3-l", "ghn3-xl")]


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_every_ghn_preset_predicts_tiny_models_that_run(preset: str, tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset=preset), seed=0).eval()
    with torch.no_grad():
        gpt_params, vit_params = ghn(tiny_graphs)
    for params, arch in ((gpt_params, "gpt2-tiny"), (vit_params, "vit-tiny")):
        spec = get_preset(arch)
        assert {n: tuple(t.shape) for n, t in params.items()} == param_shapes(spec)
        assert all(torch.isfinite(t).all() for t in params.values())
        out = functional_call(build_model(spec, "meta"), params, (_inputs(spec),))
        assert torch.isfinite(out).all(), f"{preset} -> {arch}"


def _inputs(spec, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if spec.family == "gpt2":
        return torch.randint(0, spec.vocab_size, (batch, 16), generator=gen)
    return torch.randn(batch, spec.in_chans, spec.image_size, spec.image_size, generator=gen)


def _task_loss(params: dict, spec) -> torch.Tensor:
    x = _inputs(spec)
    out = functional_call(build_model(spec, "meta"), params, (x,))
    if spec.family == "gpt2":
        return torch.nn.functional.cross_entropy(out[:, :-1].flatten(0, 1), x[:, 1:].flatten())
    return torch.nn.functional.cross_entropy(out, torch.tensor([1, 3]))


@pytest.mark.parametrize("preset,overrides", [
    ("logah-t", {}),
    ("ghn3-t", {"max_shape": 32}),
    ("ghn2", {}),
])
def test_gradients_reach_every_ghn_parameter(preset: str, overrides: dict, tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset=preset, **overrides), seed=0)
    specs = [get_preset("gpt2-tiny"), get_preset("vit-tiny")]
    loss = sum(_task_loss(p, s) for p, s in zip(ghn(tiny_graphs), specs, strict=True))
    loss.backward()
    dead = [n for n, p in ghn.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_streaming_prediction_equals_batched_prediction(tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset="logah-t"), seed=1).eval()
    with torch.no_grad():
        batched = ghn(tiny_graphs)
    for graph, want in zip(tiny_graphs, batched, strict=True):
        streamed = list(ghn.predict(graph))
        assert [n for n, _ in streamed] == list(want)
        for name, t in streamed:
            torch.testing.assert_close(t, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_batch_predicts_each_graph_as_it_would_alone(tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset="ghn2"), seed=0).eval()
    mini = graph_for_spec(get_preset("gpt2-mini"))
    with torch.no_grad():
        together = ghn(batch_graphs([*tiny_graphs, mini]))
        alone = [ghn(g)[0] for g in (*tiny_graphs, mini)]
    for a, b in zip(together, alone, strict=True):
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-6, msg=n)


def test_normalisation_per_family(tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset="logah-t"), seed=0).eval()
    raw = GHN(GHNConfig(preset="logah-t", norm="none"), seed=0).eval()
    with torch.no_grad():
        gpt, vit = ghn(tiny_graphs)
        gpt_raw, vit_raw = raw(tiny_graphs)
    # GPT-2 (std): weights std 0.02 (a fused q/k/v as one tensor, as the reference's c_attn),
    # residual projections 0.02 / sqrt(2 n_layer), embeddings raw.
    qkv = torch.cat([gpt[f"blocks.0.attn.{r}.weight"] for r in "qkv"])
    assert qkv.std().item() == pytest.approx(0.02, rel=1e-3)
    assert gpt["blocks.0.mlp.fc.weight"].std().item() == pytest.approx(0.02, rel=1e-3)
    assert gpt["blocks.1.mlp.proj.weight"].std().item() == pytest.approx(0.02 / 2, rel=1e-3)
    # the tied wte (also the LM head) at the family's std (norm_tied); other embeddings raw
    assert gpt["wte.weight"].std().item() == pytest.approx(0.02, rel=1e-3)
    torch.testing.assert_close(gpt["wte.weight"],
                               gpt_raw["wte.weight"] * 0.02 / gpt_raw["wte.weight"].std(),
                               rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(gpt["wpe.weight"], gpt_raw["wpe.weight"])
    # ViT (fan-in): w * sqrt(2 / fan_in); pos_embed and cls_token raw.
    fan_in = 3 * 4 * 4
    torch.testing.assert_close(vit["patch_embed.weight"],
                               vit_raw["patch_embed.weight"] * math.sqrt(2 / fan_in))
    torch.testing.assert_close(vit["pos_embed"], vit_raw["pos_embed"])
    # 1-D: norm weights 2 sigmoid(x / 2) (row 0), biases tanh(x / 5) (row 1).
    for params, params_raw in ((gpt, gpt_raw), (vit, vit_raw)):
        torch.testing.assert_close(params["ln_f.weight"],
                                   2 * torch.sigmoid(0.5 * params_raw["ln_f.weight"]))
        torch.testing.assert_close(params["ln_f.bias"], torch.tanh(0.2 * params_raw["ln_f.bias"]))
    assert not torch.equal(gpt_raw["ln_f.weight"], gpt_raw["ln_f.bias"])  # different rows


def test_unknown_node_type_is_one_clear_error(tiny_graphs) -> None:
    from logah.ghn import GHNInputError

    ghn = GHN(GHNConfig(preset="logah-t", n_types=5), seed=0)
    with pytest.raises(GHNInputError, match="type table"):
        ghn(tiny_graphs[0])


@pytest.mark.parametrize("preset", ["logah-t", "ghn3-t"])
def test_norms_returned_for_training_equal_the_tensors_norms_with_the_same_gradient(
        preset: str, tiny_graphs) -> None:
    """``norms=True`` (low-rank: from the factors' Gram matrices) is the Frobenius norm of each
    predicted tensor, and the regulariser's gradient on the GHN is the same as through W."""
    ghn = GHN(GHNConfig(preset=preset, max_shape=32), seed=0).double()
    params, norms = ghn(tiny_graphs, norms=True)
    for p, n in zip(params, norms, strict=True):
        want = torch.stack([t.norm() for t in p.values()])
        torch.testing.assert_close(n, want, rtol=1e-10, atol=1e-12)
    fast = torch.autograd.grad(sum(n.sum() for n in norms), list(ghn.parameters()),
                               allow_unused=True)
    params = ghn(tiny_graphs)
    slow = torch.autograd.grad(sum(t.norm() for p in params for t in p.values()),
                               list(ghn.parameters()), allow_unused=True)
    assert any(f is not None and f.abs().sum() > 0 for f in fast)
    for (name, _), f, s in zip(ghn.named_parameters(), fast, slow, strict=True):
        if s is None:
            assert f is None or not f.any(), name
        else:
            torch.testing.assert_close(f, s, rtol=1e-8, atol=1e-12, msg=name)


@pytest.mark.parametrize("arch", ["gpt2-tiny", "vit-tiny"])
def test_random_ghn_predicts_distinct_q_k_v(arch) -> None:
    """q, k and v are row slices of one fused prediction, so they differ (issue: they used to be
    equal to 2e-8); ghn.fused=false (the ablation) reproduces the old identical predictions."""
    g = graph_for_spec(get_preset(arch))
    with torch.no_grad():
        p = GHN(GHNConfig(preset="logah-t"), seed=0)(g)[0]
        old = GHN(GHNConfig(preset="logah-t", fused=False), seed=0)(g)[0]
    for i in range(get_preset(arch).n_layer):
        q, k, v = (p[f"blocks.{i}.attn.{r}.weight"] for r in "qkv")
        for a, b in ((q, k), (q, v), (k, v)):
            assert (a - b).abs().max() > 0.1 * a.abs().max()
        qb, kb = p[f"blocks.{i}.attn.q.bias"], p[f"blocks.{i}.attn.k.bias"]
        assert not torch.equal(qb, kb)
        torch.testing.assert_close(old[f"blocks.{i}.attn.q.weight"],
                                   old[f"blocks.{i}.attn.k.weight"], rtol=0, atol=0)


def test_random_ghn_predicts_distinct_llama_projections() -> None:
    """Llama declares q/k/v and gate/up fused too: k != v, gate != up (GQA: q has more rows)."""
    spec = get_preset("llama-tiny")
    g = graph_for_spec(spec)
    with torch.no_grad():
        p = GHN(GHNConfig(preset="logah-t"), seed=0)(g)[0]
    for i in range(spec.n_layer):
        pre = f"blocks.{i}"
        for a, b in (("attn.k", "attn.v"), ("mlp.gate", "mlp.fc")):
            wa, wb = p[f"{pre}.{a}.weight"], p[f"{pre}.{b}.weight"]
            assert wa.shape == wb.shape and (wa - wb).abs().max() > 0.1 * wa.abs().max()
        q, k = p[f"{pre}.attn.q.weight"], p[f"{pre}.attn.k.weight"]
        n = min(len(q), len(k))
        assert (q[:n] - k[:n]).abs().max() > 0.1 * q.abs().max()
