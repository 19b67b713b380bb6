"""A simulated in-situ synthesis beamline: a closed-form hot-injection growth law (:mod:`.growth`), ophyd devices for
the reactor and a 1D WAXS detector computing DSE patterns (:mod:`.devices`, with the soft signals of :mod:`.signals`),
and virtual time for fast, exact runs under a RunEngine (:mod:`.virtual_time`)."""
from .devices import SynthesisReactor, WaxsDetector, make_simulated_beamline
from .growth import GrowthLaw, GrowthObservation, GrowthState
from .virtual_time import use_virtual_time

__all__ = ["GrowthLaw", "GrowthObservation", "GrowthState", "SynthesisReactor", "WaxsDetector",
           "make_simulated_beamline", "use_virtual_time"]
