"""The growth law of the simulated synthesis: a PbS hot-injection reaction in closed form (no ODE stepping).

Growth law (:class:`GrowthLaw`)
-------------------------------
A hot-injection synthesis (Pb oleate in octadecene, sulfur precursor injected hot, e.g.
Hines & Scholes, Adv. Mater. 15, 1844 (2003)) in three overlapping regimes, all in closed form
for piecewise-constant temperature, so the state at any time is exact (no ODE stepping):

1. **Nucleation burst** at injection (t = 0): nuclei of diameter D0 (2.0 nm) with relative
   standard deviation sigma_nuc (18 %), converting a fraction b (2 %) of the precursor at once.
   Their number is fixed from then on; it sets the diameter D_inf the nuclei reach by growth:
   D_inf = D_ref (c / c_ref)^(1/6) exp(alpha (T_inj - T_ref)) (at least D0), with the injection
   temperature T_inj (deg C) and the initial sulfur precursor concentration c (mmol/L):
   hotter injections and more precursor give fewer nuclei per unit of monomer, i.e. bigger dots
   (empirical; D_ref = 4.5 nm at T_ref = 120 C, c_ref = 30 mM, alpha = 0.0067 1/K).
2. **Diffusion-limited growth with size focusing** while the precursor converts (first order):
   remaining precursor m(t) = exp(-t / tau(T)), tau Arrhenius (tau_ref = 120 s at T_ref,
   E_a = 60 kJ/mol). The converted monomer goes onto the fixed number of nuclei:
   D_g^3 = D0^3 + (D_inf^3 - D0^3) (1 - m). In diffusion-limited growth d(D^2)/dt is the same
   for every particle (Reiss, J. Chem. Phys. 19, 482 (1951); Peng et al., JACS 120, 5343 (1998)),
   so the absolute width shrinks as 1/D and the relative width as 1/D^2:
   sigma_f = sqrt(sigma_floor^2 + (sigma_nuc (D0 / D_g)^2)^2), sigma_floor = 5 % being the
   width that stochastic growth and late nucleation keep.
3. **Ostwald ripening** (Lifshitz-Slyozov-Wagner) as the supersaturation (~ m) falls:
   dR/dt = K(T) (1 - m), K Arrhenius (K_ref = 0.05 nm^3/s at T_ref, E_a = 70 kJ/mol), so
   R = K [t - tau (1 - m)] at constant T and, late in the run, D^3 - D_inf^3 = K (t - tau): the LSW
   law D^3 - D0^3 = k t. The mean diameter is D = (D_g^3 + R)^(1/3). Ripening drives the
   distribution to its self-similar LSW shape, of relative width sigma_LSW (20 %); the memory of
   the focused distribution fades with the share of the volume made by ripening, rho = R / D^3:
   sigma = (1 - rho) sigma_f + rho sigma_LSW.

The dispersion therefore narrows from ~19 % to ~6 % during growth and broadens again towards 20 %
during ripening. The reported mean size is clipped to [2, 10] nm (the range a sizing model knows).
Over one hour at 150 C the dots grow from 2 nm to ~10 nm; at 120 C to ~6.5 nm; at 80 C to ~3.6 nm.

The nanocrystal share of the scattered area (``concentration``) follows the converted precursor
X = b + (1 - b)(1 - m): f = a X / (a X + 1) with a = a_ref c / c_ref, a_ref such that full
conversion at c_ref gives f = 0.5 (the reference work trains on fractions 0.15-1).

A temperature change takes effect at once (idealised heating) and is integrated exactly from
that moment on; a precursor change takes effect at the next injection.

Units: time in s, temperature in deg C, diameters in nm, precursor concentration in mmol/L, activation energies
in kJ/mol. NumPy only (no ophyd): :class:`~qdots_bluesky.sim.beamline.devices.SynthesisReactor` runs this law.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["GrowthLaw", "GrowthObservation", "GrowthState", "R_KJ", "ZERO_C_K"]

#: Gas constant in kJ/(mol K).
R_KJ = 8.314462618e-3
#: 0 deg C in K.
ZERO_C_K = 273.15


@dataclass(frozen=True)
class GrowthState:
    """Kinetic state after injection: time (s), remaining precursor m, ripened volume R (nm^3)."""

    t_s: float
    remaining: float
    ripened_nm3: float
    growth_nm3: float  # D_inf^3 - D0^3, fixed by the nucleation burst
    precursor_mm: float


@dataclass(frozen=True)
class GrowthObservation:
    """What the reactor shows: mean diameter (nm), relative std, NC area fraction, conversion."""

    elapsed_s: float
    mean_nm: float
    dispersion: float
    fraction: float
    conversion: float


@dataclass(frozen=True)
class GrowthLaw:
    """Nucleation burst, diffusion-limited growth with focusing, LSW ripening (see the module docstring).

    Temperatures in deg C, times in s, diameters in nm, activation energies in kJ/mol,
    precursor concentrations in mmol/L.
    """

    nucleus_diameter_nm: float = 2.0
    nucleation_dispersion: float = 0.18
    focusing_floor: float = 0.05
    ripening_dispersion: float = 0.20
    reference_temperature_c: float = 120.0
    conversion_time_s: float = 120.0
    conversion_activation_kj_mol: float = 60.0
    plateau_diameter_nm: float = 4.5
    plateau_temperature_coeff: float = 0.0067
    reference_precursor_mm: float = 30.0
    plateau_precursor_exponent: float = 1.0 / 6.0
    ripening_rate_nm3_s: float = 0.05
    ripening_activation_kj_mol: float = 70.0
    burst_conversion: float = 0.02
    full_conversion_fraction: float = 0.5
    min_diameter_nm: float = 2.0
    max_diameter_nm: float = 10.0

    def __post_init__(self) -> None:
        positive = ("nucleus_diameter_nm", "conversion_time_s", "plateau_diameter_nm", "reference_precursor_mm",
                    "min_diameter_nm", "max_diameter_nm")
        for name in positive:
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"GrowthLaw.{name}={v!r}; accepted: a positive number")
        for name in ("nucleation_dispersion", "focusing_floor", "ripening_dispersion"):
            v = getattr(self, name)
            if not (np.isfinite(v) and 0 <= v < 0.5):
                raise ValueError(f"GrowthLaw.{name}={v!r}; accepted: a relative standard deviation in [0, 0.5)")
        for name in ("ripening_rate_nm3_s", "conversion_activation_kj_mol", "ripening_activation_kj_mol",
                     "plateau_precursor_exponent"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"GrowthLaw.{name}={v!r}; accepted: a non-negative number")
        if not 0 <= self.burst_conversion < 1:
            raise ValueError(f"GrowthLaw.burst_conversion={self.burst_conversion!r}; accepted: [0, 1)")
        if not 0 < self.full_conversion_fraction < 1:
            raise ValueError(f"GrowthLaw.full_conversion_fraction={self.full_conversion_fraction!r}; accepted: (0, 1)")
        if self.min_diameter_nm >= self.max_diameter_nm:
            raise ValueError("GrowthLaw.min_diameter_nm must be below max_diameter_nm")

    # rates ----------------------------------------------------------------------------------
    def _arrhenius(self, temperature_c: float, activation_kj_mol: float) -> float:
        t = float(temperature_c) + ZERO_C_K
        t_ref = self.reference_temperature_c + ZERO_C_K
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"temperature {temperature_c!r} deg C is not a temperature above absolute zero")
        return math.exp(-activation_kj_mol / R_KJ * (1.0 / t - 1.0 / t_ref))

    def conversion_time(self, temperature_c: float) -> float:
        """Precursor conversion time constant tau (s): tau_ref exp(E_a/R (1/T - 1/T_ref))."""
        return self.conversion_time_s / self._arrhenius(temperature_c, self.conversion_activation_kj_mol)

    def ripening_rate(self, temperature_c: float) -> float:
        """LSW rate constant K (nm^3/s) of D^3 - D0^3 = K t: K_ref exp(-E_a/R (1/T - 1/T_ref))."""
        return self.ripening_rate_nm3_s * self._arrhenius(temperature_c, self.ripening_activation_kj_mol)

    def plateau_diameter(self, temperature_c: float, precursor_mm: float) -> float:
        """Diameter (nm) the nuclei reach once the precursor is used up, without ripening."""
        d = (self.plateau_diameter_nm * (precursor_mm / self.reference_precursor_mm) ** self.plateau_precursor_exponent
             * math.exp(self.plateau_temperature_coeff * (temperature_c - self.reference_temperature_c)))
        return max(d, self.nucleus_diameter_nm)

    # state ----------------------------------------------------------------------------------
    def start(self, temperature_c: float, precursor_mm: float) -> GrowthState:
        """State right after injection at a temperature (deg C) with a precursor concentration (mM)."""
        d_inf = self.plateau_diameter(temperature_c, precursor_mm)
        return GrowthState(0.0, 1.0, 0.0, d_inf**3 - self.nucleus_diameter_nm**3, float(precursor_mm))

    def evolve(self, state: GrowthState, dt_s: float, temperature_c: float) -> GrowthState:
        """State dt_s seconds later at a constant temperature (exact)."""
        if not dt_s >= 0:
            raise ValueError(f"time step must be >= 0 s, got {dt_s!r}")
        tau = self.conversion_time(temperature_c)
        decay = math.exp(-dt_s / tau)
        ripened = state.ripened_nm3 + self.ripening_rate(temperature_c) * (dt_s - state.remaining * tau * (1.0 - decay))
        return replace(state, t_s=state.t_s + dt_s, remaining=state.remaining * decay, ripened_nm3=max(ripened, 0.0))

    def observe(self, state: GrowthState) -> GrowthObservation:
        """Mean diameter (clipped), dispersion, NC area fraction and conversion of a state."""
        d0 = self.nucleus_diameter_nm
        dg3 = d0**3 + state.growth_nm3 * (1.0 - state.remaining)
        d3 = dg3 + state.ripened_nm3
        focused = math.hypot(self.focusing_floor, self.nucleation_dispersion * (d0**3 / dg3) ** (2.0 / 3.0))
        rho = state.ripened_nm3 / d3
        dispersion = (1.0 - rho) * focused + rho * self.ripening_dispersion
        conversion = self.burst_conversion + (1.0 - self.burst_conversion) * (1.0 - state.remaining)
        a = self.full_conversion_fraction / (1.0 - self.full_conversion_fraction) * state.precursor_mm / self.reference_precursor_mm
        fraction = a * conversion / (a * conversion + 1.0)
        mean = float(np.clip(d3 ** (1.0 / 3.0), self.min_diameter_nm, self.max_diameter_nm))
        return GrowthObservation(state.t_s, mean, float(dispersion), float(fraction), float(conversion))

    def trajectory(self, times_s, temperature_c: float, precursor_mm: float) -> dict[str, np.ndarray]:
        """Observations at times (s after injection) at a constant temperature: arrays by field name."""
        times = np.asarray(times_s, dtype=float)
        if times.ndim != 1 or np.any(times < 0):
            raise ValueError("times must be a 1D array of non-negative seconds after injection")
        s0 = self.start(temperature_c, precursor_mm)
        obs = [self.observe(self.evolve(s0, float(t), temperature_c)) for t in times]
        return {k: np.array([getattr(o, k) for o in obs]) for k in ("elapsed_s", "mean_nm", "dispersion", "fraction", "conversion")}
