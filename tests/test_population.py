"""Size distributions, populations and the training library."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.clusters import build_series_cluster, equal_volume_diameter_nm
from qdots_bluesky.sim.physics.distribution import clusters_needed, lognormal_number_weights
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.library import LibrarySettings, build_library, library_content_sha256, load_library, reference_lattice_ratios
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.pair_histogram import lattice_pair_histogram
from qdots_bluesky.sim.physics.population import population_weights, simulate_population

PBS = get_structure("PbS")


def test_reference_cluster_series_diameters():
    assert float(equal_volume_diameter_nm(PBS, 1)) == pytest.approx(0.4638, abs=5e-5)
    assert float(equal_volume_diameter_nm(PBS, 45)) == pytest.approx(20.87, abs=0.01)
    c = build_series_cluster(PBS, 7)
    assert c.site_counts().tolist() == [343, 343]  # n^3 formula units


def test_lognormal_weights_have_the_requested_mean_and_spread():
    unit = 0.4638
    n = np.arange(1, 200)
    w = lognormal_number_weights(n, unit, 8.0, 0.15)
    d = n * unit
    mean = np.sum(w * d)
    std = np.sqrt(np.sum(w * (d - mean) ** 2))
    assert w.sum() == pytest.approx(1.0)
    assert mean == pytest.approx(8.0, rel=0.01)
    assert std / mean == pytest.approx(0.15, rel=0.05)
    single = lognormal_number_weights(n, unit, 5.0, 0.0)
    assert single.sum() == 1.0 and d[np.argmax(single)] == pytest.approx(11 * unit)


def test_population_is_the_number_weighted_sum_of_its_clusters():
    q = np.linspace(1.0, 15.0, 700)
    pop = population_weights(PBS, 3.0, 0.1)
    expected = sum(w * debye_pattern(lattice_pair_histogram(build_series_cluster(PBS, int(n))), q, 0.56, 0.002).total
                   for n, w in zip(pop.n, pop.weights))
    got = simulate_population(PBS, 3.0, q, 0.1, 0.002, 0.56).total
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.parametrize("kwargs,words", [
    (dict(mean_nm=0.0, dispersion=0.1), "positive"),
    (dict(mean_nm=-3.0, dispersion=0.1), "positive"),
    (dict(mean_nm=float("nan"), dispersion=0.1), "positive"),
    (dict(mean_nm=5.0, dispersion=0.5), "[0, 0.5)"),
    (dict(mean_nm=5.0, dispersion=-0.1), "[0, 0.5)"),
    (dict(mean_nm=5.0, dispersion=0.1, strain=0.11), "10 %"),
    (dict(mean_nm=500.0, dispersion=0.1), "largest cluster"),
    (dict(mean_nm=500.0, dispersion=0.1, max_diameter_nm=1000.0), "atoms"),
])
def test_bad_population_is_refused_before_any_work(kwargs, words):
    with pytest.raises(ValueError) as info:
        population_weights(PBS, **kwargs)
    assert words in str(info.value)


def test_reference_grid_defaults():
    s = LibrarySettings()
    assert len(s.mean_diameters_nm) == 17 and s.mean_diameters_nm[0] == 2.0 and s.mean_diameters_nm[-1] == 10.0
    assert s.dispersions == [0.05, 0.10, 0.15, 0.20]
    assert reference_lattice_ratios()[0] == 0.9975 and reference_lattice_ratios()[-1] == 1.0051 and len(reference_lattice_ratios()) == 19
    grids = s.grids()
    assert grids["q"]["q"].size == 5004
    assert grids["tth"]["tth_deg"][0] == 0.5 and grids["tth"]["tth_deg"][-1] == pytest.approx(83.9984)


def test_library_matches_single_simulations_and_stores_everything(tmp_path):
    settings = LibrarySettings(mean_diameters_nm=[2.5, 4.0], dispersions=[0.05, 0.2], lattice_ratios=[0.9975, 1.0051],
                               tth_grid_deg=(1.0, 60.0, 0.05), q_grid=(1.0, 15.0, 600))
    path = build_library(settings, tmp_path / "lib.h5", progress=False)
    lib = load_library(path, "q")
    assert lib.n_patterns == 8 and lib.total.shape == (8, 600)
    np.testing.assert_allclose(lib.total, lib.crystal + lib.compton, rtol=1e-6)
    assert lib.settings["material"] == "PbS" and lib.attrs["format"] == "qdots-library/1"
    for i in (0, 3, 6):
        expected = simulate_population(PBS, lib.mean_diameter_nm[i], lib.q, lib.dispersion[i], lib.strain[i], 0.56)
        np.testing.assert_allclose(lib.crystal[i], expected.crystal, rtol=1e-5)
        np.testing.assert_allclose(lib.compton[i], expected.compton, rtol=1e-5)
    tth = load_library(path, "tth")
    assert tth.total.shape == (8, 1181)
    assert tth.q[0] == pytest.approx(4 * np.pi * np.sin(np.radians(0.5)) / 0.56)


def test_library_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_library(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(ValueError, match="HDF5"):
        load_library(bad)


def test_clusters_needed_stay_within_the_series():
    n = clusters_needed(0.4638, 10.0, 0.2)
    assert n.min() >= 1 and n.max() == 45


def test_rebuilt_library_has_the_same_content_checksum(tmp_path):
    settings = LibrarySettings(mean_diameters_nm=[2.0], dispersions=[0.1], lattice_ratios=[1.0, 1.002],
                               tth_grid_deg=None, q_grid=(1.0, 15.0, 300))
    a = library_content_sha256(build_library(settings, tmp_path / "a.h5", progress=False))
    b = library_content_sha256(build_library(settings, tmp_path / "b.h5", progress=False))
    settings.dispersions = [0.15]
    c = library_content_sha256(build_library(settings, tmp_path / "c.h5", progress=False))
    assert a == b and a != c


def test_population_kernel_gives_each_cluster_its_debye_pattern_and_sums_populations():
    """One kernel for every caller: with identity weights the rows are the clusters' own DSE patterns (crystal and
    Compton), any weight row is the weighted sum of those, and each strain rescales the distances."""
    from qdots_bluesky.sim.physics.cache import series_histogram
    from qdots_bluesky.sim.physics.population import population_patterns, series_pair_table

    q = np.linspace(0.8, 14.0, 600)
    n = np.arange(1, 7)
    clusters = series_pair_table(PBS, n)
    assert clusters.n_clusters == n.size and clusters.table.shape[1] == n.size * len(clusters.pairs)
    strains = np.array([0.0, 0.004])
    crystal, compton = population_patterns(q, clusters, np.eye(n.size), strains, 0.56, dtype=np.float64)
    assert crystal.shape == (n.size * 2, q.size)
    for k in (1, 3, 6):
        for i, e in enumerate(strains):
            ref = debye_pattern(series_histogram(PBS, k), q, 0.56, e)
            row = (k - 1) * 2 + i
            np.testing.assert_allclose(crystal[row], ref.crystal, rtol=1e-9, atol=1e-9 * ref.crystal.max())
            np.testing.assert_allclose(compton[row], ref.compton, rtol=1e-12)
    w = np.array([[0.1, 0.2, 0.3, 0.2, 0.1, 0.1]])
    mixed, _ = population_patterns(q, clusters, w, strains[:1], 0.56, dtype=np.float64)
    np.testing.assert_allclose(mixed[0], w[0] @ crystal[::2], rtol=1e-12)
    f32, _ = population_patterns(q, clusters, w, strains[:1], 0.56)
    assert f32.dtype == np.float32
    with pytest.raises(ValueError, match="wavelength"):
        population_patterns(q, clusters, w, strains[:1], None)
