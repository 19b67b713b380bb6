"""Nanocrystal clusters cut from a crystal structure: near-spherical ones here, faceted habits in :mod:`.habits`.

A cluster is stored by the lattice translation and basis site of each atom, which keeps the
exact lattice DSE cheap; ``to_atoms()`` gives the ase.Atoms. Two ways to cut one:

- the reference series: cluster n takes, for every basis site, the n^3 lattice translates
  nearest to the centre, i.e. n^3 unit cells (n^3 formula units for a primitive cell), with
  equal-volume diameter D_n = n (6 V_cell / pi)^(1/3) (0.4638 n nm for PbS);
- a sphere: every atom within a diameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from .materials import CrystalStructure

#: Largest cluster this package will build (atoms); ~40 nm PbS. Bigger ones exhaust memory in the DSE.
MAX_CLUSTER_ATOMS = 3_000_000


@dataclass(frozen=True)
class LatticeCluster:
    """Atoms of a cluster as integer lattice translations plus basis-site indices."""

    structure: CrystalStructure
    translations: np.ndarray  # (N, 3) int, lattice translation of each atom
    sites: np.ndarray  # (N,) int, basis site of each atom
    diameter_nm: float  # equal-volume diameter
    label: str

    @property
    def n_atoms(self) -> int:
        return int(self.sites.size)

    def positions(self) -> np.ndarray:
        """Cartesian atom positions in A."""
        frac = self.translations + self.structure.fractional_positions[self.sites]
        return frac @ self.structure.cell

    def site_counts(self) -> np.ndarray:
        """Number of atoms on each basis site."""
        return np.bincount(self.sites, minlength=self.structure.n_sites)

    def to_atoms(self) -> Atoms:
        """The cluster as an ase.Atoms (non-periodic), with occupancy and B per atom in arrays."""
        elements = np.asarray(self.structure.elements)[self.sites]
        atoms = Atoms(symbols=list(elements), positions=self.positions(), pbc=False)
        atoms.set_array("occupancy", self.structure.occupancies[self.sites])
        atoms.set_array("b_iso", self.structure.b_iso[self.sites])
        atoms.info["label"] = self.label
        return atoms


def equal_volume_diameter_nm(structure: CrystalStructure, n: int | np.ndarray) -> np.ndarray | float:
    """Diameter (nm) of the sphere whose volume is n^3 unit cells: D_n = n (6 V / pi)^(1/3)."""
    return np.asarray(n) * (6.0 * structure.cell_volume_a3 / np.pi) ** (1.0 / 3.0) / 10.0


def series_index_for_diameter(structure: CrystalStructure, diameter_nm: float) -> int:
    """Index n of the series cluster whose equal-volume diameter is nearest to a diameter (nm)."""
    unit = float(equal_volume_diameter_nm(structure, 1))
    return max(1, int(round(diameter_nm / unit)))


def check_cluster_size(structure: CrystalStructure, n_atoms_estimate: float, what: str) -> None:
    """ValueError before any heavy work if a cluster would have too many atoms."""
    if n_atoms_estimate > MAX_CLUSTER_ATOMS:
        unit = float(equal_volume_diameter_nm(structure, 1))
        max_d = unit * (MAX_CLUSTER_ATOMS / structure.n_sites) ** (1 / 3)
        raise ValueError(
            f"{what} would hold about {n_atoms_estimate:.3g} atoms, more than the {MAX_CLUSTER_ATOMS:,} this "
            f"simulator supports; accepted diameters for {structure.name} are up to about {max_d:.0f} nm"
        )


def _candidate_translations(structure: CrystalStructure, radius_a: float) -> np.ndarray:
    """All lattice translations whose cell origin may lie within radius_a (+ a cell) of the origin."""
    inv = np.linalg.inv(structure.cell)  # fractional = cartesian @ inv
    reach = radius_a + np.linalg.norm(structure.cell, axis=1).sum()
    bounds = np.ceil(reach * np.linalg.norm(inv, axis=0)).astype(int)
    axes = [np.arange(-b, b + 1) for b in bounds]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid


def build_series_cluster(structure: CrystalStructure, n: int) -> LatticeCluster:
    """Cluster n of the reference series: the n^3 translates of each basis site nearest the origin."""
    return cut_series_cluster(structure, n, lambda pos: np.einsum("ij,ij->i", pos, pos), 1.25,
                              f"{structure.name} series n={n}")


def cut_series_cluster(structure: CrystalStructure, n: int, norm, reach: float, label: str,
                       middle_first: bool = False) -> LatticeCluster:
    """n^3 translates of each basis site of smallest ``norm(positions)`` (any function of the Cartesian positions, A,
    whose order defines the shape), among the translates within ``reach`` equal-volume radii; a layer of equal norm
    cut at the boundary is filled in lattice-index order, its atoms nearest the centre first if ``middle_first``.
    The size label is the series' equal-volume diameter D_n."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"cluster index n must be a positive integer, got {n!r}")
    check_cluster_size(structure, float(n) ** 3 * structure.n_sites, f"cluster n={n} ({label})")
    count = int(n) ** 3
    radius = float(equal_volume_diameter_nm(structure, n)) * 10.0 / 2.0
    cand = _candidate_translations(structure, radius * reach + 1.0)
    translations, sites = [], []
    for s in range(structure.n_sites):
        pos = (cand + structure.fractional_positions[s]) @ structure.cell
        g = np.round(norm(pos), 6)
        edge = np.partition(g, count - 1)[count - 1]
        inside = np.flatnonzero(g < edge)
        shell = np.flatnonzero(g == edge)
        keys = (cand[shell, 2], cand[shell, 1], cand[shell, 0])
        if middle_first:
            keys += (np.round(np.einsum("ij,ij->i", pos[shell], pos[shell]), 6),)
        shell = shell[np.lexsort(keys)][: count - inside.size]
        translations.append(cand[np.concatenate([inside, shell])])
        sites.append(np.full(count, s, dtype=np.int32))
    return LatticeCluster(
        structure=structure,
        translations=np.concatenate(translations).astype(np.int32),
        sites=np.concatenate(sites),
        diameter_nm=float(equal_volume_diameter_nm(structure, n)),
        label=label,
    )


