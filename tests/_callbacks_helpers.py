"""Helpers of the callback tests: a fast simulated beamline, bad patterns on demand, a free port.

The fixtures they use (``bundle``, ``other_bundle``, ``store``) are in conftest.py.
"""
from __future__ import annotations

import socket

import numpy as np


def fast_beamline(seed: int = 0, x_unit: str = "tth"):
    """A simulated reactor + detector that builds in a fraction of a second (coarse 2theta grid, <= 12 nm)."""
    from qdots_bluesky.sim.beamline import make_simulated_beamline

    return make_simulated_beamline(clock="manual", temperature=140.0, x_unit=x_unit, tth_step=0.0168,
                                   q_points=5004, max_diameter_nm=12.0, seed=seed, progress=False)


def sabotage(detector, bad: dict[int, str]):
    """Make the detector's n-th simulated pattern (1-based) bad: 'nan', 'short', 'zeros'."""
    original = detector.simulate
    count = {"n": 0}

    def simulate(*args, **kwargs):
        count["n"] += 1
        y = original(*args, **kwargs)
        kind = bad.get(count["n"])
        if kind == "nan":
            y = y.copy()
            y[7] = np.nan
        elif kind == "short":
            y = y[: y.size // 3].copy()
        elif kind == "zeros":
            y = np.zeros_like(y)
        return y

    detector.simulate = simulate
    return detector


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_scan(sizer, num=6, delay=30.0, seed=0, bad=None, x_unit="tth", md=None, count_rate=None):
    """A simulated synthesis on a fast beamline in virtual time with ``sizer`` subscribed; returns (documents seen
    directly, documents out of the sizer). ``bad``: see :func:`sabotage`; ``count_rate``: counts per second on the
    strongest point (the detector's default when None)."""
    from bluesky import RunEngine

    from qdots_bluesky.plans import insitu_synthesis
    from qdots_bluesky.sim.beamline import use_virtual_time

    reactor, det = fast_beamline(seed=seed, x_unit=x_unit)
    if bad:
        sabotage(det, bad)
    if count_rate is not None:
        det.count_rate.set(count_rate)
    RE = RunEngine({})
    use_virtual_time(RE, reactor)
    direct, out = [], []
    RE.subscribe(lambda name, doc: direct.append((name, doc)))
    token = sizer.subscribe(lambda name, doc: out.append((name, doc)))
    RE.subscribe(sizer)
    try:
        RE(insitu_synthesis(det, reactor, num, delay, md=md))
    finally:
        sizer.unsubscribe(token)
    return direct, out


def split(out, stream="qdots_size"):
    """(descriptors, events) of ``stream`` among the documents ``out`` [(name, doc), ...]."""
    descs = [d for n, d in out if n == "descriptor" and d["name"] == stream]
    uids = {d["uid"] for d in descs}
    events = [d for n, d in out if n == "event" and d["descriptor"] in uids]
    return descs, events
