"""The closed-form growth law of the simulated synthesis (sim/beamline/growth.py)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.beamline.growth import GrowthLaw


def test_growth_monotonic_in_range_and_hotter_is_bigger():
    law = GrowthLaw()
    t = np.linspace(0, 3600, 121)
    previous = None
    for temp in (80.0, 120.0, 150.0, 180.0):
        tr = law.trajectory(t, temp, 30.0)
        d = tr["mean_nm"]
        assert d[0] == pytest.approx(2.0)
        assert np.all(np.diff(d) >= -1e-12)
        assert np.all((d >= 2.0) & (d <= 10.0))
        assert np.all(np.diff(tr["fraction"]) >= -1e-12) and tr["fraction"][-1] <= 1.0
        if previous is not None:
            assert np.all(d[1:] >= previous[1:])
        previous = d
    end = {temp: law.trajectory([3600.0], temp, 30.0)["mean_nm"][0] for temp in (80.0, 120.0, 150.0)}
    assert 3.0 < end[80.0] < 4.5 and 5.5 < end[120.0] < 7.5 and 8.5 < end[150.0] <= 10.0


def test_dispersion_narrows_then_broadens():
    law = GrowthLaw()
    t = np.linspace(0, 3600, 361)
    for temp in (100.0, 120.0, 150.0):
        s = law.trajectory(t, temp, 30.0)["dispersion"]
        i = int(np.argmin(s))
        assert 0 < i < len(t) - 1
        assert s[0] > s[i] + 0.08  # size focusing from ~19 %
        assert s[i] < 0.09
        assert s[-1] > s[i] + 0.04  # Ostwald ripening broadens again
        assert np.all(np.diff(s[: i + 1]) <= 1e-12) and np.all(np.diff(s[i:]) >= -1e-12)
        assert s[-1] <= law.ripening_dispersion + 1e-9


def test_late_growth_follows_lsw_and_arrhenius():
    law = GrowthLaw(max_diameter_nm=50.0)
    assert law.ripening_rate(150) > law.ripening_rate(120) > law.ripening_rate(80)
    assert law.conversion_time(150) < law.conversion_time(120) < law.conversion_time(80)
    t = np.array([2000.0, 3000.0, 4000.0])
    d3 = law.trajectory(t, 120.0, 30.0)["mean_nm"] ** 3
    slopes = np.diff(d3) / np.diff(t)
    assert slopes == pytest.approx([law.ripening_rate(120.0)] * 2, rel=1e-3)  # D^3 - D0^3 = K t


def test_evolve_is_exact_under_splitting():
    law = GrowthLaw()
    s0 = law.start(130.0, 40.0)
    once = law.observe(law.evolve(s0, 900.0, 130.0))
    split = law.observe(law.evolve(law.evolve(law.evolve(s0, 100.0, 130.0), 300.0, 130.0), 500.0, 130.0))
    assert split.mean_nm == pytest.approx(once.mean_nm, rel=1e-12)
    assert split.dispersion == pytest.approx(once.dispersion, rel=1e-12)
    with pytest.raises(ValueError):
        GrowthLaw(nucleation_dispersion=0.7)
