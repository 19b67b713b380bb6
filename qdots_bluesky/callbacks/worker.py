"""The sizing worker of :class:`~.live_sizer.LiveSizer`: one thread that sizes queued events in fixed chunks.

Events (:class:`Job`) go to a bounded queue: the put blocks when the worker is ``queue_size``
items behind, so nothing is ever dropped. The worker takes whatever is queued (up to
``max_batch``), checks each pattern (:func:`~.discovery.extract_pattern`), groups the patterns that
share an x axis and sizes them with ``Predictor.predict_batch`` in chunks of exactly the run's
``chunk_size`` patterns (short chunks are padded by repeating the last pattern), which makes
every number independent of how events happened to be batched. Each job's result (a
``SizeEstimate`` or an error text) goes to ``finish(job, result)``, in queue order.

With a ``refiner`` (:class:`~.refining.LiveRefiner`) the newest pattern of each run in a batch that the network
could read is also refined by DSE (seeded by its estimate) before the batch is finished; the refinement's
``to_dict()`` goes to ``Job.refinement`` (None for the others: see :func:`~.refining.pick_newest`).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .discovery import PatternError, PatternSource, extract_pattern
from .refining import LiveRefiner, pick_newest

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One source event to size: ``run`` (has ``chunk_size``), where its pattern is, its data and identity;
    ``timestamp`` (s, epoch) of the pattern, ``t_received`` (s, perf_counter) when the sizer got it."""

    run: Any
    source: PatternSource
    data: Mapping[str, Any]
    seq_num: int
    uid: str
    timestamp: float
    t_received: float
    done: bool = False
    #: The DSE refinement's ``to_dict()`` where this pattern was refined (worker with a refiner), else None.
    refinement: dict | None = None


@dataclass(eq=False)
class _Flush:
    event: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Prepare:
    source: PatternSource
    chunk_size: int


_SHUTDOWN = object()


class SizingWorker:
    """The worker thread and its queue; ``finish(job, result)`` is called on the worker thread."""

    def __init__(self, predictor: Any, finish: Callable[[Job, Any], None], *, max_batch: int = 64,
                 queue_size: int = 1000, name: str = "qdots-live-sizer", refiner: LiveRefiner | None = None) -> None:
        self.predictor = predictor
        self.refiner = refiner
        self.finish = finish
        self.max_batch = int(max_batch)
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_size))
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Items waiting in the queue."""
        return self._queue.qsize()

    def submit(self, job: Job) -> None:
        """Queue one event (blocks while the queue is full)."""
        self._put(job)

    def prepare(self, source: PatternSource, chunk_size: int) -> None:
        """Check the x axis of ``source`` (and warm up) before its first event; a bad axis sets ``source.problem``."""
        self._put(_Prepare(source, chunk_size))

    def flush(self) -> threading.Event:
        """An event that is set once everything queued so far is finished."""
        item = _Flush()
        self._put(item)
        return item.event

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued work, then stop the thread (waiting at most ``timeout`` s)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_SHUTDOWN)
        self._thread.join(timeout)

    def _put(self, item: Any) -> None:
        if self._closed:
            raise RuntimeError("this LiveSizer is closed")
        self._queue.put(item)

    # ---------------------------------------------------------------- the thread
    def _work(self) -> None:
        pending: list[Any] = []
        while True:
            item = self._queue.get()
            pending.append(item)
            while len(pending) < self.max_batch:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            jobs: list[Job] = []
            for item in pending:
                if isinstance(item, Job):
                    jobs.append(item)
                    continue
                self._process_safely(jobs)
                jobs = []
                if item is _SHUTDOWN:
                    stop = True
                elif isinstance(item, _Flush):
                    item.event.set()
                elif isinstance(item, _Prepare):
                    self._prepare(item.source, item.chunk_size)
            self._process_safely(jobs)
            pending.clear()
            if stop:
                return

    def _prepare(self, source: PatternSource, chunk_size: int) -> None:
        try:
            self.predictor.predict_batch(source.x, np.ones((chunk_size, source.x.size)), x_unit=source.x_unit,
                                         wavelength=source.wavelength)
        except ValueError as exc:
            source.problem = f"the x axis '{source.x_key}' cannot be used: {exc}"
            logger.warning("stream '%s': %s; every event gets status 'error'", source.stream, source.problem)
        except Exception:  # pragma: no cover
            logger.exception("preparing the standardization of '%s' failed", source.x_key)
        if self.refiner is not None and source.problem is None:
            self.refiner.prepare(source.wavelength)

    def _process_safely(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        try:
            self._process(jobs)
        except Exception as exc:  # pragma: no cover - keep the worker alive, keep the stream complete
            logger.exception("LiveSizer worker failed on %d events", len(jobs))
            for job in jobs:
                if not job.done:
                    self.finish(job, f"internal error: {type(exc).__name__}: {exc}")

    def _process(self, jobs: list[Job]) -> None:
        results: dict[int, Any] = {}
        groups: list[tuple[Any, Job, np.ndarray, list[tuple[int, np.ndarray]]]] = []
        patterns: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i, job in enumerate(jobs):
            try:
                x, y = extract_pattern(job.source, job.data, job.seq_num)
            except PatternError as exc:
                results[i] = str(exc)
                continue
            patterns[i] = (x, y)
            key = (id(job.source), None if not job.source.x_in_event else x.tobytes())
            if groups and groups[-1][0] == key:
                groups[-1][3].append((i, y))
            else:
                groups.append((key, job, x, [(i, y)]))
        for _, first, x, members in groups:
            chunk_size = first.run.chunk_size
            for start in range(0, len(members), chunk_size):
                chunk = members[start:start + chunk_size]
                results.update(self._size_chunk(first.source, x, chunk, chunk_size))
        if self.refiner is not None:
            sized = [i in results and not isinstance(results[i], str) for i in range(len(jobs))]
            for i in sorted(pick_newest([job.run for job in jobs], sized)):
                job = jobs[i]
                try:
                    job.refinement = self.refiner.refine(*patterns[i], job.source.x_unit, job.source.wavelength,
                                                         results[i], label=f"event{job.seq_num:05d}_{job.uid[:8]}")
                except Exception:  # pragma: no cover - the refinement is optional; the estimate is still sent
                    logger.exception("refinement of source event %d failed", job.seq_num)
        for i, job in enumerate(jobs):
            self.finish(job, results.get(i, "internal error: no result"))

    def _size_chunk(self, source: PatternSource, x: np.ndarray, chunk: list[tuple[int, np.ndarray]],
                    chunk_size: int) -> dict[int, Any]:
        Y = np.stack([y for _, y in chunk])
        if Y.shape[0] < chunk_size:
            Y = np.concatenate([Y, np.repeat(Y[-1:], chunk_size - Y.shape[0], axis=0)])
        try:
            estimates = self.predictor.predict_batch(x, Y, x_unit=source.x_unit, wavelength=source.wavelength)
        except ValueError as exc:
            if len(chunk) > 1:  # isolate the bad pattern(s): each alone, padded (same numbers as in the chunk)
                out: dict[int, Any] = {}
                for member in chunk:
                    out.update(self._size_chunk(source, x, [member], chunk_size))
                return out
            return {chunk[0][0]: f"standardization failed: {exc}"}
        except Exception as exc:
            logger.exception("inference failed")
            return {i: f"inference failed: {type(exc).__name__}: {exc}" for i, _ in chunk}
        return {i: est for (i, _), est in zip(chunk, estimates)}
