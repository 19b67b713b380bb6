"""qdots_bluesky.file_sizing: the library side of `qdots predict` (units, wavelength, batching, figure names)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _model_helpers import GRID, make_bundle, synthetic_patterns, write_pattern
from qdots_bluesky.file_sizing import (check_x_range, json_record, plot_names, resolve_wavelength, resolve_x_unit,
                                       size_files)
from qdots_bluesky.io import Pattern
from qdots_bluesky.predictor import Predictor


def _pattern(header=None, x_unit=None, declared=None) -> Pattern:
    x = np.linspace(1, 10, 60)
    return Pattern(x, np.ones_like(x), None, "f.xy", header or {}, x_unit, declared)


def test_x_unit_from_option_header_or_default():
    assert resolve_x_unit(_pattern(), None) == "tth"
    assert resolve_x_unit(_pattern(x_unit="q", declared="q_nm^-1"), None) == "q"
    assert resolve_x_unit(_pattern(x_unit="q", declared="q_A^-1"), "q") == "q"
    assert resolve_x_unit(_pattern(), "q") == "q"
    with pytest.raises(ValueError, match="declares"):
        resolve_x_unit(_pattern(x_unit="q", declared="q_nm^-1"), "tth")


def test_wavelength_from_option_or_header():
    assert resolve_wavelength(_pattern({"wavelength": "0.5 A"}), 0.7, "tth") == 0.7
    assert resolve_wavelength(_pattern({"wavelength_a": "0.564162"}), None, "tth") == 0.564162
    assert resolve_wavelength(_pattern(), None, "q") is None
    with pytest.raises(ValueError, match="need a wavelength"):
        resolve_wavelength(_pattern(), None, "tth")
    with pytest.raises(ValueError, match="file header"):
        resolve_wavelength(_pattern({"wavelength": "50"}), None, "tth")


def test_q_range_check():
    check_x_range(np.linspace(0.5, 25, 100), "q")
    check_x_range(np.linspace(5, 150, 100), "tth")  # 2theta: left to the standardization
    for bad in (np.linspace(10, 150, 100), np.linspace(-1, 10, 100)):
        with pytest.raises(ValueError, match="accepted x units"):
            check_x_range(bad, "q")


def test_plot_names():
    assert plot_names("fig", ["a.xy"]) == [Path("fig.png")]
    assert plot_names("out/fig.png", ["d1/a.xy", "b.xye"]) == [Path("out/fig_a.png"), Path("out/fig_b.png")]
    assert plot_names("fig.png", ["d1/a.xy", "d2/a.xy"]) == [Path("fig_a.png"), Path("fig_a_1.png")]


def test_size_files_batches_the_good_and_keeps_the_bad_apart(tmp_path):
    predictor = Predictor.from_bundle(make_bundle(tmp_path / "m.safetensors"), device="numpy")
    q = np.linspace(0.8, 15.5, 3000)
    X = synthetic_patterns(2, seed=3)
    good = [write_pattern(tmp_path / f"g{i}.xy", q, np.interp(q, GRID.q, X[i])) for i in range(2)]
    empty = tmp_path / "e.xy"
    empty.write_text("")
    results = size_files(predictor, [good[0], empty, good[1]], x_unit="q")
    assert [r.estimate is not None for r in results] == [True, False, True]
    assert results[1].error == "the file is empty" and "accepted" in results[1].accepted
    single = predictor.predict_pattern(q, np.interp(q, GRID.q, X[1]), x_unit="q")
    assert results[2].estimate.size_nm == pytest.approx(single.size_nm, rel=1e-6)
    assert json_record(results[1]) == {"file": str(empty), "error": "the file is empty"}
    assert json_record(results[0])["size_nm"] == results[0].estimate.size_nm
