"""The simulated gold synthesis beamline (issue 18): growth law and structure vs size."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qdots_bluesky.sim.beamline.gold_growth import GoldGrowthLaw, GoldStructureLaw


# --------------------------------------------------------------------------------------------
# growth law
# --------------------------------------------------------------------------------------------
def test_induction_then_monotone_growth_from_nuclei_to_about_8_nm_in_an_hour():
    law = GoldGrowthLaw()
    t = np.linspace(0.0, 3600.0, 721)
    tr = law.trajectory(t, 80.0, 10.0)
    before = t < law.induction_s
    assert not tr["nucleated"][before].any() and tr["nucleated"][~before].all()
    assert np.all(tr["conversion"][before] == 0.0)
    assert np.all(np.diff(tr["mean_nm"]) >= 0) and np.all(np.diff(tr["mean_nm"][~before]) > 0)
    assert np.all(np.diff(tr["conversion"]) >= 0)
    assert tr["mean_nm"][~before][0] == pytest.approx(1.2, abs=0.01)
    assert 7.0 < tr["mean_nm"][-1] < 9.0
    s = tr["dispersion"][~before]
    k = int(np.argmin(s))
    assert 0 < k < s.size - 1 and np.all(np.diff(s[:k + 1]) <= 0) and np.all(np.diff(s[k:]) >= 0)  # focus, defocus
    assert 0.05 <= s.min() < 0.07 and s[0] > 0.17 and 0.10 < s[-1] <= 0.20


def test_evolution_is_exact_over_steps_and_hotter_is_sooner_and_faster():
    law = GoldGrowthLaw()
    s = law.start(80.0, 10.0)
    for dt in (13.0, 47.0, 0.5, 300.0, 839.5):  # across the burst at 60 s
        s = law.evolve(s, dt, 80.0)
    one = law.evolve(law.start(80.0, 10.0), 1200.0, 80.0)
    assert law.observe(s).mean_nm == pytest.approx(law.observe(one).mean_nm, rel=1e-12)
    assert law.observe(s).dispersion == pytest.approx(law.observe(one).dispersion, rel=1e-12)
    assert law.induction_time(100.0) < law.induction_s < law.induction_time(60.0)
    hot, cold = (law.trajectory([600.0], temp, 10.0)["mean_nm"][0] for temp in (100.0, 60.0))
    assert hot > law.trajectory([600.0], 80.0, 10.0)["mean_nm"][0] > cold
    with pytest.raises(ValueError, match="accepted"):
        law.evolve(s, -1.0, 80.0)
    with pytest.raises(ValueError, match="accepted"):
        GoldGrowthLaw(induction_s=-5.0)


@pytest.mark.parametrize("d1, d2, width", [(2.0, 5.0, 0.15), (1.5, 3.5, 0.1)])
def test_structure_fractions_sum_to_one_and_cross_over_at_the_set_diameters(d1, d2, width):
    law = GoldStructureLaw(d1, d2, width)
    d = np.geomspace(0.8, 12.0, 400)
    f = law.fractions(d)
    assert f.shape == (d.size, 3) and np.all(f >= 0) and np.allclose(f.sum(axis=1), 1.0)
    ico, deca, fcc = f.T
    assert np.all(np.diff(ico) < 0) and np.all(np.diff(fcc) > 0)
    f1, f2 = law.fractions(d1), law.fractions(d2)
    assert f1[0] == pytest.approx(f1[1], rel=1e-12) and f2[1] == pytest.approx(f2[2], rel=1e-12)
    assert np.argmax(law.fractions(0.8 * d1)) == 0
    assert np.argmax(law.fractions(math.sqrt(d1 * d2))) == 1
    assert np.argmax(law.fractions(1.25 * d2)) == 2
    with pytest.raises(ValueError, match="accepted"):
        GoldStructureLaw(d2, d1)
