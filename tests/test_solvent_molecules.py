"""Solvent molecules (sim/physics/solvents/molecules.py): geometry and conformers."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics import solvents as S
from qdots_bluesky.sim.physics.solvents import molecules


def _angle(a, b, c):
    u, v = a - b, c - b
    return np.degrees(np.arccos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)))


def test_hexane_geometry():
    m = S.solvent_molecule("hexane")
    assert m.get_chemical_formula() == "C6H14"
    p = m.get_positions()
    d = m.get_all_distances()
    for i in range(5):
        assert d[i, i + 1] == pytest.approx(1.53, abs=1e-6)
    for k, parent in enumerate(m.info["h_parent"]):
        assert d[parent, 6 + k] == pytest.approx(1.09, abs=1e-6)
    for i in range(1, 5):
        assert _angle(p[i - 1], p[i], p[i + 1]) == pytest.approx(109.47, abs=0.01)
    # all-trans planar zigzag: C1...C6 = sqrt((5 * 1.53 sin(a/2))^2 + (1.53 cos(a/2))^2) = 6.308 A
    half = np.radians(109.4712 / 2)
    assert d[0, 5] == pytest.approx(np.hypot(5 * 1.53 * np.sin(half), 1.53 * np.cos(half)), abs=1e-3)
    assert np.abs(p[:6, 2]).max() < 1e-9  # carbon skeleton planar
    # no two H closer than the geminal 1.78 A
    hh = d[6:, 6:][np.triu_indices(14, 1)]
    assert hh.min() == pytest.approx(1.09 * np.sqrt(8 / 3), abs=1e-3)


def test_toluene_geometry():
    m = S.solvent_molecule("toluene")
    assert m.get_chemical_formula() == "C7H8"
    d = m.get_all_distances()
    p = m.get_positions()
    ring = [d[i, (i + 1) % 6] for i in range(6)]
    np.testing.assert_allclose(ring, 1.39, atol=1e-6)
    assert d[0, 6] == pytest.approx(1.51, abs=1e-6)
    for k, parent in enumerate(m.info["h_parent"]):
        assert d[parent, 7 + k] == pytest.approx(1.09, abs=1e-6)
    assert np.allclose(p[:13, 2], 0.0, atol=1e-9)  # ring, methyl C and ring H planar
    assert _angle(p[6], p[0], p[1]) == pytest.approx(120.0, abs=1e-6)


def test_hexane_rotational_isomers():
    confs = molecules.conformers("hexane")
    assert len(confs) == 17  # 27 t/g+/g- sequences less the 10 with a g+g- pair
    weights = np.array([w for _, w in confs])
    assert weights.sum() == pytest.approx(1.0)
    # fraction of gauche inner bonds: C1...C4-type distances of 2.5-3.0 A instead of 3.85 A (trans)
    gauche = 0.0
    for atoms, w in confs:
        d = atoms.get_all_distances()
        gauche += w * sum(d[i, i + 3] < 3.2 for i in range(3)) / 3
    assert 0.30 < gauche < 0.45  # liquid n-alkanes: ~35-40 % gauche at room temperature
