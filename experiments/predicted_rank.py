"""Effective rank of the matrices a GHN predicts for a target model (the diagnosis in
docs/experiments.md, "make experiment-cpu-long, GPT part").

Effective rank (Roy & Vetterli 2007) of a matrix W (m x n): exp of the Shannon entropy of its
singular values normalised to sum 1. It is n for an n x n matrix with equal singular values, 1 for
a rank-1 matrix, and about 55 for a 64-wide random-init GPT block matrix. A low-rank decoder
(LoGAH: W = A·B with rank r) bounds it by r.

Per checkpoint it predicts the target of a finetune config and prints the mean effective rank over
the 2-D parameters whose two dims are both under ``--max-dim`` (the blocks and position table; the
4,096-row token table is left out), and the spread of the 1-D gains (LayerNorm / RMSNorm weights).

Usage: ``python experiments/predicted_rank.py conf/experiment/cpu-brown-long/finetune-gpt2-4x64.yaml
runs/experiments/train-ghn/cpu-brown-long-logah-t/checkpoints/snapshot-5min.ckpt ...``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def effective_rank(w: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of ``w`` (m x n), in float64."""
    s = torch.linalg.svdvals(w.detach().double())
    p = s / s.sum()
    return torch.exp(-(p * p.clamp_min(1e-300).log()).sum()).item()


def summary(model: torch.nn.Module, max_dim: int = 1000) -> dict:
    """Mean effective rank of the small 2-D parameters and sd of the 1-D weights (gains)."""
    mats = [p for p in model.parameters() if p.ndim == 2 and max(p.shape) < max_dim]
    gains = [p.detach().flatten() for n, p in model.named_parameters()
             if p.ndim == 1 and n.endswith("weight")]
    return {"erank": sum(map(effective_rank, mats)) / len(mats), "matrices": len(mats),
            "gain_sd": torch.cat(gains).std().item() if gains else float("nan")}


def main(argv: list[str] | None = None) -> int:
    import logah
    from logah.config.load import load_config
    from logah.config.model import resolve_spec
    from logah.config.runs import FinetuneConfig
    from logah.nn import build_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path, help="a finetune config: its model is the target")
    ap.add_argument("ghns", nargs="*", help="GHN checkpoints (or pretrained:/random: names)")
    ap.add_argument("--max-dim", type=int, default=1000)
    args = ap.parse_args(argv)
    spec = resolve_spec(load_config(FinetuneConfig, args.config).model)
    rows = [("random init", summary(build_model(spec, seed=0), args.max_dim))]
    for ck in args.ghns:
        model = build_model(spec, seed=0)
        logah.init_from_ghn(model, ck)
        rows.append((ck, summary(model, args.max_dim)))
    print("| init | effective rank (mean) | matrices | 1-D gain sd |\n|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['erank']:.1f} | {r['matrices']} | {r['gain_sd']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
