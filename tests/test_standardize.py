"""Tests of the single standardization (qdots_bluesky.standardize)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qdots_bluesky.standardize import QGrid, StandardizationReport, standardize_batch, standardize_pattern
from qdots_bluesky.units import q_to_tth, tth_to_q

HEXANE = Path(__file__).resolve().parents[2] / "shared" / "data" / "solvents" / "hexane.xye"
if not HEXANE.exists():
    HEXANE = Path("/work/shared/data/solvents/hexane.xye")
needs_hexane = pytest.mark.skipif(not HEXANE.exists(), reason="shared solvent data (hexane.xye) not available")

WL = 0.564162  # A
GRID = QGrid()
Q = GRID.q
H = GRID.step


def _pattern(q: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth positive test pattern with a few peaks, in Q (1/A)."""
    rng = np.random.default_rng(seed)
    y = 2.0 + np.cos(q) + 5.0 * np.exp(-0.5 * ((q - 3.3) / 0.05) ** 2) + 3.0 * np.exp(-0.5 * ((q - 9.1) / 0.08) ** 2)
    return y + 0.01 * rng.random(q.size)


# ---------------------------------------------------------------- grid and report
def test_grid_defaults_and_json_round_trip():
    assert (GRID.q_min, GRID.q_max, GRID.n_points) == (1.0, 15.0, 5004)
    assert Q[0] == 1.0 and Q[-1] == 15.0 and Q.size == 5004
    assert H == pytest.approx(14.0 / 5003) and np.allclose(np.diff(Q), H)
    assert QGrid.from_dict(json.loads(json.dumps(GRID.to_dict()))) == GRID
    with pytest.raises(ValueError, match="accepted"):
        QGrid(q_min=5.0, q_max=2.0)


def test_report_to_dict_is_json():
    _, report = standardize_pattern(Q, _pattern(Q), x_unit="q")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["n_pad_low"] == 0 and d["coverage"] == 1.0 and d["method"] == "interpolate"
    assert isinstance(report, StandardizationReport)


# ---------------------------------------------------------------- the numbers
def test_pattern_on_the_grid_comes_back_unchanged_up_to_scale():
    y = _pattern(Q)
    out, report = standardize_pattern(Q, y, x_unit="q")
    assert out.dtype == np.float32 and out.shape == (5004,)
    np.testing.assert_allclose(out, y / y.mean(), rtol=2e-7)
    assert report.n_pad_low == report.n_pad_high == 0 and report.n_source_points == 5004
    assert report.source_q_step == pytest.approx(H) and report.n_interpolated == 5004


def test_same_pattern_in_two_theta_gives_the_same_result():
    y = _pattern(Q)
    out_q, _ = standardize_pattern(Q, y, x_unit="q")
    out_tth, report = standardize_pattern(q_to_tth(Q, WL), y, x_unit="tth", wavelength=WL)
    np.testing.assert_allclose(out_tth, out_q, atol=1e-4)
    assert report.q_min_data == pytest.approx(1.0) and report.q_max_data == pytest.approx(15.0)


def test_mean_is_exactly_one():
    for y in (_pattern(Q), 1e6 * _pattern(Q, 3), 1e-6 * _pattern(Q, 4)):
        out, _ = standardize_pattern(Q, y, x_unit="q")
        assert abs(out.astype(np.float64).mean() - 1.0) < 1e-6
        assert out.astype(np.float64).sum() * H == pytest.approx(GRID.q_max - GRID.q_min, rel=1e-3)


