"""Hidden-dimension expansion ``d_model h -> h'``, exact for pre-LayerNorm models (mean-padding)
and pre-RMSNorm models (zero-padding).

Every tensor touching the residual stream changes together. The construction keeps the invariant

    residual(h') = [x | mu(x) * 1]      (x: the old residual (.., h), mu(x): its per-token mean)

at every point of the network, which LayerNorm over h' maps exactly onto the old LayerNorm:
the mean over h' is still mu (the padding equals the mean) and the variance shrinks to
(h/h') * var (the padding adds nothing to the squared deviations), so with

    gain  g' = [sqrt(h/h') * g | free],   bias  b' = [b | 0],   eps' = eps * h/h'

the old output entries are (x - mu) / sqrt((h/h')(var + eps)) * sqrt(h/h') g + b = LN(x), and the
new ones are (mu - mu) * g'_new + 0 = 0. Readers (Q/K/V, MLP fc, untied LM head, ViT head) only
ever see LayerNorm outputs, so their new input columns meet zeros and are free.

Roles (PyTorch layout; "dim" is where d_model sits):
- writers (add into the stream): wte, wpe, cls_token, pos_embed, patch_embed (out channels),
  attn.proj and mlp.proj (weights' rows and biases). New slices = the mean of the old slices along
  that dim, which makes every write's new entries the mean of its old entries; sums of writes keep
  the invariant by linearity. The tied GPT-2 LM head is ``wte`` itself: also fine, because the
  final LayerNorm's new outputs are exactly 0.
- readers: q/k/v/fc weights and the LM / classifier head: new columns ~ N(0, std).
- LayerNorms: as above; new gain entries = mean of the rescaled old gains + N(0, ln_std).
This leaves every old weight untouched (only gains are rescaled), unlike centring the writers.

RMSNorm (Llama, ``NORM_KIND == "rmsnorm"``) has no mean to keep, so writers are **zero**-padded
instead (the paper's rule): the residual is ``[x | 0]``, its mean square over h' is
(h/h') * ms(x), and with the same ``g' = [sqrt(h/h') g | free]`` and ``eps' = eps h/h'``
the old outputs are x / sqrt((h/h')(ms + eps)) * sqrt(h/h') g = RMSNorm(x) and the new ones
0 * g'_new = 0. Mean-padding would be wrong there: the padding adds mu^2 to the mean square.
"""

from __future__ import annotations

import functools
import math

import torch

from logah.config.grow import GrowInit
from logah.config.specs import NORM_KIND, ModelSpec
from logah.grow.common import GrowError, Seed, State, begin, cat_new, new_shape, noise, zeros

# name suffix -> the dim of the tensor that holds d_model
WRITERS = {
    "wte.weight": -1, "wpe.weight": -1, "cls_token": -1, "pos_embed": -1,
    "patch_embed.weight": 0, "patch_embed.bias": 0,
    "attn.proj.weight": 0, "attn.proj.bias": 0, "mlp.proj.weight": 0, "mlp.proj.bias": 0,
}
READERS = {"attn.q.weight": 1, "attn.k.weight": 1, "attn.v.weight": 1, "mlp.fc.weight": 1,
           "mlp.gate.weight": 1, "lm_head.weight": 1, "head.weight": 1}
NORMS = ("ln_1", "ln_2", "ln_f")
UNCHANGED = ("attn.q.bias", "attn.k.bias", "attn.v.bias", "mlp.fc.bias", "head.bias")


@functools.lru_cache(maxsize=4096)  # asked per tensor by every map and hidden step: same names
def _role(name: str) -> tuple[str, int]:
    def match(suffix: str) -> bool:
        return name == suffix or name.endswith("." + suffix)

    for table, role in ((WRITERS, "writer"), (READERS, "reader")):
        for suffix, dim in table.items():
            if match(suffix):
                return role, dim
    module, _, kind = name.rpartition(".")
    if module.rpartition(".")[2] in NORMS:
        return ("gain" if kind == "weight" else "ln_bias"), 0
    if any(match(s) for s in UNCHANGED):
        return "unchanged", 0
    raise GrowError(f"d_model: no hidden-expansion rule for tensor {name!r}")


def _mean_pad(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Append ``n`` copies of the mean over ``dim`` (the residual's invariant, see module doc)."""
    return cat_new(t, dim, t.mean(dim=dim, keepdim=True).expand(new_shape(t, dim, n)))


def _zero_pad(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Append ``n`` zero slices along ``dim`` (RMSNorm's invariant ``[x | 0]``, see module doc)."""
    return cat_new(t, dim, zeros(new_shape(t, dim, n), t))


def expand_hidden(spec: ModelSpec, state: State, d_model: int, *, seed: Seed = 0,
                  init: GrowInit | None = None) -> tuple[ModelSpec, State]:
    """Hidden expansion ``d_model -> d_model'`` of the whole model (every layer, embeddings,
    positions, class token, patch embedding, final norm, head), exact for LayerNorm
    (mean-padded writers) and RMSNorm (zero-padded writers).

    ``spec.ln_eps`` becomes ``ln_eps * d_model / d_model'`` (one eps for every LayerNorm).
    """
    step = begin(spec, state, "d_model", d_model, seed, init)
    if step.n == 0:
        return spec, dict(state)
    gen, n, init = step.gen, step.n, step.init
    ratio = spec.d_model / d_model  # h / h'
    pad = _zero_pad if NORM_KIND[spec.family] == "rmsnorm" else _mean_pad
    out: State = {}
    for name, t in state.items():
        role, dim = _role(name)
        if role == "writer":
            out[name] = pad(t, dim, n)
        elif role == "reader":
            out[name] = cat_new(t, dim, noise(new_shape(t, dim, n), init.std, t, gen))
        elif role == "gain":
            g = t * math.sqrt(ratio)
            out[name] = cat_new(g, 0, noise((n,), init.ln_std, t, gen, mean=g.mean()))
        elif role == "ln_bias":
            out[name] = cat_new(t, 0, zeros((n,), t))  # must be 0: new LN outputs stay 0
        else:
            out[name] = t
    new_spec = step.record(spec, ln_eps=spec.ln_eps * ratio)
    return new_spec, out
