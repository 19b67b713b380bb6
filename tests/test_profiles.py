"""Peak profiles (sim/physics/profiles.py): instrument resolution."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.profiles import instrument_profile


def test_instrument_profile_keeps_area_and_adds_lorentzian_widths():
    x = np.arange(-20.0, 20.0, 0.01)

    def lorentz(fwhm):
        return (fwhm / 2) / np.pi / (x**2 + (fwhm / 2) ** 2)

    def fwhm_of(y):
        above = x[y >= y.max() / 2]
        return above[-1] - above[0]

    y = lorentz(0.5)[None, :].repeat(3, axis=0)
    out = instrument_profile(y, 0.01, np.array([0.0, 0.0, 0.3]), np.array([0.0, 0.2, 0.0]))
    assert np.allclose(out[0], y[0], atol=1e-6)  # no profile: unchanged
    assert np.allclose(out.sum(axis=1) / y.sum(axis=1), 1.0, atol=2e-3)  # areas kept (far tails aside)
    assert fwhm_of(out[1]) == pytest.approx(0.7, abs=0.02)  # Lorentzians add their widths
    assert np.allclose(out[1], lorentz(0.7), atol=2e-3 * lorentz(0.7).max())
    # a Gaussian of 0.3 widens a Lorentzian of 0.5 less: the Voigt FWHM (Olivero & Longbothum 1977, within 0.02 %)
    assert fwhm_of(out[2]) == pytest.approx(0.5346 * 0.5 + np.sqrt(0.2166 * 0.25 + 0.09), abs=0.02)
    with pytest.raises(ValueError, match="FWHM"):
        instrument_profile(y, 0.01, -1.0, 0.0)


def test_voigt_convolve_matches_instrument_profile_and_its_derivatives():
    import numpy as np

    from qdots_bluesky.sim.physics.profiles import instrument_profile, voigt_convolve

    step = 0.003
    x = np.arange(0.0, 10.0, step)
    y = np.exp(-0.5 * ((x - 5.0) / 0.02) ** 2)[None]
    out, d_g2, d_l = voigt_convolve(y, step, 0.01, 0.005, derivatives=True, max_fwhm=0.02)
    assert out.dtype == np.float64
    assert np.abs(out - instrument_profile(y, step, 0.01, 0.005)).max() < 1e-5 * out.max()
    assert abs(out.sum() / y.sum() - 1.0) < 1e-3  # area kept
    h = 1e-7
    fd_g2 = (voigt_convolve(y, step, np.sqrt(0.01**2 + h), 0.005, max_fwhm=0.02) - out) / h
    fd_l = (voigt_convolve(y, step, 0.01, 0.005 + 1e-6, max_fwhm=0.02) - out) / 1e-6
    assert np.abs(fd_g2 - d_g2).max() < 1e-3 * np.abs(d_g2).max()  # derivative by the Gaussian's FWHM squared
    assert np.abs(fd_l - d_l).max() < 1e-3 * np.abs(d_l).max()
    assert np.array_equal(voigt_convolve(y, step, 0.0, 0.0), y)
