"""Rescaling a simulated pattern to another lattice parameter (sim/lattice_jitter.py)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.cache import series_histogram
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.lattice_jitter import mean_squared_form_factor, rescale_lattice
from qdots_bluesky.sim.physics.materials import get_structure

Q = np.linspace(1.0, 15.0, 5004)
PBS = get_structure("PbS")
WAVELENGTH_A = 0.56


def rms(v):
    return float(np.sqrt(np.mean(np.square(v))))


@pytest.fixture(scope="module")
def cluster():
    return series_histogram(PBS, 3)


@pytest.mark.parametrize("strain", [0.001, -0.001, 0.004])
def test_rescaled_pattern_is_the_dse_of_the_strained_clusters(cluster, strain):
    """I(Q (1 + e)) F(Q) / F(Q (1 + e)) is the DSE of the same clusters with every distance times 1 + e, to a
    small fraction of what the strain changes; without the form-factor ratio it is several times worse."""
    base = debye_pattern(cluster, Q, WAVELENGTH_A, 0.0).crystal
    strained = debye_pattern(cluster, Q, WAVELENGTH_A, strain).crystal
    form_factor_sq = mean_squared_form_factor(PBS, Q, WAVELENGTH_A)
    got = rescale_lattice(Q, base[None, :], np.array([1.0 + strain]), form_factor_sq)[0]
    inside = Q < 14.9  # the last points read beyond the grid's end for e > 0
    error = rms((got - strained)[inside]) / strained.mean()
    change = rms((base - strained)[inside]) / strained.mean()
    assert error < 0.05 * change and error < 1e-3
    without_ratio = rescale_lattice(Q, base[None, :], np.array([1.0 + strain]), np.ones_like(Q))[0]
    assert rms((without_ratio - strained)[inside]) / strained.mean() > 3 * error


def test_mean_squared_form_factor_is_the_site_average_and_falls_with_q():
    f_sq = mean_squared_form_factor(PBS, np.array([1e-3, 5.0, 14.0]), None)
    assert f_sq[0] == pytest.approx((82**2 + 16**2) / 2, rel=1e-3)  # forward: f = Z
    assert f_sq[0] > f_sq[1] > f_sq[2] > 0


def test_scale_one_is_the_identity_and_a_peak_moves_to_q_over_scale():
    peak = np.exp(-0.5 * ((Q - 8.0) / 0.05) ** 2) + 0.1
    flat = np.ones_like(Q)
    rows = np.stack([peak, peak, peak])
    out = rescale_lattice(Q, rows, np.array([1.0, 1.01, 0.99]), flat)
    np.testing.assert_allclose(out[0], peak, rtol=1e-6, atol=1e-7)
    for row, s in zip(out[1:], (1.01, 0.99)):
        centre = np.sum(Q * (row - 0.1)) / np.sum(row - 0.1)
        assert centre == pytest.approx(8.0 / s, abs=2e-4)  # a larger lattice: the peak at lower Q
        width = np.sqrt(np.sum((Q - centre) ** 2 * (row - 0.1)) / np.sum(row - 0.1))
        assert width == pytest.approx(0.05 / s, rel=2e-3)  # the cubic keeps the peak's width
    assert out.dtype == np.float32


def test_rescale_rejects_bad_shapes_and_scales():
    with pytest.raises(ValueError, match="accepted: q"):
        rescale_lattice(Q, np.ones((2, 10)), np.ones(2), np.ones_like(Q))
    with pytest.raises(ValueError, match="accepted: 0.5 to 2"):
        rescale_lattice(Q, np.ones((1, Q.size)), np.array([3.0]), np.ones_like(Q))
