"""Architectures as data: the training set / online stream and the held-out set for GHN training.

:class:`ArchitectureDataModule` wraps a task DataModule (tokens or images) and pairs each task batch
with an :class:`ArchBatch` of ``m`` architectures (their specs and the PyG batch of their graphs):
training batches are ``{"task": (x, y), "archs": ArchBatch}``, and so are validation batches, whose
``archs`` are always the whole held-out set.

Which architectures a step gets is a pure function of ``(seed, rank, batch index)``:
- fixed set (default): rank ``r`` of ``W`` owns the training-set entries ``r, r + W, ...`` (so ranks
  never share an entry) and walks them in a fresh seeded permutation per pass;
- online (``archs.online=true``): every slot is a fresh draw from the space.
The batch index is the number of training batches consumed so far (``global_step x accumulate``),
read when an epoch's iterator starts, so a run resumed from ``last.ckpt`` continues the same
sequence. Held-out architectures are drawn first, and the training set / online stream never
contains one of them.

The run folder keeps the drawn architectures as a small JSON of specs (``archs.json``: distinct
specs, the training-set indices into them, and the held-out ones with their kind) rather than
pickled graphs; graphs are rebuilt from specs and cached per process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, IterableDataset

from logah.config.arch import ArchDataConfig
from logah.config.specs import ModelSpec
from logah.data.errors import DataFormatError
from logah.data.space import ArchSpace, draw_heldout, draw_online, draw_train, num_params
from logah.graph import GraphCache, batch_graphs
from logah.utils.fs import atomic_write_text

ARCHS_FILE = "archs.json"
SIZE_BUCKETS = ("small", "medium", "large")


class ArchBatch:
    """``m`` architectures: specs, graphs batched by PyG, and per-architecture labels.

    Attributes:
        specs: the target specs.
        graphs: ``torch_geometric.data.Batch`` of their ``ArchGraph``s (input of ``ghn(...)``).
        kinds: per spec, a size bucket (``small``/``medium``/``large``) for training, or the
            held-out kind (``in_range``/``deeper``/``wider``).
        num_params: per spec, its parameter count.
    """

    def __init__(self, specs: list[ModelSpec], graphs: Any, kinds: list[str],
                 num_params: list[int]) -> None:
        self.specs, self.graphs, self.kinds, self.num_params = specs, graphs, kinds, num_params

    def __len__(self) -> int:
        return len(self.specs)

    def to(self, device: Any, non_blocking: bool = False) -> ArchBatch:
        """Move the graph tensors (Lightning calls this to put a batch on the device)."""
        return ArchBatch(self.specs, self.graphs.to(device, non_blocking=non_blocking),
                         self.kinds, self.num_params)


def arch_batch(cache: GraphCache, specs: list[ModelSpec], kinds: list[str]) -> ArchBatch:
    """The :class:`ArchBatch` of ``specs`` with graphs from ``cache``."""
    graphs = batch_graphs([cache(s) for s in specs])
    return ArchBatch(list(specs), graphs, list(kinds), [num_params(s) for s in specs])


def size_edges(space: ArchSpace) -> tuple[int, int]:
    """Parameter counts splitting the space's distinct architectures into three equal buckets."""
    counts = np.sort([num_params(s) for s in space.enumerate()])
    return int(np.quantile(counts, 1 / 3)), int(np.quantile(counts, 2 / 3))


def size_bucket(n: int, edges: tuple[int, int]) -> str:
    return SIZE_BUCKETS[int(n > edges[0]) + int(n > edges[1])]


