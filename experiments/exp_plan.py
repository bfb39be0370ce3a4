"""Turn an experiment folder (``conf/experiment/<name>/``) into a list of plain ``logah`` commands.

An experiment folder holds YAML files named by role; each is an ordinary config file of the command
that uses it (it validates against that command's schema):

* ``ghn-<label>.yaml`` (``TrainGHNConfig``): a hypernetwork to train (``logah train-ghn``);
* ``finetune-<target>.yaml`` (``FinetuneConfig``): the target model (unseen, larger than any the
  GHNs trained on) and its fine-tuning recipe, shared by every initialisation;
* ``grow-<label>.yaml`` (``FinetuneConfig``, optional): a small model trained first, then grown
  to each target (``grow:``, ``hyperclone:``, ``stack:`` — whichever its dims allow);
* ``protocol.yaml`` (:class:`ProtocolConfig`, optional): the learning-rate grid, the seeds and the
  inits every target is fine-tuned from.

For every target the stages are: train each GHN; train each small model; then one fine-tuning
*cell* per (init, learning rate, seed) with the same recipe otherwise — inits ``random``,
``mimetic``, each GHN (``ghn:CKPT``, predicted inline, and each of its ``snapshot-*min.ckpt`` when
``ghn_snapshots`` names it) and each growth of each small model. Runs live under ``{out_dir}``;
a cell is ``finetune/{experiment}-{target}-{init}-lr{lr}-s{seed}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from logah.config import LogahError, load_config
from logah.config.model import resolve_spec
from logah.config.runs import FinetuneConfig, TrainGHNConfig
from logah.config.specs import ModelSpec

ROLES = {"ghn": TrainGHNConfig, "finetune": FinetuneConfig, "grow": FinetuneConfig}
PROTOCOL_FILE = "protocol.yaml"
INIT_KINDS = ("random", "mimetic", "ghn", "grow", "hyperclone", "stack")


@dataclass
class ProtocolConfig:
    """``protocol.yaml``: how every init is compared (see :mod:`logah.report.protocol`).

    ``lrs``/``seeds`` empty: the target config's ``optim.lr`` / ``seed`` alone. ``inits``: kinds
    (every init of that kind; growth kinds only where a small model's dims allow them) or single
    labels (``grow-gpt2-2x32``, ``logah-t``). ``ghn_snapshots``:
    GHN labels whose ``snapshot_minutes`` checkpoints are inits too (same grid and seeds).
    """

    lrs: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    inits: list = field(default_factory=lambda: list(INIT_KINDS))
    ghn_snapshots: list = field(default_factory=list)


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
    protocol: Path | None = None

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
        target: the target label of a fine-tuning cell; label: its init (``random``, ``mimetic``,
            a GHN label, ``<ghn>-<M>min``, ``grow-<small>``, ``hyperclone-<small>``,
            ``stack-<small>``); lr, seed: the cell's learning rate and seed.
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
    lr: float | None = None
    seed: int | None = None
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
        return list(self.argv)

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
    lrs: list[float] | None = None  # override the protocol's learning-rate grid
    seeds: list[int] | None = None  # override the protocol's seeds
    devices: int | None = None  # trainer.devices for training stages (ddp when > 1)
    ghn_devices: int | None = None  # ... for train-ghn stages only (the meta-batch scales with it)
    sets: list[str] = field(default_factory=list)  # extra key=value for training stages
    predict_device: str = "cpu"  # where ghn: inits predict (init_opts.ghn_device)
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
        if f.name == PROTOCOL_FILE:
            exp.protocol = f
            continue
        role, _, label = f.stem.partition("-")
        if role not in ROLES or not label:
            raise ExperimentError(f"{f}: file names are ghn-<label>.yaml, finetune-<target>.yaml, "
                                  f"grow-<label>.yaml or {PROTOCOL_FILE}")
        {"ghn": exp.ghns, "finetune": exp.targets, "grow": exp.grows}[role][label] = f
    if not exp.targets:
        raise ExperimentError(f"{root}: no finetune-<target>.yaml")
    return exp


def training_overrides(opts: Options, role: str = "finetune") -> list[str]:
    """``key=value`` the runner adds to each ``train-ghn`` (role ``ghn``) / ``finetune`` command."""
    out = [f"out_dir={opts.out_dir}"]
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


def load_protocol(exp: Experiment, opts: Options) -> ProtocolConfig:
    """The experiment's protocol with the runner's ``--lrs``/``--seeds`` applied (validated)."""
    try:
        proto = load_config(ProtocolConfig, exp.protocol) if exp.protocol else ProtocolConfig()
    except LogahError as e:
        raise ExperimentError(f"{exp.protocol}: {e}") from None
    where = exp.protocol or exp.path
    proto.lrs = [float(x) for x in (opts.lrs or proto.lrs)]
    proto.seeds = [int(x) for x in (opts.seeds or proto.seeds)]
    bad = [k for k in proto.inits if k.split("-", 1)[0] not in INIT_KINDS and k not in exp.ghns]
    if bad or any(lr <= 0 for lr in proto.lrs) or len(set(proto.seeds)) != len(proto.seeds):
        raise ExperimentError(f"{where}: inits must be kinds ({', '.join(INIT_KINDS)}) or labels (got "
                              f"{bad or 'ok'}), lrs > 0 (got {proto.lrs}), seeds distinct "
                              f"(got {proto.seeds})")
    unknown = [g for g in proto.ghn_snapshots if g not in exp.ghns]
    if unknown:
        raise ExperimentError(f"{where}: ghn_snapshots {unknown}: no ghn-<label>.yaml of that name")
    return proto


def growth_kinds(src: ModelSpec, target: ModelSpec) -> list[str]:
    """The growth inits a small model's dims allow: ``grow`` (the six expansions), ``hyperclone``
    (same depth, integer width factors), ``stack`` (shallower; widths cloned first)."""
    from logah.grow import GrowError, check_growth
    from logah.grow.clone import clone_factors

    kinds = []
    try:
        check_growth(src, target)
        kinds.append("grow")
    except GrowError:
        pass
    try:
        clone_factors(src, target)
        kinds.append("hyperclone" if src.n_layer == target.n_layer else "stack")
    except GrowError:
        pass
    return kinds if src.n_layer <= target.n_layer else []


def plan(exp: Experiment, opts: Options) -> list[Stage]:
    """Every stage of ``exp``, in an order where each stage's inputs come from earlier ones."""
    cfgs = validate(exp, opts)
    proto = load_protocol(exp, opts)
    out = opts.out_dir
    targets = {k: v for k, v in exp.targets.items() if opts.targets is None or k in opts.targets}
    if opts.targets and set(opts.targets) - set(targets):
        missing = ", ".join(sorted(set(opts.targets) - set(targets)))
        raise ExperimentError(f"--target {missing}: not in {exp.path} ({', '.join(exp.targets)})")
    stages: list[Stage] = []
    ckpts: dict[str, Path] = {}
    for label, f in exp.ghns.items():
        name = f"{exp.name}-{label}"
        ckpt_dir = out / "train-ghn" / name / "checkpoints"
        ckpts[label] = ckpt_dir / "last.ckpt"
        stages.append(Stage(f"{exp.name}/train-ghn/{label}",
                            ["train-ghn", "--config", str(f), f"name={name}",
                             *training_overrides(opts, "ghn")], ckpts[label], [f]))
        if label in proto.ghn_snapshots:
            for m in cfgs[f].snapshot_minutes:
                ckpts[f"{label}-{m:g}min"] = ckpt_dir / f"snapshot-{m:g}min.ckpt"
    small = {}
    for label, f in exp.grows.items():
        name = f"{exp.name}-{label}"
        small[label] = out / "finetune" / name / "weights"
        stages.append(Stage(f"{exp.name}/finetune/{label}",
                            ["finetune", "--config", str(f), f"name={name}",
                             *training_overrides(opts)],
                            small[label] / "model.safetensors", [f]))
    for target, f in targets.items():
        inits = target_inits(exp, cfgs, f, proto, ckpts, small)
        stages += cell_stages(exp, target, f, cfgs[f], inits, proto, opts)
    return stages


def target_inits(exp: Experiment, cfgs: dict, f: Path, proto: ProtocolConfig,
                 ckpts: dict[str, Path], small: dict[str, Path]) -> dict[str, tuple[str, Path | None]]:
    """label -> (``init=`` value, the upstream file it reads) for one target."""
    spec = resolve_spec(cfgs[f].model)
    wanted = set(proto.inits)
    inits: dict[str, tuple[str, Path | None]] = {}
    for kind in ("random", "mimetic"):
        if kind in wanted:
            inits[kind] = (kind, None)
    for label, ckpt in ckpts.items():
        base = label if label in exp.ghns else label.rsplit("-", 1)[0]  # logah-t-5min -> logah-t
        if {"ghn", label, base} & wanted:
            inits[label] = (f"ghn:{ckpt}", ckpt)
    for label, weights in small.items():
        src = resolve_spec(cfgs[exp.grows[label]].model)
        for kind in growth_kinds(src, spec):
            if {kind, f"{kind}-{label}"} & wanted:
                inits[f"{kind}-{label}"] = (f"{kind}:{weights}", weights / "model.safetensors")
    return inits


def cell_stages(exp: Experiment, target: str, f: Path, cfg: FinetuneConfig,
                inits: dict[str, tuple[str, Path | None]], proto: ProtocolConfig,
                opts: Options) -> list[Stage]:
    """One fine-tuning stage per (init, learning rate, seed) of one target."""
    group = f"{exp.name}-{target}"
    lrs = proto.lrs or [float(cfg.optim.lr)]
    seeds = proto.seeds or [int(cfg.seed)]
    extra = [f"init_opts.ghn_device={opts.predict_device}"] if opts.predict_device != "cpu" else []
    stages = []
    for label, (init, dep) in inits.items():
        for lr in lrs:
            for seed in seeds:
                cell = f"{target}-{label}-lr{lr:g}-s{seed}"
                name = f"{exp.name}-{cell}"
                stages.append(Stage(
                    f"{exp.name}/finetune/{cell}",
                    ["finetune", "--config", str(f), f"name={name}", f"init={init}",
                     f"optim.lr={lr:g}", f"seed={seed}", *extra, *training_overrides(opts)],
                    opts.out_dir / "finetune" / name / "weights" / "model.safetensors", [f],
                    group=group, target=target, label=label, lr=lr, seed=seed,
                    deps=[dep] if dep is not None else []))
    return stages
