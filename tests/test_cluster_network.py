"""The metal-cluster network (issue 18): config checks, state-dict shapes, the NumPy engine against PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qdots_bluesky.models.cluster_engine import (
    DEFAULT_CLUSTER_CONFIG,
    LOG_SIGMA_BOUNDS,
    NumpyClusterNet,
    check_cluster_config,
    cluster_continuous_estimates,
    cluster_state_dict_shapes,
    default_cluster_config,
)
from qdots_bluesky.models.cluster_network import ClusterNet
from qdots_bluesky.models.network import bundle_weights, count_parameters, load_weights

SMALL = {"n_points": 256, "families": ["icosahedron", "decahedron"], "saxs_stop": 151, "waxs_start": 124,
         "widths": [8, 12, 16], "kernel": 5, "hidden": 24}


def randomized(model: ClusterNet, seed: int = 0) -> ClusterNet:
    """``model`` in eval mode with BatchNorm statistics and affine parameters away from their initial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.copy_(0.3 * torch.randn(mod.num_features, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.num_features, generator=g))
                mod.weight.copy_(1.0 + 0.2 * torch.randn(mod.num_features, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.num_features, generator=g))
    return model.eval()


def inputs(n_rows: int, n_points: int, seed: int = 0) -> np.ndarray:
    """Network-like inputs: asinh values with masked stretches (value 0 where the mask is 0)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n_rows, 2, n_points), dtype=np.float32)
    x[:, 0] = np.cumsum(rng.normal(0, 0.2, (n_rows, n_points)), axis=1) + 3.0
    for i in range(n_rows):
        lo, hi = sorted(rng.integers(0, n_points, 2))
        x[i, 1] = 1.0
        x[i, 1, lo:hi] = 0.0 if i % 2 else 1.0
    x[:, 0] *= x[:, 1]
    return x


def test_default_config_is_json_and_the_network_stays_small():
    cfg = default_cluster_config()
    assert cfg == check_cluster_config(json.loads(json.dumps(DEFAULT_CLUSTER_CONFIG)))
    assert cfg["architecture"] == "cluster-cnn"
    assert cfg["continuous_targets"] == ["log_mean_diameter_nm", "log_volume_diameter_nm", "dispersion"]
    model = ClusterNet()
    assert model.config == cfg
    assert 100_000 < count_parameters(model) <= 300_000


@pytest.mark.parametrize("change, words", [
    ({"architecture": "QDotsNet"}, "cluster-cnn"),
    ({"kernel": 4}, "odd kernel"),
    ({"saxs_stop": 2000}, "saxs_stop <= n_points"),
    ({"waxs_start": 1024}, "waxs_start < n_points"),
    ({"families": ["sphere"]}, "at least 2 distinct"),
    ({"continuous_targets": ["dispersion"]}, "log_mean_diameter_nm"),
    ({"continuous_scales": [1.0, 1.0, 0.0]}, "scales > 0"),
    ({"hidden": 2.5}, "whole numbers"),
    ({"widths": "wide"}, "non-numeric"),
])
def test_bad_configs_say_what_is_accepted(change, words):
    cfg = dict(DEFAULT_CLUSTER_CONFIG) | change
    with pytest.raises(ValueError, match="accepted") as err:
        check_cluster_config(cfg)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_unknown_and_missing_keys_are_refused():
    with pytest.raises(ValueError, match="unknown \\['dropout'\\]"):
        check_cluster_config(dict(DEFAULT_CLUSTER_CONFIG, dropout=0.1))
    cfg = dict(DEFAULT_CLUSTER_CONFIG)
    del cfg["hidden"]
    with pytest.raises(ValueError, match="missing \\['hidden'\\]"):
        check_cluster_config(cfg)


@pytest.mark.parametrize("overrides", [{}, SMALL])
def test_state_dict_shapes_match_torch(overrides):
    model = ClusterNet(**overrides)
    shapes = {k: tuple(v.shape) for k, v in bundle_weights(model).items()}
    assert shapes == cluster_state_dict_shapes(model.config)
    assert not any(k.endswith("num_batches_tracked") for k in shapes)


@pytest.mark.parametrize("overrides", [{}, SMALL])
def test_numpy_engine_equals_torch(overrides):
    model = randomized(ClusterNet(**overrides))
    x = inputs(6, model.config["n_points"])
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}
    got = NumpyClusterNet(model.config, bundle_weights(model))(x)
    n_f, n_k, hidden = len(model.config["families"]), 3, model.config["hidden"]
    assert {k: v.shape for k, v in got.items()} == {"family_logits": (6, n_f), "continuous": (6, 2 * n_k),
                                                    "presence_logit": (6,), "features": (6, 2 * hidden)}
    for k in ref:
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4, rtol=1e-4)


def test_float16_weights_load_into_both_implementations():
    model = randomized(ClusterNet(**SMALL), seed=1)
    half = {k: v.astype(np.float16) for k, v in bundle_weights(model).items()}
    again = load_weights(ClusterNet(**SMALL), {k: v.astype(np.float32) for k, v in half.items()}).eval()
    x = inputs(3, 256, seed=2)
    with torch.no_grad():
        ref = again(torch.from_numpy(x))["continuous"].numpy()
    np.testing.assert_allclose(NumpyClusterNet(again.config, half)(x)["continuous"], ref, atol=1e-4, rtol=1e-4)


def test_an_offset_of_the_measured_values_changes_nothing():
    """Each branch centres the value channel on its measured points: a shift of asinh(Y / median) (in the log regime,
    a change of the median, e.g. by another mask) leaves every output as it was."""
    model = randomized(ClusterNet(**SMALL), seed=3)
    net = NumpyClusterNet(model.config, bundle_weights(model))
    x = inputs(4, 256, seed=4)
    shifted = x.copy()
    shifted[:, 0] += 1.7 * x[:, 1]
    a, b = net(x), net(shifted)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4)


def test_the_family_head_reads_only_the_waxs_part():
    model = randomized(ClusterNet(**SMALL), seed=5)
    net = NumpyClusterNet(model.config, bundle_weights(model))
    x = inputs(4, 256, seed=6)
    changed = x.copy()
    w = model.config["waxs_start"]
    changed[:, 0, :w] += np.random.default_rng(7).normal(0, 2.0, (4, w)).astype(np.float32)
    a, b = net(x), net(changed)
    np.testing.assert_allclose(a["family_logits"], b["family_logits"], atol=1e-5)
    assert np.abs(a["continuous"] - b["continuous"]).max() > 1e-3  # the size heads read the SAXS part


def test_continuous_estimates_in_natural_units_with_bounded_stds():
    cfg = default_cluster_config()
    raw = np.array([[0.0, 1.0, -1.0, 0.0, np.log(2.0), 50.0], [2.0, 0.0, 0.0, -50.0, 0.0, 0.0]])
    mean, std = cluster_continuous_estimates(raw, cfg)
    off, sc = np.array(cfg["continuous_offsets"]), np.array(cfg["continuous_scales"])
    np.testing.assert_allclose(mean, off + sc * raw[:, :3])
    np.testing.assert_allclose(std[0], sc * np.array([1.0, 2.0, np.exp(LOG_SIGMA_BOUNDS[1])]))
    np.testing.assert_allclose(std[1, 0], sc[0] * np.exp(LOG_SIGMA_BOUNDS[0]))
    with pytest.raises(ValueError, match="accepted: \\(rows, 6\\)"):
        cluster_continuous_estimates(raw[:, :4], cfg)


def test_wrong_weights_and_inputs_are_refused():
    model = ClusterNet(**SMALL)
    weights = bundle_weights(model)
    weights["trunk.weight"] = weights["trunk.weight"][:, :-1]
    with pytest.raises(ValueError, match="trunk.weight"):
        NumpyClusterNet(model.config, weights)
    net = NumpyClusterNet(model.config, bundle_weights(model))
    with pytest.raises(ValueError, match="accepted: \\(B, 2, 256\\)"):
        net(np.zeros((2, 1, 256), dtype=np.float32))
    with pytest.raises(ValueError, match="accepted: \\(B, 2, 256\\)"):
        model(torch.zeros(2, 2, 255))
