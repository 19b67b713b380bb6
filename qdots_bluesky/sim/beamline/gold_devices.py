"""Simulated ophyd devices of an in-situ gold nanoparticle synthesis: a reactor and a SAXS + WAXS detector.

Like the PbS devices of :mod:`.devices` (soft signals of :mod:`.signals`, no EPICS), they run under a RunEngine like
hardware and put the truth (mean size, dispersion, structure fractions) into the same events as the patterns.

Reactor (:class:`GoldSynthesisReactor`)
---------------------------------------
A :class:`~.devices.SynthesisReactor` (same clock modes, ``injection``, ``advance``, virtual time through
:func:`~.virtual_time.use_virtual_time`) running the :class:`~.gold_growth.GoldGrowthLaw`: writing 1 to
``injection`` adds the reducing agent; particles appear after the induction time.

Detector (:class:`SaxsWaxsDetector`)
------------------------------------
On a log-spaced Q grid (default 0.02-15 1/A, 1000 points) the detector holds, once, the per-cluster patterns (crystal
+ Compton, electron units per cluster; :func:`~qdots_bluesky.sim.physics.metal_basis.build_metal_basis`, disk-cached
pair histograms) of Au icosahedra, decahedra (a reduced sampling: ``decahedron_q_over_p``,
``decahedron_max_reentrance``) and one fcc family (``fcc_family``, truncated octahedra by default), with equal-volume
diameters in [``d_min_nm``, ``d_max_nm``]. Each trigger takes the reactor's state (mean D, dispersion s, structure
number fractions x_f, conversion X, precursor c) and computes the expected counts

    P(Q)   = sum_f x_f sum_n w_fn(D, s) I_fn(Q) / (sum_f x_f sum_n w_fn N_fn)      (per gold atom; log-normal w)
    lam(Q) = rate t [ s_solv S(Q) / <S>_WAXS + b + g (X c / c_ref) P(Q) / Z^2 ]
    counts = Poisson(lam)                                                         (seeded; ``noise=False``: lam)

with S the built-in solvent model (:func:`~qdots_bluesky.sim.physics.solvents.solvent_pattern`, per molecule)
scaled to mean 1 over Q >= 1 1/A, s_solv ``solvent_level``, b ``background_level`` (flat: cell, fluorescence),
g ``gold_level`` (the gold's per-atom scattering in units of Z^2 = 79^2 at full conversion of the reference
precursor), rate ``count_rate`` (counts/s on a unit level) and t ``exposure`` (s). Between its Bragg peaks the gold adds
~g X f(Q)^2 / Z^2 to the blank; at small angles ~g X <N^2> / <N> (thousands of times more for 8 nm particles). Per
unit volume 10 mmol/L of Au atoms (Z^2 = 6241) against toluene (9.4 mol/L, ~260 electron units per molecule at wide
angles) is g ~ 0.03; the default 0.3 is a strong sample, so that the WAXS peaks show early in a demo.
Before the burst (X = 0) the detector counts the blank only (``blank``, configuration: its expected counts).

Units: Q in 1/A, wavelength in A, diameters in nm, time in s, temperature in deg C, precursor and gold
concentrations in mmol/L, intensity in counts.
"""
from __future__ import annotations

import threading
import time

import numpy as np
from ase.data import atomic_numbers
from ophyd import Component as Cpt
from ophyd import Device, Kind, Signal

from ...lru import LRUCache, array_key
from ..physics.metal_basis import build_metal_basis, saxs_waxs_q
from ..physics.metal_clusters import DIAMETER_RANGE_NM
from ..physics.solvents import solvent_names
from .devices import SynthesisReactor, solvent_curve
from .gold_growth import STRUCTURES, GoldGrowthLaw, GoldObservation, GoldState
from .signals import BoolSignal, ChoiceSignal, ReadOnlySignal, SetpointSignal, acquire_in_thread

__all__ = ["FCC_FAMILIES", "GoldSynthesisReactor", "SaxsWaxsDetector", "gold_synthesis_devices"]

