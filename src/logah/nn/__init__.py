"""Target models (plain ``nn.Module``s, no Lightning): GPT-2 and ViT sharing one block, Llama."""

from logah.nn.build import build_model, count_params, init_weights, param_shapes
from logah.nn.gpt2 import GPT2
from logah.nn.layers import MLP, Attention, Block
from logah.nn.llama import Llama
from logah.nn.vit import ViT

__all__ = [
    "GPT2",
    "ViT",
    "Llama",
    "Attention",
    "Block",
    "MLP",
    "build_model",
    "count_params",
    "init_weights",
    "param_shapes",
]
