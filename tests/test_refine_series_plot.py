"""The series figure of refinements (qdots_bluesky.refine.series_plot)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.refine.result import RefinementResult
from qdots_bluesky.refine.series_plot import plot_series, series_values


def _result(status: str, size: float) -> RefinementResult:
    nan = float("nan")
    sized = status == "sized"
    return RefinementResult(status=status, size_nm=size if sized else nan, size_std_nm=0.1 if sized else nan,
                            size_volume_nm=size * 1.05 if sized else nan, size_volume_std_nm=0.05 if sized else nan,
                            dispersion=0.1 if sized else nan, dispersion_std=0.01 if sized else nan,
                            strain=0.002 if sized else nan, strain_std=0.0005 if sized else nan, b_offset=0.0,
                            b_offset_std=0.0, displacement_mm=None, displacement_std_mm=None, scales={}, scales_std={},
                            texture=None, rwp=0.03, rwp_expected=0.01, reduced_chi2=2.0, n_points=100, material="PbS",
                            wavelength_a=0.56, geometry="capillary", q_range=(1.0, 8.0))


def test_values_leave_gaps_for_unsized_and_failed():
    v = series_values([_result("sized", 3.0), _result("no_nanocrystals", 0.0), None])
    assert v["size_nm"][0] == 3.0 and np.isnan(v["size_nm"][1:]).all()
    assert v["strain_percent"][0] == pytest.approx(0.2)
    assert v["rwp_percent"][:2] == pytest.approx([3.0, 3.0]) and np.isnan(v["rwp_percent"][2])


def test_figure_and_bad_input(tmp_path):
    results = [_result("sized", 3.0), _result("sized", 3.4), None]
    path = plot_series(results, tmp_path / "series", x=[0.0, 60.0, 120.0], x_label="time (s)")
    assert path.suffix == ".png" and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="one value per pattern"):
        plot_series(results, tmp_path / "bad.png", x=[1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        plot_series([], tmp_path / "empty.png")