#: Accepted reactor set points: temperature (deg C; toluene boils at 111 C), HAuCl4 (mmol/L).
GOLD_TEMPERATURE_LIMITS_C = (20.0, 110.0)
GOLD_PRECURSOR_LIMITS_MM = (0.1, 100.0)
#: Families that may stand for the fcc particles.
FCC_FAMILIES = ("truncated_octahedron", "cuboctahedron", "octahedron", "sphere")
#: Q (1/A) from which the grid counts as WAXS (the solvent's reference level).
WAXS_FROM_Q = 1.0
#: Structure fractions below this are left out of a pattern.
NEGLIGIBLE_FRACTION = 1e-6
#: Z^2 of gold: the scale of its per-atom scattering.
GOLD_Z2 = float(atomic_numbers["Au"]) ** 2


# --------------------------------------------------------------------------------------------
# Reactor
# --------------------------------------------------------------------------------------------
class GoldSynthesisReactor(SynthesisReactor):
    """Simulated LaMer synthesis of gold nanoparticles (:class:`~.gold_growth.GoldGrowthLaw`).

    Settable: ``temperature`` (deg C, 20-110), ``precursor`` (HAuCl4, mmol/L, 0.1-100; used at the next injection),
    ``injection`` (write 1 to add the reducing agent: the induction starts, simulated time restarts at 0).
    Readable (the truth): ``true_size`` (mean equal-volume diameter, nm), ``true_dispersion`` (relative std),
    ``true_icosahedron`` / ``true_decahedron`` / ``true_fcc`` (number fractions), ``nucleated`` (particles exist),
    ``conversion`` (fraction of the gold in particles), ``concentration`` (gold in particles, mmol/L), ``elapsed``
    (simulated s since injection). Before the burst: the nuclei's size and structure, conversion 0.
    Clock and ``time_scale`` as :class:`~.devices.SynthesisReactor`.
    """

    temperature = Cpt(SetpointSignal, value=80.0, units="degC", limits=GOLD_TEMPERATURE_LIMITS_C, kind=Kind.normal)
    precursor = Cpt(SetpointSignal, value=10.0, units="mmol/L", limits=GOLD_PRECURSOR_LIMITS_MM, kind=Kind.config)
    concentration = Cpt(ReadOnlySignal, value=0.0, units="mmol/L", kind=Kind.normal)
    nucleated = Cpt(ReadOnlySignal, value=False, kind=Kind.normal)
    true_icosahedron = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.hinted)
    true_decahedron = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.hinted)
    true_fcc = Cpt(ReadOnlySignal, value=0.0, units="", kind=Kind.hinted)

    def __init__(self, prefix: str = "", *, name: str, growth_law: GoldGrowthLaw | None = None,
                 temperature: float = 80.0, precursor: float = 10.0, clock: str = "real", time_scale: float = 60.0,
                 **kwargs):
        law = growth_law if growth_law is not None else GoldGrowthLaw()
        if not isinstance(law, GoldGrowthLaw):
            raise ValueError(f"growth_law is a {type(law).__name__}; accepted: a GoldGrowthLaw")
        super().__init__(prefix, name=name, growth_law=law, temperature=temperature, precursor=precursor, clock=clock,
                         time_scale=time_scale, **kwargs)

    def state(self) -> GoldObservation:
        """The true state at the current simulated time (does not publish it)."""
        with self._lock:
            if not self.injected:
                return self.growth_law.observe(GoldState(0.0, 0.0, False, 0.0, 1.0, float(self.precursor.get())))
            return super().state()

    def gold_in_particles_mm(self, obs: GoldObservation) -> float:
        """Gold in particles (mmol/L) of a state: conversion x the precursor of the current synthesis."""
        ck = self._checkpoint
        precursor = ck.precursor_mm if (self.injected and ck is not None) else float(self.precursor.get())
        return obs.conversion * precursor

    def update(self) -> GoldObservation:
        """Publish the current true state to the readable signals and return it."""
        with self._lock:
            obs = self.state()
            ts = time.time()
            values = ((self.true_size, obs.mean_nm), (self.true_dispersion, obs.dispersion),
                      (self.conversion, obs.conversion), (self.concentration, self.gold_in_particles_mm(obs)),
                      (self.elapsed, obs.elapsed_s), (self.nucleated, bool(obs.nucleated)),
                      (self.true_icosahedron, obs.fractions[0]), (self.true_decahedron, obs.fractions[1]),
                      (self.true_fcc, obs.fractions[2]))
            for signal, value in values:
                signal._publish(value, ts)
            return obs

    def truth_keys(self) -> list[str]:
        """Data keys of the truth a sizing callback can compare with: size, dispersion, structure fractions, whether
        particles have nucleated, concentration, time."""
        return [s.name for s in (self.true_size, self.true_dispersion, self.true_icosahedron, self.true_decahedron,
                                 self.true_fcc, self.nucleated, self.concentration, self.elapsed)]


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------
#: Per-cluster patterns of the last few detector set-ups: (patterns (clusters x Q), atoms, diameters nm) per family.
_BASES: LRUCache[tuple] = LRUCache(4)


