"""Turn an experiment folder (``conf/experiment/<name>/``) into a list of plain ``logah`` commands.

An experiment folder holds YAML files named by role; each is an ordinary config file of the command
that uses it (it validates against that command's schema):

* ``ghn-<label>.yaml`` (``TrainGHNConfig``): a hypernetwork to train (``logah train-ghn``);
* ``finetune-<target>.yaml`` (``FinetuneConfig``): the target model (unseen, larger than any the
  GHNs trained on) and its fine-tuning recipe, shared by every initialisation;
* ``grow-<label>.yaml`` (``FinetuneConfig``, optional): a small model trained first, then grown
  (function-preserving) to each target.

For every target the stages are: train each GHN; predict the target with each; train and grow the
small model; fine-tune the target from ``random``, each prediction and each grown model with the
same recipe; compare the runs (``logah compare``). Runs live under ``{out_dir}``; names are
``{experiment}-{label}`` (plus ``-s{seed}`` when the seed is overridden).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from logah.config import LogahError, load_config
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig, TrainGHNConfig
from logah.config.specs import ModelSpec

ROLES = {"ghn": TrainGHNConfig, "finetune": FinetuneConfig, "grow": FinetuneConfig}
# Spec fields `logah grow --to` may change (dims), in the order they are written.
GROW_DIMS = ("n_layer", "d_model", "n_heads", "d_qk", "d_v", "d_mlp", "n_ctx")


class ExperimentError(LogahError):
    """An experiment folder is missing, empty or inconsistent."""


@dataclass
class Experiment:
    """The YAML files of one experiment folder, by role and label."""

    name: str
    path: Path
    ghns: dict[str, Path] = field(default_factory=dict)
    targets: dict[str, Path] = field(default_factory=dict)
    grows: dict[str, Path] = field(default_factory=dict)

    def files(self) -> list[tuple[str, Path]]:
        """``(role, path)`` of every config file."""
        return ([("ghn", p) for p in self.ghns.values()]
                + [("finetune", p) for p in self.targets.values()]
                + [("grow", p) for p in self.grows.values()])


@dataclass
class Stage:
    """One ``logah`` command of the pipeline.

    Attributes:
        id: unique, stable id (``{experiment}/{kind}/{label}``), names the stage's done-marker.
        argv: the arguments after ``logah``.
        output: the file that exists once the command has finished.
        inputs: config files the command reads (hashed into the done-marker).
        group: the comparison (``{experiment}-{target}``) a fine-tuning run belongs to, if any.
        target: the target label of a fine-tuning run; label: its init (``random``, a GHN
            label, ``grow-<label>``).
        eps_from: a grown weights folder whose LayerNorm eps the run must state (see
            :meth:`command`), known only once the grow stage has run.
        deps: outputs of earlier stages this one reads; when one is rewritten (an upstream stage
            ran again) this stage is no longer done.
    """

    id: str
    argv: list[str]
    output: Path
    inputs: list[Path] = field(default_factory=list)
    group: str | None = None
    target: str | None = None
    label: str | None = None
    eps_from: Path | None = None
    deps: list[Path] = field(default_factory=list)

    @property
    def experiment(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def folder(self) -> Path:
        """What the command writes: the run folder (``.../checkpoints/last.ckpt`` and
        ``.../weights/model.safetensors`` live two levels down) or the weights directory."""
        return self.output.parents[1] if self.argv[0] in ("train-ghn", "finetune") else \
            self.output.parent

    def command(self) -> list[str]:
        """``argv`` plus, for a run from grown weights, ``model.ln_eps`` as the weights record it.

        Hidden growth rescales LayerNorm eps by ``d / d'`` (that keeps the function exact), so a
        grown model's spec differs from the target's in ``ln_eps`` alone; the fine-tuning run
        states it explicitly (``logah finetune`` rejects weights whose spec differs from
        ``model.*``). Before the grow stage has run this shows a placeholder.
        """
        if self.eps_from is None:
            return list(self.argv)
        meta = self.eps_from / "logah.json"
        if not meta.is_file():
            return [*self.argv, f"model.ln_eps=<from {meta}>"]
        import json

        return [*self.argv, f"model.ln_eps={json.loads(meta.read_text())['spec']['ln_eps']!r}"]

    def deps_state(self) -> str:
        """Hash of the size and modification time of every ``deps`` file."""
        h = hashlib.sha256()
        for p in self.deps:
            st = p.stat() if p.exists() else None
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode() if st else f"{p}:-".encode())
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Hash of the command line and the content of its config files."""
        h = hashlib.sha256(" ".join(self.argv).encode())
        for p in self.inputs:
            h.update(p.read_bytes() if p.is_file() else b"<missing>")
        return h.hexdigest()[:16]


