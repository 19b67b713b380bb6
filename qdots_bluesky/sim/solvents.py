"""Built-in X-ray scattering models of liquid n-hexane and toluene (solvent backgrounds).

The reference work (Allara et al., npj Comput. Mater. 2024) augments every simulated
quantum-dot pattern with a *measured* solvent blank. This module lets the project make those
backgrounds itself, from physics, so that no measured data have to be shipped:

    I(Q) / N_molecules = I_intra(Q) + I_inter(Q) + I_Compton(Q)        (electron units)

* ``I_intra`` -- exact Debye sum over all atom pairs of one molecule (all hydrogens explicit),
  with complex form factors f0 + f' + i f'' and a Gaussian damping exp(-l_ij^2 Q^2 / 2) of every
  pair term by the mean-square vibrational amplitude l_ij^2 of that pair (the gas-electron-
  diffraction form of the molecular Debye equation; self terms undamped).  The free methyl
  rotor of toluene is averaged over its rotation angle.
* ``I_inter`` -- liquid structure from the RISM integral equation (reference interaction site
  model of Chandler and Andersen, J. Chem. Phys. 57, 1930 (1972)) for rigid molecules made of
  Lennard-Jones united-atom sites (one site per carbon with its hydrogens, TraPPE-UA
  parameters), closed with the Kovalenko-Hirata closure (J. Chem. Phys. 110, 10095 (1999)).
  The X-ray intermolecular term is rho * sum_ab F_a(Q) F_b(Q)* h_ab(Q), where h_ab(Q) is the
  Fourier transform of the site-site pair correlation g_ab(r) - 1 and F_a the form factor of the
  united-atom group (carbon plus its hydrogens, orientation averaged about the carbon).
  The simpler "decoupling approximation" (molecular centres as Percus-Yevick hard spheres,
  I = N[<|F|^2> + |<F>|^2 (S(Q) - 1)]) is also available (``liquid_model="decoupling"``) for
  comparison: it cannot produce the main liquid peak of chain molecules, because that peak
  comes from side-by-side contacts of CH2 groups, not from molecular centres (see
  ``benchmarks/validate_solvents.py``).  No parameter of either model is fitted to X-ray data.
* ``I_Compton`` -- sum over atoms of the incoherent scattering function S_inc(Q) times the
  Breit-Dirac recoil factor (photon-counting detector, exponent 2).

Q in 1/A, wavelength in A, 2theta in degrees, intensities per molecule in electron units.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
import hashlib
import threading

import numpy as np
from ase import Atoms
from scipy.fft import dst
from scipy.interpolate import CubicSpline

from ..units import check_wavelength, tth_to_q
from .form_factors import breit_dirac_recoil, complex_form_factor, incoherent_scattering_function

__all__ = [
    "solvent_names",
    "solvent_molecule",
    "solvent_number_density",
    "solvent_components",
    "solvent_pattern",
    "load_solvent_blank",
]

# --------------------------------------------------------------------------------------------
# Physical constants and solvent data
# --------------------------------------------------------------------------------------------

#: Avogadro constant (1/mol), CODATA 2018 (exact).
AVOGADRO = 6.02214076e23
#: Temperature of the liquid structure (K): room temperature, as in the reference measurements.
ROOM_TEMPERATURE_K = 298.15

# Standard geometry (brief / textbook values, e.g. CRC Handbook "Bond lengths in organic
# compounds"; Allen et al., J. Chem. Soc. Perkin Trans. 2 (1987) S1):
#   C(sp3)-C(sp3) 1.53 A, C-H 1.09 A, aromatic C-C 1.39 A, C(ar)-CH3 1.51 A,
#   tetrahedral angles (109.47 deg) at sp3 carbons, 120 deg at aromatic carbons.
CC_SINGLE_A = 1.53
CH_A = 1.09
CC_AROMATIC_A = 1.39
C_AR_CH3_A = 1.51
TETRAHEDRAL_DEG = float(np.degrees(np.arccos(-1.0 / 3.0)))  # 109.4712 deg


@dataclass(frozen=True)
class _Solvent:
    """Data of one built-in solvent; every number is explained where it is defined."""

    name: str
    formula: str
    molar_mass_g_mol: float
    density_g_cm3: float
    #: Lennard-Jones parameters of the united-atom sites, one per carbon (sigma A, epsilon/k K).
    site_sigma_a: tuple[float, ...]
    site_epsilon_k: tuple[float, ...]
    #: True for a rigid aromatic frame (smaller amplitudes of long non-bonded pairs).
    rigid: bool


# Densities at room temperature (CRC Handbook of Chemistry and Physics): n-hexane 0.655 g/cm3
# (25 C), toluene 0.867 g/cm3 (20 C); molar masses from IUPAC atomic weights.
# United-atom Lennard-Jones parameters: TraPPE-UA, Martin & Siepmann, J. Phys. Chem. B 102,
# 2569 (1998) (CH3: 3.75 A, 98 K; CH2: 3.95 A, 46 K) and Wick, Martin & Siepmann, J. Phys.
# Chem. B 104, 8008 (2000) (aromatic CH: 3.695 A, 50.5 K; aromatic C bearing a substituent:
# 3.88 A, 21 K). Site order = carbon order of the molecule built below.
_SOLVENTS: dict[str, _Solvent] = {
    "hexane": _Solvent(
        name="hexane",
        formula="C6H14",
        molar_mass_g_mol=86.18,
        density_g_cm3=0.655,
        site_sigma_a=(3.75, 3.95, 3.95, 3.95, 3.95, 3.75),
        site_epsilon_k=(98.0, 46.0, 46.0, 46.0, 46.0, 98.0),
        rigid=False,
    ),
    "toluene": _Solvent(
        name="toluene",
        formula="C7H8",
        molar_mass_g_mol=92.14,
        density_g_cm3=0.867,
        # ring C1 (bearing CH3), ring C2..C6 (CH), methyl C7
        site_sigma_a=(3.88, 3.695, 3.695, 3.695, 3.695, 3.695, 3.75),
        site_epsilon_k=(21.0, 50.5, 50.5, 50.5, 50.5, 50.5, 98.0),
        rigid=True,
    ),
}

_ALIASES = {"n-hexane": "hexane", "c6h14": "hexane", "methylbenzene": "toluene", "c7h8": "toluene"}


def solvent_names() -> list[str]:
    """Names of the solvents with a built-in model (accepted by :func:`solvent_pattern`)."""
    return sorted(_SOLVENTS)


def _solvent(name: str) -> _Solvent:
    key = str(name).strip().lower() if isinstance(name, str) else None
    key = _ALIASES.get(key, key)
    if key not in _SOLVENTS:
        raise ValueError(f"unknown solvent {name!r}; accepted: {', '.join(solvent_names())}")
    return _SOLVENTS[key]


def solvent_number_density(name: str) -> float:
    """Number density of molecules (1/A^3) of the liquid at room temperature."""
    s = _solvent(name)
    return s.density_g_cm3 * AVOGADRO / s.molar_mass_g_mol * 1e-24


# --------------------------------------------------------------------------------------------
# Molecular geometry
# --------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _tetrahedral_hydrogens(centre: np.ndarray, bonded: list[np.ndarray], n_h: int, ref: np.ndarray | None = None) -> list[np.ndarray]:
    """Positions of n_h hydrogens completing an ideal tetrahedron at ``centre``.

    bonded: positions of the heavy atoms already bonded to the centre (1 or 2).
    ref: for a methyl (one bonded atom), a point whose direction, projected perpendicular to
    the bond, the first H points *away* from (staggered / anti conformation).
    """
    if len(bonded) == 2:
        n1, n2 = _unit(bonded[0] - centre), _unit(bonded[1] - centre)
        u = -_unit(n1 + n2)  # bisector away from the two heavy neighbours
        p = _unit(np.cross(n1, n2))  # normal of the heavy-atom plane
        half = np.radians(TETRAHEDRAL_DEG / 2.0)
        return [centre + CH_A * (u * np.cos(half) + s * p * np.sin(half)) for s in (1.0, -1.0)][:n_h]
    axis = _unit(bonded[0] - centre)
    perp = ref - bonded[0] if ref is not None else np.array([1.0, 0.0, 0.0])
    e1 = -_unit(perp - np.dot(perp, axis) * axis)
    e2 = np.cross(axis, e1)
    ang = np.radians(TETRAHEDRAL_DEG)
    out = []
    for k in range(n_h):
        phi = 2.0 * np.pi * k / 3.0
        d = np.cos(ang) * axis + np.sin(ang) * (np.cos(phi) * e1 + np.sin(phi) * e2)
        out.append(centre + CH_A * d)
    return out


def _hexane(methyl_angle_deg: float = 0.0) -> Atoms:
    """All-trans n-hexane C6H14: C-C 1.53 A, C-H 1.09 A, all angles tetrahedral."""
    half = np.radians(TETRAHEDRAL_DEG / 2.0)
    dx, dy = CC_SINGLE_A * np.sin(half), CC_SINGLE_A * np.cos(half)
    carbons = [np.array([i * dx, (i % 2) * dy, 0.0]) for i in range(6)]
    hs: list[np.ndarray] = []
    hs += _tetrahedral_hydrogens(carbons[0], [carbons[1]], 3, ref=carbons[2])
    for i in range(1, 5):
        hs += _tetrahedral_hydrogens(carbons[i], [carbons[i - 1], carbons[i + 1]], 2)
    hs += _tetrahedral_hydrogens(carbons[5], [carbons[4]], 3, ref=carbons[3])
    atoms = Atoms("C6H14", positions=np.array(carbons + hs))
    atoms.set_tags([0] * 6 + [1] * 14)
    # carbon each hydrogen is bonded to (used to build united-atom groups)
    atoms.info["h_parent"] = [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    return atoms


def _toluene(methyl_angle_deg: float = 0.0) -> Atoms:
    """Toluene C7H8: planar ring (C-C 1.39 A, 120 deg), C(ar)-H 1.09 A, C(ar)-CH3 1.51 A.

    The methyl group is tetrahedral (C-H 1.09 A); methyl_angle_deg rotates it about the
    C1-C7 axis (0: one methyl H in the ring plane, anti to nothing / pointing along -y side).
    """
    ring = [CC_AROMATIC_A * np.array([np.cos(a), np.sin(a), 0.0]) for a in np.radians(np.arange(6) * 60.0)]
    radial = [_unit(c) for c in ring]
    methyl = ring[0] + C_AR_CH3_A * radial[0]
    ring_h = [ring[i] + CH_A * radial[i] for i in range(1, 6)]
    # methyl hydrogens: first one in the ring plane (reference direction: +y), rotated by angle
    axis = _unit(ring[0] - methyl)
    e1 = np.array([0.0, 1.0, 0.0])
    e2 = np.cross(axis, e1)
    ang = np.radians(TETRAHEDRAL_DEG)
    me_h = []
    for k in range(3):
        phi = np.radians(methyl_angle_deg) + 2.0 * np.pi * k / 3.0
        me_h.append(methyl + CH_A * (np.cos(ang) * axis + np.sin(ang) * (np.cos(phi) * e1 + np.sin(phi) * e2)))
    atoms = Atoms("C7H8", positions=np.array(ring + [methyl] + ring_h + me_h))
    atoms.set_tags([0] * 7 + [1] * 8)
    atoms.info["h_parent"] = [1, 2, 3, 4, 5, 6, 6, 6]
    return atoms


_BUILDERS = {"hexane": _hexane, "toluene": _toluene}


def solvent_molecule(name: str) -> Atoms:
    """One molecule of the solvent as ase.Atoms (carbons first, then hydrogens), in A.

    ``atoms.info["h_parent"]`` gives, for each hydrogen in order, the index of its carbon.
    """
    return _BUILDERS[_solvent(name).name]()


def _conformers(name: str) -> list[tuple[Atoms, float]]:
    """Conformers averaged in the intramolecular terms, with weights summing to 1.

    Toluene: the methyl group is a practically free rotor (six-fold barrier ~0.014 kcal/mol,
    Rudolph et al., J. Chem. Phys. 46, 2800 (1967)), so the methyl angle is averaged uniformly
    over one 60 deg period (12 steps).  Hexane: the all-trans conformer, with staggered methyls
    (three-fold barrier ~3 kcal/mol).
    """
    s = _solvent(name)
    if s.name == "toluene":
        angles = np.arange(12) * 5.0
        return [(_toluene(a), 1.0 / len(angles)) for a in angles]
    return [(_hexane(), 1.0)]


# --------------------------------------------------------------------------------------------
# Mean-square vibrational amplitudes of atom pairs
# --------------------------------------------------------------------------------------------

# Root-mean-square amplitudes l (A) of interatomic distances at room temperature, the standard
# quantities of gas electron diffraction (GED). Typical GED / spectroscopic values:
#   bonded C-H 0.078, C(sp3)-C(sp3) 0.052, aromatic C-C 0.046 (n-alkanes: Bonham, Bartell &
#   Kohl, J. Am. Chem. Soc. 81, 4765 (1959); benzene: Tamagawa, Iijima & Kimura, J. Mol. Struct.
#   30, 243 (1976));
#   geminal (1-3) C...C 0.070, C...H 0.105, H...H 0.125 (same sources; sp3 angle bending).
# Longer (1-4 and beyond) distances are governed by torsions and ring deformations: in a rigid
# aromatic frame GED gives ~0.06-0.10 A; in a flexible chain ~0.10-0.20 A, growing with the
# distance (torsional libration about several bonds).  Since the liquid hexane molecule is
# also partly gauche (about 1/3 of the C-C bonds at room temperature) while we build it
# all-trans, the long-pair amplitude of the flexible chain is taken at the upper end.
_L_BONDED = {("C", "C"): 0.052, ("C", "H"): 0.078, ("H", "H"): 0.078}
_L_BONDED_AROMATIC_CC = 0.046
_L_GEMINAL = {("C", "C"): 0.070, ("C", "H"): 0.105, ("H", "H"): 0.125}


def _long_pair_amplitude(r: np.ndarray, rigid: bool, has_h: np.ndarray) -> np.ndarray:
    """rms amplitude (A) of 1-4 and longer pairs: base + slope * (r - 2.5 A).

    rigid frame: 0.06 A at 2.5 A rising to ~0.09 at 5 A (benzene GED: C...C para 0.062,
    C...H meta/para ~0.09-0.10); flexible chain: 0.10 A at 2.5 A rising 0.03 A per A
    (n-alkane GED long C...C ~0.10-0.20). Pairs with H get +0.03 A (H librations).
    """
    if rigid:
        l = 0.06 + 0.012 * np.clip(r - 2.5, 0.0, None)
    else:
        l = 0.10 + 0.030 * np.clip(r - 2.5, 0.0, None)
    return l + 0.03 * has_h


def _bond_graph(atoms: Atoms) -> np.ndarray:
    """Topological distance (number of bonds) between atoms, from covalent-distance bonds."""
    pos = atoms.get_positions()
    sym = atoms.get_chemical_symbols()
    n = len(atoms)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    cut = np.array([[1.25 if "H" in (a, b) else 1.65 for b in sym] for a in sym])
    if any(a == "H" and b == "H" for a in sym for b in sym):
        pass
    adj = (d < cut) & ~np.eye(n, dtype=bool)
    hh = np.array([[a == "H" and b == "H" for b in sym] for a in sym])
    adj &= ~hh
    topo = np.full((n, n), 99, dtype=int)
    np.fill_diagonal(topo, 0)
    frontier = adj.copy()
    topo[adj] = 1
    reach = adj | np.eye(n, dtype=bool)
    k = 1
    while True:
        k += 1
        nxt = (frontier.astype(int) @ adj.astype(int)) > 0
        new = nxt & ~reach
        if not new.any():
            break
        topo[new] = k
        reach |= new
        frontier = new
    return topo


def _pair_table(name: str):
    """All unordered atom pairs of each conformer: (i, j, r_ij, l_ij, weight) arrays."""
    s = _solvent(name)
    rows = []
    for atoms, w in _conformers(name):
        pos = atoms.get_positions()
        sym = np.array(atoms.get_chemical_symbols())
        topo = _bond_graph(atoms)
        aromatic = set(range(6)) if s.name == "toluene" else set()
        i, j = np.triu_indices(len(atoms), k=1)
        r = np.linalg.norm(pos[i] - pos[j], axis=1)
        l = np.empty_like(r)
        for k, (a, b) in enumerate(zip(i, j)):
            key = tuple(sorted((sym[a], sym[b])))
            t = topo[a, b]
            if t == 1:
                l[k] = _L_BONDED_AROMATIC_CC if (a in aromatic and b in aromatic) else _L_BONDED[key]
            elif t == 2:
                l[k] = _L_GEMINAL[key]
            else:
                l[k] = _long_pair_amplitude(r[k], s.rigid, float("H" in key))
        rows.append((i, j, r, l, np.full(r.shape, w)))
    cat = [np.concatenate(c) for c in zip(*rows)]
    return cat[0], cat[1], cat[2], cat[3], cat[4], list(_conformers(name)[0][0].get_chemical_symbols())


def _sinc(x: np.ndarray) -> np.ndarray:
    """sin(x)/x with the limit 1 at x = 0."""
    return np.sinc(x / np.pi)


# --------------------------------------------------------------------------------------------
# Form factors and Compton scattering
# --------------------------------------------------------------------------------------------

#: Below this Q (1/A) the xraylib incoherent tables (x = Q/4pi >= 1e-3) cannot be read; there
#: S_inc(Q) is extended by its small-Q law S_inc ~ Q^2.
_Q_MIN_INCOHERENT = 4.0 * np.pi * 1.0e-3


def _form_factors(elements: list[str], q: np.ndarray, wavelength_a: float) -> dict[str, np.ndarray]:
    return {el: complex_form_factor(el, q, wavelength_a) for el in sorted(set(elements))}


def _incoherent(element: str, q: np.ndarray) -> np.ndarray:
    qc = np.maximum(q, _Q_MIN_INCOHERENT)
    s = incoherent_scattering_function(element, qc)
    return np.where(q < _Q_MIN_INCOHERENT, s * (q / _Q_MIN_INCOHERENT) ** 2, s)


def _compton(elements: list[str], q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """sum over atoms of S_inc(Q) times the Breit-Dirac recoil factor (exponent 2)."""
    total = np.zeros_like(q)
    for el in set(elements):
        total += elements.count(el) * _incoherent(el, q)
    return total * breit_dirac_recoil(q, wavelength_a)


def _intramolecular(name: str, q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """Molecular Debye sum sum_i |f_i|^2 + 2 sum_{i<j} Re(f_i f_j*) exp(-l^2 Q^2/2) j0(Q r)."""
    i, j, r, l, w, elements = _pair_table(name)
    ff = _form_factors(elements, q, wavelength_a)
    out = sum(np.abs(ff[el]) ** 2 for el in elements).astype(float)
    for a in ff:
        for b in ff:
            if b < a:
                continue
            sel = np.array([(elements[p], elements[s]) in ((a, b), (b, a)) for p, s in zip(i, j)])
            if not sel.any():
                continue
            # sum over the pairs of this element pair of weight * damping * j0(Qr)
            qq = q[:, None]
            acc = (w[sel] * np.exp(-0.5 * (l[sel] * qq) ** 2) * _sinc(qq * r[sel])).sum(axis=1)
            out += 2.0 * np.real(ff[a] * np.conj(ff[b])) * acc
    return out


# --------------------------------------------------------------------------------------------
# Liquid structure: RISM integral equation for united-atom sites
# --------------------------------------------------------------------------------------------

#: Radial grid of the RISM solution: 4096 points, dr = 0.025 A (r up to 102 A); reciprocal
#: grid dk = pi / (N dr) = 0.031 1/A up to 126 1/A.
_RISM_N = 4096
_RISM_DR = 0.025


@dataclass(frozen=True)
class _RismSolution:
    k: np.ndarray  # reciprocal grid (1/A)
    h_k: np.ndarray  # (n_k, n_sites, n_sites) Fourier transforms of h_ab(r) (A^3)
    r: np.ndarray
    g_r: np.ndarray  # (n_r, n_sites, n_sites) site-site radial distribution functions
    iterations: int
    residual: float


def _site_geometry(name: str):
    """United-atom sites (carbons): conformer-averaged intramolecular omega_ab(k) pieces."""
    confs = _conformers(name)
    n_c = sum(1 for s in confs[0][0].get_chemical_symbols() if s == "C")
    i_all, j_all, r_all, l_all, w_all, elements = _pair_table(name)
    cc = (i_all < n_c) & (j_all < n_c)
    return n_c, i_all[cc], j_all[cc], r_all[cc], l_all[cc], w_all[cc]


def _omega(name: str, k: np.ndarray) -> np.ndarray:
    n_c, i, j, r, l, w = _site_geometry(name)
    om = np.zeros((k.size, n_c, n_c))
    idx = np.arange(n_c)
    om[:, idx, idx] = 1.0
    kk = k[:, None]
    terms = w * np.exp(-0.5 * (l * kk) ** 2) * _sinc(kk * r)
    for t, (a, b) in enumerate(zip(i, j)):
        om[:, a, b] += terms[:, t]
        om[:, b, a] += terms[:, t]
    return om


def _fb_forward(f_r: np.ndarray, r: np.ndarray, k: np.ndarray, dr: float) -> np.ndarray:
    """3D Fourier transform of radial functions (last axis = r): 4 pi/k int r f sin(kr) dr."""
    return 2.0 * np.pi * dr * dst(f_r * r, type=4, axis=-1) / k


def _fb_inverse(f_k: np.ndarray, r: np.ndarray, k: np.ndarray, dk: float) -> np.ndarray:
    """Inverse 3D Fourier transform: 1/(2 pi^2 r) int k F sin(kr) dk."""
    return dk * dst(f_k * k, type=4, axis=-1) / (4.0 * np.pi**2 * r)


@lru_cache(maxsize=None)
def _solve_rism(name: str, temperature_k: float = ROOM_TEMPERATURE_K, closure: str = "kh", tol: float = 1e-7, max_iter: int = 5000) -> _RismSolution:
    """Solve the site-site Ornstein-Zernike (RISM) equation with MDIIS acceleration.

    rho h = omega c omega + omega c rho h  (matrices over sites, at each k), i.e.
    h(k) = [1 - rho omega c]^-1 omega c omega; closure KH: g = exp(d) (d <= 0), 1 + d (d > 0),
    d = -beta u + gamma, gamma = h - c.  Converges in ~100-300 iterations (< 1 s).
    """
    s = _solvent(name)
    rho = solvent_number_density(name)
    n = _RISM_N
    dr = _RISM_DR
    r = (np.arange(n) + 0.5) * dr
    dk = np.pi / (n * dr)
    k = (np.arange(n) + 0.5) * dk
    n_c = len(s.site_sigma_a)
    sig = np.asarray(s.site_sigma_a)
    eps = np.asarray(s.site_epsilon_k)
    sig_ab = 0.5 * (sig[:, None] + sig[None, :])  # Lorentz-Berthelot combining rules
    eps_ab = np.sqrt(eps[:, None] * eps[None, :])
    x6 = (sig_ab[..., None] / r) ** 6
    beta_u = np.minimum(4.0 * eps_ab[..., None] / temperature_k * (x6 * x6 - x6), 700.0)  # (a, b, r)
    mayer = np.exp(-beta_u)
    om = _omega(name, k)  # (k, a, b)
    eye = np.eye(n_c)

    def closure_c(gamma: np.ndarray) -> np.ndarray:
        if closure == "kh":
            d = -beta_u + gamma
            g = np.where(d <= 0.0, np.exp(np.minimum(d, 0.0)), 1.0 + d)
        elif closure == "py":
            g = mayer * (1.0 + gamma)
        elif closure == "hnc":
            g = np.exp(np.minimum(-beta_u + gamma, 700.0))
        else:
            raise ValueError(f"unknown closure {closure!r}; accepted: kh, py, hnc")
        return g - 1.0 - gamma

    def oz(gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c_r = closure_c(gamma)
        c_k = np.moveaxis(_fb_forward(c_r, r, k, dr), -1, 0)  # (k, a, b)
        wc = om @ c_k
        h_k = np.linalg.solve(eye - rho * wc, wc @ om)
        g_new = _fb_inverse(np.moveaxis(h_k - c_k, 0, -1), r, k, dk)
        g_new = 0.5 * (g_new + np.swapaxes(g_new, 0, 1))
        return g_new, h_k

    # MDIIS (Kovalenko, Ten-no & Hirata, J. Comput. Chem. 20, 928 (1999)) on gamma = h - c
    gamma = np.zeros((n_c, n_c, n))
    hist_x: list[np.ndarray] = []
    hist_r: list[np.ndarray] = []
    eta, depth = 0.3, 6
    res = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        g_new, h_k = oz(gamma)
        resid = g_new - gamma
        res = float(np.sqrt(np.mean(resid**2)))
        if res < tol:
            gamma = g_new
            break
        hist_x.append(gamma.copy())
        hist_r.append(resid)
        if len(hist_x) > depth:
            hist_x.pop(0)
            hist_r.pop(0)
        m = len(hist_r)
        b = np.empty((m + 1, m + 1))
        flat = np.array([x.ravel() for x in hist_r])
        b[:m, :m] = flat @ flat.T
        b[m, :m] = b[:m, m] = -1.0
        b[m, m] = 0.0
        rhs = np.zeros(m + 1)
        rhs[m] = -1.0
        try:
            coef = np.linalg.solve(b, rhs)[:m]
            gamma = sum(c * (x + eta * rr) for c, x, rr in zip(coef, hist_x, hist_r))
        except np.linalg.LinAlgError:
            hist_x, hist_r = [], []
            gamma = gamma + eta * resid
        if not np.all(np.isfinite(gamma)):
            raise RuntimeError(f"RISM for {name} diverged at iteration {it}")
    else:
        raise RuntimeError(f"RISM for {name} did not converge in {max_iter} iterations (residual {res:.2e})")
    c_r = closure_c(gamma)
    g_r = np.moveaxis(gamma + c_r + 1.0, -1, 0)
    _, h_k = oz(gamma)
    return _RismSolution(k=k, h_k=h_k, r=r, g_r=g_r, iterations=it, residual=res)


def _group_form_factors(name: str, q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """Form factor of each united-atom group (n_q, n_sites): f_C + sum_H f_H exp(-l^2Q^2/2) j0(Q r_CH).

    The hydrogens of a group are averaged over orientations about their carbon (their
    orientation is taken as uncorrelated with the neighbouring molecules).
    """
    atoms = _conformers(name)[0][0]
    n_c = sum(1 for s in atoms.get_chemical_symbols() if s == "C")
    f_c = complex_form_factor("C", q, wavelength_a)
    f_h = complex_form_factor("H", q, wavelength_a)
    bonded = f_h * np.exp(-0.5 * (_L_BONDED[("C", "H")] * q) ** 2) * _sinc(q * CH_A)
    n_h = np.bincount(np.asarray(atoms.info["h_parent"]), minlength=n_c)
    return f_c[:, None] + n_h[None, :] * bonded[:, None]


def _intermolecular_rism(name: str, q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """rho sum_ab Re(F_a F_b*) h_ab(Q) from the RISM solution (electron units per molecule)."""
    sol = _solve_rism(name)
    rho = solvent_number_density(name)
    h_q = CubicSpline(sol.k, sol.h_k, axis=0)(np.clip(q, sol.k[0], sol.k[-1]))  # (q, a, b)
    h_q[q > sol.k[-1]] = 0.0
    ff = _group_form_factors(name, q, wavelength_a)
    return rho * np.real(np.einsum("qa,qab,qb->q", ff, h_q, np.conj(ff)))


def _percus_yevick_sq(q: np.ndarray, diameter_a: float, packing: float) -> np.ndarray:
    """Percus-Yevick hard-sphere structure factor S(Q) (Wertheim 1963; Ashcroft & Lekner 1966)."""
    eta = packing
    a = (1 + 2 * eta) ** 2 / (1 - eta) ** 4
    b = -6 * eta * (1 + eta / 2) ** 2 / (1 - eta) ** 4
    c = eta * a / 2
    x = np.maximum(np.asarray(q, dtype=float) * diameter_a, 1e-3)
    s, co = np.sin(x), np.cos(x)
    cq = (
        a * (s - x * co) / x**3
        + b * (2 * x * s + (2 - x**2) * co - 2) / x**4
        + c * (-(x**4) * co + 4 * ((3 * x**2 - 6) * co + (x**3 - 6 * x) * s + 6)) / x**6
    )
    return 1.0 / (1.0 + 24 * eta * cq)


#: Packing fraction of the effective hard spheres of the decoupling model: 0.45, the typical
#: value of simple and molecular liquids at ordinary temperature (Hansen & McDonald, Theory of
#: Simple Liquids, ch. 5; freezing at 0.494). The diameter follows from the number density.
_DECOUPLING_PACKING = 0.45


def _intermolecular_decoupling(name: str, q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """|<F>|^2 (S_PY(Q) - 1), <F> = orientation-averaged molecular amplitude about the centroid.

    |<F(Q)>|^2 = |sum_i f_i j0(Q |r_i - r_c|) exp(-l^2 Q^2 / 2)|^2 with r_c the centre of the
    electron density; hard-sphere diameter d = (6 eta / (pi rho))^(1/3).
    """
    rho = solvent_number_density(name)
    d = (6.0 * _DECOUPLING_PACKING / (np.pi * rho)) ** (1.0 / 3.0)
    amp = np.zeros(q.shape, dtype=complex)
    for atoms, w in _conformers(name):
        z = atoms.get_atomic_numbers()
        centre = (z[:, None] * atoms.get_positions()).sum(0) / z.sum()
        dist = np.linalg.norm(atoms.get_positions() - centre, axis=1)
        ff = _form_factors(list(atoms.get_chemical_symbols()), q, wavelength_a)
        for el, di in zip(atoms.get_chemical_symbols(), dist):
            amp += w * ff[el] * _sinc(q * di) * np.exp(-0.5 * (0.1 * q) ** 2)
    return np.abs(amp) ** 2 * (_percus_yevick_sq(q, d, _DECOUPLING_PACKING) - 1.0)
