"""Per-cluster patterns and continuous populations: the basis reproduces the population DSE, weights and targets."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.cluster_basis import (
    PopulationRanges,
    build_cluster_basis,
    draw_populations,
    lognormal_weight_matrix,
    population_targets,
)
from qdots_bluesky.sim.physics.distribution import lognormal_number_weights
from qdots_bluesky.sim.physics.library import LibrarySettings
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.population import simulate_population

Q = np.linspace(1.0, 15.0, 700)


@pytest.fixture(scope="module")
def basis():
    return build_cluster_basis(LibrarySettings(max_diameter_nm=6.0, tth_grid_deg=None), Q)


def test_basis_holds_every_series_cluster_up_to_the_largest_diameter(basis):
    assert basis.n.tolist() == list(range(1, 13))  # 12 x 0.4638 nm = 5.57 nm <= 6 nm < 13 x 0.4638
    assert basis.unit_nm == pytest.approx(0.4638, abs=1e-4)
    assert basis.crystal.shape == basis.compton.shape == (12, Q.size)
    # more atoms scatter more: the self term (high Q) grows with the cube of n
    ratio = basis.crystal[-1, -50:].mean() / basis.crystal[0, -50:].mean()
    assert ratio == pytest.approx(12**3, rel=0.05)


@pytest.mark.parametrize("mean, dispersion, strain", [(3.0, 0.1, 0.0), (2.2, 0.25, 0.004), (4.0, 0.05, -0.006)])
def test_population_patterns_match_the_population_dse(basis, mean, dispersion, strain):
    ref = simulate_population(get_structure("PbS"), mean, Q, dispersion, strain, wavelength_a=0.56, max_diameter_nm=6.0)
    crystal, compton = basis.patterns(np.array([mean]), np.array([dispersion]), np.array([strain]))
    # exact at bulk lattice; the Q rescaling of a strained population is first order in the strain
    tol = 1e-6 if strain == 0 else 2e-3
    assert np.abs(crystal[0] - ref.crystal).max() <= tol * ref.crystal.max()
    assert np.allclose(compton[0], ref.compton, rtol=1e-5)


def test_weight_matrix_rows_are_the_lognormal_number_weights():
    n = np.arange(1, 46)
    mean, disp = np.array([2.0, 5.3, 10.7]), np.array([0.05, 0.17, 0.3])
    w = lognormal_weight_matrix(n, 0.4638, mean, disp)
    for row, m, d in zip(w, mean, disp):
        assert np.allclose(row, lognormal_number_weights(n, 0.4638, m, d))
    with pytest.raises(ValueError, match="dispersion"):
        lognormal_weight_matrix(n, 0.4638, np.array([3.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="mean diameter"):
        lognormal_weight_matrix(n, 0.4638, np.array([-1.0]), np.array([0.1]))


def test_volume_weighted_diameter_exceeds_the_number_mean_by_the_dispersion():
    n = np.arange(1, 46)
    t = population_targets(n, 0.4638, np.array([5.0, 5.0, 5.0]), np.array([0.03, 0.15, 0.3]), 0.0)
    excess = t["volume_diameter_nm"] / t["mean_diameter_nm"] - 1.0
    assert np.all(np.diff(excess) > 0) and excess[0] > 0
    # a continuous log-normal has D_V / D_N = exp(3 w^2) = (1 + c^2)^3; the discrete series is close to it when wide
    assert excess[2] == pytest.approx((1 + 0.3**2) ** 3 - 1.0, rel=0.02)
    assert t["strain"].tolist() == [0.0, 0.0, 0.0]


def test_population_draws_are_seeded_and_within_range():
    ranges = PopulationRanges(mean_diameter_nm=(2.0, 3.0), dispersion=(0.1, 0.2), strain=(-0.001, 0.002))
    a = draw_populations(np.random.default_rng(4), 500, ranges)
    b = draw_populations(np.random.default_rng(4), 500, ranges)
    for key, (lo, hi) in (("mean_diameter_nm", (2.0, 3.0)), ("dispersion", (0.1, 0.2)), ("strain", (-0.001, 0.002))):
        assert np.array_equal(a[key], b[key]) and lo <= a[key].min() and a[key].max() <= hi
    assert PopulationRanges.from_dict(ranges.to_dict()) == ranges
    for bad in ({"dispersion": (0.0, 0.2)}, {"mean_diameter_nm": (3.0, 2.0)}, {"strain": (-0.1, 0.0)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PopulationRanges(**bad)
