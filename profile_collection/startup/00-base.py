"""00-base: the RunEngine, session metadata and (optionally) the BestEffortCallback.

Start a session with ``ipython --profile-dir=profile_collection`` (IPython runs the files of
``profile_collection/startup/`` in name order, in one namespace).

Environment (all optional):
  QDOTS_BEAMLINE   beamline id written to every run (default "qdots-sim")
  QDOTS_OPERATOR   operator name for the run metadata (default $USER)
  QDOTS_BEC        1/0: subscribe the BestEffortCallback (table + plots) (default 1)
  QDOTS_BEC_PLOTS  1/0: let the BestEffortCallback plot (default 1 with an interactive
                   Matplotlib backend, else 0)
"""
import logging
import os

import numpy as np  # noqa: F401  (for the session)
import bluesky.plan_stubs as bps  # noqa: F401
import bluesky.plans as bp  # noqa: F401
import bluesky.preprocessors as bpp  # noqa: F401
from bluesky import RunEngine

logging.getLogger("qdots_bluesky").setLevel(logging.INFO)
if not logging.getLogger().handlers:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

RE = RunEngine({})
RE.md["beamline_id"] = os.environ.get("QDOTS_BEAMLINE", "qdots-sim")
RE.md["operator"] = os.environ.get("QDOTS_OPERATOR", os.environ.get("USER", "unknown"))
RE.md["facility"] = "simulated"

bec = None
if os.environ.get("QDOTS_BEC", "1") != "0":
    from bluesky.callbacks.best_effort import BestEffortCallback

    bec = BestEffortCallback()
    _plots = os.environ.get("QDOTS_BEC_PLOTS")
    if _plots is None:
        import matplotlib

        _plots = "0" if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template") else "1"
    if _plots == "0":
        bec.disable_plots()
    RE.subscribe(bec)
