"""Scattering-vector conversions and the x-unit names (qdots_bluesky/units.py)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.units import XUnit, q_to_tth, tth_to_q


def test_q_and_two_theta_round_trip_and_bragg_law():
    tth = np.array([1.0, 20.0, 84.0, 150.0])
    np.testing.assert_allclose(q_to_tth(tth_to_q(tth, 0.5646), 0.5646), tth, rtol=1e-12)
    # Bragg: d = lambda / (2 sin theta) and Q = 2 pi / d
    d = 0.5646 / (2 * np.sin(np.radians(10.0)))
    assert tth_to_q(20.0, 0.5646) == pytest.approx(2 * np.pi / d, rel=1e-12)


def test_q_beyond_the_wavelength_limit_is_refused():
    with pytest.raises(ValueError, match="cannot be reached"):
        q_to_tth(np.array([9.0]), 1.5406)  # 4 pi / 1.5406 = 8.16 1/A


def test_x_unit_names():
    assert XUnit.parse("TTH") is XUnit.TTH and XUnit.parse("q") is XUnit.Q
    assert XUnit.TTH == "tth" and XUnit.choices() == ["tth", "q"]
    with pytest.raises(ValueError, match=r"x_unit '2theta' is not known; accepted: 'tth' \(2theta, degrees\) or 'q'"):
        XUnit.parse("2theta")
