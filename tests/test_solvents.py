"""The public API of the built-in solvent models (qdots_bluesky.sim.physics.solvents): errors, cache, physics limits."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics import solvents as S
from qdots_bluesky.sim.physics.solvents import blanks
from qdots_bluesky.sim.physics.form_factors import complex_form_factor

Q_GRID = np.linspace(1.0, 15.0, 5004)


def _unit_area(q, y):
    return y / np.trapezoid(y, q)


def _rel_rms(a, b):
    return np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2))


# ------------------------------------------------------------------------------ API and errors


def test_names_and_unknown_solvent():
    assert S.solvent_names() == ["hexane", "toluene"]
    with pytest.raises(ValueError, match="hexane, toluene"):
        S.solvent_pattern("water", Q_GRID)
    np.testing.assert_array_equal(S.solvent_pattern("n-hexane", Q_GRID), S.solvent_pattern("hexane", Q_GRID))


@pytest.mark.parametrize(
    "bad_q",
    [np.array([-0.1, 1.0]), np.array([1.0, np.nan]), np.ones((2, 3)), np.array([]), np.array([1.0, 30.0]), "abc"],
)
def test_bad_q_raises(bad_q):
    with pytest.raises(ValueError, match="1/A"):
        S.solvent_pattern("toluene", bad_q, wavelength_a=0.56)


def test_bad_wavelength_raises():
    with pytest.raises(ValueError, match="wavelength"):
        S.solvent_pattern("hexane", Q_GRID, wavelength_a=-1.0)


def test_cache_returns_independent_copies():
    a = S.solvent_pattern("hexane", Q_GRID)
    a[:] = 0.0
    b = S.solvent_pattern("hexane", Q_GRID)
    assert b.min() > 0 and b.shape == Q_GRID.shape
    # a different wavelength is a different entry (Compton recoil and f' depend on it)
    c = S.solvent_pattern("hexane", Q_GRID, wavelength_a=0.7)
    assert not np.allclose(b, c)


@pytest.mark.parametrize("name", ["hexane", "toluene"])
def test_zero_q_intramolecular_limit(name):
    """At Q = 0 every pair term is f_i f_j*: the molecular Debye sum is |sum f|^2 exactly."""
    comp = S.solvent_components(name, np.array([0.0, 1e-4]), wavelength_a=0.56)
    elements = S.solvent_molecule(name).get_chemical_symbols()
    f_sum = sum(complex_form_factor(e, np.array([0.0]), 0.56)[0] for e in elements)
    assert comp["intramolecular"][0] == pytest.approx(abs(f_sum) ** 2, rel=1e-9)
    n_electrons = sum(S.solvent_molecule(name).get_atomic_numbers())  # 50 for both
    assert comp["intramolecular"][0] == pytest.approx(n_electrons**2, rel=2e-3)
    assert comp["compton"][0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["hexane", "toluene"])
def test_high_q_limit_is_independent_scattering(name):
    """At high Q the pattern tends to sum |f|^2 + Compton (all interference damped)."""
    q = np.linspace(18.0, 21.0, 31)
    wl = 0.56
    total = S.solvent_pattern(name, q, wavelength_a=wl)
    comp = S.solvent_components(name, q, wavelength_a=wl)
    elements = S.solvent_molecule(name).get_chemical_symbols()
    independent = sum(np.abs(complex_form_factor(e, q, wl)) ** 2 for e in elements) + comp["compton"]
    np.testing.assert_allclose(total, independent, rtol=0.02)
    # Compton dominates there and approaches the electron count times the recoil factor
    assert np.all(comp["compton"] > 0.8 * independent)


@pytest.mark.parametrize("name, expected", [("hexane", 1.40), ("toluene", 1.30)])
def test_main_peak_position(name, expected):
    q = np.linspace(0.8, 2.5, 1701)
    peak = blanks.peak_position(q, S.solvent_pattern(name, q), 0.8, 2.5, smooth_a=0.002)
    assert abs(peak - expected) < 0.1


def test_hexane_and_toluene_differ():
    h = _unit_area(Q_GRID, S.solvent_pattern("hexane", Q_GRID))
    t = _unit_area(Q_GRID, S.solvent_pattern("toluene", Q_GRID))
    assert _rel_rms(h, t) > 0.10
    q = np.linspace(0.8, 2.5, 1701)
    ph = blanks.peak_position(q, S.solvent_pattern("hexane", q), 0.8, 2.5, smooth_a=0.002)
    pt = blanks.peak_position(q, S.solvent_pattern("toluene", q), 0.8, 2.5, smooth_a=0.002)
    assert ph - pt > 0.08  # measured: 0.127 1/A
