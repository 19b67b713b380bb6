"""Continuous estimates: class probabilities from one Gaussian, interval calibration, coverage."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.models.continuous import class_probabilities, coverage, fit_interval_scale
from qdots_bluesky.models.engine import continuous_estimates, default_config

CLASSES = np.array([2.0 + 0.5 * i for i in range(17)])


def test_class_probabilities_sum_to_one_and_follow_the_estimate():
    mu = np.log(np.array([5.0, 5.25, 1.0, 30.0]))
    p = class_probabilities(mu, np.array([0.001, 0.001, 0.01, 0.01]), CLASSES)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0, 6] == pytest.approx(1.0)  # 5.0 nm, narrow: its class
    assert p[1, 6] + p[1, 7] == pytest.approx(1.0) and p[1, 7] > 0.4  # on the edge: shared by the two classes
    assert p[2, 0] == pytest.approx(1.0) and p[3, -1] == pytest.approx(1.0)  # beyond the range: the end classes
    wide = class_probabilities(np.log([5.0]), np.array([0.3]), CLASSES)[0]
    assert wide.max() < 0.3 and wide.argmax() in (5, 6)  # a wide log-normal peaks a little below its median


def test_interval_scale_makes_one_sigma_hold_68_percent():
    z = np.random.default_rng(0).standard_normal((20000, 2)) * np.array([1.0, 2.5])
    k = fit_interval_scale(z)
    assert k == pytest.approx([1.0, 2.5], rel=0.03)
    truth = np.zeros(20000)
    assert coverage(truth, z[:, 1], np.full(20000, k[1])) == pytest.approx(0.683, abs=0.01)
    assert coverage(truth, z[:, 1], np.full(20000, k[1]), k=1.96) == pytest.approx(0.95, abs=0.01)
    with pytest.raises(ValueError, match="z-scores"):
        fit_interval_scale(np.ones((3, 2)))


def test_continuous_estimates_undo_the_head_standardization():
    cfg = default_config(continuous_head=True)
    raw = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, -2.0, -1.0, 0.0, 1.0, 50.0]])
    mean, std = continuous_estimates(raw, cfg)
    off, sc = np.array(cfg["continuous_offsets"]), np.array(cfg["continuous_scales"])
    assert np.allclose(mean[0], off) and np.allclose(std[0], sc)
    assert np.allclose(mean[1], off + sc * raw[1, :4])
    assert std[1, 3] == pytest.approx(sc[3] * np.exp(3.0))  # log standard deviations are bounded
    with pytest.raises(ValueError, match="continuous_scales"):
        default_config(continuous_scales=[1.0, 1.0, 0.0, 1.0])


def test_a_dispersion_slope_makes_intervals_hold_alike_for_narrow_and_broad_populations():
    from qdots_bluesky.models.continuous import fit_covariate_slope, widened_std

    rng = np.random.default_rng(3)
    n = 4000
    disp = rng.uniform(0.0, 0.3, n)
    true_sd = 0.02 * np.exp(4.0 * disp)  # errors grow with the dispersion; the network's width does not
    error = (rng.standard_normal(n) * true_sd)[:, None]
    std = np.full((n, 1), 0.03)
    slope, factor = fit_covariate_slope(error, std, disp)
    assert 3.0 <= slope[0] <= 5.0
    sd = widened_std(std, disp, slope) * factor
    for rows in (disp < 0.1, disp > 0.2):
        assert abs(np.mean(np.abs(error[rows, 0]) <= sd[rows, 0]) - 0.683) < 0.04
    assert np.allclose(widened_std(std, -disp, slope), std)  # a negative estimate widens nothing
