"""The outcome of one refinement: values, e.s.d.s, quality, flags, and the curves for a figure.

Sizes are diameters in nm; ``size_nm`` is the *mean* of the log-normal number distribution (the
``mean_diameter_nm`` of :func:`~qdots_bluesky.sim.physics.cluster_basis.population_targets`, not the median)
and ``size_volume_nm`` its volume-weighted mean over the discrete clusters (sum w D^4 / sum w D^3), as the
network reports them. ``dispersion`` is the relative standard deviation of the log-normal, ``strain`` the
fractional change of the lattice parameter, ``b_offset`` the Debye-Waller offset in A^2;
``instrument_gauss_fwhm`` and ``instrument_lorentz_fwhm`` the instrument's Voigt FWHMs in ``instrument_unit``
(1/A for a capillary, deg 2theta for a flat plate), refined (``instrument_refined``) or held (e.s.d. 0).

The e.s.d.s start from the covariance scaled by the reduced chi^2, which holds for a model that describes the
data up to noise. Where the residuals are systematic (neighbouring residuals correlated over a peak's width, as
in every fit of measured dots so far) that understates the uncertainty; ``esd_correlation_factor`` (sqrt of the
residuals' integrated autocorrelation time, :mod:`~qdots_bluesky.refine.residuals`; ~1 for independent
residuals) is the factor by which they grow, and it is applied to every e.s.d. unless the refinement was asked
for the covariance's alone (``esd_correlated`` False).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RefinementCurves", "RefinementResult", "FLAGS", "STATUSES", "POOR_FIT_RWP", "POOR_FIT_NOISE_RATIO",
           "is_poor_fit"]

#: A fit is poor where Rwp exceeds POOR_FIT_RWP (10 %: DSE fits of measured dots reach 2-6 %, see DESIGN.md) and
#: POOR_FIT_NOISE_RATIO times the Rwp counting noise alone would give (Rexp): noisy data fitted down to their noise
#: have Rwp = Rexp at any count level, and that is not a poor fit.
POOR_FIT_RWP = 0.10
POOR_FIT_NOISE_RATIO = 2.0


def is_poor_fit(rwp: float, rwp_expected: float, threshold: float = POOR_FIT_RWP) -> bool:
    """Whether a fit of weighted profile R ``rwp`` is poor: above ``threshold`` and above POOR_FIT_NOISE_RATIO x the
    expected R of counting noise ``rwp_expected`` (the misfit is the model's, not the counts')."""
    return bool(rwp > threshold and rwp > POOR_FIT_NOISE_RATIO * rwp_expected)

#: What each flag means.
FLAGS: dict[str, str] = {
    "poor_fit": "Rwp above the poor-fit threshold (10 %) and above twice what counting noise alone gives (Rexp): the "
                "model does not describe the pattern; read the size with care",
    "disagrees_with_network": "the refined size and the network's estimate differ by more than twice their combined "
                              "uncertainty (the refinement's e.s.d. as reported, with the residuals' correlation "
                              "factor)",
    "size_at_bound": "the mean diameter reached a bound of the refinement (the series' smallest or largest sizes)",
    "dispersion_at_bound": "the dispersion reached a bound (0.02 or 0.45): the size-dispersion split is uncertain",
    "strain_at_bound": "the strain reached its bound (+-3 %)",
    "b_offset_at_bound": "the Debye-Waller offset reached its bound (-1.2 or +3 A^2): the model lacks something at "
                         "high Q (disorder, surface, background)",
    "profile_failed": "the profile over the dispersion could not be evaluated; e.s.d.s are from the covariance",
    "instrument_at_bound": "an instrument FWHM reached its upper bound: the data do not separate it from the size "
                           "distribution's width (noisy or narrow-range data: D_N follows it, see its e.s.d.), or "
                           "broadening the dots' model lacks (strain spread, stacking faults, a wider resolution) is "
                           "taken as the instrument's; a resolution measured on a standard (--instrument-fwhm) decides",
    "esd_limited": "the covariance gave a size or dispersion no usable e.s.d.: zero (a population on one cluster of "
                   "the series, flat in size and dispersion: the e.s.d. given is the series' diameter step / sqrt 12, "
                   "the dispersion's its range / sqrt 12), wider than the refinement's range (given as range / "
                   "sqrt 12, that of no knowledge within it; the instrument widths' e.s.d.s are bounded by their "
                   "range / sqrt 12 without this flag), or, where the profile over the dispersion failed, finer than "
                   "the series' diameter step / sqrt 12 (D_N's e.s.d. given as that)",
    "habit_uncertain": "habit 'auto': another habit fits within 5 % of the chosen one's reduced chi^2 (the detail lists "
                       "them with their D_N): the data do not tell these habits apart, and D_N depends on the choice",
}
STATUSES: dict[str, str] = {
    "sized": "nanocrystal scattering found and refined",
    "no_nanocrystals": "the dot component is not significant (no nanocrystals): no size",
}


@dataclass
class RefinementCurves:
    """Arrays of the fitted points (for plots and CSV): Q (1/A), 2theta (deg, None for Q data), observed,
    sigma, calculated total and its components (name -> array on the same points)."""

    q: np.ndarray
    tth: np.ndarray | None
    observed: np.ndarray
    sigma: np.ndarray
    calculated: np.ndarray
    components: dict[str, np.ndarray]


def _finite(v: Any) -> Any:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


@dataclass
class RefinementResult:
    """One refined pattern (see the module docstring for the quantities and units)."""

    status: str
    size_nm: float
    size_std_nm: float
    size_volume_nm: float
    size_volume_std_nm: float
    dispersion: float
    dispersion_std: float
    strain: float
    strain_std: float
    b_offset: float
    b_offset_std: float
    displacement_mm: float | None
    displacement_std_mm: float | None
    scales: dict[str, float]
    scales_std: dict[str, float]
    texture: dict[str, float] | None  # flat plate: each reflection family's scale over the families' mean (1: powder)
    rwp: float
    rwp_expected: float
    reduced_chi2: float
    n_points: int
    material: str
    wavelength_a: float
    geometry: str
    q_range: tuple[float, float]
    flags: list[str] = field(default_factory=list)
    flag_details: dict[str, str] = field(default_factory=dict)
    esd_correlation_factor: float = 1.0
    esd_correlated: bool = True
    network_size_nm: float | None = None
    instrument_gauss_fwhm: float = 0.0
    instrument_gauss_fwhm_std: float = 0.0
    instrument_lorentz_fwhm: float = 0.0
    instrument_lorentz_fwhm_std: float = 0.0
    instrument_unit: str = "1/A"
    instrument_refined: bool = True
    dispersion_held: bool = False  # held at a given value (e.g. from TEM): e.s.d. 0, D_N's e.s.d. at that value
    # the model with dots: reduced_chi2 where sized; for no_nanocrystals that of the with-dots fit the test rejected
    reduced_chi2_with_dots: float = float("nan")
    weights: str = "given"  # 1/sigma from: "given" (the file's sigma), "counts" (sqrt of the counts), "model" (Pearson)
    habit: str = "sphere"  # the basis clusters' habit (qdots_bluesky.sim.physics.habits)
    habit_reduced_chi2: dict[str, float] | None = None  # habit 'auto': every habit's reduced chi^2 with dots
    nfev: int = 0  # residual evaluations: start search, binned fit, profile, polish (not finite-difference columns)
    elapsed_s: float = 0.0
    curves: RefinementCurves | None = field(default=None, repr=False)

    @property
    def parameters(self) -> np.ndarray:
        """Nonlinear parameters (D nm, dispersion, strain, dB A^2[, displacement mm], instrument Gaussian and
        Lorentzian FWHM) to start another refinement."""
        base = [self.size_nm, self.dispersion, self.strain, self.b_offset]
        return np.array(base + ([self.displacement_mm] if self.displacement_mm is not None else [])
                        + [self.instrument_gauss_fwhm, self.instrument_lorentz_fwhm])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; size keys as in ``qdots predict --json`` (NaN -> None)."""
        return {
            "status": self.status,
            "size_nm": _finite(self.size_nm),
            "size_std_nm": _finite(self.size_std_nm),
            "size_volume_nm": _finite(self.size_volume_nm),
            "size_volume_std_nm": _finite(self.size_volume_std_nm),
            "dispersion": _finite(self.dispersion),
            "dispersion_std": _finite(self.dispersion_std),
            "strain": _finite(self.strain),
            "strain_std": _finite(self.strain_std),
            "b_offset": _finite(self.b_offset),
            "b_offset_std": _finite(self.b_offset_std),
            "displacement_mm": _finite(self.displacement_mm),
            "displacement_std_mm": _finite(self.displacement_std_mm),
            "instrument_gauss_fwhm": _finite(self.instrument_gauss_fwhm),
            "instrument_gauss_fwhm_std": _finite(self.instrument_gauss_fwhm_std),
            "instrument_lorentz_fwhm": _finite(self.instrument_lorentz_fwhm),
            "instrument_lorentz_fwhm_std": _finite(self.instrument_lorentz_fwhm_std),
            "instrument_unit": self.instrument_unit,
            "instrument_refined": bool(self.instrument_refined),
            "dispersion_held": bool(self.dispersion_held),
            "rwp": _finite(self.rwp),
            "rwp_expected": _finite(self.rwp_expected),
            "reduced_chi2": _finite(self.reduced_chi2),
            "reduced_chi2_with_dots": _finite(self.reduced_chi2_with_dots),
            "weights": self.weights,
            "scales": {k: _finite(v) for k, v in self.scales.items()},
            "scales_std": {k: _finite(v) for k, v in self.scales_std.items()},
            "texture": None if self.texture is None else {k: _finite(v) for k, v in self.texture.items()},
            "n_points": int(self.n_points),
            "material": self.material,
            "wavelength_a": self.wavelength_a,
            "geometry": self.geometry,
            "q_range": list(self.q_range),
            "flags": list(self.flags),
            "flag_details": dict(self.flag_details),
            "esd_correlation_factor": _finite(self.esd_correlation_factor),
            "esd_correlated": bool(self.esd_correlated),
            "network_size_nm": _finite(self.network_size_nm),
            "habit": self.habit,
            "habit_reduced_chi2": None if self.habit_reduced_chi2 is None else {
                k: _finite(v) for k, v in self.habit_reduced_chi2.items()},
            "nfev": int(self.nfev),
            "elapsed_s": float(self.elapsed_s),
        }

    def summary(self) -> str:
        """One line for people."""
        flags = ", ".join(self.flags) or "none"
        habit = "" if self.habit == "sphere" and self.habit_reduced_chi2 is None else f"habit {self.habit}, "
        if self.habit_reduced_chi2:  # 'auto': how much worse every other habit fits
            best = self.habit_reduced_chi2.get(self.habit, float("nan"))
            others = ", ".join(f"{k} {v / best:.2f}" for k, v in self.habit_reduced_chi2.items() if k != self.habit)
            habit = (f"habit {self.habit} (auto; the others' reduced chi^2 x {others}), " if others else
                     f"habit {self.habit} (auto: the only habit of this structure), ")
        if self.status != "sized":
            return f"no nanocrystals (dot component not significant); Rwp {100 * self.rwp:.2f} %, flags: {flags}"
        return (f"{habit}D_N {self.size_nm:.3f} ± {self.size_std_nm:.3f} nm, D_V {self.size_volume_nm:.3f} ± "
                f"{self.size_volume_std_nm:.3f} nm, dispersion {self.dispersion:.3f} "
                f"{'(held)' if self.dispersion_held else f'± {self.dispersion_std:.3f}'}, "
                f"strain {100 * self.strain:+.3f} ± {100 * self.strain_std:.3f} %, instrument FWHM G "
                f"{self.instrument_gauss_fwhm:.4g} L {self.instrument_lorentz_fwhm:.4g} {self.instrument_unit}"
                f"{'' if self.instrument_refined else ' (held)'}, Rwp {100 * self.rwp:.2f} % "
                f"(chi2_red {self.reduced_chi2:.2f}), flags: {flags}")
