"""The Llama part of the Hugging Face conversion (``LlamaForCausalLM``), used by :mod:`logah.nn.hf`.

HF Llama names (``model.embed_tokens``, ``model.layers.{i}.self_attn.{q,k,v,o}_proj``,
``mlp.{gate,up,down}_proj``, ``input_layernorm``, ``post_attention_layernorm``, ``model.norm``,
``lm_head``) are the same on disk and in memory, and every tensor is (out, in) as ours, so the map is
one-to-one. HF applies rotary with ``rotate_half`` on the q/k projections' natural layout (dim ``i``
pairs with ``i + head_dim/2``), which is what :mod:`logah.nn.llama` does, so no permutation is
needed (unlike Meta's original interleaved checkpoints, which HF permutes on conversion).
"""

from __future__ import annotations

from typing import Any

from logah.config.specs import ModelSpec

# spec.rope_scaling, in order, as HF names the "llama3" rope parameters
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")

# ours (relative to blocks.{i}.) -> HF (relative to model.layers.{i}.)
_BLOCK = {
    "ln_1.weight": "input_layernorm.weight",
    "attn.q.weight": "self_attn.q_proj.weight",
    "attn.k.weight": "self_attn.k_proj.weight",
    "attn.v.weight": "self_attn.v_proj.weight",
    "attn.proj.weight": "self_attn.o_proj.weight",
    "ln_2.weight": "post_attention_layernorm.weight",
    "mlp.gate.weight": "mlp.gate_proj.weight",
    "mlp.fc.weight": "mlp.up_proj.weight",
    "mlp.proj.weight": "mlp.down_proj.weight",
}


def llama_names(spec: ModelSpec) -> list[tuple[str, str]]:
    """(our name, HF name) for every tensor of ``spec``, in our canonical order."""
    out = [("wte.weight", "model.embed_tokens.weight")]
    for i in range(spec.n_layer):
        out += [(f"blocks.{i}.{ours}", f"model.layers.{i}.{hf}") for ours, hf in _BLOCK.items()]
    out.append(("ln_f.weight", "model.norm.weight"))
    if not spec.tie_embeddings:
        out.append(("lm_head.weight", "lm_head.weight"))
    return out


def llama_export_problem(spec: ModelSpec) -> str | None:
    """Why ``spec`` has no exact ``LlamaForCausalLM`` equivalent (``None`` when it has one)."""
    if spec.d_qk != spec.d_v:
        return (f"non-standard dims d_qk={spec.d_qk} != d_v={spec.d_v} (HF Llama has one head_dim "
                f"for queries/keys and values)")
    if spec.d_model % spec.n_heads:
        return (f"d_model={spec.d_model} is not divisible by n_heads={spec.n_heads} "
                f"(transformers' LlamaConfig rejects that, although head_dim is free)")
    if len(spec.rope_dims) > 1:
        return (f"rotary frequencies fixed at widths rope_dims={list(spec.rope_dims)} by d_qk "
                f"growth (HF recomputes all {spec.d_qk // 2} pair frequencies from head_dim="
                f"{spec.d_qk}, which would change the grown function)")
    return None


def llama_config_dict(spec: ModelSpec, dtype: str) -> dict[str, Any]:
    """``config.json`` of the ``LlamaForCausalLM`` equivalent to ``spec`` (readable by
    transformers 4, via ``rope_theta``, and 5, via ``rope_parameters``)."""
    scaling = dict(zip(LLAMA3_KEYS, spec.rope_scaling)) if spec.rope_scaling else {}
    if scaling:
        scaling["original_max_position_embeddings"] = int(scaling["original_max_position_embeddings"])
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": dtype,
        "vocab_size": spec.vocab_size, "hidden_size": spec.d_model,
        "intermediate_size": spec.d_mlp, "num_hidden_layers": spec.n_layer,
        "num_attention_heads": spec.n_heads, "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.d_qk, "hidden_act": "silu", "max_position_embeddings": spec.n_ctx,
        "initializer_range": 0.02, "rms_norm_eps": spec.ln_eps,
        "tie_word_embeddings": spec.tie_embeddings, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "pretraining_tp": 1, "rope_theta": spec.rope_base,
        "rope_parameters": {"rope_type": "llama3" if scaling else "default",
                            "rope_theta": spec.rope_base, **scaling},
        "rope_scaling": {"rope_type": "llama3", **scaling} if scaling else None,
    }