@pytest.mark.parametrize("q0", [2.2345, 7.777, 13.01])
def test_peak_stays_at_its_q_position(q0):
    # Fine data in 2theta (0.002 deg steps, Cu K-alpha-like source averaged) and coarse data in Q.
    tth = np.arange(3.0, 110.0, 0.002)
    q = tth_to_q(tth, WL)
    y = 0.1 + np.exp(-0.5 * ((q - q0) / 0.03) ** 2)
    out, report = standardize_pattern(tth, y, wavelength=WL)
    assert report.method == "average"
    centroid = np.sum(Q * (out - out.min())) / np.sum(out - out.min())
    assert abs(Q[np.argmax(out)] - q0) <= H / 2 + 1e-12
    assert abs(centroid - q0) < 0.1 * H
    qc = np.arange(0.5, 16.0, 3 * H)
    out_c, report_c = standardize_pattern(qc, 0.1 + np.exp(-0.5 * ((qc - q0) / 0.03) ** 2), x_unit="q")
    assert report_c.method == "interpolate"
    assert abs(Q[np.argmax(out_c)] - q0) <= 3 * H


def test_padding_uses_the_mean_of_the_5_outermost_points_and_is_counted_exactly():
    k_lo, k_hi = 714, 4100  # data cover Q[714] = 2.998... to Q[4100] = 12.47...
    q = Q[k_lo : k_hi + 1]
    y = 1.0 + q**2 / 10.0 + 0.3 * np.sin(7 * q)
    out, report = standardize_pattern(q, y, x_unit="q")
    assert report.n_pad_low == k_lo and report.n_pad_high == 5004 - 1 - k_hi
    assert report.coverage == pytest.approx((k_hi - k_lo + 1) / 5004)
    assert report.q_min_data == Q[k_lo] and report.q_max_data == Q[k_hi]
    scale = out[k_lo] / y[0]
    np.testing.assert_allclose(out[k_lo : k_hi + 1] / scale, y, rtol=1e-6)
    np.testing.assert_allclose(out[:k_lo] / scale, y[:5].mean(), rtol=1e-6)
    np.testing.assert_allclose(out[k_hi + 1 :] / scale, y[-5:].mean(), rtol=1e-6)


def test_padding_count_for_data_between_grid_points():
    q = np.arange(2.00123, 9.5, 0.001)
    _, report = standardize_pattern(q, 1.0 + 0.0 * q, x_unit="q")
    assert report.n_pad_low == np.count_nonzero(Q < 2.00123)
    assert report.n_pad_high == np.count_nonzero(Q > q[-1])
    assert report.q_min_data == 2.00123 and report.q_max_data == q[-1]


def test_averaging_equals_the_cell_mean_and_reduces_noise():
    rng = np.random.default_rng(1)
    q = np.arange(0.9, 15.1, H / 10)
    smooth = _pattern(q)
    out, report = standardize_pattern(q, smooth, x_unit="q")
    assert report.method == "average" and report.n_averaged == 5004
    # reference: mean of the linear interpolant over each grid cell, brute force
    sub = (np.arange(200) + 0.5) / 200 - 0.5
    ref = np.interp(Q[:, None] + sub * H, q, smooth).mean(axis=1)
    np.testing.assert_allclose(out, ref / ref.mean(), rtol=2e-5)

    noisy = np.full(q.size, 10.0) + rng.normal(0.0, 1.0, q.size)
    out_n, _ = standardize_pattern(q, noisy, x_unit="q")
    var_in = np.var(noisy / noisy.mean())
    var_out = np.var(out_n.astype(np.float64))
    assert var_out < 0.15 * var_in  # ~10 points per cell -> variance / ~10


def test_averaging_conserves_the_integrated_intensity():
    q = np.arange(0.5, 16.0, H / 7.3)
    y = _pattern(q, 2)
    out = standardize_pattern(q, y, x_unit="q")[0].astype(np.float64)
    # Cell k spans Q[k] +- H/2: the running sum of the output follows the integral of the data.
    total = _cum(q, y, 15.0 + H / 2)
    for k in (1, 700, 2500, 4999):
        np.testing.assert_allclose(out[:k].sum() / out.sum(), _cum(q, y, Q[k] - H / 2) / total, rtol=1e-5)


