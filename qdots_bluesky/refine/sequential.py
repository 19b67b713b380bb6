"""Sequential refinement: many patterns (a time series of a synthesis), each started from the previous result.

The basis is built once (then read from the cache); each pattern starts from the last pattern that was sized (the first from
``start``, else the coarse grid). Network estimates per pattern, where given, are compared with the results.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .fit import refine_pattern
from .model import Geometry
from .result import RefinementResult

__all__ = ["refine_sequence"]


def refine_sequence(x: Sequence[float] | np.ndarray, patterns: Iterable[Sequence[float]],
                    sigmas: Iterable[Sequence[float] | None] | None = None, *, wavelength_a: float,
                    material: str = "PbS", geometry: Geometry | str = "capillary", start: Any = None,
                    networks: Iterable[Any] | None = None, max_diameter_nm: float = 21.0, habit: str | None = None,
                    progress: Callable[[int, RefinementResult], None] | None = None,
                    **options: Any) -> list[RefinementResult]:
    """Refine patterns measured on one x axis (2theta deg or Q 1/A, ``x_unit`` in ``options``) in order.

    ``patterns``: intensities (one array per pattern, each as long as ``x``); ``sigmas``: matching sigma
    arrays or None (counting statistics); ``start``: values for the first pattern (else the coarse grid);
    ``networks``: one network estimate per pattern (or None) to compare with;
    ``progress(i, result)`` is called after each pattern; ``habit``: the dots' habit (default the basis's, else the
    near-spherical series) or 'auto' (every habit for every pattern); further ``options`` go to
    :func:`~qdots_bluesky.refine.fit.refine_pattern` (blanks, solvent, exclude_tth, q_range, profile, ...).
    """
    options.update(habit=habit, max_diameter_nm=max_diameter_nm)  # refine_pattern takes the basis or the cached one
    sigmas = iter(sigmas) if sigmas is not None else None
    networks = iter(networks) if networks is not None else None
    results: list[RefinementResult] = []
    previous = start
    for i, y in enumerate(patterns):
        sigma = next(sigmas) if sigmas is not None else None
        network = next(networks) if networks is not None else None
        result = refine_pattern(x, y, sigma, wavelength_a=wavelength_a, material=material, geometry=geometry,
                                start=previous, network=network, **options)
        results.append(result)
        if result.status == "sized":
            previous = {"size_nm": result.size_nm, "dispersion": result.dispersion, "strain": result.strain,
                        "b_offset": result.b_offset, "displacement_mm": result.displacement_mm,
                        "instrument_gauss_fwhm": result.instrument_gauss_fwhm,
                        "instrument_lorentz_fwhm": result.instrument_lorentz_fwhm}
        if progress is not None:
            progress(i, result)
    return results
