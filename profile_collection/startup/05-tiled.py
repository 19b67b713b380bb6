"""05-tiled: where runs are stored - a Tiled server ($QDOTS_TILED_URI) or an embedded one.

Environment:
  QDOTS_TILED_URI  a running Tiled server, e.g. http://host:8000/api/v1?api_key=SECRET
  QDOTS_TILED_DIR  directory of the embedded Tiled server used otherwise (default ~/qdots_data)

Defines ``tiled_store`` (:class:`qdots_bluesky.callbacks.tiled_store.TiledStore`), ``catalog``
(the runs: ``catalog[-1]`` latest, ``catalog[scan_id]``, ``catalog["uid"]``; alias ``db``) and
``tiled_writer`` (subscribed in 20-sizing, behind the live sizer, so runs are stored with their
``qdots_size`` stream).
"""
import atexit
import os

from qdots_bluesky.callbacks.tiled_store import connect

_uri = os.environ.get("QDOTS_TILED_URI")
if _uri:
    tiled_store = connect(_uri)
else:
    tiled_store = connect(directory=os.path.expanduser(os.environ.get("QDOTS_TILED_DIR", "~/qdots_data")))
atexit.register(tiled_store.close)
catalog = db = tiled_store.runs
tiled_writer = tiled_store.writer()
print(f"runs are stored in {tiled_store.description}")
