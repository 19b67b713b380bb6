"""20-sizing: live quantum-dot sizing of every run, in the same run (stream ``qdots_size``).

RunEngine -> ``sizer`` (LiveSizer) -> ``tiled_writer`` (and a one-line print per estimate).

Environment:
  QDOTS_MODEL         model bundle (.safetensors) (default: the shipped model)
  QDOTS_DEVICE        auto, cpu, cuda, cuda:N, numpy (default auto: cuda if available)
  QDOTS_PRINT_SIZES   1/0: print one line per estimate (default 1)

Without a usable model the session still starts: runs are stored without sizes, with a warning.
"""
import os
import sys

from qdots_bluesky.callbacks.demo import live_printer
from qdots_bluesky.callbacks.live_sizer import LiveSizer

sizer = None
try:
    sizer = LiveSizer(model=os.environ.get("QDOTS_MODEL") or None, device=os.environ.get("QDOTS_DEVICE") or None)
except ValueError as _exc:  # BundleError is a ValueError: missing or unreadable model
    print(f"WARNING: live sizing is OFF ({_exc}); runs are stored without the qdots_size stream. "
          "Set QDOTS_MODEL to a model bundle and restart.", file=sys.stderr)
if sizer is not None:
    sizer.subscribe(tiled_writer)  # noqa: F821 - from 05-tiled
    if os.environ.get("QDOTS_PRINT_SIZES", "1") != "0":
        sizer.subscribe(live_printer())
    RE.subscribe(sizer)  # noqa: F821 - from 00-base
    print(f"live sizing: {sizer.predictor.path} on {sizer.predictor.device}")
else:
    RE.subscribe(tiled_writer)  # noqa: F821