def _cum(q: np.ndarray, y: np.ndarray, upper: float) -> float:
    """Integral of the linear interpolant of (q, y) from 1 - H/2 to upper."""
    grid = np.linspace(1.0 - H / 2, upper, 200001)
    v = np.interp(grid, q, y)
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(grid)))


def test_mixed_source_spacing():
    q = np.concatenate([np.arange(1.0, 6.0, H / 4), np.arange(6.0, 15.0, 2.5 * H)])
    out, report = standardize_pattern(q, _pattern(q), x_unit="q")
    assert report.method == "mixed" and report.n_averaged + report.n_interpolated == 5004 - report.n_pad_high
    assert report.n_averaged == pytest.approx(np.count_nonzero(Q < 6.0), abs=1)
    assert np.all(np.isfinite(out))


def test_other_grid():
    grid = QGrid(1.0, 15.0, 1251)
    out, report = standardize_pattern(Q, _pattern(Q), x_unit="q", grid=grid)
    assert out.shape == (1251,) and report.method == "average" and report.source_q_step == pytest.approx(H)


# ---------------------------------------------------------------- batch
def test_batch_equals_single():
    rng = np.random.default_rng(5)
    tth = np.linspace(2.0, 100.0, 7000)
    Y = 1.0 + rng.random((6, tth.size))
    out, report = standardize_batch(tth, Y, x_unit="tth", wavelength=WL)
    assert out.shape == (6, 5004) and out.dtype == np.float32
    for i in range(6):
        single, r = standardize_pattern(tth, Y[i], x_unit="tth", wavelength=WL)
        np.testing.assert_array_equal(out[i], single)
        assert r == report


def test_repeated_axis_reuses_the_cached_operator():
    rng = np.random.default_rng(6)
    tth = q_to_tth(np.linspace(0.8, 14.0, 5004), WL)
    Y = 1.0 + rng.random((64, 5004))
    first, _ = standardize_batch(tth, Y, x_unit="tth", wavelength=WL)
    again, _ = standardize_batch(tth.copy(), Y, x_unit="tth", wavelength=WL)
    assert first.shape == (64, 5004)
    np.testing.assert_array_equal(first, again)


# ---------------------------------------------------------------- errors
def _raises(*words, **kwargs):
    x = kwargs.pop("x", Q)
    y = kwargs.pop("y", _pattern(Q))
    kwargs.setdefault("x_unit", "q")
    with pytest.raises(ValueError) as info:
        standardize_pattern(x, y, **kwargs)
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)


def test_error_unknown_unit():
    _raises("x_unit", "'deg'", "accepted", x_unit="deg")


def test_error_two_theta_without_wavelength():
    _raises("wavelength", x=q_to_tth(Q, WL), x_unit="tth")


@pytest.mark.parametrize("wl", [-1.0, 0.0, float("nan"), 100.0])
def test_error_invalid_wavelength(wl):
    _raises("wavelength", "accepted", x=q_to_tth(Q, WL), x_unit="tth", wavelength=wl)


def test_error_two_theta_beyond_180():
    _raises("180", "accepted", x=np.linspace(10.0, 200.0, 1000), y=np.ones(1000), x_unit="tth", wavelength=0.2)


def test_error_nan_or_inf():
    x = Q.copy()
    x[10] = np.nan
    _raises("NaN", "index 10", x=x)
    y = _pattern(Q)
    y[20] = np.inf
    _raises("NaN or infinite", "index 20", y=y)


def test_error_not_increasing():
    x = Q.copy()
    x[100] = x[99]
    _raises("strictly increasing", "index 100", x=x)
    _raises("strictly increasing", x=Q[::-1].copy())


def test_error_length_mismatch():
    _raises("lengths", "5004", "5003", y=_pattern(Q)[:-1])


def test_error_too_few_points():
    _raises("49", "at least 50", x=np.linspace(1, 15, 49), y=np.ones(49))


