"""Lossless conversion between our canonical state dicts and Hugging Face ``transformers``.

Our GPT-2 maps onto ``GPT2LMHeadModel``, our ViT onto ``ViTForImageClassification`` and our Llama
onto ``LlamaForCausalLM`` (its names and config in :mod:`logah.nn.hf_llama`) whenever the dims are
standard (``spec.is_standard``: for GPT-2/ViT per-head q/k width == v width and
``n_heads * d_qk == d_model``; for Llama ``d_qk == d_v`` and standard rotary frequencies), which is
what those classes can represent.

HF names live only in this module. On disk HF uses the long-standing checkpoint names (what
``save_pretrained`` writes in transformers 4 and 5 alike, e.g. ``vit.encoder.layer.{i}.attention.
attention.query``), so :func:`to_hf_state_dict` / :func:`export_hf` produce those. Import
(:func:`from_hf_state_dict`, :func:`load_hf_dir`) also accepts transformers 5's in-memory names
(``vit.layers.{i}.attention.q_proj``, ...) and GPT-2 checkpoints without the ``transformer.``
prefix, so ``hf_model.state_dict()`` converts directly.

Only :func:`hf_config` needs ``transformers`` (the optional extra ``logah[hf]``); export writes
``config.json`` itself and import reads it as JSON, so both work without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from logah.config.hf_spec import HF_CONFIG_FILE, HFConversionError, spec_from_hf_config
from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.nn.build import param_shapes
from logah.nn.hf_llama import llama_config_dict, llama_export_problem, llama_names
from logah.nn.readers import (
    WeightsError,
    read_checkpoint,
    read_json,
    read_safetensors,
    read_sharded_safetensors,
)
from logah.utils.fs import atomic_path

HF_WEIGHTS_FILE = "model.safetensors"
HF_BIN_FILE = "pytorch_model.bin"
_GPT2_EOT = 50256  # <|endoftext|> in the GPT-2 BPE vocabulary
# Tensors HF checkpoints may carry that are not parameters of the model (old GPT-2 causal-mask
# buffers) or that ViTForImageClassification itself ignores (ViTModel's pooler).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "pooler.dense.weight", "pooler.dense.bias")

State = dict[str, torch.Tensor]


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise HFConversionError(
            "Hugging Face support needs transformers: pip install 'logah[hf]'"
        ) from None
    return transformers


def check_hf_exportable(spec: ModelSpec) -> None:
    """Raise :class:`HFConversionError` naming the dims unless ``spec.is_standard``."""
    if spec.family == "llama":
        problem = llama_export_problem(spec)
        if problem:
            raise HFConversionError(
                f"cannot export to Hugging Face LlamaForCausalLM: {problem}; the model still saves "
                f"exactly with logah.nn.io.save_weights(..., hf=False)"
            )
        return
    if not spec.is_standard:
        raise HFConversionError(
            f"cannot export to Hugging Face: non-standard dims d_model={spec.d_model}, "
            f"n_heads={spec.n_heads}, d_qk={spec.d_qk}, d_v={spec.d_v} (HF needs d_qk == d_v and "
            f"n_heads*d_qk == d_model); save with logah.nn.io.save_weights(..., hf=False) instead"
        )


# ---- config -------------------------------------------------------------------------------------
def hf_config_dict(spec: ModelSpec, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """``config.json`` contents of the HF model equivalent to ``spec`` (needs no transformers)."""
    check_hf_exportable(spec)
    dt = str(dtype).removeprefix("torch.")
    if spec.family == "llama":
        return llama_config_dict(spec, dt)
    if spec.family == "gpt2":
        eot = _GPT2_EOT if spec.vocab_size > _GPT2_EOT else None
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "dtype": dt,
            "vocab_size": spec.vocab_size, "n_positions": spec.n_ctx, "n_embd": spec.d_model,
            "n_layer": spec.n_layer, "n_head": spec.n_heads, "n_inner": spec.d_mlp,
            "activation_function": "gelu_new", "layer_norm_epsilon": spec.ln_eps,
            "tie_word_embeddings": spec.tie_embeddings, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "summary_first_dropout": 0.0, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "bos_token_id": eot, "eos_token_id": eot,
        }
    return {
        "architectures": ["ViTForImageClassification"], "model_type": "vit", "dtype": dt,
        "hidden_size": spec.d_model, "num_hidden_layers": spec.n_layer,
        "num_attention_heads": spec.n_heads, "intermediate_size": spec.d_mlp,
        "hidden_act": "gelu", "layer_norm_eps": spec.ln_eps, "image_size": spec.image_size,
        "patch_size": spec.patch_size, "num_channels": spec.in_chans, "qkv_bias": True,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "id2label": {str(i): f"LABEL_{i}" for i in range(spec.num_classes)},
        "label2id": {f"LABEL_{i}": i for i in range(spec.num_classes)},
    }


def hf_config(spec: ModelSpec) -> Any:
    """``transformers.GPT2Config`` / ``ViTConfig`` / ``LlamaConfig`` for ``spec`` (``logah[hf]``).

    Raises:
        HFConversionError: non-standard dims (naming them), or transformers is not installed.
    """
    d = hf_config_dict(spec)
    tf = _transformers()
    cls = {"gpt2": tf.GPT2Config, "vit": tf.ViTConfig, "llama": tf.LlamaConfig}[d.pop("model_type")]
    d.pop("dtype")
    if cls is tf.LlamaConfig:  # transformers 5 reads rope_parameters, 4 reads rope_theta
        d.pop("rope_theta" if int(tf.__version__.split(".")[0]) >= 5 else "rope_parameters")
        d.pop("rope_scaling")
    return cls(**d)


# ---- name maps ----------------------------------------------------------------------------------
# One entry per tensor: (our name, [HF names, the on-disk one first], to_hf, from_hf). The
# functions move between our layout and HF's: GPT-2's Conv1D stores (in, out), i.e. transposed,
# and fuses q|k|v into one c_attn (weight (D, 3D), bias (3D,)).
Convert = Callable[..., list[torch.Tensor]]
Entry = tuple[list[str], list[str], Convert, Convert]


def _same(*ts: torch.Tensor) -> list[torch.Tensor]:
    return list(ts)


def _t(t: torch.Tensor) -> list[torch.Tensor]:
    return [t.t().contiguous()]


def _fuse_qkv_w(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    return [torch.cat([q, k, v], 0).t().contiguous()]  # 3 x (D, D) -> (D, 3D)


def _split_qkv_w(w: torch.Tensor) -> list[torch.Tensor]:
    return [c.t().contiguous() for c in w.chunk(3, dim=1)]  # (D, 3D) -> 3 x (D, D)


def _fuse_qkv_b(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    return [torch.cat([q, k, v], 0)]


def _split_qkv_b(b: torch.Tensor) -> list[torch.Tensor]:
    return [c.clone() for c in b.chunk(3, dim=0)]


def _entries(spec: ModelSpec) -> list[Entry]:
    if spec.family == "llama":
        return [([ours], [hf], _same, _same) for ours, hf in llama_names(spec)]
    return _gpt2_entries(spec) if spec.family == "gpt2" else _vit_entries(spec)


def _gpt2_entries(spec: ModelSpec) -> list[Entry]:
    def one(ours: str, hf: str, to: Convert = _same, back: Convert = _same) -> Entry:
        # Old/GPT2Model checkpoints drop the "transformer." prefix; accept both on import.
        return [ours], [f"transformer.{hf}", hf], to, back

    out = [one("wte.weight", "wte.weight"), one("wpe.weight", "wpe.weight")]
    for i in range(spec.n_layer):
        b, h = f"blocks.{i}.", f"h.{i}."
        out += [one(f"{b}ln_1.{p}", f"{h}ln_1.{p}") for p in ("weight", "bias")]
        out.append(([f"{b}attn.{x}.weight" for x in "qkv"], [f"transformer.{h}attn.c_attn.weight",
                    f"{h}attn.c_attn.weight"], _fuse_qkv_w, _split_qkv_w))
        out.append(([f"{b}attn.{x}.bias" for x in "qkv"], [f"transformer.{h}attn.c_attn.bias",
                    f"{h}attn.c_attn.bias"], _fuse_qkv_b, _split_qkv_b))
        out += [one(f"{b}attn.proj.weight", f"{h}attn.c_proj.weight", _t, _t),
                one(f"{b}attn.proj.bias", f"{h}attn.c_proj.bias")]
        out += [one(f"{b}ln_2.{p}", f"{h}ln_2.{p}") for p in ("weight", "bias")]
        for ours, hf in (("fc", "c_fc"), ("proj", "c_proj")):
            out += [one(f"{b}mlp.{ours}.weight", f"{h}mlp.{hf}.weight", _t, _t),
                    one(f"{b}mlp.{ours}.bias", f"{h}mlp.{hf}.bias")]
    out += [one(f"ln_f.{p}", f"ln_f.{p}") for p in ("weight", "bias")]
    if not spec.tie_embeddings:
        out.append((["lm_head.weight"], ["lm_head.weight"], _same, _same))
    return out


# ViT block: ours -> (on-disk HF name, transformers-5 in-memory name), relative to the layer.
_VIT_BLOCK = {
    "ln_1": ("layernorm_before", "layernorm_before"),
    "attn.q": ("attention.attention.query", "attention.q_proj"),
    "attn.k": ("attention.attention.key", "attention.k_proj"),
    "attn.v": ("attention.attention.value", "attention.v_proj"),
    "attn.proj": ("attention.output.dense", "attention.o_proj"),
    "ln_2": ("layernorm_after", "layernorm_after"),
    "mlp.fc": ("intermediate.dense", "mlp.fc1"),
    "mlp.proj": ("output.dense", "mlp.fc2"),
}


def _vit_entries(spec: ModelSpec) -> list[Entry]:
    def one(ours: str, *hf: str) -> Entry:
        # ViTModel checkpoints have no "vit." prefix; accept that spelling on import too.
        names = [*hf, *(n.removeprefix("vit.") for n in hf if n.startswith("vit."))]
        return [ours], list(dict.fromkeys(names)), _same, _same

    emb = "vit.embeddings."
    out = [one("cls_token", f"{emb}cls_token"), one("pos_embed", f"{emb}position_embeddings")]
    out += [one(f"patch_embed.{p}", f"{emb}patch_embeddings.projection.{p}")
            for p in ("weight", "bias")]
    for i in range(spec.n_layer):
        for ours, (disk, mem) in _VIT_BLOCK.items():
            out += [one(f"blocks.{i}.{ours}.{p}", f"vit.encoder.layer.{i}.{disk}.{p}",
                        f"vit.layers.{i}.{mem}.{p}") for p in ("weight", "bias")]
    out += [one(f"ln_f.{p}", f"vit.layernorm.{p}") for p in ("weight", "bias")]
    out += [one(f"head.{p}", f"classifier.{p}") for p in ("weight", "bias")]
    return out


def hf_renames(spec: ModelSpec) -> dict[str, str] | None:
    """Our name -> HF name when the conversion only renames tensors (Llama), else ``None`` (GPT-2
    transposes and fuses, so it needs :func:`to_hf_state_dict`). Lets a streaming writer produce
    the HF directory in the same pass as our weights."""
    check_hf_exportable(spec)
    return dict(llama_names(spec)) if spec.family == "llama" else None


# ---- state dicts --------------------------------------------------------------------------------
def to_hf_state_dict(spec: ModelSpec, state: State) -> State:
    """Our canonical state dict -> HF checkpoint names/layout (what ``save_pretrained`` writes).

    Tied GPT-2 models get no ``lm_head.weight`` (HF ties it to ``transformer.wte.weight``).

    Raises:
        HFConversionError: non-standard dims, or a tensor of ``spec`` is missing from ``state``.
    """
    check_hf_exportable(spec)
    out: State = {}
    for ours, hf_names, to_hf, _ in _entries(spec):
        missing = [n for n in ours if n not in state]
        if missing:
            raise HFConversionError(f"to_hf_state_dict: state has no tensor {missing[0]!r}")
        (out[hf_names[0]],) = to_hf(*(state[n] for n in ours))
    return out


def from_hf_state_dict(hf_config_or_dict: Any, hf_state: State) -> tuple[ModelSpec, State]:
    """HF config (object or ``config.json`` dict) + HF state dict -> (our spec, our state dict).

    Lossless: every HF tensor must be consumed (apart from known non-parameter buffers), so an
    unknown tensor is an error rather than silently dropped.

    Raises:
        HFConversionError: unsupported config, or a missing / unexpected / wrongly-shaped tensor.
    """
    spec = spec_from_hf_config(hf_config_or_dict)
    shapes = param_shapes(spec)  # built on the meta device, no memory
    left = dict(hf_state)
    state: State = {}
    for ours, hf_names, _, from_hf in _entries(spec):
        name = next((n for n in hf_names if n in left), None)
        if name is None:
            raise HFConversionError(f"HF state dict has no tensor {hf_names[0]!r}")
        for n, t in zip(ours, from_hf(left.pop(name)), strict=True):
            if tuple(t.shape) != shapes[n]:
                raise HFConversionError(
                    f"HF tensor {name!r}: shape {list(t.shape)} does not fit {n} {list(shapes[n])}"
                )
            state[n] = t
    if spec.family in CAUSAL_LM and spec.tie_embeddings:
        left.pop("lm_head.weight", None)  # in-memory HF state dicts list the tied head too
    extra = sorted(n for n in left if not n.endswith(_IGNORED_SUFFIXES))
    if extra:
        raise HFConversionError(f"HF state dict has {len(extra)} unexpected tensor(s): {extra[:5]}")
    return spec, state


def stream_to_hf(spec: ModelSpec, tensors: Iterable[tuple[str, torch.Tensor]]
                 ) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Convert ``(our name, tensor)`` pairs to HF layout as they arrive (any order).

    Yields ``(HF names, tensor)`` per HF tensor as soon as its inputs are all in (GPT-2's fused
    ``c_attn`` waits for q, k and v), so a caller holds at most a block's tensors. The names are
    the spellings of that one tensor (on-disk first, then transformers-5 in-memory / prefix-less).

    Raises:
        HFConversionError: non-standard dims, or ``tensors`` misses or repeats a tensor of ``spec``.
    """
    check_hf_exportable(spec)
    entries = _entries(spec)
    waiting = {n: i for i, (ours, *_) in enumerate(entries) for n in ours}
    held: State = {}
    for name, t in tensors:
        i = waiting.pop(name, None)
        if i is None:
            raise HFConversionError(f"stream_to_hf: unexpected or repeated tensor {name!r}")
        held[name] = t
        ours, hf_names, to_hf, _ = entries[i]
        if all(n in held for n in ours):
            (out,) = to_hf(*(held.pop(n) for n in ours))
            yield hf_names, out
    if waiting:
        raise HFConversionError(f"stream_to_hf: no tensor {next(iter(waiting))!r}")


