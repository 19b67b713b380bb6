"""Laboratory-instrument physics (sim/physics/instrument.py): intensity factors, K-alpha doublet, Scherrer width,
preferred-orientation correction."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.instrument import (CU_KA1_A, CU_KA2_A, SCHERRER_K_SPHERE, flat_plate_factor,
                                                  kalpha_doublet_matrix, lp_factor, po_correction,
                                                  polarization_factor, powder_reflections, scherrer_fwhm_q)
from qdots_bluesky.sim.physics.reflections import bragg_reflections, family_march_dollase
from qdots_bluesky.standardize import QGrid
from qdots_bluesky.units import tth_to_q

Q = QGrid().q
A_PBS = 5.934


def test_lp_and_polarization_factor_shapes():
    tth = np.array([20.0, 45.0, 90.0, 120.0])
    th = np.radians(tth) / 2
    lp = (1 + np.cos(2 * th) ** 2) / (np.sin(th) ** 2 * np.cos(th))
    np.testing.assert_allclose(lp_factor(tth), lp)
    np.testing.assert_allclose(lp_factor(tth, monochromator_tth_deg=0.0), lp / 2)
    np.testing.assert_allclose(polarization_factor(tth), (1 + np.cos(np.radians(tth)) ** 2) / 2)
    assert polarization_factor(90.0) == pytest.approx(0.5)
    m2 = np.cos(np.radians(26.57)) ** 2
    assert polarization_factor(90.0, 26.57) == pytest.approx(1 / (1 + m2))
    assert np.all(np.diff(lp_factor(np.linspace(20, 95, 50))) < 0)  # falls to its minimum near 2theta = 98 deg


def test_po_correction_sampled_every_tenth_of_sigma_matches_every_point():
    """C is evaluated every ~sigma/10 and interpolated: within 1 % of evaluating it at every Q point (0.8 % for
    the widest windows, 2 nm dots; 0.2 % from 4 nm on)."""
    refl = bragg_reflections("PbS", 9.0)
    rq = np.array([r.q for r in refl])
    ri = np.array([r.multiplicity * r.f_squared / r.q**2 for r in refl])
    diameters = np.array([2.0, 4.0, 6.0, 10.0])
    p = family_march_dollase("PbS", refl, (1, 1, 1), np.array([0.6, 0.7, 0.8, 0.9]))
    sigma = scherrer_fwhm_q(diameters)
    sampled = po_correction(Q, rq, ri / ri.max(), p, sigma, np.full(4, 0.01))
    every_point = po_correction(Q, rq, ri / ri.max(), p, sigma, np.full(4, 0.01), samples_per_sigma=np.inf)
    assert np.ptp(every_point) > 0.3  # a real texture
    np.testing.assert_allclose(sampled, every_point, atol=1e-2)
    np.testing.assert_allclose(sampled[1:], every_point[1:], atol=2.5e-3)


def test_flat_plate_factor_is_polarization_or_lp():
    tth = np.linspace(20.0, 120.0, 11)
    np.testing.assert_array_equal(flat_plate_factor(tth), polarization_factor(tth))
    np.testing.assert_allclose(flat_plate_factor(tth, lorentz=True), lp_factor(tth) / 2, rtol=1e-12)
    np.testing.assert_allclose(flat_plate_factor(tth, 26.57, lorentz=True), lp_factor(tth, 26.57), rtol=1e-12)


def test_kalpha_doublet_puts_a_shoulder_of_half_height_at_the_wavelength_ratio():
    """A sharp line at Q0 on the library grid appears on the 2theta axis at 2theta(Q0, K-alpha1) with weight 1 and
    at 2theta(Q0 lambda2/lambda1 ...) i.e. where Q(K-alpha2) = Q0, with weight 0.5."""
    step = Q[1] - Q[0]
    tth = np.arange(20.0, 100.0, 0.01)
    q1, q2 = tth_to_q(tth, CU_KA1_A), tth_to_q(tth, CU_KA2_A)
    W = kalpha_doublet_matrix(q1, q2, 0.5, Q[0], step, Q.size, np.ones(tth.size))
    j = int(np.searchsorted(Q, 4.0))
    y = np.zeros(Q.size)
    y[j] = 1.0
    out = W @ y
    i1, i2 = int(np.argmax(out * (q1 < Q[j] + step))), int(np.argmax(out * (q2 > Q[j] - step) * (q1 > Q[j] + step)))
    assert q1[i1] == pytest.approx(Q[j], abs=step)
    assert q1[i2] == pytest.approx(Q[j] * CU_KA2_A / CU_KA1_A, abs=2 * step)  # the K-alpha2 copy, on the K-alpha1 scale
    # interpolation weights: the doublet's total weight is 1 + 0.5 for a flat pattern
    np.testing.assert_allclose(W @ np.ones(Q.size), 1.5)


def test_scherrer_width_of_spheres():
    assert SCHERRER_K_SPHERE == pytest.approx(1.0747)
    np.testing.assert_allclose(scherrer_fwhm_q([2.0, 10.0]), 2 * np.pi * 1.0747 / np.array([20.0, 100.0]))
    assert scherrer_fwhm_q(5.0) == pytest.approx(0.135, abs=1e-3)  # 1/A, 5 nm dots


def test_powder_reflections_of_pbs_relative_intensities():
    refl, q, inten = powder_reflections("PbS", 4.0)
    assert [r.hkl for r in refl[:2]] == [(1, 1, 1), (2, 0, 0)]
    np.testing.assert_allclose(q[:2], 2 * np.pi * np.sqrt([3.0, 4.0]) / A_PBS, rtol=1e-6)
    assert inten.max() == 1.0 and np.argmax(inten) == 1  # (200) is the strongest PbS reflection
    assert np.all(inten > 0)


def test_po_correction_is_the_identity_without_texture():
    refl = bragg_reflections("PbS", 8.0)
    p = np.ones((1, len(refl)))
    C = po_correction(Q, np.array([r.q for r in refl]), np.ones(len(refl)), p, np.array([0.1]))
    np.testing.assert_array_equal(C, 1.0)


def test_po_correction_is_the_family_factor_on_an_isolated_peak():
    refl, rq, ri = powder_reflections("PbS", 9.0)
    p = family_march_dollase("PbS", refl, (1, 0, 0), np.array([0.7]))
    sigma = scherrer_fwhm_q(10.0) / 4
    C = po_correction(Q, rq, ri, p, np.array([sigma]))[0]
    k200 = [r.hkl for r in refl].index((2, 0, 0))
    at = int(np.argmin(np.abs(Q - rq[k200])))
    assert C[at] == pytest.approx(p[0, k200], rel=0.02)
    between = int(np.argmin(np.abs(Q - 0.5 * (rq[k200] + rq[k200 + 1]))))
    assert C[between] == pytest.approx(1.0, abs=0.05)  # diffuse region between peaks: untextured
