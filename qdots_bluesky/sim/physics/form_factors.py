"""Atomic X-ray scattering factors from the xraylib tables (EPDL97 / Hubbell).

Coherent (Rayleigh) form factors f0(Q), anomalous dispersion f'(E), f''(E) and incoherent
(Compton) scattering functions S(Q), as used by DebUsSy. Q in 1/A, wavelength in A; the
tables are indexed by x = sin(theta)/lambda = Q / (4 pi).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import xraylib

from ...units import COMPTON_WAVELENGTH_A, wavelength_to_energy_kev


def atomic_number(element: str) -> int:
    """Atomic number of an element symbol; ValueError for an unknown symbol."""
    try:
        z = xraylib.SymbolToAtomicNumber(str(element))
    except ValueError:
        z = 0
    if not 1 <= z <= 98:
        raise ValueError(f"unknown element {element!r}; accepted: chemical symbols H to Cf, e.g. 'Pb', 'S'")
    return int(z)


@lru_cache(maxsize=None)
def _vectorised(name: str):
    return np.vectorize(getattr(xraylib, name), otypes=[float])


def coherent_form_factor(element: str, q: np.ndarray) -> np.ndarray:
    """Rayleigh atomic form factor f0 (electrons) at Q (1/A)."""
    z = atomic_number(element)
    x = np.asarray(q, dtype=float) / (4.0 * np.pi)
    return _vectorised("FF_Rayl")(z, np.maximum(x, 1e-4))  # the table starts at x = 1e-4 1/A; f0 is flat below


#: Smallest x = sin(theta)/lambda (1/A) of the xraylib incoherent tables; below it S(x) ~ S(x0) (x/x0)^2.
_X_MIN_COMPTON = 1e-3


def incoherent_scattering_function(element: str, q: np.ndarray) -> np.ndarray:
    """Incoherent (Compton) scattering function S(Q) (electrons) at Q (1/A); S -> 0 as Q^2 at small Q."""
    z = atomic_number(element)
    x = np.asarray(q, dtype=float) / (4.0 * np.pi)
    table = _vectorised("SF_Compt")(z, np.maximum(x, _X_MIN_COMPTON))
    return np.where(x < _X_MIN_COMPTON, table * (np.maximum(x, 0.0) / _X_MIN_COMPTON) ** 2, table)


def anomalous_dispersion(element: str, wavelength_a: float) -> tuple[float, float]:
    """Anomalous scattering factors (f', f'') in electrons at the wavelength (A).

    Sign convention f = f0 + f' + i f'' with f'' >= 0 (xraylib stores -f'').
    """
    z = atomic_number(element)
    energy = wavelength_to_energy_kev(wavelength_a)
    return float(xraylib.Fi(z, energy)), float(abs(xraylib.Fii(z, energy)))


def complex_form_factor(element: str, q: np.ndarray, wavelength_a: float | None) -> np.ndarray:
    """f0(Q) + f' + i f'' (complex, electrons); no dispersion when wavelength_a is None."""
    f0 = coherent_form_factor(element, q).astype(complex)
    if wavelength_a is None:
        return f0
    f1, f2 = anomalous_dispersion(element, wavelength_a)
    return f0 + f1 + 1j * f2


def breit_dirac_recoil(q: np.ndarray, wavelength_a: float, exponent: float = 2.0) -> np.ndarray:
    """Breit-Dirac recoil factor (E'/E)^exponent of Compton-scattered photons.

    E'/E = 1 / (1 + (lambda_c / lambda) (1 - cos 2theta)). The exponent is 2 for photon-counting
    detectors (MYTHEN, Pilatus) and 3 for energy-integrating ones.
    """
    q = np.asarray(q, dtype=float)
    s = np.clip(q * wavelength_a / (4.0 * np.pi), 0.0, 1.0)
    one_minus_cos2theta = 2.0 * s**2
    return (1.0 + (COMPTON_WAVELENGTH_A / wavelength_a) * one_minus_cos2theta) ** (-exponent)
