"""Metal nanoclusters of the fcc metals: icosahedra, Marks decahedra, octahedra and their truncations, fcc spheres.

Families (built with ``ase.cluster``; bulk lattice parameters from ``ase.data.reference_states``):

- ``icosahedron``: ``Icosahedron(element, shells)``, params (shells,): 1, 13, 55, 147, ... atoms. Twenty strained
  fcc tetrahedra; ASE's construction keeps the intrinsic strain (radial distances ~5 % shorter than tangential ones).
- ``decahedron``: Marks decahedra ``Decahedron(element, p, q, r)``, params (p, q, r): p atoms on the (100) facets
  perpendicular to the five-fold axis, q parallel to it, re-entrance depth r (r = 0: Ino decahedra).
- ``octahedron`` / ``truncated_octahedron`` / ``cuboctahedron``: ``Octahedron(element, length, cutoff)``, params
  (length, cutoff): cutoff 0; 0 < cutoff < (length - 1) / 2; length = 2 cutoff + 1.
- ``sphere``: every atom of the fcc lattice within a diameter (nm) of an atom, params (cut diameter in nm,).

Size descriptor: ``diameter_nm``, the equal-volume diameter D = (6 N v / pi)^(1/3) of N atoms of atomic volume
v = a^3 / 4 (a: the cluster's lattice parameter, bulk x (1 + strain)); also ``extent_nm``, the largest
interatomic distance. Series (:func:`family_series`) are selected by the bulk D so that a family holds the
same clusters at every strain. A uniform strain scales the lattice parameter (and every distance).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.cluster import Decahedron, Icosahedron, Octahedron
from ase.data import atomic_numbers, chemical_symbols, reference_states
from scipy.spatial import ConvexHull

from .clusters import LatticeCluster, build_sphere_cluster
from .cluster_symmetry import rotation
from .materials import CrystalStructure

FAMILIES = ("icosahedron", "decahedron", "octahedron", "truncated_octahedron", "cuboctahedron", "sphere")
#: Families whose atoms sit on one fcc lattice: their pair histograms are exact (``lattice_pair_histogram``).
LATTICE_FAMILIES = frozenset({"octahedron", "truncated_octahedron", "cuboctahedron", "sphere"})
#: Accepted equal-volume diameters (nm) of a series: ~1 to ~10 nm asked, a margin either side.
DIAMETER_RANGE_NM = (0.3, 12.0)
#: Default decahedra of a series: q = max(1, round(f p)) for these f (short, medium, long along the five-fold axis) at
#: every p and r: Au 1-10 nm gives 208 decahedra, ~24 per nm of D, no gap over 0.18 nm (the full q <= p grid: 885).
DECAHEDRON_Q_OVER_P = (0.0, 0.5, 1.0)
#: Accepted uniform strain (fractional change of the lattice parameter).
MAX_ABS_STRAIN = 0.05


def fcc_elements() -> list[str]:
    """Elements whose reference state in ASE's data is fcc (Al, Ni, Cu, Pd, Ag, Pt, Au, Pb, ...), by atomic number."""
    return [symbol for z, symbol in enumerate(chemical_symbols)
            if z < len(reference_states) and reference_states[z] and reference_states[z].get("symmetry") == "fcc"]


def fcc_lattice_parameter(element: str) -> float:
    """Bulk lattice parameter a (A) of an fcc element from ASE's reference data; ValueError for any other."""
    z = atomic_numbers.get(str(element)) if str(element) != "X" else None
    if z is None:
        raise ValueError(f"unknown element {element!r}; accepted: the fcc elements {', '.join(fcc_elements())}")
    state = reference_states[z] if z < len(reference_states) else None
    if not state or state.get("symmetry") != "fcc":
        kind = state.get("symmetry", "no crystal") if state else "no crystal"
        raise ValueError(f"{element} is {kind} in ASE's reference data, not fcc; accepted: {', '.join(fcc_elements())}")
    return float(state["a"])


