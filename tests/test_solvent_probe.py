"""models/solvent_probe.py and its use by the Predictor: mixtures, shifts, widened uncertainties, bundle checks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qdots_bluesky.models.bundle import T_SOLVENT_PROBE, BundleError, read_bundle, save_bundle
from qdots_bluesky.models.solvent_probe import (
    PROBE_SHARE,
    check_probes,
    mixed_patterns,
    padded_ends,
    probe_shift,
    probe_widened_std,
)
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.standardize import QGrid, standardize_pattern


def test_mixtures_are_the_training_mixing_in_blocks_per_probe():
    rng = np.random.default_rng(0)
    X = rng.random((3, 50)).astype(np.float32)
    X /= X.mean(axis=1, keepdims=True)
    probes = rng.random((2, 50)).astype(np.float32)
    probes /= probes.mean(axis=1, keepdims=True)
    mixed = mixed_patterns(X, probes)
    assert mixed.shape == (6, 50) and mixed.dtype == np.float32
    assert np.allclose(mixed[4], (1 - PROBE_SHARE) * X[1] + PROBE_SHARE * probes[1], atol=1e-6)  # block 1, row 1
    assert np.allclose(mixed.mean(axis=1), 1.0, atol=1e-5)  # mean 1 in, mean 1 out


def test_truncated_patterns_are_mixed_on_their_measured_points_and_padded_again():
    """Training mixes a solvent on the measured axis and then pads; the probe must do the same, not add solvent to
    the padding (a laboratory scan is padded over two thirds of the grid)."""
    q = QGrid().q
    x = np.linspace(1.5, 6.0, 900)  # Q 1.5-6 1/A: padded below 1.5 and above 6
    X, report = standardize_pattern(x, 1.0 + np.exp(-((x - 2.0) / 0.1) ** 2), x_unit="q")
    lo, hi = padded_ends(X[None])
    assert (lo[0], hi[0]) == (report.n_pad_low, report.n_pad_high) and lo[0] > 100 and hi[0] > 1000
    solvent = np.exp(-((q - 1.4) / 0.5) ** 2) + 0.1
    mixed = mixed_patterns(X[None], solvent[None])[0]
    a, b = lo[0], q.size - hi[0]
    assert np.all(mixed[:a] == mixed[0]) and np.all(mixed[b:] == mixed[-1])  # still padded, one value each end
    assert mixed[0] == pytest.approx(mixed[a:a + 5].mean(), rel=1e-5)  # with the outermost measured points' mean
    assert mixed.mean() == pytest.approx(1.0, rel=1e-5)
    inside = mixed[a:b] / mixed[a:b].mean()
    expected = 0.7 * X[a:b] / X[a:b].mean() + 0.3 * solvent[a:b] / solvent[a:b].mean()
    assert np.allclose(inside, expected / expected.mean(), rtol=1e-5)
    full = np.ones((1, q.size), np.float32)
    full[0, 1::2] = 1.5  # no constant run at either end: nothing padded
    assert [int(v[0]) for v in padded_ends(full)] == [0, 0]


def test_shift_is_the_largest_over_probes_of_the_probed_columns():
    mean = np.array([[1.0, 2.0, 0.1, 0.0], [1.5, 1.6, 0.2, 0.0]])
    mixed = np.concatenate([mean + [0.1, -0.3, 5.0, 5.0], mean + [-0.2, 0.1, 5.0, 5.0]])
    assert np.allclose(probe_shift(mean, mixed), [[0.2, 0.3], [0.2, 0.3]])  # dispersion and strain not probed
    assert probe_shift(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 2)


def test_widening_adds_in_quadrature_to_the_sizes_only():
    std = np.array([[0.03, 0.04, 0.01, 0.001]])
    out = probe_widened_std(std, np.array([[0.04, 0.03]]))
    assert np.allclose(out, [[0.05, 0.05, 0.01, 0.001]]) and np.array_equal(std, [[0.03, 0.04, 0.01, 0.001]])


@pytest.mark.parametrize("bad, why", [(np.ones((2, 10)), "shape"), (np.ones(50), "shape"),
                                      (-np.ones((1, 50)), "positive mean"), (np.full((1, 50), np.nan), "finite")])
def test_bad_probes_are_refused(bad, why):
    with pytest.raises(ValueError, match=why):
        check_probes(bad, 50)


def _rock_salt_peaks(q: np.ndarray, diameter_nm: float, a: float = 5.936) -> np.ndarray:
    """A PbS-like pattern on ``q`` (1/A): Gaussian peaks of Scherrer width for ``diameter_nm`` at the rock-salt
    reflections (all-even strong, all-odd weak) over a smooth background, mean 1 (float32)."""
    y = 0.3 * np.exp(-q / 6.0) + 0.05
    sigma = 2 * np.pi * 0.9 / (10 * diameter_nm) / 2.355
    squares = {h * h + k * k + l * l for h in range(8) for k in range(8) for l in range(8)
               if h % 2 == k % 2 == l % 2 and h + k + l > 0}
    for s in sorted(squares):
        qc = 2 * np.pi * np.sqrt(s) / a
        if qc < 16:
            y = y + (4.0 if s % 2 == 0 else 1.0) * np.exp(-0.02 * qc * qc) / qc * np.exp(-0.5 * ((q - qc) / sigma) ** 2)
    return (y / y.mean()).astype(np.float32)


def _with_probes(contents, probes):
    tensors = dict(contents.tensors)
    if probes is None:
        tensors.pop(T_SOLVENT_PROBE, None)
    else:
        tensors[T_SOLVENT_PROBE] = np.asarray(probes, np.float32)
    return dataclasses.replace(contents, tensors=tensors, coarse=None)


def test_the_predictor_widens_by_the_shift_before_its_calibration():
    contents = read_bundle()  # the shipped bundle: a continuous head
    q = contents.grid.q
    X = np.stack([_rock_salt_peaks(q, d) for d in (3.0, 5.0, 7.0)])
    plain = Predictor.from_contents(_with_probes(contents, None), device="numpy")
    est0 = plain.predict_standardized(X)
    # a probe equal to the pattern itself mixes nothing in: the same answer
    same = Predictor.from_contents(_with_probes(contents, X[:1]), device="numpy").predict_standardized(X[:1])[0]
    assert same.size_std_nm == pytest.approx(est0[0].size_std_nm, rel=1e-6)
    assert same.size_nm == pytest.approx(est0[0].size_nm, rel=1e-6)  # (one row against three: BLAS rounding)
    # a real solvent-like probe: the sizes stay, their uncertainties grow by the shift in quadrature (then calibrated)
    probe = np.exp(-((q - 1.4) / 0.4) ** 2) + 0.2
    probed = Predictor.from_contents(_with_probes(contents, [probe / probe.mean()]), device="numpy")
    est1 = probed.predict_standardized(X)
    for a, b in zip(est0, est1):
        assert b.size_nm == a.size_nm and b.dispersion == a.dispersion and b.strain_std == a.strain_std
        assert b.size_std_nm > a.size_std_nm and b.size_volume_std_nm > a.size_volume_std_nm


def test_bundle_check_of_the_probe_tensor(tmp_path):
    pytest.importorskip("torch")  # save_bundle writes a torch network
    from qdots_bluesky.models.network import QDotsNet, load_weights

    contents = read_bundle()
    net = load_weights(QDotsNet(contents.config), contents.weights)
    meta = {k: v for k, v in contents.metadata.items() if k not in ("format", "format_version", "network",
                                                                      "coarse_specialist")}
    good = dict(contents.tensors, **{T_SOLVENT_PROBE: np.ones((2, contents.config["n_points"]), np.float32)})
    path = save_bundle(tmp_path / "ok.safetensors", net, meta, good)
    assert read_bundle(path).tensors[T_SOLVENT_PROBE].shape == (2, contents.config["n_points"])
    bad = dict(contents.tensors, **{T_SOLVENT_PROBE: np.ones((2, 7), np.float32)})
    with pytest.raises(BundleError, match="solvent_probe"):
        read_bundle(save_bundle(tmp_path / "bad.safetensors", net, meta, bad))
