"""DSE refinement (qdots_bluesky.refine): recovery of known populations from simulated patterns, blanks,
CdSe, the no-dots outcome, a textured flat plate, sequential refinement, figures and bad input.

Tiny bases (clusters up to 6 nm, ~700 Q points) keep every test fast; patterns are simulated with the
simulator's own population patterns (``ClusterBasis.patterns``) on the basis grid, so no interpolation enters
the truth.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from qdots_bluesky.refine import Blank, Geometry, parse_ranges, plot_refinement, refine_pattern, refine_sequence
from qdots_bluesky.refine.basis import refinement_basis
from qdots_bluesky.refine.model import DotModel
from qdots_bluesky.sim.physics.cluster_basis import population_targets
from qdots_bluesky.sim.physics.solvents import solvent_pattern
from qdots_bluesky.units import q_to_tth

WL = 0.564162
Q_GRID = np.linspace(0.8, 8.5, 700)


@pytest.fixture(scope="module")
def pbs():
    return refinement_basis("PbS", WL, Q_GRID, max_diameter_nm=6.0)


def _simulate(basis, size, disp, strain, rng, *, dots=2.0e4, solvent="hexane", solvent_level=0.6, q_lo=1.0, q_hi=8.0):
    """Counts on the basis nodes within q_lo..q_hi: dots (mean ~``dots``) + solvent + sloped background."""
    sel = (basis.q >= q_lo) & (basis.q <= q_hi)
    q = basis.q[sel]
    crys, comp = basis.patterns(np.array([size]), np.array([disp]), np.array([strain]))
    nc = (crys + comp)[0, sel].astype(float)
    nc *= dots / nc.mean()
    total = nc + 3000.0 + 200.0 * q
    solv = np.zeros_like(q)
    if solvent is not None:
        solv = solvent_pattern(solvent, q, WL)
        solv *= solvent_level * dots / solv.mean()
        total = total + solv
    return q, rng.poisson(total).astype(float), nc, solv


def test_recovers_size_dispersion_strain(pbs):
    rng = np.random.default_rng(3)
    q, y, _, _ = _simulate(pbs, 3.4, 0.12, 0.003, rng)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
    assert r.status == "sized", r.summary()
    for value, std, truth in ((r.size_nm, r.size_std_nm, 3.4), (r.dispersion, r.dispersion_std, 0.12),
                              (r.strain, r.strain_std, 0.003)):
        assert std > 0 and abs(value - truth) < 2.5 * std, r.summary()
    vol = population_targets(pbs.n, pbs.unit_nm, 3.4, 0.12, 0.003)["volume_diameter_nm"][0]
    assert abs(r.size_volume_nm - vol) < 2.5 * r.size_volume_std_nm
    # the profile carries the mean-dispersion correlation: the size e.s.d. exceeds the one at fixed dispersion
    assert r.size_std_nm > r.size_volume_std_nm
    assert r.reduced_chi2 == pytest.approx(1.0, abs=0.2)
    assert r.weights == "counts"  # no sigma given, thousands of counts: sigma^2 = the counts
    assert r.esd_correlation_factor < 1.3  # white residuals: the e.s.d.s need no correlation correction
    d = r.to_dict()
    for key in ("size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "dispersion", "dispersion_std",
                "strain", "strain_std", "rwp", "reduced_chi2", "scales"):
        assert key in d
    assert d["scales"]["dots"] > 0 and d["scales"]["solvent_hexane"] > 0


def test_starts_from_estimate_and_flags_disagreement(pbs):
    rng = np.random.default_rng(4)
    q, y, _, _ = _simulate(pbs, 3.0, 0.10, 0.0, rng)
    kw = dict(wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0), profile=False)
    good = refine_pattern(q, y, network={"size_nm": 3.2, "dispersion": 0.1, "size_std_nm": 0.2}, **kw)
    assert abs(good.size_nm - 3.0) < 3 * good.size_std_nm and "disagrees_with_network" not in good.flags
    estimate = SimpleNamespace(status="sized", size_nm=4.5, size_std_nm=0.05, dispersion=0.1, strain=None)
    bad = refine_pattern(q, y, network=estimate, **kw)  # an object with attributes, like a SizeEstimate
    assert abs(bad.size_nm - 3.0) < 3 * bad.size_std_nm
    assert "disagrees_with_network" in bad.flags and bad.network_size_nm == 4.5
    seeded = refine_pattern(q, y, start=bad.to_dict(), **kw)  # a start is not a network estimate: no comparison
    assert seeded.network_size_nm is None and "disagrees_with_network" not in seeded.flags
    assert seeded.size_nm == pytest.approx(bad.size_nm, abs=0.5 * bad.size_std_nm)


def test_blank_scale_recovered(pbs):
    rng = np.random.default_rng(5)
    blank_q = np.linspace(0.7, 9.0, 3000)
    blank_i = solvent_pattern("toluene", blank_q, WL)
    q, y, nc, _ = _simulate(pbs, 4.0, 0.10, 0.0, rng, solvent=None)
    true_scale = 0.6 * nc.mean() / blank_i.mean()
    y = y + rng.poisson(true_scale * np.interp(q, blank_q, blank_i))
    r = refine_pattern(q_to_tth(q, WL), y, wavelength_a=WL, blanks=[Blank("toluene", blank_q, blank_i)],
                       basis=pbs, q_range=(1.0, 8.0), profile=False)
    assert r.status == "sized"
    scale, std = r.scales["blank_toluene"], r.scales_std["blank_toluene"]
    assert std > 0 and abs(scale - true_scale) < 3 * std + 0.01 * true_scale
    assert abs(r.size_nm - 4.0) < 3 * r.size_std_nm


def test_cdse_size_recovered():
    cdse = refinement_basis("CdSe", WL, Q_GRID, max_diameter_nm=6.0)
    rng = np.random.default_rng(6)
    q, y, _, _ = _simulate(cdse, 3.2, 0.10, 0.0, rng)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", material="CdSe", solvent="hexane", basis=cdse,
                       q_range=(1.0, 8.0), profile=False)
    assert r.status == "sized" and r.material == "CdSe"
    assert abs(r.size_nm - 3.2) < 3 * r.size_std_nm and r.size_std_nm < 0.3


def test_noisy_pattern_with_undetermined_instrument_is_sized(pbs):
    """Few counts: the instrument widths trade with the dispersion along a flat valley (the fit may run them to a
    bound), which must not make the dots' intensity look insignificant (it did: 'no nanocrystals' for 4 of 6)."""
    for seed in range(1, 5):
        q, y, _, _ = _simulate(pbs, 3.4, 0.10, 0.0, np.random.default_rng(seed), dots=600.0)
        r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
        assert r.status == "sized" and r.instrument_refined, r.summary()
        assert abs(r.size_nm - 3.4) < 2.5 * r.size_std_nm, r.summary()


