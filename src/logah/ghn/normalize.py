"""How each predicted tensor is normalised, per target family (reference §2.9 / §10.6).

``norm='auto'`` picks per model family: GPT-2 -> ``std`` (LoGAH's ``GHN3_GPT``), Llama -> ``std``
(HF's Llama init is N(0, 0.02) for every matrix: q/k/v/o, gate/up/down, embedding and head alike,
with no residual scaling, so a prediction scaled to 0.02 is on the scale a Llama fine-tune expects),
ViT and any other model -> ``fan_in`` (GHN-2/GHN-3 ``_normalize``).

* ``fan_in`` — weights (>= 2-D, owned by a conv/linear node): ``w * sqrt(beta / fan_in)``,
  fan_in = c_in * kh * kw, beta = 1 for 4-D weights with c_in == 1 or kh < kw, else 2. With
  ``standardize`` the weight is first standardised, so its std is exactly ``sqrt(beta/fan_in)``
  whatever the decoder's raw output scale (for a fused tensor: of the whole tensor).
* ``std`` — weights: ``w / (std(w) + 1e-7) * norm_std`` (0.02); with ``scale_residual`` GPT-2's
  residual projections (``attn.proj``, ``mlp.proj``) get ``norm_std / sqrt(2 n_layer)``, the same
  scaling as GPT-2's ordinary init (the reference leaves them at 0.02 and re-randomises them
  before fine-tuning; we keep the prediction and scale it).
* embeddings (>= 2-D tensors owned by any other node: ``wte``, ``wpe``, ``pos_embed``,
  ``cls_token``) stay raw, as in the reference, unless ``norm_embeddings`` (then std -> norm_std);
  a *tied* embedding (also used as a weight, GPT-2's ``wte`` as the LM head) gets std
  ``norm_std`` with ``norm_tied`` (the default).
* 1-D tensors in both modes: norm weights ``2 sigmoid(0.5 x)`` (row 0 of the 1-D prediction),
  biases ``tanh(0.2 x)`` (row 1).
* ``none`` — raw decoder output everywhere (1-D tensors still take their row).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from logah.config.ghn import GHNConfig

WEIGHT_TYPES = ("conv", "sep_conv", "dil_conv")
RESIDUAL_SUFFIXES = ("attn.proj.weight", "mlp.proj.weight")


@dataclass(frozen=True)
class Rule:
    """What to do with one predicted tensor.

    ``std_target > 0``: scale to that std; else multiply by ``scale`` (>= 2-D tensors).
    ``row`` and ``act`` apply to 1-D tensors (row of the (2, c) prediction; sigmoid/tanh/none).
    """

    std_target: float = 0.0
    scale: float = 1.0
    row: int = 0
    act: str = "none"


def family_of(spec_key: str) -> tuple[str | None, int]:
    """(family, n_layer) from a graph's ``spec_key`` (``(None, 0)`` for a user module)."""
    if not spec_key:
        return None, 0
    d = json.loads(spec_key)
    return d.get("family"), int(d.get("n_layer", 0))


def mode_for(cfg: GHNConfig, family: str | None) -> str:
    if cfg.norm != "auto":
        return cfg.norm
    return "std" if family in ("gpt2", "llama") else "fan_in"


def rule_for(cfg: GHNConfig, name: str, shape: tuple[int, ...],
             shape4: tuple[int, int, int, int], owner_type: str, family: str | None,
             n_layer: int, tied: bool = False) -> Rule:
    """The normalisation rule of parameter ``name`` (true ``shape``), a slice of the tensor of
    4-D shape ``shape4`` predicted for a node of type ``owner_type``; ``tied``: the tensor is
    also used as a weight elsewhere (GPT-2's ``wte`` as the LM head)."""
    mode = mode_for(cfg, family)
    if len(shape) == 1:
        row = 1 if name.endswith("bias") else 0
        act = "none" if mode == "none" else ("tanh" if row else "sigmoid")
        return Rule(row=row, act=act)
    if mode == "none":
        return Rule()
    if owner_type not in WEIGHT_TYPES:  # an embedding / learned token
        # A tied embedding is also the output layer: raw, its logits scale with the decoder's
        # arbitrary output scale, so it gets the family's weight std (GPT-2 inits it at 0.02).
        if cfg.norm_embeddings or (tied and cfg.norm_tied):
            return Rule(std_target=cfg.norm_std)
        return Rule()
    if mode == "std":
        std = cfg.norm_std
        if cfg.scale_residual and family == "gpt2" and name.endswith(RESIDUAL_SUFFIXES):
            std /= math.sqrt(2 * max(n_layer, 1))
        return Rule(std_target=std)
    _, ci, kh, kw = shape4
    beta = 1.0 if len(shape) == 4 and (ci == 1 or kh < kw) else 2.0
    gain = math.sqrt(beta / (ci * kh * kw))
    return Rule(std_target=gain) if cfg.standardize else Rule(scale=gain)


def apply_1d(v: torch.Tensor, rule: Rule) -> torch.Tensor:
    """(g, 2, c) raw 1-D predictions -> (g, c) for ``rule.row`` with the 1-D nonlinearity."""
    x = v[:, rule.row]
    if rule.act == "sigmoid":
        return 2 * torch.sigmoid(0.5 * x)
    if rule.act == "tanh":
        return torch.tanh(0.2 * x)
    return x
