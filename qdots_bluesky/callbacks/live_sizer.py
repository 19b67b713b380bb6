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
with the data keys of the loaded bundle's task (:mod:`qdots_bluesky.models.task`; see :mod:`.schema` for dtype,
shape and units). A SAXS + WAXS shape + size bundle publishes its targets (e.g. ``shape``, ``structure`` with
their ``_confidence`` and ``_probabilities``, ``size_nm`` +- ``size_std_nm``, ``size_volume_nm``, ``dispersion``),
``size_class_nm``, ``probabilities``, ``ood_distance``, ``nanocrystal_probability`` and the common keys below
(``outcome``, ``status``, ``flags``, ``message``, ``source_seq_num``, ``source_uid``, ``latency_ms``). A quantum-dot
sizer (the shipped model, and every bundle without a task) publishes:

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
See :mod:`.discovery` (pure functions of the start document, the descriptor and the options): by
option, else from the start document, else detected in the descriptor. A run without a usable
pattern gets no ``qdots_size`` stream and a logged warning; its documents still flow downstream.

Inference
---------
The predictor is loaded and warmed up once. Events (and event pages, unpacked) go to a
bounded queue served by one worker thread (:mod:`.worker`), so the RunEngine only pays for
forwarding and a queue put (the put blocks only when the worker is ``queue_size`` events behind:
nothing is ever dropped). The worker takes whatever is queued (up to ``max_batch``) and sizes it
with ``Predictor.predict_batch`` in chunks of exactly ``chunk_size`` patterns (short chunks are
padded by repeating the last pattern), which makes every number independent of how events
happened to be batched: a replay of stored documents with the same model, device and chunk size
gives bit-identical results (``LiveSizer.process(docs, chunk_size=...)`` sizes a replayed run with
the chunk size of its live estimates).
Before the stop document is forwarded every pending estimate is emitted (waiting at most
``stop_timeout`` s; estimates still missing then are emitted as errors).

Errors never reach the RunEngine: a bad event (missing key, not a 1D numeric array, wrong length,
NaN/inf, all zeros, a standardization error) gives an event with status ``"error"`` and a message;
an exception in a downstream callback is logged and counted (``stats["downstream_errors"]``).

