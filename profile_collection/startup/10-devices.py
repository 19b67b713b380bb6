"""10-devices: the simulated PbS synthesis reactor and WAXS detector (replace with real devices).

Environment:
  QDOTS_SIM_FAST      1: a coarse detector (0.0168 deg steps, clusters up to 12 nm) that starts
                      in a fraction of a second (default 0: X04SA-like 0.0036 deg steps)
  QDOTS_VIRTUAL_TIME  1: plan sleeps advance the simulated reaction at once instead of waiting
  QDOTS_TEMPERATURE   reaction temperature in deg C (default 140)
"""
import os

from qdots_bluesky.sim.beamline import make_simulated_beamline, use_virtual_time

_fast = os.environ.get("QDOTS_SIM_FAST", "0") == "1"
_virtual = os.environ.get("QDOTS_VIRTUAL_TIME", "0") == "1"
_options = dict(tth_step=0.0168, max_diameter_nm=12.0, progress=False) if _fast else {}
reactor, waxs = make_simulated_beamline(temperature=float(os.environ.get("QDOTS_TEMPERATURE", "140")),
                                        clock="manual" if _virtual else "real", seed=None, **_options)
if _virtual:
    use_virtual_time(RE, reactor)  # noqa: F821 - RE from 00-base
print(f"devices: {reactor.name} (simulated reactor), {waxs.name} ({waxs.intensity.get().size}-point WAXS detector)")
