"""A simulated in-situ synthesis beamline: a hot-injection growth law, ophyd devices for the reactor and a 1D
WAXS detector computing DSE patterns, and virtual time for fast, exact runs under a RunEngine."""
from .devices import (SynthesisReactor, WaxsDetector, make_simulated_beamline, use_virtual_time, GrowthLaw,
                      GrowthObservation, GrowthState)

__all__ = ["GrowthLaw", "GrowthObservation", "GrowthState", "SynthesisReactor", "WaxsDetector",
           "make_simulated_beamline", "use_virtual_time"]
