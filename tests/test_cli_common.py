"""The options every qdots command shares (qdots_bluesky/cli/common.py)."""
from __future__ import annotations

import importlib.util

import pytest

from qdots_bluesky.cli.common import resolve_cli_device
from qdots_bluesky.predictor import default_device


def test_auto_device_for_files_and_for_live_sizing():
    assert resolve_cli_device("numpy") == "numpy" and resolve_cli_device("cpu", batch_independent=True) == "cpu"
    assert resolve_cli_device("auto") == default_device()
    if default_device() == "cuda":
        pytest.skip("a GPU is visible: 'auto' is cuda for every command")
    # without a GPU: files go to the NumPy engine; live sizing and replay to PyTorch where it is installed, whose
    # numbers do not depend on the other patterns of a batch
    expected = "cpu" if importlib.util.find_spec("torch") is not None else "numpy"
    assert resolve_cli_device("AUTO", batch_independent=True) == expected
