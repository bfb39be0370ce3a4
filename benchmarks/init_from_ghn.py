"""``logah.init_from_ghn`` on gpt2-small vs Hugging Face's own random init of the same model.

Paired in one process, interleaved, after one discarded warm-up round (medians of ``--repeats``):

* ``hf_construct`` — ``GPT2LMHeadModel(config)``: allocation + HF's own init (what a user runs);
* ``hf_reinit``    — ``model.apply(model._init_weights)``: HF's init alone, on the built model;
* ``ghn_fill``     — ``init_from_ghn(model, ghn)`` on the built model (GHN already loaded):
  graph, encoder, every tensor predicted, converted to HF layout and copied in place;
* ``ghn_load``     — ``load_ghn(GHN)`` once (reported, not in the ratio);
* the same pair for our own ``GPT2``: ``build_model(spec, seed)`` vs ``init_from_ghn``.

Wall and CPU seconds; the 1-minute load average before and after, since the machine is shared.
Usage: ``python benchmarks/init_from_ghn.py [--repeats 5] [--threads 2] [--ghn random:logah-t]``.
Writes ``benchmarks/results/init_from_ghn.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "init_from_ghn.json"


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def measure(repeats: int, ghn_src: str) -> dict:
    import torch
    import transformers

    import logah
    from logah.config import get_preset
    from logah.nn import build_model
    from logah.nn.hf import hf_config

    transformers.utils.logging.set_verbosity_error()
    spec = get_preset("gpt2-small")
    cfg = hf_config(spec)
    ghn, load_s, _ = timed(lambda: logah.load_ghn(ghn_src))
    series: dict[str, list[tuple[float, float]]] = {}
    for r in range(repeats + 1):  # round 0 is the warm-up
        model, *hc = timed(lambda: transformers.GPT2LMHeadModel(cfg))
        _, *hr = timed(lambda: model.apply(model._init_weights))
        (_, report), *gf = timed(lambda: logah.init_from_ghn(model, ghn))
        del model
        ours, *lc = timed(lambda: build_model(spec, seed=r))
        _, *lf = timed(lambda: logah.init_from_ghn(ours, ghn))
        del ours
        if r:
            for k, v in (("hf_construct", hc), ("hf_reinit", hr), ("ghn_fill", gf),
                         ("logah_build_init", lc), ("logah_ghn_fill", lf)):
                series.setdefault(k, []).append(tuple(v))
    med = {k: {"seconds": statistics.median(w for w, _ in v),
               "cpu_s": statistics.median(c for _, c in v)} for k, v in series.items()}
    return {
        "params": sum(p.numel() for p in transformers.GPT2LMHeadModel(cfg).parameters()),
        "tensors_predicted": len(report.predicted), "tensors_left": len(report.left),
        "ghn_load_s": load_s,
        **med,
        "ratios": {
            "ghn_fill_vs_hf_construct": med["ghn_fill"]["seconds"] / med["hf_construct"]["seconds"],
            "ghn_fill_vs_hf_reinit": med["ghn_fill"]["seconds"] / med["hf_reinit"]["seconds"],
            "logah_ghn_fill_vs_build_init": (med["logah_ghn_fill"]["seconds"]
                                             / med["logah_build_init"]["seconds"]),
        },
        "torch": torch.__version__, "transformers": transformers.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ghn", default="random:logah-t",
                   help="GHN source (timing depends on its architecture, not its weights)")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as logah predict; before torch starts
    import torch

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    rec = {"arch": "gpt2-small", "ghn": args.ghn, "threads": args.threads,
           "repeats": args.repeats, "load_avg_start": load0,
           **measure(args.repeats, args.ghn), "load_avg_end": os.getloadavg()[0]}
    from logah.utils.fs import atomic_write_text

    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, json.dumps({"results": [rec]}, indent=2) + "\n")
    rows = [("HF GPT2LMHeadModel(config) (alloc + HF init)", "hf_construct"),
            ("HF model.apply(_init_weights) (init only)", "hf_reinit"),
            ("init_from_ghn(HF model)", "ghn_fill"),
            ("logah build_model(spec, seed)", "logah_build_init"),
            ("init_from_ghn(logah GPT2)", "logah_ghn_fill")]
    print(f"gpt2-small ({rec['params']:,} params), {args.threads} threads, {args.ghn}, medians of "
          f"{args.repeats}; load {load0:.2f} -> {rec['load_avg_end']:.2f}; GHN load "
          f"{rec['ghn_load_s']:.2f} s")
    print(f"| {'what':<46} | wall s | CPU s |\n| {'-' * 46} | ---: | ---: |")
    for label, k in rows:
        print(f"| {label:<46} | {rec[k]['seconds']:.2f} | {rec[k]['cpu_s']:.2f} |")
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in rec["ratios"].items()))


if __name__ == "__main__":
    main()
