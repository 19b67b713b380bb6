"""Training of the metal-cluster network: the source with blanks and monodisperse rows, the loss, a tiny full run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qdots_bluesky.models.calibration import fit_temperature
from qdots_bluesky.models.cluster_engine import NumpyClusterNet
from qdots_bluesky.models.cluster_network import ClusterNet
from qdots_bluesky.models.network import bundle_weights
from qdots_bluesky.sim.learning.cluster_training import (
    ClusterSource,
    ClusterTrainingSettings,
    cluster_loss,
    fit_group_temperature,
    load_cluster_bases,
    network_config,
    predict_outputs,
    train_cluster_model,
)
from qdots_bluesky.sim.learning.cluster_evaluation import structure_group_matrix
from qdots_bluesky.sim.learning.metal_augment import MetalAugmenter
from qdots_bluesky.sim.learning.metal_sources import MetalPopulationRanges, split_basis

TINY = dict(families=("icosahedron", "decahedron"), d_max_nm=3.0, n_points=256, populations_per_epoch=512,
            batch_size=64, calibration_size=400, evaluation_size=128, evaluation_dispersions=(0.0,),
            network={"widths": [8, 12, 16], "hidden": 24}, seed=1)


@pytest.fixture(scope="module")
def grid_and_bases():
    return load_cluster_bases(ClusterTrainingSettings(**TINY))


def test_source_mixes_monodisperse_rows_and_blanks(grid_and_bases):
    q, bases = grid_and_bases
    src = ClusterSource(bases, MetalAugmenter(q), 1000, MetalPopulationRanges(dispersion=(0.1, 0.3), mixture_share=0.0),
                        monodisperse_share=0.4, blank_share=0.1, part="test")
    aug, idx, t = src(np.random.default_rng(0))
    assert aug.patterns.shape == (1000, q.size) and idx.size == 1000
    blank = t["presence"] == 0
    assert 60 < blank.sum() < 140
    present = ~blank
    mono = np.arange(1000) < 400  # the monodisperse rows come first
    assert np.all(t["dispersion"][present & mono] < 1e-6)
    assert np.mean(t["dispersion"][present & ~mono]) > 0.05  # drawn at 10-30 % (few held-out clusters: some at 0)
    held_out = np.concatenate([split_basis(b, "test").diameter_nm for b in bases])
    d = t["diameter_nm"][present & mono]
    assert np.all(np.min(np.abs(d[:, None] - held_out[None, :]), axis=1) < 1e-4)
    # blanks are no cluster pattern: the liquid's curve with a low-Q rise, positive everywhere
    assert np.all(aug.patterns[blank] > 0)
    assert not np.any(np.all(np.isclose(aug.patterns[blank][:, None, :], aug.patterns[present][None, :20, :]), axis=2))


def test_blank_rows_enter_only_the_presence_term():
    torch.manual_seed(0)
    model = ClusterNet(n_points=256, families=["icosahedron", "decahedron"], saxs_stop=151, waxs_start=124,
                       widths=[8, 8], hidden=8)
    x = torch.randn(8, 2, 256)
    x[:, 1] = 1.0
    rng = np.random.default_rng(0)
    t = {"presence": np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=np.float32),
         "family_probabilities": np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)],
         "continuous": rng.normal(1.0, 0.3, (8, 4)).astype(np.float32)}
    out = model(x)
    loss, parts = cluster_loss(out, t, model.config)
    t2 = {k: v.copy() for k, v in t.items()}
    t2["family_probabilities"][6:] = 1.0 - t2["family_probabilities"][6:]
    t2["continuous"][6:] += 5.0
    loss2, parts2 = cluster_loss(out, t2, model.config)
    assert loss.item() == pytest.approx(loss2.item()) and parts == pytest.approx(parts2)
    t2["presence"][5] = 0.0
    assert cluster_loss(out, t2, model.config)[1]["presence"] != pytest.approx(parts["presence"])
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_network_config_follows_the_grid(grid_and_bases):
    q, _ = grid_and_bases
    cfg = network_config(ClusterTrainingSettings(**TINY), q)
    assert q[cfg["saxs_stop"] - 1] <= 1.0 < q[cfg["saxs_stop"]]
    assert q[cfg["waxs_start"] - 1] < 0.5 <= q[cfg["waxs_start"]]
    assert cfg["families"] == ["icosahedron", "decahedron"] and cfg["widths"] == [8, 12, 16]


def test_tiny_training_calibrates_evaluates_and_learns():
    settings = ClusterTrainingSettings(**TINY, epochs=12, lr=3e-3, warmup_steps=10)
    r = train_cluster_model(settings, progress=False)
    assert not r.model.training and len(r.history) == 12
    shapes = {k: v.shape for k, v in r.tensors.items()}
    d = 2 * 24
    assert shapes == {"calibration.temperature_shape": (1,), "calibration.continuous_interval": (2, 3), "calibration.continuous_dispersion_slope": (3,),
                      "ood.feature_mean": (d,), "ood.feature_precision": (d, d), "ood.threshold": (1,)}
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in r.tensors.values())
    assert r.tensors["calibration.temperature_shape"][0] > 0
    json.dumps({"m": r.metrics, "i": r.info, "h": r.history})
    assert r.info["basis"]["element"] == "Au" and r.info["basis"]["q_grid"]["n_points"] == 256
    assert sum(r.info["basis"]["test_clusters"].values()) + sum(r.info["basis"]["train_clusters"].values()) == \
        sum(r.info["basis"]["clusters"].values())
    assert set(r.metrics["conditions"]) == {"both, disp 0", "saxs, disp 0", "waxs, disp 0", "gap, disp 0"}
    first, last = r.history[0], r.history[-1]
    assert last["family"] < first["family"] and last["log_dn"] < first["log_dn"]
    # ico vs deca from WAXS above chance after 12 tiny epochs on held-out clusters
    assert r.metrics["conditions"]["waxs, disp 0"]["acc6"] > 0.6
    assert 0.0 <= r.metrics["presence"]["blank_detected"] <= 1.0
    x = np.random.default_rng(0).normal(0, 1, (4, 2, 256)).astype(np.float32)
    x[:, 1] = 1.0
    ref = predict_outputs(r.model, x)
    got = NumpyClusterNet(r.model.config, bundle_weights(r.model))(x)
    np.testing.assert_allclose(got["continuous"], ref["continuous"], atol=1e-4, rtol=1e-4)


def test_settings_say_what_is_accepted():
    with pytest.raises(ValueError, match="blank_share 1.2; accepted"):
        ClusterTrainingSettings(blank_share=1.2)
    with pytest.raises(ValueError, match="batch_size 0; accepted"):
        ClusterTrainingSettings(batch_size=0)


def test_group_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (400, 2))
    labels = (z[:, 1] + rng.normal(0, 2, 400) > z[:, 0]).astype(int)
    # with one family per group the group likelihood is the family likelihood
    t = fit_group_temperature(z, labels, structure_group_matrix(["icosahedron", "decahedron"]))
    assert t == pytest.approx(fit_temperature(z, labels), rel=1e-3)
    # six families: habits within fcc confused at random, groups right with a margin -> the groups' temperature is
    # below the families' (sharper groups), the families' fit above it
    fam = ["icosahedron", "decahedron", "octahedron", "truncated_octahedron", "cuboctahedron", "sphere"]
    g = structure_group_matrix(fam)
    true = rng.integers(0, 6, 600)
    z6 = rng.normal(0, 1, (600, 6)) + 3.0 * g[true] @ g.T
    t3 = fit_group_temperature(z6, (np.eye(6)[true] @ g).argmax(1), g)
    assert t3 < fit_temperature(z6, true)
    with pytest.raises(ValueError, match="accepted"):
        fit_group_temperature(z6, true[:5], g)
