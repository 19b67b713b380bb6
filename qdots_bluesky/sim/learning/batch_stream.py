"""The training's batches, augmented in a worker process: every epoch's :func:`~.sources.epoch_batches` in turn.

A worker *thread* (:class:`~.sources.BatchProducer`) shares the interpreter's lock with the network's training loop:
the augmentation's many small NumPy calls and the network's many small torch calls wait for each other. In a worker
process, started once per fit by PyTorch's ``DataLoader``, each has a core of its own. The worker is forked (a
spawned interpreter would import the caller's main script again, which an unguarded script turns into a second
training); the package's LRU caches get fresh locks in it (:mod:`qdots_bluesky.lru`). The batches are the same as the
thread's, to the bit: the same source, seeds and code, only elsewhere; torch's global random state is left alone.
Where forking is not the platform's way (macOS, Windows), the training runs outside the main thread or the caller
is itself a daemonic worker process, :func:`can_fork` is False and the training uses the thread.
"""
from __future__ import annotations

import itertools
import multiprocessing
import signal
import sys
import threading
from typing import Generator, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset

from .sources import Batch, BatchProducer, Source, epoch_batches

#: Batches the worker prepares ahead of the network (each 256 x 5004 float32 patterns, ~5 MB, in the default recipe).
PREFETCH_BATCHES = 4

#: Seconds the training waits for one batch from a worker that is alive but stuck before it gives up with an error
#: (a batch takes ~0.06 s, an epoch's populations ~1 s on 2 cores; a worker that dies is noticed at once).
BATCH_TIMEOUT_S = 600.0


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


def _ignore_interrupts(worker_id: int) -> None:
    """In the worker: Ctrl-C is the training loop's to handle (it closes the stream), not the worker's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def can_fork() -> bool:
    """Whether the batch worker can be forked here: on Linux (elsewhere forking is unsafe or absent), from the main
    thread (only there does PyTorch watch its workers for an early death, which elsewhere could leave the training
    waiting for ever on a half-sent batch) and not from a daemonic process (which may not have children)."""
    return (sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
            and not multiprocessing.current_process().daemon)


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
        # the DataLoader iterator's own shutdown (what its __del__ calls): workers told to stop, joined, else
        # terminated; then the iterator is let go, so that its __del__ would still do it
        shutdown = getattr(self._batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._batches = iter(())


def batch_stream(source: Source, batch_size: int, n_batches: int, seeds: Sequence) -> BatchStream:
    """The batches of the epochs ``seeds`` in turn, augmented in one forked worker process; worker errors are raised
    here with the worker's traceback. ``close()`` it when done, or early (early stopping, an error)."""
    loader = DataLoader(EpochBatches(source, batch_size, n_batches, seeds), batch_size=None, num_workers=1,
                        collate_fn=_as_is, multiprocessing_context="fork", prefetch_factor=PREFETCH_BATCHES,
                        persistent_workers=False, timeout=BATCH_TIMEOUT_S, worker_init_fn=_ignore_interrupts,
                        generator=torch.Generator())  # its base seed from its own generator, not torch's global one
    return BatchStream(iter(loader))


def epoch_stream(source: Source, batch_size: int, n_batches: int, seeds: Sequence,
                 worker: str = "process") -> Generator[Iterator[Batch], None, None]:
    """One iterator of ``n_batches`` batches per epoch of ``seeds``, augmented while the network trains: in a worker
    process (``worker`` "process" where the platform forks, :func:`batch_stream`) or thread ("thread", a
    :class:`~.sources.BatchProducer` per epoch, the next started once an epoch's batches are taken). ``close()`` it
    to stop the worker. Each epoch's batches must be taken in full before the next epoch's (as :func:`~.fitting.fit`
    does): in the worker process the epochs follow each other in one stream."""
    if worker == "process" and can_fork():
        batches = batch_stream(source, batch_size, n_batches, seeds)
        try:
            for _ in seeds:
                yield itertools.islice(batches, n_batches)
        finally:
            batches.close()
        return
    started: list[BatchProducer] = [BatchProducer(source, batch_size, n_batches, seeds[0])]

    def epoch(k: int) -> Iterator[Batch]:
        yield from started[k]
        if k + 1 < len(seeds):  # the next epoch's patterns are made while this one is validated
            started.append(BatchProducer(source, batch_size, n_batches, seeds[k + 1]))

    try:
        for k in range(len(seeds)):
            yield epoch(k)
    finally:
        started[-1].close()  # a started epoch that will not be trained
