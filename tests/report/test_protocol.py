"""The fair protocol: best-LR rule, seed aggregation, steps/FLOPs to the tuned baseline."""

from __future__ import annotations

import math
import statistics

import pytest

from logah.report.protocol import (
    Cell,
    ProtocolError,
    init_label,
    load_cell,
    markdown,
    mean_spread,
    protocol,
    select_lr,
)

STEPS = [0, 100, 200, 300, 400]


def cell(label, lr, seed, values, tag="val/loss", flops_per_step=None, **extra):
    return Cell(label, lr, seed, f"runs/{label}-{lr}-{seed}",
                {tag: (STEPS[: len(values)], list(values)), **extra}, flops_per_step)


def test_best_lr_is_the_best_mean_final_value_over_seeds():
    cells = [
        # lr 1e-3: seeds end 5.0 and 5.4 (mean 5.2); lr 3e-3: 4.9 and 5.7 (mean 5.3, though
        # its best single seed is the best of all); lr 1e-2 diverged on one seed.
        cell("a", 1e-3, 0, [9, 7, 6, 5.5, 5.0]), cell("a", 1e-3, 1, [9, 7, 6, 5.6, 5.4]),
        cell("a", 3e-3, 0, [9, 6, 5, 4.0, 4.9]), cell("a", 3e-3, 1, [9, 6, 5, 5.5, 5.7]),
        cell("a", 1e-2, 0, [9, 5, 4, 3.0, 3.0]), cell("a", 1e-2, 1, [9, 8, math.nan, math.nan]),
    ]
    lr, scores = select_lr(cells)
    assert lr == 1e-3
    assert scores[1e-3] == pytest.approx(5.2) and scores[3e-3] == pytest.approx(5.3)
    assert scores[1e-2] == math.inf  # a diverged seed makes the rate the worst
    # accuracy: higher is better, and ties go to the smaller rate
    acc = [cell("b", lr, 0, [0.1, 0.8], tag="val/acc1") for lr in (3e-3, 1e-3)]
    assert select_lr(acc, "val/acc1")[0] == 1e-3


def test_missing_cell_is_named():
    cells = [cell("a", 1e-3, 0, [9, 5]), cell("a", 1e-3, 1, [9, 5]), cell("a", 3e-3, 0, [9, 5])]
    with pytest.raises(ProtocolError, match="a: missing cells lr=0.003 seed=1"):
        select_lr(cells)


def test_seed_aggregation_and_steps_to_the_tuned_baseline():
    cells = [
        # random: best at 3e-3 (finals 5.0, 5.2 -> target 5.1); at 1e-3 it ends worse (6.0)
        cell("random", 3e-3, 0, [10, 8, 6, 5.4, 5.0], flops_per_step=1e6),
        cell("random", 3e-3, 1, [10, 8, 6, 5.6, 5.2], flops_per_step=1e6),
        cell("random", 1e-3, 0, [10, 9, 8, 7, 6.0], flops_per_step=1e6),
        cell("random", 1e-3, 1, [10, 9, 8, 7, 6.0], flops_per_step=1e6),
        # logah: one rate; seeds reach 5.1 at 150 and 250 (interpolated)
        cell("logah", 1e-3, 0, [7, 5.6, 4.6, 4.5, 4.4], flops_per_step=1e6),
        cell("logah", 1e-3, 1, [7, 6.1, 5.6, 4.6, 4.5], flops_per_step=1e6,
             **{"perf/flops": ([100, 200, 300, 400], [3e8, 6e8, 9e8, 1.2e9])}),
        # slow: only one seed gets there
        cell("slow", 1e-3, 0, [10, 9, 8, 7, 4.95]), cell("slow", 1e-3, 1, [10, 9, 8, 7, 6]),
    ]
    p = protocol(cells)
    assert p.target == pytest.approx(5.1)
    r = p.row("random")
    assert r.best_lr == 3e-3 and r.seeds == [0, 1]
    assert r.final == pytest.approx((5.1, statistics.stdev([5.0, 5.2])))
    assert r.start == (10, 0.0)
    # paired by seed: the baseline reaches its own seed's final at its last evaluation
    assert r.steps == [400.0, 400.0] and r.speedups == [1.0, 1.0]
    g = p.row("logah")  # seed 0 -> 5.0 at step 160; seed 1 -> 5.2 at step 240
    assert g.steps == pytest.approx([160.0, 240.0])
    assert mean_spread(g.reached) == pytest.approx((200.0, statistics.stdev([160, 240])))
    # seed 0: 6N estimate x steps; seed 1: its perf/flops tag interpolated at step 240
    assert g.flops == pytest.approx([1.6e8, 7.2e8])
    assert g.speedups == pytest.approx([400 / 160, 400 / 240])
    assert g.speedup == pytest.approx((2.5 + 400 / 240) / 2)
    s = p.row("slow")  # seed 0 gets to 5.0 at the end, seed 1 (ends at 6) never reaches 5.2
    assert len(s.reached) == 1 and s.speedup is None
    table = markdown(p)
    assert "| logah | **0.001** (0.001: 4.450) | 2 | 7.000 ± 0.000 | 4.450 ± 0.071 |" in table
    assert "not reached" not in table and "(1/2)" in table
    with pytest.raises(ProtocolError, match="baseline 'nope'"):
        protocol(cells, baseline="nope")


