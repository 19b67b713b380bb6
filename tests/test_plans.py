"""insitu_synthesis under a real RunEngine with the simulated reactor and WAXS detector."""
from __future__ import annotations

import numpy as np
import pytest
from bluesky import RunEngine

from qdots_bluesky.plans import detector_metadata, insitu_synthesis
from qdots_bluesky.sim.beamline import SynthesisReactor, WaxsDetector, make_simulated_beamline, use_virtual_time

COARSE_STEP = 0.0168
MAX_D = 12.0


def _beamline(seed=0, clock="manual", time_scale=60.0, x_unit="tth"):
    return make_simulated_beamline(clock=clock, time_scale=time_scale, temperature=120.0, x_unit=x_unit,
                                   tth_step=COARSE_STEP, q_points=1251, max_diameter_nm=MAX_D, seed=seed,
                                   progress=False)


def _run(plan, re=None):
    re = re or RunEngine({})
    docs = []
    re(plan, lambda name, doc: docs.append((name, doc)))
    return docs


def _events(docs, stream="primary"):
    descriptors = {d["uid"]: d for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in descriptors], list(descriptors.values())


def test_insitu_synthesis_documents():
    reactor, det = _beamline()
    re = RunEngine({})
    use_virtual_time(re, reactor)
    num, delay = 6, 5.0
    docs = _run(insitu_synthesis(det, reactor, num, delay, temperature=130.0, md={"operator": "sim"}), re)
    start = next(d for n, d in docs if n == "start")
    assert start["plan_name"] == "insitu_synthesis" and start["operator"] == "sim"
    assert start["qdots_pattern_key"] == "waxs_intensity" and start["qdots_x_key"] == "waxs_tth"
    assert start["x_unit"] == "tth" and start["wavelength"] == pytest.approx(0.5646)
    assert start["solvent"] == "hexane" and start["sample"]["material"] == "PbS"
    assert start["num_points"] == num and start["detectors"] == ["reactor", "waxs"]
    assert start["reactor_temperature"] == 130.0

    events, descriptors = _events(docs)
    assert len(events) == num and len(descriptors) == 1
    desc = descriptors[0]
    npts = det.tth.get().size
    key = desc["data_keys"]["waxs_intensity"]
    assert key["dtype"] == "array" and key["shape"] == [npts] and key["dtype_numpy"] == "<f8"
    for k in ("reactor_true_size", "reactor_true_dispersion", "reactor_concentration", "reactor_elapsed"):
        assert k in desc["data_keys"]
    conf = desc["configuration"]["waxs"]
    assert {"waxs_tth", "waxs_wavelength", "waxs_x_unit", "waxs_solvent", "waxs_exposure"} <= set(conf["data"])
    assert np.asarray(conf["data"]["waxs_tth"]).shape == (npts,)
    assert conf["data_keys"]["waxs_tth"]["units"] == "deg"
    assert "reactor_precursor" in desc["configuration"]["reactor"]["data"]

    intensity = np.array([e["data"]["waxs_intensity"] for e in events])
    assert intensity.shape == (num, npts)
    elapsed = [e["data"]["reactor_elapsed"] for e in events]
    assert elapsed == pytest.approx([i * delay * 60.0 for i in range(num)])  # virtual time is exact
    sizes = [e["data"]["reactor_true_size"] for e in events]
    assert sizes[0] == pytest.approx(2.0) and np.all(np.diff(sizes) > 0)
    assert [e["data"]["reactor_temperature"] for e in events] == [130.0] * num
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == num


def test_seeded_runs_reproduce():
    def run(seed):
        reactor, det = _beamline(seed=seed)
        re = RunEngine({})
        use_virtual_time(re, reactor)
        events, _ = _events(_run(insitu_synthesis(det, reactor, 4, 10.0), re))
        return (np.array([e["data"]["waxs_intensity"] for e in events]),
                [e["data"]["reactor_true_size"] for e in events])

    (a, sa), (b, sb), (c, _) = run(11), run(11), run(12)
    np.testing.assert_array_equal(a, b)
    assert sa == sb
    assert not np.array_equal(a, c)


def test_real_clock_run_grows():
    reactor, det = _beamline(clock="real", time_scale=2000.0)
    events, _ = _events(_run(insitu_synthesis(det, reactor, 4, 0.05, temperature=120.0)))
    assert len(events) == 4
    elapsed = [e["data"]["reactor_elapsed"] for e in events]
    sizes = [e["data"]["reactor_true_size"] for e in events]
    assert np.all(np.diff(elapsed) >= 0.05 * 2000.0 * 0.9)
    assert np.all(np.diff(sizes) > 0)


def test_q_axis_metadata_and_validation():
    reactor, det = _beamline(x_unit="q")
    md = detector_metadata(det)
    assert md["qdots_x_key"] == "waxs_q" and md["x_unit"] == "q"
    with pytest.raises(ValueError, match="num"):
        list(insitu_synthesis(det, reactor, 0, 1.0))
    with pytest.raises(ValueError, match="delay"):
        list(insitu_synthesis(det, reactor, 2, -1.0))


def test_virtual_time_needs_manual_reactors():
    reactor = SynthesisReactor(name="r", clock="real")
    with pytest.raises(ValueError, match="manual"):
        use_virtual_time(RunEngine({}), reactor)


def test_generic_detector_metadata():
    reactor = SynthesisReactor(name="r", clock="manual")
    det = WaxsDetector(name="mythen", reactor=reactor, tth_step=0.1, max_diameter_nm=4.0, precompute=False)
    md = detector_metadata(det)
    assert md["qdots_pattern_key"] == "mythen_intensity" and md["wavelength_units"] == "A"
    assert det.precompute_seconds is None
