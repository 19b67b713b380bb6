"""Scattering-vector conversions shared by the simulator and the standardization.

Q is the modulus of the scattering vector in 1/angstrom, Q = 4 pi sin(theta) / lambda,
2theta is the scattering angle in degrees and lambda the wavelength in angstrom.
"""
from __future__ import annotations

from enum import Enum

import numpy as np


class XUnit(str, Enum):
    """The x axis of a 1D pattern: 2theta in degrees (``"tth"``) or Q in 1/A (``"q"``).

    A ``str`` enum: ``XUnit.TTH == "tth"``, so plain strings keep working wherever a unit is compared.
    """

    TTH = "tth"
    Q = "q"

    @classmethod
    def parse(cls, value: object) -> "XUnit":
        """The unit named by ``value`` (case-insensitive); ValueError naming the accepted units otherwise."""
        try:
            return cls(value.lower() if isinstance(value, str) else value)
        except ValueError:
            raise ValueError(f"x_unit {value!r} is not known; accepted: {cls.accepted()}") from None

    @classmethod
    def accepted(cls) -> str:
        """The accepted units, in words, for error messages and help texts."""
        return "'tth' (2theta, degrees) or 'q' (1/A)"

    @classmethod
    def choices(cls) -> list[str]:
        """The unit names, for argparse ``choices``."""
        return [u.value for u in cls]

#: Compton wavelength of the electron, h / (m_e c), in angstrom.
COMPTON_WAVELENGTH_A = 0.0242631023867
#: Photon energy times wavelength, h c, in keV * angstrom.
HC_KEV_A = 12.398419843320026


def tth_to_q(tth_deg: np.ndarray, wavelength_a: float) -> np.ndarray:
    """Convert 2theta (deg) to Q (1/A) at the wavelength (A)."""
    check_wavelength(wavelength_a)
    return 4.0 * np.pi * np.sin(np.radians(np.asarray(tth_deg, dtype=float)) / 2.0) / wavelength_a


def q_to_tth(q: np.ndarray, wavelength_a: float) -> np.ndarray:
    """Convert Q (1/A) to 2theta (deg); raises ValueError where Q > 4 pi / lambda."""
    check_wavelength(wavelength_a)
    q = np.asarray(q, dtype=float)
    s = q * wavelength_a / (4.0 * np.pi)
    if np.any(s > 1.0):
        raise ValueError(
            f"Q up to {q.max():.4g} 1/A cannot be reached at wavelength {wavelength_a} A "
            f"(the limit is 4 pi / lambda = {4 * np.pi / wavelength_a:.4g} 1/A)"
        )
    return np.degrees(2.0 * np.arcsin(s))


def wavelength_to_energy_kev(wavelength_a: float) -> float:
    """Photon energy (keV) for a wavelength (A)."""
    check_wavelength(wavelength_a)
    return HC_KEV_A / wavelength_a


def check_wavelength(wavelength_a: float) -> None:
    """Raise ValueError unless the wavelength is a finite X-ray wavelength in 0.01-10 A."""
    if wavelength_a is None or not np.isfinite(wavelength_a) or not 0.01 <= wavelength_a <= 10.0:
        raise ValueError(
            f"wavelength {wavelength_a!r} A is not an X-ray wavelength; accepted: 0.01 to 10 A "
            "(e.g. 0.56 for the X04SA beamline, 1.5406 for Cu K-alpha1)"
        )
