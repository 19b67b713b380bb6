"""DSE refinement of measured patterns over a per-cluster basis: size, dispersion, strain with e.s.d.s.

Pure numerics (numpy, scipy): no Bluesky, no torch. Entry points: :func:`refine_pattern` (one pattern),
:func:`refine_sequence` (many, each started from the previous result), :func:`plot_refinement` (a figure), :func:`plot_series` (a series' sizes vs file or time),
:func:`refinement_basis` (cached cluster bases per material, wavelength and habit), :func:`material_habit` (a
habit's name checked for a material).

Refining after the network (live or ``qdots predict --refine``)::

    basis = refinement_basis(material, wavelength_a)            # once per material and wavelength (cached on disk)
    estimate = predictor.predict_pattern(x, y, x_unit="tth", wavelength=wavelength_a)
    result = refine_pattern(x, y, sigma, wavelength_a=wavelength_a, x_unit="tth", material=material,
                            geometry="capillary", solvent="auto", network=estimate, basis=basis,
                            keep_curves=False)               # profile=False: covariance e.s.d.s, ~2x faster
    result.to_dict()   # size_nm, size_std_nm, size_volume_nm, ... as `qdots predict --json`, plus rwp, scales, flags
"""
from .basis import material_habit, refinement_basis
from .data import Blank, load_blank, parse_ranges
from .fit import refine_pattern
from .sequential import refine_sequence
from .plot import plot_refinement
from .series_plot import plot_series
from .model import Geometry
from .result import RefinementResult

__all__ = ["Blank", "Geometry", "RefinementResult", "load_blank", "parse_ranges", "plot_refinement", "plot_series",
           "refine_pattern",
           "refine_sequence", "refinement_basis", "material_habit"]
