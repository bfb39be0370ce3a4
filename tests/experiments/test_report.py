"""The runner's bookkeeping without training: done-markers, the rerun of only a missing cell,
and the protocol report of every target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import run as runner
from exp_plan import Options, load_experiment, plan
from exp_report import write_report
from run import is_done, marker_path

ROOT = Path(__file__).resolve().parents[2]
# val/loss drop per 100 steps, by init and learning rate (random is best at 0.01)
SLOPES = {"random": {0.003: 0.20, 0.01: 0.25}, "logah-t": {0.003: 0.40, 0.01: 0.30}}


def _fake_cell(stage):
    """What a finished fine-tuning cell leaves: events, config.yaml, exported weights."""
    from torch.utils.tensorboard import SummaryWriter

    run = stage.output.parents[1]
    slope = SLOPES.get(stage.label, {0.003: 0.1, 0.01: 0.1})[stage.lr] + 0.01 * stage.seed
    w = SummaryWriter(str(run))
    for step in [0, *range(99, 1500, 100)]:
        w.add_scalar("val/loss", 8.0 - slope * min(step + 1, 1000) / 100, step)
    w.close()
    init = "random" if stage.label == "random" else f"x:{stage.label}"
    (run / "config.yaml").write_text(f"seed: {stage.seed}\ninit: {init}\noptim: {{lr: {stage.lr}}}\n")
    stage.output.parent.mkdir(parents=True, exist_ok=True)
    stage.output.write_text("weights")


def _finish(stage, out):
    if stage.group is not None:
        _fake_cell(stage)
    else:
        stage.output.parent.mkdir(parents=True, exist_ok=True)
        stage.output.write_text("done")
    m = marker_path(out, stage)
    m.parent.mkdir(parents=True, exist_ok=True)
    m.write_text(json.dumps({"id": stage.id, "fingerprint": stage.fingerprint(),
                             "deps": stage.deps_state(),
                             "wall_s": 2.0, "cpu_s": 3.0}))


@pytest.fixture
def finished(tmp_path, monkeypatch):
    """cpu-brown planned with 2 seeds x 2 rates, every stage finished (fake outputs)."""
    monkeypatch.chdir(ROOT)
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown")
    out = tmp_path / "runs"
    stages = plan(exp, Options(out_dir=out))
    for s in stages:
        _finish(s, out)
    return exp, stages, out


def test_rerun_runs_only_the_missing_cell(finished, tmp_path, monkeypatch, capsys):
    exp, stages, out = finished
    lost = next(s for s in stages if s.id.endswith("gpt2-4x64-mimetic-lr0.01-s1"))
    lost.output.unlink()  # e.g. the cell crashed before exporting its weights
    calls = []

    def fake_launch(argv, env, log):
        calls.append(argv)
        stage = next(s for s in stages if s.argv == argv[len(runner.logah_argv()):])
        _fake_cell(stage)
        return 0, 1.5

    monkeypatch.setattr(runner, "launch", fake_launch)
    res = tmp_path / "res"
    assert runner.main([str(exp.path), "--out-dir", str(out), "--results", str(res)]) == 0
    assert len(calls) == 1 and f"name=cpu-brown-gpt2-4x64-mimetic-lr0.01-s1" in calls[0]
    assert "[skip]" in capsys.readouterr().out
    # --only with a glob reruns exactly the matching cells, even when done
    assert runner.main([str(exp.path), "--out-dir", str(out), "--results", str(res),
                        "--only", "*nothing*"]) == 2
    assert "matches no stage id" in capsys.readouterr().err


def test_a_failed_cell_does_not_stop_the_others_with_keep_going(finished, tmp_path, monkeypatch,
                                                                capsys):
    exp, stages, out = finished
    cells = [s for s in stages if s.label == "ghn3-t"][:2]
    for s in cells:
        s.output.unlink()
    monkeypatch.setattr(runner, "launch", lambda argv, env, log: (1, 0.0))
    res = tmp_path / "res"
    assert runner.main([str(exp.path), "--out-dir", str(out), "--results", str(res),
                        "--keep-going"]) == 1
    err = capsys.readouterr().err
    assert all(s.id in err for s in cells)
    data = json.loads((res / "results.json").read_text())
    g = data["groups"]["cpu-brown-gpt2-4x64"]
    assert sorted(g["missing_cells"]) == sorted(s.id for s in cells)
    assert {r["label"] for r in g["protocol"]["rows"]} == {
        "random", "mimetic", "logah-t", "grow-gpt2-2x32"}  # ghn3-t is left out until its cells exist
    assert "--only *gpt2-4x64-ghn3-t-lr0.003-s0 *gpt2-4x64-ghn3-t-lr0.003-s1" in \
        (res / "README-snippet.md").read_text()


def test_report_has_the_protocol_table_unigram_line_and_plots(finished, tmp_path):
    exp, stages, out = finished
    res = tmp_path / "res"
    records = [{"id": s.id, "wall_s": 10.0, "cpu_s": 15.0, "jobs": 2} for s in stages]
    write_report([exp], stages, records, res, total_wall=300.0, argv=["run.py"])
    data = json.loads((res / "results.json").read_text())
    g = data["groups"]["cpu-brown-gpt2-4x64"]
    rows = {r["label"]: r for r in g["protocol"]["rows"]}
    assert rows["random"]["best_lr"] == 0.01 and rows["logah-t"]["best_lr"] == 0.003
    assert rows["random"]["seeds"] == [0, 1]
    # random at 0.01 ends at 8 - 2.5 (seed 0) and 8 - 2.6 (seed 1); logah-t is 1.6x faster
    assert rows["random"]["final"][0] == pytest.approx(5.45, abs=1e-5)
    assert rows["logah-t"]["speedups"] == pytest.approx([999 / 624, 999 / (2.6 / 0.41 * 100 - 1)],
                                                        rel=1e-3)
    table = (res / "cpu-brown-gpt2-4x64" / "table.md").read_text()
    assert "| logah-t | **0.003** (0.003: 3.950, 0.01: 4.950) | 2 |" in table
    if (ROOT / "data" / "brown-v4k" / "val.bin").is_file():
        assert g["unigram_val_nats"] == pytest.approx(5.642, abs=1e-3)
        assert "unigram (val split): 5.642" in table
    for f in ("curves.png", "protocol.json"):
        assert (res / "cpu-brown-gpt2-4x64" / f).is_file()
    snippet = (res / "README-snippet.md").read_text()
    assert "target gpt2 4 layers x 64 (4 heads, MLP 256)" in snippet
    assert "logah-t: L <= 3, d <= 56" in snippet
    # the invocation's own wall time (stages ran two at a time), not the sum of the stages'
    assert f"5 min wall, 2 stage(s) at a time; {15 * len(stages) / 60:.0f} min CPU" in snippet
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
    cell = stages["cpu-brown/finetune/gpt2-4x64-logah-t-lr0.003-s0"]
    ckpt = tmp_path / "train-ghn" / "cpu-brown-logah-t" / "checkpoints" / "last.ckpt"
    assert cell.deps == [ckpt]
    assert stages["cpu-brown/finetune/gpt2-4x64-random-lr0.003-s0"].deps == []
    for p in (ckpt, cell.output):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("v1")
    marker = marker_path(tmp_path, cell)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": cell.fingerprint(), "deps": cell.deps_state(),
                                  "wall_s": 1.0}))
    assert is_done(tmp_path, cell)
    ckpt.write_text("v2, the GHN trained again")
    assert is_done(tmp_path, cell) is None


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


def test_steps_saved_vs_ghn_training_minutes(tmp_path):
    """The GHN-length curve: one point per snapshot (and the final checkpoint), steps saved
    against tuned random paired by seed, None where a seed never reaches the target."""
    from exp_report import ghn_length_points, plot_ghn_length

    from logah.report.protocol import Cell, protocol

    steps = [0, 100, 200, 300, 400]

    def cell(label, seed, values):
        return Cell(label, 1e-3, seed, tmp_path / f"{label}-{seed}",
                    {"val/loss": (steps, values)})

    cells = [cell("random", 0, [9, 8, 7, 6, 5]), cell("random", 1, [9, 8, 7, 6, 5]),
             cell("logah-t-5min", 0, [8, 7, 6, 5.5, 5.2]), cell("logah-t-5min", 1, [8, 7, 6, 5.5, 5.2]),
             cell("logah-t-15min", 0, [7, 6, 5, 4.5, 4.2]), cell("logah-t-15min", 1, [7, 6, 5.5, 4.8, 4.4]),
             cell("logah-t", 0, [6, 5, 4.5, 4.2, 4.0]), cell("logah-t", 1, [6, 5, 4.5, 4.2, 4.0])]
    index = tmp_path / "snapshots.json"
    index.write_text(json.dumps([
        {"minutes": 5, "step": 50, "elapsed_s": 301.0, "file": "snapshot-5min.ckpt"},
        {"minutes": 15, "step": 150, "elapsed_s": 905.0, "file": "snapshot-15min.ckpt"},
        {"minutes": 31.5, "step": 300, "elapsed_s": 1890.0, "file": "last.ckpt"}]))
    points = ghn_length_points(index, protocol(cells), "logah-t")
    assert [p["label"] for p in points] == ["logah-t-5min", "logah-t-15min", "logah-t"]
    assert points[0]["minutes"] == pytest.approx(301 / 60) and points[0]["mean"] is None
    assert points[1]["steps_saved"] == pytest.approx([400 - 200, 400 - (200 + 50 / 0.7)])
    assert points[2]["steps_saved"] == pytest.approx([300, 300]) and points[2]["sd"] == 0.0
    # final loss against tuned random's (5.0 on both seeds): 5.2 behind, then 4.3 and 4.0 ahead
    assert [p["final_gap"] for p in points] == pytest.approx([0.2, -0.7, -1.0])
    plot_ghn_length(points, tmp_path / "curve.png", "t")
    assert (tmp_path / "curve.png").stat().st_size > 5_000
