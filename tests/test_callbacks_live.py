"""LiveSizer under a real RunEngine with the simulated beamline, and on hand-made document streams."""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from event_model import DocumentNames, compose_run, schema_validators

from _callbacks_helpers import fast_beamline, run_scan, split
from qdots_bluesky.callbacks.live_sizer import OUTPUT_KEYS, SIZER_OBJECT, STREAM_NAME, LiveSizer
from qdots_bluesky.plans import insitu_synthesis
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.beamline import use_virtual_time


@pytest.fixture
def predictor(bundle):
    return Predictor.from_bundle(bundle, device="cpu")


def test_documents_layout_and_forwarding(predictor):
    sizer = LiveSizer(predictor)
    try:
        direct, out = run_scan(sizer, num=6)
    finally:
        sizer.close()
    # every document valid against the event-model schemas
    for name, doc in out:
        schema_validators[DocumentNames[name]].validate(doc)
    # forwarded unchanged (the same objects), in order; only the stop differs (num_events)
    forwarded = [(n, d) for n, d in out if not (n == "descriptor" and d["name"] == STREAM_NAME)
                 and not (n == "event" and d["descriptor"] in {x["uid"] for x in split(out)[0]})]
    assert [n for n, _ in forwarded] == [n for n, _ in direct]
    for (n1, d1), (n2, d2) in zip(forwarded, direct):
        if n1 != "stop":
            assert d1 is d2
    start = direct[0][1]
    (desc,), events = split(out)
    assert desc["run_start"] == start["uid"]
    # the new descriptor comes right after the source descriptor, before any event
    names = [(n, d.get("name")) for n, d in out]
    assert names.index(("descriptor", STREAM_NAME)) == names.index(("descriptor", "primary")) + 1
    keys = desc["data_keys"]
    for k in ("size_nm", "size_class_nm", "size_std_nm", "dispersion", "confidence", "probabilities", "status",
              "message", "source_seq_num", "latency_ms"):
        assert k in keys, k
        assert {"dtype", "shape", "dtype_numpy", "units", "source"} <= set(keys[k])
    assert keys["size_nm"]["units"] == "nm" and keys["size_nm"]["dtype"] == "number" and keys["size_nm"]["shape"] == []
    assert keys["latency_ms"]["units"] == "ms" and keys["source_seq_num"]["dtype"] == "integer"
    assert keys["status"]["dtype"] == "string" and keys["status"]["choices"] == ["ok", "flagged", "error"]
    classes = predictor.size_classes_nm.tolist()
    assert keys["probabilities"]["shape"] == [len(classes)] and keys["probabilities"]["size_classes_nm"] == classes
    conf = desc["configuration"][SIZER_OBJECT]["data"]
    assert conf["size_classes_nm"] == classes and conf["pattern_key"] == "waxs_intensity"
    assert conf["x_key"] == "waxs_tth" and conf["x_unit"] == "tth" and conf["wavelength"] == pytest.approx(0.5646)
    assert conf["model_sha256"] and conf["chunk_size"] == 8
    assert conf["instrument_known"] == 0 and conf["instrument_gauss_fwhm_q"] == 0.0  # no resolution told
    assert set(OUTPUT_KEYS) == set(keys)
    # one event per source event, in order
    primary = [d for n, d in direct if n == "event"]
    assert [e["data"]["source_seq_num"] for e in events] == [e["seq_num"] for e in primary]
    assert [e["data"]["source_uid"] for e in events] == [e["uid"] for e in primary]
    assert [e["seq_num"] for e in events] == list(range(1, len(primary) + 1))
    for e in events:
        d = e["data"]
        assert d["status"] in ("ok", "flagged")
        assert 2.0 <= d["size_nm"] <= 10.0 and d["size_std_nm"] >= 0 and 0 < d["confidence"] <= 1
        assert sum(d["probabilities"]) == pytest.approx(1.0, abs=1e-6)
        assert d["size_class_nm"] in classes and d["latency_ms"] >= 0
        assert (d["status"] == "flagged") == bool(d["flags"])
        assert 0.0 <= d["nanocrystal_probability"] <= 1.0  # the bundle has a presence head
        assert (d["nanocrystal_probability"] < 0.5) == ("no_nanocrystals" in d["flags"])
    # the stop counts the new stream; the original stop is left alone
    stop = out[-1][1]
    assert out[-1][0] == "stop" and stop["num_events"] == {"primary": 6, STREAM_NAME: 6}
    assert direct[-1][1]["num_events"] == {"primary": 6}
    # every estimate reached downstream before the stop
    assert max(i for i, (n, d) in enumerate(out) if n == "event") < len(out) - 1


