"""``LiveSizer``: size quantum dots live from the 1D patterns of a Bluesky run, in the same run.

The sizer is a document router placed between the RunEngine (or a 0MQ ``RemoteDispatcher``, or
the documents of a stored run) and downstream consumers (``TiledWriter``, ``LiveTable``, a 0MQ
``Publisher``)::

    sizer = LiveSizer(model="model.safetensors")      # or LiveSizer(predictor)
    sizer.subscribe(TiledWriter(client))
    RE.subscribe(sizer)

Documents
---------
Every incoming document is forwarded unchanged, except the stop document, whose
``num_events`` also counts the new stream. For the stream that carries the patterns (the
*source* stream, usually ``primary``) the sizer adds a stream named ``qdots_size`` (option
``stream_name``) to the same run: one descriptor (``run_start`` = the scan's start uid),
emitted right after the source descriptor, and exactly one event per source event, in order,
with these data keys (see :data:`OUTPUT_KEYS` for dtype, shape and units):

- ``size_nm``, ``size_std_nm``, ``size_class_nm``, ``size_regression_nm``: number-weighted mean
  diameter (nm), its uncertainty, the most probable class, the regression head's estimate;
- ``size_volume_nm``, ``size_volume_std_nm``: the volume-weighted mean diameter and its uncertainty;
  ``dispersion_std``, ``strain``, ``strain_std``: the dispersion's uncertainty, the fractional lattice
  change and its uncertainty (NaN for models without a continuous head);
- ``dispersion`` (relative standard deviation of the log-normal), ``dispersion_confidence``,
  ``confidence`` (calibrated probability of the most probable size class), ``ood_distance``,
  ``nanocrystal_probability`` (probability that the pattern holds nanocrystal scattering at all;
  NaN for models without a presence head);
- ``probabilities``: an array over the size classes; the class diameters are in the data key's
  ``size_classes_nm`` field and in the descriptor configuration ``qdots_sizer``;
- ``status``: ``"ok"``, ``"flagged"`` (the estimate carries flags, see
  :data:`qdots_bluesky.predictor.FLAGS`) or ``"error"`` (no estimate; the numbers are NaN);
  ``flags``: flag names joined by commas; ``message``: the error text or the flags with reasons;
- ``source_seq_num``, ``source_uid``: the source event; ``latency_ms``: from the moment the
  sizer received the source event to the moment its estimate was ready.

The descriptor configuration object ``qdots_sizer`` records the model (path, sha256, creation,
classes, grid), the device, the chunk size and where the pattern was found.

Finding the pattern
-------------------
By option (``pattern_key``, ``x_key``, ``x_unit``, ``wavelength``), else from the start document
(``qdots_pattern_key``, ``qdots_x_key``, ``qdots_x_unit`` or ``x_unit``, ``wavelength``), else from the
descriptor: a 1D array data key with >= 50 points (preferring names with "intensity", "waxs",
"pattern"); its x axis from the device configuration (``<name>_tth`` in degrees or ``<name>_q``
in 1/A, same length), the unit from ``<name>_x_unit`` or the suffix, the wavelength (A) from a
configuration key ``<name>_wavelength`` or the start document's ``wavelength``. An x axis may
also be a data key of the event itself (``x_key`` naming a data key). A run without a usable
pattern gets no ``qdots_size`` stream and a logged warning; its documents still flow downstream.

Inference
---------
The predictor is loaded and warmed up once. Events (and event pages, unpacked) go to a
bounded queue served by one worker thread, so the RunEngine only pays for forwarding and a
queue put (the put blocks only when the worker is ``queue_size`` events behind: nothing is ever
dropped). The worker takes whatever is queued (up to ``max_batch``), standardizes and sizes it
in chunks of exactly ``chunk_size`` patterns (short chunks are padded by repeating the last
pattern), which makes every number independent of how events happened to be batched: a replay
of stored documents with the same model, device and chunk size gives bit-identical results.
Before the stop document is forwarded every pending estimate is emitted (waiting at most
``stop_timeout`` s; estimates still missing then are emitted as errors).

Errors never reach the RunEngine: a bad event (missing key, not a 1D numeric array, wrong length,
NaN/inf, all zeros, a standardization error) gives an event with status ``"error"`` and a message;
an exception in a downstream callback is logged and counted (``stats["downstream_errors"]``).

Threads: with ``emit_from="worker"`` (default) the new events are sent downstream from the
worker thread, serialized with the forwarded documents by a lock (fine for TiledWriter, LiveTable,
Publisher). With ``emit_from="caller"`` they are held until the next incoming document (or the
stop) and sent from the caller's thread, for consumers that must stay on one thread (Matplotlib).
"""
from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

logger = logging.getLogger(__name__)

#: Name of the stream the sizer adds to each run.
STREAM_NAME = "qdots_size"
#: Name of the sizer's object in the descriptor (configuration, object_keys, hints).
SIZER_OBJECT = "qdots_sizer"
STATUS_OK, STATUS_FLAGGED, STATUS_ERROR = "ok", "flagged", "error"
#: The fewest points a data key must have to be taken for a pattern.
MIN_PATTERN_POINTS = 50
#: Start-document keys the sizer reads.
START_PATTERN_KEY, START_X_KEY, START_X_UNIT, START_WAVELENGTH = (
    "qdots_pattern_key", "qdots_x_key", "qdots_x_unit", "wavelength")
