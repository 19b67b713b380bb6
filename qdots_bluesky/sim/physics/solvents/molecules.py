"""The solvent molecules: data of each built-in solvent, geometry, conformers, vibrational amplitudes, and the
scattering of one molecule (intramolecular Debye sum, Compton).

Distances in A, Q in 1/A, wavelength in A, energies in kcal/mol, intensities per molecule in electron units.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from ase import Atoms

from ..form_factors import breit_dirac_recoil, complex_form_factor, incoherent_scattering_function

__all__ = ["AVOGADRO", "L_BONDED", "L_BONDED_AROMATIC_CC", "L_GEMINAL", "ROOM_TEMPERATURE_K", "SOLVENTS",
           "PairTable", "SolventData", "conformers", "intramolecular", "molecular_compton", "pair_table", "sinc",
           "solvent_data", "solvent_molecule", "solvent_names", "solvent_number_density"]

# --------------------------------------------------------------------------------------------
# Constants and solvent data
# --------------------------------------------------------------------------------------------

#: Avogadro constant (1/mol), SI 2019 (exact).
AVOGADRO = 6.02214076e23
#: Boltzmann constant in kcal/(mol K) (R = 1.98720 cal/(mol K)).
R_KCAL = 1.98720425864e-3
#: Temperature of the liquid (K): room temperature, as for the reference measurements.
ROOM_TEMPERATURE_K = 298.15

# Standard geometry (textbook values, e.g. Allen et al., J. Chem. Soc. Perkin Trans. 2 (1987)
# S1, "Tables of bond lengths determined by X-ray and neutron diffraction"):
#   C(sp3)-C(sp3) 1.53 A, C-H 1.09 A, aromatic C-C 1.39 A, C(aromatic)-CH3 1.51 A;
#   tetrahedral angles (109.47 deg) at sp3 carbons, 120 deg in the planar aromatic ring.
CC_SINGLE_A = 1.53
CH_A = 1.09
CC_AROMATIC_A = 1.39
C_AR_CH3_A = 1.51
TETRAHEDRAL_DEG = float(np.degrees(np.arccos(-1.0 / 3.0)))  # 109.47 deg

# Rotational-isomeric-state (RIS) model of the alkane chain (Flory, Statistical Mechanics of
# Chain Molecules, 1969; Abe, Jernigan & Flory, J. Am. Chem. Soc. 88, 631 (1966)): staggered
# C-C-C-C dihedrals trans (180 deg) and gauche (+-60 deg); a gauche bond costs E_sigma = 0.5
# kcal/mol (liquid n-alkanes, Raman: 0.5-0.55). Consecutive gauche bonds of opposite sign
# (g+g-, the "pentane effect", E_omega = 2-3 kcal/mol, < 1 % of the molecules) are left out:
# with ideal staggered angles their end groups would overlap (H...H 0.44 A). At 298 K this
# makes 38 % of the inner C-C bonds gauche.
E_GAUCHE_KCAL = 0.5


@dataclass(frozen=True)
class SolventData:
    """Data of one built-in solvent; every number is explained where the table is defined."""

    name: str
    formula: str
    molar_mass_g_mol: float
    density_g_cm3: float
    #: Lennard-Jones parameters of the united-atom sites, one per carbon (sigma A, epsilon/k K).
    site_sigma_a: tuple[float, ...]
    site_epsilon_k: tuple[float, ...]
    #: True for a rigid aromatic frame (smaller amplitudes of the long non-bonded pairs).
    rigid: bool
    #: Isothermal compressibility at room temperature (1/GPa), for the Q -> 0 limit.
    compressibility_per_gpa: float


# Densities at room temperature (CRC Handbook of Chemistry and Physics): n-hexane 0.655 g/cm3
# (25 C), toluene 0.867 g/cm3 (20 C); molar masses from the IUPAC atomic weights.
# Lennard-Jones parameters of the united-atom sites: TraPPE-UA, Martin & Siepmann, J. Phys.
# Chem. B 102, 2569 (1998) (CH3 3.75 A / 98 K, CH2 3.95 A / 46 K) and Wick, Martin & Siepmann,
# J. Phys. Chem. B 104, 8008 (2000) (aromatic CH 3.695 A / 50.5 K, aromatic C bearing a
# substituent 3.88 A / 21 K). They reproduce the liquid densities and vapour pressures in
# simulations; they were never adjusted to X-ray data. Site order = carbon order of the molecule.
# Isothermal compressibilities at 25 C (CRC Handbook, "Compressibility of liquids"; n-hexane
# 1.70 1/GPa, toluene 0.92 1/GPa) fix the thermodynamic limit S(0) = rho k_B T kappa_T
# (0.032 and 0.022 per molecule), which RISM itself gets badly wrong (see LOW_Q_MATCH_A).
SOLVENTS: dict[str, SolventData] = {
    "hexane": SolventData(
        name="hexane",
        formula="C6H14",
        molar_mass_g_mol=86.18,
        density_g_cm3=0.655,
        site_sigma_a=(3.75, 3.95, 3.95, 3.95, 3.95, 3.75),
        site_epsilon_k=(98.0, 46.0, 46.0, 46.0, 46.0, 98.0),
        rigid=False,
        compressibility_per_gpa=1.70,
    ),
    "toluene": SolventData(
        name="toluene",
        formula="C7H8",
        molar_mass_g_mol=92.14,
        density_g_cm3=0.867,
        # ring C1 (bears the methyl), ring C2..C6 (CH), methyl C7
        site_sigma_a=(3.88, 3.695, 3.695, 3.695, 3.695, 3.695, 3.75),
        site_epsilon_k=(21.0, 50.5, 50.5, 50.5, 50.5, 50.5, 98.0),
        rigid=True,
        compressibility_per_gpa=0.92,
    ),
}

_ALIASES = {"n-hexane": "hexane", "c6h14": "hexane", "methylbenzene": "toluene", "c7h8": "toluene"}


def solvent_names() -> list[str]:
    """Names of the solvents with a built-in model (accepted by :func:`solvent_pattern`)."""
    return sorted(SOLVENTS)


def solvent_data(name: str) -> SolventData:
    key = name.strip().lower() if isinstance(name, str) else None
    key = _ALIASES.get(key, key)
    if key not in SOLVENTS:
        raise ValueError(f"unknown solvent {name!r}; accepted: {', '.join(solvent_names())}")
    return SOLVENTS[key]


def solvent_number_density(name: str) -> float:
    """Number density of molecules (1/A^3) of the liquid at room temperature."""
    s = solvent_data(name)
    return s.density_g_cm3 * AVOGADRO / s.molar_mass_g_mol * 1e-24


# --------------------------------------------------------------------------------------------
# Molecular geometry
# --------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float, torsion_deg: float) -> np.ndarray:
    """Atom d bonded to c with |cd| = bond, angle b-c-d and torsion a-b-c-d (degrees)."""
    bc = _unit(c - b)
    n = _unit(np.cross(b - a, bc))
    m = np.cross(n, bc)
    th, ph = np.radians(angle_deg), np.radians(torsion_deg)
    return c + bond * (-np.cos(th) * bc + np.sin(th) * np.cos(ph) * m + np.sin(th) * np.sin(ph) * n)


def _methylene_hydrogens(centre: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> list[np.ndarray]:
    """Two H completing an ideal tetrahedron at a CH2 carbon bonded to n1 and n2."""
    u1, u2 = _unit(n1 - centre), _unit(n2 - centre)
    bis = -_unit(u1 + u2)  # bisector pointing away from both heavy neighbours
    normal = _unit(np.cross(u1, u2))
    half = np.radians(TETRAHEDRAL_DEG / 2.0)
    return [centre + CH_A * (bis * np.cos(half) + s * normal * np.sin(half)) for s in (1.0, -1.0)]


def _methyl_hydrogens(carbon: np.ndarray, neighbour: np.ndarray, reference: np.ndarray, angle_deg: float = 180.0) -> list[np.ndarray]:
    """Three tetrahedral H of a methyl carbon bonded to ``neighbour``.

    The first H has the torsion ``angle_deg`` about the neighbour-carbon bond relative to
    ``reference`` (180 = anti, the staggered position of an alkane chain end).
    """
    return [_place(reference, neighbour, carbon, CH_A, TETRAHEDRAL_DEG, angle_deg + k * 120.0) for k in range(3)]


def _hexane(torsions_deg: tuple[float, float, float] = (180.0, 180.0, 180.0)) -> Atoms:
    """n-hexane C6H14 (C-C 1.53 A, C-H 1.09 A, all angles tetrahedral, staggered methyls).

    torsions_deg: the three C-C-C-C dihedral angles (180 trans, +-60 gauche); default all-trans.
    """
    half = np.radians(TETRAHEDRAL_DEG / 2.0)
    dx, dy = CC_SINGLE_A * np.sin(half), CC_SINGLE_A * np.cos(half)
    c = [np.array([i * dx, (i % 2) * dy, 0.0]) for i in range(3)]
    for t in torsions_deg:
        c.append(_place(c[-3], c[-2], c[-1], CC_SINGLE_A, TETRAHEDRAL_DEG, t))
    h = _methyl_hydrogens(c[0], c[1], c[2])
    for i in range(1, 5):
        h += _methylene_hydrogens(c[i], c[i - 1], c[i + 1])
    h += _methyl_hydrogens(c[5], c[4], c[3])
    atoms = Atoms("C6H14", positions=np.array(c + h))
    atoms.info["h_parent"] = [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]  # carbon of each H
    atoms.info["aromatic"] = []
    return atoms


def _toluene(methyl_angle_deg: float = 0.0) -> Atoms:
    """Toluene C7H8: planar ring (C-C 1.39 A, 120 deg), C(ar)-H 1.09 A, C(ar)-CH3 1.51 A.

    The methyl group is tetrahedral (C-H 1.09 A); methyl_angle_deg is the torsion of its first
    H about the C1-C7 axis relative to ring atom C2 (0: H eclipsing the ring plane).
    """
    ring = [CC_AROMATIC_A * np.array([np.cos(a), np.sin(a), 0.0]) for a in np.radians(np.arange(6) * 60.0)]
    methyl = ring[0] + C_AR_CH3_A * _unit(ring[0])
    ring_h = [ring[i] + CH_A * _unit(ring[i]) for i in range(1, 6)]
    me_h = _methyl_hydrogens(methyl, ring[0], ring[1], methyl_angle_deg)
    atoms = Atoms("C7H8", positions=np.array(ring + [methyl] + ring_h + me_h))
    atoms.info["h_parent"] = [1, 2, 3, 4, 5, 6, 6, 6]
    atoms.info["aromatic"] = [0, 1, 2, 3, 4, 5]
    return atoms


def solvent_molecule(name: str) -> Atoms:
    """One molecule of the solvent as ase.Atoms (carbons first, then hydrogens), in A.

    n-hexane is returned all-trans, toluene with one methyl H in the ring plane.
    ``atoms.info["h_parent"]`` gives, for each hydrogen in order, the index of its carbon.
    """
    s = solvent_data(name)
    return _hexane() if s.name == "hexane" else _toluene()


@lru_cache(maxsize=None)
def conformers(name: str) -> tuple[tuple[Atoms, float], ...]:
    """Conformers averaged in the scattering, with weights summing to 1.

    n-hexane: the RIS conformers (t, g+, g- on each inner C-C bond; 17 without g+g- pairs) with
    Boltzmann weights exp(-n_gauche E_sigma / RT); methyls staggered (three-fold barrier
    ~3 kcal/mol). Toluene: the methyl group is practically a free rotor (six-fold barrier
    ~0.014 kcal/mol, Rudolph et al., J. Chem. Phys. 46, 2800 (1967)), so its angle is averaged
    uniformly over one 60 deg period (12 steps).
    """
    s = solvent_data(name)
    if s.name == "toluene":
        angles = np.arange(12) * 5.0
        return tuple((_toluene(a), 1.0 / len(angles)) for a in angles)
    rt = R_KCAL * ROOM_TEMPERATURE_K
    out = []
    for t in itertools.product((180.0, 60.0, -60.0), repeat=3):
        if any(x != 180.0 and y == -x for x, y in zip(t, t[1:])):
            continue  # g+g- sequence (see E_GAUCHE_KCAL)
        n_g = sum(x != 180.0 for x in t)
        out.append((_hexane(t), np.exp(-n_g * E_GAUCHE_KCAL / rt)))
    z = sum(w for _, w in out)
    return tuple((a, w / z) for a, w in out)


# --------------------------------------------------------------------------------------------
# Mean-square vibrational amplitudes of atom pairs
# --------------------------------------------------------------------------------------------

# Root-mean-square amplitudes l (A) of interatomic distances at room temperature, the standard
# quantities of gas electron diffraction (GED); rounded typical values:
#   bonded: C-H 0.078, C(sp3)-C 0.052, aromatic C-C 0.046 (n-alkanes: Bonham, Bartell & Kohl,
#   J. Am. Chem. Soc. 81, 4765 (1959); benzene: Tamagawa, Iijima & Kimura, J. Mol. Struct. 30,
#   243 (1976));
#   geminal (1-3): C...C 0.070, C...H 0.105, H...H 0.125 (same sources; angle bending).
L_BONDED = {("C", "C"): 0.052, ("C", "H"): 0.078}
L_BONDED_AROMATIC_CC = 0.046
L_GEMINAL = {("C", "C"): 0.070, ("C", "H"): 0.105, ("H", "H"): 0.125}


def _long_pair_amplitude(r: float, rigid: bool, with_h: bool) -> float:
    """rms amplitude (A) of 1-4 and longer pairs, which depend on torsions / ring deformations.

    Rigid aromatic frame: 0.06 A at 2.5 A, +0.012 A per A (benzene GED: C...C para 0.062).
    Flexible chain (within one RIS state, torsional libration of +-10-15 deg): 0.08 A at 2.5 A,
    +0.02 A per A (n-butane GED: anti C...C 0.07-0.08, gauche ~0.13). Pairs with H +0.03 A
    (H wagging and rocking; benzene GED C...H meta/para 0.09-0.10).
    """
    x = max(r - 2.5, 0.0)
    l = 0.06 + 0.012 * x if rigid else 0.08 + 0.02 * x
    return l + (0.03 if with_h else 0.0)


def _topological_distances(atoms: Atoms) -> np.ndarray:
    """Number of bonds between atoms (bonds: C-C < 1.65 A, C-H < 1.25 A)."""
    pos = atoms.get_positions()
    is_h = np.array([s == "H" for s in atoms.get_chemical_symbols()])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    cut = np.where(is_h[:, None] | is_h[None, :], 1.25, 1.65)
    adj = (d < cut) & ~np.eye(len(atoms), dtype=bool) & ~(is_h[:, None] & is_h[None, :])
    topo = np.where(adj, 1, 99)
    np.fill_diagonal(topo, 0)
    for k in range(len(atoms)):  # Floyd-Warshall
        topo = np.minimum(topo, topo[:, k : k + 1] + topo[k : k + 1, :])
    return topo


@dataclass(frozen=True)
class PairTable:
    """Distinct atom pairs of a molecule, summed over conformers with their weights.

    For each element pair (e.g. ("C", "H")): distances r (A), amplitudes l (A), and the
    multiplicity m (number of unordered pairs per molecule, conformer-weighted).
    """

    elements: tuple[str, ...]
    pairs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]
    carbon_pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # i, j, r, l, w


@lru_cache(maxsize=None)
def pair_table(name: str) -> PairTable:
    s = solvent_data(name)
    confs = conformers(name)
    acc: dict[tuple[str, str], dict[tuple[float, float], float]] = {}
    carbon_rows = []
    for atoms, w in confs:
        pos = atoms.get_positions()
        sym = atoms.get_chemical_symbols()
        aromatic = set(atoms.info["aromatic"])
        topo = _topological_distances(atoms)
        for a, b in zip(*np.triu_indices(len(atoms), k=1)):
            key = tuple(sorted((sym[a], sym[b])))
            r = float(np.linalg.norm(pos[a] - pos[b]))
            t = topo[a, b]
            if t == 1:
                l = L_BONDED_AROMATIC_CC if (a in aromatic and b in aromatic) else L_BONDED[key]
            elif t == 2:
                l = L_GEMINAL[key]
            else:
                l = _long_pair_amplitude(r, s.rigid, "H" in key)
            slot = acc.setdefault(key, {})
            rl = (round(r, 5), round(l, 5))
            slot[rl] = slot.get(rl, 0.0) + w
            if key == ("C", "C"):
                carbon_rows.append((a, b, r, l, w))
    pairs = {}
    for key, slot in acc.items():
        rl = np.array(list(slot.keys()))
        pairs[key] = (rl[:, 0], rl[:, 1], np.array(list(slot.values())))
    cp = tuple(np.array(col) for col in zip(*carbon_rows))
    return PairTable(tuple(confs[0][0].get_chemical_symbols()), pairs, cp)


def sinc(x: np.ndarray) -> np.ndarray:
    """sin(x)/x with the limit 1 at x = 0 (float64; unlike :func:`~qdots_bluesky.sim.physics.dse.sin_over_x`, which
    needs x > 0 and by default takes sin in float32, this one serves Q = 0 and the RISM transforms)."""
    return np.sinc(x / np.pi)


# --------------------------------------------------------------------------------------------
# Form factors, intramolecular and Compton scattering
# --------------------------------------------------------------------------------------------

def molecular_compton(elements: tuple[str, ...], q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """Compton scattering of one molecule (electron units): sum over atoms of S_inc(Q) times the Breit-Dirac recoil
    factor (exponent 2). The molecule's own sum (not :func:`~qdots_bluesky.sim.physics.dse.compton_per_species`,
    which sums per species in another order); Q >= 0 (1/A), with S_inc ~ Q^2 below the tables' first point."""
    total = np.zeros_like(q)
    for el in set(elements):
        total += elements.count(el) * incoherent_scattering_function(el, q)
    return total * breit_dirac_recoil(q, wavelength_a)


def intramolecular(name: str, q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """Molecular Debye sum: sum_i |f_i|^2 + 2 sum_{i<j} Re(f_i f_j*) exp(-l^2 Q^2 / 2) j0(Q r)."""
    table = pair_table(name)
    ff = {el: complex_form_factor(el, q, wavelength_a) for el in set(table.elements)}
    out = sum(np.abs(ff[el]) ** 2 for el in table.elements)
    qq = q[:, None]
    for (a, b), (r, l, m) in table.pairs.items():
        acc = np.exp(-0.5 * (qq * l) ** 2) * sinc(qq * r) @ m
        out = out + 2.0 * np.real(ff[a] * np.conj(ff[b])) * acc
    return np.asarray(out, dtype=float)