class ArchStream(IterableDataset):
    """Endless :class:`ArchBatch`es for one rank; item ``k`` of an epoch is batch ``start() + k``.

    Args:
        space: the training space (online draws and size buckets).
        pool: the fixed training set, or ``None`` to draw online.
        heldout_keys: spec keys online draws must avoid.
        meta_batch: architectures per batch (``m``).
        seed: base seed.
        cache: graph cache.
        start: returns the index of the first batch of a new epoch (training batches so far).
    """

    def __init__(self, space: ArchSpace, pool: Optional[list[ModelSpec]], heldout_keys: frozenset,
                 meta_batch: int, seed: int, cache: GraphCache,
                 start: Callable[[], int] = lambda: 0) -> None:
        super().__init__()
        self.space, self.pool, self.heldout_keys = space, pool, heldout_keys
        self.meta_batch, self.seed = int(meta_batch), int(seed)
        self.cache, self.start = cache, start
        self.edges = size_edges(space)
        self.rank, self.world_size = 0, 1

    def set_rank(self, rank: int, world_size: int) -> None:
        if self.pool is not None and len(self.pool) < world_size:
            raise DataFormatError(
                f"archs.num_train: {len(self.pool)} architectures cannot be split over "
                f"{world_size} ranks"
            )
        self.rank, self.world_size = int(rank), int(world_size)

    def specs_at(self, index: int) -> list[ModelSpec]:
        """The ``m`` specs of batch ``index`` on this rank (pure in seed, rank and index)."""
        m = self.meta_batch
        if self.pool is None:
            return [draw_online(self.space, self.seed, self.rank, index, j, self.heldout_keys)
                    for j in range(m)]
        shard = self.pool[self.rank :: self.world_size]  # disjoint across ranks
        out = []
        for g in range(index * m, index * m + m):
            cycle, pos = divmod(g, len(shard))
            perm = np.random.default_rng([self.seed, 7, self.rank, cycle]).permutation(len(shard))
            out.append(shard[int(perm[pos])])
        return out

    def batch_at(self, index: int) -> ArchBatch:
        specs = self.specs_at(index)
        kinds = [size_bucket(num_params(s), self.edges) for s in specs]
        return arch_batch(self.cache, specs, kinds)

    def __iter__(self) -> Iterator[ArchBatch]:
        index = int(self.start())
        while True:
            yield self.batch_at(index)
            index += 1


class _Repeat(IterableDataset):
    """The same item forever (the held-out :class:`ArchBatch` beside every validation batch)."""

    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item

    def __iter__(self) -> Iterator[Any]:
        while True:
            yield self.item


def _collate_one(item: Any) -> Any:
    return item


