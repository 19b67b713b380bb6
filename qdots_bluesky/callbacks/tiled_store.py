"""Store runs (with their ``qdots_size`` stream) in Tiled and read them back.

Where runs live: :func:`connect` opens one of

- an embedded Tiled server with a writable catalog in a local directory
  (``tiled.server.SimpleTiledServer``; SQLite + DuckDB + Zarr files under ``directory``),
- a running Tiled server, ``uri`` (``http://host:port/api/v1?api_key=...`` or
  ``http://host:port/api/v1/path/to/catalog``; ``api_key=`` may also be given separately),
- a databroker 2.x catalog by name (``catalog=``: ``databroker.catalog[name]``, i.e. a Tiled
  profile name; the runs node is found as ``databroker.Broker.named(name)`` does).

Runs are written into the *runs node*: the node itself when it has the ``CatalogOfBlueskyRuns``
spec, else its child ``raw`` (created with that spec when missing), the layout
``databroker.Broker.named`` expects. The runs node then supports ``node[uid]``,
``node[partial_uid]``, ``node[scan_id]`` and ``node[-1]`` (latest); :func:`select_runs` accepts
the same from a command line.

Documents of a stored run (for replay): ``run.documents()`` when the server exports
``application/json-seq`` (the embedded server started here registers the exporter of
bluesky-tiled-plugins); otherwise :func:`run_documents` rebuilds them from the stored
metadata and tables.
"""
from __future__ import annotations

import atexit
import functools
import logging
import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from .runs import RunNotFoundError, mask_api_key, select_runs
from .writers import (  # noqa: F401 - the writers used to live here
    ArraySafeTiledWriter,
    BufferedCallback,
    make_writer,
    tiled_writer_pads_numpy_arrays_wrongly,
)

logger = logging.getLogger(__name__)

RUNS_NODE = "raw"
_SPEC = "CatalogOfBlueskyRuns"


class TiledUnavailableError(ConnectionError):
    """A Tiled server that cannot be reached or refuses access; the message says which and what to try."""


_exporter_lock = threading.Lock()
_exporter_registered = False


def register_exporters() -> None:
    """Let Tiled servers started in this process export runs as documents (``application/json-seq``)."""
    global _exporter_registered
    with _exporter_lock:
        if _exporter_registered:
            return
        from bluesky_tiled_plugins.exporters import json_seq_exporter
        from tiled.media_type_registration import default_serialization_registry

        default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
        _exporter_registered = True


def start_server(directory: str | Path, *, create: bool = True):
    """Start an embedded Tiled server (background thread, loopback, random port) storing in ``directory``.

    Returns the ``tiled.server.SimpleTiledServer``; its ``uri`` carries the API key. Close it with
    ``close()`` (the data stay in the directory and are served again by a later call); a server
    still open when the interpreter exits is closed then, so a script ends normally without it.
    ``create``: make the directory when it is missing (else a ValueError names it).
    """
    register_exporters()
    from tiled.server import SimpleTiledServer

    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"Tiled directory {directory} exists and is not a directory; accepted: a directory path")
    if not directory.exists() and not create:
        raise ValueError(f"Tiled directory {directory} does not exist; accepted: the directory of an existing "
                         "store (as given to --directory when the runs were written)")
    directory.mkdir(parents=True, exist_ok=True)
    # SimpleTiledServer runs uvicorn on a non-daemon thread, which the interpreter waits for before any
    # atexit handler runs: a script that never closes the server would hang at exit. Threads inherit
    # daemon status from the thread that starts them, so the server is started from a daemon thread,
    # and closed cleanly at exit (atexit runs before daemon threads are stopped).
    made: dict[str, Any] = {}

    def make() -> None:
        try:
            made["server"] = SimpleTiledServer(directory=directory, api_key=_process_api_key())
        except BaseException as exc:  # re-raised in the caller's thread
            made["error"] = exc

    starter = threading.Thread(target=make, name="qdots-tiled-start", daemon=True)
    starter.start()
    starter.join()
    if "error" in made:
        raise made["error"]
    server = made["server"]
    closer = _ServerCloser(server)
    _CLOSERS[server] = closer
    atexit.register(closer)
    return server


