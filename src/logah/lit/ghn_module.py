"""``GHNModule``: train a graph hypernetwork (LoGAH / GHN-3 / GHN-2) with Lightning.

One training step (``ghn-anchors.md`` §4.1) takes a task batch and ``m`` architectures
(``{"task": (x, y), "archs": ArchBatch}`` from :class:`logah.data.arch.ArchitectureDataModule`):

1. the GHN predicts every parameter of the ``m`` targets from their graphs (under mixed precision
   the encoder follows the trainer's autocast while the decoder always runs in fp32);
2. each target, built once per spec on the ``meta`` device, runs on the *same* task batch through
   ``torch.func.functional_call`` with the predicted tensors (under the trainer's autocast);
3. ``loss = (sum_i task_loss_i + gamma * sum_i sum_p ||p||_F) / m`` (Frobenius norm, not squared;
   gamma = 3e-5 as GHN-3 / LoGAH).

Validation compares, on the held-out architectures, the task loss of the *predicted* parameters
(``val/zero_shot_loss``) with that of the same architectures at their family's ordinary random
init (``val/random_init_loss``, a fixed seed per architecture), plus perplexity (text) or top-1
accuracy (images); a TensorBoard custom-scalars chart overlays the two. Targets and baselines are
kept outside the module tree, so checkpoints hold only ``ghn.*`` weights and plain
hyper-parameters with the GHN config under ``hyper_parameters["ghn"]`` (the layout
:data:`logah.ghn.io.GHN_CHECKPOINT`, what ``logah predict --ghn CKPT`` reads).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from logah.config.specs import CAUSAL_LM, ModelSpec
from logah.config.train import OptimConfig
from logah.ghn import GHN
from logah.ghn.diversity import depth_diversity
from logah.ghn.io import GHN_CHECKPOINT
from logah.lit.optim import configure_optimizers
from logah.nn.build import build_model

TaskBatch = tuple[torch.Tensor, torch.Tensor]
KINDS_BEYOND = ("deeper", "wider")


def task_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy: next-token (logits (B, T, V), y (B, T)) or class (B, C) vs (B,)."""
    if logits.dim() == 3:
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)


def param_group(name: str) -> str:
    """Coarse kind of a target parameter, for the ``pred_norm/<kind>`` logs."""
    if name.endswith("bias"):
        return "bias"
    if ".ln_" in name or name.startswith("ln_f"):
        return "norm"
    if ".attn." in name:
        return "attn"
    if ".mlp." in name:
        return "mlp"
    if name.startswith(("lm_head", "head")):
        return "head"
    return "embed"  # wte, wpe, patch_embed, pos_embed, cls_token


@dataclass
class HeldoutTally:
    """One validation pass over the held-out architectures: the GHN's predictions (made once, the
    GHN does not change during validation) and running sums. Row 0 of ``sums`` / ``correct`` is
    zero-shot (predicted parameters), row 1 random init; column ``i`` is architecture ``i``.
    """

    archs: Any  # the ArchBatch of the held-out architectures
    pred: list[dict[str, torch.Tensor]]  # predicted parameters per architecture (detached)
    sums: torch.Tensor  # (2, n) float64: summed task loss
    correct: torch.Tensor  # (2, n) float64: correct top-1 predictions (images; 0 for text)
    count: torch.Tensor  # (n,) float64: targets seen (tokens or images)

    @classmethod
    def start(cls, archs: Any, pred: list[dict[str, torch.Tensor]],
              device: torch.device) -> HeldoutTally:
        n = len(archs)
        return cls(archs, pred, *(torch.zeros(2, n, dtype=torch.float64, device=device)
                                  for _ in range(2)),
                   torch.zeros(n, dtype=torch.float64, device=device))

    def add(self, i: int, measured: tuple[tuple[torch.Tensor, torch.Tensor], ...],
            n_targets: int) -> None:
        """Add one batch of architecture ``i``: ``measured`` = ((loss sum, correct) zero-shot,
        (loss sum, correct) random init)."""
        for j, (loss_sum, correct) in enumerate(measured):
            self.sums[j, i] += loss_sum
            self.correct[j, i] += correct
        self.count[i] += n_targets


