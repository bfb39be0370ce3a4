"""ViT: patch embedding, class token, learned positions, pre-LN blocks, final LayerNorm, head."""

from __future__ import annotations

import torch
from torch import nn

from logah.config.specs import ModelSpec
from logah.nn.layers import Block


class ViT(nn.Module):
    """Image classifier. ``forward(images (B, C, H, W)) -> logits (B, num_classes)``.

    The classifier reads the class token after the final LayerNorm (as HF / torchvision do).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.family != "vit":
            raise ValueError(f"ViT needs a vit spec, got family={spec.family!r}")
        self.spec = spec
        p = spec.patch_size
        self.patch_embed = nn.Conv2d(spec.in_chans, spec.d_model, kernel_size=p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.n_patches + 1, spec.d_model))
        self.blocks = nn.ModuleList(Block(spec, causal=False) for _ in range(spec.n_layer))
        self.ln_f = nn.LayerNorm(spec.d_model, eps=spec.ln_eps)
        self.head = nn.Linear(spec.d_model, spec.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, n_patches, d_model)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, n_patches + 1, d_model)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)[:, 0])  # (B, num_classes)
