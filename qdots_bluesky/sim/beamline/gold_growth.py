"""The growth law of a simulated in-situ gold nanoparticle synthesis: LaMer nucleation, growth, ripening, structure.

Kinetics (:class:`GoldGrowthLaw`)
---------------------------------
A reducing agent is injected at t = 0 into a solution of a gold(III) precursor (e.g. HAuCl4 with oleylamine in
toluene). After LaMer's picture (LaMer & Dinegar, JACS 72, 4847 (1950)), in closed form for piecewise-constant
temperature (no ODE stepping; a temperature change is integrated exactly from that moment on):

1. **Induction**: the reduced Au(0) monomer builds up until it passes the critical supersaturation; no particles yet,
   so a detector sees the blank. It lasts t_ind = ``induction_s`` at the reference temperature (Arrhenius in T);
   the progress sum dt / t_ind(T) reaching 1 fires the burst.
2. **Nucleation burst**: nuclei of diameter D0 (1.2 nm, ~55 atoms) with relative standard deviation sigma_nuc
   (18 %); their number is fixed from then on.
3. **Diffusion-limited growth**: the growth rate of a particle is limited by the diffusion of monomer to it, so
   d(D^2)/dt = k S is the same for every particle (Reiss, J. Chem. Phys. 19, 482 (1951)), S being the relative
   supersaturation, which the growing particles deplete: S = exp(-t' / tau) (t' since the burst). Hence
   D^2 = D0^2 + k tau (1 - S) at constant T (k = 0.03 nm^2/s, tau = 3000 s at 80 C; Arrhenius, E_a 50 and
   30 kJ/mol: hotter syntheses grow faster and larger). The same D^2 increment for all particles narrows the
   relative width as 1/D^2 (size focusing): sigma_f = sqrt(sigma_floor^2 + (sigma_nuc (D0 / D)^2)^2), sigma_floor
   = 5 %. The reported conversion (gold in particles) is X = 1 - S, the monomer taken up (an approximation: the
   D^2 law and this mass balance agree only roughly).
4. **Defocusing**: as S falls, the smallest particles dissolve in favour of the larger ones (Ostwald ripening,
   Lifshitz-Slyozov-Wagner), which drives the width towards its self-similar value sigma_LSW (20 %); the share of
   ripening is rho = (1 - S)^2: sigma = (1 - rho) sigma_f + rho sigma_LSW.

At 80 C the mean equal-volume diameter goes from 1.2 nm at the burst (60 s) to ~2 nm after ~2.5 min, ~5 nm after
~17 min and ~8 nm after an hour; the dispersion narrows from 18 % to ~5 % and broadens again to ~12 % after an hour
(towards 20 % later). The mean is clipped to ``max_diameter_nm``.

Structure (:class:`GoldStructureLaw`)
-------------------------------------
Gold clusters change structure with size: icosahedra are the lowest-energy motif of the smallest clusters,
(Marks) decahedra of intermediate ones and fcc crystals (truncated octahedra) of large ones, because the strain
energy of the twinned motifs grows with volume while their surface-energy gain grows only with area (Baletto &
Ferrando, Rev. Mod. Phys. 77, 371 (2005); for gold e.g. Cleveland et al., PRL 79, 1873 (1997); Koga, Ikeshoji &
Sugawara, PRL 92, 115507 (2004)). The crossover sizes are approximate (they depend on the potential, temperature
and kinetics: growth traps decahedra well above their energetic range); here they are parameters, defaults
icosahedron -> decahedron at 2 nm and decahedron -> fcc at 5 nm. The number fractions of the three structures are a
softmax in x = ln(D) of the logits 0, (x - x1) / w and (x - x1) / w + (x - x2) / w (D the population's mean
diameter, x1 = ln D_1, x2 = ln D_2, w the relative crossover width): at D_1 icosahedra and decahedra are equally
many, at D_2 decahedra and fcc, and the order icosahedron < decahedron < fcc holds at every size. Each structure's
particles have the same log-normal size distribution (the population's mean and dispersion), as in the training
mixtures of :mod:`qdots_bluesky.sim.learning.metal_sources`.

Units: time in s, temperature in deg C, diameters in nm, precursor concentration in mmol/L. NumPy only (no ophyd):
:class:`~qdots_bluesky.sim.beamline.gold_devices.GoldSynthesisReactor` runs this law.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .growth import R_KJ, ZERO_C_K

__all__ = ["STRUCTURES", "GoldGrowthLaw", "GoldObservation", "GoldState", "GoldStructureLaw"]

#: The structures whose number fractions the law gives, in this order.
STRUCTURES = ("icosahedron", "decahedron", "fcc")


@dataclass(frozen=True)
class GoldStructureLaw:
    """Number fractions of icosahedra, decahedra and fcc particles vs the mean diameter (nm); see the module docstring.

    ``icosahedron_to_decahedron_nm`` (D_1) < ``decahedron_to_fcc_nm`` (D_2): the diameters where neighbouring
    structures are equally many; ``crossover_width``: w, the relative change of D over which the logit changes by 1.
    """

    icosahedron_to_decahedron_nm: float = 2.0
    decahedron_to_fcc_nm: float = 5.0
    crossover_width: float = 0.15

    def __post_init__(self) -> None:
        d1, d2, w = self.icosahedron_to_decahedron_nm, self.decahedron_to_fcc_nm, self.crossover_width
        if not (np.isfinite(d1) and np.isfinite(d2) and 0 < d1 < d2):
            raise ValueError(f"crossover diameters {d1!r}, {d2!r} nm; accepted: 0 < icosahedron_to_decahedron_nm "
                             "< decahedron_to_fcc_nm")
        if not (np.isfinite(w) and w > 0):
            raise ValueError(f"crossover_width={w!r}; accepted: a positive relative width (e.g. 0.15)")

    def fractions(self, mean_nm) -> np.ndarray:
        """Number fractions (..., 3) in the order of :data:`STRUCTURES` at mean diameters (nm); rows sum to 1."""
        d = np.asarray(mean_nm, dtype=float)
        if np.any(~np.isfinite(d)) or np.any(d <= 0):
            raise ValueError(f"mean diameters {mean_nm!r}; accepted: positive numbers of nm")
        x = np.log(d)
        a = (x - math.log(self.icosahedron_to_decahedron_nm)) / self.crossover_width
        b = (x - math.log(self.decahedron_to_fcc_nm)) / self.crossover_width
        logits = np.stack([np.zeros_like(x), a, a + b], axis=-1)
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class GoldState:
    """State after the injection of the reducing agent: time (s), induction progress (0-1), whether the burst has
    happened, D^2 - D0^2 grown since (nm^2), relative supersaturation S (1 at the burst), precursor (mmol/L)."""

    t_s: float
    induction: float
    nucleated: bool
    grown_nm2: float
    supersaturation: float
    precursor_mm: float


@dataclass(frozen=True)
class GoldObservation:
    """What the reactor shows: time (s), whether particles exist, mean diameter (nm), relative std, the fraction of
    the gold in particles, and the number fractions of :data:`STRUCTURES`."""

    elapsed_s: float
    nucleated: bool
    mean_nm: float
    dispersion: float
    conversion: float
    fractions: tuple[float, float, float]

    def fraction_of(self, structure: str) -> float:
        """Number fraction of one of :data:`STRUCTURES`."""
        if structure not in STRUCTURES:
            raise ValueError(f"structure {structure!r}; accepted: {', '.join(STRUCTURES)}")
        return self.fractions[STRUCTURES.index(structure)]


@dataclass(frozen=True)
class GoldGrowthLaw:
    """Induction, nucleation burst, diffusion-limited growth with focusing, defocusing (see the module docstring), and
    the structure vs size (``structure``).

    Temperatures in deg C, times in s, diameters in nm, rates in nm^2/s, activation energies in kJ/mol. The
    precursor concentration (mmol/L) scales the growth rate linearly about ``reference_precursor_mm``.
    """

    nucleus_diameter_nm: float = 1.2
    nucleation_dispersion: float = 0.18
    focusing_floor: float = 0.05
    ripening_dispersion: float = 0.20
    reference_temperature_c: float = 80.0
    induction_s: float = 60.0
    induction_activation_kj_mol: float = 50.0
    growth_rate_nm2_s: float = 0.03
    growth_activation_kj_mol: float = 50.0
    depletion_time_s: float = 3000.0
    depletion_activation_kj_mol: float = 30.0
    reference_precursor_mm: float = 10.0
    min_diameter_nm: float = 0.8
    max_diameter_nm: float = 12.0
    structure: GoldStructureLaw = GoldStructureLaw()

    def __post_init__(self) -> None:
        for name in ("nucleus_diameter_nm", "growth_rate_nm2_s", "depletion_time_s", "reference_precursor_mm",
                     "min_diameter_nm", "max_diameter_nm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"GoldGrowthLaw.{name}={v!r}; accepted: a positive number")
        for name in ("induction_s", "induction_activation_kj_mol", "growth_activation_kj_mol",
                     "depletion_activation_kj_mol"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"GoldGrowthLaw.{name}={v!r}; accepted: a non-negative number")
        for name in ("nucleation_dispersion", "focusing_floor", "ripening_dispersion"):
            v = getattr(self, name)
            if not (np.isfinite(v) and 0 <= v < 0.5):
                raise ValueError(f"GoldGrowthLaw.{name}={v!r}; accepted: a relative standard deviation in [0, 0.5)")
        if not self.min_diameter_nm <= self.nucleus_diameter_nm < self.max_diameter_nm:
            raise ValueError(f"GoldGrowthLaw diameters {self.min_diameter_nm!r} <= nucleus {self.nucleus_diameter_nm!r} "
                             f"< {self.max_diameter_nm!r} nm violated; accepted: min <= nucleus < max")
        if not isinstance(self.structure, GoldStructureLaw):
            raise ValueError(f"structure is a {type(self.structure).__name__}; accepted: a GoldStructureLaw")

    # rates ----------------------------------------------------------------------------------
    def _arrhenius(self, temperature_c: float, activation_kj_mol: float) -> float:
        t = float(temperature_c) + ZERO_C_K
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"temperature {temperature_c!r} deg C; accepted: a temperature above absolute zero")
        return math.exp(-activation_kj_mol / R_KJ * (1.0 / t - 1.0 / (self.reference_temperature_c + ZERO_C_K)))

    def induction_time(self, temperature_c: float) -> float:
        """Induction time (s) before the burst at a temperature (deg C)."""
        return self.induction_s / self._arrhenius(temperature_c, self.induction_activation_kj_mol)

    def growth_rate(self, temperature_c: float, precursor_mm: float) -> float:
        """k (nm^2/s) of d(D^2)/dt = k S at a temperature (deg C) and precursor concentration (mmol/L)."""
        return (self.growth_rate_nm2_s * self._arrhenius(temperature_c, self.growth_activation_kj_mol)
                * precursor_mm / self.reference_precursor_mm)

    def depletion_time(self, temperature_c: float) -> float:
        """Time constant tau (s) of the supersaturation's decay at a temperature (deg C)."""
        return self.depletion_time_s / self._arrhenius(temperature_c, self.depletion_activation_kj_mol)

    # state ----------------------------------------------------------------------------------
    def start(self, temperature_c: float, precursor_mm: float) -> GoldState:
        """State right at the injection of the reducing agent (the burst at once when ``induction_s`` is 0)."""
        self._check_precursor(precursor_mm)
        self._arrhenius(temperature_c, 0.0)
        return GoldState(0.0, 0.0, self.induction_s == 0, 0.0, 1.0, float(precursor_mm))

    def evolve(self, state: GoldState, dt_s: float, temperature_c: float) -> GoldState:
        """State dt_s seconds later at a constant temperature (deg C); exact, the burst falling where the induction
        ends."""
        if not (np.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"time step {dt_s!r} s; accepted: a finite number >= 0")
        grow_s = dt_s
        if not state.nucleated:
            t_ind = self.induction_time(temperature_c)
            left_s = (1.0 - state.induction) * t_ind
            if dt_s < left_s:
                return replace(state, t_s=state.t_s + dt_s, induction=state.induction + dt_s / t_ind)
            grow_s = dt_s - left_s
        tau = self.depletion_time(temperature_c)
        decay = math.exp(-grow_s / tau)
        k = self.growth_rate(temperature_c, state.precursor_mm)
        grown = state.grown_nm2 + k * tau * state.supersaturation * (1.0 - decay)
        return replace(state, t_s=state.t_s + dt_s, induction=1.0, nucleated=True, grown_nm2=grown,
                       supersaturation=state.supersaturation * decay)

    def observe(self, state: GoldState) -> GoldObservation:
        """Mean diameter (nm, clipped), dispersion, conversion and structure fractions of a state (before the burst:
        the nuclei's size and width, conversion 0)."""
        d0 = self.nucleus_diameter_nm
        if not state.nucleated:
            mean, dispersion, conversion = d0, self.nucleation_dispersion, 0.0
        else:
            d = math.sqrt(d0**2 + state.grown_nm2)
            focused = math.hypot(self.focusing_floor, self.nucleation_dispersion * (d0 / d) ** 2)
            rho = (1.0 - state.supersaturation) ** 2
            dispersion = (1.0 - rho) * focused + rho * self.ripening_dispersion
            mean = min(max(d, self.min_diameter_nm), self.max_diameter_nm)
            conversion = 1.0 - state.supersaturation
        fractions = tuple(float(f) for f in self.structure.fractions(mean))
        return GoldObservation(float(state.t_s), bool(state.nucleated), float(mean), float(dispersion),
                               float(conversion), fractions)

    def trajectory(self, times_s, temperature_c: float, precursor_mm: float) -> dict[str, np.ndarray]:
        """Observations at times (s after injection) at a constant temperature (deg C) and precursor (mmol/L):
        arrays ``elapsed_s``, ``nucleated``, ``mean_nm``, ``dispersion``, ``conversion`` and one per structure."""
        times = np.asarray(times_s, dtype=float)
        if times.ndim != 1 or np.any(~np.isfinite(times)) or np.any(times < 0):
            raise ValueError("times must be a 1D array of non-negative seconds after injection")
        s0 = self.start(temperature_c, precursor_mm)
        obs = [self.observe(self.evolve(s0, float(t), temperature_c)) for t in times]
        out = {k: np.array([getattr(o, k) for o in obs]) for k in ("elapsed_s", "nucleated", "mean_nm", "dispersion",
                                                                  "conversion")}
        for i, name in enumerate(STRUCTURES):
            out[name] = np.array([o.fractions[i] for o in obs])
        return out

    @staticmethod
    def _check_precursor(precursor_mm: float) -> None:
        if not (np.isfinite(precursor_mm) and precursor_mm > 0):
            raise ValueError(f"precursor {precursor_mm!r} mmol/L; accepted: a positive concentration")
