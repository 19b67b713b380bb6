"""Re-size stored runs: their documents go through the same :class:`LiveSizer` as live.

``replay_run(run, sizer)`` reads a run's documents (Tiled ``run.documents()``, or any iterable of
``(name, doc)``), passes them through ``sizer`` and collects the new ``qdots_size`` stream. A
stored ``qdots_size`` stream in the run is ignored (the sizer replaces it). With the same model,
device, chunk size (by default the chunk size recorded with the stored estimates) and instrument
resolution told to the network (the sizer's predictor; ``qdots replay`` tells the one recorded with
the stored estimates) the numbers are identical to the live ones: the sizer computes every estimate in
fixed-size chunks, independent of how events were batched.

Write-back (``write_to=`` a runs node or :class:`~.tiled_store.TiledStore`): a stored run is
immutable in Tiled once written (its container is closed at the stop document), and rewriting it
would hide what was measured live, so the replay is stored as a **new run** that references the
original:

- start: new uid, ``plan_name = "qdots_replay"``, ``qdots_replay_of`` = the original uid,
  ``qdots_replay`` = {model path/sha256, device, chunk size, original plan name and scan id, time},
  ``qdots_original_start`` = a copy of the original start document (so a scan-id lookup still
  finds the original, not the replay); ``sample`` and ``qdots_*`` hints are copied to the top;
- one stream ``qdots_size`` (same layout as live; ``source_seq_num``/``source_uid`` point into the
  original run's source stream), and a stop document (``num_events`` = {qdots_size: n}).

Find replays of a run with ``runs.search(Eq("qdots_replay_of", uid))``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from .live_sizer import LiveSizer
from .schema import SIZER_OBJECT, stored_chunk_size as _descriptor_chunk_size

logger = logging.getLogger(__name__)

REPLAY_PLAN = "qdots_replay"
#: Start-document key of a replay run that holds the original run's uid.
REPLAY_OF = "qdots_replay_of"


@dataclass
class ReplayResult:
    """One replayed run: the original uid, the new run's uid (None without write-back), the new stream."""

    original_uid: str
    new_uid: str | None
    descriptor: dict | None
    events: list[dict] = field(default_factory=list)
    original_start: dict = field(default_factory=dict)

    def table(self) -> dict[str, np.ndarray]:
        """The estimates as {data key: array} in source order (empty when nothing was sized)."""
        if not self.events:
            return {}
        keys = list(self.events[0]["data"])
        return {k: np.asarray([e["data"][k] for e in self.events]) for k in keys}


def _source_documents(run: Any) -> Iterable[tuple[str, dict]]:
    if hasattr(run, "metadata") and hasattr(run, "documents"):
        from .runs import run_documents

        return run_documents(run)
    return run  # already (name, doc) pairs


def stored_chunk_size(docs: list[tuple[str, dict]], stream_name: str) -> int | None:
    """The chunk size recorded by the sizer that made the stored ``stream_name`` stream, if any."""
    for name, doc in docs:
        if name == "descriptor" and doc.get("name") == stream_name:
            value = _descriptor_chunk_size(doc)
            if value is not None:
                return value
    return None


