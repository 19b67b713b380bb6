"""The simulated gold synthesis beamline (issue 18): growth law, structure vs size, SAXS + WAXS detector, RunEngine.

Small and fast: one detector over 0.8-4.5 nm clusters on a 500-point Q grid (0.02-3.5 1/A), shared by the module.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from ase.data import atomic_numbers, reference_states
from bluesky import RunEngine
from bluesky.plans import count

from qdots_bluesky.callbacks.discovery import find_source
from qdots_bluesky.plans import insitu_synthesis
from qdots_bluesky.sim.beamline import use_virtual_time
from qdots_bluesky.sim.beamline.gold_devices import GoldSynthesisReactor, SaxsWaxsDetector, gold_synthesis_devices
from qdots_bluesky.sim.beamline.gold_growth import STRUCTURES, GoldGrowthLaw, GoldStructureLaw
from qdots_bluesky.sim.physics.metal_basis import saxs_waxs_q

Q = saxs_waxs_q(0.02, 3.5, 500)
D_RANGE = (0.8, 4.5)
AU_A = reference_states[atomic_numbers["Au"]]["a"]
Q111 = 2 * math.pi * math.sqrt(3.0) / AU_A  # 2.667 1/A


@pytest.fixture(scope="module")
def beamline():
    reactor, detector = gold_synthesis_devices(clock="manual", q=Q, d_min_nm=D_RANGE[0], d_max_nm=D_RANGE[1],
                                               decahedron_q_over_p=(0.5,), seed=1, noise=False)
    return reactor, detector


def _fresh(beamline, noise=False):
    """The module's detector on a new, not injected reactor (the bases are shared; no rebuild)."""
    _, det = beamline
    reactor = GoldSynthesisReactor(name="reactor", clock="manual")
    detector = SaxsWaxsDetector(name="saxswaxs", reactor=reactor, q=Q, d_min_nm=D_RANGE[0], d_max_nm=D_RANGE[1],
                                decahedron_q_over_p=(0.5,), seed=2, noise=noise)
    assert [b.params for b, _ in detector.bases()] == [b.params for b, _ in det.bases()]
    return reactor, detector


# --------------------------------------------------------------------------------------------
# growth law
# --------------------------------------------------------------------------------------------
def test_induction_then_monotone_growth_from_nuclei_to_about_8_nm_in_an_hour():
    law = GoldGrowthLaw()
    t = np.linspace(0.0, 3600.0, 721)
    tr = law.trajectory(t, 80.0, 10.0)
    before = t < law.induction_s
    assert not tr["nucleated"][before].any() and tr["nucleated"][~before].all()
    assert np.all(tr["conversion"][before] == 0.0)
    assert np.all(np.diff(tr["mean_nm"]) >= 0) and np.all(np.diff(tr["mean_nm"][~before]) > 0)
    assert np.all(np.diff(tr["conversion"]) >= 0)
    assert tr["mean_nm"][~before][0] == pytest.approx(1.2, abs=0.01)
    assert 7.0 < tr["mean_nm"][-1] < 9.0
    s = tr["dispersion"][~before]
    k = int(np.argmin(s))
    assert 0 < k < s.size - 1 and np.all(np.diff(s[:k + 1]) <= 0) and np.all(np.diff(s[k:]) >= 0)  # focus, defocus
    assert 0.05 <= s.min() < 0.07 and s[0] > 0.17 and 0.10 < s[-1] <= 0.20


