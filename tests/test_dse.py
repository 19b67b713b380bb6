"""The Debye scattering equation against a brute-force double sum and against crystallography."""
from __future__ import annotations

import numpy as np
import pytest
from ase.cluster import Icosahedron

from qdots_bluesky.sim.physics.clusters import build_series_cluster, build_sphere_cluster
from qdots_bluesky.sim.physics.dse import debye_pattern, sin_over_x
from qdots_bluesky.sim.physics.form_factors import complex_form_factor, incoherent_scattering_function, breit_dirac_recoil
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.pair_histogram import atoms_pair_histogram, lattice_pair_histogram

Q = np.linspace(0.3, 15.0, 400)


def brute_force(atoms, q, wavelength, b_iso):
    """I(Q) = sum_i sum_j Re(f_i f_j*) o_i o_j T_i T_j sinc(Q d_ij), self terms undamped, over all pairs."""
    pos = atoms.get_positions()
    sym = atoms.get_chemical_symbols()
    occ = atoms.arrays.get("occupancy", np.ones(len(sym)))
    f = {e: complex_form_factor(e, q, wavelength) for e in set(sym)}
    t = {e: np.exp(-b_iso[e] * (q / (4 * np.pi)) ** 2) for e in set(sym)}
    out = np.zeros_like(q)
    for i in range(len(pos)):
        d = np.linalg.norm(pos - pos[i], axis=1)
        for j in range(len(pos)):
            if i == j:
                out += occ[i] * np.abs(f[sym[i]]) ** 2
            else:
                x = q * d[j]
                out += (f[sym[i]] * np.conj(f[sym[j]])).real * occ[i] * occ[j] * t[sym[i]] * t[sym[j]] * np.sin(x) / x
    return out


@pytest.mark.parametrize("material,n", [("PbS", 3), ("CdSe", 3), ("PbSe", 2)])
def test_lattice_dse_equals_brute_force(material, n):
    structure = get_structure(material)
    cluster = build_series_cluster(structure, n)
    b = dict(zip(structure.elements, structure.b_iso))
    expected = brute_force(cluster.to_atoms(), Q, 0.56, b)
    got = debye_pattern(lattice_pair_histogram(cluster), Q, 0.56, compton=False, precision="double").crystal
    assert np.max(np.abs(got - expected)) / expected.max() < 1e-6
    fast = debye_pattern(lattice_pair_histogram(cluster), Q, 0.56, compton=False, precision="fast").crystal
    assert np.max(np.abs(fast - expected)) / expected.max() < 1e-6


def test_pair_counts_are_all_ordered_pairs():
    cluster = build_series_cluster(get_structure("PbS"), 6)
    hist = lattice_pair_histogram(cluster)
    n = cluster.n_atoms
    assert n == 2 * 6**3
    assert hist.counts.sum() == n * (n - 1)
    # rock salt: every distance is (a/2) sqrt(integer); nearest neighbours Pb-S at a/2
    m = (hist.distances / (5.934 / 2)) ** 2
    assert np.allclose(m, np.round(m), atol=1e-9)
    assert hist.distances[0] == pytest.approx(5.934 / 2)
    assert hist.counts[0].tolist() == [0.0, hist.counts[0, 1], 0.0] and hist.counts[0, 1] > 0


def test_general_atoms_path_on_an_icosahedron_within_its_stated_error():
    atoms = Icosahedron("Au", noshells=3)  # 55 atoms, not a lattice cluster
    b = {"Au": 0.6}
    expected = brute_force(atoms, Q, 1.0, b)
    hist = atoms_pair_histogram(atoms, bin_width_a=0.01, b_iso=b)
    got = debye_pattern(hist, Q, 1.0, compton=False, precision="double").crystal
    bound = hist.max_relative_pair_error(Q.max())
    assert 0 < bound < 1e-2
    pair_weight = np.abs(expected - len(atoms) * np.abs(complex_form_factor("Au", Q, 1.0)) ** 2).max()
    err = np.max(np.abs(got - expected))
    assert err > 0  # binned, not exact
    assert err <= bound * len(atoms) ** 2 * np.abs(complex_form_factor("Au", Q, 1.0)).max() ** 2
    assert err / expected.max() < 1e-4 and err < pair_weight


def test_sin_over_x_fast_is_accurate():
    x = np.geomspace(1e-3, 5e3, 100_000)
    assert np.max(np.abs(sin_over_x(x, "fast") - np.sin(x) / x) * x) < 3e-7


def bragg_peak_q(q, intensity, q_guess, half_window=0.12):
    sel = np.abs(q - q_guess) < half_window
    qs, ys = q[sel], intensity[sel]
    i = np.argmax(ys)
    # parabola through the three highest points for sub-step precision
    a, b, _ = np.polyfit(qs[i - 1:i + 2], ys[i - 1:i + 2], 2)
    return -b / (2 * a)