def test_error_too_little_overlap():
    q = np.linspace(13.5, 20.0, 500)
    _raises("overlap", "1.5", "at least 2", x=q, y=np.ones(500))
    q = np.linspace(20.0, 30.0, 500)
    _raises("overlap", x=q, y=np.ones(500))


def test_error_cannot_scale():
    _raises("all zeros", y=np.zeros(5004))
    _raises("non-positive area", y=-_pattern(Q))
    Y = np.vstack([_pattern(Q), np.zeros(5004)])
    with pytest.raises(ValueError, match="pattern 1 is all zeros"):
        standardize_batch(Q, Y, x_unit="q")


# ---------------------------------------------------------------- real data
@needs_hexane
def test_hexane_standardizes():
    from qdots_bluesky.io import read_pattern

    p = read_pattern(HEXANE)
    out, report = standardize_pattern(p.x, p.y, x_unit="tth", wavelength=WL)
    assert report.n_pad_low == report.n_pad_high == 0 and report.coverage == 1.0
    assert report.method == "average" and 20000 < report.n_source_points < 23000
    assert abs(out.astype(np.float64).mean() - 1.0) < 1e-6 and np.all(out > 0)
    assert 1.3 < Q[np.argmax(out)] < 1.5  # main liquid peak of hexane


# ---------------------------------------------------------------- interpolation of coarse data
def _second_moment_width(out, centre, half_window=0.2):
    near = np.abs(Q - centre) < half_window
    y = out[near] - np.median(out)
    mean = np.sum(Q[near] * y) / y.sum()
    return mean, np.sqrt(np.sum((Q[near] - mean) ** 2 * y) / y.sum())


def test_coarse_data_are_rebuilt_exactly_when_linear():
    qc = np.linspace(0.9, 15.1, 301)  # step ~17 grid steps
    y = 3.0 + 0.5 * qc  # a linear pattern is its own bin average
    out, report = standardize_pattern(qc, y, x_unit="q")
    assert report.method == "interpolate" and report.n_interpolated == 5004
    exact = 3.0 + 0.5 * Q
    np.testing.assert_allclose(out, exact / exact.mean(), rtol=1e-5)


def test_coarse_data_keep_their_bin_averages():
    # source points every 17th grid point: bin edges fall on grid cell edges, so the grid cells of each
    # interior source bin must average back to the datum exactly (area-preserving interpolation)
    rng = np.random.default_rng(3)
    idx = np.arange(20, 4990, 17)
    y = rng.uniform(1.0, 2.0, idx.size)
    out, _ = standardize_pattern(Q[idx], y, x_unit="q")
    cells = np.stack([out[i - 8 : i + 9] for i in idx[1:-1]])
    back = cells.mean(axis=1)
    np.testing.assert_allclose(back / back.mean(), y[1:-1] / y[1:-1].mean(), rtol=1e-5)


def test_coarse_bin_averages_keep_the_width_of_a_sparse_peak():
    # A Gaussian peak (sigma 0.024 1/A, the Scherrer width of 10 nm dots) recorded as bin averages one sigma
    # wide: rebuilt, it has its own width (within 1 %); read as point values it would be sqrt(1 + 1/12) = 4 %
    # broader, and linear interpolation would add another 8 %.
    from scipy.special import erf

    sigma = 0.024
    qc = np.arange(0.95, 15.05, sigma)
    lo, hi = (qc - sigma / 2 - 7.0) / (np.sqrt(2) * sigma), (qc + sigma / 2 - 7.0) / (np.sqrt(2) * sigma)
    bin_average = np.sqrt(np.pi / 2) * (erf(hi) - erf(lo)) / 2.0  # mean of exp(-(q - 7)^2 / 2 sigma^2) over each bin
    out, _ = standardize_pattern(qc, 0.01 + bin_average, x_unit="q")
    mean, width = _second_moment_width(out, 7.0)
    assert abs(mean - 7.0) < 0.1 * H
    assert width == pytest.approx(sigma, rel=0.01)
