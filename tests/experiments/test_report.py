"""The runner's bookkeeping without training: done-markers, compare of each target, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

from exp_plan import Options, load_experiment, plan
from exp_report import write_report
from run import compare_groups, is_done, marker_path

ROOT = Path(__file__).resolve().parents[2]


def _fake_finetune_runs(stages, slopes):
    """Event files + config.yaml in every fine-tuning run folder (no training)."""
    from torch.utils.tensorboard import SummaryWriter

    for s in stages:
        if s.group is None:
            continue
        run = s.output.parents[1]
        w = SummaryWriter(str(run))
        for step in range(24, 200, 25):  # Lightning's val steps with val_check_interval=25
            loss = 10 - slopes[s.label] * (step + 1)
            w.add_scalar("val/loss", loss, step)
            w.add_scalar("val/ppl", math.exp(loss), step)
        w.close()
        init = "random" if s.label == "random" else "weights:x"
        (run / "config.yaml").write_text(f"name: {run.name}\nseed: 0\ninit: {init}\n")


def test_compare_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    stages = plan(exp, Options(out_dir=tmp_path / "runs"))
    # random: 10 -> 8 over 200 steps; logah-t twice as fast (reaches 8.0 at logged step 99);
    # ghn3-t never gets there; grow is below 8 at its first evaluation (step 24): a lower bound.
    slopes = {"random": 0.01, "logah-t": 0.02, "ghn3-t": 0.005, "grow-gpt2-2x64": 0.09}
    _fake_finetune_runs(stages, slopes)
    res = tmp_path / "res"
    groups = compare_groups(stages, res, dry_run=False)
    assert list(groups) == ["cpu-brown-gpt2-4x96"]
    records = [{"id": s.id, "wall_s": 10.0, "cpu_s": 15.0} for s in stages]
    write_report([exp], stages, records, groups, res, total_wall=1.0, argv=["run.py"])
    data = json.loads((res / "results.json").read_text())
    rows = {r["label"]: r for r in data["groups"]["cpu-brown-gpt2-4x96"]["compare"]["rows"]}
    assert rows["random"]["speedup"] == 1.0
    # steps are as logged (Lightning logs validation at global_step - 1): 199 / 99
    assert rows["logah-t"]["steps_to_target"] == 99.0
    assert abs(rows["logah-t"]["speedup"] - 199 / 99) < 1e-6
    assert rows["ghn3-t"]["steps_to_target"] is None
    assert rows["grow-gpt2-2x64"]["speedup_is_lower_bound"]
    snippet = (res / "README-snippet.md").read_text()
    # no step-0 point in these fake runs: the start column names the first step
    assert "| logah-t | 9.500 (step 24) | 6.000 | 6.000 | 403.4 | 99 of 199 | **2.01x** |" in snippet
    assert "| ghn3-t |" in snippet and "| not reached | **-** |" in snippet
    assert "**>= 8.29x**" in snippet
    assert "target gpt2 4 layers x 96 (4 heads, MLP 384)" in snippet
    assert "logah-t: L <= 3, d <= 80" in snippet
    assert (res / "cpu-brown-gpt2-4x96" / "curves.png").is_file()
    timings = (res / "timings.md").read_text()
    assert f"| **all stages** | **{10 * len(stages)}** | **{15 * len(stages)}** | |" in timings


def test_done_marker_needs_same_command_config_and_output(tmp_path):
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    stage = plan(exp, Options(out_dir=tmp_path))[0]
    assert is_done(tmp_path, stage) is None
    marker = marker_path(tmp_path, stage)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": stage.fingerprint(), "wall_s": 3.0}))
    assert is_done(tmp_path, stage) is None  # output missing
    stage.output.parent.mkdir(parents=True)
    stage.output.write_text("x")
    assert is_done(tmp_path, stage)["wall_s"] == 3.0
    stage.argv.append("seed=9")  # another command: not done
    assert is_done(tmp_path, stage) is None


def test_rewritten_upstream_output_undoes_downstream(tmp_path):
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    stages = {s.id: s for s in plan(exp, Options(out_dir=tmp_path))}
    pred = stages["cpu-brown/predict/gpt2-4x96-logah-t"]
    assert pred.deps == [tmp_path / "train-ghn" / "cpu-brown-logah-t" / "checkpoints" / "last.ckpt"]
    ft = stages["cpu-brown/finetune/gpt2-4x96-logah-t"]
    assert ft.deps == [tmp_path / "predict" / "cpu-brown-gpt2-4x96-logah-t" / "model.safetensors"]
    assert stages["cpu-brown/finetune/gpt2-4x96-random"].deps == []
    for p in (pred.deps[0], pred.output):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("v1")
    marker = marker_path(tmp_path, pred)
    marker.parent.mkdir(parents=True)
    record = {"fingerprint": pred.fingerprint(), "deps": pred.deps_state(), "wall_s": 1.0}
    marker.write_text(json.dumps(record))
    assert is_done(tmp_path, pred)
    pred.deps[0].write_text("v2, the GHN trained again")
    assert is_done(tmp_path, pred) is None


def test_stale_finished_run_is_set_aside_but_interrupted_one_kept(tmp_path):
    from run import set_aside_stale

    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    stage = plan(exp, Options(out_dir=tmp_path))[0]  # train-ghn: folder = the run folder
    assert stage.folder == tmp_path / "train-ghn" / "cpu-brown-ghn3-t"
    stage.output.parent.mkdir(parents=True)
    stage.output.write_text("old ckpt")
    assert set_aside_stale(tmp_path, stage) is None  # no marker: interrupted, resume it
    assert stage.output.exists()
    marker = marker_path(tmp_path, stage)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": "another config"}))
    moved = set_aside_stale(tmp_path, stage)
    assert moved.parent == tmp_path / ".stale" and (moved / "checkpoints" / "last.ckpt").exists()
    assert not stage.folder.exists() and not marker.exists()
