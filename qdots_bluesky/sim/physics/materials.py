"""Crystal structures to cut quantum dots from: built-in PbS, PbSe, CdSe and any CIF file.

A structure is a unit cell (rows are the cell vectors in A) with sites given in fractional
coordinates, each with an element, an occupancy and an isotropic Debye-Waller B (A^2).
Built-in materials use the primitive cell, so cluster n of a series holds n^3 formula units
as in the reference DebUsSy simulations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

from .form_factors import atomic_number


@dataclass(frozen=True)
class CrystalStructure:
    """A periodic crystal: cell vectors (rows, A), fractional sites, occupancies, B (A^2)."""

    name: str
    cell: np.ndarray
    fractional_positions: np.ndarray
    elements: tuple[str, ...]
    occupancies: np.ndarray
    b_iso: np.ndarray
    source: str = "built-in"
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        cell = np.asarray(self.cell, dtype=float)
        frac = np.atleast_2d(np.asarray(self.fractional_positions, dtype=float))
        n = len(self.elements)
        if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-6:
            raise ValueError(f"structure {self.name!r}: the cell must be three independent vectors (3x3, A)")
        if frac.shape != (n, 3) or n == 0:
            raise ValueError(f"structure {self.name!r}: need one fractional position (3 numbers) per site, got {frac.shape} for {n} sites")
        for el in self.elements:
            atomic_number(el)
        occ = np.broadcast_to(np.asarray(self.occupancies, dtype=float), (n,)).copy()
        b = np.broadcast_to(np.asarray(self.b_iso, dtype=float), (n,)).copy()
        if np.any((occ <= 0) | (occ > 1)):
            raise ValueError(f"structure {self.name!r}: site occupancies must be in (0, 1], got {occ.tolist()}")
        if np.any((b < 0) | (b > 20)):
            raise ValueError(f"structure {self.name!r}: Debye-Waller B must be in 0-20 A^2, got {b.tolist()}")
        object.__setattr__(self, "cell", cell)
        object.__setattr__(self, "fractional_positions", frac - np.floor(frac))
        object.__setattr__(self, "occupancies", occ)
        object.__setattr__(self, "b_iso", b)
        object.__setattr__(self, "elements", tuple(str(e) for e in self.elements))

    @property
    def cell_volume_a3(self) -> float:
        """Unit-cell volume in A^3."""
        return float(abs(np.linalg.det(self.cell)))

    @property
    def n_sites(self) -> int:
        return len(self.elements)

    def cartesian_positions(self) -> np.ndarray:
        """Site positions in A within the cell."""
        return self.fractional_positions @ self.cell

    def to_atoms(self) -> Atoms:
        """The unit cell as a periodic ase.Atoms."""
        return Atoms(symbols=list(self.elements), scaled_positions=self.fractional_positions, cell=self.cell, pbc=True)

    @classmethod
    def from_atoms(cls, atoms: Atoms, name: str, b_iso=1.0, occupancies=None, source: str = "ase") -> "CrystalStructure":
        """A structure from a periodic ase.Atoms; B and occupancies per site or one value for all."""
        symbols = atoms.get_chemical_symbols()
        occ = np.ones(len(symbols)) if occupancies is None else occupancies
        return cls(name, atoms.cell[:], atoms.get_scaled_positions(wrap=True), tuple(symbols), occ, b_iso, source)


_SPACE_GROUPS = {"rocksalt": "Fm-3m", "zincblende": "F-43m"}


def _binary(name: str, kind: str, cation: str, anion: str, a: float, b_cation: float, b_anion: float,
            note: str) -> CrystalStructure:
    """A binary cubic crystal ('rocksalt' or 'zincblende') in its primitive cell, B (A^2) per element."""
    atoms = bulk(f"{cation}{anion}", kind, a=a)
    b = [b_cation if s == cation else b_anion for s in atoms.get_chemical_symbols()]
    s = CrystalStructure.from_atoms(atoms, name, b_iso=b, source="built-in")
    s.notes.update(lattice_parameter_a=a, space_group=_SPACE_GROUPS[kind], reference=note)
    return s


def builtin_materials() -> dict[str, CrystalStructure]:
    """The built-in structures by name (primitive cells)."""
    return {
        # Reference work: a = 5.934 A (ICSD 38293); B of the reference DSE simulations Pb 1.32, S 1.49 A^2.
        "PbS": _binary("PbS", "rocksalt", "Pb", "S", 5.934, 1.32, 1.49, "rock salt, a=5.934 A (ICSD 38293); B as in Allara et al. 2024"),
        # PbSe rock salt, a = 6.124 A (Noda et al. 1987); room-temperature B about 1.3 (Pb) and 1.0 (Se) A^2.
        "PbSe": _binary("PbSe", "rocksalt", "Pb", "Se", 6.124, 1.30, 1.00, "rock salt, a=6.124 A; B from room-temperature diffraction"),
        # CdSe zinc blende (sphalerite), a = 6.077 A; B about 1.2 (Cd) and 0.9 (Se) A^2.
        "CdSe": _binary("CdSe", "zincblende", "Cd", "Se", 6.077, 1.20, 0.90, "zinc blende, a=6.077 A"),
    }


def _cif_site_values(path: Path, n_sites: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Occupancies and B_iso per symmetry-expanded site, when the CIF gives them per site."""
    from ase.io import read

    atoms = read(path, format="cif", store_tags=True)
    tags = atoms.info
    occ = None
    b = None
    uiso = tags.get("_atom_site_u_iso_or_equiv")
    biso = tags.get("_atom_site_b_iso_or_equiv")
    labels = tags.get("_atom_site_label")
    spacegroup_kinds = atoms.arrays.get("spacegroup_kinds")
    if labels is not None and spacegroup_kinds is not None and len(spacegroup_kinds) == n_sites:
        kinds = np.asarray(spacegroup_kinds, dtype=int)
        if biso is not None:
            b = np.asarray([float(str(v).split("(")[0]) for v in biso])[kinds]
        elif uiso is not None:
            b = 8 * np.pi**2 * np.asarray([float(str(v).split("(")[0]) for v in uiso])[kinds]
        occ_tag = tags.get("_atom_site_occupancy")
        if occ_tag is not None:
            occ = np.asarray([float(str(v).split("(")[0]) for v in occ_tag])[kinds]
    return occ, b