#: Also read for the x unit (written by :func:`qdots_bluesky.plans.insitu_synthesis`).
START_X_UNIT_ALT = "x_unit"

_TTH_UNITS = {"tth", "2theta", "two_theta", "deg", "degree", "degrees", "2theta_deg", "tth_deg"}
_Q_UNITS = {"q", "1/a", "a^-1", "a-1", "1/angstrom", "angstrom^-1", "inverse angstrom", "q_inv_angstrom", "1/å", "å^-1"}
_TTH_SUFFIXES = ("_tth", "_2theta", "_two_theta")
_Q_SUFFIXES = ("_q",)
_PREFERRED_WORDS = ("intensity", "waxs", "pattern", "xrd", "saxs", "counts")


def _number_key(units: str | None, description: str) -> dict[str, Any]:
    return {"dtype": "number", "shape": [], "dtype_numpy": "<f8", "units": units, "source": f"{SIZER_OBJECT}: {description}"}


def _output_keys(classes: list[float]) -> dict[str, dict[str, Any]]:
    """Descriptor data keys of the output stream (object_name is added by the sizer)."""
    n = len(classes)
    return {
        "size_nm": _number_key("nm", "number-weighted mean diameter (continuous estimate; class-only models: "
                                     "probability-weighted over the size classes)"),
        "size_std_nm": _number_key("nm", "uncertainty (1 sigma) of size_nm"),
        "size_volume_nm": _number_key("nm", "volume-weighted mean diameter (NaN for class-only models)"),
        "size_volume_std_nm": _number_key("nm", "uncertainty (1 sigma) of size_volume_nm"),
        "dispersion_std": _number_key("dimensionless", "uncertainty (1 sigma) of the continuous dispersion"),
        "strain": _number_key("dimensionless", "fractional change of the lattice parameter from bulk"),
        "strain_std": _number_key("dimensionless", "uncertainty (1 sigma) of strain"),
        "size_class_nm": _number_key("nm", "most probable size class (mean diameter)"),
        "size_regression_nm": _number_key("nm", "regression-head estimate of the mean diameter"),
        "dispersion": _number_key("dimensionless", "relative standard deviation of the log-normal (continuous "
                                                   "estimate; class-only models: the most probable class)"),
        "dispersion_confidence": _number_key("dimensionless", "calibrated probability of the dispersion class"),
        "confidence": _number_key("dimensionless", "calibrated probability of the most probable size class"),
        "ood_distance": _number_key("dimensionless", "Mahalanobis distance of the network features to training"),
        "nanocrystal_probability": _number_key("dimensionless", "probability that the pattern holds nanocrystal "
                                               "scattering (not pure solvent or background)"),
        "probabilities": {"dtype": "array", "shape": [n], "dtype_numpy": "<f8", "units": "dimensionless",
                          "dims": ["size_class"], "size_classes_nm": list(classes),
                          "source": f"{SIZER_OBJECT}: calibrated probability of each size class (size_classes_nm)"},
        "status": {"dtype": "string", "shape": [], "dtype_numpy": "<U7", "units": None,
                   "choices": [STATUS_OK, STATUS_FLAGGED, STATUS_ERROR], "source": f"{SIZER_OBJECT}: ok/flagged/error"},
        "flags": {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None,
                  "source": f"{SIZER_OBJECT}: flag names, comma separated"},
        "message": {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None,
                    "source": f"{SIZER_OBJECT}: error text, or the flags with their reasons"},
        "source_seq_num": {"dtype": "integer", "shape": [], "dtype_numpy": "<i8", "units": None,
                           "source": f"{SIZER_OBJECT}: seq_num of the source event"},
        "source_uid": {"dtype": "string", "shape": [], "dtype_numpy": "<U0", "units": None,
                       "source": f"{SIZER_OBJECT}: uid of the source event"},
        "latency_ms": _number_key("ms", "time from receiving the source event to the estimate"),
    }


#: Data keys of the ``qdots_size`` stream (with 17 size classes as an example of the array shape).
OUTPUT_KEYS = _output_keys([2.0 + 0.5 * i for i in range(17)])
_FLOAT_KEYS = ("size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "size_class_nm", "size_regression_nm",
               "dispersion", "dispersion_std", "dispersion_confidence", "strain", "strain_std", "confidence",
               "ood_distance", "nanocrystal_probability")


class PatternError(ValueError):
    """An event whose pattern cannot be sized; the message goes to the output event."""