def hf_param_shapes(spec: ModelSpec, present: set[str] | None = None) -> dict[str, tuple[int, ...]]:
    """HF parameter name -> shape for ``spec`` (computed on ``meta``). Each tensor takes the first
    of its spellings found in ``present`` (e.g. a live model's names), else the on-disk one."""
    shapes = param_shapes(spec)
    out: dict[str, tuple[int, ...]] = {}
    for ours, hf_names, to_hf, _ in _entries(spec):
        (t,) = to_hf(*(torch.empty(shapes[n], device="meta") for n in ours))
        name = next((n for n in hf_names if present and n in present), hf_names[0])
        out[name] = tuple(t.shape)
    return out


# ---- directories --------------------------------------------------------------------------------
def export_hf(spec: ModelSpec, state: State, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/{config.json, model.safetensors}`` atomically, loadable offline with
    ``GPT2LMHeadModel.from_pretrained(out_dir)`` / ``ViTForImageClassification`` /
    ``LlamaForCausalLM``.

    Raises:
        HFConversionError: non-standard dims (nothing is written).
    """
    hf_state = to_hf_state_dict(spec, state)
    dtype = next(iter(hf_state.values())).dtype
    config = hf_config_dict(spec, dtype)
    out = Path(out_dir)
    with atomic_path(out, is_dir=True) as tmp:
        tensors = {n: t.detach().to("cpu").contiguous() for n, t in hf_state.items()}
        save_file(tensors, str(tmp / HF_WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def load_hf_dir(path: str | os.PathLike) -> tuple[ModelSpec, State]:
    """Read an HF model directory (``config.json`` + ``model.safetensors``, sharded safetensors
    with an index ``model.safetensors.index.json``, or ``pytorch_model.bin``) into (our spec, our
    state dict). Reading is safe (:mod:`logah.nn.readers`): nothing in the files runs."""
    p = Path(path)
    config = read_json(p / HF_CONFIG_FILE)
    try:
        spec, state = from_hf_state_dict(config, _read_hf_tensors(p))
    except HFConversionError as e:
        raise HFConversionError(f"{p}: {e}") from None
    return spec, state


def _read_hf_tensors(p: Path) -> State:
    index = p / f"{HF_WEIGHTS_FILE}.index.json"
    if (p / HF_WEIGHTS_FILE).is_file():
        return read_safetensors(p / HF_WEIGHTS_FILE)
    if index.is_file():
        return read_sharded_safetensors(index)
    if (p / HF_BIN_FILE).is_file():
        state = read_checkpoint(p / HF_BIN_FILE)
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise WeightsError(f"{p / HF_BIN_FILE}: not a state dict (name -> tensor)")
        return state
    raise HFConversionError(f"{p}: no {HF_WEIGHTS_FILE}, sharded index or {HF_BIN_FILE}")
