"""The training's batches in a worker process: the thread's batches to the bit, errors raised here, no worker left."""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _learning_fakes import FakeAugmenter, fake_source  # noqa: E402
from qdots_bluesky.sim.learning.batch_stream import batch_stream, can_fork  # noqa: E402
from qdots_bluesky.sim.learning.sources import BatchProducer  # noqa: E402

pytestmark = pytest.mark.skipif(not can_fork(), reason="worker processes are forked; this platform cannot fork")


def test_process_batches_are_the_threads_batches():
    seeds = [[1, 2], [1, 3]]  # two epochs
    streamed = list(batch_stream(fake_source(), batch_size=5, n_batches=3, seeds=seeds))
    threaded = [b for seed in seeds for b in BatchProducer(fake_source(), batch_size=5, n_batches=3, seed=seed)]
    assert len(streamed) == len(threaded) == 6
    for (t, x, has_nc), (t2, x2, has_nc2) in zip(streamed, threaded):
        assert np.array_equal(x, x2) and np.array_equal(has_nc, has_nc2)
        assert t.keys() == t2.keys() and all(np.array_equal(t[k], t2[k]) for k in t)
    assert not np.array_equal(streamed[0][1], streamed[3][1])  # each epoch its own seed


def test_the_worker_leaves_torchs_random_state_alone():
    # the thread draws nothing from torch's global generator: nor may the worker's start (else dropout or a later
    # network's initial weights would differ between the two ways)
    before = torch.get_rng_state()
    stream = batch_stream(fake_source(), batch_size=4, n_batches=2, seeds=[0])
    list(stream)
    stream.close()
    assert torch.equal(torch.get_rng_state(), before)


def test_worker_errors_are_raised_here():
    stream = batch_stream(fake_source(augmenter=FakeAugmenter(fail=True)), batch_size=4, n_batches=2, seeds=[0])
    with pytest.raises(RuntimeError, match="augmentation failed"):
        list(stream)
    stream.close()
    stream.close()  # again: nothing left to stop
    assert multiprocessing.active_children() == []


def test_a_stream_closed_early_leaves_no_worker():
    stream = batch_stream(fake_source(), batch_size=4, n_batches=1000, seeds=[0, 1])
    next(stream)
    assert multiprocessing.active_children()  # the worker runs ahead
    stream.close()  # training ended early: the worker is stopped and joined
    assert multiprocessing.active_children() == []


def _report_can_fork(queue):
    queue.put(can_fork())


def test_no_fork_from_a_daemonic_process_or_another_thread():
    import threading

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    daemon = ctx.Process(target=_report_can_fork, args=(queue,), daemon=True)
    daemon.start()
    assert queue.get(timeout=60) is False  # a daemonic process may not have children
    daemon.join()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(can_fork()))
    thread.start()
    thread.join()
    assert seen == [False]  # PyTorch watches its workers from the main thread only
