"""Growth-test helpers: tiny float64 models with every parameter randomised.

Imported by module name (pytest puts tests/grow on sys.path).
Exactness is tested in float64, eval mode, with LayerNorm gains/biases and all biases moved off
their defaults (defaults hide LN, bias and rescaling bugs) and free blocks filled with large noise.
"""

from __future__ import annotations

import torch

from logah.config import gpt2_spec, vit_spec
from logah.config.grow import GrowInit
from logah.nn import build_model

SPECS = {
    "gpt2-tied": gpt2_spec(2, 16, 2, vocab_size=11, n_ctx=7),
    "gpt2-untied": gpt2_spec(2, 16, 2, vocab_size=11, n_ctx=7, tie_embeddings=False),
    "vit": vit_spec(2, 16, 2, image_size=8, patch_size=4, num_classes=5),
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
    if spec.family == "gpt2":
        return torch.randint(0, spec.vocab_size, (batch, T or spec.n_ctx), generator=gen)
    size = (batch, spec.in_chans, spec.image_size, spec.image_size)
    return torch.randn(size, generator=gen, dtype=torch.float64)


@torch.no_grad()
def logits(spec, state, x) -> torch.Tensor:
    return model_of(spec, state)(x)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()
