"""``experiments/progressive.py``: FLOPs-matched step counts, the shipped folder's consistency, and
a tiny end-to-end run (slow) reporting FLOPs-to-target ratios."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from progressive import load, main, matched_steps, segments, table

from logah.config import load_config
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig
from logah.nn.flops import step_flops

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "conf" / "experiment" / "cpu-progressive"
HAVE_CLONE = importlib.util.find_spec("logah.grow.clone") is not None


def test_matched_steps_spend_the_budget_exactly():
    cfg = load_config(FinetuneConfig, FOLDER / "finetune-progressive.yaml")
    shape = (cfg.data.batch_size, cfg.data.block_size)
    a, b, c = (step_flops(spec, shape) for _, spec in segments(cfg))
    budget = 250 * a + 350 * b + 1000 * c  # 1000 steps of the final model after step 600
    assert matched_steps(cfg, budget) == 1600
    assert matched_steps(cfg, 100 * a) == 100  # the budget runs out before the first growth
    assert a < b < c


def test_shipped_folder_is_flops_matched():
    arms = None if HAVE_CLONE else ["progressive", "oneshot"]
    files, cfgs, budget = load(FOLDER, arms)
    assert {"scratch", "progressive", "oneshot"} <= set(files)
    assert cfgs["progressive"].trainer.max_steps > cfgs["scratch"].trainer.max_steps
    # 1500 steps x 16 x 64 tokens x 3 (forward + backward) x 2 FLOPs per MAC x MACs per token of
    # 4 x 128, MLP 512, vocab 4096, context 64 (blocks + LM head + QK^T and AV)
    macs = 4 * (4 * 128**2 + 2 * 128 * 512) + 128 * 4096 + 4 * 2 * 64 * 128
    assert budget == pytest.approx(1500 * 16 * 64 * 3 * 2 * macs, rel=1e-9)


def test_a_file_that_is_not_flops_matched_is_one_error(tmp_path, capsys):
    for f in ("finetune-scratch.yaml", "finetune-progressive.yaml"):
        text = (FOLDER / f).read_text()
        if f == "finetune-progressive.yaml":
            text = text.replace("max_steps: 1838", "max_steps: 1300")
        (tmp_path / f).write_text(text)
    assert main([str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer.max_steps 1300, but 1838 steps" in err[0]


def test_table_formats_ratios():
    out = {"arms": {"scratch": {"best_lr": 0.003, "final_val_loss": [6.1, 6.2],
                                "flops_ratio_mean": 1.0, "flops_ratio_range": [1.0, 1.0],
                                "reached": "2/2"},
                    "progressive": {"best_lr": 0.001, "grid": {"0.001": 6.15, "0.003": 6.2},
                                    "final_val_loss": [6.0, 6.3],
                                    "flops_ratio_mean": None, "flops_ratio_range": None,
                                    "reached": "0/2"}}}
    lines = table(out).splitlines()
    assert lines[2] == "| scratch | 0.003 | 6.1000, 6.2000 | 1.000 [1.000, 1.000] | 2/2 |"
    assert lines[3] == "| progressive | 0.001 (0.001: 6.150, 0.003: 6.200) | 6.0000, 6.3000 | - | 0/2 |"


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tmp_path):
    """Scratch 2x48 for 24 steps vs 1x32 -> 2x48 at step 8 (FLOPs-matched) on synthetic text."""
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from finetune_synth import write_text_data

    data = write_text_data(tmp_path / "data", 6_000, 1_000)
    common = (f"init: random\ndata: {{name: text, root: {data}, batch_size: 8}}\n"
              "optim: {lr: 0.01, warmup_steps: 2}\n"
              "trainer: {max_steps: MAX, val_check_interval: 4, limit_val_batches: 2, "
              "num_sanity_val_steps: 0, log_every_n_steps: 1, enable_progress_bar: false, "
              "accelerator: cpu}\n")
    model = "model: {arch: gpt2-tiny, vocab_size: 64, n_ctx: 32, n_layer: %d, d_model: %d}\n"
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "finetune-scratch.yaml").write_text(model % (2, 48) + common.replace("MAX", "24"))
    grow = "grow: {schedule: [{step: 8, to: {n_layer: 2, d_model: 48}}]}\n"
    prog = folder / "finetune-progressive.yaml"
    prog.write_text(model % (1, 32) + common.replace("MAX", "1") + grow)
    scratch = load_config(FinetuneConfig, folder / "finetune-scratch.yaml")
    budget = 24 * step_flops(resolve_spec(scratch.model), (8, 32))
    want = matched_steps(load_config(FinetuneConfig, prog), budget)
    prog.write_text(model % (1, 32) + common.replace("MAX", str(want)) + grow)
    assert want > 24
    results = tmp_path / "results"
    rc = main([str(folder), "--seeds", "0", "--lrs", "0.01", "--out-dir", str(tmp_path / "runs"),
               "--results", str(results), "--jobs", "2"])
    assert rc == 0
    out = json.loads((results / "exp" / "results.json").read_text())
    assert out["arms"]["scratch"]["flops_ratio"] == [pytest.approx(1.0)]
    assert set(out["arms"]) == {"scratch", "progressive"}
    runs = out["timing"]["runs"]  # two runs side by side, each timed from its own wait4
    assert len(runs) == 2 and all(r["cpu_s"] > 0 and r["wall_s"] > 0 for r in runs)
    assert (tmp_path / "runs" / "finetune" / f"{runs[0]['run']}.log").stat().st_size > 0
    assert out["arms"]["progressive"]["grid"] == {
        "0.01": pytest.approx(out["arms"]["progressive"]["final_val_loss"][0])}
    assert (results / "exp" / "table.md").read_text().startswith("| arm | best lr (grid")


def test_shipped_llama_arm_is_flops_matched_and_grows_to_the_scratch_model():
    files, cfgs, _ = load(ROOT / "conf" / "experiment" / "cpu-progressive-llama")
    assert set(files) == {"scratch", "progressive"}
    final = segments(cfgs["progressive"])[-1][1]
    scratch = resolve_spec(cfgs["scratch"].model)
    assert final.family == scratch.family == "llama"
    assert (final.n_layer, final.d_model, final.d_mlp, final.n_kv_heads) == \
        (scratch.n_layer, scratch.d_model, scratch.d_mlp, scratch.n_kv_heads)