def build_sphere_cluster(structure: CrystalStructure, diameter_nm: float) -> LatticeCluster:
    """Every atom within a sphere of the diameter (nm) centred on the cell origin."""
    if not np.isfinite(diameter_nm) or diameter_nm <= 0:
        raise ValueError(f"diameter must be a positive number of nm, got {diameter_nm!r}")
    radius = diameter_nm * 10.0 / 2.0
    estimate = (np.pi / 6.0) * (diameter_nm * 10.0) ** 3 / structure.cell_volume_a3 * structure.n_sites
    check_cluster_size(structure, estimate, f"a {diameter_nm} nm sphere")
    cand = _candidate_translations(structure, radius)
    translations, sites = [], []
    for s in range(structure.n_sites):
        pos = (cand + structure.fractional_positions[s]) @ structure.cell
        keep = np.einsum("ij,ij->i", pos, pos) <= radius**2 + 1e-9
        translations.append(cand[keep])
        sites.append(np.full(int(keep.sum()), s, dtype=np.int32))
    sites_all = np.concatenate(sites)
    if sites_all.size == 0:
        raise ValueError(f"a {diameter_nm} nm sphere of {structure.name} contains no atom; choose a larger diameter")
    n_cells = sites_all.size / structure.n_sites
    d_eq = float(equal_volume_diameter_nm(structure, 1)) * n_cells ** (1 / 3)
    return LatticeCluster(structure, np.concatenate(translations).astype(np.int32), sites_all, d_eq, f"{structure.name} sphere {diameter_nm} nm")
