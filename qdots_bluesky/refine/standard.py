"""The instrument's resolution from a measured line-profile standard (Si, LaB6 or a CIF), for later refinements.

A standard's crystallites are large enough that its peaks are the instrument's profile alone. Each reflection
family k of the standard (positions from its lattice, :func:`~qdots_bluesky.sim.physics.reflections.bragg_reflections`)
becomes one column, a Voigt profile of Gaussian FWHM G and Lorentzian FWHM L (scipy's ``voigt_profile``) at its
position, with a free non-negative intensity (texture, absorption and structure factors need no model); a Chebyshev
background is free. The nonlinear parameters are G, L and a position correction:

* ``capillary`` (synchrotron): widths constant in Q (1/A), positions Q_k (1 + e) (e: the lattice or wavelength
  mismatch, fractional);
* ``flat-plate`` (laboratory, Cu K-alpha): widths constant in 2theta (deg), each family a K-alpha1 and a K-alpha2
  line (ratio 0.5), positions shifted by a zero offset (deg).

They are fitted by the refinement's bounded Levenberg-Marquardt; e.s.d.s from the covariance x reduced chi^2 x the
residuals' correlation factor (as :func:`~qdots_bluesky.refine.fit.refine_pattern`). The result's G and L are what
``qdots fit --instrument-fwhm G L`` (``refine_pattern(instrument_fwhm=(G, L))``) takes for samples measured in the same
geometry, so the dots' fit no longer has to guess which part of the peak width is the instrument's.

Units: Q in 1/A, 2theta in degrees, wavelength in A, FWHMs in 1/A (capillary) or deg 2theta (flat plate).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from numpy.polynomial import chebyshev
from scipy.optimize import lsq_linear
from scipy.special import voigt_profile

from ..sim.physics.materials import CrystalStructure, get_structure
from ..sim.physics.profiles import FWHM_PER_SIGMA
from ..sim.physics.reflections import bragg_reflections
from ..units import XUnit, check_wavelength, q_to_tth, tth_to_q
from .model import INSTRUMENT_BOUNDS, INSTRUMENT_UNITS, KA2_RATIO, KA2_WAVELENGTH_A
from .residuals import esd_correlation_factor
from .result import is_poor_fit
from .solver import levenberg_marquardt

__all__ = ["STANDARDS", "InstrumentFit", "standard_structure", "fit_instrument"]

#: Line-profile standards by name: (lattice parameter in A, what it is). NIST SRM 640f silicon and SRM 660c LaB6.
#: Rwp above which (and above twice the counting noise's Rexp) a standard's fit is poor: sharp Bragg peaks fit less
#: closely than the dots' broad ones.
POOR_STANDARD_RWP = 0.15
STANDARDS = {"Si": (5.431144, "silicon, NIST SRM 640f, a = 5.431144 A"),
             "LaB6": (4.156826, "lanthanum hexaboride, NIST SRM 660c, a = 4.156826 A")}


def standard_structure(standard: str) -> CrystalStructure:
    """The structure of a named standard (``STANDARDS``) or of any material :func:`get_structure` knows (a CIF path)."""
    from ase.build import bulk
    from ase.spacegroup import crystal

    if standard == "Si":
        atoms = bulk("Si", "diamond", a=STANDARDS["Si"][0])
    elif standard == "LaB6":
        atoms = crystal(["La", "B"], basis=[(0.0, 0.0, 0.0), (0.1975, 0.5, 0.5)], spacegroup=221,
                        cellpar=[STANDARDS["LaB6"][0]] * 3 + [90.0] * 3)
    else:
        try:
            return get_structure(standard)
        except ValueError:
            raise ValueError(f"standard {standard!r}; accepted: {', '.join(STANDARDS)}, a built-in material or a "
                             "CIF file") from None
    return CrystalStructure.from_atoms(atoms, standard, b_iso=0.3, source="built-in standard")


@dataclass
class InstrumentFit:
    """The instrument's Voigt resolution from a standard: FWHMs (``unit``) with e.s.d.s, the position correction
    (``lattice_strain`` for a capillary, ``zero_offset_deg`` for a flat plate), Rwp and what was fitted."""

    standard: str
    geometry: str
    gauss_fwhm: float
    gauss_fwhm_std: float
    lorentz_fwhm: float
    lorentz_fwhm_std: float
    unit: str
    lattice_strain: float | None
    zero_offset_deg: float | None
    rwp: float
    reduced_chi2: float
    esd_correlation_factor: float
    n_reflections: int
    n_points: int
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        shift = (f"lattice strain {100 * self.lattice_strain:+.4f} %" if self.lattice_strain is not None
                 else f"zero offset {self.zero_offset_deg:+.4f} deg")
        flags = ", ".join(self.flags) or "none"
        return (f"instrument FWHM G {self.gauss_fwhm:.5f} ± {self.gauss_fwhm_std:.5f}, L {self.lorentz_fwhm:.5f} ± "
                f"{self.lorentz_fwhm_std:.5f} {self.unit} ({self.standard}, {self.n_reflections} reflections; {shift}); "
                f"Rwp {100 * self.rwp:.2f} %, flags: {flags}; for samples: --instrument-fwhm {self.gauss_fwhm:.5g} "
                f"{self.lorentz_fwhm:.5g}")


def _voigt(u: np.ndarray, gauss: float, lorentz: float) -> np.ndarray:
    """Unit-area Voigt profile of FWHMs (gauss, lorentz) at offsets u (same unit)."""
    return voigt_profile(u, max(gauss, 1e-12) / FWHM_PER_SIGMA, max(lorentz, 0.0) / 2.0)


def fit_instrument(x: Sequence[float], y: Sequence[float], sigma: Sequence[float] | None = None, *,
                   wavelength_a: float, standard: str = "Si", x_unit: str = "tth", geometry: str = "capillary",
                   q_range: tuple[float, float] | None = None, background_order: int = 3) -> InstrumentFit:
    """Fit the instrument's Voigt FWHMs to a measured standard (x in 2theta deg or Q 1/A; see the module docstring).

    ``q_range`` (1/A): the range fitted (default the data's); ``wavelength_a``: the (K-alpha1) wavelength. Raises a
    ValueError for bad input or a pattern in which no reflection of the standard lies.
    """
    if geometry not in INSTRUMENT_BOUNDS:
        raise ValueError(f"geometry {geometry!r}; accepted: {', '.join(INSTRUMENT_BOUNDS)}")
    check_wavelength(wavelength_a)
    x_unit = XUnit.parse(x_unit).value
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape or x.size < 50 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"x {x.shape} and y {y.shape}; accepted: finite 1-D arrays of the same length, >= 50 points")
    s = np.sqrt(np.maximum(y, 1.0)) if sigma is None else np.asarray(sigma, dtype=float)
    if s.shape != y.shape:
        raise ValueError("sigma must be as long as y")
    s = np.where(np.isfinite(s) & (s > 0), s, np.sqrt(np.maximum(y, 1.0)))
    q = x if x_unit == "q" else tth_to_q(x, wavelength_a)
    flat = geometry == "flat-plate"
    if flat and x_unit == "q":
        x = q_to_tth(q, wavelength_a)
    lo_q, hi_q = (float(q.min()), float(q.max())) if q_range is None else (float(q_range[0]), float(q_range[1]))
    keep = (q >= lo_q) & (q <= hi_q)
    if keep.sum() < 50:
        raise ValueError(f"fewer than 50 points within Q {lo_q:.3g}-{hi_q:.3g} 1/A; accepted: a range of the data")
    q, u, y, s = q[keep], (x[keep] if flat else q[keep]), y[keep], s[keep]
    structure = standard_structure(standard)
    families = [r.q for r in bragg_reflections(structure, hi_q * 1.02, wavelength_a=wavelength_a) if r.q >= lo_q * 0.98]
    q_k = np.unique(np.round(families, 6))
    if q_k.size == 0:
        raise ValueError(f"no reflection of {standard} within Q {lo_q:.3g}-{hi_q:.3g} 1/A; accepted: a pattern of the "
                         "standard over a range holding its peaks")
    tth_k: list[np.ndarray] = []
    if flat:  # K-alpha1 and K-alpha2 lines; families the K-alpha2 line cannot reach are dropped
        tth_k = [q_to_tth(q_k, wl) for wl in (wavelength_a, KA2_WAVELENGTH_A)]
        valid = np.isfinite(tth_k[0]) & np.isfinite(tth_k[1])
        q_k, tth_k = q_k[valid], [t[valid] for t in tth_k]
    w = 1.0 / s
    xc = 2.0 * (u - u.min()) / max(np.ptp(u), 1e-12) - 1.0
    background = chebyshev.chebvander(xc, int(background_order))
    n_bg = background.shape[1]

    def columns(theta: np.ndarray) -> np.ndarray:
        gauss, lorentz, shift = theta
        if flat:
            cols = [_voigt(u[:, None] - (t[None, :] + shift), gauss, lorentz) * ratio
                    for t, ratio in zip(tth_k, (1.0, KA2_RATIO))]
            return np.sum(cols, axis=0)
        return _voigt(u[:, None] - q_k[None, :] * (1.0 + shift), gauss, lorentz)

    def solve(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        A = np.hstack([columns(theta), background]) * w[:, None]
        lb = np.r_[np.zeros(q_k.size), np.full(n_bg, -np.inf)]
        coef = lsq_linear(A, y * w, bounds=(lb, np.full(lb.size, np.inf)), method="bvls").x
        return y * w - A @ coef, coef

    bound = INSTRUMENT_BOUNDS[geometry]
    shift_bound = 0.5 if flat else 0.01  # deg zero offset / fractional lattice mismatch
    lo = np.array([0.0, 0.0, -shift_bound])
    hi = np.array([bound, bound, shift_bound])
    scale = np.array([0.05 * bound, 0.05 * bound, 0.01 if flat else 1e-4])
    def fun(theta: np.ndarray) -> np.ndarray:
        return solve(theta)[0]

    def jac(theta: np.ndarray) -> np.ndarray:  # forward differences (three parameters)
        base = fun(theta)
        J = np.empty((base.size, theta.size))
        for i in range(theta.size):
            h = 1e-3 * scale[i]
            th = theta.copy()
            th[i] = th[i] + h if th[i] + h <= hi[i] else th[i] - h
            J[:, i] = (fun(th) - base) / (th[i] - theta[i])
        return J

    theta0 = np.array([0.1 * bound, 0.05 * bound, 0.0])
    theta, cost = levenberg_marquardt(fun, jac, theta0, lo, hi, scale, tol=1e-8, max_nfev=200)
    r, coef = solve(theta)
    n_dof = max(r.size - (3 + coef.size), 1)
    chi2_red = float(r @ r) / n_dof
    J = jac(theta)
    cov = np.linalg.pinv(J.T @ J) * chi2_red
    factor = esd_correlation_factor(r)
    std = np.sqrt(np.maximum(np.diag(cov), 0.0)) * factor
    rwp = float(np.sqrt((r @ r) / np.sum((y * w) ** 2)))
    flags = [f"{name}_at_bound" for name, i in (("gauss_fwhm", 0), ("lorentz_fwhm", 1), ("shift", 2))
             if theta[i] >= hi[i] * (1 - 1e-6) or (i == 2 and theta[i] <= lo[i] * (1 - 1e-6))]
    if is_poor_fit(rwp, float(np.sqrt(n_dof / np.sum((y * w) ** 2))), threshold=POOR_STANDARD_RWP):
        flags.append("poor_fit")
    return InstrumentFit(standard=standard, geometry=geometry, gauss_fwhm=float(theta[0]),
                         gauss_fwhm_std=float(std[0]), lorentz_fwhm=float(theta[1]), lorentz_fwhm_std=float(std[1]),
                         unit=INSTRUMENT_UNITS[geometry], lattice_strain=None if flat else float(theta[2]),
                         zero_offset_deg=float(theta[2]) if flat else None, rwp=rwp, reduced_chi2=chi2_red,
                         esd_correlation_factor=factor, n_reflections=int(q_k.size), n_points=int(y.size),
                         flags=flags)