class ArchitectureDataModule(L.LightningDataModule):
    """Task batches paired with architectures: ``{"task": batch, "archs": ArchBatch}``.

    Args:
        cfg: the ``archs.*`` group (space, training-set size or online, ``m``, held-out counts).
        task: the task DataModule (``logah.data.build_datamodule``); its loaders are wrapped.
        template: the task template spec (vocabulary/context or image size/channels/classes).
        seed: base seed of every architecture draw.
        cutoff: virtual-edge cutoff of the graphs (the hypernetwork's); ``None``: the graph default.
        run_dir: where ``archs.json`` lives; the draw is written there by :meth:`prepare_data`.
        resume: load an existing ``archs.json`` as is (a resumed run keeps its architectures);
            ``False`` draws afresh and overwrites it (a new run in an old folder).

    Attributes:
        space: the :class:`ArchSpace`.
        train_specs: the fixed training set (``[]`` with ``online``).
        heldout, heldout_kinds: held-out specs and their kinds (``in_range``/``deeper``/``wider``).
    """

    def __init__(self, cfg: ArchDataConfig, task: L.LightningDataModule, template: ModelSpec,
                 seed: int = 0, cutoff: Optional[int] = None,
                 run_dir: Optional[str | Path] = None, resume: bool = True) -> None:
        super().__init__()
        self.cfg, self.task, self.seed = cfg, task, int(seed)
        self.space = ArchSpace(cfg.space, template)
        self.path = None if run_dir is None else Path(run_dir) / ARCHS_FILE
        self._write = True
        if resume and self.path is not None and self.path.is_file():
            self._write = False
            self.train_specs, self.heldout, self.heldout_kinds = read_archs(self.path)
            self._check_loaded()
        else:
            self.train_specs, self.heldout, self.heldout_kinds = self._draw()
        self.cache = GraphCache(cfg.graph_cache, cutoff)
        self.stream: Optional[ArchStream] = None
        self._heldout_batch: Optional[ArchBatch] = None

    def _draw(self) -> tuple[list[ModelSpec], list[ModelSpec], list[str]]:
        c = self.cfg
        heldout = draw_heldout(self.space, c.num_heldout, c.num_beyond, self.seed,
                               c.beyond_layers, c.beyond_width)
        kinds = ["in_range"] * c.num_heldout + [
            "deeper" if i % 2 == 0 else "wider" for i in range(c.num_beyond)
        ]
        keys = [s.key() for s in heldout]
        train = [] if c.online else draw_train(self.space, c.num_train, self.seed, keys)
        return train, heldout, kinds

    def _check_loaded(self) -> None:
        c, n = self.cfg, len(self.train_specs)
        fam = {s.family for s in [*self.train_specs, *self.heldout]}
        if fam - {self.space.family} or (n == 0) != bool(c.online) or (n and n != c.num_train):
            raise DataFormatError(
                f"{self.path}: drawn for another archs.* config (family {sorted(fam)}, "
                f"{n} training architectures); use a new run name or delete the file"
            )

    @property
    def heldout_keys(self) -> frozenset:
        return frozenset(s.key() for s in self.heldout)

    def to_json(self) -> str:
        """``archs.json``: distinct specs once, the training set as indices into them."""
        distinct: dict[str, int] = {}
        specs: list[dict] = []
        for s in [*self.heldout, *self.train_specs]:
            if s.key() not in distinct:
                distinct[s.key()] = len(specs)
                specs.append(s.to_dict())
        doc = {
            "format": "logah-archs-v1",
            "seed": self.seed,
            "family": self.space.family,
            "online": bool(self.cfg.online),
            "specs": specs,
            "heldout": [{"spec": distinct[s.key()], "kind": k}
                        for s, k in zip(self.heldout, self.heldout_kinds)],
            "train": [distinct[s.key()] for s in self.train_specs],
        }
        return json.dumps(doc, indent=None, separators=(",", ":")) + "\n"

    # ---- Lightning hooks ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write ``archs.json`` (once, on one process) and let the task prepare its data."""
        if self.path is not None and self._write:
            self._write = False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, self.to_json())
        self.task.prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        trainer = self.trainer
        rank = int(getattr(trainer, "global_rank", 0) or 0)
        world = int(getattr(trainer, "world_size", 1) or 1)
        self.task.trainer = trainer  # the task module reads its rank from its trainer
        self.task.setup(stage)

        def start() -> int:  # training batches consumed so far: resume continues the sequence
            if trainer is None:
                return 0
            return int(trainer.global_step) * int(trainer.accumulate_grad_batches)

        pool = None if self.cfg.online else self.train_specs
        self.stream = ArchStream(self.space, pool, self.heldout_keys, self.cfg.meta_batch,
                                 self.seed, self.cache, start)
        self.stream.set_rank(rank, world)

    def heldout_batch(self) -> ArchBatch:
        """All held-out architectures in one :class:`ArchBatch` (kinds = held-out kinds)."""
        if self._heldout_batch is None:
            self._heldout_batch = arch_batch(self.cache, self.heldout, self.heldout_kinds)
        return self._heldout_batch

    def train_dataloader(self) -> CombinedLoader:
        if self.stream is None:
            self.setup("fit")
        archs = DataLoader(self.stream, batch_size=None, collate_fn=_collate_one)
        return CombinedLoader({"task": self.task.train_dataloader(), "archs": archs}, "min_size")

    def val_dataloader(self) -> CombinedLoader:
        if self.stream is None:
            self.setup("validate")
        archs = DataLoader(_Repeat(self.heldout_batch()), batch_size=None, collate_fn=_collate_one)
        return CombinedLoader({"task": self.task.val_dataloader(), "archs": archs}, "min_size")

    def state_dict(self) -> dict[str, Any]:
        return self.task.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task.load_state_dict(state)


def read_archs(path: str | Path) -> tuple[list[ModelSpec], list[ModelSpec], list[str]]:
    """``(train_specs, heldout_specs, heldout_kinds)`` from an ``archs.json``.

    Raises:
        DataFormatError: the file is not one :meth:`ArchitectureDataModule.to_json` wrote.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        specs = [ModelSpec.from_dict(d) for d in doc["specs"]]
        train = [specs[i] for i in doc["train"]]
        heldout = [specs[h["spec"]] for h in doc["heldout"]]
        kinds = [str(h["kind"]) for h in doc["heldout"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise DataFormatError(f"{path}: not a valid architectures file ({type(e).__name__}: {e})") \
            from None
    return train, heldout, kinds