def _family_bases(q: np.ndarray, wavelength_a: float, d_min_nm: float, d_max_nm: float, families: tuple[str, ...],
                  decahedron_options: dict, progress: bool) -> tuple:
    """(patterns, n_atoms, diameter_nm) of every family on Q, memoised so that detectors with the same settings share
    the work (the pair histograms are cached on disk as well)."""
    key = (round(wavelength_a, 8), round(d_min_nm, 6), round(d_max_nm, 6), families,
           tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in decahedron_options.items())),
           array_key(q, decimals=10))

    def compute() -> tuple:
        out = []
        for family in families:
            options = decahedron_options if family == "decahedron" else {}
            b = build_metal_basis("Au", family, q, d_min_nm, d_max_nm, wavelength_a=wavelength_a, progress=progress,
                                  **options)
            patterns = b.crystal + b.compton
            patterns.setflags(write=False)
            out.append((b, patterns))
        return tuple(out)

    return _BASES.get_or_compute(key, compute)


class SaxsWaxsDetector(Device):
    """Simulated SAXS + WAXS detector (both ranges merged onto one Q grid) looking at a :class:`GoldSynthesisReactor`.

    ``trigger()`` takes the reactor's current true state (refreshing the reactor's signals) and returns a status that
    completes once the pattern is computed (in a worker thread); ``read()`` then gives ``<name>_intensity`` (counts,
    1D float64 on the Q grid) and ``<name>_subtracted``: the counts less the blank's expected counts, as a SAXS
    reduction subtracts a measured solvent blank (what SAXS + WAXS models read; the start metadata names it as the
    pattern). See the module docstring for the physics.

    Configuration: ``<name>_q`` (1/A), ``<name>_x_unit`` ("q"), ``<name>_wavelength`` (A), ``<name>_material``
    ("Au"), ``<name>_fcc_family``, ``<name>_blank`` (expected counts without particles) and the settable
    ``<name>_solvent`` (hexane, toluene or none), ``<name>_solvent_level``, ``<name>_background_level``,
    ``<name>_gold_level``, ``<name>_exposure`` (s), ``<name>_count_rate`` (counts/s on a unit level),
    ``<name>_noise`` (False: expected counts).

    Grid: ``q`` (an explicit increasing array, 1/A) else ``q_points`` log-spaced over ``q_range_a``. Clusters: equal-
    volume diameters in [``d_min_nm``, ``d_max_nm``]; the mean diameter must stay in that range. The per-cluster
    patterns are computed at construction (``precompute=True``, ``construction_seconds`` says how long) or at the
    first trigger.
    """

    intensity = Cpt(ReadOnlySignal, value=np.zeros(2), units="counts", kind=Kind.normal)
    subtracted = Cpt(ReadOnlySignal, value=np.zeros(2), units="counts", kind=Kind.normal)
    q = Cpt(ReadOnlySignal, value=np.zeros(2), units="1/A", kind=Kind.config)
    x_unit = Cpt(ReadOnlySignal, value="q", kind=Kind.config)
    wavelength = Cpt(ReadOnlySignal, value=0.56, units="A", kind=Kind.config)
    material = Cpt(ReadOnlySignal, value="Au", kind=Kind.config)
    fcc_family = Cpt(ReadOnlySignal, value="truncated_octahedron", kind=Kind.config)
    blank = Cpt(ReadOnlySignal, value=np.zeros(2), units="counts", kind=Kind.config)
    solvent = Cpt(ChoiceSignal, value="toluene", choices=(), kind=Kind.config)
    solvent_level = Cpt(SetpointSignal, value=1.0, units="", limits=(0.0, 1e6), kind=Kind.config)
    background_level = Cpt(SetpointSignal, value=0.1, units="", limits=(0.0, 1e6), kind=Kind.config)
    gold_level = Cpt(SetpointSignal, value=0.3, units="", limits=(0.0, 1e6), kind=Kind.config)
    exposure = Cpt(SetpointSignal, value=1.0, units="s", limits=(1e-6, 1e6), kind=Kind.config)
    count_rate = Cpt(SetpointSignal, value=1e4, units="counts/s", limits=(1e-3, 1e12), kind=Kind.config)
    noise = Cpt(BoolSignal, value=True, kind=Kind.config)

    def __init__(self, prefix: str = "", *, name: str, reactor: GoldSynthesisReactor, q=None,
                 q_range_a: tuple[float, float] = (0.02, 15.0), q_points: int = 1000, wavelength: float = 0.56,
                 d_min_nm: float = 0.8, d_max_nm: float = 10.0, fcc_family: str = "truncated_octahedron",
                 decahedron_q_over_p: tuple[float, ...] = (0.5, 1.0), decahedron_max_reentrance: int = 1,
                 solvent: str = "toluene", solvent_level: float = 1.0, background_level: float = 0.1,
                 gold_level: float = 0.3, exposure: float = 1.0, count_rate: float = 1e4, noise: bool = True,
                 seed: int | None = None, precompute: bool = True, progress: bool = False, **kwargs):
        t0 = time.perf_counter()
        super().__init__(prefix, name=name, **kwargs)
        if not isinstance(reactor, GoldSynthesisReactor):
            raise ValueError(f"reactor is a {type(reactor).__name__}; accepted: a GoldSynthesisReactor")
        if not (np.isfinite(wavelength) and 0.05 <= wavelength <= 5.0):
            raise ValueError(f"wavelength={wavelength!r} A; accepted: 0.05 to 5 A")
        if fcc_family not in FCC_FAMILIES:
            raise ValueError(f"fcc_family={fcc_family!r}; accepted: {', '.join(FCC_FAMILIES)}")
        lo, hi = DIAMETER_RANGE_NM
        if not (np.isfinite(d_min_nm) and np.isfinite(d_max_nm) and lo <= d_min_nm < d_max_nm <= hi):
            raise ValueError(f"diameters {d_min_nm!r} to {d_max_nm!r} nm; accepted: {lo} <= d_min_nm < d_max_nm <= {hi}")
        if q is not None:
            qs = np.asarray(q, dtype=float)
            if qs.ndim != 1 or qs.size < 2 or not np.all(np.isfinite(qs)) or qs[0] <= 0 or np.any(np.diff(qs) <= 0):
                raise ValueError("q must be a 1D, strictly increasing array of positive Q values (1/A)")
        else:
            if isinstance(q_points, bool) or not isinstance(q_points, (int, np.integer)) or q_points < 2:
                raise ValueError(f"q_points={q_points!r}; accepted: an integer >= 2")
            qs = saxs_waxs_q(float(q_range_a[0]), float(q_range_a[1]), int(q_points), "log")
        self.reactor = reactor
        self._q_values = qs
        self._d_range = (float(d_min_nm), float(d_max_nm))
        self._families = ("icosahedron", "decahedron", fcc_family)
        self._decahedron_options = {"q_over_p": tuple(decahedron_q_over_p),
                                    "max_reentrance": int(decahedron_max_reentrance)}
        self.q._publish(qs)
        self.wavelength._publish(float(wavelength))
        self.fcc_family._publish(fcc_family)
        self.solvent._choices = tuple(solvent_names()) + ("none",)
        for sig, value in ((self.solvent, solvent), (self.solvent_level, solvent_level),
                           (self.background_level, background_level), (self.gold_level, gold_level),
                           (self.exposure, exposure), (self.count_rate, count_rate), (self.noise, noise)):
            sig.check_value(value)
            sig.put(value)
        self.intensity._publish(np.zeros(qs.size))
        self.subtracted._publish(np.zeros(qs.size))
        self._bases: tuple | None = None
        self._progress = progress
        self._rng = np.random.default_rng(seed)
        self._acquire_lock = threading.Lock()
        self.construction_seconds: float | None = None
        if precompute:
            self.precompute()
        self._publish_blank()
        for sig in (self.solvent, self.solvent_level, self.background_level, self.exposure, self.count_rate):
            sig.subscribe(self._publish_blank, event_type=Signal.SUB_VALUE, run=False)
        if precompute:
            self.construction_seconds = time.perf_counter() - t0

    # physics --------------------------------------------------------------------------------
    @property
    def families(self) -> tuple[str, str, str]:
        """The cluster family standing for each of :data:`~.gold_growth.STRUCTURES`."""
        return self._families

    @property
    def diameter_range_nm(self) -> tuple[float, float]:
        return self._d_range

    def precompute(self) -> None:
        """Compute the per-cluster patterns of every family and the solvent model on the grid (once)."""
        if self._bases is None:
            self._bases = _family_bases(self._q_values, float(self.wavelength.get()), *self._d_range, self._families,
                                        self._decahedron_options, self._progress)
        self.solvent_pattern()

    def bases(self) -> tuple:
        """((MetalBasis, crystal + Compton patterns), ...) per structure, in the order of :data:`STRUCTURES`."""
        self.precompute()
        return self._bases

    def population_pattern(self, mean_nm: float, dispersion: float, fractions) -> tuple[np.ndarray, float]:
        """Pattern (electron units per particle, on the grid) of a mixture of the structures with number ``fractions``
        (in the order of :data:`STRUCTURES`), each log-normal of mean diameter ``mean_nm`` (nm) and relative std
        ``dispersion``; and the mean number of atoms per particle."""
        lo, hi = self._d_range
        if not (np.isfinite(mean_nm) and lo <= mean_nm <= hi):
            raise ValueError(f"mean diameter {mean_nm!r} nm is outside the detector's clusters; accepted: {lo} to {hi} nm "
                             "(set d_min_nm / d_max_nm)")
        x = np.asarray(fractions, dtype=float)
        if x.shape != (len(STRUCTURES),) or np.any(x < 0) or not np.isclose(x.sum(), 1.0):
            raise ValueError(f"fractions {fractions!r}; accepted: {len(STRUCTURES)} non-negative number fractions "
                             f"({', '.join(STRUCTURES)}) summing to 1")
        pattern = np.zeros(self._q_values.size)
        atoms = 0.0
        for xf, (basis, patterns) in zip(x, self.bases()):
            if xf < NEGLIGIBLE_FRACTION:
                continue
            w = basis.weights(np.array([mean_nm]), np.array([dispersion]))[0]
            nz = np.flatnonzero(w)
            pattern += xf * (w[nz] @ patterns[nz])
            atoms += xf * float(w[nz] @ basis.n_atoms[nz])
        return pattern, atoms

    def solvent_pattern(self) -> np.ndarray | None:
        """The solvent model scaled to mean 1 over Q >= 1 1/A (the whole grid if it ends below); None for 'none'."""
        return solvent_curve(self.solvent.get(), self._q_values, float(self.wavelength.get()), WAXS_FROM_Q)

    def blank_level(self) -> np.ndarray:
        """Blank per unit of count rate x exposure: solvent_level x the solvent model + background_level."""
        solvent = self.solvent_pattern()
        level = np.full(self._q_values.size, float(self.background_level.get()))
        return level if solvent is None else level + float(self.solvent_level.get()) * solvent

    def expected_counts(self, mean_nm: float, dispersion: float, fractions, gold: float) -> np.ndarray:
        """Noise-free counts of a population (see :meth:`population_pattern`) with ``gold`` (0 or more) the gold in
        particles relative to full conversion of the reference precursor (X c / c_ref)."""
        if not (np.isfinite(gold) and gold >= 0):
            raise ValueError(f"gold in particles {gold!r}; accepted: a non-negative multiple of the reference")
        y = self.blank_level()
        if gold > 0:
            pattern, atoms = self.population_pattern(mean_nm, dispersion, fractions)
            y = y + float(self.gold_level.get()) * gold * pattern / (atoms * GOLD_Z2)
        return y * (float(self.count_rate.get()) * float(self.exposure.get()))

    def observation_counts(self, obs: GoldObservation) -> np.ndarray:
        """Noise-free counts of a reactor state (no particles before the burst)."""
        gold = self.reactor.gold_in_particles_mm(obs) / self.reactor.growth_law.reference_precursor_mm
        return self.expected_counts(obs.mean_nm, obs.dispersion, obs.fractions, gold if obs.nucleated else 0.0)

    def simulate(self, obs: GoldObservation, rng: np.random.Generator | None = None) -> np.ndarray:
        """Counts of a reactor state, with Poisson noise from rng (default the detector's) when noise is on."""
        lam = self.observation_counts(obs)
        if not self.noise.get():
            return lam
        return (self._rng if rng is None else rng).poisson(lam).astype(np.float64)

    def reseed(self, seed: int | None) -> None:
        """Restart the noise generator from a seed."""
        self._rng = np.random.default_rng(seed)

    def _publish_blank(self, *args, **kwargs) -> None:
        rate = float(self.count_rate.get()) * float(self.exposure.get())
        self.blank._publish(self.blank_level() * rate)

    # bluesky --------------------------------------------------------------------------------
    def qdots_metadata(self) -> dict:
        """Start-document hints for sizing callbacks (read by :func:`qdots_bluesky.plans.detector_metadata`): data
        keys, x unit, wavelength, solvent, material, the structures and the reactor's truth keys."""
        return {
            "qdots_pattern_key": self.subtracted.name,
            "qdots_x_key": self.q.name,
            "x_unit": "q",
            "wavelength": float(self.wavelength.get()),
            "wavelength_units": "A",
            "solvent": self.solvent.get(),
            "material": self.material.get(),
            "qdots_blank_key": self.blank.name,
            "qdots_structures": dict(zip(STRUCTURES, self._families)),
            "qdots_truth_keys": self.reactor.truth_keys(),
            "sample": {"material": "Au", "form": "colloidal nanoparticles", "synthesis": "LaMer reduction of HAuCl4",
                       "solvent": self.solvent.get()},
            "experiment": "in-situ SAXS + WAXS of a gold nanoparticle synthesis",
        }

    def trigger(self):
        truth = self.reactor.update()  # the state this exposure sees; the reactor's signals show it
        timestamp = time.time()

        def acquire():
            counts = self.simulate(truth)
            self.intensity._publish(counts, timestamp)
            self.subtracted._publish(counts - self.blank.get(), timestamp)

        return acquire_in_thread(self, self._acquire_lock, acquire)


def gold_synthesis_devices(*, temperature: float = 80.0, precursor: float = 10.0, clock: str = "real",
                           time_scale: float = 60.0, growth_law: GoldGrowthLaw | None = None,
                           reactor_name: str = "reactor", detector_name: str = "saxswaxs",
                           **detector_options) -> tuple[GoldSynthesisReactor, SaxsWaxsDetector]:
    """A gold reactor (not injected yet) and a SAXS + WAXS detector looking at it; returns (reactor, detector).

    ``detector_options`` go to :class:`SaxsWaxsDetector` (q, q_points, d_min_nm, d_max_nm, fcc_family, seed, ...).
    :func:`qdots_bluesky.plans.insitu_synthesis` drives them as it drives the PbS devices (it injects, then triggers
    and reads both); its start document takes the gold sample, truth keys and structures from
    :meth:`SaxsWaxsDetector.qdots_metadata`.
    """
    reactor = GoldSynthesisReactor(name=reactor_name, growth_law=growth_law, temperature=temperature,
                                   precursor=precursor, clock=clock, time_scale=time_scale)
    detector = SaxsWaxsDetector(name=detector_name, reactor=reactor, **detector_options)
    return reactor, detector
