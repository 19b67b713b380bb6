"""Metal nanoclusters (issue 18, physics): families, size descriptors, SAXS + WAXS patterns, bases, populations."""
from __future__ import annotations

import numpy as np
import pytest
from ase.cluster import Decahedron, Icosahedron, Octahedron

from qdots_bluesky.sim.physics.cluster_symmetry import orbit_row_weights, symmetry_orbits
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.form_factors import coherent_form_factor
from qdots_bluesky.sim.physics.metal_basis import (
    build_metal_basis,
    metal_pair_histogram,
    mixture_patterns,
    saxs_waxs_q,
    size_weight_matrix,
)
from qdots_bluesky.sim.physics.metal_clusters import (
    FAMILIES,
    atom_count,
    build_metal_cluster,
    equal_volume_diameter_nm,
    family_parameters,
    family_series,
    fcc_lattice_parameter,
)
from qdots_bluesky.sim.physics.pair_histogram import atoms_pair_histogram

Q = saxs_waxs_q(0.05, 15.0, 600)


def exact_sinc_sum(atoms, q: np.ndarray) -> np.ndarray:
    """sum over ordered pairs i != j of sin(q d)/(q d), by brute force (small clusters only)."""
    p = atoms.get_positions()
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)[np.triu_indices(len(p), 1)]
    x = np.outer(q, d)
    return 2.0 * (np.sin(x) / x).sum(axis=1)


def test_lattice_parameters_come_from_ase_reference_data():
    assert fcc_lattice_parameter("Au") == pytest.approx(4.08)
    for element in ("Ag", "Pt", "Pd", "Cu"):
        assert 3.5 < fcc_lattice_parameter(element) < 4.2


def test_atom_counts_are_the_magic_numbers_of_ase():
    assert [atom_count("icosahedron", (k,)) for k in range(1, 6)] == [1, 13, 55, 147, 309]
    assert [len(Icosahedron("Au", k)) for k in range(1, 5)] == [1, 13, 55, 147]
    for p, q, r in [(1, 1, 0), (2, 1, 0), (3, 2, 1), (4, 1, 2), (2, 3, 3)]:
        assert atom_count("decahedron", (p, q, r)) == len(Decahedron("Au", p, q, r))
    for length, cutoff in [(3, 0), (5, 1), (7, 2), (9, 4), (10, 3)]:
        assert atom_count("octahedron", (length, cutoff)) == len(Octahedron("Au", length, cutoff))
    # cuboctahedra and icosahedra share the magic numbers
    assert [atom_count("cuboctahedron", (2 * c + 1, c)) for c in range(1, 4)] == [13, 55, 147]


@pytest.mark.parametrize("family", FAMILIES)
def test_series_are_deterministic_and_ordered_by_size(family):
    params = family_parameters("Au", family, 1.0, 2.5)
    assert params and params == family_parameters("Au", family, 1.0, 2.5)
    clusters = family_series("Au", family, 1.0, 2.5)
    d = np.array([c.diameter_nm for c in clusters])
    assert np.all(np.diff(d) >= 0) and 1.0 <= d.min() and d.max() <= 2.5
    c = clusters[-1]
    assert c.diameter_nm == pytest.approx(float(equal_volume_diameter_nm(c.n_atoms, 4.08)))
    assert c.extent_nm >= 0.9 * c.diameter_nm
    assert (c.lattice is not None) == (family not in ("icosahedron", "decahedron"))


def test_strain_scales_the_lattice_and_the_diameter():
    bulk = build_metal_cluster("Ag", "decahedron", (3, 2, 1))
    strained = build_metal_cluster("Ag", "decahedron", (3, 2, 1), strain=0.01)
    assert strained.n_atoms == bulk.n_atoms
    assert strained.diameter_nm == pytest.approx(1.01 * bulk.diameter_nm)
    assert strained.extent_nm == pytest.approx(1.01 * bulk.extent_nm)


def test_the_icosahedron_keeps_its_intrinsic_strain():
    atoms = build_metal_cluster("Au", "icosahedron", (2,)).atoms  # centre + 12 vertices
    r = np.linalg.norm(atoms.positions - atoms.positions[0], axis=1)
    centre = int(np.argmin(r))
    shell = np.delete(atoms.positions, centre, axis=0) - atoms.positions[centre]
    radial = np.linalg.norm(shell, axis=1).mean()
    d = np.linalg.norm(shell[:, None] - shell[None], axis=-1)
    tangential = d[d > 0].min()
    assert radial / tangential == pytest.approx(0.951, abs=0.002)  # circumradius / edge = sin(2 pi / 5): 5 % shorter


def test_symmetry_orbits_give_the_full_histogram():
    cluster = build_metal_cluster("Pt", "decahedron", (3, 2, 1))
    labels, verified = symmetry_orbits(cluster.atoms, cluster.symmetry_candidates())
    assert verified == 3 and labels.max() + 1 < cluster.n_atoms / 5
    full = atoms_pair_histogram(cluster.atoms)
    reduced = atoms_pair_histogram(cluster.atoms, row_weights=orbit_row_weights(labels))
    np.testing.assert_allclose(reduced.counts, full.counts)
    np.testing.assert_allclose(reduced.distances, full.distances, atol=1e-9)