@functools.lru_cache(maxsize=1)
def _process_api_key() -> str:
    """One random API key for every embedded server of this process.

    Upstream defect (tiled 0.2.20, ``SimpleTiledServer``): the single-user API key is process-wide
    state, so starting a second server with its own key makes the first refuse its own key (401);
    servers that share the key are unaffected.
    """
    import secrets

    return secrets.token_hex(16)


class _ServerCloser:
    """Close an embedded server once: from :func:`close_server`, else at interpreter exit."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.server.close()
        except Exception:  # pragma: no cover - at exit, nothing to report to
            logger.debug("closing the embedded Tiled server failed", exc_info=True)


_CLOSERS: "weakref.WeakKeyDictionary[Any, _ServerCloser]" = weakref.WeakKeyDictionary()


def close_server(server: Any) -> None:
    """Close a server made by :func:`start_server` (at most once; no longer at exit)."""
    closer = _CLOSERS.pop(server, None)
    if closer is None:
        server.close()
        return
    atexit.unregister(closer)
    closer()


@dataclass
class TiledStore:
    """A connection: ``client`` (the node opened), ``runs`` (the runs node), ``server`` (embedded or None)."""

    client: Any
    runs: Any
    uri: str
    server: Any = None
    description: str = ""
    _closed: bool = field(default=False, repr=False)

    def writer(self, batch_size: int | None = None, threaded: bool = False):
        """A ``TiledWriter`` for the runs node (``batch_size`` events per write; default: TiledWriter's);
        ``threaded``: on its own thread (see :func:`make_writer`)."""
        return make_writer(self.runs, batch_size=batch_size, threaded=threaded)

    def run(self, key: Any):
        """One run by uid, partial uid, scan id or negative index (see :func:`select_runs`)."""
        return select_runs(self.runs, [key])[0]

    def refresh(self):
        """The runs node again (sees runs written since)."""
        return self.runs

    @property
    def location(self) -> str:
        """Where the runs are, for messages: the directory, the catalog name or the URI (API key masked)."""
        if self.server is not None:
            return f"the Tiled directory {self.server.directory}"
        return self.description or mask_api_key(self.uri)

    def close(self) -> None:
        """Stop the embedded server, if any."""
        if not self._closed and self.server is not None:
            close_server(self.server)
        self._closed = True

    def __enter__(self) -> "TiledStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(uri: str | None = None, *, directory: str | Path | None = None, catalog: str | None = None,
            api_key: str | None = None, timeout: float = 10.0, create: bool = True) -> TiledStore:
    """Open where runs are stored: ``uri`` (a Tiled server), ``catalog`` (a databroker/Tiled profile
    name) or ``directory`` (an embedded server started here). Exactly one of them. ``create``: make
    what is missing (the directory, the runs node); False to only read an existing store.
    Use it as a context manager (``with connect(directory="my_runs") as store:``) or call ``close()``;
    an embedded server left open is closed at interpreter exit.

    Raises :class:`TiledUnavailableError` for a server that cannot be reached (checked within
    ``timeout`` s, before Tiled's own retries) or that refuses the API key, ValueError for bad
    arguments.
    """
    given = [name for name, v in (("uri", uri), ("directory", directory), ("catalog", catalog)) if v]
    if len(given) != 1:
        raise ValueError(f"give exactly one of uri, directory, catalog (got {given or 'none'})")
    if catalog:
        return _connect_catalog(catalog)
    server = None
    if directory:
        server = start_server(directory, create=create)
        uri = server.uri
        description = f"embedded Tiled server on {server.directory} ({mask_api_key(server.uri)})"
    else:
        description = f"Tiled server {mask_api_key(uri)}"
    try:
        client = _open_uri(uri, api_key=api_key, timeout=timeout)
        try:
            runs = runs_node(client, create=create)
        except Exception as exc:
            from tiled.client.utils import ClientError

            if not isinstance(exc, ClientError):
                raise
            raise TiledUnavailableError(f"{description}: cannot open or create the runs node '{RUNS_NODE}' ({exc}); "
                                        "is the API key allowed to write?") from None
    except BaseException:
        if server is not None:
            close_server(server)
        raise
    return TiledStore(client=client, runs=runs, uri=uri, server=server, description=description)


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Raise TiledUnavailableError unless ``uri``'s server answers HTTP within ``timeout`` s."""
    import httpx

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"Tiled URI {uri!r} is not valid; accepted: http(s)://host:port/api/v1[/path][?api_key=...]")
    base = f"{parsed.scheme}://{parsed.netloc}"
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as http:
            http.get(f"{base}/healthz")
    except httpx.HTTPError as exc:
        raise TiledUnavailableError(
            f"cannot reach the Tiled server at {base} ({type(exc).__name__}: {exc}); is it running and is the "
            "address right? Start one with `tiled serve catalog --temp --api-key SECRET`, or use --directory "
            "for an embedded server") from None


def _open_uri(uri: str, *, api_key: str | None = None, timeout: float = 10.0):
    from tiled.client import from_uri
    from tiled.client.utils import ClientError

    check_reachable(uri, timeout)
    if api_key is not None and "api_key" in parse_qs(urlparse(uri).query):
        api_key = None  # the URI's key wins
    try:
        return from_uri(uri, api_key=api_key) if api_key else from_uri(uri)
    except ClientError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise TiledUnavailableError(f"the Tiled server {mask_api_key(uri)} refused access ({status}); give the "
                                        "right API key (?api_key=... in the URI or --api-key)") from None
        if status == 404:
            raise TiledUnavailableError(f"no such node on the Tiled server: {mask_api_key(uri)} (404)") from None
        raise TiledUnavailableError(f"the Tiled server {mask_api_key(uri)} answered: {exc}") from None
    except Exception as exc:
        import httpx

        if isinstance(exc, httpx.HTTPError):
            raise TiledUnavailableError(f"cannot talk to the Tiled server {mask_api_key(uri)}: {exc}") from None
        raise


def _connect_catalog(name: str) -> TiledStore:
    """A databroker 2.x catalog by name (``databroker.catalog[name]``: a Tiled profile); runs node as
    ``databroker.Broker.named`` picks it (the node, or its ``raw`` child)."""
    from tiled.profiles import list_profiles, load_profiles

    load_profiles.cache_clear()  # profiles written since the last look
    profiles = list_profiles()
    if name not in profiles:
        raise ValueError(f"no databroker/Tiled profile named {name!r}; known: {sorted(profiles) or 'none'} "
                         "(profiles are YAML files in ~/.config/tiled/profiles or $TILED_PROFILES)")
    import httpx

    try:
        try:
            import databroker

            node = databroker.catalog[name]
        except (ImportError, KeyError):  # databroker's map of profiles is built once per process
            from tiled.client import from_profile

            node = from_profile(name)
    except httpx.HTTPError as exc:
        raise TiledUnavailableError(f"cannot reach the Tiled server of catalog {name!r}: {exc}") from None
    return TiledStore(client=node, runs=runs_node(node, create=True), uri=str(getattr(node, "uri", name)),
                      description=f"databroker catalog {name!r}")


def runs_node(client: Any, *, create: bool = True):
    """The node runs are written to and read from (see the module docstring)."""
    if _SPEC in {s.name for s in getattr(client, "specs", [])}:
        return client
    if RUNS_NODE in client:
        return client[RUNS_NODE]
    if not create:
        return client
    from tiled.structures.core import Spec

    client.create_container(RUNS_NODE, specs=[Spec(_SPEC, version="3.0")],
                            metadata={"description": "Bluesky runs written by qdots-bluesky"})
    return client[RUNS_NODE]