Structure: the sizer is an ``event_model.DocumentRouter`` (one method per document type); each
start document makes one :class:`RunSizer`, which holds everything about that run and is dropped
at its stop document. (``event_model.RunRouter`` is not used: it turns every Event into a new
EventPage and copies documents through its Filler, so downstream would no longer receive the
RunEngine's documents unchanged.)

Threads: with ``emit_from="worker"`` (default) the new events are sent downstream from the
worker thread, serialized with the forwarded documents by a lock (fine for TiledWriter, LiveTable,
Publisher). With ``emit_from="caller"`` they are held until the next incoming document (or the
stop) and sent from the caller's thread, for consumers that must stay on one thread (Matplotlib).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from event_model import DocumentRouter
from event_model.documents import Event, EventDescriptor, EventPage, RunStart, RunStop

from . import schema
from .discovery import (  # noqa: F401 - re-exported for callers of the old single module
    MIN_PATTERN_POINTS,
    START_PATTERN_KEY,
    START_WAVELENGTH,
    START_X_KEY,
    START_X_UNIT,
    START_X_UNIT_ALT,
    DiscoveryOptions,
    PatternError,
    PatternSource,
    extract_pattern,
    find_source,
    parse_unit,
)
from .refining import make_refiner
from .run_sizer import RunSizer
from .worker import Job, SizingWorker
from .schema import OUTPUT_KEYS, SIZER_OBJECT, STATUS_ERROR, STATUS_FLAGGED, STATUS_OK, STREAM_NAME  # noqa: F401

logger = logging.getLogger(__name__)

#: Document names the sizer dispatches; anything else is forwarded unchanged.
_DOCUMENT_NAMES = frozenset({"start", "descriptor", "event", "event_page", "stop", "resource", "datum", "datum_page",
                             "stream_resource", "stream_datum"})


class LiveSizer(DocumentRouter):
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
    refine : also refine by DSE on the worker thread (True, options of :class:`~.refining.LiveRefiner`, or one):
        refined_* keys in the stream, NaN and ``refined`` = 0 for patterns not refined.
    instrument_fwhm_q : the beamline's resolution where it is known, (Gaussian, Lorentzian) FWHM in 1/A, for a
        loaded model trained with an instrument input (with a ``predictor``: the predictor's own, or an error);
        recorded in the descriptor configuration (``instrument_known`` 0 or 1, ``instrument_gauss_fwhm_q``,
        ``instrument_lorentz_fwhm_q``, 0 where unknown).
    """

    def __init__(self, predictor: Any = None, *, model: str | Path | None = None, device: Any = None,
                 num_threads: int | None = None, pattern_key: str | None = None, x_key: str | None = None,
                 x_unit: str | None = None, wavelength: float | None = None, source_stream: str | None = None,
                 stream_name: str = STREAM_NAME, chunk_size: int = 8, max_batch: int = 64,
                 queue_size: int = 1000, emit_from: str = "worker", stop_timeout: float = 120.0,
                 validate: bool = True, callbacks: Iterable[Callable] = (), refine: Any = False,
                 instrument_fwhm_q: Any = None) -> None:
        super().__init__()
        if x_unit is not None and parse_unit(x_unit) is None:
            raise ValueError(f"x_unit {x_unit!r} is not known; accepted: 'tth' (2theta, degrees) or 'q' (1/A)")
        if emit_from not in ("worker", "caller"):
            raise ValueError(f"emit_from={emit_from!r}; accepted: 'worker' or 'caller'")
        for name, value in (("chunk_size", chunk_size), ("max_batch", max_batch), ("queue_size", queue_size)):
            _check_count(name, value)
        if wavelength is not None:
            from ..units import check_wavelength

            check_wavelength(float(wavelength))
        if predictor is not None and instrument_fwhm_q is not None:
            told = getattr(predictor, "instrument_fwhm_q", None)
            if told is None or tuple(float(v) for v in instrument_fwhm_q) != tuple(told):
                raise ValueError(f"instrument_fwhm_q={instrument_fwhm_q!r} with a predictor told {told!r}; accepted: "
                                 "the resolution given to the Predictor (Predictor.from_bundle(..., instrument_fwhm_q=)), "
                                 "or a model path instead of a predictor")
        if predictor is None:
            from ..predictor import Predictor

            options: dict[str, Any] = {} if num_threads is None else {"num_threads": num_threads}
            if instrument_fwhm_q is not None:
                options["instrument_fwhm_q"] = instrument_fwhm_q
            predictor = Predictor.from_bundle(model, device=device, **options)
        self.predictor = predictor
        task = getattr(predictor, "task", None)
        if refine and task is not None and not task.is_pbs_preset:
            raise ValueError(f"refine: the DSE refinement refines quantum-dot sizes; the model's task is {task.name!r}; "
                             "accepted: refine=False with this model, or a quantum-dot model")
        self.discovery = DiscoveryOptions(pattern_key=pattern_key, x_key=x_key, x_unit=parse_unit(x_unit),
                                          wavelength=None if wavelength is None else float(wavelength),
                                          source_stream=source_stream)
        self.stream_name = stream_name
        self.chunk_size, self.max_batch = int(chunk_size), int(max_batch)
        self.emit_from = emit_from
        self.stop_timeout = float(stop_timeout)
        self.validate = bool(validate)
        self.classes = [float(c) for c in np.asarray(predictor.size_classes_nm)]
        #: what the loaded bundle answers: its task (the stream's keys and units), or the classes of a sizer without one
        self.layout = getattr(predictor, "task", None) or self.classes
        self._layout_keys = schema.output_keys(self.layout)
        self._callbacks: dict[int, Callable] = {}
        self._tokens = itertools.count()
        for cb in callbacks:
            self.subscribe(cb)
        self._emit_lock = threading.RLock()
        self._local = threading.local()
        self._runs: dict[str, RunSizer] = {}  # start uid -> run
        self._by_descriptor: dict[str, RunSizer] = {}  # descriptor uid -> run (dropped with the run)
        self._stats_lock = threading.Lock()
        self._status_counts: Counter = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=100_000)
        self.downstream_errors = 0
        self._model_info = self._describe_model()
        self.refiner = make_refiner(refine)
        self._worker = SizingWorker(predictor, self._finish, max_batch=self.max_batch, queue_size=int(queue_size),
                                    refiner=self.refiner)

    # where the pattern is (read-only views of the discovery options)
    pattern_key = property(lambda self: self.discovery.pattern_key)
    x_key = property(lambda self: self.discovery.x_key)
    x_unit = property(lambda self: self.discovery.x_unit)
    wavelength = property(lambda self: self.discovery.wavelength)
    source_stream = property(lambda self: self.discovery.source_stream)

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
    def queued(self) -> int:
        """Events waiting for the worker (the bounded queue's depth)."""
        return self._worker.queued

    @property
    def stats(self) -> dict[str, Any]:
        """Counts of output events by status, pending events, downstream errors."""
        with self._stats_lock:
            counts = dict(self._status_counts)
        return {"status": counts, "emitted": sum(counts.values()), "queued": self.queued,
                "downstream_errors": self.downstream_errors}

    def plot_refinement(self, path: str | Path) -> Path:
        """Write the Rietveld-style figure of the newest refined pattern (``refine=`` on) to ``path``: a figure on
        request, not per event. ValueError without refinement or before the first refined pattern."""
        if self.refiner is None:
            raise ValueError("this LiveSizer does not refine; accepted: LiveSizer(..., refine=True or options)")
        return self.refiner.plot_last(path)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker thread (pending work is finished first; ``timeout`` in s)."""
        self._worker.close(timeout)

    def __enter__(self) -> "LiveSizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveSizer({self.predictor!r}, stream_name={self.stream_name!r}, chunk_size={self.chunk_size})"

    def __call__(self, name: str, doc: dict, validate: bool = False) -> None:  # type: ignore[override]
        """Process one document (never raises; the document is forwarded exactly once, or dropped when
        it belongs to a stored ``qdots_size`` stream that the new estimates replace)."""
        self._local.handled = False
        try:
            if name in _DOCUMENT_NAMES:
                super().__call__(name, doc)  # DocumentRouter: the method named after the document type
        except Exception:  # never into the RunEngine
            logger.exception("LiveSizer failed on a %r document; it is forwarded unchanged", name)
        if not self._local.handled:  # a document of no known run, or a failure before forwarding
            try:
                self._forward(name, doc)
            except Exception:  # pragma: no cover
                pass

    def process(self, documents: Iterable[tuple[str, dict]], *, chunk_size: int | None = None) -> None:
        """Feed ``(name, doc)`` pairs, as ``__call__`` does; the runs started among them are sized in
        chunks of ``chunk_size`` patterns (None: the sizer's ``chunk_size``), e.g. to reproduce stored
        estimates. The sizer's own ``chunk_size`` is left as it is."""
        if chunk_size is not None:
            _check_count("chunk_size", chunk_size)
        self._local.chunk_size = None if chunk_size is None else int(chunk_size)
        try:
            for name, doc in documents:
                self(name, doc)
        finally:
            self._local.chunk_size = None

    # ---------------------------------------------------------------- documents (DocumentRouter)
    def start(self, doc: RunStart) -> None:
        chunk = getattr(self._local, "chunk_size", None) or self.chunk_size
        run = self._runs[doc["uid"]] = RunSizer(self, doc, chunk)
        run.start(doc)

    def descriptor(self, doc: EventDescriptor) -> None:
        run = self._runs.get(doc.get("run_start"))
        if run is not None:
            self._by_descriptor[doc["uid"]] = run
            run.descriptor_uids.append(doc["uid"])
            run.descriptor(doc)

    def event(self, doc: Event) -> None:
        run = self._by_descriptor.get(doc.get("descriptor"))
        if run is not None:
            run.event(doc)

    def event_page(self, doc: EventPage) -> None:
        run = self._by_descriptor.get(doc.get("descriptor"))
        if run is not None:
            run.event_page(doc)

    def stop(self, doc: RunStop) -> None:
        run = self._runs.pop(doc.get("run_start"), None)
        if run is None:
            return
        for uid in run.descriptor_uids:
            self._by_descriptor.pop(uid, None)
        run.stop(doc)

    def resource(self, doc: dict) -> None:
        self._other("resource", doc)

    def stream_resource(self, doc: dict) -> None:
        self._other("stream_resource", doc)

    def datum(self, doc: dict) -> None:
        self._other("datum", doc)

    def datum_page(self, doc: dict) -> None:
        self._other("datum_page", doc)

    def stream_datum(self, doc: dict) -> None:
        self._other("stream_datum", doc)

    def _other(self, name: str, doc: dict) -> None:
        run = self._runs.get(doc.get("run_start", "")) if isinstance(doc, dict) else None
        if run is not None:
            run.other(name, doc)

    # ---------------------------------------------------------------- helpers (caller thread)
    def _pass(self, name: str, doc: dict) -> None:
        """Forward an incoming document (marks it handled for ``__call__``)."""
        self._local.handled = True
        self._forward(name, doc)

    def _drop(self) -> None:
        """Mark the incoming document as deliberately not forwarded."""
        self._local.handled = True

    def _forward(self, name: str, doc: dict) -> None:
        with self._emit_lock:
            for cb in list(self._callbacks.values()):
                try:
                    cb(name, doc)
                except Exception:
                    self.downstream_errors += 1
                    logger.exception("downstream callback %r failed on a %r document", cb, name)

    def _submit(self, run: RunSizer, event: Event) -> None:
        source = run.sources.get(event.get("descriptor"))
        if source is None:
            stream = run.desc_names.get(event.get("descriptor"))
            if not run.warned and run.source_stream is None and stream == (self.source_stream or "primary"):
                run.warn_no_pattern()
            return
        ts = event.get("timestamps", {}).get(source.pattern_key, event.get("time", time.time()))
        job = Job(run, source, event.get("data", {}), int(event.get("seq_num", 0)), str(event.get("uid", "")),
                   float(ts if ts is not None else event.get("time", 0.0)), time.perf_counter())
        with run.lock:
            run.jobs.append(job)
            run.submitted += 1
        self._worker.submit(job)

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

    def _emit_descriptor(self, run: RunSizer, source: PatternSource) -> None:
        from event_model import compose_descriptor

        data_keys = schema.output_keys(self.layout, refine=self.refiner is not None)
        for dk in data_keys.values():
            dk["object_name"] = SIZER_OBJECT
        info = dict(self._model_info)
        info.update({"chunk_size": run.chunk_size, "source_stream": source.stream, "pattern_key": source.pattern_key,
                     "x_key": source.x_key or "", "x_unit": source.x_unit or "",
                     "wavelength": float(source.wavelength or 0.0),
                     "refine": "" if self.refiner is None else repr(self.refiner),
                     "refine_habit": "" if self.refiner is None else self.refiner.habit})
        known = getattr(self.predictor, "instrument_fwhm_q", None)
        info.update({"instrument_known": int(known is not None),
                     "instrument_gauss_fwhm_q": 0.0 if known is None else float(known[0]),
                     "instrument_lorentz_fwhm_q": 0.0 if known is None else float(known[1])})
        bundle = compose_descriptor(
            start=run.start_doc, streams=run.streams, event_counters=run.counters, name=self.stream_name,
            data_keys=data_keys, configuration=schema.configuration(info),
            object_keys={SIZER_OBJECT: list(data_keys)},
            hints={SIZER_OBJECT: {"fields": list(schema.HINT_FIELDS)}},
            validate=self.validate)
        run.output_descriptor = bundle.descriptor_doc
        run.compose_event = bundle.compose_event
        self._forward("descriptor", run.output_descriptor)

    def _emit_result(self, job: Job, result: Any, latency_ms: float | None = None, force: bool = False) -> None:
        """Compose and send (or hold) the output event of ``job``; ``result`` is an estimate (SizeEstimate or
        TaskEstimate) or an error text."""
        run = job.run
        n = self._layout_keys
        with run.lock:
            if run.abandoned and not force:
                return
            if latency_ms is None:
                latency_ms = (time.perf_counter() - job.t_received) * 1e3
            refine = {"refine": self.refiner is not None, "refinement": job.refinement}
            data = schema.event_data(result, n, job.seq_num, job.uid, latency_ms, **refine)
            try:
                doc = run.compose_event(data=data, timestamps={k: job.timestamp for k in data}, validate=self.validate)
            except Exception as exc:  # pragma: no cover - a bug; keep the stream complete
                logger.exception("could not compose the output event of source event %d", job.seq_num)
                data = schema.event_data(f"internal error: {exc}", n, job.seq_num, job.uid, latency_ms, refine["refine"])
                doc = run.compose_event(data=data, timestamps={k: job.timestamp for k in data}, validate=False)
            run.emitted += 1
            with self._stats_lock:
                self._status_counts[data["status"]] += 1
                self.latencies_ms.append(latency_ms)
            if self.emit_from == "caller":
                run.ready.append(("event", doc))
            else:
                self._forward("event", doc)

    def _finish(self, job: Job, result: Any) -> None:
        """The worker's result for ``job``: emit it, then forget the job (worker thread)."""
        self._emit_result(job, result)
        run = job.run
        with run.lock:
            job.done = True
            job.data = {}
            while run.jobs and run.jobs[0].done:
                run.jobs.popleft()


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r}; accepted: an integer >= 1")
