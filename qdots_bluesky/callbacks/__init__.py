"""Bluesky glue: live sizing callback, replay from Tiled, remote consumer.

- :mod:`.live_sizer`: :class:`LiveSizer`, adds the ``qdots_size`` stream to each run;
- :mod:`.tiled_store`: store runs in Tiled (embedded server or URI, databroker catalog names), read them back;
- :mod:`.replay`: re-size stored runs through the same LiveSizer, write the result back as a new run;
- :mod:`.serve`: the sizer as a process fed by a bluesky 0MQ proxy;
- :mod:`.demo`: the simulated-synthesis demonstration; the ``qdots demo/replay/serve`` commands live in :mod:`qdots_bluesky.cli`.
"""
from .live_sizer import STREAM_NAME, LiveSizer

__all__ = ["LiveSizer", "STREAM_NAME"]
