"""``pretrained:NAME``: the shipped registry, the card format, ``logah export-ghn`` and safe loading."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import logah
from logah.cli.main import main
from logah.config import get_preset, save_config
from logah.config.ghn import GHNConfig
from logah.config.model import resolve_spec
from logah.config.runs import TrainGHNConfig
from logah.ghn import GHN
from logah.ghn import pretrained as reg
from logah.ghn.io import GHNLoadError, load_ghn
from logah.graph import graph_for_spec
from logah.nn.io import load_state

SHIPPED = dict(reg._entries())  # the package's own entries, before any test adds a root


def _fake_run(root, ghn: GHN, family: str = "gpt2"):
    """A finished train-ghn run folder: config, checkpoint, held-out report, TensorBoard events."""
    from torch.utils.tensorboard import SummaryWriter

    run = root / "runs" / "train-ghn" / "g"
    (run / "checkpoints").mkdir(parents=True)
    cfg = TrainGHNConfig(name="g")
    if family == "vit":
        cfg.model.arch, cfg.data.name = "vit-tiny", "fashion-mnist"
    save_config(cfg, run / "config.yaml")
    torch.save({"state_dict": {f"ghn.{k}": v for k, v in ghn.state_dict().items()},
                "hyper_parameters": {"ghn": ghn.config.to_dict()}}, run / "checkpoints/last.ckpt")
    archs = [dict(kind=k, n_layer=2, d_model=32, n_heads=4, num_params=1000, zero_shot_loss=z,
                  random_init_loss=10.0) for k, z in (("in_range", 7.0), ("deeper", 8.0))]
    (run / "heldout.json").write_text(json.dumps({"global_step": 40, "architectures": archs}))
    w = SummaryWriter(str(run))
    for step, t in ((10, 1000.0), (40, 1000.0 + 31 * 60)):  # 31 minutes of training
        w.add_scalar("train/loss", 1.0, step, walltime=t)
    w.close()
    return run


@pytest.fixture
def tiny_ghn():
    return GHN(GHNConfig(preset="logah-t", hid=16, layers=1, heads=2, rank=4, max_width=1024),
               seed=5)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A temporary registry root searched before the package's own."""
    root = tmp_path / "registry"
    root.mkdir()
    monkeypatch.setattr(reg, "ROOTS", [root, *reg.ROOTS])
    return root


def _export(tmp_path, run, registry, name="tiny-gpt", *extra):
    return main(["export-ghn", str(run), "--name", name, "--out", str(registry),
                 "--command", "logah train-ghn --config conf/train_ghn/gpt.yaml", *extra])


def test_export_then_load_by_name(tmp_path, registry, tiny_ghn, capsys):
    run = _fake_run(tmp_path, tiny_ghn)
    assert _export(tmp_path, run, registry) == 0
    assert "held-out zero-shot 7.5000 vs random init 10.0000" in capsys.readouterr().out
    entry = registry / "tiny-gpt"
    assert sorted(p.name for p in entry.iterdir()) == ["README.md", "card.json", "ghn.json",
                                                        "ghn.safetensors"]
    card = reg.pretrained_ghns()["tiny-gpt"]
    assert card["family"] == "gpt2" and card["data"] == "brown"
    assert card["training"]["steps"] == 40 and card["training"]["minutes"] == 31.0
    assert card["heldout"]["zero_shot_loss"] == 7.5 and card["heldout"]["random_init_loss"] == 10
    assert card["ghn"]["num_params"] == tiny_ghn.num_params()
    assert card["architecture_space"]["archs"]["space"]["bands"]
    assert "**7.5000** (random init 10.0000)" in (entry / "README.md").read_text()
    for ghn in (load_ghn("pretrained:tiny-gpt"), logah.load_ghn("pretrained:tiny-gpt")):
        want, got = tiny_ghn.state_dict(), ghn.state_dict()
        assert all(torch.equal(want[k], got[k]) for k in want) and not ghn.training


def test_loading_a_pretrained_entry_never_unpickles(tmp_path, registry, tiny_ghn, monkeypatch):
    assert _export(tmp_path, _fake_run(tmp_path, tiny_ghn), registry) == 0

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert load_ghn("pretrained:tiny-gpt").num_params() == tiny_ghn.num_params()


def test_predict_cli_and_init_from_ghn_accept_pretrained(tmp_path, registry, tiny_ghn):
    assert _export(tmp_path, _fake_run(tmp_path, tiny_ghn), registry) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--ghn", "pretrained:tiny-gpt", "--arch", "gpt2-tiny", "--out",
                 str(out), "--no-progress", "--hf", "no"]) == 0
    want = dict(tiny_ghn.predict(graph_for_spec(get_preset("gpt2-tiny"))))
    got = load_state(out)
    assert all(torch.equal(got[n], t) for n, t in want.items())
    from logah.nn import build_model

    model, report = logah.init_from_ghn(build_model(get_preset("gpt2-tiny"), seed=0),
                                        "pretrained:tiny-gpt")
    assert all(torch.equal(model.get_parameter(n), t) for n, t in want.items())


def test_unknown_name_lists_the_valid_ones(tmp_path, registry, tiny_ghn, capsys):
    assert _export(tmp_path, _fake_run(tmp_path, tiny_ghn), registry) == 0
    with pytest.raises(GHNLoadError, match=r"unknown pretrained GHN 'nope' \(valid: .*tiny-gpt"):
        load_ghn("pretrained:nope")
    assert main(["predict", "--ghn", "pretrained:nope", "--arch", "gpt2-tiny", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ghn pretrained:nope: unknown") and err.count("\n") == 1


def test_card_must_describe_its_weights(tmp_path, registry, tiny_ghn):
    assert _export(tmp_path, _fake_run(tmp_path, tiny_ghn), registry) == 0
    f = registry / "tiny-gpt" / "card.json"
    card = json.loads(f.read_text())
    f.write_text(json.dumps(card | {"ghn": {**card["ghn"], "num_params": 12}}))
    with pytest.raises(GHNLoadError, match="card says 12 parameters"):
        load_ghn("pretrained:tiny-gpt")
    del card["heldout"]
    f.write_text(json.dumps(card))
    with pytest.raises(GHNLoadError, match="model card lacks heldout"):
        load_ghn("pretrained:tiny-gpt")


def test_export_errors_write_nothing(tmp_path, registry, tiny_ghn, capsys):
    run = _fake_run(tmp_path, tiny_ghn, family="vit")
    (run / "heldout.json").unlink()
    assert _export(tmp_path, run, registry, "v") == 2
    assert "heldout.json: cannot read the held-out report" in capsys.readouterr().err
    assert _export(tmp_path, tmp_path, registry, "v") == 2
    assert "not a logah train-ghn run folder" in capsys.readouterr().err
    assert list(registry.iterdir()) == []


def test_shipped_registry_loads_matches_cards_and_predicts_finite_tensors():
    """Every GHN shipped in the package: loads (safetensors + JSON), has its card's parameter
    count, and predicts finite tensors for its card's task template."""
    for name in SHIPPED:
        card = reg.read_card(SHIPPED[name])
        ghn = load_ghn(f"pretrained:{name}")
        assert ghn.num_params() == card["ghn"]["num_params"], name
        assert card["heldout"]["zero_shot_loss"] < card["heldout"]["random_init_loss"], name
        from logah.config.model import ModelConfig

        spec = resolve_spec(ModelConfig(**card["architecture_space"]["template"]))
        assert spec.family == card["family"], name
        for pname, t in ghn.predict(graph_for_spec(spec)):
            assert torch.isfinite(t).all(), (name, pname)
