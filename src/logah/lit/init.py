"""The ``init`` choice of a training run — the init registry.

=====================  =====================================================================
``init=``              what the target starts from (the work is a pure function elsewhere)
=====================  =====================================================================
``random``             the family's ordinary init (:func:`logah.nn.build_model`)
``orthogonal``         orthogonal matrices (same)
``mimetic``            ordinary init, then mimetic attention (:func:`logah.nn.mimetic.mimetic_`;
                       ``init_opts.mimetic`` = alpha_1, beta_1, alpha_2, beta_2)
``weights:PATH``       trained/predicted weights, loaded strictly (:mod:`logah.nn.io`)
``grow:PATH``          PATH's model grown to ``model.*`` by the six function-preserving
                       expansions (:func:`logah.grow.grow`)
``hyperclone:PATH``    PATH's model widened to ``model.*`` by cloning, logits preserved
                       (:func:`logah.grow.clone.hyperclone`; ``init_opts.noise``)
``stack:PATH``         PATH's layers stacked to ``model.*``'s depth, widened by cloning first
                       when ``model.*`` is wider (:func:`logah.grow.clone.stack_to`)
``ghn:CKPT``           predicted by a GHN (``logah train-ghn`` checkpoint, GHN directory,
                       ``pretrained:NAME`` or ``random:<preset>``), inline and in place
                       (:func:`logah.ghn.apply.init_from_ghn`): no ``logah predict`` step;
                       ``init_opts.ghn_keep`` globs keep those parameters' ordinary init
=====================  =====================================================================

``weights:PATH`` accepts a ``.safetensors`` file, a logah weights directory (``model.safetensors``
+ ``logah.json``) or an exported Hugging Face directory (``config.json`` + weights). Loading is
strict (:func:`logah.nn.io.load_into`): a missing, unexpected or wrongly-shaped tensor is one error
listing the tensors. The growth inits read the same forms but need the source's spec (a
``logah.json`` or HF ``config.json``); their target is always ``model.*``. A grown model's spec can
differ from ``model.*`` in ``ln_eps`` alone (hidden growth rescales it to stay exact); the run
builds the grown spec.

Which spec the model gets when ``weights:`` carry one that differs from the config's: if the run's
config sets no ``model.*`` key the weights' spec is adopted; if it does, that is an error naming
the differing fields (a silent choice either way would train a model other than the one asked
for).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from logah.config.errors import ConfigError
from logah.config.model import ModelConfig
from logah.config.runs import InitOptions
from logah.config.specs import ModelSpec, get_preset

_SCHEMES = {"random": "default", "orthogonal": "orthogonal", "mimetic": "default"}
# kinds that take a path: weights are loaded as they are; the growth kinds derive the target.
GROW_KINDS = ("grow", "hyperclone", "stack")
PATH_KINDS = ("weights", *GROW_KINDS, "ghn")
INIT_CHOICES = ", ".join([*_SCHEMES, *(f"{k}:PATH" for k in PATH_KINDS)])
_EXAMPLE = {"weights": "runs/predict/x", "grow": "runs/finetune/small/weights",
            "hyperclone": "runs/finetune/small/weights", "stack": "runs/finetune/small/weights",
            "ghn": "runs/train-ghn/gpt/checkpoints/last.ckpt"}


@dataclass(frozen=True)
class InitChoice:
    """A parsed ``init`` value: ``kind`` (see the module table) and its ``path``."""

    kind: str
    path: Optional[Path] = None


def parse_init(value: str) -> InitChoice:
    """Parse ``init=...``; a path must exist (``ghn:random:<preset>`` is a seeded random GHN,
    ``ghn:pretrained:NAME`` a shipped one).

    Raises:
        ConfigError: unknown choice, empty or missing path (the message names ``init``).
        GHNLoadError: an unknown ``pretrained:`` name (listing the valid ones).
    """
    value = str(value).strip()
    if value in _SCHEMES:
        return InitChoice(value)
    kind, sep, rest = value.partition(":")
    if sep and kind in PATH_KINDS:
        path = Path(rest).expanduser()
        if not rest.strip() or str(path) == ".":
            raise ConfigError(f"init: {kind}: needs a path, e.g. init={kind}:{_EXAMPLE[kind]}")
        if kind == "ghn" and rest.startswith("random:"):
            return InitChoice(kind, Path(rest))
        if kind == "ghn" and rest.startswith("pretrained:"):
            from logah.ghn.pretrained import pretrained_dir

            pretrained_dir(rest.removeprefix("pretrained:"))  # an unknown name fails here
            return InitChoice(kind, Path(rest))
        if not path.exists():
            raise ConfigError(f"init: {path}: no such file or directory")
        return InitChoice(kind, path)
    raise ConfigError(f"init: {value!r} is not one of: {INIT_CHOICES}")


def weights_spec(path: Path) -> Optional[ModelSpec]:
    """The spec recorded with the weights at ``path`` (logah.json or HF config.json), if any."""
    from logah.nn.io import SPEC_FILE, read_spec

    folder = path if path.is_dir() else path.parent
    if (folder / SPEC_FILE).is_file():
        return read_spec(folder)
    hf_config = folder / "config.json"
    if path.is_dir() and hf_config.is_file():
        from logah.nn.hf import spec_from_hf_config
        from logah.nn.readers import read_json

        return spec_from_hf_config(read_json(hf_config))
    return None


def spec_diff(a: ModelSpec, b: ModelSpec) -> list[str]:
    """``field: a_value != b_value`` for every spec field that differs (growth history aside)."""
    return [
        f"{f.name}: {getattr(a, f.name)!r} != {getattr(b, f.name)!r}"
        for f in dataclasses.fields(ModelSpec)
        if f.name != "growth" and getattr(a, f.name) != getattr(b, f.name)
    ]


def resolve_init_spec(spec: ModelSpec, init: InitChoice, model_given: bool,
                      opts: InitOptions | None = None) -> ModelSpec:
    """The spec to build: ``spec`` (from the config), the weights' spec (``weights:``, see the
    module doc) or ``spec`` as a growth init produces it (``ln_eps`` may differ).

    Raises:
        ConfigError: the config sets ``model.*`` and the weights' recorded spec differs; a growth
            source without a spec; GrowError: ``model.*`` cannot be grown from the source.
    """
    if init.kind in GROW_KINDS:
        from logah.nn import build_model

        src = source_spec(init)
        meta = dict(build_model(src, "meta").named_parameters())  # shapes only: no weights read
        return derive(init.kind, src, meta, spec, opts or InitOptions(), seed=0)[0]
    if init.kind != "weights":
        return spec
    stored = weights_spec(init.path)
    if stored is None or stored == spec:
        return spec
    if not model_given:
        return stored
    diff = "; ".join(spec_diff(spec, stored))
    raise ConfigError(
        f"init: {init.path} holds a different model than model.* asks for (config vs weights: "
        f"{diff}); drop the model.* settings to adopt the weights' spec, or fix them"
    )


def source_spec(init: InitChoice) -> ModelSpec:
    """The spec of a growth init's source weights (one error line when none is recorded)."""
    spec = weights_spec(init.path)
    if spec is None:
        raise ConfigError(f"init: {init.kind}:{init.path} needs the source model's spec "
                          "(logah.json or an HF config.json beside the weights)")
    return spec


