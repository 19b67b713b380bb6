"""Live DSE refinement after the network (``LiveSizer(refine=True)``), on the sizing worker's thread.

:class:`LiveRefiner` holds the options of :func:`qdots_bluesky.refine.refine_pattern` and one basis per wavelength
(:func:`qdots_bluesky.refine.refinement_basis`, built on first use or in :meth:`LiveRefiner.prepare`); it knows
nothing else of the refinement. :func:`pick_newest` says which patterns of a batch are refined: the newest sized one
of each run. A worker that keeps up takes one event per batch, so every pattern is refined; one that falls behind
takes several and refines only the newest of them, so the scan is never slowed and nothing is dropped (the others
get NaN refined values and ``refined`` = 0).

Units: wavelength in A, diameters in nm, instrument FWHMs in 1/A (capillary) or deg 2theta (flat plate).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["LiveRefiner", "make_refiner", "pick_newest"]


@dataclass
class LiveRefiner:
    """Options of the live refinement. ``material``: built-in name or CIF path (default PbS, the shipped model's);
    ``geometry``: 'capillary' or 'flat-plate'; ``solvent``: 'auto', a built-in solvent or 'none'; ``q_range`` (1/A)
    and ``max_diameter_nm`` (largest cluster of the basis); ``instrument_fwhm``: held (Gaussian, Lorentzian) FWHMs
    or None (refined); ``profile``: size e.s.d.s from the profile over the dispersion (slower, honest about the
    mean-dispersion correlation)."""

    material: str = "PbS"
    geometry: str = "capillary"
    solvent: str = "auto"
    q_range: tuple[float, float] | None = None
    max_diameter_nm: float = 21.0
    instrument_fwhm: tuple[float, float] | None = None
    profile: bool = True
    _bases: dict[float, Any] = field(default_factory=dict, repr=False)

    def basis(self, wavelength_a: float) -> Any:
        """The refinement basis at ``wavelength_a`` (A), built once."""
        from ..refine import refinement_basis

        key = round(float(wavelength_a), 7)
        if key not in self._bases:
            self._bases[key] = refinement_basis(self.material, float(wavelength_a), max_diameter_nm=self.max_diameter_nm)
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
               estimate: Any) -> dict[str, Any] | None:
        """The refinement's ``to_dict()`` of one pattern (x in 2theta deg or Q 1/A), seeded by the network's
        ``estimate``; None where it cannot run (no wavelength, bad pattern: logged)."""
        from ..refine import refine_pattern

        if wavelength_a is None:
            return None
        try:
            result = refine_pattern(x, y, wavelength_a=float(wavelength_a), x_unit=x_unit or "tth",
                                    material=self.material, geometry=self.geometry, solvent=self.solvent,
                                    q_range=self.q_range, network=estimate, basis=self.basis(wavelength_a),
                                    instrument_fwhm=self.instrument_fwhm, profile=self.profile, keep_curves=False)
        except ValueError as exc:
            logger.warning("refinement skipped: %s", exc)
            return None
        return result.to_dict()


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
                             "q_range, max_diameter_nm, instrument_fwhm, profile") from None
    raise ValueError(f"refine={refine!r}; accepted: True, False, a mapping of options or a LiveRefiner")


def pick_newest(runs: Sequence[Any], sized: Sequence[bool]) -> set[int]:
    """Indices (into a batch in queue order) to refine: the last sized one of each run (``runs``: the run of each)."""
    newest: dict[int, int] = {}
    for i, (run, ok) in enumerate(zip(runs, sized)):
        if ok:
            newest[id(run)] = i
    return set(newest.values())
