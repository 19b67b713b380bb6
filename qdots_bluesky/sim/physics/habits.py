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

from .clusters import LatticeCluster, build_series_cluster, cut_series_cluster
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


def check_habit(habit: str, structure: CrystalStructure | None = None, also_accepted: str = "") -> str:
    """The habit's canonical name (case and '_' tolerated); ValueError for an unknown one, or for a faceted habit of a
    structure whose lattice is not cubic (its facets are defined on the cube's axes). ``also_accepted``: what the
    caller takes besides the habits (e.g. 'auto'), named in the error."""
    name = str(habit).strip().lower().replace("_", "-")
    if name not in HABITS:
        raise ValueError(f"habit {habit!r}; accepted: {', '.join(HABITS)}" + (f" or {also_accepted}" if also_accepted else ""))
    if name != "sphere" and structure is not None and not _is_cubic(structure):
        raise ValueError(f"habit {name!r} needs a cubic lattice with its cube axes along x, y, z (a CIF in its "
                         f"conventional cubic cell); {structure.name} is not given so: accepted for it: sphere")
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
    # the octahedron reaches farthest from the centre at equal volume: its vertex at 1.46 x the equal-volume radius
    return cut_series_cluster(structure, n, lambda pos: habit_gauge(habit, pos), 1.6,
                              f"{structure.name} {habit} n={n}", middle_first=True)
