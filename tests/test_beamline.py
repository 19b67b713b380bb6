"""Simulated beamline devices (sim/beamline/devices.py): reactor and WAXS detector (coarse grids, few clusters)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from ophyd.utils import ReadOnlyError

from qdots_bluesky.sim.beamline import (
    SynthesisReactor,
    WaxsDetector,
    make_simulated_beamline,
)
from qdots_bluesky.sim.beamline.devices import _cluster_patterns
from qdots_bluesky.sim.physics.cache import series_histogram
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.solvents import solvent_pattern

COARSE_STEP = 0.0168  # deg, 4971 points over 0.5-84 deg
MAX_D = 12.0  # nm: clusters n = 1..25


@pytest.fixture
def reactor():
    return SynthesisReactor(name="reactor", clock="manual", temperature=120.0)


@pytest.fixture
def detector(reactor):
    return WaxsDetector(name="waxs", reactor=reactor, tth_step=COARSE_STEP, max_diameter_nm=MAX_D, seed=0)


def _fwhm_200(q, y):
    """FWHM (1/A) of the PbS (200) peak near Q = 2.12, from its high-Q half above the local minimum."""
    window = (q > 1.95) & (q < 2.35)
    i = int(np.argmax(np.where(window, y, -np.inf)))
    base = np.min(np.where((q > q[i]) & (q < 2.9), y, np.inf))
    half = base + (y[i] - base) / 2
    j = i
    while y[j] > half:
        j += 1
    q_half = q[j - 1] + (half - y[j - 1]) * (q[j] - q[j - 1]) / (y[j] - y[j - 1])
    return q[i], 2.0 * (q_half - q[i])


# ------------------------------------------------------------------------------------------------
# reactor
# ------------------------------------------------------------------------------------------------
def test_reactor_manual_clock_matches_law(reactor):
    law = reactor.growth_law
    assert reactor.concentration.get() == 0.0 and reactor.elapsed.get() == 0.0
    reactor.advance(500)  # nothing happens before the injection
    assert reactor.elapsed.get() == 0.0
    reactor.inject()
    reactor.advance(600.0)
    expected = law.trajectory([600.0], 120.0, 30.0)
    assert reactor.elapsed.get() == 600.0
    assert reactor.true_size.get() == pytest.approx(expected["mean_nm"][0], rel=1e-12)
    assert reactor.true_dispersion.get() == pytest.approx(expected["dispersion"][0], rel=1e-12)
    assert reactor.concentration.get() == pytest.approx(expected["fraction"][0], rel=1e-12)
    # a temperature step is integrated piecewise from the moment it is set
    reactor.temperature.set(150.0).wait(2)
    reactor.advance(300.0)
    state = law.evolve(law.evolve(law.start(120.0, 30.0), 600.0, 120.0), 300.0, 150.0)
    assert reactor.true_size.get() == pytest.approx(law.observe(state).mean_nm, rel=1e-12)
    reactor.injection.set(1).wait(2)  # a new injection restarts the clock
    assert reactor.elapsed.get() == 0.0 and reactor.true_size.get() == pytest.approx(2.0)


def test_reactor_validation_and_read_only(reactor):
    with pytest.raises(ValueError, match="outside the accepted range"):
        reactor.temperature.set(500.0)
    with pytest.raises(ValueError):
        reactor.precursor.set(0.0)
    with pytest.raises(ReadOnlyError):
        reactor.true_size.put(5.0)
    with pytest.raises(ValueError):
        reactor.advance(-1.0)
    with pytest.raises(ValueError):
        SynthesisReactor(name="r", clock="sundial")
    desc = reactor.describe()
    assert desc["reactor_true_size"]["units"] == "nm" and desc["reactor_elapsed"]["units"] == "s"
    assert desc["reactor_temperature"]["units"] == "degC"
    assert set(reactor.read_configuration()) == {"reactor_precursor", "reactor_time_scale"}


def test_reactor_real_clock_scales_wall_time():
    # simulated time = time_scale x the wall time since injection, whatever that wall time was
    r = SynthesisReactor(name="r", clock="real", time_scale=1000.0, temperature=150.0)
    before = time.monotonic()
    r.inject()
    after_inject = time.monotonic()
    while time.monotonic() == after_inject:  # let the monotonic clock tick at least once
        pass
    before_trigger = time.monotonic()
    r.trigger().wait(1)
    after = time.monotonic()
    elapsed = r.elapsed.get()
    assert 1000.0 * (before_trigger - after_inject) <= elapsed <= 1000.0 * (after - before)
    assert elapsed > 0.0


# ------------------------------------------------------------------------------------------------
# detector
# ------------------------------------------------------------------------------------------------
def test_detector_cluster_patterns_equal_debye_pattern():
    pbs = get_structure("PbS")
    q = np.linspace(0.5, 14.0, 900)
    n = np.arange(1, 9)
    patterns = _cluster_patterns("PbS", q, 0.5646, 0.003, n, progress=False)
    for k in (1, 4, 8):
        ref = debye_pattern(series_histogram(pbs, k), q, 0.5646, 0.003).total
        np.testing.assert_allclose(patterns[k - 1], ref, rtol=1e-9, atol=1e-9 * ref.max())


def test_detector_describe_and_configuration(detector):
    desc = detector.describe()
    assert list(desc) == ["waxs_intensity"]
    npts = detector.tth.get().size
    assert npts == 4971
    key = desc["waxs_intensity"]
    assert key["dtype"] == "array" and key["shape"] == [npts] and key["dtype_numpy"] == "<f8" and key["units"] == "counts"
    conf = detector.describe_configuration()
    assert {"waxs_tth", "waxs_wavelength", "waxs_x_unit", "waxs_solvent", "waxs_exposure", "waxs_count_rate"} <= set(conf)
    assert "waxs_q" not in conf
    assert conf["waxs_tth"]["shape"] == [npts] and conf["waxs_tth"]["units"] == "deg"
    assert conf["waxs_wavelength"]["units"] == "A" and conf["waxs_exposure"]["units"] == "s"
    values = detector.read_configuration()
    assert set(values) == set(conf)
    assert values["waxs_x_unit"]["value"] == "tth" and values["waxs_wavelength"]["value"] == pytest.approx(0.5646)
    assert values["waxs_tth"]["value"][0] == pytest.approx(0.5) and values["waxs_tth"]["value"][-1] == pytest.approx(84.0, abs=0.02)
    detector.trigger().wait(5)
    reading = detector.read()["waxs_intensity"]["value"]
    assert reading.shape == (npts,) and reading.dtype == np.float64


def test_detector_q_grid():
    r = SynthesisReactor(name="r", clock="manual")
    d = WaxsDetector(name="det", reactor=r, x_unit="q", q_points=1251, max_diameter_nm=6.0, seed=1)
    conf = d.describe_configuration()
    assert "det_q" in conf and "det_tth" not in conf
    assert conf["det_q"]["shape"] == [1251] and conf["det_q"]["units"] == "1/A"
    q = d.read_configuration()["det_q"]["value"]
    assert q[0] == pytest.approx(1.0) and q[-1] == pytest.approx(15.0)
    assert d.qdots_metadata()["qdots_x_key"] == "det_q"
    with pytest.raises(ValueError, match="x_unit"):
        WaxsDetector(name="bad", reactor=r, x_unit="d", max_diameter_nm=3.0)
    with pytest.raises(ValueError, match="accepted"):
        d.solvent.set("water")


def test_trigger_completes_and_uses_reactor_state(detector, reactor):
    reactor.inject()
    for _ in range(3):
        reactor.advance(120.0)
        status = detector.trigger()
        status.wait(5)
        assert status.success
    truth = reactor.state()
    detector.noise.set(False).wait(1)
    detector.trigger().wait(5)
    expected = detector.expected_counts(truth.mean_nm, truth.dispersion, truth.fraction)
    np.testing.assert_allclose(detector.read()["waxs_intensity"]["value"], expected)
    assert reactor.true_size.get() == truth.mean_nm  # trigger refreshed the reactor's signals


def test_bragg_peaks_narrow_as_dots_grow(detector):
    q = detector.q.get()
    widths = []
    for size in (3.0, 4.0, 5.0, 6.0, 8.0):
        peak, fwhm = _fwhm_200(q, detector.nanocrystal_pattern(size, 0.1))
        assert peak == pytest.approx(2.117, abs=0.02)  # PbS (200): 4 pi / a
        assert 0.85 < fwhm * size * 10.0 / (2 * np.pi) < 1.25  # Scherrer, K ~ 1.07 for spheres
        widths.append(fwhm)
    assert np.all(np.diff(widths) < 0)


def test_peaks_narrow_along_a_synthesis(detector, reactor):
    reactor.inject()
    q = detector.q.get()
    detector.noise.set(False).wait(1)
    widths, sizes = [], []
    for _ in range(4):
        reactor.advance(600.0)
        detector.trigger().wait(5)
        widths.append(_fwhm_200(q, detector.read()["waxs_intensity"]["value"])[1])
        sizes.append(reactor.true_size.get())
    assert np.all(np.diff(sizes) > 0) and np.all(np.diff(widths) < 0)


def test_zero_concentration_gives_the_solvent(detector, reactor):
    detector.noise.set(False).wait(1)
    detector.trigger().wait(5)  # not injected: no dots
    assert reactor.concentration.get() == 0.0
    counts = detector.read()["waxs_intensity"]["value"]
    solvent = solvent_pattern("hexane", detector.q.get(), 0.5646)
    np.testing.assert_allclose(counts / counts.max(), solvent / solvent.max(), rtol=1e-10)
    assert counts.max() == pytest.approx(1e4)  # count_rate x exposure on the strongest point
    # more dots: the pattern moves from the solvent towards the nanocrystals
    nc = detector.nanocrystal_pattern(5.0, 0.1)
    corr = [np.corrcoef(detector.expected_counts(5.0, 0.1, f), nc)[0, 1] for f in (0.1, 0.4, 0.9)]
    assert corr[0] < corr[1] < corr[2]


def test_noise_grows_at_lower_exposure(detector):
    rel = []
    for exposure in (0.01, 1.0, 100.0):
        detector.exposure.set(exposure).wait(1)
        lam = detector.expected_counts(5.0, 0.1, 0.4)
        counts = detector.simulate(5.0, 0.1, 0.4)
        assert np.all(counts == np.round(counts)) and np.all(counts >= 0)
        assert np.mean((counts - lam) ** 2 / np.maximum(lam, 1e-9)) == pytest.approx(1.0, abs=0.15)  # Poisson
        rel.append(np.std((counts - lam) / lam.max()))
    assert rel[0] > rel[1] > rel[2]
    detector.noise.set(False).wait(1)
    np.testing.assert_array_equal(detector.simulate(5.0, 0.1, 0.4), detector.expected_counts(5.0, 0.1, 0.4))


def test_seeded_detectors_reproduce():
    def run(seed):
        r = SynthesisReactor(name="r", clock="manual", temperature=140.0)
        d = WaxsDetector(name="w", reactor=r, tth_step=COARSE_STEP, max_diameter_nm=MAX_D, seed=seed)
        r.inject()
        out = []
        for _ in range(3):
            r.advance(300.0)
            d.trigger().wait(5)
            out.append(d.read()["w_intensity"]["value"].copy())
        return np.array(out)

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_make_simulated_beamline_defaults():
    reactor, det = make_simulated_beamline(clock="manual", tth_step=COARSE_STEP, max_diameter_nm=6.0, progress=False)
    assert reactor.name == "reactor" and det.name == "waxs" and det.reactor is reactor
    assert det.wavelength.get() == pytest.approx(0.5646) and det.solvent.get() == "hexane"
    assert not reactor.injected
    assert det.precompute_seconds is not None
    with pytest.raises(ValueError, match="beyond the largest simulated cluster"):
        det.nanocrystal_pattern(9.0, 0.1)
