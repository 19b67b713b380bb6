"""Solvent backgrounds: built-in X-ray scattering models of liquid n-hexane and toluene, and measured blanks.

The reference work (Allara et al., npj Comput. Mater. 2024) mixes every simulated quantum-dot
pattern with a *measured* solvent blank. This module lets the project make those backgrounds
itself, from physics, so that no measured data have to be shipped:

    I(Q) / N_molecules = I_intra(Q) + I_inter(Q) + I_Compton(Q)        (electron units)

* ``I_intra`` -- exact Debye sum over all atom pairs of one molecule, hydrogens explicit, with
  complex form factors f0 + f' + i f'' and a Gaussian damping exp(-l_ij^2 Q^2 / 2) of every pair
  term by the mean-square vibrational amplitude l_ij^2 of that pair (the molecular Debye
  equation of gas electron diffraction); self terms undamped. Toluene's free methyl rotor is
  averaged over its angle; n-hexane is averaged over its 17 rotational-isomeric states
  (trans/gauche about the three inner C-C bonds, Boltzmann weights), because about 40 % of the
  C-C bonds of liquid hexane are gauche. :func:`solvent_molecule` returns the all-trans form.
* ``I_inter`` -- the liquid structure from the RISM integral equation (reference interaction
  site model, Chandler & Andersen, J. Chem. Phys. 57, 1930 (1972)) for molecules made of
  Lennard-Jones united-atom sites (one per carbon with its hydrogens, TraPPE-UA parameters),
  closed with the Kovalenko-Hirata closure (J. Chem. Phys. 110, 10095 (1999)). Then
  I_inter = rho sum_ab Re(F_a F_b*) h_ab(Q), with h_ab(Q) the Fourier transform of the
  site-site g_ab(r) - 1 and F_a the form factor of united-atom group a (carbon plus its
  hydrogens averaged over orientations about the carbon). The "decoupling approximation"
  (molecular centres as Percus-Yevick hard spheres, I = N[<|F|^2> + |<F>|^2 (S(Q) - 1)]) is
  available for comparison (``liquid_model="decoupling"``) but is not the default: the main
  liquid peak of these solvents comes from contacts between CH_n groups of neighbouring
  molecules, not from their centres, and the decoupling model puts it at the wrong Q
  (hexane 1.15 instead of 1.41 1/A, correlation 0.77 with the measured blank; see
  ``benchmarks/validate_solvents.py``). No parameter of either model is fitted to X-ray data.
  Below Q = 0.8 1/A, where RISM's compressibility limit fails, the coherent intensity is
  continued smoothly to the thermodynamic limit |sum f|^2 rho k_B T kappa_T at Q = 0.
* ``I_Compton`` -- sum over atoms of the incoherent scattering function S_inc(Q) times the
  Breit-Dirac recoil factor (photon-counting detector, exponent 2).

Validation against the measured blanks of the reference work (lambda = 0.564162 A, Q 1-15,
both normalised to equal area, nothing fitted): correlation 0.994 (hexane) and 0.996
(toluene), relative RMS difference 8.8 % and 6.2 %; main peak 1.43 vs 1.41 1/A (hexane) and
1.33 vs 1.28 1/A (toluene). The model's main peaks are ~10 % lower and broader than measured
(a known trait of RISM) and toluene's sits 3.6 % high. The hexane and toluene models differ by
10 % relative RMS (the two blanks by 16 %), more than either model differs from its blank, and
each blank is closer to its own model; the main-peak separation is 0.10 1/A in the models and
0.13 in the data. The model is the liquid alone: the measured blanks show no capillary-glass
signature that can be separated from these residuals (a fitted amorphous-silica component,
from a rough paracrystalline-silica model not shipped here, takes between -5 % and +5 % of the
area depending on solvent and fit range).
Figures and numbers: ``benchmarks/validate_solvents.py``.

Modules: :mod:`.molecules` (solvent data, geometry, conformers, one molecule's scattering), :mod:`.liquid`
(RISM, Percus-Yevick, decoupling), :mod:`.blanks` (measured blanks); the public API is here.
Q in 1/A, wavelength in A, 2theta in degrees, intensities per molecule in electron units.
"""
from __future__ import annotations

import numpy as np

