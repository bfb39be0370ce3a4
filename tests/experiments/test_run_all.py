"""`make bench` (benchmarks/run_all.py): every script runs, one combined table, failures kept."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(d: Path, name: str, body: str) -> None:
    (d / f"{name}.py").write_text(
        "import json, pathlib, sys\n"
        "out = pathlib.Path(__file__).parent / 'results'\n"
        "out.mkdir(exist_ok=True)\n" + body
    )


def test_records_flatten_lists_and_top_level_numbers(run_all):
    data = {
        "device": "cpu",
        "ratio": 3.5,
        "rows": [{"arch": "gpt2-large", "t": {"ghn": 1.5, "rand": 3.0}, "ok": True}],
    }
    rows = run_all.rows_of("predict", data)
    assert rows == [("predict", "device=cpu", "ratio=3.5"),
                    ("predict", "gpt2-large, ok=True", "t.ghn=1.5, t.rand=3")]
    assert run_all.rows_of("x", [{"n": 1234567}]) == [("x", "-", "n=1,234,567")]
    # a named (non-generic) list labels its records; long text stays out of the case
    many = {"sweep": [{"case": "b", "note": "x" * 41, "s": 2}]}
    assert run_all.rows_of("y", many) == [("y", "set=sweep, b", "s=2")]


def test_runs_every_benchmark_and_reports_failures(run_all, tmp_path, capsys):
    _bench(tmp_path, "a_fast", "json.dump([{'case': 'small', 'seconds': 0.25}], "
                               "open(out / 'a.json', 'w'))\nprint('a table')\n")
    _bench(tmp_path, "b_broken", "sys.exit(3)\n")
    _bench(tmp_path, "_helper", "raise SystemExit('never run')\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.json").write_text(json.dumps([{"stale": 1}]))
    rc = run_all.main(["--dir", str(tmp_path), "--timeout", "60"])
    assert rc == 1  # one failed
    out = capsys.readouterr().out
    table = out.split("=== all benchmarks ===\n")[1]
    assert "| a_fast    | small  | seconds=0.25" in table
    assert "failed (exit 3)" in table and "b_broken" in table
    assert "_helper" not in table and "stale" not in table  # untouched JSON is not re-reported
    assert (tmp_path / "results" / "summary.md").read_text() == table
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["a_fast"]["status"].startswith("ok")


def test_only_and_unknown_names(run_all, tmp_path, capsys):
    _bench(tmp_path, "one", "print('hi')\n")
    assert run_all.main(["--dir", str(tmp_path), "--only", "nope"]) == 2
    assert "no such benchmark" in capsys.readouterr().err
    assert run_all.main(["--dir", str(tmp_path), "--only", "one"]) == 0


def test_per_benchmark_args(run_all, tmp_path, capsys):
    _bench(tmp_path, "echo", "json.dump([{'case': ' '.join(sys.argv[1:]), 'n': len(sys.argv) - 1}],"
                             " open(out / 'echo.json', 'w'))\n")
    _bench(tmp_path, "other", "assert len(sys.argv) == 2, sys.argv\n")
    assert run_all.main(["--dir", str(tmp_path), "--args", "echo=--repeats 1 --x", "--", "-v"]) == 0
    assert "| echo      | -v --repeats 1 --x | n=4" in capsys.readouterr().out
    assert run_all.main(["--dir", str(tmp_path), "--args", "nope=1"]) == 2
    assert "expected NAME=ARGS" in capsys.readouterr().err
