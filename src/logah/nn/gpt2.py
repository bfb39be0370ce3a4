"""GPT-2: token + learned position embeddings, causal pre-LN blocks, final LayerNorm, LM head."""

from __future__ import annotations

import torch
from torch import nn

from logah.config.specs import ModelSpec
from logah.nn.layers import Block


def _check_len(T: int, n_ctx: int) -> None:
    # A function of its own, wrapped for torch.fx: symbolic tracing (logah.graph) records it as one
    # opaque call instead of failing on shape-dependent control flow.
    if T > n_ctx:
        raise ValueError(f"sequence length {T} exceeds model.n_ctx={n_ctx}")


torch.fx.wrap("_check_len")


class GPT2(nn.Module):
    """Causal language model. ``forward(idx (B, T) int64) -> logits (B, T, vocab_size)``.

    With ``spec.tie_embeddings`` the LM head has no parameter of its own: it reuses ``wte.weight``
    (so the state dict has no ``lm_head.weight``, and growth/prediction handle one tensor).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.family != "gpt2":
            raise ValueError(f"GPT2 needs a gpt2 spec, got family={spec.family!r}")
        self.spec = spec
        self.wte = nn.Embedding(spec.vocab_size, spec.d_model)
        self.wpe = nn.Embedding(spec.n_ctx, spec.d_model)
        self.blocks = nn.ModuleList(Block(spec, causal=True) for _ in range(spec.n_layer))
        self.ln_f = nn.LayerNorm(spec.d_model, eps=spec.ln_eps)
        self.lm_head = None if spec.tie_embeddings else nn.Linear(spec.d_model, spec.vocab_size,
                                                                  bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        _check_len(T, self.spec.n_ctx)
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, d_model)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight
        return x @ head.t()  # (B, T, vocab_size)
