"""Shared test settings and fixtures: a private histogram cache per test session, paths of optional real data,
tiny untrained model bundles and one embedded Tiled server per session (closed at its end)."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("QDOTS_CACHE_DIR", str(tmp_path_factory.mktemp("qdots-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """A tiny untrained model bundle (seeded)."""
    from _model_helpers import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundles") / "tiny0.safetensors", seed=0)


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory) -> Path:
    """A second tiny bundle with other weights (another seed)."""
    from _model_helpers import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundles") / "tiny5.safetensors", seed=5)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """The embedded Tiled server of this test session (a TiledStore), closed at the end of the session."""
    from qdots_bluesky.callbacks.tiled_store import connect

    tiled = connect(directory=tmp_path_factory.mktemp("tiled"))
    yield tiled
    tiled.close()
