"""GHNModule: the training step (loss formula through functional_call), learning on a fixed pair,
name checks, and checkpoints that ``load_ghn`` reads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from logah.config import get_preset
from logah.config.ghn import GHNConfig
from logah.config.train import OptimConfig
from logah.data.arch import ArchBatch
from logah.ghn import GHN
from logah.graph import batch_graphs, graph_for_spec
from logah.lit.ghn_module import GHNModule
from logah.nn import build_model

# norm_tied off: a tied wte held at std 0.02 (the default) caps the logits, and the copy task
# below would need far more than 12 steps (measured: 3.91 -> 3.66 with it, 3.27 -> 0.03 without)
TINY_GHN = GHNConfig(preset="logah-t", hid=32, layers=1, heads=4, rank=8, max_width=256,
                     norm_tied=False)
BASE = get_preset("gpt2-tiny").replace(vocab_size=50, n_ctx=16)
SPECS = [BASE.replace(n_layer=1, d_model=16, n_heads=2, d_qk=8, d_v=8, d_mlp=64),
         BASE.replace(n_layer=2, d_model=24, n_heads=2, d_qk=12, d_v=12, d_mlp=96)]


def archs(specs) -> ArchBatch:
    return ArchBatch(specs, batch_graphs([graph_for_spec(s) for s in specs]),
                     ["small"] * len(specs), [0] * len(specs))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 50, (4, 16), generator=g)
    return x, x.clone()  # a learnable task: name the current token


def module(**kw) -> GHNModule:
    return GHNModule(GHN(TINY_GHN, seed=0), OptimConfig(lr=3e-3, warmup_steps=0), seed=0, **kw)


def test_loss_is_mean_task_loss_plus_gamma_times_frobenius_norms_over_m():
    torch.manual_seed(0)
    mod = module(gamma=0.01)
    x, y = batch()
    out = mod.step_losses((x, y), archs(SPECS))
    # the same numbers with materialised models holding the predicted tensors
    params = mod.ghn(archs(SPECS).graphs)
    task, norms = [], []
    for spec, p in zip(SPECS, params):
        model = build_model(spec)
        model.load_state_dict({k: v.detach() for k, v in p.items()}, strict=True)
        task.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
        norms.append(sum(torch.linalg.norm(v.detach()) for v in p.values()))  # not squared
    expected = (sum(task) + 0.01 * sum(norms)) / 2
    assert torch.allclose(out["task_losses"].detach(), torch.stack(task), atol=1e-5)
    assert torch.allclose(out["norms"].detach(), torch.stack(norms), rtol=1e-5)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(out["group_norms"]) == {"attn", "mlp", "embed", "norm", "bias"}  # tied: no head


def test_training_steps_reduce_the_loss_on_a_fixed_architecture_and_batch():
    torch.manual_seed(0)
    mod = module()
    opt = torch.optim.AdamW(mod.ghn.parameters(), lr=1e-2)
    pair, task = archs(SPECS[:1]), batch()
    losses = []
    for _ in range(12):
        loss = mod.step_losses(task, pair)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mod.ghn.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses
    # gradients reached the encoder, not only the decoder
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in mod.ghn.named_parameters() if n.startswith("encoder."))


def test_a_prediction_missing_a_parameter_fails_loudly():
    mod = module()

    class Dropping(torch.nn.Module):
        def __init__(self, ghn):
            super().__init__()
            self.inner, self.config = ghn, ghn.config

        def forward(self, graphs, norms=False):
            out, fro = self.inner(graphs, norms=True)
            out = [{k: v for k, v in d.items() if k != "ln_f.bias"} for d in out]
            return (out, fro) if norms else out

    broken = GHNModule(Dropping(mod.ghn), OptimConfig())
    with pytest.raises(RuntimeError,
                       match=r"predicted 19 of 20 parameters .* missing \['ln_f.bias'\]"):
        broken.step_losses(batch(), archs(SPECS[:1]))


def test_checkpoint_holds_only_ghn_weights_and_the_resolved_config(tmp_path):
    from logah.ghn.io import load_ghn

    mod = module()
    mod.step_losses(batch(), archs(SPECS))  # builds targets; they must not enter the state dict
    state = mod.state_dict()
    assert state and all(k.startswith("ghn.") for k in state)
    hp = dict(mod.hparams)
    assert hp["ghn"]["hid"] == 32 and hp["ghn"]["n_types"] is not None
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hp, "global_step": 0}, path)
    ghn = load_ghn(path)
    graphs = archs(SPECS).graphs
    with torch.no_grad():
        a, b = ghn(graphs), mod.ghn(graphs)
    for da, db in zip(a, b):
        assert da.keys() == db.keys()
        assert all(torch.equal(da[k], db[k]) for k in da)


@pytest.mark.parametrize("preset", ["ghn3-t", "ghn2"])
def test_ghn3_and_ghn2_train_through_the_same_module(preset):
    torch.manual_seed(0)
    mod = GHNModule(GHN(GHNConfig(preset=preset, hid=32, layers=1, heads=4), seed=0), OptimConfig(),
                    seed=0)
    assert mod.hparams["ghn"]["decoder"] == "tiled"
    out = mod.step_losses(batch(), archs(SPECS))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    grads = [p.grad for p in mod.ghn.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_hyper_parameters_are_plain_values_in_the_shared_checkpoint_layout(tmp_path):
    from logah.ghn.io import GHN_CHECKPOINT

    mod = module(gamma=0.5, label_smoothing=0.1)
    hp = dict(mod.hparams)
    assert tuple(hp) == GHN_CHECKPOINT.hparam_names
    assert hp[GHN_CHECKPOINT.config_key] == mod.ghn.config.to_dict()
    assert hp["optim"]["lr"] == 3e-3 and hp["gamma"] == 0.5 and hp["label_smoothing"] == 0.1
    assert all(k.startswith(GHN_CHECKPOINT.prefix) for k in mod.state_dict())
    path = tmp_path / "hp.pt"
    torch.save({"hyper_parameters": hp}, path)
    assert torch.load(path, weights_only=True)["hyper_parameters"] == hp  # no pickled objects


def test_heldout_tally_sums_zero_shot_and_random_init_per_architecture():
    from logah.lit.ghn_module import HeldoutTally

    tally = HeldoutTally.start(archs(SPECS), [{}, {}], torch.device("cpu"))
    one, two = torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    tally.add(1, ((one, two), (two, one)), 8)
    tally.add(1, ((one, one), (one, one)), 4)
    assert tally.sums.tolist() == [[0.0, 2.0], [0.0, 3.0]]
    assert tally.correct.tolist() == [[0.0, 3.0], [0.0, 2.0]]
    assert tally.count.tolist() == [0.0, 12.0]