def test_evolution_is_exact_over_steps_and_hotter_is_sooner_and_faster():
    law = GoldGrowthLaw()
    s = law.start(80.0, 10.0)
    for dt in (13.0, 47.0, 0.5, 300.0, 839.5):  # across the burst at 60 s
        s = law.evolve(s, dt, 80.0)
    one = law.evolve(law.start(80.0, 10.0), 1200.0, 80.0)
    assert law.observe(s).mean_nm == pytest.approx(law.observe(one).mean_nm, rel=1e-12)
    assert law.observe(s).dispersion == pytest.approx(law.observe(one).dispersion, rel=1e-12)
    assert law.induction_time(100.0) < law.induction_s < law.induction_time(60.0)
    hot, cold = (law.trajectory([600.0], temp, 10.0)["mean_nm"][0] for temp in (100.0, 60.0))
    assert hot > law.trajectory([600.0], 80.0, 10.0)["mean_nm"][0] > cold
    with pytest.raises(ValueError, match="accepted"):
        law.evolve(s, -1.0, 80.0)
    with pytest.raises(ValueError, match="accepted"):
        GoldGrowthLaw(induction_s=-5.0)


@pytest.mark.parametrize("d1, d2, width", [(2.0, 5.0, 0.15), (1.5, 3.5, 0.1)])
def test_structure_fractions_sum_to_one_and_cross_over_at_the_set_diameters(d1, d2, width):
    law = GoldStructureLaw(d1, d2, width)
    d = np.geomspace(0.8, 12.0, 400)
    f = law.fractions(d)
    assert f.shape == (d.size, 3) and np.all(f >= 0) and np.allclose(f.sum(axis=1), 1.0)
    ico, deca, fcc = f.T
    assert np.all(np.diff(ico) < 0) and np.all(np.diff(fcc) > 0)
    f1, f2 = law.fractions(d1), law.fractions(d2)
    assert f1[0] == pytest.approx(f1[1], rel=1e-12) and f2[1] == pytest.approx(f2[2], rel=1e-12)
    assert np.argmax(law.fractions(0.8 * d1)) == 0
    assert np.argmax(law.fractions(math.sqrt(d1 * d2))) == 1
    assert np.argmax(law.fractions(1.25 * d2)) == 2
    with pytest.raises(ValueError, match="accepted"):
        GoldStructureLaw(d2, d1)


def test_reactor_follows_the_law_across_a_temperature_change_and_publishes_the_truth():
    reactor = GoldSynthesisReactor(name="reactor", clock="manual", temperature=80.0, precursor=10.0)
    assert not reactor.nucleated.get() and reactor.concentration.get() == 0.0
    reactor.inject()
    reactor.advance(30.0)
    reactor.temperature.set(100.0).wait(5)
    obs = reactor.advance(200.0)
    law = reactor.growth_law
    expected = law.observe(law.evolve(law.evolve(law.start(80.0, 10.0), 30.0, 80.0), 200.0, 100.0))
    assert obs == expected
    assert reactor.true_size.get() == expected.mean_nm and reactor.elapsed.get() == 230.0
    assert [reactor.true_icosahedron.get(), reactor.true_decahedron.get(), reactor.true_fcc.get()] == list(obs.fractions)
    assert reactor.concentration.get() == pytest.approx(10.0 * obs.conversion)
    with pytest.raises(ValueError, match="accepted"):
        reactor.temperature.set(150.0)  # toluene boils at 111 C


# --------------------------------------------------------------------------------------------
# detector physics
# --------------------------------------------------------------------------------------------
def _particles(detector, mean_nm, dispersion, fractions):
    """Noise-free particle counts (counts minus the blank) at full conversion of the reference precursor."""
    return detector.expected_counts(mean_nm, dispersion, fractions, 1.0) - detector.blank.get()


@pytest.mark.parametrize("structure, mean_nm, dispersion", [("icosahedron", 2.0, 0.05), ("decahedron", 3.0, 0.1),
                                                             ("fcc", 3.5, 0.05), ("fcc", 2.5, 0.15)])