def test_labels_and_cells_from_run_folders(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    assert init_label("ghn:runs/train-ghn/cpu-brown-logah-t/checkpoints/last.ckpt") == \
        "ghn:cpu-brown-logah-t"
    assert init_label("stack:runs/finetune/small/weights") == "stack:small"
    assert init_label("ghn:random:logah-t") == "ghn:random:logah-t"
    assert init_label("mimetic") == "mimetic"
    run = tmp_path / "r"
    w = SummaryWriter(str(run))
    for s in (0, 10):
        w.add_scalar("val/loss", 5.0 - s / 10, s)
    w.close()
    (run / "config.yaml").write_text(
        "seed: 2\ninit: mimetic\noptim: {lr: 0.003}\nmodel: {arch: gpt2-tiny, n_ctx: 64}\n"
        "data: {name: brown, batch_size: 8}\n")
    c = load_cell(run)
    assert (c.label, c.lr, c.seed) == ("mimetic", 0.003, 2)
    assert c.curve("val/loss") == ([0, 10], [5.0, 4.0])
    # gpt2-tiny: 6 x (params without wpe) x 8 x 64 tokens
    from logah.config import get_preset
    from logah.nn import count_params

    spec = get_preset("gpt2-tiny").replace(n_ctx=64)
    n = count_params(spec) - 64 * spec.d_model
    assert c.flops_per_step == pytest.approx(6 * n * 8 * 64)
    (run / "config.yaml").write_text("seed: 2\n")
    with pytest.raises(ProtocolError, match="needs init, seed and optim.lr"):
        load_cell(run)


def test_compare_grid_cli_and_errors(tmp_path, capsys):
    """`logah compare --grid` on run folders: table, JSON, plot with seed bands; bad input."""
    import json

    from torch.utils.tensorboard import SummaryWriter

    from logah.cli.main import main

    runs = []
    for init, lr, seed, slope in [("random", 1e-3, 0, 1.0), ("random", 1e-3, 1, 1.1),
                                  ("random", 3e-3, 0, 0.5), ("random", 3e-3, 1, 0.6),
                                  ("mimetic", 1e-3, 0, 1.2), ("mimetic", 1e-3, 1, 1.3)]:
        run = tmp_path / f"{init}-{lr}-{seed}"
        w = SummaryWriter(str(run))
        for s in range(0, 500, 100):
            w.add_scalar("val/loss", 9 - slope * s / 100, s)
        w.close()
        (run / "config.yaml").write_text(f"seed: {seed}\ninit: {init}\noptim: {{lr: {lr}}}\n")
        runs.append(str(run))
    out = tmp_path / "out"
    assert main(["compare", *runs, "--grid", "--out", str(out), "--line", "unigram=5.5",
                 "--label", f"{runs[4]}=mim", "--label", f"{runs[5]}=mim"]) == 0
    data = json.loads((out / "protocol.json").read_text())
    rows = {r["label"]: r for r in data["rows"]}
    assert rows["random"]["best_lr"] == 1e-3
    assert rows["random"]["final"] == pytest.approx([4.8, 0.2 * 2 ** 0.5], rel=1e-6)
    assert rows["mim"]["speedups"] == pytest.approx([1.2, 400 / (4.4 / 1.3 * 100)], rel=1e-5)
    table = (out / "table.md").read_text()
    assert "unigram: 5.500 (tuned random ends 0.700 below it)" in table
    assert (out / "curves.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["compare", *runs[:3], "--grid", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing cells lr=0.003 seed=1" in err[0]
    assert main(["compare", *runs, "--line", "x=1", "--out", str(tmp_path / "bad")]) == 2
    assert "--line belong to --grid" in capsys.readouterr().err


def test_an_init_at_the_target_before_training_has_infinite_speedup():
    cells = [cell("random", 1e-3, 0, [9, 7, 5]), cell("grow", 1e-3, 0, [4.5, 4.0, 3.9])]
    p = protocol(cells)
    p.extra_lines = {"unigram": 4.0}
    g = p.row("grow")
    assert g.steps == [0.0] and g.speedup == math.inf
    table = markdown(p)
    assert "**inf** (at the target at step 0)" in table
    assert "unigram: 4.000 (tuned random ends 1.000 above it)" in table
    assert '"inf"' in __import__("json").dumps(p.to_dict())
