"""Live DSE refinement after the network (``LiveSizer(refine=True)``), on the sizing worker's thread.

:class:`LiveRefiner` holds the options of :func:`qdots_bluesky.refine.refine_pattern` and one basis per wavelength
(:func:`qdots_bluesky.refine.refinement_basis`, built on first use or in :meth:`LiveRefiner.prepare`); it knows
nothing else of the refinement. :func:`pick_newest` says which patterns of a batch are refined: the newest sized one
of each run. A worker that keeps up takes one event per batch, so every pattern is refined; one that falls behind
takes several and refines only the newest of them, so the scan is never slowed and nothing is dropped (the others
get NaN refined values and ``refined`` = 0).

Figures on request, never per event by default: :meth:`LiveRefiner.plot_last` (``LiveSizer.plot_refinement``) draws
the Rietveld-style figure of the newest refined pattern when asked; ``figure_dir`` with ``figure_every`` N writes one
for the first and then every N-th refined pattern, on the worker thread before that batch's estimates are sent
(0.3-0.5 s each; Matplotlib's object API, one Figure per call and no pyplot state, which keeps it apart from a
user's figures).

Units: wavelength in A, diameters in nm, instrument FWHMs in 1/A (capillary) or deg 2theta (flat plate).
"""
from __future__ import annotations

import logging
import numbers
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["LiveRefiner", "make_refiner", "pick_newest"]


