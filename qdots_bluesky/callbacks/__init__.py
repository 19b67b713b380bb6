"""Bluesky glue: size quantum dots live from the X-ray patterns of each Bluesky run and add the
estimates to that same run as a ``qdots_size`` stream, stored in Tiled and replayable from it.

- :mod:`.live_sizer`: :class:`LiveSizer`, the document router that adds the ``qdots_size`` stream;
- :mod:`.discovery`: which data key is the pattern, its x axis, unit and wavelength (pure functions);
- :mod:`.worker`: the worker thread that sizes queued events in fixed chunks through the Predictor;
- :mod:`.schema`: the layout of the ``qdots_size`` stream (data keys, dtypes, units);
- :mod:`.tiled_store`: store runs in Tiled (embedded server or URI, databroker catalog names), read them back;
- :mod:`.writers`: the TiledWriter for a store, optionally on its own thread;
- :mod:`.replay`: re-size stored runs through the same LiveSizer, write the result back as a new run;
- :mod:`.serve`: the sizer as a process fed by a bluesky 0MQ proxy;
- :mod:`.demo`: the simulated-synthesis demonstration; the ``qdots demo/replay/serve`` commands live in :mod:`qdots_bluesky.cli`.
"""
from .live_sizer import LiveSizer
from .schema import STREAM_NAME

__all__ = ["LiveSizer", "STREAM_NAME"]
