"""The model bundle: round trip, metadata, and every refusal names the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

import qdots_bluesky.models.bundle as bundle_mod
from _model_helpers import GRID, make_bundle, make_model, synthetic_patterns
from qdots_bluesky.models.bundle import (
    COARSE_PREFIX,
    REQUIRED_TENSORS,
    T_DISPERSION_TEMPERATURE,
    T_FEATURE_MEAN,
    T_FEATURE_PRECISION,
    T_OOD_THRESHOLD,
    T_SIZE_TEMPERATURE,
    WEIGHT_PREFIX,
    BundleError,
    default_bundle_path,
    read_bundle,
    save_bundle,
)
from qdots_bluesky.models.network import QDotsNet, load_weights
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.standardize import QGrid


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny.safetensors")


def _network(contents):
    """The torch network of read bundle contents, as the predictor builds it (before folding BatchNorm), eval mode."""
    return load_weights(QDotsNet(contents.config), contents.weights).eval()


def _raw(path):
    with safe_open(str(path), framework="np") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def test_round_trip_gives_identical_outputs(bundle_path):
    model = make_model()  # same seed as the bundle's
    X = torch.from_numpy(synthetic_patterns(4, seed=11))
    loaded = read_bundle(bundle_path)
    with torch.no_grad():
        exact = model(X)
        for p in model.parameters():  # the bundle stores kernels and matrices as float16, vectors as float32
            if p.dim() >= 2:
                p.copy_(p.half().float())
        a, b = model(X), _network(loaded)(X)
    for key in ("size_logits", "dispersion_logits", "size_nm", "features", "feature_map"):
        assert torch.equal(a[key], b[key]), key
        torch.testing.assert_close(b[key], exact[key], rtol=2e-3, atol=2e-3)
    # the predictor users run gives the same outputs (BatchNorm folded into the convolutions: rounding only)
    raw = Predictor(loaded, device="cpu").raw_outputs(X.numpy())
    for key in ("size_logits", "dispersion_logits", "size_nm", "features"):
        np.testing.assert_allclose(raw[key], a[key].numpy(), rtol=1e-4, atol=1e-4, err_msg=key)
    header, tensors = _raw(bundle_path)
    assert tensors[WEIGHT_PREFIX + "convs.0.weight"].dtype == np.float16
    assert tensors[WEIGHT_PREFIX + "convs.0.bias"].dtype == np.float32
    assert loaded.grid == GRID
    assert set(REQUIRED_TENSORS) <= set(loaded.tensors)


def test_metadata_is_complete_and_json(bundle_path):
    meta = read_bundle(bundle_path).metadata
    for key in ("format", "format_version", "network", "q_grid", "size_classes_nm", "dispersion_classes", "augmentation",
                "training_library", "training", "metrics", "created", "program_version"):
        assert key in meta, key
    assert meta["q_grid"] == QGrid().to_dict()
    assert len(meta["training_library"]["sha256"]) == 64
    assert meta["network"]["kernels"] == [10, 5, 4, 3, 2]
    header, tensors = _raw(bundle_path)
    assert json.loads(header["qdots_metadata"]) == meta
    assert not any(k.endswith("num_batches_tracked") for k in tensors)


def test_torch_free_read_matches(bundle_path):
    contents = read_bundle(bundle_path, grid=QGrid())
    for k, v in _network(contents).state_dict().items():  # the torch network holds exactly the weights read
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(contents.weights[k], v.numpy())
    X = synthetic_patterns(3, seed=13)
    a = Predictor(contents, device="numpy").raw_outputs(X)
    b = Predictor(contents, device="cpu").raw_outputs(X)
    for key in ("size_logits", "dispersion_logits", "size_nm", "features"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-4, err_msg=key)


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.safetensors"
    with pytest.raises(BundleError, match="nothing.safetensors.*not found"):
        read_bundle(path)


def test_default_bundle_missing_says_how_to_train(tmp_path, monkeypatch):
    assert default_bundle_path().name == "default_model.safetensors"
    monkeypatch.setattr(bundle_mod, "default_bundle_path", lambda: tmp_path / "default_model.safetensors")
    with pytest.raises(BundleError, match="qdots train"):
        read_bundle(None)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.01])
def test_truncated_bundle(bundle_path, tmp_path, keep):
    data = bundle_path.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BundleError, match="truncated.safetensors"):
        read_bundle(bad)
    with pytest.raises(BundleError, match="truncated.safetensors"):
        Predictor.from_bundle(bad, device="cpu")


def test_not_a_safetensors_file(tmp_path):
    text = tmp_path / "model.safetensors"
    text.write_text("2theta intensity\n1 2\n")
    with pytest.raises(BundleError, match="model.safetensors.*not a readable safetensors"):
        read_bundle(text)
    pickled = tmp_path / "model.pt"
    torch.save(make_model().state_dict(), pickled)
    with pytest.raises(BundleError, match="model.pt"):
        read_bundle(pickled)


def test_corrupted_header(bundle_path, tmp_path):
    data = bytearray(bundle_path.read_bytes())
    data[10:20] = b"\xff" * 10
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt.safetensors"):
        read_bundle(bad)


def test_safetensors_without_qdots_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(BundleError, match="other.safetensors.*not a qdots model bundle"):
        read_bundle(path)


def test_wrong_format_version(bundle_path, tmp_path):
    header, tensors = _raw(bundle_path)
    header["format_version"] = "99"
    path = tmp_path / "future.safetensors"
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(BundleError, match="future.safetensors.*version '99'"):
        read_bundle(path)


def test_missing_tensor_and_metadata_key(bundle_path, tmp_path):
    header, tensors = _raw(bundle_path)
    path = tmp_path / "incomplete.safetensors"
    save_file({k: v for k, v in tensors.items() if k != T_OOD_THRESHOLD}, str(path), metadata=header)
    with pytest.raises(BundleError, match=f"incomplete.safetensors.*{T_OOD_THRESHOLD}"):
        read_bundle(path)
    save_file({k: v for k, v in tensors.items() if k != WEIGHT_PREFIX + "convs.2.weight"}, str(path), metadata=header)
    with pytest.raises(BundleError, match="incomplete.safetensors.*convs.2.weight"):
        read_bundle(path)
    meta = json.loads(header["qdots_metadata"])
    del meta["q_grid"]
    save_file(tensors, str(path), metadata={**header, "qdots_metadata": json.dumps(meta)})
    with pytest.raises(BundleError, match="incomplete.safetensors.*q_grid"):
        read_bundle(path)


def test_wrong_grid(bundle_path):
    other = QGrid(q_min=1.0, q_max=12.0, n_points=5004)
    with pytest.raises(BundleError, match="tiny.safetensors.*Q grid"):
        read_bundle(bundle_path, grid=other)


def test_save_refuses_incomplete_or_inconsistent(tmp_path):
    model = make_model()
    path = tmp_path / "x.safetensors"
    with pytest.raises(BundleError, match="x.safetensors.*lacks the tensors"):
        save_bundle(path, model, {}, {})
    ok = {T_SIZE_TEMPERATURE: np.array([1.5]), T_DISPERSION_TEMPERATURE: np.array([1.0]),
          T_FEATURE_MEAN: np.zeros(32), T_FEATURE_PRECISION: np.eye(32), T_OOD_THRESHOLD: np.array([10.0])}
    with pytest.raises(BundleError, match="size_classes_nm"):
        save_bundle(path, model, {"size_classes_nm": [1.0, 2.0]}, ok)
    with pytest.raises(BundleError, match="temperature"):
        save_bundle(path, model, {}, {**ok, T_SIZE_TEMPERATURE: np.array([-1.0])})
    with pytest.raises(BundleError, match="JSON"):
        save_bundle(path, model, {"training": {"bad": object()}}, ok)
    assert not path.exists()
    saved = save_bundle(path, model, {"metrics": {"accuracy": np.float32(0.5)}, "extra_note": "hi"}, ok)
    assert read_bundle(saved).metadata["metrics"]["accuracy"] == 0.5


# --- the coarse-sampling specialist -----------------------------------------------------------
@pytest.fixture(scope="module")
def two_network_path(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("two") / "two.safetensors", coarse_model=make_model(seed=5),
                       coarse_min_q_step=0.04)


def test_specialist_round_trip(two_network_path):
    contents = read_bundle(two_network_path)
    assert contents.coarse is not None and contents.coarse_min_q_step == 0.04
    spec = contents.metadata["coarse_specialist"]
    assert spec["min_source_q_step"] == 0.04 and spec["training"]["note"] == "untrained test specialist"
    assert contents.coarse.metadata["training"]["note"] == "untrained test specialist"
    assert contents.coarse.metadata["network"] == spec["network"] and contents.coarse.coarse is None
    header, tensors = _raw(two_network_path)
    assert {COARSE_PREFIX + WEIGHT_PREFIX + "convs.0.weight", COARSE_PREFIX + T_OOD_THRESHOLD} <= set(tensors)
    assert not any(k.startswith(COARSE_PREFIX) for k in contents.tensors)  # the main network's tensors only
    X = torch.from_numpy(synthetic_patterns(3, seed=12))
    expected = make_model(seed=5)
    with torch.no_grad():
        for p in expected.parameters():
            if p.dim() >= 2:
                p.copy_(p.half().float())
        assert torch.equal(_network(contents.coarse)(X)["size_logits"], expected(X)["size_logits"])
        assert not torch.equal(_network(contents)(X)["size_logits"], expected(X)["size_logits"])
    assert set(REQUIRED_TENSORS) <= set(contents.coarse.tensors)


def test_incomplete_or_bad_specialist(two_network_path, tmp_path):
    header, tensors = _raw(two_network_path)
    meta = json.loads(header["qdots_metadata"])
    without_meta = {**header, "qdots_metadata": json.dumps({k: v for k, v in meta.items() if k != "coarse_specialist"})}
    save_file(tensors, str(tmp_path / "a.safetensors"), metadata=without_meta)
    with pytest.raises(BundleError, match=r"a\.safetensors: the coarse specialist is incomplete"):
        read_bundle(tmp_path / "a.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith(COARSE_PREFIX)}, str(tmp_path / "b.safetensors"),
              metadata=header)
    with pytest.raises(BundleError, match="coarse specialist is incomplete"):
        read_bundle(tmp_path / "b.safetensors")
    save_file({k: v for k, v in tensors.items() if k != COARSE_PREFIX + T_OOD_THRESHOLD}, str(tmp_path / "c.safetensors"),
              metadata=header)
    with pytest.raises(BundleError, match=r"c\.safetensors: the coarse specialist's bundle lacks the tensors"):
        read_bundle(tmp_path / "c.safetensors")
    bad_step = {**header, "qdots_metadata": json.dumps({**meta, "coarse_specialist": {**meta["coarse_specialist"],
                                                                                       "min_source_q_step": -1}})}
    save_file(tensors, str(tmp_path / "d.safetensors"), metadata=bad_step)
    with pytest.raises(BundleError, match="min_source_q_step is -1"):
        read_bundle(tmp_path / "d.safetensors")
    with pytest.raises(BundleError, match="min_source_q_step"):
        make_bundle(tmp_path / "e.safetensors", coarse_model=make_model(seed=5), coarse_min_q_step=0.0)
