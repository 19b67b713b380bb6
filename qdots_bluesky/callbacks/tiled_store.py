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
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs, urlparse

import numpy as np

from .schema import STREAM_NAME
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


class RunNotFoundError(KeyError):
    """No run matches a uid, scan id or index."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else ""


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
        return self.description or _strip_key(self.uri)

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
        description = f"embedded Tiled server on {server.directory} ({_strip_key(server.uri)})"
    else:
        description = f"Tiled server {_strip_key(uri)}"
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


def mask_api_key(uri: str) -> str:
    """``uri`` with the value of its ``api_key`` parameter replaced by ``***`` (for messages and logs)."""
    return re.sub(r"api_key=[^&]+", "api_key=***", uri or "")


_strip_key = mask_api_key


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
            raise TiledUnavailableError(f"the Tiled server {_strip_key(uri)} refused access ({status}); give the "
                                        "right API key (?api_key=... in the URI or --api-key)") from None
        if status == 404:
            raise TiledUnavailableError(f"no such node on the Tiled server: {_strip_key(uri)} (404)") from None
        raise TiledUnavailableError(f"the Tiled server {_strip_key(uri)} answered: {exc}") from None
    except Exception as exc:
        import httpx

        if isinstance(exc, httpx.HTTPError):
            raise TiledUnavailableError(f"cannot talk to the Tiled server {_strip_key(uri)}: {exc}") from None
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


# ------------------------------------------------------------------------------------------------
_NEGATIVE = re.compile(r"^-\d+$")
#: Candidates listed in the message of an ambiguous run key.
_SHOW = 5


def parse_run_key(text: Any) -> int | str:
    """A run reference as given: an integer stays an integer (negative: index, -1 = latest; positive:
    scan id); text '-N' becomes the index -N; any other text stays text: a uid, a uid prefix, or - all
    digits - a scan id when such a scan exists, else a uid prefix (see :func:`select_runs`)."""
    if isinstance(text, (int, np.integer)):
        return int(text)
    s = str(text).strip()
    return int(s) if _NEGATIVE.match(s) else s


def select_runs(runs: Any, keys: Iterable[Any], *, where: str | None = None) -> list:
    """Runs by full or partial uid (>= 5 characters), scan id (the latest run with it) or negative
    index (-1 = the latest). A key of digits is a scan id when such a scan exists, else a uid prefix
    (``12345678-`` forces the uid). Raises RunNotFoundError naming the key (and, for an ambiguous key,
    the runs it matches); ``where`` names the store in messages (default: the node's URI)."""
    where = where or _strip_key(str(getattr(runs, "uri", "") or "the catalog"))
    return [_select_one(runs, parse_run_key(key), where) for key in keys]


def _select_one(runs: Any, key: int | str, where: str):
    if key == 0 or (isinstance(key, str) and key.isdigit() and int(key) == 0):
        raise ValueError("run 0 does not exist; accepted: a uid, a scan id >= 1, or a negative index (-1 = latest)")
    if isinstance(key, int) and key < 0:
        try:
            return runs.values()[key]
        except IndexError:
            raise RunNotFoundError(f"no run with index {key} in {where} ({len(runs)} runs)") from None
    if isinstance(key, int) or key.isdigit():
        run = _by_scan_id(runs, int(key))
        if run is not None:
            return run
        if isinstance(key, int) or len(key) < 5:
            raise RunNotFoundError(f"no run with scan id {int(key)} in {where} ({len(runs)} runs)")
        not_found = f"no run with scan id {int(key)} or a uid starting with {key!r} in {where} ({len(runs)} runs)"
    else:
        if not key:
            raise ValueError("empty run key; accepted: a uid, a scan id >= 1, or a negative index (-1 = latest)")
        if key in runs:
            return runs[key]
        if len(key) < 5:
            raise ValueError(f"partial uid {key!r} is too short; accepted: at least 5 characters of a uid")
        not_found = f"no run with uid {key!r} in {where} ({len(runs)} runs)"
    matches = _by_uid_prefix(runs, key)
    if not matches:
        raise RunNotFoundError(not_found)
    if len(matches) > 1:
        shown = ", ".join(f"{r.metadata['start']['uid']} (scan {r.metadata['start'].get('scan_id', '-')})"
                          for r in matches[:_SHOW])
        more = ", ..." if len(matches) > _SHOW else ""
        raise RunNotFoundError(f"run key {key!r} is ambiguous: the uids of {'more than ' if more else ''}"
                               f"{min(len(matches), _SHOW)} runs in {where} start with it ({shown}{more}); "
                               "give more characters of the uid")
    return matches[0]


def _by_scan_id(runs: Any, scan_id: int):
    """The latest run with ``scan_id``, or None."""
    from tiled.queries import Eq

    found = runs.search(Eq("start.scan_id", scan_id))
    return found.values()[-1] if len(found) else None


def _by_uid_prefix(runs: Any, prefix: str) -> list:
    """The runs whose uid starts with ``prefix`` (at most _SHOW + 1 of them)."""
    from tiled.queries import Like

    if getattr(runs, "is_sql", True) or not hasattr(runs, "_lookup_by_partial_uid"):
        return list(runs.search(Like("start.uid", f"{prefix}%")).values()[:_SHOW + 1])
    try:  # a databroker catalog without SQL: its own partial-uid lookup (no list of candidates)
        return [runs._lookup_by_partial_uid(prefix)]
    except KeyError:
        return []
    except ValueError as exc:
        raise RunNotFoundError(f"run key {prefix!r}: {exc}") from None


# ------------------------------------------------------------------------------------------------
def run_documents(run: Any) -> Iterator[tuple[str, dict]]:
    """The documents of a stored run: ``run.documents()`` or, where the server does not export them,
    rebuilt from the stored metadata and event tables (start, descriptors, events, stop)."""
    from tiled.client.utils import ClientError

    try:
        docs = list(run.documents())
    except (ClientError, NotImplementedError, AttributeError) as exc:
        logger.info("server-side document export unavailable (%s); rebuilding the documents", exc)
        docs = list(_rebuild_documents(run))
    for name, doc in docs:
        yield name, _plain(doc)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rebuild_documents(run: Any) -> Iterator[tuple[str, dict]]:
    from bluesky_tiled_plugins.exporters import build_descriptor_docs

    md = run.metadata
    start = _plain(dict(md["start"]))
    yield "start", start
    events = []
    for stream in list(run):
        node = run[stream]
        base = getattr(node, "base", node)
        descriptors = build_descriptor_docs(_plain(dict(base.metadata)), stream_name=stream, run_start_uid=start["uid"])
        for d in descriptors:
            yield "descriptor", d
        parts = set(base)
        table = base["internal"].read() if "internal" in parts else None
        arrays = {k: base[k].read() for k in parts if k != "internal" and k in descriptors[0]["data_keys"]}
        n = len(table) if table is not None else (len(next(iter(arrays.values()))) if arrays else 0)
        keys = list(descriptors[0]["data_keys"])
        for i in range(n):
            row = table.iloc[i] if table is not None else {}
            data, ts = {}, {}
            for k in keys:
                if k in arrays:
                    data[k] = np.asarray(arrays[k][i]).tolist()
                elif table is not None and k in table.columns:
                    v = row[k]
                    data[k] = v.tolist() if hasattr(v, "tolist") else v
                if table is not None and f"ts_{k}" in table.columns:
                    ts[k] = float(row[f"ts_{k}"])
                elif k in data:
                    ts[k] = float(row["time"]) if table is not None else 0.0
            seq = int(row["seq_num"]) if table is not None else i + 1
            t = float(row["time"]) if table is not None else 0.0
            events.append((t, "event", {"uid": f"event-{descriptors[-1]['uid']}-{seq}", "descriptor": descriptors[-1]["uid"],
                                        "seq_num": seq, "time": t, "data": data, "timestamps": ts, "filled": {}}))
    for _, name, doc in sorted(events, key=lambda e: e[0]):
        yield name, doc
    if md.get("stop"):
        yield "stop", _plain(dict(md["stop"]))


def read_stream(run: Any, stream: str = STREAM_NAME) -> dict[str, np.ndarray]:
    """A stream of a stored run as {data key: array (n_events, ...)}, plus "time" and "seq_num" when stored."""
    if stream not in list(run):
        raise KeyError(f"run {run.metadata['start']['uid'][:8]} has no stream '{stream}' (streams: {list(run)})")
    ds = run[stream].read()
    out = {k: np.asarray(ds[k].values) for k in ds.data_vars}
    if "time" in ds.coords:
        out["time"] = np.asarray(ds["time"].values)
    return out


def read_sizes(run: Any, stream: str = STREAM_NAME) -> dict[str, np.ndarray]:
    """The ``qdots_size`` stream of a stored run, sorted by ``source_seq_num``, as arrays."""
    out = read_stream(run, stream)
    if "source_seq_num" in out:
        order = np.argsort(out["source_seq_num"], kind="stable")
        out = {k: (v[order] if np.ndim(v) and len(v) == len(order) else v) for k, v in out.items()}
    return out