def test_saxs_guinier_slope_gives_the_size_of_the_population(beamline, structure, mean_nm, dispersion):
    _, detector = beamline
    k = STRUCTURES.index(structure)
    y = _particles(detector, mean_nm, dispersion, np.eye(3)[k])
    # the z-average of the clusters' equal-volume spheres: Rg^2 = sum w N^2 (3/5) R^2 / sum w N^2
    basis = detector.bases()[k][0]
    w = basis.weights(np.array([mean_nm]), np.array([dispersion]))[0] * basis.n_atoms.astype(float) ** 2
    rg_expected = math.sqrt(0.6 * np.sum(w * (5.0 * basis.diameter_nm) ** 2) / w.sum())  # A
    low = Q * rg_expected < 1.0
    assert low.sum() >= 20
    slope = np.polyfit(Q[low] ** 2, np.log(y[low]), 1)[0]
    rg = math.sqrt(-3.0 * slope)
    assert rg == pytest.approx(rg_expected, rel=0.06)  # facets and the atoms' form factor: 0-5 % above a sphere
    # and, with the log-normal moments of a continuous distribution, the mean diameter within 12 %
    wl = math.log1p(dispersion**2)
    mean_from_rg = 2.0 * math.sqrt(5.0 / 3.0) * rg / 10.0 * math.exp(-6.5 * wl)  # nm: <D^8>/<D^6> = mean^2 e^(13 w)
    assert mean_from_rg == pytest.approx(mean_nm, rel=0.12)


def test_waxs_shows_the_au_111_peak(beamline):
    _, detector = beamline
    y = _particles(detector, 4.0, 0.05, [0.0, 0.0, 1.0])
    window = (Q > 2.2) & (Q < 3.0)
    i = np.flatnonzero(window)[np.argmax(y[window])]
    a, b, _ = np.polyfit(Q[i - 2:i + 3], y[i - 2:i + 3], 2)
    assert -b / (2 * a) == pytest.approx(Q111, abs=0.03)
    assert y[i] > 2 * np.median(y[(Q > 1.5) & (Q < 2.2)])  # a peak, not a shoulder


def test_a_mixture_is_the_number_weighted_sum_of_its_structures(beamline):
    _, detector = beamline
    x = np.array([0.2, 0.5, 0.3])
    mixed, atoms = detector.population_pattern(2.5, 0.1, x)
    pure = [detector.population_pattern(2.5, 0.1, np.eye(3)[k]) for k in range(3)]
    np.testing.assert_allclose(mixed, sum(xk * p for xk, (p, _) in zip(x, pure)), rtol=1e-12)
    assert atoms == pytest.approx(sum(xk * n for xk, (_, n) in zip(x, pure)), rel=1e-12)
    # per gold atom, the forward scattering is ~ <N^2> / <N> Z^2, so it grows like D^3
    small, large = (detector.population_pattern(d, 0.05, [0, 0, 1]) for d in (2.0, 3.5))
    assert (large[0][0] / large[1]) / (small[0][0] / small[1]) == pytest.approx((3.5 / 2.0) ** 3, rel=0.15)


def test_counting_noise_is_poisson(beamline):
    reactor, detector = _fresh(beamline, noise=True)
    reactor.inject()
    obs = reactor.advance(400.0)
    lam = detector.observation_counts(obs)
    rng = np.random.default_rng(7)
    draws = np.array([detector.simulate(obs, rng) for _ in range(400)])
    assert np.all(draws == np.round(draws))
    assert np.mean(draws.mean(axis=0) / lam) == pytest.approx(1.0, abs=2e-3)
    ratio = draws.var(axis=0, ddof=1) / lam
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.02)
    assert 0.6 < np.min(ratio) and np.max(ratio) < 1.5


def test_blank_before_the_burst_and_particles_after(beamline):
    reactor, detector = _fresh(beamline)
    rate = detector.count_rate.get() * detector.exposure.get()
    expected_blank = rate * (detector.background_level.get()
                             + detector.solvent_level.get() * detector.solvent_pattern())
    np.testing.assert_allclose(detector.blank.get(), expected_blank)
    for advance in (None, 30.0):  # not injected; injected, still in the induction
        if advance is not None:
            reactor.inject()
            reactor.advance(advance)
        detector.trigger().wait(10)
        assert not reactor.nucleated.get()
        np.testing.assert_array_equal(detector.intensity.get(), detector.blank.get())
        np.testing.assert_array_equal(detector.subtracted.get(), 0.0)  # the reduced pattern of a blank: nothing
    reactor.advance(60.0)
    detector.trigger().wait(10)
    y = detector.intensity.get()
    assert reactor.nucleated.get() and y[0] > 1.5 * detector.blank.get()[0]
    detector.solvent.set("none").wait(5)
    np.testing.assert_allclose(detector.blank.get(), rate * detector.background_level.get())


