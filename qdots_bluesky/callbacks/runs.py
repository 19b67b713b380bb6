"""Find stored runs from a command-line key (scan id, uid or uid prefix, -1 for the latest) and read them back:
their documents (for replay) and their streams as arrays (``qdots_size`` and the primary data)."""
from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Iterator

import numpy as np

from .schema import STREAM_NAME


class RunNotFoundError(KeyError):
    """No run matches a uid, scan id or index."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else ""


logger = logging.getLogger(__name__)


def mask_api_key(uri: str) -> str:
    """``uri`` with the value of its ``api_key`` parameter replaced by ``***`` (for messages and logs)."""
    return re.sub(r"api_key=[^&]+", "api_key=***", uri or "")


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
    where = where or mask_api_key(str(getattr(runs, "uri", "") or "the catalog"))
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
