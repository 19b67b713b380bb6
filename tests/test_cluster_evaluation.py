"""Metrics of the metal-cluster network on synthetic arrays with known answers, and held-out evaluation sets."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.models.cluster_engine import default_cluster_config
from qdots_bluesky.sim.learning.cluster_evaluation import (
    SIZE_CLASSES_NM,
    EvaluationCondition,
    condition_metrics,
    confusion_by_size,
    draw_evaluation_set,
    evaluation_conditions,
    interval_coverage,
    shape_metrics,
    size_class_accuracy,
    size_class_labels,
    size_errors_by_family,
    structure_group_matrix,
)
from qdots_bluesky.sim.learning.metal_sources import split_basis
from qdots_bluesky.sim.physics.metal_basis import build_metal_basis, saxs_waxs_q

FAMILIES = ["icosahedron", "decahedron", "octahedron", "truncated_octahedron", "cuboctahedron", "sphere"]


def test_structure_groups():
    g = structure_group_matrix(FAMILIES)
    np.testing.assert_array_equal(g.argmax(axis=1), [0, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(g.sum(axis=1), 1.0)


def test_shape_metrics_count_families_and_groups():
    truth = np.eye(6)[[0, 1, 2, 3, 4, 5]]
    # right family for rows 0-2; row 3 (truncated octahedron) called an octahedron: wrong family, right group (fcc);
    # row 4 (cuboctahedron) called an icosahedron: wrong both; row 5 right
    pred = np.eye(6)[[0, 1, 2, 2, 0, 5]] * 0.8 + 0.2 / 6
    m = shape_metrics(pred, truth, FAMILIES)
    assert m["acc6"] == pytest.approx(4 / 6) and m["acc3"] == pytest.approx(5 / 6)
    # top-1 confidence of the families is 0.8333 everywhere: ECE = |4/6 - 0.8333|
    assert m["ece6"] == pytest.approx(abs(4 / 6 - (0.8 + 0.2 / 6)))
    with pytest.raises(ValueError, match="accepted"):
        shape_metrics(pred[:, :3], truth, FAMILIES)


def test_size_classes_split_halfway_and_take_the_tails():
    assert len(SIZE_CLASSES_NM) == 19 and SIZE_CLASSES_NM[0] == 1.0 and SIZE_CLASSES_NM[-1] == 10.0
    np.testing.assert_array_equal(size_class_labels(np.array([0.5, 1.0, 1.24, 1.26, 4.9, 5.1, 9.8, 12.0])),
                                  [0, 0, 0, 1, 8, 8, 18, 18])
    d = np.array([1.3, 2.7, 6.1, 9.0])
    assert size_class_accuracy(np.log(d), np.full(4, 1e-3), d) == 1.0
    # an estimate 0.5 nm off is one class off
    assert size_class_accuracy(np.log(d + 0.5), np.full(4, 1e-3), d) == 0.0


def test_confusion_by_size_bins():
    true = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 1, 0])
    d = np.array([1.5, 1.2, 2.5, 10.0, 11.0])  # 11 nm lies outside the bins
    c = confusion_by_size(true, pred, d, 2)
    assert c.shape == (9, 2, 2) and c.sum() == 4
    np.testing.assert_array_equal(c[0], [[1, 1], [0, 0]])
    assert c[1, 1, 1] == 1 and c[8, 1, 1] == 1


def test_size_errors_and_coverage():
    err = size_errors_by_family(np.array([0, 0, 1]), np.array([2.0, 3.0, 4.0]), np.array([2.5, 2.0, 4.0]), ["a", "b", "c"])
    assert err["a"] == pytest.approx(0.75) and err["b"] == 0.0 and np.isnan(err["c"])
    truth = np.zeros(100)
    mean = np.r_[np.full(60, 0.5), np.full(30, 1.5), np.full(10, 3.0)]
    cov = interval_coverage(truth, mean, np.ones(100))
    assert cov == {"68": 0.6, "95": 0.9}


def test_condition_metrics_of_exact_outputs():
    cfg = default_cluster_config(families=FAMILIES[:2])
    rng = np.random.default_rng(0)
    n = 50
    d_n = np.exp(rng.uniform(0, np.log(10), n))
    d_v = d_n * 1.1
    disp = rng.uniform(0, 0.3, n)
    labels = rng.integers(0, 2, n)
    truth = np.stack([np.log(d_n), np.log(d_v), disp], axis=1)
    raw = np.concatenate([(truth - cfg["continuous_offsets"]) / cfg["continuous_scales"], np.full((n, 3), -6.0)], 1)
    out = {"family_logits": 30.0 * np.eye(2)[labels], "continuous": raw}
    targets = {"family_probabilities": np.eye(2)[labels], "diameter_nm": d_n, "volume_diameter_nm": d_v,
               "dispersion": disp}
    m = condition_metrics(out, targets, cfg)
    assert m["acc6"] == 1.0 and m["acc3"] == pytest.approx(np.mean(labels == labels))  # ico vs deca: 2 groups
    assert m["size_class_acc"] == 1.0 and m["mae_dn_nm"] < 1e-9 and m["mae_dispersion"] < 1e-9
    assert m["coverage_log_dn"]["68"] == 1.0 and m["ece6"] < 1e-6
    assert np.asarray(m["confusion6_by_size_nm"]).sum() == np.sum(d_n <= 10.0)


def test_conditions_and_settings():
    conds = evaluation_conditions(dispersions=(0.0, None), counts=(None, 100.0))
    assert len(conds) == 4 * 2 * 2
    c = EvaluationCondition("saxs", 0.2, 100.0, saxs_end_q=0.5)
    assert c.name == "saxs, disp 0.2, counts_per_point 100, saxs_end_q 0.5"
    from qdots_bluesky.sim.learning.metal_augment import MetalAugmentSettings
    s = c.augment_settings(MetalAugmentSettings())
    assert s.mask_probabilities == (0.0, 1.0, 0.0, 0.0) and s.counts_per_point == (100.0, 100.0)
    assert s.saxs_end_q == (0.5, 0.5)
    with pytest.raises(ValueError, match="accepted: both, saxs, waxs, gap"):
        EvaluationCondition("middle")


def test_evaluation_sets_hold_only_held_out_clusters_under_the_condition():
    q = saxs_waxs_q(0.02, 15.0, 256)
    bases = [build_metal_basis("Au", f, q, 1.0, 3.0) for f in FAMILIES[:2]]
    held_out = np.concatenate([split_basis(b, "test").diameter_nm for b in bases])
    data = draw_evaluation_set(bases, EvaluationCondition("saxs", 0.0, saxs_end_q=0.5), 64, seed=3,
                               ranges=None)
    assert data.x.shape == (64, 2, 256)
    np.testing.assert_array_equal(data.x[:, 1], np.broadcast_to(q <= 0.5, (64, 256)))
    assert np.all(data.targets["dispersion"] < 1e-6)
    assert set(np.unique(data.targets["family_probabilities"])) == {0.0, 1.0}
    unstrained = data.targets["diameter_nm"] / (1 + data.targets["strain"])
    assert np.all(np.min(np.abs(unstrained[:, None] - held_out[None, :]), axis=1) < 1e-4)
    again = draw_evaluation_set(bases, EvaluationCondition("saxs", 0.0, saxs_end_q=0.5), 64, seed=3)
    np.testing.assert_array_equal(again.x, data.x)


def test_polydisperse_evaluation_sets_draw_a_sparse_family_from_its_series():
    q = saxs_waxs_q(0.02, 15.0, 256)
    bases = [build_metal_basis("Au", f, q, 1.0, 3.0) for f in FAMILIES[:2]]  # 1 held-out icosahedron, 8 decahedra
    cond = EvaluationCondition("both", 0.2)
    new, old = (draw_evaluation_set(bases, cond, 256, seed=4, populations_of_series=s) for s in (True, False))
    ico = new.targets["family_probabilities"][:, 0] > 0.5
    # one held-out icosahedron: the old 'population' is that cluster alone; the new one a population of the series
    assert np.all(old.targets["dispersion"][old.targets["family_probabilities"][:, 0] > 0.5] < 1e-6)
    assert np.mean(new.targets["dispersion"][ico]) > 0.1
    deca = ~ico
    held_out = split_basis(bases[1], "test").diameter_nm
    assert np.all(new.targets["diameter_nm"][deca] / (1 + new.targets["strain"][deca]) <= held_out.max() + 1e-9)
    narrow = draw_evaluation_set(bases, EvaluationCondition("both", 0.05), 256, seed=4)  # below SERIES_DISPERSION
    assert np.all(narrow.targets["dispersion"][narrow.targets["family_probabilities"][:, 0] > 0.5] < 1e-6)
    mono = draw_evaluation_set(bases, EvaluationCondition("both", 0.0), 64, seed=4)
    again = draw_evaluation_set(bases, EvaluationCondition("both", 0.0), 64, seed=4, populations_of_series=False)
    np.testing.assert_array_equal(mono.x, again.x)


def _estimate(family_p, size, std, classes=SIZE_CLASSES_NM, flags=(), status="sized"):
    from qdots_bluesky.estimate import TaskEstimate
    from qdots_bluesky.models.continuous import class_probabilities

    p_size = class_probabilities(np.log([size]), np.array([std / size]), classes)[0]
    values = {"size_nm": (size, std), "size_volume_nm": (size * 1.1, std), "dispersion": (0.0, 0.01)}
    if status != "sized":
        values = {k: (np.nan, np.nan) for k in values}
    return TaskEstimate(task="metal-shape-size", values=values, units={}, std_keys={},
                        classes={"shape": dict(zip(FAMILIES, family_p))},
                        size_probabilities=dict(zip(classes.tolist(), p_size.tolist())), ood_distance=0.0,
                        status=status, flags=list(flags))


def test_estimate_metrics_from_answers():
    from qdots_bluesky.sim.learning.cluster_evaluation import estimate_arrays, estimate_metrics

    onehot = np.eye(6)
    # row 0: right family, size right; row 1: decahedron called an icosahedron, size one class off (+0.5 nm);
    # row 2: truncated octahedron called a sphere (right group), not sized (NaN), flagged; row 3: only no_waxs
    ests = [_estimate(onehot[0] * 0.9 + 0.1 / 6, 2.0, 0.01), _estimate(onehot[0] * 0.9 + 0.1 / 6, 4.5, 0.01),
            _estimate(onehot[5] * 0.9 + 0.1 / 6, 7.0, 0.01, flags=["out_of_distribution"], status="above_range"),
            _estimate(onehot[4] * 0.9 + 0.1 / 6, 9.0, 0.5, flags=["no_waxs"])]
    arrays = estimate_arrays(ests, FAMILIES)
    assert arrays["family_probabilities"].shape == (4, 6) and np.isnan(arrays["size_nm"][2])
    assert list(arrays["flagged"]) == [False, False, True, False]
    targets = {"family_probabilities": onehot[[0, 1, 3, 4]], "diameter_nm": np.array([2.0, 4.0, 7.0, 9.0]),
               "volume_diameter_nm": np.array([2.2, 4.4, 7.7, 9.9])}
    m = estimate_metrics(arrays, targets, FAMILIES)
    assert m["acc6"] == pytest.approx(2 / 4) and m["acc3"] == pytest.approx(3 / 4)
    assert m["size_class_acc"] == pytest.approx(3 / 4) and m["size_class_acc_pm1"] == 1.0
    assert m["sized"] == 0.75 and m["mae_dn_nm"] == pytest.approx(0.5 / 3)
    assert m["mae_dv_nm"] == pytest.approx(0.55 / 3)  # 2.2 vs 2.2, 4.95 vs 4.4, 9.9 vs 9.9
    assert m["coverage_dn"]["68"] == pytest.approx(2 / 3)  # the 4.5 +- 0.01 nm answer misses 4.0
    assert m["flagged"] == 0.25 and m["flags"] == {"no_waxs": 0.25, "out_of_distribution": 0.25}
    c3 = np.array(m["confusion3_by_size_nm"])
    assert c3.shape == (9, 3, 3) and c3.sum() == 4 and c3[3, 1, 0] == 1