@dataclass
class Options:
    """What the runner's flags change in every stage."""

    out_dir: Path = Path("runs/experiments")
    seed: int | None = None  # override every stage's seed (and suffix run names with -s{seed})
    devices: int | None = None  # trainer.devices for training stages (ddp when > 1)
    ghn_devices: int | None = None  # ... for train-ghn stages only (the meta-batch scales with it)
    sets: list[str] = field(default_factory=list)  # extra key=value for training stages
    predict_device: str = "cpu"
    targets: list[str] | None = None  # only these finetune-<target> labels


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment folder's file names.

    Raises:
        ExperimentError: missing folder, a YAML file of no known role, or no target.
    """
    root = Path(path)
    if not root.is_dir():
        raise ExperimentError(f"{root}: no such experiment folder")
    exp = Experiment(name=root.name, path=root)
    for f in sorted(root.glob("*.yaml")):
        role, _, label = f.stem.partition("-")
        if role not in ROLES or not label:
            raise ExperimentError(f"{f}: file names are ghn-<label>.yaml, finetune-<target>.yaml "
                                  "or grow-<label>.yaml")
        {"ghn": exp.ghns, "finetune": exp.targets, "grow": exp.grows}[role][label] = f
    if not exp.targets:
        raise ExperimentError(f"{root}: no finetune-<target>.yaml")
    return exp


def training_overrides(opts: Options, role: str = "finetune") -> list[str]:
    """``key=value`` the runner adds to each ``train-ghn`` (role ``ghn``) / ``finetune`` command."""
    out = [f"out_dir={opts.out_dir}"]
    if opts.seed is not None:
        out.append(f"seed={opts.seed}")
    devices = opts.ghn_devices if role == "ghn" and opts.ghn_devices is not None else opts.devices
    if devices is not None:
        out.append(f"trainer.devices={devices}")
        if devices > 1:
            out.append("trainer.strategy=ddp")
    return out + list(opts.sets)


def validate(exp: Experiment, opts: Options) -> dict[Path, object]:
    """Load every config file with its schema and the runner's overrides (one-line errors)."""
    loaded = {}
    for role, path in exp.files():
        try:
            loaded[path] = load_config(ROLES[role], path, training_overrides(opts, role))
        except LogahError as e:
            raise ExperimentError(f"{path}: {e}") from None
    return loaded


def _grow_to(src: ModelSpec, dst: ModelSpec) -> str:
    """``--to`` dims taking ``src`` to ``dst`` (every dim that differs, explicitly)."""
    dims = [f"{k}={getattr(dst, k)}" for k in GROW_DIMS if getattr(src, k) != getattr(dst, k)]
    if not dims:
        raise ExperimentError("grow: the small model already has the target's dims")
    return ",".join(dims)


def _model_overrides(cfg: FinetuneConfig) -> list[str]:
    """The target's ``model.*`` settings as ``predict`` arguments (preset via ``--arch``)."""
    return [f"model.{f.name}={getattr(cfg.model, f.name)}" for f in dataclasses.fields(cfg.model)
            if f.name != "arch" and getattr(cfg.model, f.name) is not None]


