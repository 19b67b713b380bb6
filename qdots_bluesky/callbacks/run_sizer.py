"""The state of one run inside :class:`~.live_sizer.LiveSizer`: made at its start document, dropped at its stop.

One method per document type of the run, called by the sizer on the caller's thread; what to emit goes back
through the sizer's private hooks. The worker thread only touches ``jobs``, ``ready``, ``emitted`` and
``abandoned``, under ``lock``.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from event_model import unpack_event_page
from event_model.documents import Event, EventDescriptor, EventPage, RunStart, RunStop

from .discovery import MIN_PATTERN_POINTS, START_PATTERN_KEY, PatternSource, find_source
from .worker import Job

if TYPE_CHECKING:
    from .live_sizer import LiveSizer

logger = logging.getLogger(__name__)


class RunSizer:
    """Everything about one run: made at its start document, dropped at its stop document.

    One method per document type of the run (called by :class:`LiveSizer` on the caller's
    thread); the worker thread only touches ``jobs``, ``ready``, ``emitted`` and ``abandoned``,
    under ``lock``. ``chunk_size``: patterns per inference call for this run.
    """

    def __init__(self, sizer: "LiveSizer", start: RunStart, chunk_size: int) -> None:
        self.sizer = sizer
        self.start_doc = start
        self.uid = start["uid"]
        self.chunk_size = chunk_size
        self.sources: dict[str, PatternSource] = {}  # source descriptor uid -> source
        self.source_stream: str | None = None
        self.dropped: set[str] = set()  # descriptor uids of an earlier sizer stream, not forwarded
        self.output_descriptor: dict | None = None  # the qdots_size descriptor, once emitted
        self.compose_event: Callable | None = None
        self.streams: dict[str, Any] = {}
        self.counters: dict[str, int] = {}
        self.jobs: deque[Job] = deque()
        self.ready: deque[tuple[str, dict]] = deque()  # composed, not yet sent (emit_from="caller")
        self.lock = threading.RLock()
        self.abandoned = False
        self.submitted = 0
        self.emitted = 0
        self.desc_names: dict[str, str] = {}  # descriptor uid -> stream name (forwarded descriptors)
        self.descriptor_uids: list[str] = []  # every descriptor of the run
        self.warned = False

    # ---------------------------------------------------------------- documents of this run
    def start(self, doc: RunStart) -> None:
        self.sizer._pass("start", doc)

    def descriptor(self, doc: EventDescriptor) -> None:
        sizer = self.sizer
        self.flush_ready()
        if doc.get("name") == sizer.stream_name:
            # An earlier sizer's stream (e.g. a replay of a stored run): replaced by ours.
            self.dropped.add(doc["uid"])
            sizer._drop()
            logger.info("run %s: the stored stream '%s' is replaced by the new estimates", self.uid[:8],
                        sizer.stream_name)
            return
        sizer._pass("descriptor", doc)
        self.desc_names[doc["uid"]] = doc.get("name", "?")
        if self.source_stream is not None and doc.get("name") != self.source_stream:
            return
        source = find_source(self.start_doc, doc, sizer.discovery)
        if source is None:
            if self.source_stream is None:
                return
            # a new descriptor of the source stream lost the pattern
            key = sizer.discovery.pattern_key or self.start_doc.get(START_PATTERN_KEY) or "?"
            source = PatternSource(stream=self.source_stream, pattern_key=key,
                                   problem=f"descriptor {doc['uid'][:8]} of stream '{self.source_stream}' has no "
                                           "usable pattern data key")
        self.sources[doc["uid"]] = source
        if self.source_stream is None:
            self.source_stream = source.stream
            logger.info("run %s: sizing %s", self.uid[:8], source.describe())
            if source.problem:
                logger.warning("run %s: %s; every event gets status 'error'", self.uid[:8], source.problem)
            sizer._emit_descriptor(self, source)
        if source.problem is None and not source.x_in_event:
            sizer._worker.prepare(source, self.chunk_size)

    def event(self, doc: Event) -> None:
        self.flush_ready()
        if doc["descriptor"] in self.dropped:
            self.sizer._drop()
            return
        self.sizer._pass("event", doc)
        self.sizer._submit(self, doc)

    def event_page(self, doc: EventPage) -> None:
        self.flush_ready()
        if doc["descriptor"] in self.dropped:
            self.sizer._drop()
            return
        self.sizer._pass("event_page", doc)
        if doc["descriptor"] in self.sources:
            for event in unpack_event_page(doc):
                self.sizer._submit(self, event)

    def stop(self, doc: RunStop) -> None:
        sizer = self.sizer
        doc = dict(doc)
        num_events = dict(doc.get("num_events") or {})
        if self.dropped:
            num_events.pop(sizer.stream_name, None)
        if self.output_descriptor is not None:
            if not sizer._worker.flush().wait(sizer.stop_timeout):
                self.abandon()
            self.flush_ready()
            num_events[sizer.stream_name] = self.emitted
        else:
            self.warn_no_pattern()
        doc["num_events"] = num_events
        sizer._pass("stop", doc)

    def other(self, name: str, doc: dict) -> None:
        """Resources, datums and the like: forwarded unchanged."""
        self.flush_ready()
        self.sizer._pass(name, doc)

    # ---------------------------------------------------------------- helpers
    def flush_ready(self) -> None:
        """Send the output documents held for the caller's thread (emit_from="caller")."""
        if self.sizer.emit_from != "caller" or not self.ready:
            return
        with self.lock:
            items = list(self.ready)
            self.ready.clear()
        for name, doc in items:
            self.sizer._forward(name, doc)

    def warn_no_pattern(self) -> None:
        if self.warned:
            return
        self.warned = True
        sizer = self.sizer
        key = sizer.discovery.pattern_key or self.start_doc.get(START_PATTERN_KEY)
        if key:
            why = f"no stream has the pattern data key '{key}'"
        else:
            why = (f"no stream has a 1D array data key with >= {MIN_PATTERN_POINTS} points "
                   "(set pattern_key=, or 'qdots_pattern_key' in the start metadata)")
        if sizer.source_stream:
            why += f" in stream '{sizer.source_stream}'"
        logger.warning("run %s (plan %s): %s; no '%s' stream is added, the raw data are forwarded unchanged",
                       self.uid[:8], self.start_doc.get("plan_name", "?"), why, sizer.stream_name)

    def abandon(self) -> None:
        """Record the estimates still missing after ``stop_timeout`` as errors; later results are dropped."""
        sizer = self.sizer
        with self.lock:
            self.abandoned = True
            pending = [j for j in self.jobs if not j.done]
            self.jobs.clear()
            logger.error("run %s: %d estimates were not ready %.0f s after the stop document; they are recorded "
                         "as errors", self.uid[:8], len(pending), sizer.stop_timeout)
            for job in pending:
                sizer._emit_result(job, f"timed out: no estimate {sizer.stop_timeout:g} s after the run stopped",
                                   force=True)
                job.done = True
