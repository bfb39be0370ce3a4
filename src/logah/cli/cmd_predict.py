"""``logah predict --ghn GHN --arch ARCH --out DIR [model.key=value ...]``: predict weights.

``--ghn`` takes ``pretrained:NAME`` (a GHN shipped with the package), ``random:<preset>`` (a seeded random GHN, for smoke tests and benchmarks), a GHN
directory written by ``logah.ghn.io.save_ghn`` or a ``logah train-ghn`` checkpoint (``.ckpt``).
``--arch`` is a preset or a Hugging Face ``config.json`` / model directory (only its config is read).
The output is a weights directory (``model.safetensors`` + ``logah.json``, the layout of
``logah.nn.io``) plus ``hf/`` (a Hugging Face directory) when the dims are standard. Tensors are
predicted, written and freed one at a time (tensors over ``--chunk`` elements in row blocks), so
peak memory stays near one block plus the GHN: llama-3-8b (16 GB in bfloat16) is written with a
peak RSS under 2 GiB. Above ``--shard-size`` bytes the weights (ours and ``hf/``) are sharded as
``save_pretrained`` shards them (``model-00001-of-0000N.safetensors`` + ``model.safetensors.index.json``).
Where the HF conversion only renames tensors (Llama), ``hf/`` is written in the same pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from logah.cli.main import add_config_args

DTYPES = ("float32", "bfloat16", "float16")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a model's parameters with a graph hypernetwork",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--ghn", required=True, metavar="GHN",
                   help="pretrained:NAME (shipped with logah), random:<preset> (e.g. "
                        "random:logah-t), a GHN directory or a .ckpt")
    p.add_argument("--arch", required=True, metavar="ARCH",
                   help="target preset (see `logah models`), or a Hugging Face config.json / model "
                        "directory (GPT-2, ViT, Llama); model.* overrides apply")
    p.add_argument("--out", required=True, metavar="DIR", help="output weights directory")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="dtype of the written weights")
    p.add_argument("--hf", default="auto", choices=("auto", "yes", "no"),
                   help="also write DIR/hf (auto: when the dims are standard)")
    p.add_argument("--device", default="cpu", help="device the GHN runs on (cpu, cuda, ...)")
    p.add_argument("--seed", type=int, default=0, help="seed of a random:<preset> GHN")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--shard-size", type=float, default=5e9, metavar="BYTES",
                   help="shard the weights above this many bytes (default 5e9, as HF)")
    p.add_argument("--chunk", type=int, default=1 << 24, metavar="N",
                   help="2-D tensors over N elements are predicted in row blocks (default 2^24)")
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


def _device(name: str):
    """``torch.device(name)``, checked by allocating on it: fails here, not half-way."""
    import torch

    from logah.config import LogahError

    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise LogahError(f"--device {name}: {str(e).splitlines()[0]}") from None
    return device


def run(args: argparse.Namespace) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine the
    # spinning doubles the CPU time of every parallel product (measured: 11 s -> 6.7 s wall for
    # gpt2-large at load 10 on 2 cores). Only effective before torch starts OpenMP; a user's
    # own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from tqdm import tqdm

    from logah.config import load_config
    from logah.config.model import ModelOnlyConfig, resolve_spec
    from logah.ghn.diversity import DepthDiversity
    from logah.ghn.io import load_ghn
    from logah.nn.io import HF_DIR, SPEC_FILE
    from logah.nn.stream import stream_export_hf
    from logah.utils.fs import atomic_write_text

    overrides = [o if o.startswith("model.") else f"model.{o}" for o in args.overrides]
    cfg = load_config(ModelOnlyConfig, args.config, [f"model.arch={args.arch}", *overrides])
    spec = resolve_spec(cfg.model)
    if args.hf == "yes" and not spec.is_standard:
        from logah.nn.hf import check_hf_exportable

        check_hf_exportable(spec)  # one error naming the dims, before any work
    device = _device(args.device)
    t0 = time.perf_counter()
    ghn = load_ghn(args.ghn, map_location=device, seed=args.seed)
    graph, shapes = _graph_and_shapes(spec, args.arch)
    total = sum(math.prod(s) for s in shapes.values())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / HF_DIR).is_dir():
        shutil.rmtree(out / HF_DIR)  # a stale export of an earlier model would not match
    want_hf = args.hf == "yes" or (args.hf == "auto" and spec.is_standard)
    bar = tqdm(total=total, unit="param", unit_scale=True, desc=f"predict {args.arch}",
               disable=args.no_progress, file=sys.stderr)
    diversity = DepthDiversity()
    blocks = _observed(ghn.predict(graph, chunk_numel=args.chunk), shapes, diversity)
    dtype = getattr(torch, args.dtype)
    written = _write(spec, shapes, blocks, out, dtype, args.shard_size, want_hf, bar.update)
    bar.close()
    meta = {"spec": spec.to_dict(),
            "predicted_by": {"ghn": str(args.ghn), "config": ghn.config.to_dict()}}
    atomic_write_text(out / SPEC_FILE, json.dumps(meta, indent=2))
    if want_hf and not written["hf"]:
        stream_export_hf(spec, out, out / HF_DIR, args.shard_size)
    peak = _peak_rss_mib()
    print(f"predict: {len(shapes)} tensors, {total:,} parameters of {args.arch} -> {out} "
          f"({written['bytes'] / 1e9:.2f} GB in {written['files']} file(s)) in "
          f"{time.perf_counter() - t0:.1f} s" + (f", peak RSS {peak:,.0f} MiB" if peak else ""))
    cos = diversity.mean()
    print("predict: depth diversity (mean pairwise cosine of same-shape tensors across depth; "
          "1 = one tensor repeated): " + ("n/a (one layer)" if cos is None else f"{cos:.3f}"))
    return 0


def _graph_and_shapes(spec, arch: str) -> tuple:
    """The target's graph and ``{name: shape}``; one error if the graph misses a tensor."""
    from logah.config import LogahError
    from logah.graph import graph_for_spec
    from logah.nn import param_shapes

    graph = graph_for_spec(spec)
    shapes = param_shapes(spec)
    graph_shapes = dict(zip(graph.param_names, map(tuple, graph.param_shapes), strict=True))
    if graph_shapes != shapes:
        raise LogahError(f"graph of {arch} lists {len(graph_shapes)} tensors but the model "
                         f"has {len(shapes)} (or shapes differ): cannot predict every parameter")
    return graph, shapes