def test_weak_dots_in_a_strong_solvent_are_found(pbs):
    """Dots at a fifth of the solvent's level, ~150 counts a point: their chi^2 gain is thousands of chi2_red, yet
    an intensity test at fixed size and dispersion (the scale trades with D) called 4 of these 5 'no nanocrystals'."""
    for seed in range(5):
        q, y, _, _ = _simulate(pbs, 3.0, 0.15, 0.0, np.random.default_rng(seed), dots=150.0, solvent_level=5.0)
        r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0),
                           instrument_fwhm=(0.0, 0.0))
        assert r.status == "sized", r.summary()
        assert abs(r.size_nm - 3.0) < 2.5 * r.size_std_nm, r.summary()


def test_poor_fit_is_the_models_misfit_not_counting_noise(pbs):
    rng = np.random.default_rng(11)
    q, y, nc, solv = _simulate(pbs, 3.4, 0.10, 0.0, rng)
    expected = nc + solv + 3000.0 + 200.0 * q
    sparse = rng.poisson(expected * 40.0 / expected.mean()).astype(float)  # ~40 counts a point: Rexp ~16 %
    kw = dict(wavelength_a=WL, x_unit="q", basis=pbs, q_range=(1.0, 8.0))
    noisy = refine_pattern(q, sparse, solvent="hexane", instrument_fwhm=(0.0, 0.0), **kw)
    assert noisy.rwp > 0.10 and noisy.reduced_chi2 == pytest.approx(1.0, abs=0.15)
    assert "poor_fit" not in noisy.flags, noisy.summary()
    wrong = refine_pattern(q, y, solvent="none", background_order=0, **kw)  # the solvent left out of the model
    assert wrong.rwp > 0.10 and wrong.rwp > 2 * wrong.rwp_expected
    assert "poor_fit" in wrong.flags and "Rexp" in wrong.flag_details["poor_fit"]


def test_no_dots_gives_no_size(pbs):
    rng = np.random.default_rng(7)
    sel = (pbs.q >= 1.0) & (pbs.q <= 8.0)
    q = pbs.q[sel]
    solv = solvent_pattern("hexane", q, WL)
    y = rng.poisson(2.0e4 * solv / solv.mean() + 3000.0 + 200.0 * q).astype(float)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
    assert r.status == "no_nanocrystals", r.summary()
    assert np.isnan(r.size_nm) and r.to_dict()["size_nm"] is None and r.to_dict()["size_std_nm"] is None