class GHNModule(L.LightningModule):
    """The LightningModule of GHN training (it receives its GHN, as ``CausalLM`` its model).

    Args:
        ghn: the hypernetwork to train (registered as ``ghn``: checkpoints hold ``ghn.*``); its
            resolved ``config`` is saved as ``hyper_parameters["ghn"]``.
        optim: the ``optim.*`` group (AdamW + warm-up cosine by default).
        gamma: weight of the predicted-parameter norm regulariser.
        label_smoothing: image tasks only.
        seed: seeds the random-init baselines (held-out architecture ``i`` uses ``seed + i``).

    The checkpoint layout (weight prefix, hyper-parameter names) is
    :data:`logah.ghn.io.GHN_CHECKPOINT`; every hyper-parameter is a plain value.
    """

    def __init__(self, ghn: GHN, optim: OptimConfig, gamma: float = 3e-5,
                 label_smoothing: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.ghn = ghn
        self.optim_cfg = optim
        self.gamma, self.label_smoothing = float(gamma), float(label_smoothing)
        self.seed = int(seed)
        self.save_hyperparameters(GHN_CHECKPOINT.hyper_parameters(
            ghn=ghn.config.to_dict(), optim=dataclasses.asdict(optim), gamma=self.gamma,
            label_smoothing=self.label_smoothing, seed=self.seed))
        # Plain dicts (not submodules): never in state_dict, never seen by DDP.
        self._targets: dict[str, nn.Module] = {}
        self._baselines: dict[str, dict[str, torch.Tensor]] = {}
        self._random_results: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._val: Optional[HeldoutTally] = None
        self._t_last: Optional[float] = None
        self.heldout_report: list[dict[str, Any]] = []

    # ---- the step ---------------------------------------------------------------------------
    def target(self, spec: ModelSpec) -> nn.Module:
        """The ``meta``-device model of ``spec`` (built once, no memory)."""
        key = spec.key()
        if key not in self._targets:
            self._targets[key] = build_model(spec, device="meta")
        return self._targets[key]

    def predict_params(self, graphs: Any, norms: bool = False) -> Any:
        """``ghn(graphs, norms)``: the encoder follows the trainer's precision, the GHN's decoders
        always run in fp32 (``logah.ghn`` turns autocast off around them, as the reference does).
        """
        return self.ghn(graphs, norms=norms)

    def run_target(self, spec: ModelSpec, params: dict[str, torch.Tensor],
                   x: torch.Tensor) -> torch.Tensor:
        """Logits of ``spec`` with ``params`` (every parameter, checked by name) on input ``x``."""
        model = self.target(spec)
        expected = {n for n, _ in model.named_parameters()}
        if expected != set(params):
            missing, extra = sorted(expected - set(params)), sorted(set(params) - expected)
            raise RuntimeError(
                f"GHN predicted {len(params)} of {len(expected)} parameters of "
                f"{spec.family} L={spec.n_layer} d={spec.d_model}: missing {missing[:5]}, "
                f"unexpected {extra[:5]}"
            )
        return functional_call(model, params, (x,), strict=True)

    def step_losses(self, task: TaskBatch, archs: Any) -> dict[str, Any]:
        """Predict, run every target on the same batch, and combine (see the module docstring).

        Returns:
            ``loss`` (to minimise), ``task_losses`` (m,), ``norms`` (m,) = sum of Frobenius norms
            per model (fp32), and ``group_norms``: kind -> list of per-tensor norms (detached).
        """
        x, y = task
        # Norms from the GHN: the low-rank decoder gets them from its factors, which saves a
        # full-size pass over every predicted tensor in the forward and the backward.
        params, fro = self.predict_params(archs.graphs, norms=True)
        task_losses, norms = [], []
        group_norms: dict[str, list[torch.Tensor]] = defaultdict(list)
        for spec, p, per_tensor in zip(archs.specs, params, fro, strict=True):
            task_losses.append(task_loss(self.run_target(spec, p, x), y, self.label_smoothing))
            per_tensor = per_tensor.float()  # (P,) in p's order
            norms.append(per_tensor.sum())
            for name, value in zip(p, per_tensor.detach()):
                group_norms[param_group(name)].append(value)
        task_t, norm_t = torch.stack(task_losses), torch.stack(norms)
        loss = (task_t.sum() + self.gamma * norm_t.sum()) / len(task_losses)
        return {"loss": loss, "task_losses": task_t, "norms": norm_t, "group_norms": group_norms}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        archs = batch["archs"]
        out = self.step_losses(batch["task"], archs)
        m = len(archs)
        log = dict(on_step=True, on_epoch=False, batch_size=m)
        self.log("train/loss", out["loss"], prog_bar=True, **log)
        self.log("train/task_loss", out["task_losses"].mean().detach(), **log)
        self.log("train/param_norm_reg", self.gamma * out["norms"].sum().detach() / m, **log)
        self.log("train/pred_param_norm", out["norms"].mean().detach(), **log)
        for kind in sorted(set(archs.kinds)):
            idx = [i for i, k in enumerate(archs.kinds) if k == kind]
            self.log(f"train/task_loss_{kind}", out["task_losses"].detach()[idx].mean(), **log)
        for group, values in sorted(out["group_norms"].items()):
            self.log(f"pred_norm/{group}", torch.stack(values).mean(), **log)
        self.log("lr", self.optimizers().param_groups[0]["lr"], **log)
        return out["loss"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._t_last is None:
            self._t_last = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        # Time between batch ends: data, GHN forward, targets, backward and the optimizer step.
        now = time.perf_counter()
        dt, self._t_last = now - (self._t_last or now), now
        if dt > 0:
            world = self.trainer.world_size
            self.log("perf/archs_per_s", len(batch["archs"]) * world / dt, on_step=True,
                     on_epoch=False)
            y = batch["task"][1]
            unit = "tokens" if y.dim() == 2 else "images"
            self.log(f"perf/{unit}_per_s", y.numel() * world / dt, on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called after unscaling and before clipping: the raw global norm.
        grads = [p.grad for p in self.ghn.parameters() if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in grads]))
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(self.ghn, self.optim_cfg,
                                    int(self.trainer.estimated_stepping_batches))

    # ---- validation: zero-shot (predicted) vs random init on held-out architectures ----------
    def baseline(self, spec: ModelSpec, index: int) -> dict[str, torch.Tensor]:
        """The family's ordinary random init of ``spec`` (seed ``seed + index``)."""
        key = f"{index}:{spec.key()}"
        if key not in self._baselines:
            model = build_model(spec, device=self.device, seed=self.seed + index)
            self._baselines[key] = {n: p.detach() for n, p in model.named_parameters()}
        return self._baselines[key]

    def on_validation_epoch_start(self) -> None:
        self._val = None

    def _tally(self, archs: Any) -> HeldoutTally:
        if self._val is None:  # the GHN does not change during validation: predict once
            with torch.no_grad():
                pred = [{k: v.detach() for k, v in p.items()}
                        for p in self.predict_params(archs.graphs)]
            self._val = HeldoutTally.start(archs, pred, self.device)
        return self._val

    def _measure(self, spec: ModelSpec, params: dict[str, torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, correct predictions) of one target on one batch (float64 scalars)."""
        logits = self.run_target(spec, params, x)
        loss_sum = task_loss(logits, y).double() * y.numel()
        if logits.dim() == 2:
            return loss_sum, (logits.argmax(-1) == y).sum().double()
        return loss_sum, torch.zeros_like(loss_sum)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x, y = batch["task"]
        st = self._tally(batch["archs"])
        for i, spec in enumerate(st.archs.specs):
            zero_shot = self._measure(spec, st.pred[i], x, y)
            # Random init never changes and validation walks the same batches every time, so
            # the baseline is measured once per (batch, architecture) and then reused.
            key = (batch_idx, i, spec.key())
            if key not in self._random_results:
                self._random_results[key] = self._measure(spec, self.baseline(spec, i), x, y)
            st.add(i, (zero_shot, self._random_results[key]), y.numel())

    def on_validation_epoch_end(self) -> None:
        st = self._val
        if st is None:  # limit_val_batches=0
            return
        self._baselines.clear()  # every baseline result is cached: free the random weights
        reduce = self.trainer.strategy.reduce
        count = reduce(st.count, reduce_op="sum").clamp(min=1)
        loss = reduce(st.sums, reduce_op="sum") / count  # (2, n): per architecture
        acc = reduce(st.correct, reduce_op="sum") / count
        kinds = st.archs.kinds
        is_text = st.archs.specs[0].family in CAUSAL_LM
        values: dict[str, torch.Tensor] = {}
        for j, which in enumerate(("zero_shot", "random_init")):
            values[f"val/{which}_loss"] = loss[j].mean()
            for group, members in (("in_range", ("in_range",)), ("deeper", ("deeper",)),
                                   ("wider", ("wider",)), ("beyond", KINDS_BEYOND)):
                idx = [i for i, k in enumerate(kinds) if k in members]
                if idx:
                    values[f"val/{which}_loss_{group}"] = loss[j, idx].mean()
            if is_text:
                values[f"val/{which}_ppl"] = torch.exp(loss[j].mean())
            else:
                values[f"val/{which}_acc1"] = acc[j].mean()
        # Same-shape predicted tensors across depth: mean pairwise cosine (1 = collapsed).
        cos = [c for c in map(depth_diversity, st.pred) if c is not None]
        if cos:
            values["val/depth_cosine"] = torch.tensor(sum(cos) / len(cos))
        for k, v in values.items():
            self.log(k, v.float(), sync_dist=True, prog_bar=k == "val/zero_shot_loss")
        if self.trainer.sanity_checking:
            self._val = None
            return
        self.heldout_report = [
            dict(kind=kind, n_layer=s.n_layer, d_model=s.d_model, n_heads=s.n_heads,
                 num_params=int(n), zero_shot_loss=float(loss[0, i]),
                 random_init_loss=float(loss[1, i]),
                 **({"kv_heads": s.kv_heads} if s.family == "llama" else {}),
                 **({} if is_text else dict(patch_size=s.patch_size,
                                            zero_shot_acc1=float(acc[0, i]),
                                            random_init_acc1=float(acc[1, i]))))
            for i, (s, kind, n) in enumerate(zip(st.archs.specs, kinds, st.archs.num_params))
        ]
        self._val = None
        self._t_last = None  # validation time is not training throughput

    def on_fit_start(self) -> None:
        # One TensorBoard chart overlaying predicted vs random init (custom-scalars plugin).
        writer = getattr(self.logger, "experiment", None) if self.logger else None
        if self.trainer.is_global_zero and hasattr(writer, "add_custom_scalars"):
            pairs = ["loss", "loss_in_range", "loss_deeper", "loss_wider", "ppl", "acc1"]
            writer.add_custom_scalars({"GHN held-out architectures": {
                f"{p}: zero-shot vs random init": [
                    "Multiline", [f"val/zero_shot_{p}", f"val/random_init_{p}"]]
                for p in pairs
            }})


def summarize_heldout(report: list[dict[str, Any]]) -> str:
    """A printable table of per-architecture zero-shot vs random-init validation losses (plus
    patch size and top-1 accuracy for ViTs, key/value heads for Llamas), and a line of means."""
    if not report:
        return "no held-out validation ran"
    vit = "zero_shot_acc1" in report[0]
    head = (f"{'kind':<9} {'L':>2} {'d':>4} {'H':>2} {'p|kv':>4} {'params':>11} {'zero-shot':>10} "
            f"{'random':>8}" + ("  acc1 zs/rnd" if vit else ""))
    lines = [head, "-" * len(head)]
    for r in report:
        line = (f"{r['kind']:<9} {r['n_layer']:>2} {r['d_model']:>4} {r['n_heads']:>2} "
                f"{r.get('patch_size', r.get('kv_heads', '-')):>4} {r['num_params']:>11,} "
                f"{r['zero_shot_loss']:>10.4f} {r['random_init_loss']:>8.4f}")
        if vit:
            line += f"  {r['zero_shot_acc1']:.3f}/{r['random_init_acc1']:.3f}"
        lines.append(line)

    def mean(key: str) -> float:
        return sum(r[key] for r in report) / len(report)

    zs, rnd = mean("zero_shot_loss"), mean("random_init_loss")
    extra = (f"acc1 {mean('zero_shot_acc1'):.3f} vs {mean('random_init_acc1'):.3f}" if vit else
             f"ppl {math.exp(min(zs, 50)):.1f} vs {math.exp(min(rnd, 50)):.1f}")
    lines.append(f"mean: zero-shot {zs:.4f} vs random init {rnd:.4f} (ratio {zs / rnd:.3f}; "
                 f"{extra})")
    return "\n".join(lines)