@dataclass
class LiveRefiner:
    """Options of the live refinement. ``material``: built-in name or CIF path (default PbS, the shipped model's);
    ``geometry``: 'capillary' or 'flat-plate'; ``solvent``: 'auto', a built-in solvent or 'none'; ``q_range`` (1/A)
    and ``max_diameter_nm`` (largest cluster of the basis); ``instrument_fwhm``: held (Gaussian, Lorentzian) FWHMs
    or None (refined); ``dispersion``: held at this value (known from elsewhere) or None (refined); ``habit``: the
    dots' habit (:data:`~qdots_bluesky.sim.physics.habits.HABITS`; one habit live: ``qdots fit --habit auto``
    compares them offline); ``profile``: size e.s.d.s from the profile over the dispersion (slower, honest about
    the mean-dispersion correlation); ``figure_dir`` and ``figure_every``: a figure of the first and then of every
    ``figure_every``-th refined pattern in ``figure_dir`` (0, the default: none; see :meth:`plot_last`)."""

    material: str = "PbS"
    geometry: str = "capillary"
    solvent: str = "auto"
    q_range: tuple[float, float] | None = None
    max_diameter_nm: float = 21.0
    instrument_fwhm: tuple[float, float] | None = None
    dispersion: float | None = None
    habit: str = "sphere"
    profile: bool = True
    figure_dir: str | Path | None = None
    figure_every: int = 0
    _bases: dict[float, Any] = field(default_factory=dict, repr=False)
    _last: tuple[Any, str] | None = field(default=None, repr=False)
    _refined: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        from ..refine.fit import DISPERSION_BOUNDS

        if self.dispersion is not None and not (isinstance(self.dispersion, numbers.Real) and
                                                DISPERSION_BOUNDS[0] <= self.dispersion <= DISPERSION_BOUNDS[1]):
            raise ValueError(f"dispersion={self.dispersion!r}; accepted: {DISPERSION_BOUNDS[0]} to "
                             f"{DISPERSION_BOUNDS[1]} (held) or None (refined)")
        from ..refine import material_habit

        if self.habit is not None and str(self.habit).strip().lower() == "auto":
            raise ValueError("habit='auto' refines every habit of each pattern (six refinements); accepted live: one "
                             "habit (sphere, octahedron, truncated-octahedron, cuboctahedron, cube, "
                             "rhombic-dodecahedron); compare them offline with qdots fit --habit auto")
        self.habit = material_habit(self.material, "sphere" if self.habit is None else self.habit, allow_auto=False)
        if (isinstance(self.figure_every, bool) or not isinstance(self.figure_every, numbers.Integral)
                or self.figure_every < 0):
            raise ValueError(f"figure_every={self.figure_every!r}; accepted: 0 (no figures) or a positive integer N "
                             "(the first and every N-th refined pattern)")
        self.figure_every = int(self.figure_every)
        if self.figure_every and self.figure_dir is None:
            raise ValueError("figure_every needs figure_dir; accepted: a directory for the figures")
        if self.figure_dir is not None:
            directory = Path(self.figure_dir)
            if directory.exists() and not directory.is_dir():
                raise ValueError(f"figure_dir {str(directory)!r} is a file; accepted: a directory (made if missing)")

    def basis(self, wavelength_a: float) -> Any:
        """The refinement basis at ``wavelength_a`` (A), built once."""
        from ..refine import refinement_basis

        key = round(float(wavelength_a), 7)
        if key not in self._bases:
            self._bases[key] = refinement_basis(self.material, float(wavelength_a), max_diameter_nm=self.max_diameter_nm,
                                                habit=self.habit)
        return self._bases[key]

    def prepare(self, wavelength_a: float | None) -> None:
        """Build the basis before the first event (worker thread); failures are logged, not raised."""
        if wavelength_a is None:
            return
        try:
            self.basis(wavelength_a)
        except Exception:  # pragma: no cover - refinement is optional; sizing goes on
            logger.exception("building the refinement basis at %s A failed", wavelength_a)

    def refine(self, x: np.ndarray, y: np.ndarray, x_unit: str, wavelength_a: float | None,
               estimate: Any, label: str = "") -> dict[str, Any] | None:
        """The refinement's ``to_dict()`` of one pattern (x in 2theta deg or Q 1/A), seeded by the network's
        ``estimate``; None where it cannot run (no wavelength, bad pattern: logged). ``label`` names the pattern
        (e.g. its event) in figure names and titles."""
        from ..refine import refine_pattern

        if wavelength_a is None:
            return None
        try:
            result = refine_pattern(x, y, wavelength_a=float(wavelength_a), x_unit=x_unit or "tth",
                                    material=self.material, geometry=self.geometry, solvent=self.solvent,
                                    q_range=self.q_range, network=estimate, basis=self.basis(wavelength_a),
                                    instrument_fwhm=self.instrument_fwhm, dispersion=self.dispersion,
                                    profile=self.profile, keep_curves=True)
        except ValueError as exc:
            logger.warning("refinement skipped: %s", exc)
            return None
        values = result.to_dict()  # before any figure: a failing figure never costs the refinement
        with self._lock:
            self._last = (result, label)
            self._refined += 1
            count = self._refined
        if self.figure_every and (count - 1) % self.figure_every == 0:
            name = f"refinement_{label}.png" if label else f"refinement_{count:06d}.png"
            try:
                self._plot(result, label, Path(self.figure_dir) / name)
            except Exception as exc:  # a figure is optional: the estimate and the refinement go on
                logger.warning("refinement figure not written: %s", exc)
        return values

    def plot_last(self, path: str | Path) -> Path:
        """Write the figure of the newest refined pattern to ``path``; ValueError if none was refined yet."""
        with self._lock:
            last = self._last
        if last is None:
            raise ValueError("no pattern has been refined yet; accepted: call after the first refined event")
        return self._plot(last[0], last[1], Path(path))

    @staticmethod
    def _plot(result: Any, label: str, path: Path) -> Path:
        from ..refine import plot_refinement

        path.parent.mkdir(parents=True, exist_ok=True)
        return plot_refinement(result, path, x="tth" if result.curves.tth is not None else "q", label=label)


def make_refiner(refine: Any) -> LiveRefiner | None:
    """``LiveSizer(refine=...)``: False/None (no refinement), True (defaults), a mapping of
    :class:`LiveRefiner` options, or a LiveRefiner."""
    if refine is None or refine is False:
        return None
    if refine is True:
        return LiveRefiner()
    if isinstance(refine, LiveRefiner):
        return refine
    if isinstance(refine, Mapping):
        try:
            return LiveRefiner(**dict(refine))
        except TypeError as exc:
            raise ValueError(f"refine options {dict(refine)!r}: {exc}; accepted: material, geometry, solvent, "
                             "q_range, max_diameter_nm, instrument_fwhm, dispersion, habit, profile, figure_dir, "
                             "figure_every") from None
    raise ValueError(f"refine={refine!r}; accepted: True, False, a mapping of options or a LiveRefiner")


def pick_newest(runs: Sequence[Any], sized: Sequence[bool]) -> set[int]:
    """Indices (into a batch in queue order) to refine: the last sized one of each run (``runs``: the run of each)."""
    newest: dict[int, int] = {}
    for i, (run, ok) in enumerate(zip(runs, sized)):
        if ok:
            newest[id(run)] = i
    return set(newest.values())