def test_solvent_model_mismatch_is_not_taken_for_dots(pbs):
    """A toluene-like liquid refined with the hexane model: the dots must not soak up the mismatch."""
    rng = np.random.default_rng(10)
    sel = (pbs.q >= 1.0) & (pbs.q <= 8.0)
    q = pbs.q[sel]
    solv = solvent_pattern("toluene", q, WL)
    y = rng.poisson(3.0e4 * solv / solv.mean() + 2000.0).astype(float)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
    assert r.status == "no_nanocrystals", r.summary()
    assert r.scales["dots"] == 0.0 and r.curves is not None and not np.any(r.curves.components["dots"])


def test_slightly_wrong_solvent_model_is_not_taken_for_dots(pbs):
    """Hexane whose Q is 0.5 % off the model's (a wavelength or calibration a little off): the misfit gains a dot
    component at the series' smallest size, a smooth hump, enough chi^2 to pass the likelihood-ratio test now and
    then (3-5 of 10 draws before the hump was ruled out); it is not dots."""
    sel = (pbs.q >= 1.0) & (pbs.q <= 8.0)
    q = pbs.q[sel]
    solv = solvent_pattern("hexane", q / 1.005, WL)
    solv /= solv.mean()
    for seed in range(100, 106):
        y = np.random.default_rng(seed).poisson(3000.0 * solv + 300.0).astype(float)
        r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0),
                           profile=False)
        assert r.status == "no_nanocrystals", r.summary()


def test_poor_fit_rule():
    from qdots_bluesky.refine.result import is_poor_fit

    assert is_poor_fit(0.25, 0.05) and not is_poor_fit(0.25, 0.15) and not is_poor_fit(0.08, 0.01)
    assert not is_poor_fit(0.12, 0.01, threshold=0.15) and is_poor_fit(0.2, 0.01, threshold=0.15)


