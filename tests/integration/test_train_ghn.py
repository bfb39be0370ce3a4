"""``logah train-ghn`` end to end on synthetic tokens: run folder, logs, held-out report, and a
checkpoint that ``load_ghn`` and ``logah predict`` accept."""

from __future__ import annotations

import json

import pytest
import torch
from finetune_synth import SyntheticImages, read_scalars, write_text_data
from ghn_synth import TINY_GHN, ghn_overrides

from logah.cli.main import main
from logah.config import ConfigError, load_config
from logah.config.runs import TrainGHNConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run shared by the tests below (6 steps, validation at steps 3 and 6)."""
    tmp = tmp_path_factory.mktemp("ghn")
    data = write_text_data(tmp / "data", 6_000, 1_500)
    # snapshot at 0.0001 min: due at the first step; at 1000 min: never in this run
    code = main(["train-ghn", *ghn_overrides(data, tmp / "runs"), "snapshot_minutes=[0.0001,1000]"])
    assert code == 0
    return tmp / "runs" / "train-ghn" / "g"


def test_snapshots_along_the_way_are_ghn_checkpoints(trained):
    from logah.ghn.io import load_ghn

    ckpts = trained / "checkpoints"
    index = json.loads((ckpts / "snapshots.json").read_text())
    assert [(d["minutes"], d["step"], d["file"]) for d in index[:1]] == [
        (0.0001, 1, "snapshot-0.0001min.ckpt")]
    assert index[1]["file"] == "last.ckpt" and index[1]["step"] == 6 and len(index) == 2
    snap = torch.load(ckpts / "snapshot-0.0001min.ckpt", map_location="cpu", weights_only=False)
    assert snap["global_step"] == 1
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    state = next(v for k, v in last["callbacks"].items() if k.startswith("Snapshots"))
    assert state["elapsed_s"] > 0 and len(state["done"]) == 1  # the clock survives a resume
    assert load_ghn(ckpts / "snapshot-0.0001min.ckpt").num_params() > 0
    assert not (ckpts / "snapshot-1000min.ckpt").exists()


def test_run_folder_holds_config_archs_checkpoint_and_heldout_report(trained):
    assert (trained / "config.yaml").is_file()
    doc = json.loads((trained / "archs.json").read_text())
    assert len(doc["train"]) == 24 and [h["kind"] for h in doc["heldout"]] == [
        "in_range", "in_range", "deeper", "wider"]
    train_keys = {json.dumps(doc["specs"][i], sort_keys=True) for i in doc["train"]}
    held_keys = {json.dumps(doc["specs"][h["spec"]], sort_keys=True) for h in doc["heldout"]}
    assert not train_keys & held_keys
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6
    assert all(k.startswith("ghn.") for k in ckpt["state_dict"])  # no target / baseline tensors
    assert ckpt["hyper_parameters"]["ghn"]["hid"] == 32
    report = json.loads((trained / "heldout.json").read_text())
    assert report["global_step"] == 6 and len(report["architectures"]) == 4
    for r in report["architectures"]:
        assert r["zero_shot_loss"] > 0 and r["random_init_loss"] > 0


def test_tensorboard_holds_the_ghn_tags(trained):
    scalars = read_scalars(trained)
    for tag in ("train/loss", "train/task_loss", "train/param_norm_reg", "train/grad_norm",
                "train/pred_param_norm", "perf/archs_per_s", "perf/tokens_per_s", "lr",
                "val/zero_shot_loss", "val/random_init_loss", "val/zero_shot_ppl",
                "val/random_init_ppl", "val/zero_shot_loss_beyond", "pred_norm/attn"):
        assert tag in scalars, (tag, sorted(scalars))
    # validation after steps 3 and 6 (Lightning logs it at the 0-based index of the last batch)
    assert [s for s, _ in scalars["val/zero_shot_loss"]] == [2, 5]
    assert any(t.startswith("train/task_loss_") and t != "train/task_loss" for t in scalars)
    # the regulariser is gamma * sum of Frobenius norms / m, logged beside its norm
    reg = dict(scalars["train/param_norm_reg"])
    norm = dict(scalars["train/pred_param_norm"])
    step = max(reg)
    assert reg[step] == pytest.approx(3e-5 * norm[step], rel=1e-4)
    # one Custom Scalars chart overlays zero-shot and random init
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    acc = EventAccumulator(str(trained), size_guidance={"tensors": 0})
    acc.Reload()
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for c in layout.category[0].chart}
    assert charts["loss: zero-shot vs random init"] == ["val/zero_shot_loss", "val/random_init_loss"]


def test_checkpoint_loads_with_load_ghn_and_predict_cli(trained, tmp_path):
    from logah.ghn.io import load_ghn

    ckpt = trained / "checkpoints" / "last.ckpt"
    ghn = load_ghn(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for k, v in ghn.state_dict().items():
        if f"ghn.{k}" in state:
            assert torch.equal(v, state[f"ghn.{k}"]), k
    out = tmp_path / "pred"
    code = main(["predict", "--ghn", str(ckpt), "--arch", "gpt2-tiny", "--out", str(out),
                 "--no-progress", "model.vocab_size=64", "model.n_ctx=16", "model.d_model=24",
                 "model.n_heads=2"])
    assert code == 0 and (out / "model.safetensors").is_file()


def test_task_shortcut_picks_the_conf_file_and_bad_keys_fail_in_one_line(capsys):
    from logah.cli.cmd_train_ghn import split_task

    path, rest = split_task(None, ["task=vit", "trainer.max_steps=3"])
    assert path.endswith("conf/train_ghn/vit.yaml") and rest == ["trainer.max_steps=3"]
    cfg = load_config(TrainGHNConfig, path, rest)
    assert cfg.model.arch.startswith("vit") and cfg.data.name == "fashion-mnist"
    with pytest.raises(ConfigError, match="task: 'bert' is not one of: gpt, vit"):
        split_task(None, ["task=bert"])
    assert main(["train-ghn", "archs.space.head_groups=[[3]]", "out_dir=/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: archs.space.head_groups: no group divides width") and \
        err.count("\n") == 1


def test_max_minutes_stops_early_then_still_validates_and_checkpoints(tmp_path, capsys):
    data = write_text_data(tmp_path / "data", 6_000, 1_500)
    args = ghn_overrides(data, tmp_path / "runs", name="t", steps=50)
    code = main(["train-ghn", *args, "max_minutes=0.0001", "trainer.limit_val_batches=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "stopped at step 1 of 50 (max_minutes=0.0001)" in out and "mean: zero-shot" in out
    run = tmp_path / "runs" / "train-ghn" / "t"
    assert json.loads((run / "heldout.json").read_text())["global_step"] == 1
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 1


def test_vit_task_trains_on_images_with_task_patch_sizes_and_accuracy(tmp_path):
    from logah.lit.train_ghn import train_ghn

    overrides = [
        *TINY_GHN, "model.arch=vit-tiny", "model.image_size=16", "model.num_classes=10",
        "archs.space.bands=[{layers: [1, 2], width: [16, 32]}]", "archs.space.head_groups=[[2]]",
        "archs.space.patch_sizes=[4, 8]", "archs.num_train=8", "archs.num_heldout=2",
        "archs.num_beyond=2", f"out_dir={tmp_path}", "trainer.max_steps=3",
        "trainer.val_check_interval=3", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
    ]
    cfg = load_config(TrainGHNConfig, None, overrides)
    result = train_ghn(cfg, datamodule=SyntheticImages(size=16, batch_size=16))
    assert result.global_step == 3
    report = result.heldout
    assert {r["patch_size"] for r in report} <= {4, 8} and all("zero_shot_acc1" in r for r in report)
    assert {"val/zero_shot_acc1", "val/random_init_acc1", "perf/images_per_s"} <= set(
        read_scalars(result.run_dir))
