"""Hugging Face ``config.json`` -> :class:`ModelSpec` (torch-free, so configs can name HF targets).

``model.arch`` accepts a preset name or the path of an HF ``config.json`` / model directory
(:func:`spec_from_hf_path`); :mod:`logah.nn.hf` uses :func:`spec_from_hf_config` for weight
conversion. Only what our models represent exactly is accepted; anything else is one
:class:`HFConversionError` naming the setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from logah.config.errors import LogahError
from logah.config.files import read_json
from logah.config.specs import ModelSpec

HF_CONFIG_FILE = "config.json"
_GPT2_ACTS = ("gelu_new", "gelu_pytorch_tanh")  # both are the tanh-approximate GELU we use


class HFConversionError(LogahError):
    """A spec or state dict cannot be converted to/from Hugging Face without loss."""


def spec_from_hf_config(cfg: Any) -> ModelSpec:
    """A :class:`ModelSpec` from an HF config object or ``config.json`` dict (GPT-2, ViT, Llama)."""
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    kind = d.get("model_type")
    if kind == "llama":
        return _llama_spec(d)
    if kind == "gpt2":
        act = d.get("activation_function", "gelu_new")
        if act not in _GPT2_ACTS or not d.get("scale_attn_weights", True) or d.get(
            "scale_attn_by_inverse_layer_idx", False
        ):
            raise HFConversionError(
                f"HF GPT-2 config: activation_function={act!r} / attention scaling not supported "
                f"(need one of {_GPT2_ACTS}, scale_attn_weights=True, no inverse-layer scaling)"
            )
        D, H = d.get("n_embd", 768), d.get("n_head", 12)
        return ModelSpec(
            "gpt2", d.get("n_layer", 12), D, H, D // H, D // H, d.get("n_inner") or 4 * D,
            ln_eps=d.get("layer_norm_epsilon", 1e-5), vocab_size=d.get("vocab_size", 50257),
            n_ctx=d.get("n_positions", 1024), tie_embeddings=d.get("tie_word_embeddings", True),
        )
    if kind == "vit":
        if d.get("hidden_act", "gelu") != "gelu" or not d.get("qkv_bias", True):
            raise HFConversionError(
                f"HF ViT config: hidden_act={d.get('hidden_act')!r}, qkv_bias={d.get('qkv_bias')} "
                "not supported (need 'gelu' and qkv_bias=True)"
            )
        D, H = d.get("hidden_size", 768), d.get("num_attention_heads", 12)
        labels = d.get("id2label") or {}
        return ModelSpec(
            "vit", d.get("num_hidden_layers", 12), D, H, D // H, D // H,
            d.get("intermediate_size", 3072), ln_eps=d.get("layer_norm_eps", 1e-12),
            image_size=_square(d.get("image_size", 224), "image_size"),
            patch_size=_square(d.get("patch_size", 16), "patch_size"),
            in_chans=d.get("num_channels", 3), num_classes=d.get("num_labels") or len(labels) or 2,
        )
    raise HFConversionError(
        f"HF config: model_type={kind!r} is not supported (need gpt2, vit or llama)")


_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _llama_spec(d: dict[str, Any]) -> ModelSpec:
    """A llama spec from a ``LlamaForCausalLM`` ``config.json`` (transformers 4: ``rope_theta``,
    5: ``rope_parameters``); plain or "llama3"-scaled rotary, silu and no biases are exact."""
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    unsupported = [
        f"{k}={d.get(k)!r}" for k, ok in (
            ("hidden_act", d.get("hidden_act", "silu") == "silu"),
            ("attention_bias", not d.get("attention_bias", False)),
            ("mlp_bias", not d.get("mlp_bias", False)),
            ("pretraining_tp", d.get("pretraining_tp", 1) == 1),
        ) if not ok
    ]
    if kind not in ("default", "llama3"):
        unsupported.append(f"rope_type={kind!r}")
    if unsupported:
        raise HFConversionError(f"HF Llama config: {', '.join(unsupported)} not supported (need silu, no "
                    f"biases, default or llama3 rotary)")
    D, H = d.get("hidden_size", 4096), d.get("num_attention_heads", 32)
    head = d.get("head_dim") or D // H
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    return ModelSpec(
        "llama", d.get("num_hidden_layers", 32), D, H, head, head,
        d.get("intermediate_size", 11008), ln_eps=d.get("rms_norm_eps", 1e-6),
        vocab_size=d.get("vocab_size", 32000), n_ctx=d.get("max_position_embeddings", 2048),
        tie_embeddings=d.get("tie_word_embeddings", False),
        n_kv_heads=d.get("num_key_value_heads") or H, rope_base=float(theta),
        rope_scaling=tuple(float(rope[k]) for k in _LLAMA3_KEYS) if kind == "llama3" else (),
    )


def _square(v: Any, name: str) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise HFConversionError(f"HF ViT config: {name}={list(v)} is not square")
        v = v[0]
    return int(v)


def hf_config_file(path: str | os.PathLike) -> Path | None:
    """``path`` itself when it is a ``.json`` file, ``path/config.json`` for a directory holding
    one, else ``None``."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".json":
        return p
    if p.is_dir() and (p / HF_CONFIG_FILE).is_file():
        return p / HF_CONFIG_FILE
    return None


def is_hf_arch(value: Any) -> bool:
    """Whether ``value`` names an HF ``config.json`` or a model directory holding one."""
    return isinstance(value, str) and hf_config_file(value) is not None


def spec_from_hf_path(path: str | os.PathLike) -> ModelSpec:
    """The spec of an HF ``config.json`` or model directory (weights, if any, are not read).

    Raises:
        HFConversionError: no such file, unreadable JSON or an unsupported config (one line,
            naming the file).
    """
    f = hf_config_file(path)
    if f is None:
        raise HFConversionError(f"{path}: not an HF config.json or a directory holding one")
    cfg = read_json(f)  # strict JSON; an empty, truncated or foreign file is one line
    try:
        return spec_from_hf_config(cfg)
    except HFConversionError as e:
        raise HFConversionError(f"{f}: {e}") from None