def replay_run(run: Any, sizer: LiveSizer, *, write_to: Any = None, chunk_size: int | str | None = "stored",
               callbacks: Iterable[Callable[[str, dict], Any]] = ()) -> ReplayResult:
    """Re-size one run (a Tiled run or an iterable of (name, doc)) with ``sizer``; optionally store the result.

    ``write_to``: None, a TiledStore or a runs node (a TiledWriter is made for it), or a callable
    ``(name, doc)`` that receives the documents of the new run. ``chunk_size``: "stored" (default:
    the chunk size recorded with the stored live estimates, so the same model and device give the
    same numbers; the sizer's own when none is recorded), None (the sizer's own) or an integer.
    ``callbacks`` see the sizer's output (the original documents plus the new stream) as it happens.
    Do not pass a sizer that also feeds the writer of the stored run: it would write the run again.
    """
    docs = list(_source_documents(run))
    if chunk_size == "stored":
        chunk_size = stored_chunk_size(docs, sizer.stream_name)
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r}; accepted: 'stored', None or an integer >= 1")
    new_stream: dict[str, Any] = {"descriptor": None, "events": [], "start": None, "stop": None}

    def collect(name: str, doc: dict) -> None:
        if name == "start":
            new_stream["start"] = doc
        elif name == "descriptor" and doc.get("name") == sizer.stream_name and SIZER_OBJECT in doc.get("configuration", {}):
            new_stream["descriptor"] = doc
        elif name == "event" and new_stream["descriptor"] is not None and doc["descriptor"] == new_stream["descriptor"]["uid"]:
            new_stream["events"].append(doc)
        elif name == "stop":
            new_stream["stop"] = doc

    docs = _closed_run(docs)
    tokens = [sizer.subscribe(collect)] + [sizer.subscribe(cb) for cb in callbacks]
    try:
        sizer.process(docs, chunk_size=None if chunk_size is None else int(chunk_size))
        start = new_stream["start"]
    finally:
        for token in tokens:
            sizer.unsubscribe(token)
    result = ReplayResult(original_uid=start["uid"], new_uid=None, descriptor=new_stream["descriptor"],
                          events=new_stream["events"], original_start=start)
    if write_to is not None and result.descriptor is not None:
        result.new_uid = write_back(result, sizer, write_to)
    elif write_to is not None:
        logger.warning("run %s: nothing was sized (no pattern found); nothing written back", start["uid"][:8])
    return result


def _closed_run(docs: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """``docs`` with a stop document at the end when the stored run has none (an interrupted run), so that
    the sizer emits every pending estimate. Raises ValueError when there is no start document."""
    start = next((doc for name, doc in docs if name == "start"), None)
    if start is None:
        raise ValueError("the run has no start document; accepted: the documents of a run, starting with 'start'")
    if any(name == "stop" for name, _ in docs):
        return docs
    return [*docs, ("stop", {"uid": f"replay-stop-{start['uid']}", "time": time.time(), "run_start": start["uid"],
                             "exit_status": "fail", "reason": "the stored run has no stop document",
                             "num_events": {}})]


def replay_documents(result: ReplayResult, sizer: LiveSizer) -> list[tuple[str, dict]]:
    """The documents of the new run that stores a replay (see the module docstring)."""
    from event_model import compose_run

    original = result.original_start
    info = {k: v for k, v in result.descriptor["configuration"][SIZER_OBJECT]["data"].items()
            if k in ("model_path", "model_sha256", "model_created", "device", "chunk_size")}
    metadata = {
        "plan_name": REPLAY_PLAN,
        REPLAY_OF: original["uid"],
        "qdots_replay": {**info, "original_plan_name": original.get("plan_name"),
                         "original_scan_id": original.get("scan_id"), "replayed_at": time.time()},
        "qdots_original_start": original,
    }
    for key in ("sample", "qdots_pattern_key", "qdots_x_key", "x_unit", "wavelength", "qdots_truth_keys"):
        if key in original:
            metadata[key] = original[key]
    bundle = compose_run(metadata=metadata)
    desc = result.descriptor
    d_bundle = bundle.compose_descriptor(name=desc["name"], data_keys=desc["data_keys"],
                                         configuration=desc.get("configuration"), object_keys=desc.get("object_keys"),
                                         hints=desc.get("hints"))
    out: list[tuple[str, dict]] = [("start", bundle.start_doc), ("descriptor", d_bundle.descriptor_doc)]
    for event in result.events:
        out.append(("event", d_bundle.compose_event(data=event["data"], timestamps=event["timestamps"],
                                                    time=event["time"])))
    out.append(("stop", bundle.compose_stop(exit_status="success")))
    return out


def write_back(result: ReplayResult, sizer: LiveSizer, write_to: Any) -> str:
    """Store a replay as a new run (see the module docstring); returns its uid."""
    docs = replay_documents(result, sizer)
    if callable(write_to) and not hasattr(write_to, "runs") and not hasattr(write_to, "create_container"):
        sink = write_to
    else:
        from .tiled_store import make_writer

        sink = make_writer(getattr(write_to, "runs", write_to))
    for name, doc in docs:
        sink(name, doc)
    uid = docs[0][1]["uid"]
    logger.info("replay of run %s stored as run %s", result.original_uid[:8], uid[:8])
    return uid
