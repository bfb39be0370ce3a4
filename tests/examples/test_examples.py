"""The examples/ scripts run as a user runs them (fresh process, CPU) and say what they claim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_init_your_model_example_runs_and_reports_every_kind():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "init_your_model.py")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "1. init_from_ghn (hf): 28 tensors predicted, 1 left as they were" in out
    assert "left lm_head.weight: tied to transformer.wte.weight" in out
    assert "2. init_from_ghn (logah): 40 tensors predicted, 0 left" in out
    assert "3. init_from_ghn (module): 14 tensors predicted, 0 left" in out
    assert "MyNet output (2, 10), finite: True" in out
    m = re.search(r"HF random init ([\d.]+), GHN ([\d.]+)( \(random GHN\))?", out)
    assert m, out
    if not m.group(3):  # a shipped, trained GHN: it must beat HF's random init on English text
        assert float(m.group(2)) < float(m.group(1)) - 1.0, out
    assert wall < 120, f"example took {wall:.0f} s"  # < 1 min on an idle CPU; slack for load
