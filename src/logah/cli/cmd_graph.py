"""``logah graph ARCH``: the graph a hypernetwork sees for a preset (with model.* overrides)."""

from __future__ import annotations

import argparse
from pathlib import Path

from logah.cli.main import add_config_args

FORMATS = (".png", ".pdf", ".svg")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph",
        help="build a preset's architecture graph; print its summary, optionally draw it",
        description="Build the computational graph of a preset (model.* overrides accepted, as in "
        "`logah summary`), print node/edge counts and optionally draw it (layered by depth, "
        "coloured by node type).",
    )
    p.add_argument("arch", help="preset name (see `logah models`)")
    p.add_argument("--out", metavar="FILE", help="write a picture (.png, .pdf or .svg)")
    p.add_argument("--cutoff", type=int, default=None, metavar="N",
                   help="virtual-edge cutoff in hops (default: logah.graph.DEFAULT_VE_CUTOFF)")
    p.add_argument("--nodes", action="store_true", help="also list every node")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from logah.config import ConfigError, load_config
    from logah.config.model import ModelConfig, resolve_spec
    from logah.graph import DEFAULT_VE_CUTOFF, PRIMITIVES, graph_for_spec

    if args.out and Path(args.out).suffix.lower() not in FORMATS:
        raise ConfigError(f"--out: {args.out!r} must end in one of {', '.join(FORMATS)}")
    overrides = [o.removeprefix("model.") for o in args.overrides]
    cfg = load_config(ModelConfig, args.config, [f"arch={args.arch}", *overrides])
    spec = resolve_spec(cfg)
    cutoff = DEFAULT_VE_CUTOFF if args.cutoff is None else args.cutoff
    try:
        graph = graph_for_spec(spec, cutoff)
    except ValueError as e:  # a bad cutoff
        raise ConfigError(f"--cutoff: {e}") from None
    print(f"{args.arch}: {graph.summary()}")
    if args.nodes:
        owned: dict[int, list[str]] = {}
        for name, i in zip(graph.param_names, graph.param_node_index.tolist()):
            owned.setdefault(i, []).append(name)
        for i, name in enumerate(graph.node_names):
            kind = PRIMITIVES[int(graph.node_type[i])]
            shape = "x".join(map(str, graph.node_shape[i].tolist()))
            print(f"{i:>5} {kind:<10} {shape:<18} {name}  {' '.join(owned.get(i, []))}")
    if args.out:
        from logah.graph.draw import draw_graph

        path = draw_graph(graph, args.out, title=f"{args.arch}  ({spec.family}, "
                          f"{spec.n_layer} layers, d_model {spec.d_model})")
        print(f"wrote {path}")
    return 0
