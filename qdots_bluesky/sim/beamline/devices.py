"""Simulated ophyd devices of an in-situ synthesis beamline: a PbS hot-injection reactor and a 1D WAXS detector.

Both are real ophyd Devices (soft signals of :mod:`.signals`, no EPICS), so they run under a RunEngine exactly like
hardware, and their truth (the reactor's mean size and dispersion) is recorded in the same events
as the simulated patterns, which lets a live sizing callback be checked against it. The reactor follows the
closed-form growth law of :mod:`~qdots_bluesky.sim.beamline.growth`; :func:`~qdots_bluesky.sim.beamline.virtual_time.use_virtual_time`
lets a RunEngine's ``sleep`` advance its clock.

Clock
-----
Simulated time since injection is ``offset + time_scale * (wall seconds since injection)`` in the
``"real"`` clock mode (``time_scale`` = 60: a 60 s scan covers an hour of synthesis), plus any
:meth:`SynthesisReactor.advance`. In the ``"manual"`` mode only :meth:`~SynthesisReactor.advance`
moves time, so tests are exact; :func:`~qdots_bluesky.sim.beamline.virtual_time.use_virtual_time` makes a RunEngine's ``sleep`` advance
manual reactors by ``delay * time_scale`` instead of waiting.

Detector (:class:`WaxsDetector`)
--------------------------------
The DSE patterns (crystal + Compton, electron units per cluster, fixed strain) of every series
cluster up to ``max_diameter_nm`` are computed once on the detector's grid (exact pair histograms,
:func:`~qdots_bluesky.sim.physics.cache.series_histogram`, and the population kernel
:func:`~qdots_bluesky.sim.physics.population.population_patterns`, one "population" per cluster).
Each trigger then takes the reactor's state and computes

    NC = sum_n w_n(mean, dispersion) I_n            (log-normal number weights)
    Y  = f NC / <NC> + (1 - f) S / <S>              (equal-area mixing, <.> = mean over the grid)
    N  = Y / max(Y) * count_rate * exposure          (expected counts; strongest point = rate x time)
    intensity = Poisson(N)                           (seeded)

with S the built-in solvent model (:func:`~qdots_bluesky.sim.physics.solvents.solvent_pattern`). The
signal-to-noise ratio of the strongest point is sqrt(count_rate * exposure) (100 by default), the
definition used by the training augmentation. Intensities are given at the grid points
(no polarization or Lorentz factor: a synchrotron DSE pattern I(Q) is recorded as I(Q(2theta))).

Units: 2theta in degrees, Q in 1/A, wavelength in A, diameters in nm, time in s, temperature in
deg C, precursor concentration in mmol/L, intensity in counts.
"""
from __future__ import annotations

import threading
import time
import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Kind, Signal

from ...lru import LRUCache, array_key
from ...units import XUnit, check_wavelength, q_to_tth, tth_to_q
from ..physics.cache import structure_key
from ..physics.clusters import equal_volume_diameter_nm
from ..physics.distribution import DEFAULT_MAX_DIAMETER_NM, lognormal_number_weights
from ..physics.grids import q_grid, tth_grid
from ..physics.materials import get_structure
from ..physics.population import check_strain, population_patterns, series_pair_table
from ..physics.solvents import solvent_names, solvent_pattern
from .growth import GrowthLaw, GrowthObservation, GrowthState
from .signals import BoolSignal, ChoiceSignal, ReadOnlySignal, SetpointSignal, acquire_in_thread, finished_status

__all__ = [
    "SynthesisReactor",
    "WaxsDetector",
    "make_simulated_beamline",
    "X04SA_TTH_RANGE_DEG",
    "X04SA_TTH_STEP_DEG",
    "X04SA_WAVELENGTH_A",
]

