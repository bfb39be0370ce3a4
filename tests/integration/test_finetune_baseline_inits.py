"""`logah finetune` from the baseline inits, end to end on tiny synthetic data: a cloned model
starts at its source's validation loss (function preserved), stacking and GHN prediction run
inline, and bad baseline input is one error line that writes nothing."""

from __future__ import annotations

import pytest
from finetune_synth import read_scalars, text_overrides, write_text_data

from logah.cli.main import main

# The source is text_overrides' tiny GPT (1 layer x 32, 4 heads); targets widen / deepen it.
WIDE = ["model.d_model=64", "model.n_heads=8", "model.d_mlp=256"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("base")
    root = write_text_data(tmp / "data", 6_000, 1_000)
    assert main(["finetune", *text_overrides(root, tmp / "runs", name="small", steps=10)]) == 0
    return root, tmp / "runs" / "finetune" / "small"


def _run(small, tmp_path, name, init, *extra, steps=3):
    root, _ = small
    args = [*text_overrides(root, tmp_path, name=name, steps=steps), f"init={init}", *extra]
    assert main(["finetune", *args]) == 0
    return sorted(read_scalars(tmp_path / "finetune" / name)["val/loss"])


def test_hyperclone_starts_at_the_source_loss_and_stack_runs(small, tmp_path):
    _, src = small
    final = sorted(read_scalars(src)["val/loss"])[-1][1]
    val = _run(small, tmp_path, "clone", f"hyperclone:{src / 'weights'}", *WIDE,
               "init_opts.noise=0.01")
    assert val[0][0] == 0 and val[0][1] == pytest.approx(final, abs=2e-4)
    stacked = _run(small, tmp_path, "stack", f"stack:{src / 'weights'}", *WIDE, "model.n_layer=3")
    assert stacked[0][0] == 0 and stacked[0][1] != pytest.approx(final, abs=1e-3)


def test_mimetic_and_inline_ghn(small, tmp_path):
    for init in ("mimetic", "ghn:random:logah-t"):
        val = _run(small, tmp_path, init.split(":")[0], init, steps=2)
        assert val[0][0] == 0 and val[-1][1] < 10


@pytest.mark.parametrize("extra,culprit", [
    (["init=hyperclone:SRC", "model.d_model=48", "model.n_heads=6"], "d_model 32 -> 48"),
    (["init=hyperclone:SRC", "model.n_layer=2"], "init=stack:PATH"),
    (["init=stack:SRC", "init_opts.noise=-1"], "init_opts.noise"),
    (["init=grow:/nonexistent/w"], "/nonexistent/w"),
    (["init=ghn:/nonexistent/ghn.ckpt"], "/nonexistent/ghn.ckpt"),
    (["init=ghn:random:logah-t", "init_opts.ghn_keep=[tok.*]"], "'tok.*' matches no parameter"),
    (["init=mimetic", "init_opts.ghn_keep=[wte.*]"], "applies to init=ghn:CKPT only"),
])
def test_bad_baseline_input_is_one_error_line(small, tmp_path, capsys, extra, culprit):
    root, src = small
    extra = [e.replace("SRC", str(src / "weights")) for e in extra]
    capsys.readouterr()
    assert main(["finetune", *text_overrides(root, tmp_path / "runs"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and culprit in err[0], err
    assert not (tmp_path / "runs").exists()
