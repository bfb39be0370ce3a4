"""The init choice: parsing, random/orthogonal, strict weights loading and spec adoption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from logah.config.errors import ConfigError
from logah.config.model import resolve_spec
from logah.config.specs import get_preset
from logah.lit.init import (
    InitChoice,
    build_target,
    model_config_for,
    parse_init,
    resolve_init_spec,
)
from logah.nn import build_model
from logah.nn.io import WeightsError, save_weights

GPT = get_preset("gpt2-tiny").replace(vocab_size=50, n_ctx=16, n_layer=1)
VIT = get_preset("vit-tiny").replace(n_layer=1, num_classes=7)


def test_parse_init(tmp_path):
    assert parse_init("random") == InitChoice("random")
    assert parse_init("orthogonal") == InitChoice("orthogonal")
    assert parse_init(f"weights:{tmp_path}") == InitChoice("weights", tmp_path)
    for bad, msg in [("xavier", "is not one of"), ("weights:", "needs a path"),
                     (f"weights:{tmp_path}/none", "no such file")]:
        with pytest.raises(ConfigError, match=f"init: .*{msg}|{msg}"):
            parse_init(bad)


def test_random_is_seeded_and_orthogonal_is_orthogonal():
    a = build_target(GPT, InitChoice("random"), seed=3)
    b = build_target(GPT, InitChoice("random"), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    o = build_target(GPT, InitChoice("orthogonal"), seed=3)
    w = o.blocks[0].mlp.fc.weight  # (d_mlp, d_model): orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1]), atol=1e-5)


@pytest.mark.parametrize("spec", [GPT, VIT], ids=["gpt2", "vit"])
@pytest.mark.parametrize("form", ["dir", "file", "hf"])
def test_weights_round_trip_reproduces_logits(tmp_path, spec, form):
    src = build_model(spec, seed=7)
    out = save_weights(src.state_dict(), spec, tmp_path / "w", hf=form == "hf")
    path = {"dir": out, "file": out / "model.safetensors", "hf": out / "hf"}[form]
    init = parse_init(f"weights:{path}")
    assert resolve_init_spec(spec, init, model_given=True) == spec
    model = build_target(spec, init, seed=0)
    x = (torch.randint(0, spec.vocab_size, (2, 16)) if spec.family == "gpt2"
         else torch.randn(2, spec.in_chans, spec.image_size, spec.image_size))
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_wrong_shape_lists_the_tensors(tmp_path):
    from safetensors.torch import save_file

    state = build_model(GPT, seed=0).state_dict()
    state["blocks.0.attn.q.weight"] = torch.zeros(3, 3)
    del state["ln_f.bias"]
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError) as e:
        build_target(GPT, parse_init(f"weights:{tmp_path / 'w.safetensors'}"), seed=0)
    msg = str(e.value)
    assert "missing ln_f.bias" in msg and "blocks.0.attn.q.weight: shape [3, 3]" in msg


def test_a_different_recorded_spec_is_adopted_or_refused(tmp_path):
    grown = GPT.replace(d_mlp=96, n_layer=2)
    save_weights(build_model(grown, seed=0).state_dict(), grown, tmp_path / "w", hf=False)
    init = parse_init(f"weights:{tmp_path / 'w'}")
    assert resolve_init_spec(GPT, init, model_given=False) == grown
    with pytest.raises(ConfigError, match=r"n_layer: 1 != 2; d_mlp: 256 != 96"):
        resolve_init_spec(GPT, init, model_given=True)
    # The adopted spec is written back as an explicit model config that resolves to it.
    assert resolve_spec(model_config_for(grown)) == grown
    assert resolve_spec(model_config_for(VIT)) == VIT


# --- the baseline inits of issue 15 -----------------------------------------------------------

SMALL = get_preset("gpt2-tiny").replace(vocab_size=50, n_ctx=16, n_layer=2, d_model=32,
                                        n_heads=2, d_qk=16, d_v=16, d_mlp=64)
BIG = SMALL.replace(n_layer=4, d_model=64, n_heads=4, d_mlp=128)  # 2x deeper, 2x wider


def _small_weights(tmp_path, hf=False):
    src = build_model(SMALL, seed=11)
    return src, save_weights(src.state_dict(), SMALL, tmp_path / "small", hf=hf)


def _logits(model, spec, seed=0):
    x = torch.randint(0, spec.vocab_size, (2, 16), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def test_parse_new_kinds(tmp_path):
    assert parse_init("mimetic") == InitChoice("mimetic")
    for kind in ("grow", "hyperclone", "stack", "ghn"):
        assert parse_init(f"{kind}:{tmp_path}") == InitChoice(kind, tmp_path)
    assert parse_init("ghn:random:logah-t").path == Path("random:logah-t")
    with pytest.raises(ConfigError, match="init: stack: needs a path"):
        parse_init("stack:")
    with pytest.raises(ConfigError, match="no such file"):
        parse_init(f"hyperclone:{tmp_path}/none")
    with pytest.raises(ConfigError, match="is not one of: random, orthogonal, mimetic, weights:PATH"):
        parse_init("clone:x")


def test_mimetic_sets_attention_products_and_keeps_the_rest_seeded():
    spec = GPT.replace(n_heads=1, d_qk=256, d_v=256)  # one full-width head: exact products
    rnd = build_target(spec, InitChoice("random"), seed=3)
    mim = build_target(spec, InitChoice("mimetic"), seed=3)
    assert torch.equal(rnd.wte.weight, mim.wte.weight)  # only attention is replaced
    a = mim.blocks[0].attn
    qk = a.q.weight.T @ a.k.weight
    assert abs(torch.diagonal(qk).mean().item() - 0.7) < 0.05
    assert abs(torch.diagonal(a.proj.weight @ a.v.weight).mean().item() + 0.4) < 0.05
    again = build_target(spec, InitChoice("mimetic"), seed=3)
    assert torch.equal(again.blocks[0].attn.q.weight, a.q.weight)


@pytest.mark.parametrize("hf", [False, True], ids=["logah", "hf-dir"])
def test_grow_and_hyperclone_preserve_the_source_logits(tmp_path, hf):
    src, out = _small_weights(tmp_path, hf)
    path = out / "hf" if hf else out
    want = _logits(src, SMALL)
    wide = BIG.replace(n_layer=2)
    for kind, target in (("grow", BIG), ("hyperclone", wide)):
        init = parse_init(f"{kind}:{path}")
        spec = resolve_init_spec(target, init, model_given=True)
        assert spec.replace(ln_eps=target.ln_eps) == target
        model = build_target(spec, init, seed=0)
        assert (_logits(model, spec) - want).abs().max().item() < 1e-4, kind
    assert resolve_init_spec(BIG, parse_init(f"grow:{path}"), True).ln_eps == pytest.approx(0.5e-5)


def test_stack_maps_layers_and_clones_width(tmp_path):
    src, out = _small_weights(tmp_path)
    init = parse_init(f"stack:{out}")
    spec = resolve_init_spec(BIG, init, model_given=True)
    model = build_target(spec, init, seed=0)
    wide = build_target(BIG.replace(n_layer=2), parse_init(f"hyperclone:{out}"), seed=0)
    for j in range(4):  # G_stack: layer j is the (cloned) small model's layer j mod 2
        assert torch.equal(model.blocks[j].mlp.fc.weight, wide.blocks[j % 2].mlp.fc.weight)
    with pytest.raises(Exception, match="width only; use init=stack:PATH"):
        resolve_init_spec(BIG, parse_init(f"hyperclone:{out}"), model_given=True)


def test_noise_is_seeded_and_breaks_the_copies(tmp_path):
    from logah.config.runs import InitOptions

    _, out = _small_weights(tmp_path)
    wide = BIG.replace(n_layer=2)
    noisy = InitOptions(noise=0.1)
    a = build_target(wide, parse_init(f"hyperclone:{out}"), seed=1, opts=noisy)
    b = build_target(wide, parse_init(f"hyperclone:{out}"), seed=1, opts=noisy)
    c = build_target(wide, parse_init(f"hyperclone:{out}"), seed=1)
    w = a.blocks[0].mlp.fc.weight
    assert torch.equal(w, b.blocks[0].mlp.fc.weight)
    assert not torch.equal(w[:, :32], w[:, 32:])
    cw = c.blocks[0].mlp.fc.weight
    assert torch.equal(cw[:, :32], cw[:, 32:])


def test_growth_source_needs_a_spec_and_a_fitting_target(tmp_path):
    from logah.grow import GrowError

    src, out = _small_weights(tmp_path)
    with pytest.raises(ConfigError, match="needs the source model's spec"):
        resolve_init_spec(BIG, parse_init(f"stack:{out / 'model.safetensors'}".replace(
            str(out), str(_bare(tmp_path, src)))), model_given=True)
    with pytest.raises(GrowError, match="not a multiple: d_model 32 -> 48"):
        resolve_init_spec(BIG.replace(d_model=48, d_qk=12, d_v=12), parse_init(f"stack:{out}"),
                          model_given=True)


def _bare(tmp_path, model):
    from safetensors.torch import save_file

    d = tmp_path / "bare"
    d.mkdir()
    save_file(model.state_dict(), str(d / "model.safetensors"))
    return d


def test_ghn_init_equals_logah_predict(tmp_path):
    """``ghn:`` predicts inline exactly what ``logah predict`` writes."""
    from logah.cli.main import main

    spec = SMALL.replace(n_layer=1)
    init = parse_init("ghn:random:logah-t")
    model = build_target(spec, init, seed=0)
    args = ["predict", "--ghn", "random:logah-t", "--arch", "gpt2-tiny", "--out", str(tmp_path / "p"),
            "--no-progress", "model.vocab_size=50", "model.n_ctx=16", "model.n_layer=1",
            "model.d_model=32", "model.n_heads=2", "model.d_mlp=64"]
    assert main(args) == 0
    ref = build_target(spec, parse_init(f"weights:{tmp_path / 'p'}"), seed=5)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), n


def test_ghn_keep_keeps_the_ordinary_init_of_matching_params_only():
    """``init_opts.ghn_keep``: matching parameters hold the seeded ordinary init, the rest the
    prediction, bit for bit; a glob that matches nothing is one error naming it."""
    from logah.config.runs import InitOptions

    init = parse_init("ghn:random:logah-t")
    spec = SMALL.replace(n_layer=1)
    predicted = dict(build_target(spec, init, seed=0).named_parameters())
    ordinary = dict(build_target(spec, InitChoice("random"), seed=0).named_parameters())
    mixed = build_target(spec, init, seed=0, opts=InitOptions(ghn_keep=["wte.*", "*.ln_1.*"]))
    for n in ("wte.weight", "blocks.0.ln_1.weight"):  # the two inits differ, so the check bites
        assert not torch.equal(ordinary[n], predicted[n]), n
    for n, p in mixed.named_parameters():
        ref = ordinary[n] if n == "wte.weight" or ".ln_1." in n else predicted[n]
        assert torch.equal(p, ref), n
    with pytest.raises(ConfigError, match=r"ghn_keep: 'tok_emb\.\*' matches no parameter"):
        build_target(spec, init, seed=0, opts=InitOptions(ghn_keep=["tok_emb.*"]))
