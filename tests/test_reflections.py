"""Bragg reflections and March-Dollase factors (sim/physics/reflections.py)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.reflections import bragg_reflections, march_dollase

A_PBS = 5.934


def test_march_dollase_normalised_and_identity():
    c = np.linspace(-1, 1, 200001)  # uniform in cos(alpha) = uniform over the sphere
    for r in (0.6, 0.8, 1.0, 1.3):
        assert np.trapezoid(march_dollase(c, r), c) / 2 == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(march_dollase(c, 1.0), 1.0)


def test_pbs_reflections():
    refl = bragg_reflections(get_structure("PbS"), 3.6)
    table = {r.hkl: r for r in refl}
    assert list(table)[:4] == [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1)]
    for hkl, m in (((1, 1, 1), 8), ((2, 0, 0), 6), ((2, 2, 0), 12), ((3, 1, 1), 24)):
        assert table[hkl].multiplicity == m
        assert table[hkl].q == pytest.approx(2 * np.pi * np.sqrt(sum(v * v for v in hkl)) / A_PBS, rel=1e-9)
    assert (1, 0, 0) not in table and (1, 1, 0) not in table and (2, 1, 0) not in table  # mixed parity absent
    # 333 and 511 share Q but are separate families (different texture factors)
    hi = {r.hkl: r.multiplicity for r in bragg_reflections("PbS", 5.6, 5.4)}
    assert hi == {(5, 1, 1): 24, (3, 3, 3): 8}


def test_zincblende_reflections_from_primitive_cell():
    refl = bragg_reflections("CdSe", 3.0)
    assert [(r.hkl, r.multiplicity) for r in refl] == [((1, 1, 1), 8), ((2, 0, 0), 6), ((2, 2, 0), 12)]
    assert refl[1].f_squared < 0.1 * refl[0].f_squared  # (200) weak: Cd - Se
