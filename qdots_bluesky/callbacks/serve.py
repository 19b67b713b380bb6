"""The sizer as its own process: RunEngine -> 0MQ proxy -> ``qdots serve`` (LiveSizer -> Tiled).

Beamline side (the RunEngine's session)::

    from bluesky.callbacks.zmq import Publisher
    RE.subscribe(Publisher("proxy-host:5577"))

Proxy (anywhere, e.g. on the RunEngine host)::

    bluesky-0MQ-proxy --in-address 127.0.0.1:5577 --out-address 127.0.0.1:5578   # or 0.0.0.0 to listen on the network

Sizer (e.g. on a GPU machine)::

    qdots serve --zmq proxy-host:5578 --tiled-uri http://tiled:8000/api/v1?api_key=... --model model.safetensors

:func:`serve` subscribes a :class:`LiveSizer` to a ``bluesky.callbacks.zmq.RemoteDispatcher`` and
writes every run it receives - the raw documents and the new ``qdots_size`` stream - to Tiled
(so the RunEngine side must not also write the same runs to that catalog). Optionally the sized
document stream is re-published to another proxy (``publish=``) for further consumers.

Addresses are checked before anything starts (:func:`check_zmq_address`). When no document has
arrived for ``idle_log_s`` seconds the service logs a warning (again every ``idle_log_s`` s while
it stays idle), so a wrong address or a stopped proxy shows up in the log.
"""
from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, TextIO

from .live_sizer import LiveSizer

logger = logging.getLogger(__name__)


_ADDRESS = re.compile(r"^(?:tcp://)?(?P<host>[^\s:/]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def check_zmq_address(address: Any, option: str = "address") -> str:
    """``address`` ("HOST:PORT" or "tcp://HOST:PORT") as "HOST:PORT"; ValueError naming ``option`` otherwise."""
    match = _ADDRESS.match(str(address).strip()) if isinstance(address, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{option} {address!r} is not a 0MQ address; accepted: HOST:PORT with a port 1-65535, "
                         "e.g. localhost:5578")
    return f"{match['host']}:{int(match['port'])}"


class SizerService:
    """A RemoteDispatcher feeding a LiveSizer; :meth:`run` blocks until :meth:`shutdown` or ``max_runs`` runs.

    ``idle_log_s``: log a warning when no document has arrived for that many seconds (None: never);
    ``clock``: the monotonic clock in s used for it.
    """

    def __init__(self, address: str, sizer: LiveSizer, *, sinks: list[Callable] = (), prefix: bytes = b"",
                 max_runs: int | None = None, echo: TextIO | bool | None = True, idle_log_s: float | None = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from bluesky.callbacks.zmq import RemoteDispatcher

        address = check_zmq_address(address)
        if idle_log_s is not None and not idle_log_s > 0:
            raise ValueError(f"idle_log_s={idle_log_s!r}; accepted: seconds > 0 or None")
        self.idle_log_s = idle_log_s
        self._clock = clock
        self._last_document = self._last_report = clock()
        self.address = address
        self.sizer = sizer
        self.dispatcher = RemoteDispatcher(address, prefix=prefix)
        self.max_runs = max_runs
        self.echo = echo  # True: the current sys.stdout
        self.runs_done = 0
        self.uids: list[str] = []
        self._stopping = threading.Event()
        for sink in sinks:
            sizer.subscribe(sink)
        sizer.subscribe(self._watch)
        self.dispatcher.subscribe(self._arrived)
        self.dispatcher.subscribe(sizer)

    def _arrived(self, name: str, doc: dict) -> None:
        self._last_document = self._clock()

    def check_idle(self) -> str | None:
        """Log (and return) a warning when no document has arrived for ``idle_log_s`` s; at most one per
        ``idle_log_s`` s."""
        if self.idle_log_s is None:
            return None
        now = self._clock()
        idle = now - self._last_document
        if idle < self.idle_log_s or now - self._last_report < self.idle_log_s:
            return None
        self._last_report = now
        message = (f"qdots serve: no document for {idle:.0f} s from tcp://{self.address} "
                   f"({self.runs_done} run(s) so far); is the proxy running and the RunEngine publishing to it?")
        logger.warning(message)
        return message

    def _tick(self) -> None:
        self.check_idle()
        if not self._stopping.is_set():
            self.dispatcher.loop.call_later(self._tick_s, self._tick)

    @property
    def _tick_s(self) -> float:
        return max(0.05, min(self.idle_log_s / 2, 10.0))

    def _say(self, text: str) -> None:
        if self.echo:
            print(text, file=sys.stdout if self.echo is True else self.echo, flush=True)

    def _watch(self, name: str, doc: dict) -> None:
        if name == "start":
            self._say(f"run {doc['uid']} started (scan_id {doc.get('scan_id')}, plan {doc.get('plan_name')})")
        elif name == "stop":
            self.runs_done += 1
            self.uids.append(doc["run_start"])
            self._say(f"run {doc['run_start']} stopped ({doc.get('exit_status')}): num_events {doc.get('num_events')}")
            if self.max_runs is not None and self.runs_done >= self.max_runs:
                self.shutdown()

    def shutdown(self) -> None:
        """Stop receiving (safe from a signal handler or another thread)."""
        self._stopping.set()
        task = getattr(self.dispatcher, "_task", None)
        loop = self.dispatcher.loop
        if task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    def run(self) -> None:
        """Receive documents until shut down."""
        import asyncio

        self._say(f"qdots serve: ready, receiving documents from tcp://{self.address}")
        self._last_document = self._last_report = self._clock()
        if self.idle_log_s is not None:
            self.dispatcher.loop.call_later(self._tick_s, self._tick)
        try:
            self.dispatcher.start()
        except (asyncio.CancelledError, KeyboardInterrupt):
            pass
        finally:
            self._say(f"qdots serve: stopped after {self.runs_done} run(s)")


def serve(address: str, sizer: LiveSizer, *, store: Any = None, publish: str | None = None, prefix: bytes = b"",
          max_runs: int | None = None, echo: TextIO | bool | None = True, handle_signals: bool = True,
          idle_log_s: float | None = 60.0) -> SizerService:
    """Run the sizer service (blocks); ``store``: a TiledStore (or None: do not store); ``publish``: a proxy
    address to re-publish the sized documents to; ``idle_log_s``: see :class:`SizerService`.
    SIGINT/SIGTERM stop it cleanly. Raises ValueError for a bad address before anything starts."""
    address = check_zmq_address(address)
    if publish:
        publish = check_zmq_address(publish, "publish address")
    sinks: list[Callable] = []
    if store is not None:
        sinks.append(store.writer())
    publisher = None
    if publish:
        from bluesky.callbacks.zmq import Publisher

        publisher = Publisher(publish, prefix=prefix)
        sinks.append(publisher)
    service = SizerService(address, sizer, sinks=sinks, prefix=prefix, max_runs=max_runs, echo=echo,
                           idle_log_s=idle_log_s)
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: service.shutdown())
    try:
        service.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if publisher is not None:
            publisher.close()
    return service
