"""QDotsNet and its NumPy twin: shapes, parameter count, config, identical outputs, CAM / Grad-CAM."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from _model_helpers import make_model, synthetic_patterns
from qdots_bluesky.models.engine import NumpyQDotsNet, check_config, default_config, receptive_fields
from qdots_bluesky.models.network import QDotsNet, bundle_weights, count_parameters, fuse_batch_norm, load_weights


def test_reference_architecture_and_parameter_count():
    model = QDotsNet()
    assert [c.kernel_size[0] for c in model.convs] == [10, 5, 4, 3, 2]
    assert [c.stride[0] for c in model.convs] == [10, 5, 4, 3, 2]
    assert all(c.out_channels == 32 for c in model.convs)
    assert 15_000 <= count_parameters(model) <= 20_000
    assert count_parameters(QDotsNet(batch_norm=False)) < count_parameters(model)
    assert receptive_fields(model.config)[-1] == (4, 1200)
    assert model.config["size_classes_nm"] == [2.0 + 0.5 * i for i in range(17)]
    assert model.config["dispersion_classes"] == [0.05, 0.10, 0.15, 0.20]


def test_forward_outputs_and_shapes():
    model = make_model()
    X = torch.from_numpy(synthetic_patterns(3))
    out = model(X)
    assert out["size_logits"].shape == (3, 17)
    assert out["dispersion_logits"].shape == (3, 4)
    assert out["size_nm"].shape == (3,)
    assert out["features"].shape == (3, 32)
    assert out["feature_map"].shape == (3, 32, 4)
    torch.testing.assert_close(out["features"], out["feature_map"].mean(-1))
    out3 = model(X[:, None, :])
    torch.testing.assert_close(out3["size_logits"], out["size_logits"])
    torch.testing.assert_close(model(X.double())["size_logits"], out["size_logits"])
    with pytest.raises(ValueError, match="5004"):
        model(torch.ones(2, 5000))


@pytest.mark.parametrize("train", [False, True])
def test_matmul_forward_equals_conv1d(train):
    """The reshape-and-matmul evaluation is exactly Conv1d (stride = kernel), BatchNorm included, in both modes."""
    model = make_model()
    model.train(train)
    X = torch.from_numpy(synthetic_patterns(4, seed=2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    h = X[:, None, :] - 1.0
    for conv, norm in zip(model.convs, model.norms):
        h = torch.relu(norm(conv(h)))
    ref_features = h.mean(-1)
    ref_stats = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)  # undo the running-stat update of the reference pass
    out = model(X)
    torch.testing.assert_close(out["feature_map"], h, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["features"], ref_features, rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref_stats[k], rtol=1e-4, atol=1e-6)


def test_config_is_json_and_checked():
    cfg = QDotsNet().config
    again = QDotsNet(json.loads(json.dumps(cfg)))
    assert again.config == cfg
    assert default_config(input_transform="log")["input_transform"] == "log"
    for bad in ({"input_transform": "cbrt"}, {"kernels": [10, 5]}, {"size_classes_nm": [3.0, 2.0]}, {"oops": 1},
                {"architecture": "ResNet"}, {"n_points": 100}):
        with pytest.raises(ValueError):
            check_config({**cfg, **bad})


@pytest.mark.parametrize("batch_norm", [True, False])
def test_training_step_gives_finite_gradients(batch_norm):
    model = make_model().train() if batch_norm else QDotsNet(batch_norm=False).train()
    out = model(torch.from_numpy(synthetic_patterns(4)))
    loss = (torch.nn.functional.cross_entropy(out["size_logits"], torch.tensor([0, 3, 5, 16]))
            + torch.nn.functional.cross_entropy(out["dispersion_logits"], torch.tensor([0, 1, 2, 3]))
            + torch.nn.functional.mse_loss(out["size_nm"], torch.tensor([2.0, 3.5, 4.5, 10.0]))
            + torch.nn.functional.binary_cross_entropy_with_logits(out["nanocrystal_logit"], torch.tensor([1.0, 1.0, 0.0, 1.0])))
    loss.backward()
    for name, p in model.named_parameters():
        if batch_norm and name == "convs.0.bias":
            # BatchNorm cancels a bias before it: its exact gradient is zero, and the first layer's folded
            # BatchNorm leaves it out of the graph
            assert p.grad is None
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("transform", ["center", "sqrt", "log", "none"])
def test_numpy_engine_matches_torch(transform):
    torch.manual_seed(1)
    model = make_model()
    if transform != "center":
        model2 = QDotsNet(input_transform=transform)
        model2.load_state_dict(model.state_dict())
        model = model2.eval()
    X = synthetic_patterns(5, seed=3)
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in model(torch.from_numpy(X)).items()}
    out = NumpyQDotsNet(model.config, bundle_weights(model))(X, feature_map=True)
    for key in ref:
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_fused_batch_norm_gives_the_same_outputs():
    model = make_model()
    fused = fuse_batch_norm(model)
    assert not fused.config["batch_norm"] and not fused.training
    X = torch.from_numpy(synthetic_patterns(3, seed=6))
    with torch.no_grad():
        a, b = model(X), fused(X)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


def test_load_weights_round_trip_and_errors():
    model = make_model()
    other = load_weights(QDotsNet(), bundle_weights(model)).eval()
    X = torch.from_numpy(synthetic_patterns(2))
    with torch.no_grad():
        torch.testing.assert_close(other(X)["size_logits"], model(X)["size_logits"])
    weights = bundle_weights(model)
    del weights["size_head.bias"]
    with pytest.raises(ValueError, match="size_head.bias"):
        load_weights(QDotsNet(), weights)


def test_cam_on_last_layer_is_the_classic_cam():
    model = make_model()
    X = synthetic_patterns(3, seed=4)
    with torch.no_grad():
        out = model(torch.from_numpy(X))
    k = out["size_logits"].argmax(1).numpy()
    w = model.size_head.weight.detach().numpy()[k]  # (3, 32)
    cam = np.maximum(np.einsum("bct,bc->bt", out["feature_map"].numpy(), w), 0)
    cam /= cam.max(axis=1, keepdims=True)
    got = NumpyQDotsNet(model.config, bundle_weights(model)).grad_cam(X)
    assert got.shape == (3, 5004)
    np.testing.assert_allclose(got[:, :4800:1200], cam, rtol=1e-4, atol=1e-6)
    assert np.all(got[:, 4800:] == 0)
    assert got.min() >= 0 and np.allclose(got.max(axis=1), 1)


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_grad_cam_matches_autograd(layer):
    model = make_model()
    X = synthetic_patterns(2, seed=5)
    acts = {}
    x = torch.from_numpy(X)[:, None, :] - 1.0
    h = x
    for i, (conv, norm) in enumerate(zip(model.convs, model.norms)):
        h = torch.relu(norm(conv(h)))
        if i == layer:
            h.retain_grad()
            acts["a"] = h
    logits = model.size_head(h.mean(-1))
    k = logits.argmax(1)
    logits.gather(1, k[:, None]).sum().backward()
    a, g = acts["a"].detach().numpy(), acts["a"].grad.numpy()
    ref = np.maximum(np.einsum("bct,bc->bt", a, g.mean(-1)), 0)
    ref = ref / np.where(ref.max(1, keepdims=True) > 0, ref.max(1, keepdims=True), 1)
    length, span = receptive_fields(model.config)[layer]
    got = NumpyQDotsNet(model.config, bundle_weights(model)).grad_cam(X, k.numpy(), layer=layer)
    np.testing.assert_allclose(got[:, : length * span : span], ref, rtol=1e-3, atol=1e-5)


def test_presence_head_and_legacy_configs():
    model = QDotsNet()
    assert model.config["presence_head"] is True
    # 15 862 parameters of the reference network with its three heads, plus 33 for the presence head
    assert count_parameters(model) == 15_895
    assert count_parameters(QDotsNet(presence_head=False)) == 15_862
    out = model(torch.from_numpy(synthetic_patterns(2)))
    assert out["nanocrystal_logit"].shape == (2,)
    assert "nanocrystal_logit" not in QDotsNet(presence_head=False)(torch.from_numpy(synthetic_patterns(2)))
    # bundles written before the key existed have no presence head
    legacy = {k: v for k, v in default_config().items() if k != "presence_head"}
    assert check_config(legacy)["presence_head"] is False


def test_numpy_engine_and_fusion_carry_the_presence_head():
    torch.manual_seed(4)
    model = QDotsNet().eval()
    X = synthetic_patterns(4, seed=2)
    with torch.no_grad():
        ref = model(torch.from_numpy(X))["nanocrystal_logit"].numpy()
        fused = fuse_batch_norm(model)(torch.from_numpy(X))["nanocrystal_logit"].numpy()
    out = NumpyQDotsNet(model.config, bundle_weights(model))(X)
    np.testing.assert_allclose(out["nanocrystal_logit"], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused, ref, rtol=1e-4, atol=1e-5)


def test_folded_first_layer_batch_norm_has_the_gradients_of_batch_norm():
    """In training the first layer's BatchNorm is folded into its weights from the windows' covariance: same
    outputs, running statistics and gradients as BatchNorm on the convolution's output (which an input that
    needs gradients still takes)."""
    torch.manual_seed(4)
    folded = make_model().train()
    plain = copy.deepcopy(folded)
    X = torch.from_numpy(synthetic_patterns(6, seed=5))
    out_f = folded(X)
    out_p = plain(X.clone().requires_grad_(True))
    for key in ("size_logits", "size_nm", "features"):
        torch.testing.assert_close(out_f[key], out_p[key], rtol=1e-4, atol=1e-5)
    for out in (out_f, out_p):
        (out["size_logits"].logsumexp(1).sum() + out["size_nm"].sum()).backward()
    grads_p = dict(plain.named_parameters())
    for name, p in folded.named_parameters():
        if name in ("convs.0.bias", "convs.1.bias", "convs.2.bias", "convs.3.bias", "convs.4.bias"):
            continue  # biases before BatchNorm: exact gradient zero (float noise in the plain path)
        reference = grads_p[name].grad
        if reference is None:  # a head the loss does not use
            assert p.grad is None, name
            continue
        assert float((p.grad - reference).abs().max()) <= 1e-4 * float(reference.abs().max()), name
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(folded.norms[0], key), getattr(plain.norms[0], key), rtol=1e-4, atol=1e-6)