def equal_volume_diameter_nm(n_atoms: int | np.ndarray, lattice_a: float) -> np.ndarray | float:
    """Diameter (nm) of the sphere holding n_atoms of fcc atomic volume a^3 / 4 (a in A)."""
    return (6.0 * np.asarray(n_atoms, dtype=float) * lattice_a**3 / 4.0 / np.pi) ** (1.0 / 3.0) / 10.0


def atom_count(family: str, params: tuple) -> int:
    """Number of atoms of a cluster from its parameters (closed forms; a sphere needs building: use its cluster)."""
    if family == "icosahedron":
        (k,) = params
        return int((10 * k**3 - 15 * k**2 + 11 * k - 3) // 3)
    if family == "decahedron":
        p, q, r = params
        h, g = p + q + 2 * r - 1, p + 2 * r
        n_ring = np.arange(1, min(h, g))  # the pentagon rings of ASE's construction
        i = np.arange(max(h, 1))[None, :]
        per_edge = ((n_ring[:, None] - i < g - r) & (i < g - r) & (i < n_ring[:, None])).sum(axis=1)
        return int(h + 5 * np.sum(per_edge * (h - n_ring)))
    if family in ("octahedron", "truncated_octahedron", "cuboctahedron"):
        length, cutoff = params
        return int(length * (2 * length**2 + 1) // 3 - cutoff * (cutoff + 1) * (2 * cutoff + 1))
    raise ValueError(f"no closed-form atom count for family {family!r}; accepted: {', '.join(FAMILIES[:-1])}")


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown cluster family {family!r}; accepted: {', '.join(FAMILIES)}")


def check_params(family: str, params: tuple) -> tuple:
    """The parameters as a tuple of ints (a float diameter for spheres); ValueError if they do not fit the family."""
    check_family(family)
    params = tuple(params)
    expected = {"icosahedron": "(shells >= 1,)", "decahedron": "(p >= 1, q >= 1, r >= 0)",
                "octahedron": "(length >= 1, 0)", "truncated_octahedron": "(length, cutoff) with 0 < cutoff < (length - 1) / 2",
                "cuboctahedron": "(2 cutoff + 1, cutoff >= 1)", "sphere": "(cut diameter in nm > 0,)"}[family]
    try:
        if family == "sphere":
            ok = len(params) == 1 and np.isfinite(params[0]) and params[0] > 0
            params = (float(params[0]),) if ok else params
        else:
            ok = all(float(v) == int(v) for v in params)
            params = tuple(int(v) for v in params) if ok else params
            ok = ok and {"icosahedron": lambda k: k >= 1, "decahedron": lambda p, q, r: p >= 1 and q >= 1 and r >= 0,
                         "octahedron": lambda n, c: n >= 1 and c == 0,
                         "truncated_octahedron": lambda n, c: 0 < c and 2 * c + 1 < n,
                         "cuboctahedron": lambda n, c: c >= 1 and n == 2 * c + 1}[family](*params)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"parameters {params!r} do not make a {family}; accepted: {expected}")
    return params


def check_strain(strain: float) -> float:
    if strain is None or not np.isfinite(strain) or abs(strain) > MAX_ABS_STRAIN:
        raise ValueError(f"strain {strain!r}; accepted: a fractional lattice change within +-{MAX_ABS_STRAIN}")
    return float(strain)


def fcc_structure(element: str, lattice_a: float, b_iso: float = 0.0) -> CrystalStructure:
    """The fcc primitive cell (one site) of an element at lattice parameter a (A), for the exact lattice path."""
    return CrystalStructure.from_atoms(bulk(element, "fcc", a=lattice_a), f"{element}-fcc", b_iso=b_iso)


@dataclass(frozen=True)
class MetalCluster:
    """One cluster of a family: its ase.Atoms (centred on the origin) and, for lattice families, its fcc lattice form."""

    element: str
    family: str
    params: tuple
    strain: float
    lattice_a: float  # A, bulk x (1 + strain)
    atoms: Atoms
    lattice: LatticeCluster | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

    @property
    def diameter_nm(self) -> float:
        """Equal-volume diameter (nm) at the cluster's own lattice parameter."""
        return float(equal_volume_diameter_nm(self.n_atoms, self.lattice_a))

    @cached_property
    def extent_nm(self) -> float:
        """Largest interatomic distance (nm): the diameter of the smallest sphere through the two farthest atoms."""
        pos = self.atoms.get_positions()
        if len(pos) < 5:
            return float(np.max(np.linalg.norm(pos[:, None] - pos[None], axis=-1))) / 10.0
        hull = pos[ConvexHull(pos).vertices]
        return float(np.max(np.linalg.norm(hull[:, None] - hull[None], axis=-1))) / 10.0

    @property
    def label(self) -> str:
        return f"{self.element} {self.family} {','.join(str(p) for p in self.params)}" + (
            f" strain {self.strain:+.4f}" if self.strain else "")

    def symmetry_candidates(self) -> list[np.ndarray]:
        """Point-group generators to try (verified later on the atoms): Ih for icosahedra, D5h for decahedra."""
        pos = self.atoms.get_positions() - self.atoms.get_positions().mean(axis=0)
        if self.family == "icosahedron" and self.n_atoms >= 13:
            r = np.linalg.norm(pos, axis=1)
            corners = pos[np.argsort(-r, kind="stable")[:12]]
            v1 = corners[1 + np.argmin(np.linalg.norm(corners[1:] - corners[0], axis=1))]
            return [rotation(corners[0], 2 * np.pi / 5), rotation(v1, 2 * np.pi / 5), -np.eye(3)]
        if self.family == "decahedron":  # ASE: five-fold axis along z, a pentagon corner along +y
            return [rotation([0, 0, 1], 2 * np.pi / 5), np.diag([-1.0, 1.0, 1.0]), np.diag([1.0, 1.0, -1.0])]
        return []


def _lattice_form(atoms: Atoms, structure: CrystalStructure, diameter_nm: float, label: str) -> LatticeCluster:
    """An fcc-lattice ase.Atoms as integer translations of the primitive cell (checked: every atom on the lattice)."""
    pos = atoms.get_positions()
    frac = (pos - pos[0]) @ np.linalg.inv(structure.cell)
    translations = np.rint(frac)
    if np.max(np.abs(frac - translations), initial=0.0) > 1e-6:
        raise ValueError(f"{label}: atoms are off the fcc lattice")
    return LatticeCluster(structure, translations.astype(np.int32), np.zeros(len(pos), dtype=np.int32), diameter_nm, label)


def build_metal_cluster(element: str, family: str, params: tuple, strain: float = 0.0) -> MetalCluster:
    """One cluster of ``family`` (see the module docstring for ``params``) of an fcc ``element`` at lattice
    a_bulk (1 + strain); lattice families also get their fcc lattice form (for the exact pair histogram)."""
    a = fcc_lattice_parameter(element) * (1.0 + check_strain(strain))
    params = check_params(family, params)
    if family == "icosahedron":
        atoms = Icosahedron(element, params[0], latticeconstant=a)
    elif family == "decahedron":
        atoms = Decahedron(element, *params, latticeconstant=a)
    elif family == "sphere":
        atoms = build_sphere_cluster(fcc_structure(element, a), params[0]).to_atoms()
    else:
        atoms = Octahedron(element, params[0], params[1], latticeconstant=a)
    atoms.positions -= atoms.get_positions().mean(axis=0)
    cluster = MetalCluster(element, family, params, float(strain), a, atoms)
    atoms.info["label"] = cluster.label
    if family not in LATTICE_FAMILIES:
        return cluster
    lattice = _lattice_form(atoms, fcc_structure(element, a), cluster.diameter_nm, cluster.label)
    return MetalCluster(element, family, params, float(strain), a, atoms, lattice)


def check_range(d_min_nm: float, d_max_nm: float) -> None:
    lo, hi = DIAMETER_RANGE_NM
    if not (np.isfinite(d_min_nm) and np.isfinite(d_max_nm) and lo <= d_min_nm <= d_max_nm <= hi):
        raise ValueError(f"diameter range {d_min_nm!r} to {d_max_nm!r} nm; accepted: {lo} <= d_min <= d_max <= {hi} nm "
                         "(equal-volume diameters)")


def family_parameters(element: str, family: str, d_min_nm: float, d_max_nm: float, *, max_reentrance: int = 2,
                      q_over_p: tuple[float, ...] | None = DECAHEDRON_Q_OVER_P, max_q_over_p: float = 1.0,
                      sphere_step_nm: float = 0.1) -> list[tuple]:
    """Parameters of every cluster of ``family`` whose bulk equal-volume diameter lies in [d_min_nm, d_max_nm],
    in a fixed order (by atom count, then parameters). Decahedra: r <= ``max_reentrance`` and, by default, the q of
    ``q_over_p`` (q = max(1, round(f p)), an even sampling of sizes and elongations); ``q_over_p=None``: the full
    grid q = 1 ... max_q_over_p x p (Marks decahedra are about as long as wide). Spheres: cut diameters on a grid
    of ``sphere_step_nm`` (nm), one per distinct atom count."""
    check_family(family)
    check_range(d_min_nm, d_max_nm)
    if q_over_p is not None and not (len(q_over_p) and all(0.0 <= float(f) <= 2.0 for f in q_over_p)):
        raise ValueError(f"q_over_p {q_over_p!r}; accepted: None (every q) or fractions q / p within 0 to 2")
    a = fcc_lattice_parameter(element)
    n_lo = int(np.ceil(np.pi / 6 * (d_min_nm * 10) ** 3 / (a**3 / 4) - 1e-9))
    n_hi = int(np.floor(np.pi / 6 * (d_max_nm * 10) ** 3 / (a**3 / 4) + 1e-9))
    found: list[tuple[int, tuple]] = []
    if family == "icosahedron":
        k = 1
        while (n := atom_count(family, (k,))) <= n_hi:
            found += [(n, (k,))] if n >= n_lo else []
            k += 1
    elif family == "decahedron":
        for r in range(max_reentrance + 1):
            p = 1
            while atom_count(family, (p, 1, r)) <= n_hi:
                qs = (range(1, int(np.floor(max_q_over_p * p + 1e-9)) + 1) if q_over_p is None
                      else sorted({max(1, int(np.floor(float(f) * p + 0.5))) for f in q_over_p}))
                found += [(n, (p, q, r)) for q in qs if n_lo <= (n := atom_count(family, (p, q, r))) <= n_hi]
                p += 1
    elif family == "sphere":
        seen = set()
        first = max(1, int(np.floor(0.8 * d_min_nm / sphere_step_nm)))
        for cut in np.round(sphere_step_nm * np.arange(first, int(np.ceil(1.2 * d_max_nm / sphere_step_nm)) + 1), 6):
            n = build_sphere_cluster(fcc_structure(element, a), float(cut)).n_atoms
            if n_lo <= n <= n_hi and n not in seen:
                seen.add(n)
                found.append((n, (float(cut),)))
    else:
        length = 1
        while atom_count("octahedron", (length, (length - 1) // 2)) <= n_hi:  # the smallest cut of this length
            cuts = {"octahedron": [0], "cuboctahedron": [(length - 1) // 2] if length % 2 == 1 and length >= 3 else [],
                    "truncated_octahedron": [c for c in range(1, length) if 2 * c + 1 < length]}[family]
            found += [(n, (length, c)) for c in cuts if n_lo <= (n := atom_count(family, (length, c))) <= n_hi]
            length += 1
    return [params for _, params in sorted(found)]


def family_series(element: str, family: str, d_min_nm: float, d_max_nm: float, strain: float = 0.0,
                  **options) -> list[MetalCluster]:
    """The clusters of :func:`family_parameters` (same order, same ``options``), built at lattice a_bulk (1 + strain)."""
    return [build_metal_cluster(element, family, p, strain)
            for p in family_parameters(element, family, d_min_nm, d_max_nm, **options)]
