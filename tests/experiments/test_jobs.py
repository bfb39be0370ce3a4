"""``experiments/run.py --jobs N``: stages run side by side, each only after the stages it reads
from; per-stage CPU time and logs; failures of upstream stages fail their readers."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
import run as runner
from exp_plan import Options, load_experiment, plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stages(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    exp = load_experiment(ROOT / "conf" / "experiment" / "cpu-brown-long")
    return plan(exp, Options(out_dir=tmp_path / "runs", lrs=[0.01], seeds=[0]))


def test_upstream_links_cells_to_ghns_snapshots_and_small_models(stages):
    needs = runner.upstream(stages)
    ghn = "cpu-brown-long/train-ghn/logah-t"
    assert needs[ghn] == set() and needs["cpu-brown-long/finetune/gpt2-2x32"] == set()
    cell = "cpu-brown-long/finetune/gpt2-4x64-{}-lr0.01-s0"
    assert needs[cell.format("logah-t")] == {ghn}
    assert needs[cell.format("logah-t-5min")] == {ghn}  # a snapshot comes from the same run
    assert needs[cell.format("stack-gpt2-2x32")] == {"cpu-brown-long/finetune/gpt2-2x32"}
    assert needs[cell.format("random")] == set()


def _fake_run(log, fail=()):
    """A run_stage that records start/end times, and writes the stage's output."""
    lock = threading.Lock()

    def fake(stage, out_dir, dry_run, jobs=1):
        with lock:
            log.append(("start", stage.id, time.perf_counter()))
        time.sleep(0.05)
        if stage.id in fail:
            raise runner.ExperimentError(f"stage {stage.id} failed (exit 1)")
        stage.output.parent.mkdir(parents=True, exist_ok=True)
        stage.output.write_text("x")
        with lock:
            log.append(("end", stage.id, time.perf_counter()))
        return {"id": stage.id, "wall_s": 0.05}
    return fake


def test_jobs_overlap_but_never_start_before_upstream(stages, tmp_path, monkeypatch):
    log = []
    monkeypatch.setattr(runner, "run_stage", _fake_run(log))
    records, failed = runner.run_all(stages, tmp_path, False, False, jobs=2)
    assert failed == [] and [r["id"] for r in records] == [s.id for s in stages]
    t = {(kind, sid): at for kind, sid, at in log}
    for sid, ups in runner.upstream(stages).items():
        for up in ups:
            assert t[("start", sid)] >= t[("end", up)], (sid, up)
    # at most two at once, and at some point two at once
    live, most = 0, 0
    for kind, _, _ in sorted(log, key=lambda e: e[2]):
        live += 1 if kind == "start" else -1
        most = max(most, live)
    assert most == 2


def test_failed_upstream_fails_its_readers_and_keep_going_runs_the_rest(stages, tmp_path,
                                                                         monkeypatch, capsys):
    ghn = "cpu-brown-long/train-ghn/ghn3-t"
    log = []
    monkeypatch.setattr(runner, "run_stage", _fake_run(log, fail={ghn}))
    records, failed = runner.run_all(stages, tmp_path, False, True, jobs=2)
    readers = {s for s, ups in runner.upstream(stages).items() if ghn in ups}
    assert readers and set(failed) == {ghn} | readers
    assert len(records) == len(stages) - len(failed)
    assert "an upstream stage failed" in capsys.readouterr().err
    # without --keep-going nothing new starts after a failure, and the run raises
    log.clear()
    monkeypatch.setattr(runner, "run_stage", _fake_run(log, fail={stages[0].id}))
    with pytest.raises(runner.ExperimentError, match="rerun the same command"):
        runner.run_all(stages, tmp_path, False, False, jobs=2)
    assert len([e for e in log if e[0] == "start"]) <= 2


def test_launch_reports_the_childs_own_cpu_time_and_logs(tmp_path):
    spin = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nprint('hi')"
    log = tmp_path / "x.log"
    rc, cpu = runner.launch([sys.executable, "-c", spin], dict(os.environ), log)
    assert rc == 0 and 0.3 <= cpu < 3.0 and log.read_text().strip() == "hi"
    rc, _ = runner.launch([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), None)
    assert rc == 3


def test_threads_per_job(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert runner.child_env(2)["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in runner.child_env(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
    assert runner.child_env(2)["OMP_NUM_THREADS"] == "3"


def test_bad_jobs_is_one_error(capsys):
    assert runner.main([str(ROOT / "conf" / "experiment" / "cpu-brown"), "--jobs", "0",
                        "--dry-run"]) == 2
    assert "--jobs 0" in capsys.readouterr().err
