"""End-to-end `logah finetune` on tiny synthetic data: TensorBoard tags, falling loss, checkpoints,
exported weights, resume-as-no-op, and bad input (one error line, nothing written)."""

from __future__ import annotations

import pytest
import torch
from finetune_synth import (
    VIT_TINY,
    SyntheticImages,
    read_scalars,
    text_overrides,
    write_text_data,
)

from logah.cli.main import main
from logah.config import load_config
from logah.config.runs import FinetuneConfig
from logah.lit.finetune import finetune

COMMON_TAGS = {"train/loss", "val/loss", "lr"}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """One short LM run through the CLI (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("lm")
    root = write_text_data(tmp / "data")
    args = text_overrides(root, tmp / "runs", name="lm", steps=40)
    assert main(["finetune", *args]) == 0
    return tmp / "runs" / "finetune" / "lm", args


def test_lm_run_logs_the_shared_tags_and_loss_falls(lm_run):
    run, _ = lm_run
    scalars = read_scalars(run)
    assert COMMON_TAGS | {"val/ppl", "perf/tokens_per_s"} <= set(scalars)
    train = [v for _, v in scalars["train/loss"]]
    assert train[0] > 3.5  # ~ln(64) at the start
    assert sum(train[-3:]) / 3 < 0.7 * train[0]  # the pattern is learnt
    val = [v for _, v in scalars["val/loss"]]
    assert val[-1] < val[0]
    ppl = dict(scalars["val/ppl"])
    for step, loss in scalars["val/loss"]:  # ppl is exp(mean token NLL), logged at the same steps
        assert ppl[step] == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-5)
    lr = [v for _, v in sorted(scalars["lr"])]
    assert max(lr) == pytest.approx(0.01, rel=0.05) and lr[-1] < 0.2 * max(lr)  # warm-up + cosine
    assert all(v > 0 for _, v in scalars["perf/tokens_per_s"])


def test_lm_run_folder_layout_and_exported_weights(lm_run):
    run, _ = lm_run
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.ckpt", "best.ckpt"}
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 40
    assert last["logah_spec"]["vocab_size"] == 64
    cfg = load_config(FinetuneConfig, run / "config.yaml")
    assert cfg.name == "lm" and cfg.model.vocab_size == 64
    from logah.nn.io import load_state, read_spec

    state = load_state(run / "weights")
    assert read_spec(run / "weights").d_model == 32
    ckpt_model = {k.removeprefix("model."): v for k, v in last["state_dict"].items()
                  if k.startswith("model.")}
    assert state.keys() == ckpt_model.keys()
    assert all(torch.equal(state[k], ckpt_model[k]) for k in state)


def test_rerunning_a_finished_run_resumes_at_its_last_step(lm_run, capsys):
    run, args = lm_run
    events_before = sorted(run.glob("events.out.tfevents.*"))
    assert main(["finetune", *args]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "at step 40" in out
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 40
    assert set(events_before) <= set(run.glob("events.out.tfevents.*"))
    assert [s for s, _ in read_scalars(run)["val/loss"]].count(0) == 1  # no 2nd step-0 validation


def test_validation_at_step_zero_measures_the_init_and_leaves_training_unchanged(lm_run, tmp_path):
    run, args = lm_run
    val = sorted(read_scalars(run)["val/loss"])
    assert val[0][0] == 0 and val[0][1] > 3.5  # the random init: ~ln(64) on 64 tokens
    assert val[1][0] in (9, 10) and val[1][1] < val[0][1]  # Lightning logs in-fit validation at 9
    # Without it, the same seed trains to the same weights (training is re-seeded after it).
    other = [*(a for a in args if not a.startswith("out_dir=")), f"out_dir={tmp_path}",
             "trainer.val_at_start=false"]
    assert main(["finetune", *other]) == 0
    no_start = tmp_path / "finetune" / "lm"
    assert sorted(read_scalars(no_start)["val/loss"])[0][0] == val[1][0]
    from logah.nn.io import load_state

    a, b = load_state(run / "weights"), load_state(no_start / "weights")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_a_changed_model_is_refused(lm_run, capsys):
    run, args = lm_run
    assert main(["finetune", *args, "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr" in err[0] and "different config" in err[0]


def test_vit_run_logs_accuracy_and_learns(tmp_path):
    cfg = load_config(FinetuneConfig, None, [
        *VIT_TINY, f"out_dir={tmp_path}", "name=vit", "trainer.max_steps=30",
        "trainer.val_check_interval=10", "trainer.log_every_n_steps=2",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "optim.lr=0.003",
        "optim.warmup_steps=3",
    ])
    result = finetune(cfg, datamodule=SyntheticImages(size=16))
    scalars = read_scalars(result.run_dir)
    assert COMMON_TAGS | {"val/acc1", "val/acc5", "perf/images_per_s"} <= set(scalars)
    acc1 = [v for _, v in scalars["val/acc1"]]
    assert acc1[-1] > 0.5  # 10 classes: chance is 0.1
    assert all(a5 >= a1 for (_, a1), (_, a5) in zip(scalars["val/acc1"], scalars["val/acc5"]))
    assert result.metrics["val/acc1"] == pytest.approx(acc1[-1])


def test_wrong_shape_weights_is_one_error_naming_the_tensor(tmp_path, capsys):
    from safetensors.torch import save_file

    from logah.config.model import resolve_spec
    from logah.nn import build_model

    root = write_text_data(tmp_path / "data", 2_000, 500)
    args = text_overrides(root, tmp_path / "runs", name="bad")
    spec = resolve_spec(load_config(FinetuneConfig, None, args).model)
    state = build_model(spec, seed=0).state_dict()
    state["blocks.0.mlp.fc.weight"] = torch.zeros(7, spec.d_model)
    (tmp_path / "w").mkdir()
    save_file(state, str(tmp_path / "w" / "bad.safetensors"))
    assert main(["finetune", *args, f"init=weights:{tmp_path / 'w' / 'bad.safetensors'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert "blocks.0.mlp.fc.weight" in err[0] and "[7, 32]" in err[0]
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("extra,culprit", [
    (["data.root=/nonexistent/brown"], "/nonexistent/brown"),
    (["init=weights:/nonexistent/w"], "/nonexistent/w"),
    (["init=xavier"], "init"),
    (["optim.lr=-1"], "optim.lr"),
    (["trainer.accelerator=gpu"], "trainer"),
    (["name=a/b"], "name"),
    (["model.arch=vit-tiny"], "data.name"),
    (["label_smoothing=0.1"], "label_smoothing"),  # a GPT-2
    (["label_smoothing=1.5"], "label_smoothing"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, extra, culprit):
    if culprit == "trainer" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    root = write_text_data(tmp_path / "data", 2_000, 500)
    assert main(["finetune", *text_overrides(root, tmp_path / "runs"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and culprit in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_run_ending_between_validations_is_validated_at_its_last_step(tmp_path, capsys):
    """25 steps, validation every 10: in-fit validations at 9 and 19, then one of the final
    weights (a FLOPs-matched schedule's step count is rarely a multiple of the interval)."""
    root = write_text_data(tmp_path / "data")
    args = text_overrides(root, tmp_path / "runs", name="odd", steps=25)
    assert main(["finetune", *args]) == 0
    run = tmp_path / "runs" / "finetune" / "odd"
    steps = sorted(s for s, _ in read_scalars(run)["val/loss"])
    assert steps == [0, 9, 19, 24]  # Lightning's convention: N-1 after N steps
    final = dict(read_scalars(run)["val/loss"])[steps[3]]
    assert final < dict(read_scalars(run)["val/loss"])[0]
    # a rerun of the finished run trains nothing and adds no validation
    assert main(["finetune", *args]) == 0
    assert sorted(s for s, _ in read_scalars(run)["val/loss"]) == steps
