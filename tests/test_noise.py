"""Tests of the counting noise of the augmentation (sim/learning/noise.py)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.learning.noise import poisson_block, standard_normal_f32


def test_standard_normal_deviates_have_normal_moments_and_are_seeded():
    z = standard_normal_f32(np.random.default_rng(0), (1000, 1001))
    assert z.dtype == np.float32 and z.shape == (1000, 1001)
    assert abs(z.mean()) < 5e-3 and z.std() == pytest.approx(1.0, abs=3e-3)
    assert abs((z**3).mean()) < 0.02 and (z.astype(float) ** 4).mean() == pytest.approx(3.0, abs=0.03)
    assert np.mean(np.abs(z) > 2.0) == pytest.approx(0.0455, abs=1e-3)  # two-sided normal tail
    np.testing.assert_array_equal(z, standard_normal_f32(np.random.default_rng(0), (1000, 1001)))


@pytest.mark.parametrize("lam", [5.0, 60.0, 2000.0])
def test_counting_noise_has_poisson_mean_variance_and_skewness(lam):
    """Below poisson_normal_above exact Poisson, above it the skewness-corrected normal: either way the counts'
    mean, variance and skewness are those of Poisson(lam) (1 / sqrt(lam)), and they are integers."""
    n = 1_000_000
    out = np.empty(n, dtype=np.float32)
    poisson_block(np.full(n, lam, dtype=np.float32), out, seed=3, normal_above=50.0)
    assert np.all(out == np.rint(out)) and out.min() >= 0
    c = out.astype(float)
    assert c.mean() == pytest.approx(lam, abs=5 * np.sqrt(lam / n))
    assert c.var() == pytest.approx(lam, rel=0.01)
    skew = np.mean((c - c.mean()) ** 3) / c.var() ** 1.5
    assert skew == pytest.approx(1 / np.sqrt(lam), abs=0.015)
