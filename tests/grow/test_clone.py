"""HyperCloning (width, logits preserved, noise breaks symmetry) and G_stack (layer mapping)."""

from __future__ import annotations

import pytest
import torch
from growkit import SPECS, TOL, inputs, logits, max_diff, model_of, random_state

from logah.grow import GrowError
from logah.grow.clone import clone_factors, hyperclone, layer_map, stack_layers, stack_to

# Every width doubled or tripled, heads and per-head dims too (4 heads from 2, d_qk x2, d_v x3).
WIDER = {"d_model": 32, "n_heads": 4, "d_qk": 16, "d_v": 24, "d_mlp": 128}


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_hyperclone_preserves_logits(name, noise):
    spec = SPECS[name]
    state = random_state(spec)
    big = spec.replace(**WIDER)
    new_spec, new = hyperclone(spec, state, big, noise=noise, seed=3)
    assert new_spec == big and new_spec.growth[-1]["op"] == "hyperclone"
    assert new["blocks.1.mlp.fc.weight"].shape == (128, 32)
    x = inputs(spec)
    assert max_diff(logits(new_spec, new, x), logits(spec, state, x)) < TOL
    # the hidden state is the small one's repeated: [h, h] after the embeddings
    if spec.family == "gpt2":
        assert torch.equal(new["wte.weight"][:, :16], new["wte.weight"][:, 16:])
    fc = new["blocks.0.mlp.fc.weight"]  # (4 x 32 copies of rows, 2 input copies)
    halves_equal = torch.allclose(fc[:, :16], fc[:, 16:], atol=0)
    assert halves_equal == (noise == 0.0)


def test_hyperclone_does_not_write_its_input():
    spec = SPECS["gpt2-tied"]
    state = random_state(spec)
    before = {k: v.clone() for k, v in state.items()}
    hyperclone(spec, state, spec.replace(d_model=32, n_heads=4, d_mlp=64), noise=0.1)
    assert all(torch.equal(before[k], state[k]) for k in state)


def _train(spec, state, steps=5, lr=0.05):
    model = model_of(spec, {k: v.clone() for k, v in state.items()}).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, spec.vocab_size, (4, spec.n_ctx), generator=gen)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out[:, :-1].reshape(-1, out.shape[-1]),
                                                 x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict()


def test_noise_breaks_clone_symmetry_under_training():
    """Exact clones get identical gradients and stay clones; with noise they drift apart."""
    spec = SPECS["gpt2-untied"]
    big = spec.replace(d_model=32, n_heads=4, d_mlp=128)  # d_mlp 64 -> 128: 2 copies per unit
    gaps = {}
    for noise in (0.0, 0.1):
        new_spec, new = hyperclone(spec, random_state(spec), big, noise=noise, seed=0)
        trained = _train(new_spec, new)
        fc = trained["blocks.0.mlp.fc.weight"]  # (2 x 64 unit copies, 2 x 16 input copies)
        q = trained["blocks.1.attn.q.weight"]  # (2 x 2 head copies x 8, 32): heads 0,1 vs 2,3
        gaps[noise] = max((fc[:64] - fc[64:]).abs().max().item(),
                          (q[:16] - q[16:]).abs().max().item())
    assert gaps[0.0] < 1e-12
    assert gaps[0.1] > 1e-4


@pytest.mark.parametrize("big, msg", [
    ({"d_model": 24}, "not a multiple: d_model 16 -> 24"),
    ({"n_layer": 3}, "width only"),
    ({"vocab_size": 12}, "vocab_size: cloning keeps it fixed"),
    ({"n_ctx": 8}, "n_ctx: cloning keeps it fixed"),
])
def test_hyperclone_errors(big, msg):
    spec = SPECS["gpt2-tied"]
    with pytest.raises(GrowError, match=msg):
        hyperclone(spec, random_state(spec), spec.replace(**big))
    with pytest.raises(GrowError, match="family"):
        clone_factors(spec, SPECS["vit"])


def test_stack_layer_mapping():
    spec = SPECS["vit"]  # 2 layers
    state = random_state(spec)
    assert layer_map(2, 5) == [0, 1, 0, 1, 0]
    new_spec, new = stack_layers(spec, state, 5)
    assert new_spec.n_layer == 5 and new_spec.growth[-1]["args"]["map"] == [0, 1, 0, 1, 0]
    for j, i in enumerate(layer_map(2, 5)):
        for k, v in state.items():
            if k.startswith(f"blocks.{i}."):
                assert torch.equal(new[k.replace(f"blocks.{i}.", f"blocks.{j}.", 1)], v)
    assert torch.equal(new["head.weight"], state["head.weight"])
    model_of(new_spec, new)  # loads strictly: names and shapes are the 5-layer model's
    with pytest.raises(GrowError, match="shrink"):
        stack_layers(spec, state, 1)


def test_stack_with_width_cloning():
    spec = SPECS["gpt2-tied"]
    state = random_state(spec)
    big = spec.replace(n_layer=4, d_model=32, n_heads=4, d_mlp=64)
    new_spec, new = stack_to(spec, state, big, noise=0.0)
    assert new_spec.replace(growth=()) == big.replace(growth=())
    assert [s["op"] for s in new_spec.growth] == ["hyperclone", "stack"]
    wide_spec, wide = hyperclone(spec, state, big.replace(n_layer=2))
    assert all(torch.equal(new[f"blocks.{j}.attn.q.weight"], wide[f"blocks.{j % 2}.attn.q.weight"])
               for j in range(4))
    # not function-preserving: the extra layers change the output
    x = inputs(spec)
    assert max_diff(logits(new_spec, new, x), logits(spec, state, x)) > 1e-3


def test_llama_stacks_but_does_not_clone_width():
    from logah.config import get_preset
    from logah.nn import build_model

    spec = get_preset("llama-tiny").replace(vocab_size=16, n_ctx=8)
    state = {k: v.detach() for k, v in build_model(spec, seed=0).state_dict().items()}
    new_spec, new = stack_to(spec, state, spec.replace(n_layer=5))
    assert new_spec.n_layer == 5 and torch.equal(new["blocks.4.attn.q.weight"],
                                                 state["blocks.0.attn.q.weight"])
    with pytest.raises(GrowError, match="implemented for gpt2 and vit, not llama"):
        hyperclone(spec, state, spec.replace(d_model=128, n_heads=8, d_mlp=352))