from ....lru import LRUCache, array_key
from ....units import check_wavelength
from .blanks import compare_to_blank, load_solvent_blank
from .liquid import intermolecular_decoupling, intermolecular_rism
from .molecules import (intramolecular, molecular_compton, pair_table, solvent_data, solvent_molecule, solvent_names,
                        solvent_number_density)

__all__ = [
    "solvent_names",
    "solvent_molecule",
    "solvent_number_density",
    "solvent_components",
    "solvent_pattern",
    "load_solvent_blank",
    "compare_to_blank",
]


def check_solvent_q(q, wavelength_a: float) -> np.ndarray:
    try:
        arr = np.asarray(q, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"q must be a 1-D array of Q values in 1/A, got {type(q).__name__}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"q must be a non-empty 1-D array of Q values in 1/A, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0:
        raise ValueError("q must hold finite, non-negative Q values in 1/A (e.g. np.linspace(1, 15, 5004))")
    q_limit = 4.0 * np.pi / wavelength_a
    if arr.max() > q_limit:
        raise ValueError(
            f"Q up to {arr.max():.4g} 1/A cannot be reached at wavelength {wavelength_a} A; "
            f"accepted: 0 <= Q <= 4 pi / lambda = {q_limit:.4g} 1/A"
        )
    return arr


_LIQUID_MODELS = ("rism", "decoupling")


def solvent_components(name: str, q, wavelength_a: float = 0.56, *, liquid_model: str = "rism") -> dict[str, np.ndarray]:
    """Scattering components of the liquid per molecule (electron units) at Q (1/A).

    Returns a dict with "intramolecular" (self plus intramolecular interference, coherent),
    "intermolecular" (coherent, from the liquid structure), "compton" (incoherent with
    Breit-Dirac recoil) and "total" (their sum). liquid_model: "rism" (default) or
    "decoupling" (hard-sphere centres, for comparison only).
    """
    solvent = solvent_data(name)
    check_wavelength(wavelength_a)
    qa = check_solvent_q(q, wavelength_a)
    if liquid_model not in _LIQUID_MODELS:
        raise ValueError(f"unknown liquid_model {liquid_model!r}; accepted: {', '.join(_LIQUID_MODELS)}")
    intra = intramolecular(solvent.name, qa, wavelength_a)
    if liquid_model == "rism":
        inter = intermolecular_rism(solvent.name, qa, wavelength_a)
    else:
        inter = intermolecular_decoupling(solvent.name, qa, wavelength_a)
    compton = molecular_compton(pair_table(solvent.name).elements, qa, wavelength_a)
    return {"intramolecular": intra, "intermolecular": inter, "compton": compton, "total": intra + inter + compton}


#: Patterns of the last 32 (solvent, wavelength, Q grid) requests.
_PATTERNS: LRUCache[np.ndarray] = LRUCache(32)


def solvent_pattern(name: str, q, wavelength_a: float = 0.56) -> np.ndarray:
    """X-ray scattering of the pure liquid solvent per molecule (electron units) at Q (1/A).

    Coherent (intramolecular Debye sum + RISM intermolecular term) plus Compton scattering;
    see the module docstring for the model. Accepted names: :func:`solvent_names` ("hexane",
    "toluene"; also "n-hexane", "methylbenzene"). Raises ValueError for an unknown solvent,
    a bad wavelength, or q that is not a finite, non-negative 1-D array within 4 pi / lambda.

    Results are cached per (solvent, wavelength rounded to 1e-6 A, Q grid rounded to 1e-9 1/A),
    so calling it in a training loop costs a dictionary look-up and a copy (~60 us for 5004
    points). The first call per solvent and process solves the RISM equation (0.2-0.7 s on a
    laptop-class CPU); a new Q grid then costs 20-40 ms.
    """
    solvent = solvent_data(name)
    check_wavelength(wavelength_a)
    qa = check_solvent_q(q, wavelength_a)
    key = (solvent.name, round(float(wavelength_a), 6), array_key(qa, decimals=9))

    def compute() -> np.ndarray:
        total = solvent_components(solvent.name, qa, wavelength_a)["total"]
        total.setflags(write=False)
        return total

    return _PATTERNS.get_or_compute(key, compute).copy()
