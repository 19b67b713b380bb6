"""Writers of runs into Tiled: a TiledWriter (with a workaround where the installed one needs it),
optionally on its own thread.

:func:`make_writer` is what :meth:`~.tiled_store.TiledStore.writer` returns.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: The last bluesky-tiled-plugins release checked for the padding defect below (present there).
_PADDING_DEFECT_CHECKED = "2.0.12"


def tiled_writer_pads_numpy_arrays_wrongly(version: str | None = None) -> bool:
    """Whether the installed TiledWriter has the defect :class:`ArraySafeTiledWriter` works around:
    true up to the last release checked (:data:`_PADDING_DEFECT_CHECKED`); recheck on upgrade."""
    from packaging.version import Version

    return Version(version or _installed_tiled_plugins()) <= Version(_PADDING_DEFECT_CHECKED)


@functools.lru_cache(maxsize=1)
def _installed_tiled_plugins() -> str:
    from importlib.metadata import version

    return version("bluesky-tiled-plugins")


class ArraySafeTiledWriter:
    """``bluesky_tiled_plugins.TiledWriter`` that also stores events whose arrays changed length.

    Upstream defect (bluesky-tiled-plugins <= 2.0.12, ``_RunWriter`` writing internal array data):
    arrays of inconsistent length in one batch are padded with ``row + [nan] * k``, list
    concatenation, which for the NumPy arrays a RunEngine puts in events is an elementwise addition
    and fails. Here NumPy arrays in event data are handed over as lists (the documents themselves
    are not modified). ``writer`` is the TiledWriter.
    """

    def __init__(self, runs: Any, batch_size: int | None = None) -> None:
        from bluesky_tiled_plugins import TiledWriter

        self.writer = _tiled_writer(TiledWriter, runs, batch_size)

    def __call__(self, name: str, doc: dict) -> None:
        if name == "event" and any(isinstance(v, np.ndarray) for v in doc.get("data", {}).values()):
            doc = {**doc, "data": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in doc["data"].items()}}
        elif name == "event_page" and any(isinstance(x, np.ndarray) for v in doc.get("data", {}).values() for x in v):
            doc = {**doc, "data": {k: [x.tolist() if isinstance(x, np.ndarray) else x for x in v]
                                   for k, v in doc["data"].items()}}
        self.writer(name, doc)


_FLUSH = "qdots-flush"


class BufferedCallback:
    """A callback on its own thread: bluesky's ``BufferingWrapper`` plus :meth:`flush` and an error count.

    Callers only queue documents (in order; the queue blocks when full, nothing is dropped);
    ``BufferingWrapper`` drains the queue when shut down (:meth:`close`, or at interpreter exit).
    :meth:`flush` waits until everything queued so far was handled (e.g. before reading a run
    back). Exceptions of the callback are logged and counted (``errors``).
    """

    def __init__(self, callback: Any, queue_size: int = 100_000) -> None:
        from bluesky.callbacks.buffer import BufferingWrapper

        self.callback = callback
        self.errors = 0
        self._closed = False
        self._buffer = BufferingWrapper(self._deliver, queue_size=queue_size)

    def __call__(self, name: str, doc: dict) -> None:
        self._buffer(name, doc)

    def _deliver(self, name: str, doc: Any) -> None:
        if name == _FLUSH:
            doc.set()
            return
        try:
            self.callback(name, doc)
        except Exception:
            self.errors += 1
            logger.exception("%r failed on a %r document", self.callback, name)

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until the documents queued so far are handled (``timeout`` in s); False on timeout."""
        if self._closed:
            return True
        done = threading.Event()
        self._buffer(_FLUSH, done)
        return done.wait(timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        """Flush, then stop the thread (further documents raise RuntimeError)."""
        if self._closed:
            return
        flushed = self.flush(timeout)
        self._closed = True
        self._buffer.shutdown(wait=flushed)


def make_writer(runs: Any, batch_size: int | None = None, threaded: bool = False):
    """A TiledWriter writing into ``runs`` (:class:`ArraySafeTiledWriter` where the installed
    bluesky-tiled-plugins needs it); ``threaded``: wrapped in a :class:`BufferedCallback` (call its
    ``flush()`` before reading a run back)."""
    if tiled_writer_pads_numpy_arrays_wrongly():
        writer: Any = ArraySafeTiledWriter(runs, batch_size=batch_size)
    else:
        from bluesky_tiled_plugins import TiledWriter

        writer = _tiled_writer(TiledWriter, runs, batch_size)
    return BufferedCallback(writer) if threaded else writer


def _tiled_writer(cls: Any, runs: Any, batch_size: int | None) -> Any:
    """A TiledWriter that stores every event array as an array node: short ones (a task's 3 or 6 class
    probabilities) would otherwise go into the event table, which reads them back as their text."""
    options: dict[str, Any] = {"max_array_size": 0}
    if batch_size is not None:
        options["batch_size"] = int(batch_size)
    return cls(runs, **options)