@dataclass
class PatternSource:
    """Where a descriptor's pattern and x axis are. ``problem``: why no event of it can be sized."""

    stream: str
    pattern_key: str
    x: np.ndarray | None = None
    x_key: str | None = None
    x_in_event: bool = False
    x_unit: str | None = None
    wavelength: float | None = None
    problem: str | None = None

    def describe(self) -> str:
        unit = {"tth": "2theta (deg)", "q": "Q (1/A)"}.get(self.x_unit or "", "?")
        wl = f", wavelength {self.wavelength:g} A" if self.wavelength else ""
        where = "event data" if self.x_in_event else "configuration"
        return f"pattern '{self.pattern_key}' in stream '{self.stream}', x '{self.x_key}' ({unit}, from {where}{wl})"


@dataclass(eq=False)
class _Job:
    run: "_RunState"
    source: PatternSource
    data: Mapping[str, Any]
    seq_num: int
    uid: str
    timestamp: float
    t_received: float
    done: bool = False


@dataclass(eq=False)
class _Flush:
    run: "_RunState"
    event: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Prepare:
    source: PatternSource


_SHUTDOWN = object()


class _RunState:
    def __init__(self, start: dict) -> None:
        self.start = start
        self.uid = start["uid"]
        self.sources: dict[str, PatternSource] = {}  # source descriptor uid -> source
        self.source_stream: str | None = None
        self.dropped: set[str] = set()  # descriptor uids of an earlier sizer stream, not forwarded
        self.descriptor: dict | None = None
        self.compose_event: Callable | None = None
        self.streams: dict[str, Any] = {}
        self.counters: dict[str, int] = {}
        self.jobs: deque[_Job] = deque()
        self.ready: deque[tuple[str, dict]] = deque()  # composed, not yet sent (emit_from="caller")
        self.lock = threading.RLock()
        self.abandoned = False
        self.submitted = 0
        self.emitted = 0
        self.desc_names: dict[str, str] = {}  # descriptor uid -> stream name
        self.warned = False


