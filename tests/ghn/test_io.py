"""GHN save/load: directories, random:<preset>, Lightning checkpoints; strict, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from logah.config.ghn import GHNConfig
from logah.ghn import GHN
from logah.ghn.io import GHN_CONFIG, GHN_WEIGHTS, GHNLoadError, load_ghn, save_ghn


def _same_predictions(a: GHN, b: GHN, graph) -> None:
    with torch.no_grad():
        pa, pb = a(graph)[0], b(graph)[0]
    for n in pa:
        torch.testing.assert_close(pa[n], pb[n], rtol=1e-5, atol=1e-6, msg=n)


def test_random_preset_is_seeded_and_in_eval_mode() -> None:
    a, b = load_ghn("random:ghn2"), load_ghn("random:ghn2")
    c = load_ghn("random:ghn2", seed=1)
    assert not a.training and a.config.preset == "ghn2"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_save_load_roundtrip(tmp_path, tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset="logah-t", rank=8, max_width=4096), seed=3)
    save_ghn(ghn, tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [GHN_CONFIG, GHN_WEIGHTS]
    meta = json.loads((tmp_path / "g" / GHN_CONFIG).read_text())
    assert meta["config"]["rank"] == 8 and meta["num_params"] == ghn.num_params()
    for path in (tmp_path / "g", tmp_path / "g" / GHN_WEIGHTS):
        loaded = load_ghn(path)
        assert loaded.config == ghn.config
        _same_predictions(ghn, loaded, tiny_graphs[1])


def test_lightning_checkpoint(tmp_path, tiny_graphs) -> None:
    ghn = GHN(GHNConfig(preset="ghn2"), seed=0)
    cfg = ghn.config.to_dict() | {"n_types": None}  # as a trainer may store the resolved config
    torch.save({"state_dict": {f"ghn.{k}": v for k, v in ghn.state_dict().items()}
                | {"other.thing": torch.zeros(1)},
                "hyper_parameters": {"ghn": cfg, "gamma": 3e-5}, "epoch": 3},
               tmp_path / "last.ckpt")
    loaded = load_ghn(tmp_path / "last.ckpt")
    _same_predictions(ghn, loaded, tiny_graphs[0])


def test_load_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(GHNLoadError, match="unknown preset 'logah-xxl'"):
        load_ghn("random:logah-xxl")
    with pytest.raises(GHNLoadError, match="no such file"):
        load_ghn(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GHNLoadError, match=GHN_CONFIG):
        load_ghn(tmp_path / "empty")
    torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
    with pytest.raises(GHNLoadError, match=r"hyper_parameters\['ghn'\]"):
        load_ghn(tmp_path / "x.ckpt")
    # Weights that do not fit the config: one error listing the tensors.
    save_ghn(GHN(GHNConfig(preset="ghn2"), seed=0), tmp_path / "g")
    state = load_file(str(tmp_path / "g" / GHN_WEIGHTS))
    state["gru_extra"] = torch.zeros(2)
    state.pop("ln.weight")
    save_file(state, str(tmp_path / "g" / GHN_WEIGHTS))
    with pytest.raises(GHNLoadError, match="missing ln.weight; unexpected gru_extra"):
        load_ghn(tmp_path / "g")
    (tmp_path / "g" / GHN_CONFIG).write_text(json.dumps({"config": {"preset": "ghn2", "hidd": 3}}))
    with pytest.raises(GHNLoadError, match="unknown key"):
        load_ghn(tmp_path / "g")