@pytest.mark.parametrize("family, params", [("icosahedron", (4,)), ("decahedron", (3, 2, 1)),
                                            ("truncated_octahedron", (7, 2))])
def test_binned_and_basis_patterns_agree_with_the_exact_sum_within_their_bounds(family, params):
    cluster = build_metal_cluster("Au", family, params)
    f2 = coherent_form_factor("Au", Q) ** 2
    exact = f2 * (cluster.n_atoms + exact_sinc_sum(cluster.atoms, Q))
    n_pairs = cluster.n_atoms * (cluster.n_atoms - 1)
    binned = atoms_pair_histogram(cluster.atoms, bin_width_a=0.01)
    ours = debye_pattern(binned, Q, None, compton=False, precision="double").crystal
    assert np.max(np.abs(ours - exact) / (f2 * n_pairs)) <= binned.max_relative_pair_error(Q[-1])
    d = cluster.diameter_nm
    basis = build_metal_basis("Au", family, Q, d - 1e-6, d + 1e-6, wavelength_a=None, compton=False, precision="double")
    row = basis.params.index(cluster.params)
    assert np.max(np.abs(basis.crystal[row] - exact) / (f2 * n_pairs)) <= basis.max_relative_pair_error()
    assert np.max(np.abs(basis.crystal[row] - exact) / exact) < 2e-3


def test_saxs_guinier_region_gives_the_radius_of_gyration_of_a_sphere():
    cluster = build_metal_cluster("Au", "sphere", (5.0,))
    q = np.linspace(0.01, 0.12, 40)
    hist = metal_pair_histogram(cluster)
    intensity = debye_pattern(hist, q, None, compton=False).crystal / coherent_form_factor("Au", q) ** 2
    radius_a = cluster.diameter_nm * 10 / 2
    keep = q * np.sqrt(0.6) * radius_a < 1.0
    slope = np.polyfit(q[keep] ** 2, np.log(intensity[keep]), 1)[0]
    assert np.sqrt(-3.0 * slope) == pytest.approx(np.sqrt(0.6) * radius_a, rel=0.03)


def test_waxs_peaks_of_a_large_fcc_cluster_sit_at_the_bragg_positions():
    cluster = build_metal_cluster("Cu", "truncated_octahedron", (16, 5))
    q = np.linspace(2.0, 6.5, 3000)
    intensity = debye_pattern(metal_pair_histogram(cluster), q, None, compton=False).crystal
    a = fcc_lattice_parameter("Cu")
    for hkl in ((1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1)):
        q_hkl = 2 * np.pi * np.sqrt(sum(h * h for h in hkl)) / a
        window = np.abs(q - q_hkl) < 0.15
        assert q[window][np.argmax(intensity[window])] == pytest.approx(q_hkl, rel=0.01), hkl


@pytest.fixture(scope="module")
def bases():
    return [build_metal_basis("Au", family, Q, 1.0, 2.0) for family in ("icosahedron", "decahedron")]


def test_population_patterns_are_weighted_sums_of_the_basis(bases):
    basis = bases[1]
    mean, dispersion = np.array([1.4, 1.6]), np.array([0.1, 0.0])
    weights = basis.weights(mean, dispersion)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    crystal, compton = basis.patterns(mean, dispersion)
    np.testing.assert_allclose(crystal, weights @ basis.crystal)
    np.testing.assert_allclose(compton, weights @ basis.compton)
    nearest = np.abs(basis.diameter_nm - 1.6) == np.abs(basis.diameter_nm - 1.6).min()
    assert np.all(weights[1, ~nearest] == 0)
    mixed, _ = mixture_patterns(bases, np.array([[0.3, 0.7]]), mean[:1], dispersion[:1])
    np.testing.assert_allclose(mixed[0], 0.3 * bases[0].patterns(mean[:1], dispersion[:1])[0][0] + 0.7 * crystal[0])


def test_size_weights_follow_the_lognormal_distribution():
    d = np.arange(1.0, 10.01, 0.1)
    w = size_weight_matrix(d, np.array([5.0]), np.array([0.1]))[0]
    assert np.sum(w * d) == pytest.approx(5.0, rel=0.01)
    assert np.sqrt(np.sum(w * (d - 5.0) ** 2)) / 5.0 == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("call, accepted", [
    (lambda: fcc_lattice_parameter("Qq"), "accepted"),
    (lambda: fcc_lattice_parameter("Fe"), "bcc"),
    (lambda: family_parameters("Au", "icosahedron", 0.1, 5.0), "accepted"),
    (lambda: family_parameters("Au", "icosahedron", 1.0, 50.0), "accepted"),
    (lambda: family_parameters("Au", "cube", 1.0, 5.0), "accepted"),
    (lambda: build_metal_cluster("Au", "decahedron", (0, 1, 0)), "accepted"),
    (lambda: build_metal_cluster("Au", "icosahedron", (3,), strain=0.2), "accepted"),
    (lambda: size_weight_matrix(np.array([2.0, 3.0]), np.array([30.0]), np.array([0.1])), "accepted"),
])
def test_bad_input_raises_one_line_saying_what_is_accepted(call, accepted):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and accepted in message
