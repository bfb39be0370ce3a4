"""Initialise three kinds of model with a pretrained graph hypernetwork (< 1 minute on CPU).

    python examples/init_your_model.py [--gpt-ghn pretrained:NAME] [--vit-ghn pretrained:NAME]

1. a Hugging Face ``GPT2LMHeadModel`` (needs ``transformers``): its language-model loss on a
   paragraph of English, HF's own random init vs the GHN's prediction;
2. a logah ``ViT`` built from a preset;
3. your own ``nn.Module`` (a small conv + attention classifier for 1x32x32 images).

Without the shipped GHNs (e.g. in a checkout that has not exported them) it falls back to a
random GHN, says so, and the numbers then show nothing about GHNs.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import logah

TEXT = (
    "The committee met on Tuesday morning to discuss the new school budget. Several members said "
    "that the city could not afford another increase in taxes this year, but the chairman argued "
    "that the schools had been waiting for repairs for a long time. After a long debate the "
    "committee agreed to ask the state for help and to report back to the council next week."
)


def load(source: str):
    """The GHN of ``source``; a random LoGAH-T when a pretrained one is not shipped here."""
    name = source.removeprefix("pretrained:")
    if source.startswith("pretrained:") and name not in logah.pretrained_ghns():
        print(f"  ({source} is not shipped in this checkout: using random:logah-t instead)")
        return logah.load_ghn("random:logah-t"), False
    return logah.load_ghn(source), True


def hf_gpt2(ghn, trained: bool) -> None:
    try:
        import transformers
    except ImportError:
        print("1. Hugging Face GPT-2: skipped (pip install 'logah[hf]')")
        return
    from logah.data.tokenizer import gpt2_encoding

    transformers.utils.logging.set_verbosity_error()
    # 2 layers x 96 wide, context 64: inside the space the shipped GPT GHN was trained on
    cfg = transformers.GPT2Config(n_embd=96, n_layer=2, n_head=4, n_positions=64)
    tokens = torch.tensor([gpt2_encoding().encode(TEXT)[:64]])
    losses = {}
    for init in ("HF random init", "GHN"):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(cfg).eval()  # HF's own init
        if init == "GHN":
            model, report = logah.init_from_ghn(model, ghn)
            print(f"1. {report}")
        with torch.no_grad():
            losses[init] = float(model(tokens, labels=tokens).loss)
    print("   LM loss on a paragraph of English: " + ", ".join(
        f"{k} {v:.3f}" for k, v in losses.items()) + ("" if trained else " (random GHN)"))


def logah_vit(ghn) -> None:
    from logah.config import get_preset
    from logah.nn import build_model

    spec = get_preset("vit-tiny").replace(in_chans=1)
    model, report = logah.init_from_ghn(build_model(spec, seed=0), ghn)
    print(f"2. {report}")


class MyNet(nn.Module):
    """Your own model: any nn.Module built from supported layers (see docs/graph.md)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 64, kernel_size=4, stride=4)  # (B, 64, 8, 8)
        self.norm = nn.LayerNorm(64)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x).flatten(2).transpose(1, 2)  # (B, 64 tokens, 64)
        a, _ = self.attn(self.norm(h), self.norm(h), self.norm(h))
        h = h + a
        h = h + self.mlp(h)
        return self.head(h.mean(1))  # (B, classes)


def my_module(ghn) -> None:
    model, report = logah.init_from_ghn(MyNet(), ghn)
    print(f"3. {report}")
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    print(f"   MyNet output {tuple(out.shape)}, finite: {bool(torch.isfinite(out).all())}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpt-ghn", default="pretrained:logah-t-gpt2-brown")
    p.add_argument("--vit-ghn", default="pretrained:logah-t-vit-fashion-mnist")
    args = p.parse_args()
    t0 = time.perf_counter()
    print("shipped GHNs:", ", ".join(logah.pretrained_ghns()) or "none")
    gpt_ghn, trained = load(args.gpt_ghn)
    hf_gpt2(gpt_ghn, trained)
    vit_ghn, _ = load(args.vit_ghn)
    logah_vit(vit_ghn)
    my_module(vit_ghn)
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
