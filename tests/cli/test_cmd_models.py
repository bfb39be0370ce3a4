"""``logah models`` / ``logah summary`` through the installed console script (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logah.config import PRESETS
from logah.config.model import ModelConfig, resolve_spec
from logah.nn import count_params

LOGAH = Path(sys.executable).with_name("logah")


def _logah(*args: str) -> subprocess.CompletedProcess:
    if not LOGAH.is_file():
        pytest.fail(f"console script {LOGAH} is missing: run `make setup`")
    return subprocess.run([str(LOGAH), *args], capture_output=True, text=True, timeout=120)


def test_models_lists_every_preset_with_its_parameter_count():
    res = _logah("models")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:]}
    assert set(rows) == set(PRESETS)
    for name, spec in PRESETS.items():
        assert rows[name][1] == spec.family
        assert int(rows[name][2].replace(",", "")) == count_params(spec), name
    assert rows["gpt2-large"][2] == "774,030,080"


@pytest.mark.parametrize("args,culprit", [
    (("summary", "gpt9"), "gpt9"),
    (("summary", "gpt2-tiny", "model.d_modl=3"), "d_modl"),
])
def test_bad_input_exits_2_with_one_error_line(args, culprit):
    res = _logah(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and culprit in lines[0], res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_summary_applies_model_overrides():
    res = _logah("summary", "gpt2-tiny", "model.d_model=128", "model.tie_embeddings=false")
    assert res.returncode == 0, res.stderr
    spec = resolve_spec(ModelConfig(arch="gpt2-tiny", d_model=128, tie_embeddings=False))
    total = res.stdout.strip().splitlines()[-1].split()
    assert total[0] == "total" and int(total[-1].replace(",", "")) == count_params(spec)
    assert "lm_head.weight" in res.stdout and "qk=32" in res.stdout
