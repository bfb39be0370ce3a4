"""``logah compare``: event reading, speed-up on constructed curves, table, PNG, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from logah.cli.main import main
from logah.report.compare import compare, load_runs, markdown_table, steps_to_reach


def _write_run(root: Path, name: str, curves: dict, init: str | None = None, sub: str = "tb"):
    """Write ``curves`` (tag -> [(step, value)]) as a TensorBoard event file under root/name/sub."""
    from torch.utils.tensorboard import SummaryWriter

    run = root / name
    w = SummaryWriter(str(run / sub))
    for tag, pts in curves.items():
        for step, value in pts:
            w.add_scalar(tag, value, step)
    w.close()
    if init is not None:
        (run / "config.yaml").write_text(f"name: {name}\ninit: {init}\nseed: 0\n")
    return run


def _linear(start: float, slope: float, steps=range(0, 1001, 100)):
    return [(s, start + slope * s) for s in steps]


@pytest.fixture
def two_runs(tmp_path):
    # random: 6 -> 2 over 1000 steps (final 2.0). fast: 6 - 0.005 s, crosses 2.0 at step 800 (an
    # evaluation point) -- speed-up 1000/800 = 1.25.  ppl is logged too, as the real runs do.
    curves = {"val/loss": _linear(6, -0.004), "train/loss": _linear(7, -0.004)}
    rnd = _write_run(tmp_path, "rand", curves, "random")
    init = "weights:runs/predict/logah"
    fast = _write_run(tmp_path, "fast", {"val/loss": _linear(6, -0.005)}, init)
    for run, slope in ((rnd, -0.004), (fast, -0.005)):
        _write_run(run, "extra", {"val/ppl": [(s, math.exp(v)) for s, v in _linear(6, slope)]})
    return rnd, fast


def test_steps_to_reach_interpolates_between_evaluations():
    steps, vals = [0, 100, 200], [5.0, 4.0, 3.0]
    assert steps_to_reach(steps, vals, 3.5) == pytest.approx(150.0)
    assert steps_to_reach(steps, vals, 3.0) == pytest.approx(200.0)
    assert steps_to_reach(steps, vals, 6.0) == 0.0  # already there at the first evaluation
    assert steps_to_reach(steps, vals, 2.0) is None  # never reached
    # accuracy: higher is better
    assert steps_to_reach([10, 20], [0.5, 0.9], 0.6, higher=True) == pytest.approx(12.5)
    # a NaN evaluation never counts as reached and is not interpolated from
    assert steps_to_reach([0, 100, 200], [math.nan, 4.0, 2.0], 4.0) == 100.0
    assert steps_to_reach([0, 100], [5.0, math.nan], 0.0) is None


def test_speedup_on_constructed_curves(two_runs):
    rnd, fast = two_runs
    runs = load_runs([rnd, fast])
    assert [r.init for r in runs] == ["random", "weights:runs/predict/logah"]
    comp = compare(runs, baseline=runs[0])
    base, row = comp.rows
    assert comp.target == pytest.approx(2.0, abs=1e-5)
    assert base.steps_to_target == pytest.approx(1000) and base.speedup == pytest.approx(1.0)
    assert row.steps_to_target == pytest.approx(800, abs=0.1)
    assert row.speedup == pytest.approx(1.25, abs=1e-3)
    assert row.final["val/loss"] == pytest.approx(1.0, abs=1e-5)
    assert (row.first, row.first_step) == (pytest.approx(6.0), 0)  # the init's own value
    assert row.best["val/ppl"] == pytest.approx(math.e, rel=1e-4)
    assert comp.tags == ["val/loss", "val/ppl"]  # train/loss is not a report tag


def test_interpolated_crossing_between_evaluations(tmp_path):
    # slow run ends at 3.0; the fast one goes 6, 5, 4, 2 at steps 0..300: crosses 3.0 at 250.
    slow_pts = [(0, 6), (100, 5), (200, 4), (300, 3)]
    fast_pts = [(0, 6), (100, 5), (200, 4), (300, 2)]
    rnd = _write_run(tmp_path, "rnd", {"val/loss": slow_pts}, "random")
    fast = _write_run(tmp_path, "f", {"val/loss": fast_pts}, "orthogonal")
    comp = compare(load_runs([rnd, fast]), baseline=load_runs([rnd])[0])
    assert comp.rows[1].steps_to_target == pytest.approx(250.0)
    assert comp.rows[1].speedup == pytest.approx(300 / 250)


def test_resumed_run_merges_event_files_later_write_wins(tmp_path):
    first = {"val/loss": [(0, 5.0), (100, 4.0), (200, 9.0)]}
    run = _write_run(tmp_path, "r", first, sub="version_0")
    _write_run(tmp_path, "r", {"val/loss": [(200, 3.0), (300, 2.0)]}, sub="version_1")
    (r,) = load_runs([run])
    assert r.curve("val/loss") == ([0, 100, 200, 300], [5.0, 4.0, 3.0, 2.0])


def test_cli_writes_png_table_json(two_runs, tmp_path, capsys):
    rnd, fast = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(rnd), str(fast), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert table in printed
    lines = table.splitlines()
    head = "| run | init | steps | first val/loss (step) | final val/loss | best val/loss | final val/ppl"
    assert lines[0].startswith(head)
    assert "rand (baseline) | random | 1000 | 6.0000 (0) | 2.0000 |" in lines[2]
    assert lines[3].startswith("| fast | weights:logah | 1000 | 6.0000 (0) | 1.0000 |")
    assert lines[3].endswith("| 800 | 1.25x |")
    data = json.loads((out / "compare.json").read_text())
    assert data["baseline"] == "rand"
    assert data["rows"][1]["speedup"] == pytest.approx(1.25, abs=1e-3)
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "curves.png")  # (H, W, 4) floats
    assert img.shape[0] > 300 and img.shape[1] > 500
    # both curves are drawn: matplotlib's default first two colours (C0 blue, C1 orange) appear
    rgb = (img[..., :3] * 255).round()
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (abs(rgb - colour).sum(-1) < 30).sum() > 200, colour
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_accuracy_metric_is_higher_better(tmp_path):
    a = _write_run(tmp_path, "a", {"val/acc1": [(0, 0.1), (50, 0.5), (100, 0.6)]}, "random")
    b = _write_run(tmp_path, "b", {"val/acc1": [(0, 0.3), (50, 0.7), (100, 0.8)]}, "weights:x")
    runs = load_runs([a, b])
    comp = compare(runs, metric="val/acc1", baseline=runs[0])
    assert comp.rows[1].steps_to_target == pytest.approx(37.5)  # 0.3 -> 0.7 crosses 0.6 at 3/4
    assert comp.rows[1].best["val/acc1"] == pytest.approx(0.8)
    assert "| 80.00% | 80.00% |" in markdown_table(comp)


def test_no_baseline_without_random_run(two_runs, tmp_path, capsys):
    _, fast = two_runs
    assert main(["compare", str(fast), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "speed-up" not in (tmp_path / "o" / "table.md").read_text()
    assert "no speed-up column" in out
    # an explicit --baseline works without a config.yaml
    assert main(["compare", str(fast), "--baseline", "fast", "--out", str(tmp_path / "p")]) == 0
    assert "1.00x" in (tmp_path / "p" / "table.md").read_text()


@pytest.mark.parametrize(
    "case,expect",
    [
        ("missing_dir", "no such run folder"),
        ("no_events", "no TensorBoard event files"),
        ("missing_tag", "no scalar tag 'val/acc1' (tags: train/loss, val/loss, val/ppl)"),
        ("bad_baseline", "--baseline nope: not one of the runs (rand, fast)"),
        ("two_random", "several runs have init: random (rand, rand2); choose one with --baseline"),
    ],
)
def test_errors_are_one_line_exit_2(two_runs, tmp_path, capsys, case, expect):
    rnd, fast = two_runs
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    rand2 = _write_run(tmp_path, "rand2", {"val/loss": [(0, 1)]}, "random")
    args = {
        "missing_dir": [str(tmp_path / "nope")],
        "no_events": [str(tmp_path / "empty")],
        "missing_tag": [str(rnd), "--metric", "val/acc1"],
        "bad_baseline": [str(rnd), str(fast), "--baseline", "nope"],
        "two_random": [str(rnd), str(rand2)],
    }[case]
    assert main(["compare", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expect in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_reached_at_first_evaluation_is_a_lower_bound(tmp_path):
    # validation every 25 steps (Lightning logs them at 24, 49, ...): the grown run is already
    # below random's final value at its first evaluation, so it crossed at step <= 24.
    steps = [24, 49, 74, 99]
    rnd = _write_run(tmp_path, "rnd", {"val/loss": list(zip(steps, [8, 7, 6.5, 6]))}, "random")
    grown = _write_run(tmp_path, "g", {"val/loss": list(zip(steps, [5.9, 5.5, 5.2, 5.0]))}, "x")
    runs = load_runs([rnd, grown])
    comp = compare(runs, baseline=runs[0])
    assert comp.rows[1].speedup == pytest.approx(99 / 24) and comp.rows[1].speedup_is_lower_bound
    assert not comp.rows[0].speedup_is_lower_bound
    assert "| 24 | >= 4.12x |" in markdown_table(comp)


def test_flops_axis_measures_speedup_in_compute(tmp_path, capsys):
    """The fast run crosses the target at step 800 but spends 2.5x the FLOPs per step: in FLOPs
    it is slower (speed-up 10,000 / 20,000 = 0.5), though 1.25x in steps."""
    rnd = _write_run(tmp_path, "rand", {"val/loss": _linear(6, -0.004),
                                        "perf/flops": _linear(0, 10.0, range(10, 1001, 10))},
                     "random")
    fast = _write_run(tmp_path, "big", {"val/loss": _linear(6, -0.005),
                                        "perf/flops": _linear(0, 25.0, range(10, 1001, 10))},
                      "orthogonal")
    runs = load_runs([rnd, fast])
    by_step = compare(runs, baseline=runs[0])
    by_flops = compare(runs, baseline=runs[0], x="flops")
    assert by_step.rows[1].speedup == pytest.approx(1.25, abs=1e-3)
    assert by_flops.rows[0].steps_to_target == pytest.approx(10_000, rel=1e-4)
    assert by_flops.rows[1].steps_to_target == pytest.approx(20_000, rel=1e-3)
    assert by_flops.rows[1].speedup == pytest.approx(0.5, abs=1e-3)
    out = tmp_path / "cmp"
    assert main(["compare", str(rnd), str(fast), "--x", "flops", "--out", str(out)]) == 0
    table = (out / "table.md").read_text().splitlines()
    assert "| FLOPs to val/loss 2.0000 | speed-up |" in table[0]
    assert table[3].endswith("| 2e+04 | 0.50x |")
    assert json.loads((out / "compare.json").read_text())["x"] == "flops"
    # a run without perf/flops: one line naming it
    old = _write_run(tmp_path, "old", {"val/loss": _linear(6, -0.004)}, "random")
    capsys.readouterr()
    assert main(["compare", str(old), "--x", "flops", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 'perf/flops'" in err[0]


def test_flops_at_interpolates_and_extrapolates():
    from logah.report.compare import flops_at

    assert flops_at([10, 20], [100.0, 300.0], [0, 5, 10, 15, 20, 30]) == pytest.approx(
        [0, 50, 100, 200, 300, 500])