#: X04SA-MS (Swiss Light Source) defaults of the reference work: 2theta range and step (deg), wavelength (A).
X04SA_TTH_RANGE_DEG = (0.5, 84.0)
X04SA_TTH_STEP_DEG = 0.0036
X04SA_WAVELENGTH_A = 0.5646
#: Default Q grid of the model (1/A): 1-15 in 5004 points.
MODEL_Q_RANGE = (1.0, 15.0)
MODEL_Q_POINTS = 5004
#: Accepted reactor set points.
TEMPERATURE_LIMITS_C = (60.0, 200.0)
PRECURSOR_LIMITS_MM = (1.0, 200.0)


# --------------------------------------------------------------------------------------------
# Reactor
# --------------------------------------------------------------------------------------------
class SynthesisReactor(Device):
    """Simulated hot-injection PbS synthesis whose quantum dots grow with (simulated) time.

    Settable: ``temperature`` (deg C, 60-200), ``precursor`` (initial sulfur precursor
    concentration after injection, mmol/L, 1-200; used at the next injection), ``injection``
    (write 1 to inject: nucleation burst, simulated time restarts at 0).
    Readable (the truth): ``true_size`` (mean diameter, nm), ``true_dispersion`` (relative std of
    the log-normal number distribution), ``concentration`` (nanocrystal share of the scattered
    area, 0-1), ``conversion`` (converted precursor fraction), ``elapsed`` (simulated s since
    injection). Before the first injection there are no dots: concentration 0, elapsed 0 and the
    size of the nuclei.

    Parameters: ``clock`` "real" (simulated time = time_scale x wall time, plus advance()) or
    "manual" (only :meth:`advance` moves time); ``time_scale`` simulated seconds per wall second;
    ``growth_law`` a :class:`GrowthLaw`.

    Triggering (or :meth:`update`) refreshes the readable signals to the current simulated time.
    """

    temperature = Cpt(SetpointSignal, value=140.0, units="degC", limits=TEMPERATURE_LIMITS_C, kind=Kind.normal)
    precursor = Cpt(SetpointSignal, value=30.0, units="mmol/L", limits=PRECURSOR_LIMITS_MM, kind=Kind.config)
    injection = Cpt(SetpointSignal, value=0, kind=Kind.omitted)
    true_size = Cpt(ReadOnlySignal, value=2.0, units="nm", kind=Kind.hinted)
    true_dispersion = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.normal)
    concentration = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.normal)
    conversion = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.normal)
    elapsed = Cpt(ReadOnlySignal, value=0.0, units="s", kind=Kind.normal)
    time_scale = Cpt(ReadOnlySignal, value=60.0, units="", kind=Kind.config)

    def __init__(self, prefix: str = "", *, name: str, growth_law: GrowthLaw | None = None, temperature: float = 140.0,
                 precursor: float = 30.0, clock: str = "real", time_scale: float = 60.0, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        if clock not in ("real", "manual"):
            raise ValueError(f"clock={clock!r}; accepted: 'real' (time_scale x wall time) or 'manual' (advance() only)")
        if not (np.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale={time_scale!r}; accepted: a positive number of simulated seconds per wall second")
        self.growth_law = growth_law if growth_law is not None else GrowthLaw()
        self.clock = clock
        self._time_scale = float(time_scale)
        self._lock = threading.RLock()
        self.temperature.check_value(temperature)
        self.precursor.check_value(precursor)
        self.temperature.put(float(temperature))
        self.precursor.put(float(precursor))
        self.time_scale._publish(self._time_scale)
        self._temperature_c = float(temperature)
        self._injected = False
        self._wall0 = time.monotonic()
        self._offset_s = 0.0
        self._checkpoint: GrowthState | None = None
        self.temperature.subscribe(self._on_temperature, event_type=Signal.SUB_VALUE, run=False)
        self.injection.subscribe(self._on_injection, event_type=Signal.SUB_VALUE, run=False)
        self.update()

    # time -----------------------------------------------------------------------------------
    @property
    def injected(self) -> bool:
        return self._injected

    def simulated_time(self) -> float:
        """Simulated seconds since injection (0 before the first injection)."""
        with self._lock:
            if not self._injected:
                return 0.0
            t = self._offset_s
            if self.clock == "real":
                t += self._time_scale * (time.monotonic() - self._wall0)
            return t

    def inject(self) -> GrowthObservation:
        """Inject the sulfur precursor now: nucleation burst at the current temperature, time 0."""
        with self._lock:
            self._injected = True
            self._wall0 = time.monotonic()
            self._offset_s = 0.0
            self._checkpoint = self.growth_law.start(self._temperature_c, float(self.precursor.get()))
        return self.update()

    def advance(self, seconds: float) -> GrowthObservation:
        """Move simulated time forward by seconds (both clock modes); returns the new state."""
        if not (np.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"advance() needs a non-negative number of simulated seconds, got {seconds!r}")
        with self._lock:
            self._offset_s += float(seconds)
        return self.update()

    # state ----------------------------------------------------------------------------------
    def state(self) -> GrowthObservation:
        """The true state at the current simulated time (does not publish it)."""
        with self._lock:
            law = self.growth_law
            if not self._injected:
                d0 = law.nucleus_diameter_nm
                return GrowthObservation(0.0, float(np.clip(d0, law.min_diameter_nm, law.max_diameter_nm)),
                                         law.nucleation_dispersion, 0.0, 0.0)
            t = self.simulated_time()
            ck = self._checkpoint
            return law.observe(law.evolve(ck, max(t - ck.t_s, 0.0), self._temperature_c))

    def update(self) -> GrowthObservation:
        """Publish the current true state to the readable signals and return it."""
        with self._lock:
            obs = self.state()
            ts = time.time()
            self.true_size._publish(obs.mean_nm, ts)
            self.true_dispersion._publish(obs.dispersion, ts)
            self.concentration._publish(obs.fraction, ts)
            self.conversion._publish(obs.conversion, ts)
            self.elapsed._publish(obs.elapsed_s, ts)
            return obs

    def _on_temperature(self, value=None, old_value=None, **kwargs) -> None:
        with self._lock:
            if self._injected:  # integrate the old temperature up to now, then switch
                t = self.simulated_time()
                ck = self._checkpoint
                self._checkpoint = self.growth_law.evolve(ck, max(t - ck.t_s, 0.0), self._temperature_c)
            self._temperature_c = float(value)
        self.update()

    def _on_injection(self, value=None, **kwargs) -> None:
        if value:
            self.inject()

    def trigger(self):
        self.update()
        return finished_status(self)


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------
#: Per-cluster patterns of the last few detector set-ups, shared by detectors with the same settings.
_PATTERNS: LRUCache[np.ndarray] = LRUCache(4)
#: Built-in solvent curves of the simulated detectors, by (solvent, grid, wavelength, WAXS level).
_SOLVENTS: LRUCache[np.ndarray] = LRUCache(8)


def solvent_curve(name: str, q: np.ndarray, wavelength_a: float, waxs_from_q: float | None = None) -> np.ndarray | None:
    """The built-in solvent model on ``q`` (1/A; electron units per molecule, or with ``waxs_from_q`` scaled to mean 1
    over Q >= it, the whole grid where it ends below), read-only and memoised (the first model of a solvent takes a
    few s); None for 'none'."""
    if name == "none":
        return None

    def compute() -> np.ndarray:
        pattern = solvent_pattern(name, q, wavelength_a)
        if waxs_from_q is not None:
            waxs = q >= waxs_from_q
            pattern = pattern / pattern[waxs if waxs.any() else slice(None)].mean()
        pattern.setflags(write=False)
        return pattern

    return _SOLVENTS.get_or_compute((name, array_key(q), round(wavelength_a, 8), waxs_from_q), compute)


def _cluster_patterns(material: str, q: np.ndarray, wavelength_a: float, strain: float, n: np.ndarray,
                      progress: bool) -> np.ndarray:
    """Crystal + Compton pattern (electron units) of each series cluster n on Q: shape (len(n), len(q)).

    The population kernel (:func:`~qdots_bluesky.sim.physics.population.population_patterns`) with one
    "population" per cluster; memoised (a few entries) so that several detectors with the same settings share the work.
    """
    structure = get_structure(material)
    key = (structure.name, structure_key(structure), round(wavelength_a, 8), round(strain, 10), int(n.max()),
           array_key(q, decimals=10))

    def compute() -> np.ndarray:
        clusters = series_pair_table(structure, n, progress)
        crystal, compton = population_patterns(q, clusters, np.eye(n.size), np.array([float(strain)]), wavelength_a,
                                               dtype=np.float64, progress=progress, label="WAXS detector clusters")
        out = crystal + compton
        out.setflags(write=False)
        return out

    return _PATTERNS.get_or_compute(key, compute)


class WaxsDetector(Device):
    """Simulated 1D WAXS detector (MYTHEN-like strip) looking at a :class:`SynthesisReactor`.

    ``trigger()`` takes the reactor's current true state (refreshing the reactor's signals to
    it) and returns a status that completes once the pattern is computed (a few ms, in a worker
    thread); ``read()`` then gives ``<name>_intensity`` (counts, 1D float64 on the x grid).

    Configuration (read_configuration): ``<name>_tth`` (deg) or ``<name>_q`` (1/A) as chosen by
    ``x_unit``; ``<name>_x_unit``; ``<name>_wavelength`` (A); ``<name>_material``; ``<name>_strain``;
    ``<name>_solvent`` (settable: a built-in solvent model or "none"); ``<name>_exposure`` (s,
    settable); ``<name>_count_rate`` (counts/s on the strongest point, settable);
    ``<name>_noise`` (settable, False gives the expected counts). SNR of the strongest point:
    sqrt(count_rate x exposure).

    Grid: ``x`` (an explicit increasing array in the x unit), else for x_unit "tth" the X04SA
    range 0.5-84 deg in steps of ``tth_step`` (0.0036 deg: 23 195 points; 0.0168: 4 971), for
    "q" 1-15 1/A in ``q_points`` points (5004).

    The DSE patterns of every series cluster with diameter up to ``max_diameter_nm`` are
    computed once, at construction (``precompute=True``) or at the first trigger.
    """

    intensity = Cpt(ReadOnlySignal, value=np.zeros(2), units="counts", kind=Kind.normal)
    tth = Cpt(ReadOnlySignal, value=np.zeros(2), units="deg", kind=Kind.config)
    q = Cpt(ReadOnlySignal, value=np.zeros(2), units="1/A", kind=Kind.config)
    x_unit = Cpt(ReadOnlySignal, value="tth", kind=Kind.config)
    wavelength = Cpt(ReadOnlySignal, value=X04SA_WAVELENGTH_A, units="A", kind=Kind.config)
    material = Cpt(ReadOnlySignal, value="PbS", kind=Kind.config)
    strain = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.config)
    solvent = Cpt(ChoiceSignal, value="hexane", choices=(), kind=Kind.config)
    exposure = Cpt(SetpointSignal, value=1.0, units="s", limits=(1e-6, 1e6), kind=Kind.config)
    count_rate = Cpt(SetpointSignal, value=1e4, units="counts/s", limits=(1e-3, 1e12), kind=Kind.config)
    noise = Cpt(BoolSignal, value=True, kind=Kind.config)

    def __init__(self, prefix: str = "", *, name: str, reactor: SynthesisReactor, x_unit: str = "tth", x=None,
                 tth_step: float = X04SA_TTH_STEP_DEG, q_points: int = MODEL_Q_POINTS,
                 wavelength: float = X04SA_WAVELENGTH_A, material: str = "PbS", strain: float = 0.0,
                 solvent: str = "hexane", exposure: float = 1.0, count_rate: float = 1e4, noise: bool = True,
                 seed: int | None = None, max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM,
                 precompute: bool = True, progress: bool = False, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        if not isinstance(reactor, SynthesisReactor):
            raise ValueError(f"reactor must be a SynthesisReactor, got {type(reactor).__name__}")
        check_wavelength(wavelength)
        check_strain(strain)
        x_unit = XUnit.parse(x_unit).value
        self.reactor = reactor
        structure = get_structure(material)
        self._material = structure.name if not str(material).lower().endswith(".cif") else str(material)
        # grid
        if x is not None:
            xs = np.asarray(x, dtype=float)
            if xs.ndim != 1 or xs.size < 2 or not np.all(np.isfinite(xs)) or np.any(np.diff(xs) <= 0) or xs[0] <= 0:
                raise ValueError(f"x must be a 1D, strictly increasing array of positive {'2theta (deg)' if x_unit == 'tth' else 'Q (1/A)'} values")
        elif x_unit == "tth":
            xs = tth_grid(X04SA_TTH_RANGE_DEG[0], X04SA_TTH_RANGE_DEG[1], tth_step)
        else:
            xs = q_grid(MODEL_Q_RANGE[0], MODEL_Q_RANGE[1], q_points)
        if x_unit == "tth":
            if xs[-1] >= 180:
                raise ValueError("2theta values must be below 180 deg")
            q = tth_to_q(xs, wavelength)
            tth = xs
        else:
            q = xs
            tth = q_to_tth(xs, wavelength)
        self._q_values = q
        # configuration
        self.tth._publish(tth)
        self.q._publish(q)
        (self.q if x_unit == "tth" else self.tth).kind = Kind.omitted
        self.x_unit._publish(x_unit)
        self.wavelength._publish(float(wavelength))
        self.material._publish(self._material)
        self.strain._publish(float(strain))
        self.solvent._choices = tuple(solvent_names()) + ("none",)
        for sig, value in ((self.solvent, solvent), (self.exposure, exposure), (self.count_rate, count_rate), (self.noise, noise)):
            sig.check_value(value)
            sig.put(value)
        self.intensity._publish(np.zeros(q.size))
        # clusters
        if not (np.isfinite(max_diameter_nm) and max_diameter_nm > 0):
            raise ValueError(f"max_diameter_nm={max_diameter_nm!r}; accepted: a positive diameter in nm")
        self._unit_nm = float(equal_volume_diameter_nm(structure, 1))
        max_n = int(np.floor(max_diameter_nm / self._unit_nm + 1e-9))
        if max_n < 1:
            raise ValueError(f"max_diameter_nm={max_diameter_nm} is below the smallest cluster ({self._unit_nm:.3f} nm)")
        self._n = np.arange(1, max_n + 1)
        self._strain_value = float(strain)
        self._patterns: np.ndarray | None = None
        self._progress = progress
        self._rng = np.random.default_rng(seed)
        self._acquire_lock = threading.Lock()
        self.precompute_seconds: float | None = None
        if precompute:
            self.precompute()
        self.solvent.subscribe(self._on_solvent, event_type=Signal.SUB_VALUE, run=False)

    # physics --------------------------------------------------------------------------------
    @property
    def max_diameter_nm(self) -> float:
        """Diameter (nm) of the largest cluster simulated."""
        return float(self._n[-1] * self._unit_nm)

    def precompute(self) -> None:
        """Compute the per-cluster DSE patterns and the solvent model on the detector grid (once)."""
        if self._patterns is None:
            t = time.perf_counter()
            self._patterns = _cluster_patterns(self._material, self._q_values, float(self.wavelength.get()),
                                               self._strain_value, self._n, self._progress)
            self.solvent_pattern()
            self.precompute_seconds = time.perf_counter() - t

    def nanocrystal_pattern(self, mean_nm: float, dispersion: float) -> np.ndarray:
        """Crystal + Compton pattern (electron units per dot) of a log-normal population on the grid."""
        if mean_nm is not None and np.isfinite(mean_nm) and mean_nm > (self._n[-1] + 0.5) * self._unit_nm:
            raise ValueError(f"mean diameter {mean_nm} nm is beyond the largest simulated cluster "
                             f"({self.max_diameter_nm:.2f} nm); raise max_diameter_nm")
        self.precompute()
        w = lognormal_number_weights(self._n, self._unit_nm, mean_nm, dispersion)
        nz = np.flatnonzero(w)
        return w[nz] @ self._patterns[nz]

    def solvent_pattern(self) -> np.ndarray | None:
        """The built-in solvent model (electron units per molecule) on the grid; None for 'none'."""
        return solvent_curve(self.solvent.get(), self._q_values, float(self.wavelength.get()))

    def _on_solvent(self, value=None, **kwargs) -> None:
        self.solvent_pattern()  # the first model of a solvent takes a few s: not in a trigger

    def expected_counts(self, mean_nm: float, dispersion: float, fraction: float) -> np.ndarray:
        """Noise-free counts for a population (nm, relative std) at a nanocrystal area fraction (0-1)."""
        if fraction is None or not np.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"nanocrystal fraction must be in [0, 1], got {fraction!r}")
        solvent = self.solvent_pattern()
        if solvent is None:
            y = self.nanocrystal_pattern(mean_nm, dispersion)
            y = y / y.mean()
        else:
            y = (1.0 - fraction) * solvent / solvent.mean()
            if fraction > 0:
                nc = self.nanocrystal_pattern(mean_nm, dispersion)
                y = y + fraction * nc / nc.mean()
        peak_counts = float(self.count_rate.get()) * float(self.exposure.get())
        return y * (peak_counts / y.max())

    def simulate(self, mean_nm: float, dispersion: float, fraction: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Counts for a population and fraction, with Poisson noise from rng when noise is on."""
        lam = self.expected_counts(mean_nm, dispersion, fraction)
        if not self.noise.get():
            return lam
        rng = self._rng if rng is None else rng
        return rng.poisson(lam).astype(np.float64)

    def reseed(self, seed: int | None) -> None:
        """Restart the noise generator from a seed."""
        self._rng = np.random.default_rng(seed)

    # bluesky --------------------------------------------------------------------------------
    def qdots_metadata(self) -> dict:
        """Start-document hints for sizing callbacks: data keys, units, wavelength, solvent."""
        x_unit = self.x_unit.get()
        return {
            "qdots_pattern_key": self.intensity.name,
            "qdots_x_key": (self.tth if x_unit == "tth" else self.q).name,
            "x_unit": x_unit,
            "wavelength": float(self.wavelength.get()),
            "wavelength_units": "A",
            "solvent": self.solvent.get(),
            "material": self.material.get(),
        }

    def trigger(self):
        truth = self.reactor.update()  # the state this exposure sees; the reactor's signals show it
        timestamp = time.time()

        def acquire():
            self.intensity._publish(self.simulate(truth.mean_nm, truth.dispersion, truth.fraction), timestamp)

        return acquire_in_thread(self, self._acquire_lock, acquire)


def make_simulated_beamline(*, temperature: float = 140.0, precursor: float = 30.0, clock: str = "real",
                            time_scale: float = 60.0, growth_law: GrowthLaw | None = None, x_unit: str = "tth",
                            tth_step: float = X04SA_TTH_STEP_DEG, q_points: int = MODEL_Q_POINTS, x=None,
                            wavelength: float = X04SA_WAVELENGTH_A, solvent: str = "hexane", exposure: float = 1.0,
                            count_rate: float = 1e4, noise: bool = True, seed: int | None = None,
                            strain: float = 0.0, max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM,
                            reactor_name: str = "reactor", detector_name: str = "waxs",
                            progress: bool = True) -> tuple[SynthesisReactor, WaxsDetector]:
    """A PbS reactor and a WAXS detector looking at it (X04SA-like defaults); returns (reactor, detector).

    The reactor is not injected yet: the plan :func:`qdots_bluesky.plans.insitu_synthesis` (or
    ``reactor.inject()``) starts the synthesis.
    """
    reactor = SynthesisReactor(name=reactor_name, growth_law=growth_law, temperature=temperature, precursor=precursor,
                               clock=clock, time_scale=time_scale)
    detector = WaxsDetector(name=detector_name, reactor=reactor, x_unit=x_unit, x=x, tth_step=tth_step,
                            q_points=q_points, wavelength=wavelength, solvent=solvent, exposure=exposure,
                            count_rate=count_rate, noise=noise, seed=seed, strain=strain,
                            max_diameter_nm=max_diameter_nm, progress=progress)
    return reactor, detector
