"""Growth-test helpers: tiny float64 models with every parameter randomised.

Imported by module name (pytest puts tests/grow on sys.path).
Exactness is tested in float64, eval mode, with LayerNorm gains/biases and all biases moved off
their defaults (defaults hide LN, bias and rescaling bugs) and free blocks filled with large noise.
"""

from __future__ import annotations

import torch

from logah.config import gpt2_spec, llama_spec, vit_spec
from logah.config.grow import GrowInit
from logah.nn import build_model

SPECS = {
    "gpt2-tied": gpt2_spec(2, 16, 2, vocab_size=11, n_ctx=7),
    "gpt2-untied": gpt2_spec(2, 16, 2, vocab_size=11, n_ctx=7, tie_embeddings=False),
    "vit": vit_spec(2, 16, 2, image_size=8, patch_size=4, num_classes=5),
}
# Llama: GQA (4 query heads in 2 groups, head width 4) tied, and MHA (2 heads of 8) untied.
LLAMA_SPECS = {
    "llama-gqa": llama_spec(2, 16, 4, 2, 24, vocab_size=11, n_ctx=7),
    "llama-mha-untied": llama_spec(2, 16, 2, 2, 24, vocab_size=11, n_ctx=7, tie_embeddings=False),
}
# Free entries drawn large: they must not matter.
BIG = GrowInit(std=3.0, bias_std=3.0, ln_std=3.0)
TOL = 1e-10


@torch.no_grad()
def random_state(spec, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every parameter random: LN gains 1 + N(0, 0.3^2), everything else N(0, 0.5^2)."""
    gen = torch.Generator().manual_seed(seed)
    model = build_model(spec, "meta")
    state = {}
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        is_gain = ".ln_" in f".{name}" and name.endswith("weight")
        state[name] = 1.0 + 0.3 * r if is_gain else 0.5 * r
    return state


def model_of(spec, state) -> torch.nn.Module:
    """A float64 eval-mode model holding exactly ``state`` (strict: names and shapes must match)."""
    model = build_model(spec, "meta")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def inputs(spec, seed: int = 0, batch: int = 3, T: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if spec.family in ("gpt2", "llama"):
        return torch.randint(0, spec.vocab_size, (batch, T or spec.n_ctx), generator=gen)
    size = (batch, spec.in_chans, spec.image_size, spec.image_size)
    return torch.randn(size, generator=gen, dtype=torch.float64)


@torch.no_grad()
def logits(spec, state, x) -> torch.Tensor:
    return model_of(spec, state)(x)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def grow_case(spec, op: str, to: int, seed: int = 1):
    """(spec, state, grown spec, grown state) of one operator on a random state, free entries BIG."""
    from logah.grow import OPS

    state = random_state(spec)
    s2, state2 = OPS[op](spec, state, to, seed=seed, init=BIG)
    return spec, state, s2, state2


def assert_exact(s, state, s2, state2, zero_entries) -> None:
    """Same logits (<= TOL), the parameter count of the grown spec, and every must-be-zero entry
    ``(tensor, index)`` exactly 0."""
    from logah.nn import count_params

    x = inputs(s)
    assert max_diff(logits(s2, state2, x), logits(s, state, x)) <= TOL
    assert count_params(s2) == sum(t.numel() for t in state2.values())
    for name, idx in zero_entries:
        assert torch.all(state2[name][idx] == 0), name


def break_zero_rule(s, state, s2, state2, entry) -> float:
    """Max |logit change| when the must-be-zero ``entry`` is filled with noise (random, not a
    constant: a shift equal across all residual channels is invisible to LayerNorm)."""
    name, idx = entry
    broken = dict(state2)
    broken[name] = state2[name].clone()
    broken[name][idx] = torch.randn_like(broken[name][idx])
    x = inputs(s)
    return max_diff(logits(s2, broken, x), logits(s, state, x))
