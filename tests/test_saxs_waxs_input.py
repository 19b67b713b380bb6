"""The SAXS + WAXS input: resampling onto the log grid (cell means, masks of unmeasured parts) and the two channels."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.saxs_waxs_input import MASK_FILL, log_q_grid, network_input, resample_saxs_waxs
from qdots_bluesky.units import q_to_tth

GRID = log_q_grid(0.02, 15.0, 256)


def test_a_smooth_curve_is_kept_where_measured_and_masked_outside():
    q = np.linspace(0.05, 10.0, 20000)
    y = 1.0 / (1.0 + (q * 20) ** 2) + 0.1
    values, mask, report = resample_saxs_waxs(q, y, GRID)
    inside = (GRID >= 0.05) & (GRID <= 10.0)
    assert np.array_equal(mask, inside)
    expected = 1.0 / (1.0 + (GRID * 20) ** 2) + 0.1
    assert np.allclose(values[mask], expected[mask], rtol=2e-3)
    assert np.all(values[~mask] == MASK_FILL)
    assert report.coverage == pytest.approx(inside.mean()) and report.gaps == []


def test_dense_wide_angle_data_are_averaged_over_a_cell_which_lowers_the_noise():
    rng = np.random.default_rng(1)
    q = np.linspace(1.0, 15.0, 40000)
    values, mask, _ = resample_saxs_waxs(q, 1.0 + 0.1 * rng.standard_normal(q.size), GRID)
    # the log grid's cells at Q ~ 10 hold ~ 80 data points: the noise drops ~9 x
    assert np.std(values[mask & (GRID > 8)]) < 0.03


def test_a_gap_between_two_detectors_is_masked_and_reported():
    q = np.concatenate([np.linspace(0.02, 0.4, 600), np.linspace(1.2, 15.0, 3000)])
    values, mask, report = resample_saxs_waxs(q, np.ones(q.size), GRID)
    assert not mask[(GRID > 0.41) & (GRID < 1.19)].any() and mask[(GRID < 0.39) & (GRID > 0.021)].all()
    assert mask[(GRID > 1.21) & (GRID < 14.9)].all()
    assert len(report.gaps) == 1 and report.gaps[0][0] == pytest.approx(0.4) and report.gaps[0][1] == pytest.approx(1.2)


def test_log_spaced_data_have_no_gaps_but_dropped_points_leave_one():
    q = np.geomspace(0.01, 20.0, 3000)
    _, mask, report = resample_saxs_waxs(q, np.ones(q.size), GRID)
    assert report.gaps == [] and mask[GRID >= 0.01].all()
    y = np.ones(q.size)
    y[1500:1560] = np.nan  # a dead module: its points are dropped
    _, mask, report = resample_saxs_waxs(q, y, GRID)
    assert len(report.gaps) == 1 and not mask[(GRID > q[1501]) & (GRID < q[1558])].any()


def test_two_theta_data_with_the_wavelength_give_the_same_as_q_data():
    q = np.linspace(0.5, 12.0, 5000)
    y = np.exp(-q / 3) + 0.01 * q
    by_q, mask_q, _ = resample_saxs_waxs(q, y, GRID)
    by_tth, mask_tth, _ = resample_saxs_waxs(q_to_tth(q, 0.2), y, GRID, x_unit="tth", wavelength=0.2)
    assert np.array_equal(mask_q, mask_tth) and np.allclose(by_q, by_tth, rtol=1e-6)


@pytest.mark.parametrize("x, y, kw, message", [
    (np.linspace(1, 2, 5), np.ones(4), {}, "two 1D arrays"),
    (np.linspace(20, 30, 50), np.ones(50), {}, "outside the model's grid"),
    (np.linspace(1, 20, 50), np.ones(50), {"x_unit": "tth"}, "needs the wavelength"),
    (np.array([1.0, np.nan]), np.ones(2), {}, "two or more"),
    (np.linspace(1, 2, 5), np.ones(5), {"x_unit": "d"}, "accepted: 'tth'"),
])
def test_bad_input_gets_a_one_line_error(x, y, kw, message):
    with pytest.raises(ValueError, match=message):
        resample_saxs_waxs(x, y, GRID, **kw)


def test_network_input_is_scale_free_with_the_mask_as_second_channel():
    values = np.abs(np.random.default_rng(2).normal(size=(2, GRID.size))) + 0.1
    mask = np.ones((2, GRID.size), bool)
    mask[1, :50] = False
    a, b = network_input(values, mask), network_input(values * 1e6, mask)
    assert a.shape == (2, 2, GRID.size) and a.dtype == np.float32
    assert np.allclose(a, b, atol=1e-5)
    assert np.all(a[1, 0, :50] == MASK_FILL) and np.all(a[1, 1, :50] == 0) and np.all(a[0, 1] == 1)


def test_overlapping_detectors_and_repeated_q_leave_no_gap():
    saxs = np.geomspace(0.02, 1.2, 700)
    waxs = np.linspace(0.8, 15.0, 6000)
    q = np.concatenate([saxs, waxs, waxs[:50]])  # interleaved in the overlap, some points twice
    values, mask, report = resample_saxs_waxs(q, np.ones(q.size), GRID)
    assert report.gaps == [] and mask[GRID >= 0.02].all() and np.allclose(values[mask], 1.0)


def test_training_and_prediction_share_one_input():
    from qdots_bluesky.sim.learning import metal_augment

    assert metal_augment.network_input is network_input and metal_augment.MASK_FILL == MASK_FILL