def derive(kind: str, src: ModelSpec, state: dict, target: ModelSpec, opts: InitOptions,
           seed: int) -> tuple[ModelSpec, dict]:
    """Grow ``(src, state)`` to ``target`` by the growth init ``kind`` (pure; works on ``meta``
    tensors, where noise is left out: it changes values, never shapes)."""
    from logah.grow import grow
    from logah.grow.clone import clone_to, stack_to

    on_meta = next(iter(state.values())).is_meta
    noise = 0.0 if on_meta else opts.noise
    if kind == "grow":
        return grow(src, state, target, seed=seed)
    if kind == "hyperclone":
        if target.n_layer != src.n_layer:
            from logah.grow import GrowError

            raise GrowError(f"hyperclone: n_layer {src.n_layer} -> {target.n_layer}: cloning grows "
                            f"width only; use init=stack:PATH for depth (it clones width too)")
        return clone_to(src, state, target, noise=noise, seed=seed)
    return stack_to(src, state, target, noise=noise, seed=seed)


def _kept_params(model, globs: list) -> dict:
    """Copies of the parameters whose names match one of ``globs`` (``init_opts.ghn_keep``).

    Raises:
        ConfigError: a glob that matches no parameter (naming it and a few real names).
    """
    from fnmatch import fnmatchcase

    params = dict(model.named_parameters())
    for g in globs:
        if not any(fnmatchcase(n, g) for n in params):
            raise ConfigError(f"init_opts.ghn_keep: {g!r} matches no parameter of the model "
                              f"(names look like {', '.join(list(params)[:3])}, ...)")
    return {n: p.detach().clone() for n, p in params.items()
            if any(fnmatchcase(n, g) for g in globs)}