def plan(exp: Experiment, opts: Options) -> list[Stage]:
    """Every stage of ``exp``, in an order where each stage's inputs come from earlier ones."""
    cfgs = validate(exp, opts)
    sfx = f"-s{opts.seed}" if opts.seed is not None else ""
    out, common = opts.out_dir, training_overrides(opts)
    targets = {k: v for k, v in exp.targets.items() if opts.targets is None or k in opts.targets}
    if opts.targets and set(opts.targets) - set(targets):
        missing = ", ".join(sorted(set(opts.targets) - set(targets)))
        raise ExperimentError(f"--target {missing}: not in {exp.path} ({', '.join(exp.targets)})")
    stages: list[Stage] = []
    ckpts = {}
    for label, f in exp.ghns.items():
        name = f"{exp.name}-{label}{sfx}"
        ckpts[label] = out / "train-ghn" / name / "checkpoints" / "last.ckpt"
        stages.append(Stage(f"{exp.name}/train-ghn/{label}{sfx}",
                            ["train-ghn", "--config", str(f), f"name={name}",
                             *training_overrides(opts, "ghn")],
                            ckpts[label], [f]))
    small = {}
    for label, f in exp.grows.items():
        name = f"{exp.name}-{label}{sfx}"
        small[label] = out / "finetune" / name / "weights"
        stages.append(Stage(f"{exp.name}/finetune/{label}{sfx}",
                            ["finetune", "--config", str(f), f"name={name}", *common],
                            small[label] / "model.safetensors", [f]))
    for target, f in targets.items():
        stages += _target_stages(exp, target, f, cfgs, ckpts, small, opts, sfx)
    return stages


def _target_stages(exp: Experiment, target: str, f: Path, cfgs: dict, ckpts: dict, small: dict,
                   opts: Options, sfx: str) -> list[Stage]:
    """predict / grow / fine-tune stages of one target."""
    out, common = opts.out_dir, training_overrides(opts)
    cfg = cfgs[f]
    spec = resolve_spec(cfg.model)
    group = f"{exp.name}-{target}{sfx}"
    stages, inits = [], {"random": ("random", None)}
    for label, ckpt in ckpts.items():
        pred = out / "predict" / f"{exp.name}-{target}-{label}{sfx}"
        stages.append(Stage(
            f"{exp.name}/predict/{target}-{label}{sfx}",
            ["predict", "--ghn", str(ckpt), "--arch", cfg.model.arch, "--out", str(pred),
             "--device", opts.predict_device, "--no-progress", *_model_overrides(cfg)],
            pred / "model.safetensors", [f], deps=[ckpt]))
        inits[label] = (f"weights:{pred}", None)
    for label, weights in small.items():
        src_spec = resolve_spec(cfgs[exp.grows[label]].model)
        grown = out / "grow" / f"{exp.name}-{target}-from-{label}{sfx}"
        seed = opts.seed if opts.seed is not None else cfg.seed
        argv = ["grow", "--from", str(weights), "--to", _grow_to(src_spec, spec),
                "--out", str(grown), "--seed", str(seed)]
        stages.append(Stage(f"{exp.name}/grow/{target}-{label}{sfx}", argv,
                            grown / "model.safetensors", [exp.grows[label]],
                            deps=[weights / "model.safetensors"]))
        inits[f"grow-{label}"] = (f"weights:{grown}", grown)
    for label, (init, grown) in inits.items():
        name = f"{group.removesuffix(sfx)}-{label}{sfx}"
        stages.append(Stage(
            f"{exp.name}/finetune/{target}-{label}{sfx}",
            ["finetune", "--config", str(f), f"name={name}", f"init={init}", *common],
            out / "finetune" / name / "weights" / "model.safetensors", [f], group=group,
            target=target, label=label, eps_from=grown,
            deps=[] if init == "random" else [Path(init.removeprefix("weights:")) /
                                              "model.safetensors"]))
    return stages
