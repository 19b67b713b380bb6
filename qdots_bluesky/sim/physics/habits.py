"""Faceted nanocrystals of a cubic structure: the series clusters cut with a crystal habit instead of a sphere.

Rock-salt and zinc-blende quantum dots are not spheres: PbS dots grow as {111}-{100} polyhedra (octahedra truncated
by {100}, cuboctahedra) or, fresh, as {110} rhombic dodecahedra. At equal volume each habit spreads its reflections'
column lengths differently, so a sphere series reads a faceted population's peak profiles as a size dispersion or an
extra Lorentzian broadening (a monodisperse 5.1 nm octahedron refined with spheres: dispersion 0.20 and D_N 0.5 nm
small, or a 0.016 1/A Lorentzian and D_N 0.5 nm large).

A habit cluster n holds, like the reference series (:func:`~.clusters.build_series_cluster`), n^3 translates of each
basis site, so its size label is the same equal-volume diameter D_n = n (6 V_cell / pi)^(1/3): the translates whose
positions have the smallest *gauge*, the polyhedral norm of the habit in the crystal's cubic axes (Cartesian x, y, z
along the cube edges); a layer cut at the boundary is filled from the facets' middles outwards.

Gauges (|x|, |y|, |z| in A; only their order matters):

* ``octahedron`` {111}: |x| + |y| + |z|
* ``truncated-octahedron`` {111} + {100}: max(|x| + |y| + |z|, 1.5 max|x_i|) (the Archimedean one: hexagonal {111})
* ``cuboctahedron`` {100} + {111}: max(|x| + |y| + |z|, 2 max|x_i|) ({111} cut through the cube's edge midpoints)
* ``cube`` {100}: max|x_i|
* ``rhombic-dodecahedron`` {110}: max(|x| + |y|, |y| + |z|, |x| + |z|)
* ``sphere``: the reference series itself (distance from the centre).

Every habit cluster is stoichiometric (n^3 of each site), like the series: Pb-rich {111} facets of real PbS dots
are not modelled.

Units: positions in A, diameters in nm.
"""
from __future__ import annotations

import numpy as np

from .clusters import LatticeCluster, _candidate_translations, build_series_cluster, check_cluster_size, equal_volume_diameter_nm
from .materials import CrystalStructure

__all__ = ["HABITS", "FACETED_HABITS", "CARVING_VERSION", "check_habit", "habit_gauge", "build_habit_cluster"]

#: Version of the faceted carving rule (gauges, layer filling): part of the cached histograms' names, so that a
#: change of the rule never reads clusters cut by the old one.
CARVING_VERSION = 1

#: Habits of the cluster series: the near-spherical reference series first, then the faceted ones.
HABITS = ("sphere", "octahedron", "truncated-octahedron", "cuboctahedron", "cube", "rhombic-dodecahedron")
FACETED_HABITS = HABITS[1:]
#: Ratio of the {100} to the {111} term of the {111}-{100} family's gauge, max(sum |x_i|, t max |x_i|).
_TRUNCATION = {"octahedron": 1.0, "truncated-octahedron": 1.5, "cuboctahedron": 2.0, "cube": 3.0}


def _is_cubic(structure: CrystalStructure) -> bool:
    """Whether the lattice (rows of ``cell``, Cartesian A) is invariant under the cubic point group's generators
    (x <-> y, x -> y -> z -> x, x -> -x): then the Cartesian axes are the cube's, and {hkl} facets are meaningful."""
    cell = np.asarray(structure.cell, dtype=float)
    inv = np.linalg.inv(cell)
    for op in (np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]), np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
               np.diag([-1, 1, 1])):
        frac = cell @ op.T @ inv  # the transformed lattice vectors in the original basis: integers for a symmetry
        if not np.allclose(frac, np.rint(frac), atol=1e-6):
            return False
    return True


def check_habit(habit: str, structure: CrystalStructure | None = None) -> str:
    """The habit's canonical name (case and '_' tolerated); ValueError for an unknown one, or for a faceted habit of a
    structure whose lattice is not cubic (its facets are defined on the cube's axes)."""
    name = str(habit).strip().lower().replace("_", "-")
    if name not in HABITS:
        raise ValueError(f"habit {habit!r}; accepted: {', '.join(HABITS)}")
    if name != "sphere" and structure is not None and not _is_cubic(structure):
        raise ValueError(f"habit {name!r} needs a cubic lattice with its axes along x, y, z; {structure.name} is not "
                         "one: accepted for it: sphere")
    return name


def habit_gauge(habit: str, positions_a: np.ndarray) -> np.ndarray:
    """The habit's polyhedral norm of each position (N x 3, A, cubic axes): equal values lie on one polyhedron."""
    a = np.abs(np.asarray(positions_a, dtype=float))
    if habit == "sphere":
        return np.sqrt(np.einsum("ij,ij->i", a, a))
    if habit == "rhombic-dodecahedron":
        return np.max(np.stack([a[:, 0] + a[:, 1], a[:, 1] + a[:, 2], a[:, 0] + a[:, 2]]), axis=0)
    if habit in _TRUNCATION:
        return np.maximum(a.sum(axis=1), _TRUNCATION[habit] * a.max(axis=1))
    raise ValueError(f"habit {habit!r}; accepted: {', '.join(HABITS)}")


def build_habit_cluster(structure: CrystalStructure, n: int, habit: str = "sphere") -> LatticeCluster:
    """Cluster n of the ``habit`` series: for every basis site the n^3 translates of smallest :func:`habit_gauge`
    (equal-volume diameter D_n, as the reference series). ``sphere`` is :func:`~.clusters.build_series_cluster`."""
    habit = check_habit(habit, structure)
    if habit == "sphere":
        return build_series_cluster(structure, n)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"cluster index n must be a positive integer, got {n!r}")
    check_cluster_size(structure, float(n) ** 3 * structure.n_sites, f"{habit} cluster n={n}")
    count = int(n) ** 3
    radius = float(equal_volume_diameter_nm(structure, n)) * 10.0 / 2.0
    # the octahedron reaches farthest from the centre at equal volume: its vertex at 1.49 x the equal-volume radius
    cand = _candidate_translations(structure, radius * 1.6 + 1.0)
    translations, sites = [], []
    for s in range(structure.n_sites):
        pos = (cand + structure.fractional_positions[s]) @ structure.cell
        g = np.round(habit_gauge(habit, pos), 6)
        edge = np.partition(g, count - 1)[count - 1]
        inside = np.flatnonzero(g < edge)
        shell = np.flatnonzero(g == edge)
        # a partly filled layer: its atoms nearest the centre (the facets' middles) first, then lattice-index order
        dist = np.round(np.einsum("ij,ij->i", pos[shell], pos[shell]), 6)
        shell = shell[np.lexsort((cand[shell, 2], cand[shell, 1], cand[shell, 0], dist))][: count - inside.size]
        translations.append(cand[np.concatenate([inside, shell])])
        sites.append(np.full(count, s, dtype=np.int32))
    return LatticeCluster(structure=structure, translations=np.concatenate(translations).astype(np.int32),
                          sites=np.concatenate(sites), diameter_nm=float(equal_volume_diameter_nm(structure, n)),
                          label=f"{structure.name} {habit} n={n}")