def test_bad_events_are_errors_and_the_scan_goes_on(predictor):
    sizer = LiveSizer(predictor)
    try:
        direct, out = run_scan(sizer, num=8, bad={2: "nan", 4: "short", 6: "zeros"})
    finally:
        sizer.close()
    assert direct[-1][1]["exit_status"] == "success"
    _, events = split(out)
    assert len(events) == 8
    status = {e["data"]["source_seq_num"]: e["data"]["status"] for e in events}
    msg = {e["data"]["source_seq_num"]: e["data"]["message"] for e in events}
    assert [status[i] for i in (2, 4, 6)] == ["error"] * 3
    assert "NaN" in msg[2] and "points but the x axis" in msg[4] and "all zeros" in msg[6]
    assert all(status[i] != "error" for i in (1, 3, 5, 7, 8))
    for e in events:
        if e["data"]["status"] == "error":
            assert np.isnan(e["data"]["size_nm"]) and np.isnan(e["data"]["probabilities"]).all()
    assert out[-1][1]["num_events"][STREAM_NAME] == 8
    assert sizer.stats["status"]["error"] == 3


def _manual_run(n_points=400, x_unit="q", events=(), md=None, config=True, page=False):
    """Documents of a hand-made run: ``events`` are pattern arrays (or dicts of data) on a Q/2theta axis."""
    from qdots_bluesky.units import q_to_tth

    q = np.linspace(0.8, 15.5, n_points)
    x = q if x_unit == "q" else q_to_tth(q, 0.56)
    run = compose_run(metadata=dict(md or {}))
    key = "det_x_q" if x_unit == "q" else "det_x_tth"
    configuration = {"det": {"data": {key: x.tolist(), "det_wavelength": 0.56},
                             "timestamps": {key: 0.0, "det_wavelength": 0.0},
                             "data_keys": {key: {"dtype": "array", "shape": [n_points], "source": "t"},
                                           "det_wavelength": {"dtype": "number", "shape": [], "source": "t"}}}}
    desc = run.compose_descriptor(
        name="primary", configuration=configuration if config else {}, object_keys={"det": ["det_image"]},
        data_keys={"det_image": {"dtype": "array", "shape": [n_points], "source": "t", "object_name": "det"},
                   "temp": {"dtype": "number", "shape": [], "source": "t"}})
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    rows = []
    for y in events:
        rows.append(dict(y) if isinstance(y, dict) else {"det_image": y, "temp": 1.0})
    if page:
        from event_model import pack_event_page

        evs = [desc.compose_event(data=r, timestamps={k: 0.0 for k in r}, validate=False) for r in rows]
        docs.append(("event_page", pack_event_page(*evs)))
    else:
        for r in rows:
            docs.append(("event", desc.compose_event(data=r, timestamps={k: 0.0 for k in r}, validate=False)))
    docs.append(("stop", run.compose_stop()))
    return x, docs


def _patterns(n, n_points=400, seed=0):
    rng = np.random.default_rng(seed)
    q = np.linspace(0.8, 15.5, n_points)
    out = []
    for _ in range(n):
        y = np.exp(-q / 5.0) + sum(rng.uniform(0.2, 1) * np.exp(-0.5 * ((q - c) / 0.05) ** 2)
                                   for c in rng.uniform(1.5, 14, 8))
        out.append(rng.poisson(y * 1000).astype(float))
    return out


def _feed(sizer, docs):
    out = []
    token = sizer.subscribe(lambda n, d: out.append((n, d)))
    for name, doc in docs:
        sizer(name, doc)
    sizer.unsubscribe(token)
    return out


def test_missing_key_wrong_shape_and_strings(predictor):
    good = _patterns(3)
    rows = [good[0], {"temp": 1.0}, {"det_image": np.ones((2, 400)), "temp": 1.0},
            {"det_image": "datum-1234/0", "temp": 1.0}, good[1], {"det_image": good[2][:100], "temp": 1.0}]
    _, docs = _manual_run(events=rows)
    with LiveSizer(predictor) as sizer:
        out = _feed(sizer, docs)
    _, events = split(out)
    d = [e["data"] for e in events]
    assert [x["status"] for x in d] == ["flagged" if d[0]["flags"] else "ok", "error", "error", "error",
                                        "flagged" if d[4]["flags"] else "ok", "error"]
    assert "no data key 'det_image'" in d[1]["message"]
    assert "shape (2, 400)" in d[2]["message"]
    assert "string" in d[3]["message"]
    assert "100 points" in d[5]["message"]
    assert out[-1][1]["num_events"] == {"primary": 6, STREAM_NAME: 6}