def load_cif(path: str | Path, default_b_iso: float = 1.0) -> CrystalStructure:
    """Read a CIF file into a structure (conventional cell, all symmetry-equivalent sites).

    Occupancies and isotropic displacement parameters (B or U) are taken from the CIF where
    given per site; missing B defaults to ``default_b_iso`` (A^2).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CIF file {str(path)!r} does not exist; give the path of a readable .cif file")
    from ase.io import read

    try:
        atoms = read(path, format="cif")
    except Exception as exc:  # ase raises many types for broken CIFs
        raise ValueError(f"cannot read CIF file {str(path)!r}: {exc or type(exc).__name__}; a CIF with cell parameters, symmetry and _atom_site loop is required") from exc
    if len(atoms) == 0 or atoms.cell.volume < 1e-6:
        raise ValueError(f"CIF file {str(path)!r} holds no atoms or no unit cell")
    try:
        occ, b = _cif_site_values(path, len(atoms))
    except Exception:
        occ, b = None, None
    if b is None:
        b = default_b_iso
    if occ is not None:
        occ = np.clip(occ, 1e-6, 1.0)
    formula = atoms.get_chemical_formula(empirical=True)
    s = CrystalStructure.from_atoms(atoms, name=formula, b_iso=b, occupancies=occ, source=str(path))
    s.notes.update(cif=str(path))
    return s


_BUILTIN_CACHE: dict[str, CrystalStructure] = {}


def _cached_builtins() -> dict[str, CrystalStructure]:
    """:func:`builtin_materials` built once (ASE's bulk builder takes ms, and every refinement asks), with read-only
    arrays so that no caller can change the shared structures."""
    if not _BUILTIN_CACHE:
        built = builtin_materials()
        for structure in built.values():
            for arr in (structure.cell, structure.fractional_positions, structure.occupancies, structure.b_iso):
                arr.setflags(write=False)
        _BUILTIN_CACHE.update(built)  # at once: a concurrent caller sees all of them or builds its own
    return _BUILTIN_CACHE


def get_structure(material: str) -> CrystalStructure:
    """A built-in material by name (case-insensitive; one shared, read-only structure each) or a structure from a
    .cif path."""
    builtins = _cached_builtins()
    for name, structure in builtins.items():
        if material.lower() == name.lower():
            return structure
    if material.lower().endswith(".cif") or Path(material).is_file():
        return load_cif(material)
    raise ValueError(f"unknown material {material!r}; accepted: {', '.join(builtins)} or the path of a CIF file")
