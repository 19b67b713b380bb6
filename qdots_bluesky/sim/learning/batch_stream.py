"""The training's batches, augmented in a worker process: every epoch's :func:`~.sources.epoch_batches` in turn.

A worker *thread* (:class:`~.sources.BatchProducer`) shares the interpreter's lock with the network's training loop:
the augmentation's many small NumPy calls and the network's many small torch calls wait for each other. In a worker
process, started once per fit by PyTorch's ``DataLoader`` (forked, as the DataLoader's workers are on Linux by
default: a spawned interpreter would import the caller's main script again, which an unguarded script turns into a
second training), each has a core of its own. The batches are the same as the thread's, to the bit: the same
source, seeds and code, only elsewhere. Where the platform cannot fork (Windows), :func:`can_fork` is False and the
training uses the thread.
"""
from __future__ import annotations

import multiprocessing
from typing import Iterator, Sequence

from torch.utils.data import DataLoader, IterableDataset

from .sources import Batch, Source, epoch_batches

#: Batches the worker prepares ahead of the network (each 256 x 5004 float32 patterns, ~5 MB, in the default recipe).
PREFETCH_BATCHES = 4


class EpochBatches(IterableDataset):
    """The batches of epochs ``seeds`` (one generator seed per epoch), ``n_batches`` of ``batch_size`` rows each."""

    def __init__(self, source: Source, batch_size: int, n_batches: int, seeds: Sequence) -> None:
        super().__init__()
        self.source, self.batch_size, self.n_batches, self.seeds = source, int(batch_size), int(n_batches), list(seeds)

    def __iter__(self) -> Iterator[Batch]:
        for seed in self.seeds:
            yield from epoch_batches(self.source, self.batch_size, self.n_batches, seed)


def _as_is(batch: Batch) -> Batch:
    """The worker's batch unchanged (NumPy arrays; the training loop makes its tensors)."""
    return batch


def can_fork() -> bool:
    """Whether this platform starts worker processes by forking."""
    return "fork" in multiprocessing.get_all_start_methods()


class BatchStream:
    """Iterator over the batches a worker process augments; :meth:`close` stops the worker (also on an error or early
    stopping, where a traceback may keep the iterator alive) and may be called more than once."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        self._batches = batches

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        return next(self._batches)

    def close(self) -> None:
        # the DataLoader iterator's own shutdown (what its __del__ calls): workers told to stop, joined, else terminated
        shutdown = getattr(self._batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def batch_stream(source: Source, batch_size: int, n_batches: int, seeds: Sequence) -> BatchStream:
    """The batches of the epochs ``seeds`` in turn, augmented in one forked worker process; worker errors are raised
    here with the worker's traceback. ``close()`` it when done, or early (early stopping, an error)."""
    loader = DataLoader(EpochBatches(source, batch_size, n_batches, seeds), batch_size=None, num_workers=1,
                        collate_fn=_as_is, multiprocessing_context="fork", prefetch_factor=PREFETCH_BATCHES,
                        persistent_workers=False)
    return BatchStream(iter(loader))
