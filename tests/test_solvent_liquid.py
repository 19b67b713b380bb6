"""Liquid structure of the solvents (sim/physics/solvents/liquid.py): RISM, decoupling, low-Q limit."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics import solvents as S
from qdots_bluesky.sim.physics.solvents import blanks, liquid

Q_GRID = np.linspace(1.0, 15.0, 5004)


@pytest.mark.parametrize("name", ["hexane", "toluene"])
def test_rism_solution_is_a_liquid(name):
    sol = liquid.solve_rism(name)
    g = sol.g_r
    assert np.abs(g[sol.r < 2.5]).max() < 1e-3  # excluded core
    assert np.abs(g[sol.r > 20.0] - 1.0).max() < 0.01  # no long-range order
    assert 1.1 < g[(sol.r > 3.0) & (sol.r < 8.0)].max() < 2.0  # a first neighbour shell
    # physical branch: S(0) = sum_ab (omega_ab + rho h_ab)(k -> 0) / n^2 = 1 + rho <h(0)> > 0
    # (RISM's value is far too large, hence the low-Q continuation)
    assert 1.0 + S.solvent_number_density(name) * sol.h_k[0].mean() > 0.0


def test_decoupling_model_misplaces_the_hexane_peak():
    q = np.linspace(0.8, 2.5, 1701)
    y = S.solvent_components("hexane", q, liquid_model="decoupling")["total"]
    assert blanks.peak_position(q, y, 0.8, 2.5, smooth_a=0.002) < 1.25
    with pytest.raises(ValueError, match="rism, decoupling"):
        S.solvent_components("hexane", q, liquid_model="md")


@pytest.mark.parametrize("name", ["hexane", "toluene"])
def test_low_q_continuation_reaches_thermodynamic_limit(name):
    q = np.linspace(0.0, 1.2, 241)
    comp = S.solvent_components(name, q, wavelength_a=0.56)
    coherent = comp["intramolecular"] + comp["intermolecular"]
    n_electrons = sum(S.solvent_molecule(name).get_atomic_numbers())
    s0 = liquid.thermodynamic_s0(name)
    assert 0.015 < s0 < 0.04  # rho k_B T kappa_T of an organic liquid
    assert coherent[0] == pytest.approx(n_electrons**2 * s0, rel=2e-3)
    assert np.all(np.diff(coherent) > -1e-9)  # rises monotonically towards the main peak
    # continuous across the matching point
    qc = liquid.LOW_Q_MATCH_A
    edge = S.solvent_pattern(name, np.array([qc - 1e-6, qc + 1e-6]), wavelength_a=0.56)
    assert edge[0] == pytest.approx(edge[1], rel=1e-4)