class LiveSizer:
    """Add a ``qdots_size`` stream with live size estimates to each run; see the module docstring.

    Parameters
    ----------
    predictor : a :class:`qdots_bluesky.predictor.Predictor`, or None to load ``model``.
    model : path of a model bundle (None: the shipped model); ignored when ``predictor`` is given.
    device : "auto"/None (cuda if available, else cpu), "cpu", "cuda", "cuda:N", "numpy".
    num_threads : PyTorch CPU threads for a loaded model (process-wide; None: leave as is).
    pattern_key, x_key, x_unit ("tth" or "q"), wavelength (A): where the pattern is (None: detect).
    source_stream : only size this stream (None: the first stream with a pattern).
    stream_name : name of the added stream (default ``qdots_size``).
    chunk_size : patterns per inference call (fixed; short chunks are padded). Results depend on
        the model, device and chunk_size only, never on the timing of events.
    max_batch : the most queued events the worker takes at once.
    queue_size : bound of the event queue (the caller waits when it is full; nothing is dropped).
    emit_from : "worker" or "caller" (see the module docstring).
    stop_timeout : seconds the stop document waits for pending estimates.
    validate : validate the new documents against the event-model schemas.
    callbacks : downstream callbacks, as with :meth:`subscribe`.
    """

    def __init__(self, predictor: Any = None, *, model: str | Path | None = None, device: Any = None,
                 num_threads: int | None = None, pattern_key: str | None = None, x_key: str | None = None,
                 x_unit: str | None = None, wavelength: float | None = None, source_stream: str | None = None,
                 stream_name: str = STREAM_NAME, chunk_size: int = 8, max_batch: int = 64,
                 queue_size: int = 1000, emit_from: str = "worker", stop_timeout: float = 120.0,
                 validate: bool = True, callbacks: Iterable[Callable] = ()) -> None:
        if predictor is None:
            from ..predictor import Predictor

            options = {} if num_threads is None else {"num_threads": num_threads}
            predictor = Predictor.from_bundle(model, device=device, **options)
        self.predictor = predictor
        if x_unit is not None and _unit(x_unit) is None:
            raise ValueError(f"x_unit {x_unit!r} is not known; accepted: 'tth' (2theta, degrees) or 'q' (1/A)")
        if emit_from not in ("worker", "caller"):
            raise ValueError(f"emit_from={emit_from!r}; accepted: 'worker' or 'caller'")
        for name, value, low in (("chunk_size", chunk_size, 1), ("max_batch", max_batch, 1), ("queue_size", queue_size, 1)):
            if int(value) != value or value < low:
                raise ValueError(f"{name}={value!r}; accepted: an integer >= {low}")
        if wavelength is not None:
            from ..units import check_wavelength

            check_wavelength(float(wavelength))
        self.pattern_key, self.x_key = pattern_key, x_key
        self.x_unit = _unit(x_unit) if x_unit is not None else None
        self.wavelength = None if wavelength is None else float(wavelength)
        self.source_stream = source_stream
        self.stream_name = stream_name
        self.chunk_size, self.max_batch = int(chunk_size), int(max_batch)
        self.emit_from = emit_from
        self.stop_timeout = float(stop_timeout)
        self.validate = bool(validate)
        self.classes = [float(c) for c in np.asarray(predictor.size_classes_nm)]
        self._callbacks: dict[int, Callable] = {}
        self._tokens = itertools.count()
        for cb in callbacks:
            self.subscribe(cb)
        self._emit_lock = threading.RLock()
        self._local = threading.local()
        self._runs: dict[str, _RunState] = {}
        self._desc_run: dict[str, _RunState] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_size))
        self._stats_lock = threading.Lock()
        self._status_counts: Counter = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=100_000)
        self.downstream_errors = 0
        self._model_info = self._describe_model()
        self._worker = threading.Thread(target=self._work, name="qdots-live-sizer", daemon=True)
        self._closed = False
        self._worker.start()

    # ---------------------------------------------------------------- public API
    def subscribe(self, callback: Callable[[str, dict], Any]) -> int:
        """Send every document (forwarded and new) to ``callback(name, doc)``; returns a token."""
        token = next(self._tokens)
        self._callbacks[token] = callback
        return token

    def unsubscribe(self, token: int) -> None:
        """Stop sending documents to the callback of ``token``."""
        self._callbacks.pop(token, None)

    @property
    def stats(self) -> dict[str, Any]:
        """Counts of output events by status, pending events, downstream errors."""
        with self._stats_lock:
            counts = dict(self._status_counts)
        return {"status": counts, "emitted": sum(counts.values()), "queued": self._queue.qsize(),
                "downstream_errors": self.downstream_errors}

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker thread (pending work is finished first)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_SHUTDOWN)
        self._worker.join(timeout)

    def __enter__(self) -> "LiveSizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveSizer({self.predictor!r}, stream_name={self.stream_name!r}, chunk_size={self.chunk_size})"

    def __call__(self, name: str, doc: dict) -> None:
        """Process one document (never raises; the document is forwarded exactly once)."""
        self._local.forwarded = False
        try:
            handler = getattr(self, f"_on_{name}", None)
            if handler is None:
                self._flush_ready_for(doc)
                self._pass(name, doc)
            else:
                handler(doc)
        except Exception:  # never into the RunEngine
            logger.exception("LiveSizer failed on a %r document; it is forwarded unchanged", name)
            if not self._local.forwarded:
                try:
                    self._forward(name, doc)
                except Exception:  # pragma: no cover
                    pass

    def _pass(self, name: str, doc: dict) -> None:
        """Forward an incoming document (marks it forwarded for the error path of __call__)."""
        self._local.forwarded = True
        self._forward(name, doc)

    # ---------------------------------------------------------------- documents
    def _on_start(self, doc: dict) -> None:
        self._runs[doc["uid"]] = _RunState(doc)
        self._pass("start", doc)

    def _on_descriptor(self, doc: dict) -> None:
        run = self._runs.get(doc.get("run_start"))
        if run is None:
            self._pass("descriptor", doc)
            return
        self._flush_ready(run)
        self._desc_run[doc["uid"]] = run
        if doc.get("name") == self.stream_name:
            # An earlier sizer's stream (e.g. a replay of a stored run): replaced by ours.
            run.dropped.add(doc["uid"])
            logger.info("run %s: the stored stream '%s' is replaced by the new estimates", run.uid[:8], self.stream_name)
            return
        self._pass("descriptor", doc)
        run.desc_names[doc["uid"]] = doc.get("name", "?")
        if run.source_stream is not None and doc.get("name") != run.source_stream:
            return
        source = self._find_source(run.start, doc)
        if source is None:
            if run.source_stream is not None:  # a new descriptor of the source stream lost the pattern
                source = PatternSource(stream=run.source_stream, pattern_key=self._pattern_key(run.start) or "?",
                                       problem=f"descriptor {doc['uid'][:8]} of stream '{run.source_stream}' has no "
                                               "usable pattern data key")
            else:
                return
        run.sources[doc["uid"]] = source
        if run.source_stream is None:
            run.source_stream = source.stream
            logger.info("run %s: sizing %s", run.uid[:8], source.describe())
            if source.problem:
                logger.warning("run %s: %s; every event gets status 'error'", run.uid[:8], source.problem)
            self._emit_descriptor(run, source)
        if source.problem is None and not source.x_in_event:
            self._put(_Prepare(source))

    def _on_event(self, doc: dict) -> None:
        run = self._desc_run.get(doc.get("descriptor"))
        if run is not None:
            self._flush_ready(run)
            if doc["descriptor"] in run.dropped:
                return
        self._pass("event", doc)
        if run is not None:
            self._submit(run, doc)

    def _on_event_page(self, doc: dict) -> None:
        run = self._desc_run.get(doc.get("descriptor"))
        if run is not None:
            self._flush_ready(run)
            if doc["descriptor"] in run.dropped:
                return
        self._pass("event_page", doc)
        if run is not None and doc["descriptor"] in run.sources:
            from event_model import unpack_event_page

            for event in unpack_event_page(doc):
                self._submit(run, event)

    def _on_stop(self, doc: dict) -> None:
        run = self._runs.pop(doc.get("run_start"), None)
        if run is None:
            self._pass("stop", doc)
            return
        for uid in [u for u, r in self._desc_run.items() if r is run]:
            del self._desc_run[uid]
        doc = dict(doc)
        num_events = dict(doc.get("num_events") or {})
        if run.dropped:
            num_events.pop(self.stream_name, None)
        if run.descriptor is not None:
            flush = _Flush(run)
            self._put(flush)
            if not flush.event.wait(self.stop_timeout):
                self._abandon(run)
            self._flush_ready(run)
            num_events[self.stream_name] = run.emitted
        else:
            self._warn_no_pattern(run)
        doc["num_events"] = num_events
        self._pass("stop", doc)

    # ---------------------------------------------------------------- helpers (caller thread)
    def _forward(self, name: str, doc: dict) -> None:
        with self._emit_lock:
            for cb in list(self._callbacks.values()):
                try:
                    cb(name, doc)
                except Exception:
                    self.downstream_errors += 1
                    logger.exception("downstream callback %r failed on a %r document", cb, name)

    def _flush_ready_for(self, doc: dict) -> None:
        run = self._runs.get(doc.get("run_start", "")) if isinstance(doc, dict) else None
        if run is not None:
            self._flush_ready(run)

    def _flush_ready(self, run: _RunState) -> None:
        if self.emit_from != "caller" or not run.ready:
            return
        with run.lock:
            items = list(run.ready)
            run.ready.clear()
        for name, doc in items:
            self._forward(name, doc)

    def _put(self, item: Any) -> None:
        if self._closed:
            raise RuntimeError("this LiveSizer is closed")
        self._queue.put(item)

    def _submit(self, run: _RunState, event: dict) -> None:
        source = run.sources.get(event.get("descriptor"))
        if source is None:
            stream = run.desc_names.get(event.get("descriptor"))
            if not run.warned and run.source_stream is None and stream == (self.source_stream or "primary"):
                self._warn_no_pattern(run)
            return
        ts = event.get("timestamps", {}).get(source.pattern_key, event.get("time", time.time()))
        job = _Job(run, source, event.get("data", {}), int(event.get("seq_num", 0)), str(event.get("uid", "")),
                   float(ts if ts is not None else event.get("time", 0.0)), time.perf_counter())
        with run.lock:
            run.jobs.append(job)
            run.submitted += 1
        self._put(job)

    def _warn_no_pattern(self, run: _RunState) -> None:
        if run.warned:
            return
        run.warned = True
        key = self._pattern_key(run.start)
        if key:
            why = f"no stream has the pattern data key '{key}'"
        else:
            why = (f"no stream has a 1D array data key with >= {MIN_PATTERN_POINTS} points "
                   "(set pattern_key=, or 'qdots_pattern_key' in the start metadata)")
        if self.source_stream:
            why += f" in stream '{self.source_stream}'"
        logger.warning("run %s (plan %s): %s; no '%s' stream is added, the raw data are forwarded unchanged",
                       run.uid[:8], run.start.get("plan_name", "?"), why, self.stream_name)

    def _abandon(self, run: _RunState) -> None:
        with run.lock:
            run.abandoned = True
            pending = [j for j in run.jobs if not j.done]
            run.jobs.clear()
            logger.error("run %s: %d estimates were not ready %.0f s after the stop document; they are recorded "
                         "as errors", run.uid[:8], len(pending), self.stop_timeout)
            for job in pending:
                self._emit_result(job, f"timed out: no estimate {self.stop_timeout:g} s after the run stopped",
                                  force=True)
                job.done = True

    def _pattern_key(self, start: Mapping[str, Any]) -> str | None:
        return self.pattern_key or start.get(START_PATTERN_KEY)

    # ---------------------------------------------------------------- finding the pattern
    def _find_source(self, start: Mapping[str, Any], desc: Mapping[str, Any]) -> PatternSource | None:
        stream = desc.get("name", "primary")
        if self.source_stream is not None and stream != self.source_stream:
            return None
        data_keys: Mapping[str, Any] = desc.get("data_keys", {})
        key = self._pattern_key(start)
        if key is not None:
            if key not in data_keys:
                return None
        else:
            candidates = [k for k, dk in data_keys.items() if _is_pattern_key(dk)]
            if not candidates:
                return None
            key = sorted(candidates, key=lambda k: (not any(w in k.lower() for w in _PREFERRED_WORDS),
                                                    candidates.index(k)))[0]
            if len(candidates) > 1:
                logger.info("stream '%s': several 1D data keys %s; sizing '%s' (set pattern_key= to choose)",
                            stream, candidates, key)
        source = PatternSource(stream=stream, pattern_key=key)
        dk = data_keys[key]
        shape = list(dk.get("shape") or [])
        n = shape[0] if len(shape) == 1 else None
        if dk.get("external"):
            source.problem = (f"'{key}' is external data ({dk['external']}); the sizer needs the pattern in the "
                              "event (fill it upstream)")
            return source
        self._find_axis(start, desc, source, n)
        return source

    def _find_axis(self, start: Mapping[str, Any], desc: Mapping[str, Any], source: PatternSource, n: int | None) -> None:
        key = source.pattern_key
        data_keys: Mapping[str, Any] = desc.get("data_keys", {})
        configuration: Mapping[str, Any] = desc.get("configuration", {}) or {}
        owner = data_keys[key].get("object_name") or next(
            (obj for obj, keys in (desc.get("object_keys") or {}).items() if key in keys), None)
        order = ([owner] if owner in configuration else []) + [o for o in configuration if o != owner]
        config = [(obj, configuration[obj].get("data", {}) or {}, configuration[obj].get("data_keys", {}) or {})
                  for obj in order]

        x_key = self.x_key or start.get(START_X_KEY)
        x_value, x_units = None, None
        if x_key is not None:
            for _, data, dks in config:
                if x_key in data:
                    x_value, x_units = data[x_key], (dks.get(x_key) or {}).get("units")
                    break
            else:
                if x_key in data_keys:
                    source.x_in_event = True
                    x_units = data_keys[x_key].get("units")
                else:
                    source.problem = (f"x axis '{x_key}' is neither a configuration value nor a data key of "
                                      f"stream '{source.stream}'")
                    return
        else:
            for _, data, dks in config:
                for k, v in data.items():
                    if k.lower().endswith(_TTH_SUFFIXES + _Q_SUFFIXES) and _length(v) >= MIN_PATTERN_POINTS \
                            and (n is None or _length(v) == n):
                        x_key, x_value, x_units = k, v, (dks.get(k) or {}).get("units")
                        break
                if x_key:
                    break
            if x_key is None:
                source.problem = (f"no x axis for '{key}': expected a configuration value '<name>_tth' (2theta, deg) "
                                  f"or '<name>_q' (Q, 1/A) with {n or 'as many'} points, or set x_key=")
                return
        source.x_key = x_key

        # unit: option, start 'qdots_x_unit', the key's suffix, a configuration '<name>_x_unit', the key's
        # units, start 'x_unit'
        low = x_key.lower()
        unit = (self.x_unit or _unit(start.get(START_X_UNIT))
                or ("tth" if low.endswith(_TTH_SUFFIXES) else "q" if low.endswith(_Q_SUFFIXES) else None))
        if unit is None:
            for _, data, _ in config:
                for k, v in data.items():
                    if k.lower().endswith("_x_unit") and isinstance(v, str) and _unit(v):
                        unit = _unit(v)
                        break
                if unit:
                    break
        unit = unit or _unit(x_units) or _unit(start.get(START_X_UNIT_ALT))
        if unit is None:
            source.problem = f"unit of the x axis '{x_key}' unknown; set x_unit='tth' (2theta, deg) or 'q' (1/A)"
            return
        source.x_unit = unit

        # wavelength
        wavelength = self.wavelength
        if wavelength is None and unit == "tth":
            for _, data, dks in config:
                for k, v in data.items():
                    if k.lower().endswith("_wavelength") or k.lower() == "wavelength":
                        try:
                            wavelength = float(v) * (10.0 if (dks.get(k) or {}).get("units") == "nm" else 1.0)
                        except (TypeError, ValueError):
                            continue
                        break
                if wavelength is not None:
                    break
            if wavelength is None and start.get(START_WAVELENGTH) is not None:
                try:
                    wavelength = float(start[START_WAVELENGTH])
                except (TypeError, ValueError):
                    pass
            if wavelength is None:
                source.problem = (f"2theta x axis '{x_key}' but no wavelength: expected a configuration value "
                                  "'<name>_wavelength' (A), 'wavelength' in the start metadata, or wavelength=")
                return
        source.wavelength = wavelength

        if not source.x_in_event:
            try:
                x = np.asarray(x_value, dtype=np.float64)
            except (TypeError, ValueError):
                source.problem = f"x axis '{x_key}' is not numeric"
                return
            if x.ndim != 1:
                source.problem = f"x axis '{x_key}' has shape {x.shape}; expected a 1D array"
                return
            source.x = x

    # ---------------------------------------------------------------- output documents
    def _describe_model(self) -> dict[str, Any]:
        p = self.predictor
        info: dict[str, Any] = {"model_path": "", "model_sha256": "", "model_created": "",
                                "device": str(getattr(p, "device", "")), "chunk_size": self.chunk_size,
                                "size_classes_nm": list(self.classes),
                                "dispersion_classes": [float(c) for c in np.asarray(getattr(p, "dispersion_classes", []))],
                                "q_grid": ""}
        try:
            path = Path(p.path)
            info["model_path"] = str(path)
            from ..models.bundle import file_sha256

            info["model_sha256"] = file_sha256(path) if path.is_file() else ""
            info["model_created"] = str((p.metadata or {}).get("created", ""))
            grid = p.grid
            info["q_grid"] = f"{grid.q_min:g}-{grid.q_max:g} 1/A, {grid.n_points} points"
        except Exception:  # a predictor-like object without a bundle
            pass
        return info

    def _configuration(self, source: PatternSource) -> dict[str, Any]:
        data = dict(self._model_info)
        data.update({"chunk_size": self.chunk_size, "source_stream": source.stream, "pattern_key": source.pattern_key, "x_key": source.x_key or "",
                     "x_unit": source.x_unit or "", "wavelength": float(source.wavelength or 0.0)})
        now = time.time()
        data_keys = {}
        for k, v in data.items():
            if isinstance(v, list):
                dk = {"dtype": "array", "shape": [len(v)], "dtype_numpy": "<f8"}
            elif isinstance(v, bool) or isinstance(v, int):
                dk = {"dtype": "integer", "shape": [], "dtype_numpy": "<i8"}
            elif isinstance(v, float):
                dk = {"dtype": "number", "shape": [], "dtype_numpy": "<f8"}
            else:
                dk = {"dtype": "string", "shape": [], "dtype_numpy": "<U0"}
            dk["source"] = f"{SIZER_OBJECT}: {k}"
            dk["units"] = {"size_classes_nm": "nm", "wavelength": "angstrom"}.get(k)
            data_keys[k] = dk
        return {SIZER_OBJECT: {"data": data, "timestamps": {k: now for k in data}, "data_keys": data_keys}}

    def _emit_descriptor(self, run: _RunState, source: PatternSource) -> None:
        from event_model import compose_descriptor

        data_keys = _output_keys(self.classes)
        for dk in data_keys.values():
            dk["object_name"] = SIZER_OBJECT
        bundle = compose_descriptor(
            start=run.start, streams=run.streams, event_counters=run.counters, name=self.stream_name,
            data_keys=data_keys, configuration=self._configuration(source),
            object_keys={SIZER_OBJECT: list(data_keys)},
            hints={SIZER_OBJECT: {"fields": ["size_nm", "size_std_nm", "status"]}},
            validate=self.validate)
        run.descriptor = bundle.descriptor_doc
        run.compose_event = bundle.compose_event
        self._forward("descriptor", run.descriptor)

    def _emit_result(self, job: _Job, result: Any, latency_ms: float | None = None, force: bool = False) -> None:
        """Compose and send (or hold) the output event of ``job``; ``result`` is a SizeEstimate or an error text."""
        run = job.run
        with run.lock:
            if run.abandoned and not force:
                return
            if latency_ms is None:
                latency_ms = (time.perf_counter() - job.t_received) * 1e3
            data = _event_data(result, len(self.classes), job, latency_ms)
            try:
                doc = run.compose_event(data=data, timestamps={k: job.timestamp for k in data}, validate=self.validate)
            except Exception as exc:  # pragma: no cover - a bug; keep the stream complete
                logger.exception("could not compose the output event of source event %d", job.seq_num)
                data = _event_data(f"internal error: {exc}", len(self.classes), job, latency_ms)
                doc = run.compose_event(data=data, timestamps={k: job.timestamp for k in data}, validate=False)
            run.emitted += 1
            with self._stats_lock:
                self._status_counts[data["status"]] += 1
                self.latencies_ms.append(latency_ms)
            if self.emit_from == "caller":
                run.ready.append(("event", doc))
            else:
                self._forward("event", doc)

    # ---------------------------------------------------------------- worker thread
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
            jobs: list[_Job] = []
            for item in pending:
                if isinstance(item, _Job):
                    jobs.append(item)
                    continue
                self._process_safely(jobs)
                jobs = []
                if item is _SHUTDOWN:
                    stop = True
                elif isinstance(item, _Flush):
                    item.event.set()
                elif isinstance(item, _Prepare):
                    self._prepare(item.source)
            self._process_safely(jobs)
            pending.clear()
            if stop:
                return

    def _prepare(self, source: PatternSource) -> None:
        """Build (and cache) the standardization operator of an axis before the first event; note a bad axis."""
        from ..standardize import standardize_batch

        try:
            ones = np.ones((self.chunk_size, source.x.size))
            standardize_batch(source.x, ones, x_unit=source.x_unit, wavelength=source.wavelength,
                              grid=self.predictor.grid)
        except ValueError as exc:
            source.problem = f"the x axis '{source.x_key}' cannot be used: {exc}"
            logger.warning("stream '%s': %s; every event gets status 'error'", source.stream, source.problem)
        except Exception:  # pragma: no cover
            logger.exception("preparing the standardization of '%s' failed", source.x_key)

    def _process_safely(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        try:
            self._process(jobs)
        except Exception as exc:  # pragma: no cover - keep the worker alive, keep the stream complete
            logger.exception("LiveSizer worker failed on %d events", len(jobs))
            for job in jobs:
                if not job.done:
                    self._finish(job, f"internal error: {type(exc).__name__}: {exc}")

    def _finish(self, job: _Job, result: Any) -> None:
        self._emit_result(job, result)
        run = job.run
        with run.lock:
            job.done = True
            job.data = {}
            while run.jobs and run.jobs[0].done:
                run.jobs.popleft()

    def _process(self, jobs: list[_Job]) -> None:
        results: dict[int, Any] = {}
        groups: list[tuple[Any, PatternSource, np.ndarray, list[tuple[int, np.ndarray]]]] = []
        for i, job in enumerate(jobs):
            try:
                x, y = self._pattern(job)
            except PatternError as exc:
                results[i] = str(exc)
                continue
            key = (id(job.source), None if not job.source.x_in_event else x.tobytes())
            if groups and groups[-1][0] == key:
                groups[-1][3].append((i, y))
            else:
                groups.append((key, job.source, x, [(i, y)]))
        for _, source, x, members in groups:
            for start in range(0, len(members), self.chunk_size):
                chunk = members[start:start + self.chunk_size]
                results.update(self._size_chunk(source, x, chunk))
        for i, job in enumerate(jobs):
            self._finish(job, results.get(i, "internal error: no result"))

    def _size_chunk(self, source: PatternSource, x: np.ndarray, chunk: list[tuple[int, np.ndarray]]) -> dict[int, Any]:
        from ..standardize import standardize_batch

        Y = np.stack([y for _, y in chunk])
        if Y.shape[0] < self.chunk_size:
            Y = np.concatenate([Y, np.repeat(Y[-1:], self.chunk_size - Y.shape[0], axis=0)])
        try:
            X, report = standardize_batch(x, Y, x_unit=source.x_unit, wavelength=source.wavelength,
                                          grid=self.predictor.grid)
            estimates = self.predictor.predict_standardized(X, report)
        except ValueError as exc:
            if len(chunk) > 1:  # isolate the bad pattern(s): each alone, padded (same numbers as in the chunk)
                out: dict[int, Any] = {}
                for member in chunk:
                    out.update(self._size_chunk(source, x, [member]))
                return out
            return {chunk[0][0]: f"standardization failed: {exc}"}
        except Exception as exc:
            logger.exception("inference failed")
            return {i: f"inference failed: {type(exc).__name__}: {exc}" for i, _ in chunk}
        return {i: est for (i, _), est in zip(chunk, estimates)}

    def _pattern(self, job: _Job) -> tuple[np.ndarray, np.ndarray]:
        source = job.source
        if source.problem:
            raise PatternError(source.problem)
        key = source.pattern_key
        if key not in job.data:
            raise PatternError(f"event {job.seq_num} has no data key '{key}' (it has {sorted(job.data)})")
        value = job.data[key]
        if isinstance(value, str):
            raise PatternError(f"'{key}' holds a string ({value[:40]!r}), e.g. an unfilled external reference; "
                               "expected a 1D numeric array")
        try:
            y = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PatternError(f"'{key}' is not a numeric array ({exc})") from None
        if y.ndim != 1:
            raise PatternError(f"'{key}' has shape {y.shape}; expected a 1D array (one intensity per x value)")
        if source.x_in_event:
            if source.x_key not in job.data:
                raise PatternError(f"event {job.seq_num} has no x axis '{source.x_key}'")
            try:
                x = np.asarray(job.data[source.x_key], dtype=np.float64)
            except (TypeError, ValueError):
                raise PatternError(f"x axis '{source.x_key}' is not numeric") from None
        else:
            x = source.x
        if y.size != x.size:
            raise PatternError(f"'{key}' has {y.size} points but the x axis '{source.x_key}' has {x.size}; "
                               "expected one intensity per x value")
        bad = ~np.isfinite(y)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            tail = (" (a NaN tail: this pattern was probably shorter than the others and padded when stored)"
                    if first > 0 and np.isnan(y[first:]).all() else "")
            raise PatternError(f"'{key}' has {int(bad.sum())} NaN or infinite values (first at index {first}); "
                               f"expected finite intensities{tail}")
        if not y.any():
            raise PatternError(f"'{key}' is all zeros (no signal: shutter closed, detector not counting?)")
        return x, y


# ------------------------------------------------------------------------------------------------
def _is_pattern_key(dk: Mapping[str, Any]) -> bool:
    shape = dk.get("shape") or []
    return (dk.get("dtype") == "array" and len(shape) == 1
            and (shape[0] is None or int(shape[0]) >= MIN_PATTERN_POINTS))


def _length(value: Any) -> int:
    try:
        return len(value) if not isinstance(value, (str, bytes)) else 0
    except TypeError:
        return 0


def _unit(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    t = text.strip().lower()
    return "tth" if t in _TTH_UNITS else "q" if t in _Q_UNITS else None


def _event_data(result: Any, n_classes: int, job: _Job, latency_ms: float) -> dict[str, Any]:
    if isinstance(result, str):
        data: dict[str, Any] = {k: math.nan for k in _FLOAT_KEYS}
        data.update(probabilities=[math.nan] * n_classes, status=STATUS_ERROR, flags="", message=result)
    else:
        values = {k: getattr(result, k) for k in _FLOAT_KEYS}
        data = {k: math.nan if v is None else float(v) for k, v in values.items()}
        data["probabilities"] = [float(v) for v in result.probabilities.values()]
        flags = list(result.flags)
        data["status"] = STATUS_FLAGGED if flags else STATUS_OK
        data["flags"] = ",".join(flags)
        details = getattr(result, "flag_details", {}) or {}
        data["message"] = "; ".join(f"{f}: {details[f]}" if f in details else f for f in flags)
    data["source_seq_num"] = int(job.seq_num)
    data["source_uid"] = job.uid
    data["latency_ms"] = float(latency_ms)
    return data
