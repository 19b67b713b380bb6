"""The residuals' correlation factor (qdots_bluesky.refine.residuals) and its use on a refinement's e.s.d.s."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.refine import refine_pattern
from qdots_bluesky.refine.basis import refinement_basis
from qdots_bluesky.refine.residuals import esd_correlation_factor
from qdots_bluesky.sim.physics.profiles import voigt_convolve

WL = 0.564162


def test_white_residuals_need_no_correction():
    rng = np.random.default_rng(0)
    factors = [esd_correlation_factor(rng.normal(size=4000)) for _ in range(10)]
    assert all(1.0 <= f < 1.15 for f in factors)


@pytest.mark.parametrize("width", [4, 16])
def test_moving_average_gives_sqrt_of_its_width(width):
    # residuals averaged over `width` points carry one independent value per `width` points: tau = width
    rng = np.random.default_rng(width)
    smooth = np.convolve(rng.normal(size=20000), np.ones(width) / width, mode="valid")
    assert esd_correlation_factor(smooth) == pytest.approx(np.sqrt(width), rel=0.2)


@pytest.mark.parametrize("n", [4967, 1000, 37])
def test_factor_is_that_of_the_direct_autocorrelation(n):
    # the FFT's padded length (a fast one beyond 2n, e.g. for a prime n) must give the linear autocorrelation
    r = np.convolve(np.random.default_rng(n).normal(size=n + 6), np.ones(7) / 7, mode="valid")
    c = r - r.mean()
    acf = np.correlate(c, c, mode="full")[n - 1:] / float(c @ c)
    gammas = acf[0:2 * (n // 2):2] + acf[1:2 * (n // 2):2]
    stop = np.flatnonzero(gammas <= 0)
    tau = -1.0 + 2.0 * gammas[: stop[0] if stop.size else gammas.size].sum()
    assert esd_correlation_factor(r) == pytest.approx(np.sqrt(max(tau, 1.0)), rel=1e-9)


def test_degenerate_input():
    assert esd_correlation_factor(np.zeros(100)) == 1.0
    assert esd_correlation_factor(np.ones(3)) == 1.0
    assert esd_correlation_factor(np.array([1.0, np.nan] * 20)) >= 1.0
    huge = 1e200 * np.convolve(np.random.default_rng(2).normal(size=3000), np.ones(9) / 9, mode="valid")
    assert esd_correlation_factor(huge) == pytest.approx(esd_correlation_factor(huge / 1e200))  # no overflow


def test_a_misfit_widens_the_esds_by_the_factor():
    """Dots seen through a resolution the model is told is absent: systematic residuals, a factor well above 1,
    and the reported e.s.d.s are the covariance's times that factor."""
    q_grid = np.linspace(0.8, 8.5, 700)
    basis = refinement_basis("PbS", WL, q_grid, max_diameter_nm=6.0)
    crys, comp = basis.patterns(np.array([3.4]), np.array([0.10]), np.array([0.0]))
    step = float(q_grid[1] - q_grid[0])
    dots = voigt_convolve(crys.astype(float), step, 0.0, 0.03)[0] + comp[0]
    sel = (q_grid >= 1.0) & (q_grid <= 8.0)
    rng = np.random.default_rng(1)
    y = rng.poisson(2.0e4 * dots[sel] / dots[sel].mean() + 3000.0).astype(float)
    kw = dict(wavelength_a=WL, x_unit="q", solvent="none", basis=basis, q_range=(1.0, 8.0), profile=False,
              instrument_fwhm=(0.0, 0.0))
    corrected = refine_pattern(q_grid[sel], y, **kw)
    plain = refine_pattern(q_grid[sel], y, correlated_esd=False, **kw)
    assert corrected.esd_correlated and not plain.esd_correlated
    factor = corrected.esd_correlation_factor
    assert factor > 2.0 and plain.esd_correlation_factor == pytest.approx(factor)
    assert corrected.size_nm == pytest.approx(plain.size_nm)
    for key in ("size_std_nm", "size_volume_std_nm", "dispersion_std", "strain_std"):
        assert getattr(corrected, key) == pytest.approx(factor * getattr(plain, key), rel=1e-9), key
    assert corrected.to_dict()["esd_correlated"] is True
