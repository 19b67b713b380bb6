"""Faceted habits of the cluster series (qdots_bluesky.sim.physics.habits): composition, shape, patterns, errors."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from qdots_bluesky.sim.physics.cache import series_histogram
from qdots_bluesky.sim.physics.clusters import build_series_cluster, equal_volume_diameter_nm
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.habits import FACETED_HABITS, HABITS, build_habit_cluster, check_habit, habit_gauge
from qdots_bluesky.sim.physics.materials import CrystalStructure, get_structure

PBS = get_structure("PbS")


@pytest.mark.parametrize("habit", FACETED_HABITS)
def test_habit_cluster_holds_n_cubed_formula_units_inside_its_polyhedron(habit):
    n = 7
    c = build_habit_cluster(PBS, n, habit)
    assert np.array_equal(c.site_counts(), [n**3, n**3])  # stoichiometric, as the sphere series
    assert c.diameter_nm == pytest.approx(float(equal_volume_diameter_nm(PBS, n)))
    assert np.unique(np.column_stack([c.translations, c.sites]), axis=0).shape[0] == c.n_atoms  # no atom twice
    pos = c.positions()
    assert np.allclose(pos.mean(axis=0), 0.0, atol=0.6)  # centred (a shell filled in index order: < 1 A off)


def test_habits_have_their_shapes():
    """At equal volume an octahedron's {111} facets lie pi^(1/3) / sqrt 3 = 0.846 equal-volume radii from the centre,
    a cube's {100} (pi / 6)^(1/3) = 0.806; their vertices reach much farther (blunted by the atoms' discreteness); a
    sphere reaches 1 in every direction."""
    n = 12
    radius = float(equal_volume_diameter_nm(PBS, n)) * 10 / 2

    def reach(habit, direction):
        pos = build_habit_cluster(PBS, n, habit).positions()
        return float(np.max(pos @ (np.asarray(direction, float) / np.linalg.norm(direction)))) / radius

    assert reach("octahedron", (1, 1, 1)) == pytest.approx(np.pi ** (1 / 3) / np.sqrt(3), rel=0.06)
    assert reach("octahedron", (1, 0, 0)) > 1.4 * reach("octahedron", (1, 1, 1))
    assert reach("cube", (1, 0, 0)) == pytest.approx((np.pi / 6) ** (1 / 3), rel=0.08)
    assert reach("cube", (1, 1, 1)) > 1.4 * reach("cube", (1, 0, 0))
    for d in ((1, 0, 0), (1, 1, 0), (1, 1, 1)):
        assert reach("sphere", d) == pytest.approx(1.0, rel=0.06)
    # the truncated octahedron: {111} facets nearer than a sphere's surface, {100} cut well inside the octahedron's tip
    assert reach("truncated-octahedron", (1, 1, 1)) < 0.95 * reach("sphere", (1, 1, 1))
    assert reach("truncated-octahedron", (1, 0, 0)) < 0.8 * reach("octahedron", (1, 0, 0))


def test_gauges_and_the_sphere_habit():
    p = np.array([[1.0, 2.0, -3.0]])
    assert habit_gauge("octahedron", p)[0] == 6.0
    assert habit_gauge("cube", p)[0] == 9.0  # 3 max|x_i| (only the order matters)
    assert habit_gauge("truncated-octahedron", p)[0] == 6.0 and habit_gauge("cuboctahedron", p)[0] == 6.0
    assert habit_gauge("rhombic-dodecahedron", p)[0] == 5.0
    s, r = build_habit_cluster(PBS, 4, "sphere"), build_series_cluster(PBS, 4)
    assert np.array_equal(s.translations, r.translations) and np.array_equal(s.sites, r.sites)


def test_a_habits_pattern_differs_from_the_spheres_and_is_cached():
    q = np.linspace(1.0, 8.0, 600)
    sphere = debye_pattern(series_histogram(PBS, 8), q, 0.56).crystal
    octa = debye_pattern(series_histogram(PBS, 8, "octahedron"), q, 0.56).crystal
    # same atoms: the same self terms and high-Q mean; the peak profiles differ
    assert np.mean(octa[q > 6]) == pytest.approx(np.mean(sphere[q > 6]), rel=0.05)
    assert np.max(np.abs(octa - sphere)) / np.max(sphere) > 0.05
    again = series_histogram(PBS, 8, "octahedron")
    assert "cached" in again.info and "octahedron" in again.info["cached"]


def test_habit_errors():
    assert check_habit("Truncated_Octahedron") == "truncated-octahedron"
    with pytest.raises(ValueError, match="accepted: sphere, octahedron"):
        check_habit("icosahedron")
    hcp = CrystalStructure.from_atoms(bulk("Zn", "hcp", a=2.66, c=4.95), "Zn-hcp")
    assert check_habit("sphere", hcp) == "sphere"
    with pytest.raises(ValueError, match="needs a cubic lattice"):
        check_habit("cube", hcp)
    with pytest.raises(ValueError, match="positive integer"):
        build_habit_cluster(PBS, 0, "cube")
    assert set(HABITS) == {"sphere", *FACETED_HABITS}
