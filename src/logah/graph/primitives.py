"""The node vocabulary of architecture graphs, and which modules / functions map to which node type.

Ids 0-17 are the reference GHN vocabulary (GHN-2 ``PRIMITIVES_DEEPNETS1M`` 0-14 plus LoGAH's
``rmsnorm``, ``rot_emb``, ``gate``) so type embeddings keep their meaning. Ids from 18 on are ours:
the reference drops activations and never predicts the ViT class token; we give them nodes.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from logah.nn.llama import rotary

PRIMITIVES: list[str] = [
    "max_pool",  # 0
    "avg_pool",  # 1
    "sep_conv",  # 2  grouped convolution, dilation 1
    "dil_conv",  # 3  grouped convolution, dilation > 1
    "conv",  # 4  every Linear / Conv weight (and a tied LM head)
    "msa",  # 5  attention: one node fed by Q, K and V
    "cse",  # 6  (reference: channel squeeze-excitation; unused by our models)
    "sum",  # 7  residual / embedding add of two computed tensors
    "concat",  # 8  concatenation of two computed tensors
    "input",  # 9  node 0
    "bias",  # 10 the bias of a Linear / Conv, or a free 1-D parameter added to a tensor
    "bn",  # 11 BatchNorm (weight + bias)
    "ln",  # 12 LayerNorm (weight + bias)
    "pos_enc",  # 13 any embedding: nn.Embedding, learned positional parameter
    "glob_avg",  # 14 global average pooling / mean
    "rmsnorm",  # 15 RMSNorm (Llama's nn.RMSNorm)
    "rot_emb",  # 16 rotary position embedding applied to q or k (logah.nn.llama.rotary)
    "gate",  # 17 product of two computed tensors (SwiGLU's silu(gate) * up)
    # ---- additions (not in the reference vocabulary) ----
    "gelu",  # 18 GELU (exact or tanh)
    "relu",  # 19 ReLU / ReLU6
    "act",  # 20 any other elementwise activation (SiLU, Tanh, Sigmoid, LeakyReLU, ...)
    "cls_token",  # 21 a learned token concatenated to the sequence (ViT class token)
    "select",  # 22 token selection x[:, i] (ViT classifier reading the class token)
]
TYPE_ID: dict[str, int] = {name: i for i, name in enumerate(PRIMITIVES)}

# Parameter-free torch.nn modules -> node type.
MODULE_TYPES: dict[type[nn.Module], str] = {
    nn.GELU: "gelu",
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    **{m: "act" for m in (nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU,
                          nn.Softplus, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh,
                          nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)},
    nn.Softmax: "msa",  # as the reference: a softmax marks attention
    nn.MaxPool1d: "max_pool",
    nn.MaxPool2d: "max_pool",
    nn.AdaptiveMaxPool1d: "max_pool",
    nn.AdaptiveMaxPool2d: "max_pool",
    nn.AvgPool1d: "avg_pool",
    nn.AvgPool2d: "avg_pool",
    nn.AdaptiveAvgPool1d: "glob_avg",
    nn.AdaptiveAvgPool2d: "glob_avg",
}
# Parameter-free modules that only move data around: transparent (no node).
TRANSPARENT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten,
)
# Modules with parameters that the builder expands into nodes itself (see trace.py).
PARAM_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.RMSNorm,
    nn.Embedding, nn.MultiheadAttention,
)
# Containers are traced through, never leaves.
CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _both(name: str) -> tuple:
    """``torch.name``, ``F.name`` and ``Tensor.name`` (fx records methods by their name)."""
    out: list = [name]
    for ns in (torch, F):
        if hasattr(ns, name):
            out.append(getattr(ns, name))
    return tuple(out)


def _table(spec: dict[str, tuple[str, ...]]) -> dict:
    table: dict = {}
    for prim, names in spec.items():
        for n in names:
            for key in _both(n):
                table[key] = prim
    return table


# Functions / methods that become a node of their own (keys: callables for call_function, method
# names for call_method). Their tensor operands feed the node.
FUNCTION_TYPES: dict = {
    **_table({
        "gelu": ("gelu",),
        "relu": ("relu", "relu_", "relu6"),
        "act": ("silu", "sigmoid", "tanh", "leaky_relu", "elu", "celu", "selu", "softplus", "mish",
                "hardswish", "hardsigmoid", "hardtanh", "softsign", "logsigmoid"),
        "msa": ("scaled_dot_product_attention", "softmax"),
        "max_pool": ("max_pool1d", "max_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"),
        "avg_pool": ("avg_pool1d", "avg_pool2d"),
        "glob_avg": ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "mean"),
    }),
    rotary: "rot_emb",  # fx.wrap'd in logah.nn.llama: one call per q / k
}
# Functions whose parameter operands are owned by the node they create.
# ``linear``/``conv``: the first parameter operand is the weight (``conv`` node), the next the bias.
PARAM_FUNCTIONS: dict = _table({
    "conv": ("linear", "conv1d", "conv2d"),
    "ln": ("layer_norm",),
    "rmsnorm": ("rms_norm",),
    "pos_enc": ("embedding",),
})
ADD_OPS = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__"}
MUL_OPS = {operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__", "__rmul__"}
CAT_OPS = {torch.cat, torch.concat, torch.concatenate, torch.stack}
MATMUL_OPS = {operator.matmul, torch.matmul, torch.mm, torch.bmm, "matmul", "mm", "bmm"}
# Calls whose result is not a tensor (shapes, sizes, dtypes): they carry no data dependency.
VALUE_METHODS = {"size", "dim", "numel", "nelement", "stride", "element_size", "get_device",
                 "is_contiguous", "is_floating_point", "data_ptr"}
TENSOR_ATTRS = {"T", "mT", "H", "mH", "data", "real", "imag"}
# Tensor factories: a tensor that depends on no computed value (positions, masks, constants).
FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor,
             torch.eye, torch.rand, torch.randn, torch.randint, torch.linspace,
             torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like,
             torch.randn_like, "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"}
# Calls returning a tuple of tensors (indexed later by getitem).
SEQ_OPS = {torch.chunk, torch.split, torch.unbind, torch.tensor_split, "chunk", "split", "unbind",
           "tensor_split"}
# Ops a free parameter may pass through before it is consumed (e.g. cls_token.expand(B, -1, -1)).
PARAM_VIEW_OPS = {"expand", "expand_as", "view", "reshape", "t", "transpose", "permute",
                  "unsqueeze", "squeeze", "flatten", "contiguous", "to", "type_as", "float", "half",
                  "bfloat16", "repeat", torch.transpose, torch.permute, torch.reshape,
                  torch.unsqueeze,
                  torch.squeeze, torch.flatten, torch.t, operator.getitem}


def conv_kind(m: nn.Module) -> str:
    """Node type of a Linear (``conv``) or Conv layer (``conv`` / ``sep_conv`` / ``dil_conv``)."""
    if isinstance(m, nn.Conv1d | nn.Conv2d):
        return conv_type(m.groups, m.dilation)
    return "conv"


def conv_type(groups: int, dilation) -> str:
    if groups == 1:
        return "conv"
    dil = dilation if isinstance(dilation, tuple | list) else (dilation,)
    return "dil_conv" if any(d > 1 for d in dil) else "sep_conv"