def test_basis_cache_round_trip(tmp_path, monkeypatch):
    from qdots_bluesky.refine import basis as basis_module

    monkeypatch.setenv("QDOTS_CACHE_DIR", str(tmp_path))
    q = np.linspace(1.0, 6.0, 120)
    built = refinement_basis("PbSe", WL, q, max_diameter_nm=2.5)
    files = list(tmp_path.glob("refine-basis-*PbSe*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(basis_module, "_MEMORY", {})
    read = refinement_basis("PbSe", WL, q, max_diameter_nm=2.5)
    assert read is not built and np.allclose(read.crystal, built.crystal, rtol=1e-6)
    assert read.unit_nm == built.unit_nm and read.structure.name == "PbSe"
    with pytest.raises(ValueError, match="equispaced"):
        refinement_basis("PbSe", WL, q**1.1, max_diameter_nm=2.5)


def test_textured_flat_plate_recovered():
    wl = 1.5406
    basis = refinement_basis("PbS", wl, np.linspace(0.9, 6.0, 700), max_diameter_nm=6.0)
    tth = np.arange(22.0, 80.0, 0.04)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / wl
    geometry = Geometry(kind="flat-plate")
    model = DotModel(basis, q, wl, geometry, tth)
    cols = model.columns(np.array([4.0, 0.10, 0.002, 0.0, 0.05]))
    p_true = np.linspace(0.6, 1.8, len(model.families))[::-1]
    dots = cols[:, 0] + cols[:, 1:] @ p_true
    rng = np.random.default_rng(8)
    y = rng.poisson(5000.0 * dots / dots.mean() + 400.0 + 2.0 * (80 - tth)).astype(float)
    r = refine_pattern(tth, y, wavelength_a=wl, geometry=geometry, basis=basis, profile=False)
    assert r.status == "sized" and r.geometry == "flat-plate"
    assert abs(r.size_nm - 4.0) < 3 * r.size_std_nm and r.size_std_nm < 0.3, r.summary()
    assert abs(r.displacement_mm - 0.05) < 3 * r.displacement_std_mm
    # each family's scale over the powder-intensity-weighted mean of the scales (1 for a powder)
    weights = model.family_intensities
    relative = p_true / (weights @ p_true / weights.sum())
    strong = list(r.texture)[:3]  # 111, 200, 220 carry most of the intensity
    for label, truth in zip(strong, relative[:3]):
        assert r.texture[label] == pytest.approx(truth, rel=0.1)


def test_sequential_and_plot(pbs, tmp_path):
    rng = np.random.default_rng(9)
    sims = [_simulate(pbs, size, 0.10, 0.0, rng) for size in (2.6, 2.9, 3.2)]
    q = sims[0][0]
    results = refine_sequence(q, [s[1] for s in sims], wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs,
                              q_range=(1.0, 8.0), profile=False)
    assert [r.status for r in results] == ["sized"] * 3
    for r, size in zip(results, (2.6, 2.9, 3.2)):
        assert abs(r.size_nm - size) < 3 * r.size_std_nm
    path = plot_refinement(results[-1], tmp_path / "fit", x="tth")
    assert path.suffix == ".png" and path.stat().st_size > 10_000


def test_bad_input(pbs):
    q, y, _, _ = _simulate(pbs, 3.0, 0.1, 0.0, np.random.default_rng(0))
    kw = dict(wavelength_a=WL, x_unit="q", basis=pbs)
    with pytest.raises(ValueError, match="solvent"):
        refine_pattern(q, y, solvent="water", **kw)
    with pytest.raises(ValueError, match="same length"):
        refine_pattern(q, y[:-5], **kw)
    with pytest.raises(ValueError, match="wavelength"):
        refine_pattern(q, y, wavelength_a=50.0, x_unit="q", basis=pbs)
    with pytest.raises(ValueError, match="points"):
        refine_pattern(q, y, q_range=(20.0, 30.0), **kw)
    with pytest.raises(ValueError, match="geometry"):
        Geometry(kind="transmission")
    with pytest.raises(ValueError, match="lo-hi"):
        parse_ranges("10-")
    assert parse_ranges("27.5-28.8, 47:48") == [(27.5, 28.8), (47.0, 48.0)]


def _with_instrument(basis, size, disp, gauss, lorentz, rng, q_lo=1.0, q_hi=8.0):
    """Counts of a population seen through a Voigt instrument (FWHMs in 1/A), plus hexane and a background."""
    sel = (basis.q >= q_lo) & (basis.q <= q_hi)
    q = basis.q[sel]
    dots = DotModel(basis, q, WL).columns(np.array([size, disp, 0.002, 0.0, gauss**2, lorentz]))[:, 0]
    dots *= 2.0e4 / dots.mean()
    solv = solvent_pattern("hexane", q, WL)
    solv *= 1.2e4 / solv.mean()
    return q, rng.poisson(dots + solv + 3000.0 + 200.0 * q).astype(float)


def test_instrument_width_recovered_and_size_unbiased(pbs):
    rng = np.random.default_rng(21)
    q, y = _with_instrument(pbs, 4.0, 0.06, 0.0, 0.015, rng)
    kw = dict(wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
    r = refine_pattern(q, y, **kw)
    assert r.status == "sized" and r.instrument_refined and r.instrument_unit == "1/A"
    assert abs(r.instrument_lorentz_fwhm - 0.015) < 3 * r.instrument_lorentz_fwhm_std, r.summary()
    assert 0 < r.instrument_lorentz_fwhm_std < 0.003
    assert abs(r.size_nm - 4.0) < 2.5 * r.size_std_nm, r.summary()
    # left out, the instrument's broadening is taken for smaller dots: the refined width is what removes the bias
    held0 = refine_pattern(q, y, instrument_fwhm=(0.0, 0.0), profile=False, **kw)
    assert held0.size_nm < r.size_nm and held0.reduced_chi2 > r.reduced_chi2
    held = refine_pattern(q, y, instrument_fwhm=(0.0, 0.015), profile=False, **kw)
    assert not held.instrument_refined and held.instrument_lorentz_fwhm == 0.015
    assert held.instrument_lorentz_fwhm_std == 0.0 and abs(held.size_nm - 4.0) < 2.5 * held.size_std_nm
    d = r.to_dict()
    for key in ("instrument_gauss_fwhm", "instrument_gauss_fwhm_std", "instrument_lorentz_fwhm",
                "instrument_lorentz_fwhm_std", "instrument_unit", "instrument_refined"):
        assert key in d
    # a Gaussian resolution: size unbiased, the width within its (large) e.s.d.
    q, y = _with_instrument(pbs, 4.0, 0.06, 0.012, 0.0, np.random.default_rng(22))
    r = refine_pattern(q, y, **kw)
    assert abs(r.size_nm - 4.0) < 2.5 * r.size_std_nm and abs(r.instrument_gauss_fwhm - 0.012) < 3 * r.instrument_gauss_fwhm_std
    with pytest.raises(ValueError, match="accepted: 0 to 0.02"):
        refine_pattern(q, y, instrument_fwhm=(0.0, 0.5), **kw)
    with pytest.raises(ValueError, match="two numbers"):
        refine_pattern(q, y, instrument_fwhm=0.01, **kw)


def test_flat_plate_instrument_in_two_theta():
    wl = 1.5406
    basis = refinement_basis("PbS", wl, np.linspace(0.9, 6.0, 700), max_diameter_nm=6.0)
    tth = np.arange(22.0, 80.0, 0.04)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / wl
    geometry = Geometry(kind="flat-plate", texture=False)
    model = DotModel(basis, q, wl, geometry, tth)
    dots = model.columns(np.array([4.0, 0.08, 0.002, 0.0, 0.0, 0.0, 0.25]))[:, 0]
    y = np.random.default_rng(23).poisson(2e4 * dots / dots.mean() + 400.0).astype(float)
    r = refine_pattern(tth, y, wavelength_a=wl, geometry=geometry, basis=basis, profile=False)
    assert r.instrument_unit == "deg" and r.geometry == "flat-plate"
    assert abs(r.instrument_lorentz_fwhm - 0.25) < 3 * r.instrument_lorentz_fwhm_std, r.summary()
    assert abs(r.size_nm - 4.0) < 3 * r.size_std_nm, r.summary()


def test_profile_at_the_dispersion_bound(pbs, monkeypatch):
    """A dispersion below the refinement's lower bound (raised to 0.15 here): the fit ends at the bound, flagged,
    and the profile takes both its steps on the side with room (the curvature there gives the e.s.d.)."""
    import qdots_bluesky.refine.fit as fit_module

    monkeypatch.setattr(fit_module, "DISPERSION_BOUNDS", (0.15, 0.45))
    q, y, _, _ = _simulate(pbs, 3.4, 0.08, 0.0, np.random.default_rng(11))
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0),
                       instrument_fwhm=(0.0, 0.0))
    assert r.status == "sized" and "dispersion_at_bound" in r.flags, r.summary()
    assert "profile_failed" not in r.flags, r.summary()
    assert 0.0 < r.dispersion_std < 0.05 and 0.0 < r.size_std_nm < 0.3, r.summary()


@pytest.mark.parametrize("solvent", ["hexane", "toluene"])
def test_auto_solvent_from_start_values_picks_the_right_model(pbs, solvent):
    q, y, _, _ = _simulate(pbs, 3.4, 0.10, 0.0, np.random.default_rng(5), solvent=solvent, solvent_level=1.0)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="auto", basis=pbs, q_range=(1.0, 8.0),
                       start={"size_nm": 3.2, "dispersion": 0.12}, profile=False)
    assert f"solvent_{solvent}" in r.scales and r.status == "sized", r.summary()
    assert abs(r.size_nm - 3.4) < 3 * r.size_std_nm


