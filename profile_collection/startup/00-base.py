"""00-base: the RunEngine, session metadata and (optionally) the BestEffortCallback.

The same directory serves two kinds of session; both run the files of
``profile_collection/startup/`` in name order, in one namespace:

- IPython: ``ipython --profile-dir=profile_collection``
- the Bluesky queue server: ``start-re-manager --startup-dir profile_collection/startup ...``
  (the RE Manager's worker loads them when the environment is opened; see the README).
  ``QUEUE_SERVER`` is True there: no plotting, nothing interactive.

Environment (all optional):
  QDOTS_BEAMLINE   beamline id written to every run (default "qdots-sim")
  QDOTS_OPERATOR   operator name for the run metadata (default $USER)
  QDOTS_BEC        1/0: subscribe the BestEffortCallback (table + plots) (default 1)
  QDOTS_BEC_PLOTS  1/0: let the BestEffortCallback plot (default 1 with an interactive
                   Matplotlib backend, else 0; always 0 in the queue server, whose worker
                   has no display: its table still goes to the RE Manager's console output)
"""
import logging
import os

import numpy as np  # noqa: F401  (for the session)
import bluesky.plan_stubs as bps  # noqa: F401
import bluesky.plans as bp  # noqa: F401
import bluesky.preprocessors as bpp  # noqa: F401
from bluesky import RunEngine

try:  # True inside the RE Manager's worker (bluesky-queueserver), False in IPython or a script
    from bluesky_queueserver import is_re_worker_active as _is_re_worker_active
except ImportError:  # the queue server is not installed: this is not a queue-server session
    def _is_re_worker_active():
        return False

QUEUE_SERVER = bool(_is_re_worker_active())

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
    _plots = "0" if QUEUE_SERVER else os.environ.get("QDOTS_BEC_PLOTS")
    if _plots is None:
        import matplotlib

        _plots = "0" if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template") else "1"
    if _plots == "0":
        bec.disable_plots()
    RE.subscribe(bec)
