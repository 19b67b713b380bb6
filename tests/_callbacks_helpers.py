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