# --------------------------------------------------------------------------------------------
# bluesky
# --------------------------------------------------------------------------------------------
def test_runengine_count_records_patterns_truth_and_a_discoverable_q_axis(beamline):
    reactor, detector = _fresh(beamline, noise=True)
    reactor.inject()
    reactor.advance(100.0)
    docs = []
    re = RunEngine({})
    use_virtual_time(re, reactor)
    re(count([reactor, detector], num=4, delay=1.0), lambda name, doc: docs.append((name, doc)))
    events = [d for n, d in docs if n == "event"]
    (desc,) = [d for n, d in docs if n == "descriptor"]
    assert len(events) == 4
    for e in events:
        y = np.asarray(e["data"]["saxswaxs_intensity"])
        assert y.shape == Q.shape and np.all(y >= 0)
        np.testing.assert_allclose(e["data"]["saxswaxs_subtracted"], y - detector.blank.get())
        assert sum(e["data"][f"reactor_true_{s}"] for s in STRUCTURES) == pytest.approx(1.0)
    sizes = [e["data"]["reactor_true_size"] for e in events]
    assert np.all(np.diff(sizes) > 0)  # 60 simulated s per reading
    elapsed = np.array([e["data"]["reactor_elapsed"] for e in events])  # count sleeps delay less the time taken
    assert elapsed[0] == pytest.approx(100.0) and np.all(np.diff(elapsed) > 0) and np.all(np.diff(elapsed) <= 60.0)
    source = find_source(detector.qdots_metadata(), desc)
    assert source.problem is None and source.pattern_key == "saxswaxs_subtracted"
    assert source.x_key == "saxswaxs_q" and source.x_unit == "q"
    np.testing.assert_allclose(source.x, Q)


def test_insitu_synthesis_plan_drives_the_gold_devices(beamline):
    reactor, detector = _fresh(beamline, noise=True)
    docs = []
    re = RunEngine({})
    use_virtual_time(re, reactor)
    re(insitu_synthesis(detector, reactor, 4, 1.0), lambda name, doc: docs.append((name, doc)))
    start = docs[0][1]
    assert start["sample"]["material"] == "Au" and start["x_unit"] == "q"
    assert start["qdots_pattern_key"] == "saxswaxs_subtracted" and start["qdots_x_key"] == "saxswaxs_q"
    assert "reactor_true_icosahedron" in start["qdots_truth_keys"]
    events = [d for n, d in docs if n == "event"]
    assert [e["data"]["reactor_nucleated"] for e in events] == [False, True, True, True]
    assert events[0]["data"]["reactor_concentration"] == 0.0 and events[-1]["data"]["reactor_concentration"] > 0.0


def test_bad_settings_are_refused_with_what_is_accepted(beamline):
    reactor, _ = beamline
    with pytest.raises(ValueError, match="accepted"):
        SaxsWaxsDetector(name="d", reactor=reactor, q=Q, fcc_family="hcp")
    with pytest.raises(ValueError, match="accepted"):
        SaxsWaxsDetector(name="d", reactor=object(), q=Q)
    _, detector = beamline
    with pytest.raises(ValueError, match="accepted"):
        detector.expected_counts(6.0, 0.1, [0, 0, 1], 1.0)  # beyond d_max_nm
    with pytest.raises(ValueError, match="accepted"):
        detector.expected_counts(3.0, 0.1, [0.5, 0.6, 0.0], 1.0)
