"""Run by test_finetune_ddp.py as ``python finetune_ddp_script.py DATA OUT [KEY=VALUE ...]``: a
2-process gloo DDP fine-tune on CPU (extra overrides, e.g. a growth schedule, appended). Lightning re-launches this same script as rank 1; each rank writes a checksum of
its final weights to ``OUT/rank{r}.json``."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
from finetune_synth import text_overrides  # noqa: E402

from logah.config import load_config  # noqa: E402
from logah.config.runs import FinetuneConfig  # noqa: E402
from logah.lit.finetune import finetune  # noqa: E402


class WeightChecksum(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module) -> None:
        h = hashlib.sha256()
        for name, t in sorted(pl_module.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        first = next(iter(trainer.train_dataloader))[0]  # this rank's first batch (B, T)
        spec = pl_module.model.spec
        grown = [cb.history for cb in trainer.callbacks if hasattr(cb, "history")]
        info = {"sha256": h.hexdigest(), "step": trainer.global_step,
                "world_size": trainer.world_size, "first_tokens": first[:, :4].tolist(),
                "dims": [spec.n_layer, spec.d_model], "growth": grown[0] if grown else []}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(info))


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    overrides = text_overrides(data, out / "runs", name="ddp", steps=8)
    overrides += ["trainer.devices=2", "trainer.strategy=ddp", "trainer.val_check_interval=4",
                  *sys.argv[3:]]
    cfg = load_config(FinetuneConfig, None, overrides)
    finetune(cfg, callbacks=[WeightChecksum(out)])


if __name__ == "__main__":
    main()
