"""The model that ships inside the package: provenance, and behaviour on patterns with a known answer.

These tests use the trained default bundle (not a tiny random one), so they check the physics the
network learned: a simulated PbS pattern gets its size, a pure-solvent pattern (built-in model or
the measured blanks, when ../shared is present) is reported as holding no nanocrystals.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qdots_bluesky.io import read_pattern
from qdots_bluesky.models.bundle import default_bundle_path, read_bundle
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.population import simulate_population
from qdots_bluesky.sim.physics.solvents import solvent_pattern
from qdots_bluesky.units import q_to_tth

SOLVENTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "solvents"
WAVELENGTH = 0.5646


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_bundle(device="numpy")


def test_bundle_is_small_and_carries_its_provenance():
    path = default_bundle_path()
    assert 20_000 < path.stat().st_size < 800_000  # hundreds of kB: weights, calibration, OOD statistics, JSON provenance
    meta = read_bundle(path).metadata
    for key in ("created", "program_version", "augmentation", "training", "training_library", "split", "metrics"):
        assert key in meta
    assert len(meta["training_library"]["sha256"]) == 64
    assert meta["augmentation"]["blank_fraction"] > 0
    assert meta["network"]["continuous_head"] is True and "population_ranges" in meta["training"]


def test_sizes_continuous_populations_within_their_uncertainty(predictor):
    """Recomputed, not read from the bundle: 60 simulated populations of continuous size (2.5-9.5 nm, dispersion
    5-20 %) with counting noise, sized through the Predictor; the errors are small and within the stated uncertainty."""
    from qdots_bluesky.sim.physics.cluster_basis import build_cluster_basis

    basis = build_cluster_basis()
    rng = np.random.default_rng(7)
    mean, dispersion = rng.uniform(2.5, 9.5, 60), rng.uniform(0.05, 0.2, 60)
    crystal, compton = basis.patterns(mean, dispersion, np.zeros(60))
    estimates = predictor.predict_batch(basis.q, _noisy(crystal + compton, 80.0, 7), x_unit="q")
    size = np.array([e.size_nm for e in estimates])
    std = np.array([e.size_std_nm for e in estimates])
    error = size - mean
    assert np.mean(np.abs(error)) < 0.1  # nm
    assert np.mean(np.abs(error) <= 2.0 * std) >= 0.9 and np.all(std > 0)
    volume = np.array([e.size_volume_nm for e in estimates])
    assert np.all(volume > size)  # the volume-weighted mean exceeds the number-weighted one


def _noisy(y: np.ndarray, snr: float, seed: int) -> np.ndarray:
    """Poisson counts with SNR^2 counts on the average point of each pattern (row)."""
    counts = y * snr**2 / np.mean(y, axis=-1, keepdims=True)
    return np.random.default_rng(seed).poisson(counts).astype(float)


@pytest.mark.parametrize("diameter_nm", [3.0, 5.5, 8.0])
def test_sizes_a_simulated_pbs_pattern(predictor, diameter_nm):
    q = np.linspace(0.9, 15.2, 12_000)
    y = simulate_population(get_structure("PbS"), diameter_nm, q, 0.1, 0.0, WAVELENGTH).total
    est = predictor.predict_pattern(q_to_tth(q, WAVELENGTH), _noisy(y, 80.0, 1), wavelength=WAVELENGTH)
    assert abs(est.size_nm - diameter_nm) < 0.4
    assert est.nanocrystal_probability > 0.9 and "no_nanocrystals" not in est.flags


@pytest.mark.parametrize("solvent", ["hexane", "toluene"])
def test_built_in_pure_solvent_is_not_sized(predictor, solvent):
    q = np.linspace(0.9, 15.2, 12_000)
    y = solvent_pattern(solvent, q, wavelength_a=WAVELENGTH)
    est = predictor.predict_pattern(q, _noisy(y, 40.0, 2), x_unit="q")
    assert "no_nanocrystals" in est.flags and est.nanocrystal_probability < 0.5
    _assert_no_size(est, "no_nanocrystals")


def _assert_no_size(est, status: str) -> None:
    """No size, no class and no confidence anywhere a user reads them: the estimate, its JSON and its summary."""
    assert est.status == status
    assert np.isnan(est.size_nm) and np.isnan(est.size_class_nm) and np.isnan(est.confidence)
    d = est.to_dict()
    assert d["status"] == status and d["size_nm"] is None and d["confidence"] is None
    assert d["dispersion"] is None and d["strain"] is None
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN anywhere
    assert " nm (" not in est.summary() and "confidence" not in est.summary()


@pytest.mark.parametrize("diameter_nm", [14.0])
def test_dots_larger_than_the_trained_range_get_no_size(predictor, diameter_nm):
    """Simulated 14 nm PbS: beyond the trained means (1.5-11 nm); reported as beyond it, not as the edge class."""
    q = np.linspace(0.9, 15.2, 12_000)
    y = simulate_population(get_structure("PbS"), diameter_nm, q, 0.05, 0.0, WAVELENGTH, max_diameter_nm=18.0).total
    est = predictor.predict_pattern(q, _noisy(y, 80.0, 8), x_unit="q")
    assert "no_nanocrystals" not in est.flags
    _assert_no_size(est, "above_range")
    assert est.summary().startswith(f"> {est.trained_range_nm[1]:.1f} nm")


@pytest.mark.parametrize("name", ["hexane.xye", "toluene.xye"])
def test_measured_blanks_are_not_sized(predictor, name):
    path = SOLVENTS / name
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared/data is a developer-only folder)")
    pattern = read_pattern(path)
    est = predictor.predict_pattern(pattern.x, pattern.y, wavelength=0.564162)
    assert "no_nanocrystals" in est.flags and est.nanocrystal_probability < 0.5
    _assert_no_size(est, "no_nanocrystals")


def test_empty_capillary_is_not_sized(predictor):
    # counting noise on a flat detector background plus a borosilicate-like glass hump: no dots, no solvent
    q = np.linspace(0.9, 15.2, 12_000)
    y = 1.0 + 0.6 * np.exp(-0.5 * ((q - 1.6) / 0.4) ** 2)
    for background in (np.ones_like(q), y):
        est = predictor.predict_pattern(q, _noisy(background, 30.0, 3), x_unit="q")
        assert "no_nanocrystals" in est.flags and est.nanocrystal_probability < 0.5


def _binned(diameter_nm: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """A PbS pattern recorded as ``n_points`` bin averages over Q 1-15 1/A (as a detector integrated to that step)."""
    h = 14.0 / (n_points - 1)
    centers = np.linspace(1.0, 15.0, n_points)
    fine = (centers[:, None] + ((np.arange(40) + 0.5) / 40 - 0.5) * h).ravel()
    y = simulate_population(get_structure("PbS"), diameter_nm, fine, 0.1, 0.0, WAVELENGTH).total
    return centers, y.reshape(n_points, 40).mean(axis=1)


def test_coarse_patterns_go_to_the_coarse_specialist(predictor):
    assert predictor.coarse is not None and predictor.coarse_min_q_step == pytest.approx(0.037)
    for diameter_nm in (3.5, 6.5):
        q, y = _binned(diameter_nm, 251)  # a step of 0.056 1/A
        est = predictor.predict_pattern(q, _noisy(y, 80.0, 4), x_unit="q")
        assert est.network == "coarse" and "coarse_sampling" in est.flags
        assert abs(est.size_nm - diameter_nm) < 0.4 and "no_nanocrystals" not in est.flags
    q, y = _binned(6.5, 626)  # 0.022 1/A: the main network
    est = predictor.predict_pattern(q, _noisy(y, 80.0, 5), x_unit="q")
    assert est.network == "main" and abs(est.size_nm - 6.5) < 0.4
    q = np.linspace(1.0, 15.0, 251)
    est = predictor.predict_pattern(q, _noisy(solvent_pattern("toluene", q, wavelength_a=WAVELENGTH), 40.0, 6), x_unit="q")
    assert est.network == "coarse" and "no_nanocrystals" in est.flags
