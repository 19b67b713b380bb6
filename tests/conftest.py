"""Shared test settings: a private histogram cache per test session, paths of optional real data."""
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