def fwhm(q, intensity, q_peak, half_window=0.25):
    """Full width at half maximum of the contiguous peak around q_peak, above the lower window edge."""
    sel = np.abs(q - q_peak) < half_window
    qs, ys = q[sel], intensity[sel]
    i = int(np.argmax(ys))
    half = min(ys[0], ys[-1]) + (ys[i] - min(ys[0], ys[-1])) / 2
    left, right = i, i
    while left > 0 and ys[left - 1] >= half:
        left -= 1
    while right < ys.size - 1 and ys[right + 1] >= half:
        right += 1
    return qs[right] - qs[left]


@pytest.mark.parametrize("strain", [0.0, 0.01, -0.02])
def test_bragg_peaks_at_strained_d_spacings(strain):
    a = 5.934 * (1 + strain)
    q = np.linspace(1.5, 5.0, 3000)
    hist = lattice_pair_histogram(build_series_cluster(get_structure("PbS"), 22))  # 10.2 nm
    pattern = debye_pattern(hist, q, 0.56, strain=strain, compton=False)
    for hkl in [(2, 0, 0), (2, 2, 0), (2, 2, 2), (4, 0, 0)]:
        q_bragg = 2 * np.pi * np.linalg.norm(hkl) / a
        assert bragg_peak_q(q, pattern.crystal, q_bragg) == pytest.approx(q_bragg, rel=2e-3)


def test_peak_width_falls_with_size_as_scherrer():
    q = np.linspace(1.6, 2.7, 3000)
    q200 = 4 * np.pi / 5.934
    widths = {}
    for n in (6, 12, 24):
        cluster = build_series_cluster(get_structure("PbS"), n)
        pattern = debye_pattern(lattice_pair_histogram(cluster), q, 0.56, compton=False)
        widths[cluster.diameter_nm] = fwhm(q, pattern.crystal, q200)
    d = sorted(widths)
    assert widths[d[0]] > widths[d[1]] > widths[d[2]]
    # Scherrer for spheres: FWHM(Q) ~ 2 pi K / D with K ~ 1.1 (equal-volume diameter)
    for diameter in d[1:]:
        k = widths[diameter] * diameter * 10 / (2 * np.pi)
        assert 0.85 < k < 1.35


def test_high_q_limit_is_self_scattering_plus_compton():
    q = np.linspace(20.0, 30.0, 50)
    structure = get_structure("PbS")
    hist = lattice_pair_histogram(build_series_cluster(structure, 5))
    pattern = debye_pattern(hist, q, 0.56)
    self_term = sum(n * np.abs(complex_form_factor(e, q, 0.56)) ** 2 for n, e in zip(hist.atoms_per_species, structure.elements))
    compton = sum(n * incoherent_scattering_function(e, q) for n, e in zip(hist.atoms_per_species, structure.elements))
    compton = compton * breit_dirac_recoil(q, 0.56)
    np.testing.assert_allclose(pattern.compton, compton, rtol=1e-12)
    assert np.max(np.abs(pattern.total / (self_term + compton) - 1)) < 0.01
    # and the pair terms are not negligible at low Q
    low = debye_pattern(hist, np.array([2.0, 2.1]), 0.56, compton=False).crystal
    assert np.all(np.abs(low / (hist.atoms_per_species * 1.0).sum() - 1) > 0)


def test_compton_is_a_switchable_separate_component():
    hist = lattice_pair_histogram(build_series_cluster(get_structure("PbS"), 4))
    on = debye_pattern(hist, Q, 0.56, compton=True)
    off = debye_pattern(hist, Q, 0.56, compton=False)
    np.testing.assert_array_equal(on.crystal, off.crystal)
    assert np.all(off.compton == 0) and np.all(on.compton > 0)
    # about 1 % of sum f^2 at Q = 5 and ~9 % at Q = 15 for PbS (DESIGN.md)
    f2 = sum(n * np.abs(complex_form_factor(e, np.array([5.0, 15.0]), 0.56)) ** 2 for n, e in zip(hist.atoms_per_species, ("Pb", "S")))
    ratio = debye_pattern(hist, np.array([5.0, 15.0]), 0.56).compton / f2
    assert 0.005 < ratio[0] < 0.03 and 0.05 < ratio[1] < 0.15


def test_sphere_cluster_holds_every_atom_within_the_radius():
    structure = get_structure("PbS")
    cluster = build_sphere_cluster(structure, 2.0)
    r = np.linalg.norm(cluster.positions(), axis=1)
    assert r.max() <= 10.0 + 1e-9
    assert cluster.n_atoms == int(np.sum(r <= 10.0))
    atoms = cluster.to_atoms()
    assert len(atoms) == cluster.n_atoms and set(atoms.get_chemical_symbols()) == {"Pb", "S"}
