"""experiments/predicted_rank.py: the effective-rank measure behind the LoGAH-T diagnosis."""

from __future__ import annotations

import math

import torch
from predicted_rank import effective_rank, main, summary


def test_effective_rank_of_known_spectra():
    assert math.isclose(effective_rank(torch.eye(8)), 8.0, rel_tol=1e-9)
    u, v = torch.randn(16, 1), torch.randn(1, 12)
    assert math.isclose(effective_rank(u @ v), 1.0, rel_tol=1e-6)
    # a product of rank r is bounded by r: what LoGAH's W = A·B decoder imposes
    low = torch.randn(64, 8) @ torch.randn(8, 64)
    assert 1.0 < effective_rank(low) <= 8.0 + 1e-6
    assert effective_rank(torch.randn(64, 64)) > 40.0


def test_summary_skips_large_tables_and_reads_gains():
    m = torch.nn.Sequential(torch.nn.Embedding(2000, 8), torch.nn.Linear(8, 8),
                            torch.nn.LayerNorm(8))
    with torch.no_grad():
        m[1].weight.copy_(torch.eye(8))
        m[2].weight.copy_(torch.tensor([1.0, 3.0] * 4))
    s = summary(m, max_dim=1000)
    assert s["matrices"] == 1 and math.isclose(s["erank"], 8.0, rel_tol=1e-9)
    assert math.isclose(s["gain_sd"], torch.tensor([1.0, 3.0] * 4).std().item())


def test_cli_on_a_random_ghn(capsys):
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "conf/experiment/cpu-brown/finetune-gpt2-4x64.yaml"
    assert main([str(cfg), "random:logah-t"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| random init |") and lines[3].startswith("| random:logah-t |")
    assert float(lines[2].split("|")[2]) > 40.0  # random init is near full rank
