"""One DataLoader convention for the task data: workers, and a bound on how long a batch may take.

With ``data.num_workers > 0`` every batch must arrive within ``data.timeout_s`` seconds; a stalled
worker (stuck reading a network file system, deadlocked, or unable to hand its batch over) then
ends the run with one :class:`StalledLoaderError` naming the dataset, instead of a silent wait.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from logah.config.data import DataConfig
from logah.data.errors import DataError
from logah.utils.tmp import ensure_socket_safe_tempdir

_TIMED_OUT = "DataLoader timed out"  # torch's message when no batch arrives within `timeout`


class StalledLoaderError(DataError):
    """No batch arrived from the DataLoader workers within ``data.timeout_s``."""


class _BoundedWorkersIter(_MultiProcessingDataLoaderIter):
    """torch's multi-worker iterator, with its timeout turned into one line naming the data."""

    def __init__(self, loader: NamedDataLoader) -> None:
        self._source = loader.source
        super().__init__(loader)

    def _next_data(self) -> Any:
        try:
            return super()._next_data()
        except RuntimeError as e:
            if not str(e).startswith(_TIMED_OUT):
                raise
            raise StalledLoaderError(
                f"{self._source}: {self._num_workers} DataLoader workers delivered no batch within "
                f"{self._timeout:g} s (data.timeout_s); rerun with data.num_workers=0 to see what "
                "a worker is stuck on, or raise data.timeout_s for very slow storage"
            ) from None


class NamedDataLoader(DataLoader):
    """A DataLoader that knows what it loads (``source``, e.g. ``data/brown (val)``), so a stall
    is reported against the dataset."""

    def __init__(self, *args: Any, source: str = "data", **kwargs: Any) -> None:
        self.source = source
        super().__init__(*args, **kwargs)

    def _get_iterator(self) -> Any:
        if self.num_workers == 0:
            return super()._get_iterator()
        self.check_worker_number_rationality()
        return _BoundedWorkersIter(self)


def task_loader(dataset: Dataset, cfg: DataConfig, source: str, **kwargs: Any) -> NamedDataLoader:
    """The DataLoader of one split: ``data.batch_size``, ``data.num_workers`` (persistent, bounded
    by ``data.timeout_s``), pinned memory on CUDA machines; ``kwargs`` add sampler/shuffle/..."""
    workers = cfg.num_workers
    if workers > 0:
        ensure_socket_safe_tempdir()
    return NamedDataLoader(
        dataset, source=source, batch_size=cfg.batch_size, num_workers=workers,
        persistent_workers=workers > 0, timeout=cfg.timeout_s if workers > 0 else 0,
        pin_memory=torch.cuda.is_available(), **kwargs,
    )