def test_event_page_and_batching_give_identical_numbers(predictor):
    pats = _patterns(21, seed=3)
    _, docs_page = _manual_run(events=pats, page=True)
    _, docs_events = _manual_run(events=pats)
    with LiveSizer(predictor, max_batch=64) as a:
        out_page = _feed(a, docs_page)
    with LiveSizer(predictor, max_batch=1) as b:  # one event at a time
        out_events = []
        token = b.subscribe(lambda n, d: out_events.append((n, d)))
        for name, doc in docs_events:
            b(name, doc)
        b.unsubscribe(token)
    _, ev1 = split(out_page)
    _, ev2 = split(out_events)
    assert len(ev1) == len(ev2) == 21
    assert [e["data"]["source_seq_num"] for e in ev1] == list(range(1, 22))
    for e1, e2 in zip(ev1, ev2):
        for k in ("size_nm", "size_std_nm", "confidence", "probabilities", "ood_distance", "status", "message"):
            assert e1["data"][k] == e2["data"][k], k


def test_two_theta_axis_from_start_metadata_and_options(predictor):
    pats = _patterns(2)
    # no configuration: the x axis must come from options
    x, docs = _manual_run(events=pats, x_unit="tth", config=False)
    with LiveSizer(predictor) as sizer:
        out = _feed(sizer, docs)
    _, events = split(out)
    assert [e["data"]["status"] for e in events] == ["error", "error"]
    assert "no x axis" in events[0]["data"]["message"]
    # 2theta axis in configuration, wavelength from the start document
    x, docs = _manual_run(events=pats, x_unit="tth", md={"wavelength": 0.56})
    docs[1][1]["configuration"]["det"]["data"].pop("det_wavelength")
    with LiveSizer(predictor) as sizer:
        out = _feed(sizer, docs)
    desc, events = split(out)
    assert desc[0]["configuration"][SIZER_OBJECT]["data"]["wavelength"] == 0.56
    assert all(e["data"]["status"] != "error" for e in events)
    # the same patterns on a Q axis give the same numbers (same Q values)
    _, docs_q = _manual_run(events=pats, x_unit="q")
    with LiveSizer(predictor) as sizer:
        out_q = _feed(sizer, docs_q)
    _, events_q = split(out_q)
    for a, b in zip(events, events_q):
        assert a["data"]["size_nm"] == pytest.approx(b["data"]["size_nm"], abs=1e-5)
    # a wrong wavelength option: the axis cannot be standardized -> errors, with the reason
    _, docs = _manual_run(events=pats, x_unit="tth")
    with LiveSizer(predictor, wavelength=5.0) as sizer:
        out = _feed(sizer, docs)
    _, events = split(out)
    assert [e["data"]["status"] for e in events] == ["error", "error"]
    assert "cannot be used" in events[0]["data"]["message"]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_run_without_pattern_warns_and_forwards(predictor):
    from bluesky.plans import count
    from ophyd.sim import det

    records = _Records()
    log = logging.getLogger("qdots_bluesky.callbacks")  # the sizer and its per-run state log below it
    log.addHandler(records)
    RE = RunEngine({})
    try:
        with LiveSizer(predictor) as sizer:
            out = []
            sizer.subscribe(lambda n, d: out.append((n, d)))
            RE.subscribe(sizer)
            RE(count([det], 3))
    finally:
        log.removeHandler(records)
    assert [n for n, _ in out] == ["start", "descriptor", "event", "event", "event", "stop"]
    assert STREAM_NAME not in out[-1][1]["num_events"]
    assert sum("no stream has a 1D array" in m for m in records.messages) == 1


def test_downstream_failure_does_not_reach_the_runengine(predictor):
    def broken(name, doc):
        raise RuntimeError("downstream is broken")

    sizer = LiveSizer(predictor, callbacks=[broken])
    try:
        direct, out = run_scan(sizer, num=3)
    finally:
        sizer.close()
    assert direct[-1][1]["exit_status"] == "success"
    assert sizer.stats["downstream_errors"] >= 3 + 3 + 3  # start, 2 descriptors, 3+3 events, stop
    assert len(split(out)[1]) == 3


