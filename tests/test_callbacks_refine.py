"""LiveSizer(refine=True): refined keys in the qdots_size stream, computed on the worker thread; a worker behind
the scan refines only the newest pattern of each batch and nothing is lost."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from qdots_bluesky.callbacks import schema
from qdots_bluesky.callbacks.live_sizer import LiveSizer
from qdots_bluesky.callbacks.refining import LiveRefiner, make_refiner, pick_newest
from qdots_bluesky.predictor import Predictor

import _callbacks_helpers
from _callbacks_helpers import split

#: A small basis and Q range keep the refinements fast.
SMALL = dict(max_diameter_nm=10.0, q_range=(1.0, 8.0), profile=False)


def run_scan(sizer, num: int, delay: float = 5.0):
    """A simulated synthesis (dots of 2 to ~6.5 nm) with strong counts (1e6 on the strongest point: at the
    default 1e4 the dots' peaks in Q 1-8 1/A hold ~20 counts a point) with ``sizer`` subscribed."""
    return _callbacks_helpers.run_scan(sizer, num, delay, count_rate=1e6)


@pytest.fixture
def predictor(bundle):
    return Predictor.from_bundle(bundle, device="cpu")


def test_refined_keys_in_the_stream(predictor):
    sizer = LiveSizer(predictor, refine=SMALL)
    try:
        direct, out = run_scan(sizer, num=4)
    finally:
        sizer.close()
    assert direct[-1][1]["exit_status"] == "success"
    (desc,), events = split(out)
    keys = desc["data_keys"]
    assert desc["configuration"][schema.SIZER_OBJECT]["data"]["refine_habit"] == "sphere"
    for key, (_, units, _) in schema.REFINED_KEYS.items():
        assert keys[key]["units"] == units and keys[key]["dtype"] == "number"
    assert keys["refined_size_nm"]["units"] == "nm" and keys["refined"]["dtype"] == "integer"
    assert len(events) == 4 and sorted(e["data"]["source_seq_num"] for e in events) == [1, 2, 3, 4]
    refined = [e["data"] for e in events if e["data"]["refined"] == 1]
    assert refined, "the newest pattern of every batch is refined"
    assert any(np.isfinite(d["refined_size_nm"]) for d in refined[1:] or refined)  # the first: few dots yet
    for d in refined:
        if np.isfinite(d["refined_size_nm"]):
            for key in ("refined_size_std_nm", "refined_size_volume_nm", "refined_dispersion", "refined_strain",
                        "refined_strain_std", "rwp"):
                assert np.isfinite(d[key]), key
            assert d["refined_size_std_nm"] > 0 and 0 < d["rwp"] < 1
        assert np.isfinite(d["rwp"])  # also where the refinement found no dots
    for e in events:
        if e["data"]["refined"] == 0:
            assert all(np.isnan(e["data"][k]) for k in schema.REFINED_KEYS) and e["data"]["refined_flags"] == ""
    assert keys["refined_flags"]["dtype"] == "string"
    for d in refined:  # the refinement's status where it found no dots, and its flags
        assert isinstance(d["refined_flags"], str)
        assert ("no_nanocrystals" in d["refined_flags"]) == (not np.isfinite(d["refined_size_nm"]))


class _GatedRefiner(LiveRefiner):
    """Holds its first refinement until ``release`` is set: the scan runs on and the queue fills meanwhile."""

    release: threading.Event

    def refine(self, *args, **kwargs):
        if not self.release.is_set():
            self.release.wait(60.0)
        return super().refine(*args, **kwargs)


def test_a_refiner_behind_the_scan_refines_the_newest_and_loses_nothing(predictor):
    refiner = _GatedRefiner(**SMALL)
    refiner.release = threading.Event()
    sizer = LiveSizer(predictor, refine=refiner)
    watch_done = threading.Event()

    def watch():  # let the first refinement go once three events wait behind it
        while not watch_done.is_set() and sizer._worker.queued < 3:
            watch_done.wait(0.01)
        refiner.release.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        direct, out = run_scan(sizer, num=6)
    finally:
        watch_done.set()
        refiner.release.set()
        sizer.close()
    assert direct[-1][1]["exit_status"] == "success"
    _, events = split(out)
    assert sorted(e["data"]["source_seq_num"] for e in events) == list(range(1, 7))  # nothing lost
    flags = {e["data"]["source_seq_num"]: e["data"]["refined"] for e in events}
    assert flags[6] == 1  # the newest of the last batch
    assert 0 in flags.values()  # a batch of several: only its newest refined
    assert {e["data"]["status"] for e in events} <= {"ok", "flagged"}


def test_refine_options_and_picking():
    assert make_refiner(False) is None and make_refiner(None) is None
    assert make_refiner(True).material == "PbS"
    assert make_refiner({"material": "CdSe"}).material == "CdSe"
    with pytest.raises(ValueError, match="accepted"):
        make_refiner({"colour": "red"})
    with pytest.raises(ValueError, match="accepted"):
        make_refiner("yes")
    assert make_refiner({"dispersion": 0.1}).dispersion == 0.1
    assert make_refiner({"habit": "Truncated_Octahedron"}).habit == "truncated-octahedron"
    assert make_refiner({"habit": None}).habit == "sphere"
    with pytest.raises(ValueError, match="habit='auto' refines every habit"):
        make_refiner({"habit": "auto"})
    with pytest.raises(ValueError, match="accepted: sphere, octahedron"):
        make_refiner({"habit": "prism"})
    for bad in (0.9, "0.1", True):
        with pytest.raises(ValueError, match="dispersion=.*accepted: 0.02 to 0.45"):
            make_refiner({"dispersion": bad})
    a, b = object(), object()
    assert pick_newest([a, a, b, a, b], [True, True, True, True, False]) == {2, 3}
    assert pick_newest([a, a], [False, False]) == set()
    # without refine the stream has no refined keys; with it, unrefined events hold NaN and refined = 0
    assert "refined_size_nm" not in schema.output_keys([2.0, 3.0])
    data = schema.event_data("broken", 2, seq_num=1, uid="u", latency_ms=1.0, refine=True)
    assert data["refined"] == 0 and np.isnan(data["refined_size_nm"]) and np.isnan(data["rwp"])
    assert data["refined_flags"] == ""
    done = schema.event_data("broken", 2, seq_num=1, uid="u", latency_ms=1.0, refine=True,
                             refinement={"status": "no_nanocrystals", "flags": ["poor_fit"], "rwp": 0.2})
    assert done["refined"] == 1 and done["refined_flags"] == "no_nanocrystals,poor_fit" and done["rwp"] == 0.2


def test_refinement_figures_on_request(predictor, tmp_path):
    sizer = LiveSizer(predictor, refine=dict(SMALL, figure_dir=tmp_path / "figs", figure_every=2))
    with pytest.raises(ValueError, match="no pattern has been refined yet"):
        sizer.plot_refinement(tmp_path / "none.png")
    try:
        _, out = run_scan(sizer, num=4)
    finally:
        sizer.close()
    _, events = split(out)
    refined = sorted(e["data"]["source_seq_num"] for e in events if e["data"]["refined"] == 1)
    written = sorted((tmp_path / "figs").glob("refinement_event*.png"))
    # the first refined pattern and every second one after it, named by event
    assert len(written) == (len(refined) + 1) // 2
    assert written[0].name.startswith(f"refinement_event{refined[0]:05d}_")
    path = sizer.plot_refinement(tmp_path / "latest.png")  # the newest refined pattern, when asked
    assert path.stat().st_size > 10_000
    plain = LiveSizer(predictor)
    try:
        with pytest.raises(ValueError, match="does not refine"):
            plain.plot_refinement(tmp_path / "x.png")
    finally:
        plain.close()


def test_figure_options_checked():
    with pytest.raises(ValueError, match="figure_every"):
        LiveRefiner(figure_every=-1)
    with pytest.raises(ValueError, match="needs figure_dir"):
        LiveRefiner(figure_every=3)
    assert LiveRefiner().figure_every == 0  # no figures unless asked