def test_held_dispersion_gives_the_size_at_that_dispersion(pbs):
    """A dispersion known from elsewhere, held: the true one recovers D_N with a smaller e.s.d. than the profile's
    (no mean-dispersion correlation left); a wider one moves D_N down (the correlation's direction) while D_V, which
    the peaks fix, stays; a value outside the bounds is refused."""
    rng = np.random.default_rng(13)
    q, y, _, _ = _simulate(pbs, 3.4, 0.12, 0.003, rng)
    kw = dict(wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
    free = refine_pattern(q, y, **kw)
    held = refine_pattern(q, y, dispersion=0.12, **kw)
    assert held.status == "sized" and held.dispersion_held and not free.dispersion_held
    assert held.dispersion == pytest.approx(0.12) and held.dispersion_std == 0.0
    assert abs(held.size_nm - 3.4) < 2.5 * held.size_std_nm
    assert 0 < held.size_std_nm < free.size_std_nm
    assert "profile_failed" not in held.flags and held.to_dict()["dispersion_held"] is True
    wide = refine_pattern(q, y, dispersion=0.25, **kw)
    assert wide.size_nm < held.size_nm - 0.2
    assert abs(wide.size_volume_nm - held.size_volume_nm) < 0.25 * (held.size_nm - wide.size_nm)
    at_bound = refine_pattern(q, y, dispersion=0.02, profile=False, **kw)
    assert "dispersion_at_bound" not in at_bound.flags  # the user's value, not a bound the fit ran into
    for bad in (0.5, -0.1, "wide"):
        with pytest.raises(ValueError, match="held dispersion"):
            refine_pattern(q, y, dispersion=bad, **kw)


def test_dots_presence_counts_every_dot_column():
    """A textured flat plate's untextured column may take a zero scale while the reflection families carry the
    dots: still dots. No positive scale, or too small a gain in chi^2 (25 x chi2_red x the residuals' correlation
    factor squared, 5 sigma): no dots."""
    from qdots_bluesky.refine.fit import dots_improve_fit, dots_threshold

    one = dots_threshold(1)
    assert one == pytest.approx(25.0, abs=0.05) and dots_threshold(7) > 40 and dots_threshold(15) > dots_threshold(7)
    assert dots_improve_fit(np.array([0.0, 1.2, 0.4]), 1000.0, 100.0, 2.0)
    assert dots_improve_fit(np.array([0.7]), 1000.0, 100.0, 2.0)
    assert not dots_improve_fit(np.array([0.0, 0.0]), 1000.0, 100.0, 2.0)
    assert not dots_improve_fit(np.array([0.0, 1.0]), 100.0 + 0.99 * one * 2.0, 100.0, 2.0)
    assert dots_improve_fit(np.array([0.0, 1.0]), 100.0 + 1.01 * one * 2.0, 100.0, 2.0)
    # more parameters of their own: more gain needed (noise alone lowers chi^2 by about their number)
    assert not dots_improve_fit(np.array([1.0]), 100.0 + 1.01 * one * 2.0, 100.0, 2.0, n_parameters=7)
    # residuals correlated over ~9 points (factor 3) are ~9x fewer independent ones: 9x the gain is needed
    gain = 100.0 + 5.0 * one * 2.0
    assert dots_improve_fit(np.array([1.0]), gain, 100.0, 2.0, correlation_factor=1.0)
    assert not dots_improve_fit(np.array([1.0]), gain, 100.0, 2.0, correlation_factor=3.0)
    assert dots_improve_fit(np.array([1.0]), 100.0 + 9.1 * one * 2.0, 100.0, 2.0, correlation_factor=3.0)


def test_flat_plate_instrument_columns_are_the_derivatives():
    """A flat plate's exact instrument columns (by the Gaussian FWHM squared and the Lorentzian FWHM, from the Voigt
    transfer function) agree with central differences of its columns, with and without instrument widths."""
    wl = 1.5406
    basis = refinement_basis("PbS", wl, np.linspace(0.9, 6.0, 700), max_diameter_nm=6.0)
    tth = np.arange(22.0, 80.0, 0.04)
    model = DotModel(basis, 4 * np.pi * np.sin(np.radians(tth) / 2) / wl, wl, Geometry(kind="flat-plate"), tth)
    k = model.instrument_index
    for widths in ((0.1**2, 0.08), (0.0, 0.0)):
        theta = np.array([4.0, 0.1, 0.002, 0.0, 0.05, *widths])
        exact = model.instrument_derivatives(theta)
        for i, d in zip((k, k + 1), exact):
            up, down = theta.copy(), theta.copy()
            up[i] += 1e-7
            down[i] = max(theta[i] - 1e-7, 0.0)
            numeric = (model.columns(up) - model.columns(down)) / (up[i] - down[i])
            assert d.shape == numeric.shape and np.abs(d).max() > 0
            assert np.abs(numeric - d).max() < 1e-3 * np.abs(d).max()


def test_capillary_jacobian_is_the_derivative_of_its_column(pbs):
    """The capillary's analytic Jacobian (kept evaluation per theta, built on the column's) agrees with central
    differences of its column for every parameter, with and without instrument widths and Debye-Waller offset; its
    column is the model's column, whichever of the two is asked for first."""
    q = np.linspace(1.0, 8.0, 1500)
    model = DotModel(pbs, q, WL)
    # widths within the kept spectra's padding, none, and beyond it (0.02 + 4 x 0.02 stretched by the strain: the
    # general convolution)
    for theta in (np.array([3.6, 0.1, 0.002, 0.3, 0.004**2, 0.006]), np.array([4.2, 0.07, -0.001, 0.0, 0.0, 0.0]),
                  np.array([3.0, 0.12, 0.002, 0.0, 0.02**2, 0.02])):
        col, jac = model.columns_jacobian(theta)
        assert np.array_equal(col, model.columns(theta)[:, 0])
        fresh = DotModel(pbs, q, WL)
        assert np.allclose(fresh.columns(theta)[:, 0], col, rtol=0, atol=1e-12 * np.abs(col).max())
        assert np.allclose(fresh.columns_jacobian(theta)[1], jac, rtol=0, atol=1e-12 * np.abs(jac).max())
        for i, h in enumerate((1e-4, 1e-5, 1e-6, 1e-4, 1e-7, 1e-5)):
            up, down = theta.copy(), theta.copy()
            up[i] += h
            down[i] = max(theta[i] - h, 0.0) if i >= 4 else theta[i] - h
            numeric = (model.columns(up)[:, 0] - model.columns(down)[:, 0]) / (up[i] - down[i])
            assert np.abs(jac[:, i]).max() > 0, i
            # the strain's column leaves out that the widths on the basis grid stretch with it: ~0.5 % at the widest
            assert np.abs(numeric - jac[:, i]).max() < (1e-2 if i == 2 else 2e-3) * np.abs(jac[:, i]).max(), i
        held = model.columns_jacobian(theta, instrument=False)[1]
        assert np.array_equal(held[:, :4], jac[:, :4])


def test_linear_solve_with_kept_fixed_normal_equations(pbs):
    """Problem._scales (the fixed columns' share of the normal equations computed once) gives the scales of the
    plain non-negative solve, where the unconstrained solution is non-negative and where a scale must be held at 0."""
    from qdots_bluesky.refine.data import FitData
    from qdots_bluesky.refine.solver import Problem, _nnls_projected

    q = np.linspace(1.0, 8.0, 900)
    rng = np.random.default_rng(3)
    fixed = np.stack([np.exp(-q / 3.0), 1.0 / q], axis=1)
    free = np.polynomial.chebyshev.chebvander(2.0 * (q - 1.0) / 7.0 - 1.0, 3)
    dots = DotModel(pbs, q, WL).columns(np.array([4.0, 0.1, 0.0, 0.0, 0.0, 0.0]))
    for fixed_scales in ((2.0, 3.0), (2.0, -40.0)):  # the second: the unconstrained solve wants a negative scale
        y = 5.0 * dots[:, 0] / dots[:, 0].mean() + fixed @ np.array(fixed_scales) + 4.0 + rng.normal(0.0, 0.05, q.size)
        problem = Problem(DotModel(pbs, q, WL), FitData(q, None, y, np.full(q.size, 0.05), q.size), fixed, free)
        dots_p = problem._proj(dots * problem.w[:, None])
        expected = _nnls_projected(np.hstack([dots_p, problem.fixed_p]), problem.yp)
        assert np.allclose(problem._scales(dots_p), expected, rtol=1e-10, atol=1e-12)
        assert (expected[2] == 0.0) == (fixed_scales[1] < 0)


def test_esds_are_never_zero_nor_wider_than_no_knowledge():
    """A population on one cluster of the series is flat in size and dispersion (zero covariance e.s.d.s); a flat
    dispersion valley can make the profile's e.s.d. huge: both become bounded, flagged figures."""
    from qdots_bluesky.refine.assemble import usable_esds

    step, spans = 0.4638, (14.0, 14.0, 0.43)
    (d, v, s), limited = usable_esds((0.0, float("nan"), 0.0), step, spans)
    assert limited and d == v == pytest.approx(step / np.sqrt(12)) and s == pytest.approx(0.43 / np.sqrt(12))
    (d, v, s), limited = usable_esds((34.9, 0.2, 2.5), step, spans)
    assert limited and d == pytest.approx(14.0 / np.sqrt(12)) and v == 0.2 and s == pytest.approx(0.43 / np.sqrt(12))
    assert usable_esds((0.1, 0.05, 0.02), step, spans) == ((0.1, 0.05, 0.02), False)
    assert usable_esds((0.1, 0.05, 0.0), step, spans, dispersion_held=True) == ((0.1, 0.05, 0.0), False)


def test_few_counts_are_weighted_by_the_model(pbs):
    """~2 counts a point: weights from each point's own count (Neyman's chi^2) favour the points that fluctuate low
    (D_N read 3.97 for 3.5 nm over these draws, reduced chi^2 0.70); by the model's expected counts, unbiased."""
    sel = (pbs.q >= 1.0) & (pbs.q <= 8.0)
    crys, comp = pbs.patterns(np.array([3.5]), np.array([0.25]), np.array([0.0]))
    lam = (crys + comp)[0, sel]
    lam = lam * 2.0 / lam.mean()
    sizes, chi2 = [], []
    for seed in range(12):
        y = np.random.default_rng(seed).poisson(lam).astype(float)
        r = refine_pattern(pbs.q[sel], y, wavelength_a=WL, x_unit="q", basis=pbs, q_range=(1.0, 8.0),
                           instrument_fwhm=(0.0, 0.0), background_order=0)
        assert r.weights == "model" and r.status == "sized"
        sizes.append(r.size_nm)
        chi2.append(r.reduced_chi2)
    assert abs(np.mean(sizes) - 3.5) < 0.25 and np.mean(chi2) == pytest.approx(1.0, abs=0.12)
    given = refine_pattern(pbs.q[sel], y, np.sqrt(lam), wavelength_a=WL, x_unit="q", basis=pbs, q_range=(1.0, 8.0),
                           instrument_fwhm=(0.0, 0.0), background_order=0, profile=False)
    assert given.weights == "given" and given.to_dict()["weights"] == "given"


@pytest.fixture(scope="module")
def pbs_truncated_octahedra():
    return refinement_basis("PbS", WL, Q_GRID, max_diameter_nm=6.0, habit="truncated-octahedron")


def test_faceted_population_needs_its_habit(pbs, pbs_truncated_octahedra):
    """Truncated octahedra refined as truncated octahedra: unbiased, fitted to the noise; as near-spheres: the facets'
    peak shapes are not in the model (chi^2 several times the noise) and D_N moves."""
    rng = np.random.default_rng(11)
    q, y, _, _ = _simulate(pbs_truncated_octahedra, 3.4, 0.08, 0.0, rng, dots=1e5)
    kw = dict(wavelength_a=WL, x_unit="q", solvent="hexane", q_range=(1.0, 8.0), instrument_fwhm=(0.0, 0.0))
    right = refine_pattern(q, y, basis=pbs_truncated_octahedra, **kw)
    assert right.status == "sized" and right.habit == "truncated-octahedron", right.summary()
    assert abs(right.size_nm - 3.4) < 2.5 * right.size_std_nm and right.reduced_chi2 < 1.3, right.summary()
    sphere = refine_pattern(q, y, basis=pbs, **kw)
    assert sphere.habit == "sphere" and sphere.reduced_chi2 > 3 * right.reduced_chi2, sphere.summary()
    assert "habit truncated-octahedron" in right.summary() and right.to_dict()["habit"] == "truncated-octahedron"


def test_auto_habit_keeps_the_best_fitting_habit(pbs_truncated_octahedra):
    from qdots_bluesky.sim.physics.habits import HABITS

    rng = np.random.default_rng(12)
    q, y, _, _ = _simulate(pbs_truncated_octahedra, 3.4, 0.08, 0.0, rng, dots=1e5)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", q_range=(1.0, 8.0), max_diameter_nm=6.0,
                       instrument_fwhm=(0.0, 0.0), profile=False, habit="auto")
    assert r.habit == "truncated-octahedron", r.summary()
    assert set(r.habit_reduced_chi2) == set(HABITS)
    assert min(r.habit_reduced_chi2.values()) == pytest.approx(r.reduced_chi2_with_dots)
    close = [h for h, v in r.habit_reduced_chi2.items() if h != r.habit and v <= 1.05 * r.reduced_chi2_with_dots]
    assert ("habit_uncertain" in r.flags) == bool(close)
    assert "auto; the others' reduced chi^2 x" in r.summary()
    assert r.to_dict()["habit_reduced_chi2"]["sphere"] > r.reduced_chi2_with_dots


