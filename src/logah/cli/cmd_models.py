"""``logah models`` and ``logah summary ARCH``: what the presets are, tensor by tensor."""

from __future__ import annotations

import argparse
import math

from logah.cli.main import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets with parameter counts")
    p.set_defaults(func=run_models)
    p = sub.add_parser("summary", help="per-tensor table of a preset (with model.* overrides)")
    p.add_argument("arch", help="preset name (see `logah models`)")
    add_config_args(p)
    p.set_defaults(func=run_summary)


def _describe(spec) -> str:
    dims = f"L={spec.n_layer} d={spec.d_model} H={spec.n_heads} qk={spec.d_qk} v={spec.d_v} mlp={spec.d_mlp}"
    lm = f"vocab={spec.vocab_size} ctx={spec.n_ctx} tied={spec.tie_embeddings}"
    if spec.family == "gpt2":
        return f"{dims} {lm}"
    if spec.family == "llama":
        return f"{dims} kv={spec.kv_heads} {lm} rope={spec.rope_base:g}"
    return f"{dims} img={spec.image_size} patch={spec.patch_size} classes={spec.num_classes}"


def run_models(args: argparse.Namespace) -> int:
    from logah.config import PRESETS
    from logah.nn import count_params

    print(f"{'preset':<16} {'family':<6} {'params':>15}  dims")
    for name, spec in PRESETS.items():
        print(f"{name:<16} {spec.family:<6} {count_params(spec):>15,}  {_describe(spec)}")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from logah.config import load_config
    from logah.config.model import ModelOnlyConfig, resolve_spec
    from logah.nn import param_shapes

    # Accept both `d_model=256` and `model.d_model=256` (the spelling other commands use).
    overrides = [o if o.startswith("model.") else f"model.{o}" for o in args.overrides]
    cfg = load_config(ModelOnlyConfig, args.config, [f"model.arch={args.arch}", *overrides])
    spec = resolve_spec(cfg.model)
    shapes = param_shapes(spec)
    width = max(len(n) for n in shapes)
    print(f"{args.arch}: {_describe(spec)}")
    print(f"{'tensor':<{width}}  {'shape':<22} {'numel':>13}")
    for name, shape in shapes.items():
        print(f"{name:<{width}}  {str(list(shape)):<22} {math.prod(shape):>13,}")
    total = sum(math.prod(s) for s in shapes.values())
    print(f"{'total':<{width}}  {len(shapes)} tensors{'':<12} {total:>13,}")
    return 0
