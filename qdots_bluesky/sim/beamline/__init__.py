"""A simulated in-situ synthesis beamline: a closed-form hot-injection growth law (:mod:`.growth`), ophyd devices for
the reactor and a 1D WAXS detector computing DSE patterns (:mod:`.devices`, with the soft signals of :mod:`.signals`),
and virtual time for fast, exact runs under a RunEngine (:mod:`.virtual_time`); a gold nanoparticle synthesis (issue 18)
whose structure changes with size (:mod:`.gold_growth`) seen by a SAXS + WAXS detector (:mod:`.gold_devices`)."""
from .devices import SynthesisReactor, WaxsDetector, make_simulated_beamline
from .gold_devices import GoldSynthesisReactor, SaxsWaxsDetector, gold_synthesis_devices
from .gold_growth import GoldGrowthLaw, GoldObservation, GoldStructureLaw
from .growth import GrowthLaw, GrowthObservation, GrowthState
from .virtual_time import use_virtual_time

__all__ = ["GoldGrowthLaw", "GoldObservation", "GoldStructureLaw", "GoldSynthesisReactor", "GrowthLaw",
           "GrowthObservation", "GrowthState", "SaxsWaxsDetector", "SynthesisReactor", "WaxsDetector",
           "gold_synthesis_devices", "make_simulated_beamline", "use_virtual_time"]
