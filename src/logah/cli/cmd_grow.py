"""``logah grow``: grow trained weights into a bigger model computing the same function.

    logah grow --from runs/w --to gpt2-mini --out runs/w-grown
    logah grow --from runs/w --to n_layer=4,d_model=128 --out runs/w-grown --seed 1
    logah grow --from model.safetensors --spec gpt2-tiny \
        --plan conf/grow/gpt2-tiny-more-heads.yaml --out DIR

The steps are derived from the target dims (``--to``), or read from a YAML plan (``--plan``; with
both, the plan must end at ``--to``). The output is a weights directory (``model.safetensors`` +
``logah.json`` whose spec carries the growth history, plus ``hf/`` when the dims are standard),
ready for ``logah finetune init=weights:DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grow", help="grow weights into a bigger model (function-preserving)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="src", required=True, metavar="WEIGHTS",
                   help="logah weights dir, .safetensors file, or Hugging Face dir")
    p.add_argument("--to", metavar="PRESET_OR_DIMS",
                   help="target preset, or key=value dims such as n_layer=4,d_model=128")
    p.add_argument("--plan", metavar="PLAN.yaml", help="explicit list of growth steps (conf/grow/)")
    p.add_argument("--out", required=True, metavar="DIR", help="output weights directory")
    p.add_argument("--spec", metavar="PRESET",
                   help="spec of a bare .safetensors without logah.json")
    p.add_argument("--seed", type=int, default=None, help="seed of the new free entries (default: "
                   "the plan's, else 0)")
    p.add_argument("--std", type=float, default=None, help="std of new free weights (default 0.02)")
    p.set_defaults(func=run)


def _source(path: Path, preset: str | None):
    """(spec, state) of the source weights; one error line if the spec cannot be known."""
    from logah.config import get_preset
    from logah.config.errors import ConfigError
    from logah.nn import build_model
    from logah.nn.io import SPEC_FILE, WeightsError, check_state, load_state, read_spec

    if not path.exists():
        raise WeightsError(f"--from {path}: no such file or directory")
    spec = get_preset(preset) if preset else read_spec(path)
    if spec is None and path.is_dir() and (path / "config.json").is_file():
        from logah.nn.hf import load_hf_dir

        spec, state = load_hf_dir(path)
        return spec, state
    if spec is None:
        where = path if path.is_dir() else path.parent
        raise ConfigError(f"--from {path}: no {SPEC_FILE} in {where}; give --spec PRESET")
    state = load_state(path)
    check_state(build_model(spec, "meta"), state, f"--from {path}")
    return spec, state


def run(args: argparse.Namespace) -> int:
    from logah.config.errors import ConfigError

    if not args.to and not args.plan:
        raise ConfigError("logah grow: give --to PRESET_OR_DIMS and/or --plan PLAN.yaml")

    import torch

    from logah.config.grow import GrowPlan, load_plan
    from logah.grow import (
        GrowError,
        apply_plan,
        check_growth,
        plan_growth,
        resolve_target,
        same_dims,
    )
    from logah.nn import count_params
    from logah.nn.io import save_weights

    plan = load_plan(args.plan) if args.plan else GrowPlan()
    spec, state = _source(Path(args.src), args.spec)
    target = resolve_target(spec, args.to) if args.to else None
    if target is not None:
        check_growth(spec, target)
    steps = plan.steps if args.plan else plan_growth(spec, target)
    init = plan.init if args.std is None else dataclasses.replace(plan.init, std=args.std)
    seed = plan.seed if args.seed is None else args.seed

    # Grow in float64 (gain / K rescaling and means exact to ~1e-16), store in the source dtype.
    dtype = next(iter(state.values())).dtype
    new_spec, new_state = apply_plan(spec, {n: t.to(torch.float64) for n, t in state.items()},
                                     steps, seed=seed, init=init)
    if target is not None and not same_dims(new_spec, target):
        raise GrowError(f"--plan {args.plan} ends at {_dims(new_spec)}, but --to asks for "
                        f"{_dims(target)}")
    out = save_weights({n: t.to(dtype) for n, t in new_state.items()}, new_spec, args.out,
                       extra={"grown_from": str(args.src), "source_spec": spec.to_dict()})
    print(f"grew {_dims(spec)} ({count_params(spec):,} params) -> {_dims(new_spec)} "
          f"({count_params(new_spec):,} params), ln_eps {new_spec.ln_eps:.6g}")
    for step in new_spec.growth[len(spec.growth):]:
        args_txt = ", ".join(f"{k}={v}" for k, v in step["args"].items())
        print(f"  {step['op']}: {args_txt}")
    print(f"wrote {out}")
    return 0


def _dims(spec) -> str:
    ctx = f" ctx={spec.n_ctx}" if spec.family in ("gpt2", "llama") else ""
    kv = f" kv={spec.kv_heads}" if spec.family == "llama" else ""
    return (f"{spec.family} L={spec.n_layer} d={spec.d_model} H={spec.n_heads}{kv} qk={spec.d_qk} "
            f"v={spec.d_v} mlp={spec.d_mlp}{ctx}")
