"""05-tiled: where runs are stored - a Tiled server ($QDOTS_TILED_URI) or an embedded one.

Environment:
  QDOTS_TILED_URI  a running Tiled server, e.g. http://host:8000/api/v1?api_key=SECRET
  QDOTS_TILED_DIR  directory of the embedded Tiled server used otherwise (default ~/qdots_data)

Start-up prints where the runs go. The embedded server runs on a (non-daemon) thread; it is
stopped when the interpreter shuts down, before Python waits for such threads, so an IPython
session or the queue server's worker process exits instead of hanging on it.

Defines ``tiled_store`` (:class:`qdots_bluesky.callbacks.tiled_store.TiledStore`), ``catalog``
(the runs: ``catalog[-1]`` latest, ``catalog[scan_id]``, ``catalog["uid"]``; alias ``db``) and
``tiled_writer`` (subscribed in 20-sizing, behind the live sizer, so runs are stored with their
``qdots_size`` stream).
"""
import atexit
import os
import threading

from qdots_bluesky.callbacks.tiled_store import connect

_uri = os.environ.get("QDOTS_TILED_URI")
if _uri:
    tiled_store = connect(_uri)
else:
    tiled_store = connect(directory=os.path.expanduser(os.environ.get("QDOTS_TILED_DIR", "~/qdots_data")))
# threading._register_atexit runs at the start of interpreter shutdown, before non-daemon threads are
# joined (plain atexit runs after: too late, the embedded server's thread would keep the process alive).
# A forked multiprocessing child (the queue server's worker) goes through the same shutdown.
getattr(threading, "_register_atexit", atexit.register)(tiled_store.close)
catalog = db = tiled_store.runs
tiled_writer = tiled_store.writer()
print(f"runs are stored in {tiled_store.description} (set QDOTS_TILED_DIR or QDOTS_TILED_URI to change)")
