"""Shared by the callback tests: one tiny model bundle, one embedded Tiled server, a fast simulated beamline.

The server and bundle are made once per pytest process (the first fixture that asks) and the
server is closed by ``config.add_cleanup`` at the end of the session, before the interpreter exits.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

from _model_helpers import make_bundle

_SHARED: dict = {}


def _tmp_root(config) -> Path:
    if "root" not in _SHARED:
        _SHARED["root"] = Path(tempfile.mkdtemp(prefix="qdots-callbacks-"))
        config.add_cleanup(lambda: shutil.rmtree(_SHARED.pop("root"), ignore_errors=True))
    return _SHARED["root"]


def shared_bundle(config, seed: int = 0) -> Path:
    """A tiny untrained model bundle (one per seed)."""
    key = f"bundle{seed}"
    if key not in _SHARED:
        _SHARED[key] = make_bundle(_tmp_root(config) / f"tiny{seed}.safetensors", seed=seed)
    return _SHARED[key]


def shared_store(config):
    """The embedded Tiled server of this test session (a TiledStore)."""
    if "store" not in _SHARED:
        from qdots_bluesky.callbacks.tiled_store import connect

        store = connect(directory=_tmp_root(config) / "tiled")
        _SHARED["store"] = store

        def close():
            _SHARED.pop("store").close()

        config.add_cleanup(close)  # runs before the root directory is removed (LIFO)
    return _SHARED["store"]


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


@pytest.fixture
def bundle(pytestconfig):
    return shared_bundle(pytestconfig)


@pytest.fixture
def store(pytestconfig):
    return shared_store(pytestconfig)
