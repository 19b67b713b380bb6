"""DSE refinement of measured patterns over a per-cluster basis (issue 17): size, dispersion, strain with e.s.d.s.

Pure numerics (numpy, scipy): no Bluesky, no torch. Entry points: :func:`refine_pattern` (one pattern),
:func:`refine_sequence` (many, each started from the previous result), :func:`plot_refinement` (a figure),
:func:`refinement_basis` (cached cluster bases per material and wavelength).
"""
from .basis import refinement_basis
from .data import Blank, load_blank, parse_ranges
from .fit import refine_pattern
from .sequential import refine_sequence
from .plot import plot_refinement
from .model import Geometry
from .result import RefinementResult

__all__ = ["Blank", "Geometry", "RefinementResult", "load_blank", "parse_ranges", "plot_refinement", "refine_pattern",
           "refine_sequence", "refinement_basis"]