def _observed(blocks, shapes: dict, meter) -> Iterator:
    """Pass ``blocks`` through, feeding each tensor streamed whole to the depth-diversity
    ``meter`` (a huge tensor streamed as row blocks is left out of it)."""
    for name, tensor in blocks:
        if tuple(tensor.shape) == tuple(shapes[name]):
            meter.add(name, tensor)
        yield name, tensor


def _write(spec, shapes, blocks, out, dtype, shard_bytes, want_hf, progress) -> dict:
    """Stream ``blocks`` ((name, tensor or row block) in order) into ``out``'s weights, and into
    ``out/hf`` in the same pass when the HF conversion is a pure rename (Llama)."""
    import contextlib

    from logah.nn.hf import HF_CONFIG_FILE, hf_config_dict, hf_renames
    from logah.nn.shards import ShardedWriter
    from logah.utils.fs import atomic_path

    renames = hf_renames(spec) if want_hf else None
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(ShardedWriter(out, shapes, dtype, shard_bytes,
                                                 {"format": "pt", "family": spec.family}))
        hf = None
        if renames is not None:
            tmp = stack.enter_context(atomic_path(out / "hf", is_dir=True))
            config = json.dumps(hf_config_dict(spec, dtype), indent=2, sort_keys=True)
            (tmp / HF_CONFIG_FILE).write_text(config + "\n")
            hf_shapes = {renames[n]: s for n, s in shapes.items()}
            hf = stack.enter_context(ShardedWriter(tmp, hf_shapes, dtype, shard_bytes,
                                                   {"format": "pt"}))
        for name, tensor in blocks:
            ours.write(name, tensor)
            if hf is not None:
                hf.write(renames[name], tensor)
            progress(tensor.numel())
            del tensor  # free it before the next block is decoded
    n_files = len(ours.files) + (len(hf.files) if hf is not None else 0)
    return {"hf": hf is not None, "bytes": ours.bytes * (2 if hf is not None else 1),
            "files": n_files}