def test_habit_errors(pbs):
    q, y = pbs.q[100:600], np.full(500, 100.0)
    kw = dict(wavelength_a=WL, x_unit="q")
    with pytest.raises(ValueError, match="habit 'auto' builds a basis per habit"):
        refine_pattern(q, y, basis=pbs, habit="auto", **kw)
    with pytest.raises(ValueError, match="habit 'cube' with a basis of sphere"):
        refine_pattern(q, y, basis=pbs, habit="cube", **kw)
    with pytest.raises(ValueError, match="accepted: sphere, octahedron"):
        refine_pattern(q, y, habit="prism", max_diameter_nm=6.0, **kw)


def test_sequences_and_explicit_habits(pbs_truncated_octahedra):
    rng = np.random.default_rng(13)
    q, y, _, _ = _simulate(pbs_truncated_octahedra, 3.4, 0.08, 0.0, rng, dots=1e5)
    kw = dict(wavelength_a=WL, x_unit="q", solvent="hexane", q_range=(1.0, 8.0), profile=False)
    given = refine_sequence(q, [y, y], basis=pbs_truncated_octahedra, **kw)  # the basis's habit
    assert [r.habit for r in given] == ["truncated-octahedron"] * 2
    named = refine_sequence(q, [y], habit="truncated-octahedron", max_diameter_nm=6.0, **kw)
    assert named[0].habit == "truncated-octahedron" and abs(named[0].size_nm - 3.4) < 0.05
    with pytest.raises(ValueError, match="habit 'sphere' with a basis of truncated-octahedron"):
        refine_pattern(q, y, basis=pbs_truncated_octahedra, habit="sphere", **kw)
    with pytest.raises(ValueError, match="habit 'auto' builds a basis per habit"):
        refine_sequence(q, [y], basis=pbs_truncated_octahedra, habit="auto", **kw)


def test_a_failed_profile_never_leaves_a_size_esd_finer_than_the_series_step(pbs, monkeypatch):
    """Where the profile over the dispersion fails, the covariance's D_N e.s.d. ignores the size-dispersion trade (a
    small population on two or three clusters: 0.003 nm for a 0.11 nm error): floored at the step / sqrt 12."""
    import qdots_bluesky.refine.assemble as assemble

    rng = np.random.default_rng(14)
    q, y, _, _ = _simulate(pbs, 2.0, 0.09, 0.0, rng, dots=1e3)
    monkeypatch.setattr(assemble, "dispersion_profile", lambda *a, **k: None)
    r = refine_pattern(q, y, wavelength_a=WL, x_unit="q", solvent="hexane", basis=pbs, q_range=(1.0, 8.0))
    assert r.status == "sized" and "profile_failed" in r.flags and "esd_limited" in r.flags
    assert r.size_std_nm >= pbs.unit_nm / np.sqrt(12) - 1e-12