def model_config_for(spec: ModelSpec) -> ModelConfig:
    """A :class:`ModelConfig` that resolves to ``spec`` (every field explicit), so a run's saved
    ``config.yaml`` records an adopted spec and re-running it rebuilds the same model."""
    presets = [name for name in ("gpt2-tiny", "vit-tiny", "llama-tiny") if get_preset(name).family == spec.family]
    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"arch"}
    return ModelConfig(arch=presets[0], **{k: getattr(spec, k) for k in fields})


def build_target(spec: ModelSpec, init: InitChoice, seed: int, load_weights: bool = True,
                 opts: InitOptions | None = None):
    """Build the plain ``logah.nn`` model for a run and apply the init choice.

    Args:
        spec: what :func:`resolve_init_spec` returned.
        seed: seeds the random/orthogonal/mimetic init and growth noise (same seed, same weights
            on every DDP rank).
        load_weights: ``False`` skips reading weights, growing or predicting (a resumed run
            overwrites the weights from its checkpoint anyway).

    Raises:
        WeightsError: unreadable weights, or one error listing mismatched tensors; GrowError /
            GHNLoadError: a growth source or GHN that does not fit.
    """
    import torch

    from logah.nn import build_model
    from logah.nn.io import check_state, load_into, load_state

    opts = opts or InitOptions()
    model = build_model(spec, seed=seed, init=_SCHEMES.get(init.kind, "default"))
    if init.kind == "mimetic":
        from logah.nn.mimetic import mimetic_

        mimetic_(model, tuple(opts.mimetic), torch.Generator().manual_seed(seed))
    if not load_weights or init.kind in _SCHEMES:
        return model
    if init.kind == "weights":
        load_into(model, init.path)
        return model
    if init.kind == "ghn":
        from logah.ghn.apply import init_from_ghn
        from logah.ghn.io import load_ghn

        kept = _kept_params(model, opts.ghn_keep)  # {name: ordinary init}, checked first
        init_from_ghn(model, load_ghn(str(init.path), map_location=opts.ghn_device))
        with torch.no_grad():
            for n, value in kept.items():
                model.get_parameter(n).copy_(value)
        return model
    src = source_spec(init)
    raw = load_state(init.path)
    check_state(build_model(src, "meta"), raw, str(init.path))
    # grown in float64 (rescalings exact to ~1e-16), loaded in the model's dtype
    _, state = derive(init.kind, src, {k: v.double() for k, v in raw.items()}, spec, opts, seed)
    check_state(model, state, f"init={init.kind}:{init.path}")
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state[n].to(dtype=p.dtype))
    return model
