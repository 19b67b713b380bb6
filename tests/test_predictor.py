"""Predictor plumbing (untrained tiny bundle), calibration helpers and flags."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import qdots_bluesky.models.bundle as bundle_mod
from _model_helpers import GRID, make_bundle, make_model, synthetic_patterns
from qdots_bluesky.models.bundle import BundleError
from qdots_bluesky.models.calibration import (
    calibration_tensors,
    expected_calibration_error,
    fit_feature_statistics,
    fit_temperature,
    mahalanobis_distance,
    named_calibration_tensors,
    softmax,
)
from qdots_bluesky.predictor import FLAGS, STATUSES, Predictor, SizeEstimate, resolve_device
from qdots_bluesky.units import q_to_tth


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("pred") / "tiny.safetensors")


@pytest.fixture(scope="module", params=["cpu", "numpy"])
def predictor(request, bundle_path):
    return Predictor.from_bundle(bundle_path, device=request.param)


# --- calibration ----------------------------------------------------------------------------
def test_fit_temperature_recovers_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, size=(20000, 17))
    p = softmax(true_logits)
    labels = (p.cumsum(1) > rng.random((p.shape[0], 1))).argmax(1)
    assert fit_temperature(true_logits * 3.0, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.05)
    assert fit_temperature(torch.from_numpy(true_logits / 2.0), torch.from_numpy(labels)) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ValueError):
        fit_temperature(true_logits, labels[:-1])


def test_expected_calibration_error():
    rng = np.random.default_rng(1)
    p = softmax(rng.normal(0.0, 2.0, size=(20000, 17)))
    labels = (p.cumsum(1) > rng.random((p.shape[0], 1))).argmax(1)
    assert expected_calibration_error(p, labels) < 0.02
    overconfident = softmax(np.log(p) * 4.0)
    assert expected_calibration_error(overconfident, labels) > 0.1


def test_feature_statistics_and_mahalanobis():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5000, 3)) @ np.array([[2.0, 0, 0], [0.5, 1.0, 0], [0, 0, 0.1]]) + 5.0
    stats = fit_feature_statistics(f, quantile=0.99, shrinkage=0.0)
    d = mahalanobis_distance(f, stats["feature_mean"], stats["feature_precision"])
    assert np.mean(d > stats["threshold"][0]) == pytest.approx(0.01, abs=0.003)
    assert np.mean(d**2) == pytest.approx(3.0, rel=0.05)  # chi-square with 3 degrees of freedom
    far = mahalanobis_distance(np.array([[5.0, 5.0, 6.0]]), stats["feature_mean"], stats["feature_precision"])
    assert far[0] > 2 * stats["threshold"][0]


def test_calibration_tensors_under_the_bundle_names():
    rng = np.random.default_rng(3)
    size_logits, disp_logits, features = rng.normal(size=(200, 17)), rng.normal(size=(200, 4)), rng.normal(size=(200, 5))
    size_labels, disp_labels = rng.integers(0, 17, 200), rng.integers(0, 4, 200)
    tensors = calibration_tensors(size_logits, size_labels, disp_logits, disp_labels, features, quantile=0.99)
    assert tuple(tensors) == bundle_mod.REQUIRED_TENSORS and all(v.dtype == np.float32 for v in tensors.values())
    # the trainer's path: the same tensors from the temperatures (kept in float64 for its metrics) and statistics
    same = named_calibration_tensors(fit_temperature(size_logits, size_labels), fit_temperature(disp_logits, disp_labels),
                                     fit_feature_statistics(features, quantile=0.99))
    for name in bundle_mod.REQUIRED_TENSORS:
        np.testing.assert_array_equal(tensors[name], same[name])
    assert tensors[bundle_mod.T_SIZE_TEMPERATURE][0] == np.float32(fit_temperature(size_logits, size_labels))


# --- predictor ------------------------------------------------------------------------------
def test_one_estimate_per_pattern(predictor):
    X = synthetic_patterns(7, seed=21)
    est = predictor.predict_standardized(X)
    assert len(est) == 7 and all(isinstance(e, SizeEstimate) for e in est)
    for e in est:
        assert sum(e.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert sum(e.dispersion_probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert set(e.flags) <= set(FLAGS) and e.status in STATUSES
        d = json.loads(json.dumps(e.to_dict()))
        assert d["status"] == e.status
        if e.status != "sized":  # no size, no class and no confidence where the model finds no dots
            assert "no_nanocrystals" in e.flags and e.status == "no_nanocrystals"
            assert np.isnan(e.size_nm) and np.isnan(e.size_class_nm) and np.isnan(e.confidence)
            assert d["size_nm"] is None and d["confidence"] is None
            assert e.summary().startswith("no nanocrystals detected")
            continue
        assert 2.0 <= e.size_nm <= 10.0
        assert e.size_class_nm in predictor.size_classes_nm
        assert e.dispersion in (0.05, 0.10, 0.15, 0.20)
        assert e.size_std_nm >= 0
        if "size_at_range_edge" in e.flags or "out_of_distribution" in e.flags:
            assert np.isnan(e.confidence) and "not assessed" in e.summary()
        else:
            assert e.confidence == max(e.probabilities.values())
        assert list(d["probabilities"])[:3] == ["2.0", "2.5", "3.0"]
        assert list(d["dispersion_probabilities"]) == ["0.05", "0.10", "0.15", "0.20"]


def test_batch_or_alone_and_devices_agree(bundle_path, predictor):
    X = synthetic_patterns(5, seed=22)
    batch = predictor.predict_standardized(X)
    for i in range(5):
        alone = predictor.predict_standardized(X[i])[0]
        assert alone.size_nm == pytest.approx(batch[i].size_nm, rel=1e-5)
        assert alone.probabilities == pytest.approx(batch[i].probabilities, rel=1e-4, abs=1e-7)
    other = Predictor.from_bundle(bundle_path, device="numpy" if predictor.device == "cpu" else "cpu")
    for a, b in zip(batch, other.predict_standardized(X)):
        assert a.size_nm == pytest.approx(b.size_nm, rel=1e-5)
        assert a.ood_distance == pytest.approx(b.ood_distance, rel=1e-3)
        assert a.flags == b.flags


def test_small_batches_give_the_same(bundle_path):
    X = synthetic_patterns(9, seed=23)
    one = Predictor.from_bundle(bundle_path, device="numpy", batch_size=4).predict_standardized(X)
    ref = Predictor.from_bundle(bundle_path, device="numpy").predict_standardized(X)
    assert [e.size_nm for e in one] == pytest.approx([e.size_nm for e in ref], rel=1e-5)


def test_predict_pattern_and_batch_from_raw_data(predictor):
    X = synthetic_patterns(3, seed=24)
    wavelength = 0.5646
    tth = np.arange(0.5, 120.0, 0.01)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / wavelength
    Y = np.stack([np.interp(q, GRID.q, x) for x in X]) * 1000.0
    batch = predictor.predict_batch(tth, Y, x_unit="tth", wavelength=wavelength)
    for i in range(3):
        single = predictor.predict_pattern(tth, Y[i], wavelength=wavelength)
        assert single.size_nm == pytest.approx(batch[i].size_nm, rel=1e-5)
        assert single.standardization["coverage"] == 1.0
        assert "truncated_q_range" not in single.flags and "padded" not in single.flags
    with pytest.raises(ValueError, match="wavelength"):
        predictor.predict_pattern(tth, Y[0])
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_standardized(np.ones((2, 100)))


def test_range_and_sampling_flags(predictor):
    x = synthetic_patterns(1, seed=25)[0]
    q_short = np.linspace(1.0, 6.0, 2000)
    e = predictor.predict_pattern(q_short, np.interp(q_short, GRID.q, x), x_unit="q")
    assert "truncated_q_range" in e.flags and "6.00" in e.flag_details["truncated_q_range"]
    q_almost = np.linspace(1.0, 14.35, 6000)  # pads grid points the network reads (it reads up to 14.43 1/A)
    e = predictor.predict_pattern(q_almost, np.interp(q_almost, GRID.q, x), x_unit="q")
    assert "padded" in e.flags and "truncated_q_range" not in e.flags
    q_beyond = np.linspace(1.0, 14.8, 6000)  # pads only points beyond the last convolution window: not flagged
    e = predictor.predict_pattern(q_beyond, np.interp(q_beyond, GRID.q, x), x_unit="q")
    assert e.standardization["n_pad_high"] > 0 and not {"padded", "truncated_q_range"} & set(e.flags)
    q_coarse = np.linspace(0.5, 15.5, 400)  # step 0.038 1/A: 13 grid steps
    e = predictor.predict_pattern(q_coarse, np.interp(q_coarse, GRID.q, x), x_unit="q")
    assert "coarse_sampling" in e.flags and "truncated_q_range" not in e.flags
    assert "13.4 x the grid step" in e.flag_details["coarse_sampling"]
    q_1251 = np.linspace(1.0, 15.0, 1251)  # step 4 grid steps: sized as well as fine data, not flagged
    e = predictor.predict_pattern(q_1251, np.interp(q_1251, GRID.q, x), x_unit="q")
    assert "coarse_sampling" not in e.flags
    tth = q_to_tth(np.linspace(1.0, 15.0, 20000), 0.5646)
    e = predictor.predict_pattern(tth, np.interp(np.linspace(1.0, 15.0, 20000), GRID.q, x), wavelength=0.5646)
    assert not {"coarse_sampling", "truncated_q_range", "padded"} & set(e.flags)


def test_flag_beyond_the_trained_q_range(predictor):
    """The shipped bundle was trained with Q starts up to 1.7 and ends from 3.0 1/A: data starting at 2.0 (the first
    reflections cut) are flagged, data within those ranges not (an end below 3.0 1/A cannot be standardized on the
    shipped grid: less than 2 1/A overlap); a bundle that does not record its augmentation (the tiny test bundle)
    raises no such flag."""
    shipped = Predictor.from_bundle(device="numpy")
    assert shipped.trained_q_ends == (1.7, 3.0)
    x = synthetic_patterns(1, seed=26)[0]
    for q_lo, q_hi, flagged in ((2.0, 15.0, True), (1.75, 12.0, True), (1.6, 15.0, False), (1.0, 3.1, False)):
        q = np.linspace(q_lo, q_hi, 3000)
        e = shipped.predict_pattern(q, np.interp(q, GRID.q, x), x_unit="q")
        assert ("beyond_trained_q_range" in e.flags) == flagged, (q_lo, q_hi, e.flags)
        if flagged:
            assert f"data cover Q {q_lo:.2f}-" in e.flag_details["beyond_trained_q_range"]
            assert "trained with starts up to 1.7 and ends from 3 1/A" in e.flag_details["beyond_trained_q_range"]
    q = np.linspace(2.5, 15.0, 3000)
    assert predictor.trained_q_ends is None
    assert "beyond_trained_q_range" not in predictor.predict_pattern(q, np.interp(q, GRID.q, x), x_unit="q").flags


def test_no_confidence_beside_the_q_range_warning(tmp_path):
    """A DSE pattern of 5 nm dots is sized with a calibrated confidence; cut to start at Q = 2 1/A (beyond the trained
    starts) it is flagged and its confidence is NaN, as for out_of_distribution: no class probability near 1 beside
    a warning."""
    from qdots_bluesky.cli import main as qdots_main
    from qdots_bluesky.io import read_pattern

    path = tmp_path / "pbs.xy"
    assert qdots_main(["simulate", "--material", "PbS", "--diameter", "5.0", "--dispersion", "0.1", "--q", "1:15:5004",
                       "-o", str(path)]) == 0
    pattern = read_pattern(path)
    shipped = Predictor.from_bundle(device="numpy")
    whole = shipped.predict_pattern(pattern.x, pattern.y, x_unit="q")
    assert np.isfinite(whole.confidence) and not {"beyond_trained_q_range", "out_of_distribution"} & set(whole.flags)
    keep = pattern.x >= 2.0
    cut = shipped.predict_pattern(pattern.x[keep], pattern.y[keep], x_unit="q")
    assert "beyond_trained_q_range" in cut.flags and np.isnan(cut.confidence) and np.isfinite(cut.size_nm)


def test_ood_flag_fires_for_a_constant_pattern(tmp_path):
    rng = np.random.default_rng(3)
    base = synthetic_patterns(4, seed=7)
    family = np.concatenate([b * (1 + 0.05 * rng.standard_normal((60, b.size))) for b in base]).astype(np.float32)
    family /= family.mean(axis=1, keepdims=True)
    path = make_bundle(tmp_path / "ood.safetensors", calibration_X=family,
                       feature_options={"quantile": 0.999, "margin": 1.0})
    predictor = Predictor.from_bundle(path, device="numpy")
    flat = predictor.predict_standardized(np.ones((1, GRID.n_points)))[0]
    assert "out_of_distribution" in flat.flags and flat.ood_distance > predictor.ood_threshold
    inside = predictor.predict_standardized(family[::10])
    assert sum("out_of_distribution" in e.flags for e in inside) <= 1


def test_confidence_and_edge_flags(tmp_path):
    sure = make_model()
    with torch.no_grad():
        sure.size_head.weight.zero_()
        sure.size_head.bias.copy_(torch.tensor([30.0] + [0.0] * 16))
    X = synthetic_patterns(3, seed=26)
    path = make_bundle(tmp_path / "edge.safetensors", model=sure, calibration_X=X)
    est = Predictor.from_bundle(path, device="numpy").predict_standardized(X)
    assert all(e.size_class_nm == 2.0 and "size_at_range_edge" in e.flags and "low_confidence" not in e.flags for e in est)
    assert all(np.isnan(e.confidence) for e in est)  # no confidence printed beside the edge warning
    p0 = est[0].probabilities[2.0]  # calibrated (T > 1 here: 30 % of the calibration labels are random)
    others = np.mean(np.arange(1, 17) * 0.5 + 2.0)
    assert est[0].size_nm == pytest.approx(2.0 * p0 + (1 - p0) * others, rel=1e-6)
    unsure = make_model()
    with torch.no_grad():
        unsure.size_head.weight.zero_()
        unsure.size_head.bias.zero_()
    path = make_bundle(tmp_path / "flat.safetensors", model=unsure, calibration_X=X)
    est = Predictor.from_bundle(path, device="numpy").predict_standardized(X)
    assert all("low_confidence" in e.flags and max(e.probabilities.values()) == pytest.approx(1 / 17) for e in est)
    assert est[0].size_nm == pytest.approx(6.0)
    assert est[0].size_std_nm >= np.sqrt(np.mean((np.arange(17) * 0.5 + 2 - 6.0) ** 2)) - 1e-9


def test_class_activation_map(predictor):
    X = synthetic_patterns(2, seed=27)
    cam = predictor.class_activation_map(X)
    assert cam.shape == (2, GRID.n_points)
    assert cam.min() >= 0 and cam.max() <= 1
    assert np.all(cam[:, 4800:] == 0)
    fine = predictor.class_activation_map(X, layer=1, target="dispersion")
    assert fine.shape == (2, GRID.n_points)
    with pytest.raises(ValueError):
        predictor.class_activation_map(X, layer=7)


def test_devices_and_default_bundle(tmp_path, monkeypatch):
    assert resolve_device("numpy") == "numpy"
    assert resolve_device(None) in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    monkeypatch.setattr(bundle_mod, "default_bundle_path", lambda: tmp_path / "default_model.safetensors")
    with pytest.raises(BundleError, match="qdots train"):
        Predictor.from_bundle()


# --- the coarse-sampling specialist -----------------------------------------------------------
@pytest.fixture(scope="module")
def two_networks(tmp_path_factory):
    """A bundle with a specialist, and bundles holding each of its two networks alone (same calibration)."""
    d = tmp_path_factory.mktemp("two")
    both = make_bundle(d / "both.safetensors", coarse_model=make_model(seed=5))
    main = make_bundle(d / "main.safetensors")
    coarse = make_bundle(d / "coarse.safetensors", seed=1, model=make_model(seed=5))  # calibrated as the specialist
    return both, main, coarse


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_coarse_patterns_go_to_the_specialist(two_networks, device):
    both, main, coarse = (Predictor.from_bundle(p, device=device) for p in two_networks)
    assert both.coarse_min_q_step == pytest.approx(0.037) and main.coarse is None
    x = synthetic_patterns(1, seed=31)[0]
    axes = {"fine": np.linspace(1.0, 15.0, 5004), "coarse": np.linspace(1.0, 15.0, 251), "at_threshold": np.linspace(1.0, 15.0, 379),
            "just_finer": np.linspace(1.0, 15.0, 381), "truncated_coarse": np.linspace(1.0, 8.0, 140)}
    for name, q in axes.items():
        e = both.predict_pattern(q, np.interp(q, GRID.q, x), x_unit="q")
        step = q[1] - q[0]
        alone = (coarse if step >= 0.037 else main).predict_pattern(q, np.interp(q, GRID.q, x), x_unit="q")
        assert e.network == ("coarse" if step >= 0.037 else "main"), name
        assert e.probabilities == pytest.approx(alone.probabilities, abs=1e-6), name
        assert e.to_dict()["network"] == e.network
    e = both.predict_pattern(axes["coarse"], np.interp(axes["coarse"], GRID.q, x), x_unit="q")
    assert "coarse-sampling network" in e.flag_details["coarse_sampling"]
    # a batch with both kinds keeps its order; without reports every row goes to the main network
    rows, reports = [], []
    for name in ("coarse", "fine", "coarse", "just_finer"):
        from qdots_bluesky.standardize import standardize_pattern

        r, rep = standardize_pattern(axes[name], np.interp(axes[name], GRID.q, x), x_unit="q", grid=GRID)
        rows.append(r)
        reports.append(rep)
    X = np.stack(rows)
    est = both.predict_standardized(X, reports)
    assert [e.network for e in est] == ["coarse", "main", "coarse", "main"]
    assert est[0].probabilities == pytest.approx(coarse.predict_standardized(X[:1], reports[:1])[0].probabilities, abs=1e-6)
    assert est[1].probabilities == pytest.approx(main.predict_standardized(X[1:2], reports[1:2])[0].probabilities, abs=1e-6)
    assert [e.network for e in both.predict_standardized(X)] == ["main"] * 4
    assert both.predict_standardized(np.zeros((0, GRID.n_points))) == []
    # the class activation map comes from the network that sized the row
    cam = both.class_activation_map(X, reports)
    np.testing.assert_allclose(cam[0], coarse.class_activation_map(X[:1])[0], atol=1e-6)
    np.testing.assert_allclose(cam[1], main.class_activation_map(X[1:2])[0], atol=1e-6)
    per_row = both.class_activation_map(X, reports, class_index=[3, 4, 5, 6])
    np.testing.assert_allclose(per_row[2], coarse.class_activation_map(X[2:3], class_index=5)[0], atol=1e-6)


def test_continuous_head_gives_sizes_with_uncertainties(tmp_path):
    """A bundle whose network has a continuous head: continuous size, volume-weighted size, dispersion and strain,
    each with its calibrated uncertainty, and class probabilities from the same Gaussian; devices agree."""
    import torch

    from qdots_bluesky.models.continuous import class_probabilities
    from qdots_bluesky.models.engine import continuous_estimates
    from qdots_bluesky.models.network import QDotsNet

    torch.manual_seed(3)
    model = QDotsNet(continuous_head=True).eval()
    with torch.no_grad():
        model.presence_head.bias.fill_(4.0)  # sees dots
    path = make_bundle(tmp_path / "continuous.safetensors", seed=3, model=model)
    X = synthetic_patterns(6, seed=11)
    results = {dev: Predictor.from_bundle(path, device=dev).predict_standardized(X) for dev in ("numpy", "cpu")}
    with torch.no_grad():
        raw = model(torch.from_numpy(X))["continuous"].numpy()
    mean, std = continuous_estimates(raw, model.config)
    for i, (a, b) in enumerate(zip(results["numpy"], results["cpu"])):
        assert a.size_nm == pytest.approx(np.exp(mean[i, 0]), rel=1e-4)
        assert a.size_std_nm == pytest.approx(1.5 * np.exp(mean[i, 0]) * std[i, 0], rel=1e-3)  # calibration x 1.5
        assert a.size_volume_nm == pytest.approx(np.exp(mean[i, 1]), rel=1e-4)
        assert a.dispersion == pytest.approx(mean[i, 2], abs=1e-5) and a.strain == pytest.approx(mean[i, 3], abs=1e-6)
        assert a.dispersion_std == pytest.approx(1.5 * std[i, 2], rel=1e-3) and a.strain_std > 0
        p = class_probabilities(mean[i:i + 1, 0], 1.5 * std[i:i + 1, 0], np.array(list(a.probabilities)))[0]
        assert np.allclose(list(a.probabilities.values()), p, atol=1e-5) and sum(p) == pytest.approx(1.0)
        assert a.status == "sized"
        if "size_at_range_edge" not in a.flags:
            assert a.confidence == pytest.approx(p.max(), abs=1e-5)
        assert b.size_nm == pytest.approx(a.size_nm, rel=1e-4) and b.size_std_nm == pytest.approx(a.size_std_nm, rel=1e-3)
        assert "volume-weighted" in a.summary()
        d = a.to_dict()
        assert {"size_volume_nm", "size_volume_std_nm", "dispersion_std", "strain", "strain_std"} <= set(d)


def test_class_only_bundles_give_no_continuous_quantities(predictor):
    est = predictor.predict_standardized(synthetic_patterns(1, seed=2))[0]
    assert est.size_volume_nm is None and est.strain is None and est.dispersion_std is None
    assert est.dispersion in predictor.dispersion_classes.tolist()