def test_stop_waits_for_slow_inference_and_caller_emission(predictor):
    class Slow:
        def __init__(self, p):
            self.p = p

        def __getattr__(self, name):
            return getattr(self.p, name)

        def predict_batch(self, x, Y, **options):
            time.sleep(0.05)
            return self.p.predict_batch(x, Y, **options)

    threads = set()
    sizer = LiveSizer(Slow(predictor), emit_from="caller", chunk_size=2, max_batch=2,
                      callbacks=[lambda n, d: threads.add(threading.get_ident()) if n == "event" else None])
    caller = set()
    original = sizer.__call__

    class Spy:  # records the thread the RunEngine calls the sizer from
        def __call__(self, name, doc):
            caller.add(threading.get_ident())
            return original(name, doc)

    try:
        reactor, det = fast_beamline()
        RE = RunEngine({})
        use_virtual_time(RE, reactor)
        out = []
        sizer.subscribe(lambda n, d: out.append((n, d)))
        RE.subscribe(Spy())
        RE(insitu_synthesis(det, reactor, 7, 1.0))
    finally:
        sizer.close()
    _, events = split(out)
    assert len(events) == 7 and out[-1][0] == "stop" and out[-1][1]["num_events"][STREAM_NAME] == 7
    assert len(caller) == 1 and threads == caller  # emitted from the RunEngine's (the caller's) thread


def test_stop_timeout_records_errors(predictor):
    gate = threading.Event()

    class Stuck:
        def __init__(self, p):
            self.p = p

        def __getattr__(self, name):
            return getattr(self.p, name)

        def predict_batch(self, x, Y, **options):
            gate.wait(10)
            return self.p.predict_batch(x, Y, **options)

    pats = _patterns(3)
    _, docs = _manual_run(events=pats)
    sizer = LiveSizer(Stuck(predictor), stop_timeout=0.3)
    try:
        out = _feed(sizer, docs)
    finally:
        gate.set()
        sizer.close()
    _, events = split(out)
    assert len(events) == 3 and all(e["data"]["status"] == "error" for e in events)
    assert "timed out" in events[0]["data"]["message"]
    assert out[-1][0] == "stop" and out[-1][1]["num_events"][STREAM_NAME] == 3
    assert len(split(out)[1]) == 3  # nothing arrives after the stop (close() has joined the worker)


def test_options_are_checked(predictor):
    with pytest.raises(ValueError, match="x_unit"):
        LiveSizer(predictor, x_unit="radians")
    with pytest.raises(ValueError, match="emit_from"):
        LiveSizer(predictor, emit_from="elsewhere")
    with pytest.raises(ValueError, match="chunk_size"):
        LiveSizer(predictor, chunk_size=0)
    with pytest.raises(ValueError, match="wavelength"):
        LiveSizer(predictor, wavelength=-1.0)


def test_replay_of_documents_uses_the_stored_chunk_size(predictor):
    from qdots_bluesky.callbacks.replay import replay_run

    pats = _patterns(7, seed=9)
    _, docs = _manual_run(events=pats)
    with LiveSizer(predictor, chunk_size=3) as live:
        out = _feed(live, docs)
    _, live_events = split(out)
    with LiveSizer(predictor, chunk_size=8) as sizer:  # replays the sized documents (stream replaced)
        result = replay_run(out, sizer)
        assert sizer.chunk_size == 8
    assert [e["data"]["size_nm"] for e in result.events] == [e["data"]["size_nm"] for e in live_events]
    assert result.descriptor["configuration"][SIZER_OBJECT]["data"]["chunk_size"] == 3
    assert result.new_uid is None and len(result.table()["size_nm"]) == 7


def test_internal_failure_forwards_each_document_once(predictor):
    pats = _patterns(3)
    _, docs = _manual_run(events=pats)
    with LiveSizer(predictor) as sizer:
        def broken(run, event):
            raise RuntimeError("bug")

        sizer._submit = broken
        out = _feed(sizer, docs)
    names = [n for n, d in out if not (n == "descriptor" and d["name"] == STREAM_NAME)]
    assert names == ["start", "descriptor", "event", "event", "event", "stop"]
