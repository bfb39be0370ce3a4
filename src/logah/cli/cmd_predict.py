"""``logah predict --ghn GHN --arch PRESET --out DIR [model.key=value ...]``: predict weights.

``--ghn`` takes ``random:<preset>`` (a seeded random GHN, for smoke tests and benchmarks), a GHN
directory written by ``logah.ghn.io.save_ghn`` or a ``logah train-ghn`` checkpoint (``.ckpt``).
The output is a weights directory (``model.safetensors`` + ``logah.json``, the layout of
``logah.nn.io``) plus ``hf/`` (a Hugging Face directory) when the dims are standard. Tensors are
predicted, written and freed one at a time, so peak memory stays near one tensor plus the GHN.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from logah.cli.main import add_config_args

DTYPES = ("float32", "bfloat16", "float16")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a model's parameters with a graph hypernetwork",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--ghn", required=True, metavar="GHN",
                   help="random:<preset> (e.g. random:logah-t), a GHN directory or a .ckpt")
    p.add_argument("--arch", required=True, metavar="PRESET",
                   help="target preset (see `logah models`); model.* overrides apply")
    p.add_argument("--out", required=True, metavar="DIR", help="output weights directory")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="dtype of the written weights")
    p.add_argument("--hf", default="auto", choices=("auto", "yes", "no"),
                   help="also write DIR/hf (auto: when the dims are standard)")
    p.add_argument("--device", default="cpu", help="device the GHN runs on (cpu, cuda, ...)")
    p.add_argument("--seed", type=int, default=0, help="seed of a random:<preset> GHN")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(func=run)


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run(args: argparse.Namespace) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine the
    # spinning doubles the CPU time of every parallel product (measured: 11 s -> 6.7 s wall for
    # gpt2-large at load 10 on 2 cores). Only effective before torch starts OpenMP; a user's
    # own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from tqdm import tqdm

    from logah.config import LogahError, load_config
    from logah.config.model import ModelOnlyConfig, resolve_spec
    from logah.ghn.diversity import DepthDiversity
    from logah.ghn.io import load_ghn
    from logah.graph import graph_for_spec
    from logah.nn import param_shapes
    from logah.nn.io import HF_DIR, SPEC_FILE, WEIGHTS_FILE
    from logah.nn.stream import SafetensorsStreamWriter, stream_export_hf
    from logah.utils.fs import atomic_write_text

    overrides = [o if o.startswith("model.") else f"model.{o}" for o in args.overrides]
    cfg = load_config(ModelOnlyConfig, args.config, [f"model.arch={args.arch}", *overrides])
    spec = resolve_spec(cfg.model)
    if args.hf == "yes" and not spec.is_standard:
        from logah.nn.hf import check_hf_exportable

        check_hf_exportable(spec)  # one error naming the dims, before any work
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)  # fails here, not half-way, when the device is unusable
    except (RuntimeError, AssertionError) as e:
        raise LogahError(f"--device {args.device}: {str(e).splitlines()[0]}") from None
    t0 = time.perf_counter()
    ghn = load_ghn(args.ghn, map_location=device, seed=args.seed)
    graph = graph_for_spec(spec)
    shapes = param_shapes(spec)
    graph_shapes = dict(zip(graph.param_names, map(tuple, graph.param_shapes), strict=True))
    if graph_shapes != shapes:
        raise LogahError(f"graph of {args.arch} lists {len(graph_shapes)} tensors but the model "
                         f"has {len(shapes)} (or shapes differ): cannot predict every parameter")
    total = sum(math.prod(s) for s in shapes.values())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / HF_DIR).is_dir():
        shutil.rmtree(out / HF_DIR)  # a stale export of an earlier model would not match
    dtype = getattr(torch, args.dtype)
    bar = tqdm(total=total, unit="param", unit_scale=True, desc=f"predict {args.arch}",
               disable=args.no_progress, file=sys.stderr)
    diversity = DepthDiversity()
    with SafetensorsStreamWriter(out / WEIGHTS_FILE, shapes, dtype,
                                 metadata={"format": "pt", "family": spec.family}) as writer:
        for name, tensor in ghn.predict(graph):
            writer.write(name, tensor)
            diversity.add(name, tensor)
            bar.update(tensor.numel())
            del tensor  # free it before the next one is decoded
    bar.close()
    meta = {"spec": spec.to_dict(),
            "predicted_by": {"ghn": str(args.ghn), "config": ghn.config.to_dict()}}
    atomic_write_text(out / SPEC_FILE, json.dumps(meta, indent=2))
    if args.hf == "yes" or (args.hf == "auto" and spec.is_standard):
        stream_export_hf(spec, out / WEIGHTS_FILE, out / HF_DIR)
    peak = _peak_rss_mib()
    print(f"predict: {len(shapes)} tensors, {total:,} parameters of {args.arch} -> {out} "
          f"in {time.perf_counter() - t0:.1f} s" + (f", peak RSS {peak:,.0f} MiB" if peak else ""))
    cos = diversity.mean()
    print("predict: depth diversity (mean pairwise cosine of same-shape tensors across depth; "
          "1 = one tensor repeated): " + ("n/a (one layer)" if cos is None else f"{cos:.3f}"))
    return 0
