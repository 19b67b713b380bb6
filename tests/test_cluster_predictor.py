"""A SAXS + WAXS task bundle through the one pipeline: bundle round trip, Predictor.from_bundle, answers, JSON,
stream keys, flags and bad bundles (a tiny untrained ClusterNet: the plumbing, not the accuracy)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qdots_bluesky.callbacks import schema  # noqa: E402
from qdots_bluesky.cluster_predictor import ClusterPredictor  # noqa: E402
from qdots_bluesky.models.architectures import T_SHAPE_TEMPERATURE  # noqa: E402
from qdots_bluesky.models.bundle import BundleError, read_bundle, save_bundle  # noqa: E402
from qdots_bluesky.models.cluster_engine import default_cluster_config  # noqa: E402
from qdots_bluesky.models.cluster_network import ClusterNet  # noqa: E402
from qdots_bluesky.models.task import metal_shape_size_task  # noqa: E402
from qdots_bluesky.predictor import Predictor  # noqa: E402

N = 128
TASK = metal_shape_size_task("Au", n_points=N)


def tiny_bundle(path, task=TASK, **meta):
    torch.manual_seed(0)
    q = np.geomspace(0.02, 15.0, N)
    cfg = default_cluster_config(n_points=N, saxs_stop=int(np.searchsorted(q, 1.0)), waxs_start=int(np.searchsorted(q, 0.5)),
                                 widths=[4, 8], kernel=3, hidden=8)
    model = ClusterNet(cfg).eval()
    with torch.no_grad():  # untrained, but answering: particles present, sizes near 3 nm with a small spread
        model.presence_head.bias.fill_(10.0)
        model.continuous_head.weight.mul_(0.05)
        model.continuous_head.bias.zero_()
    d = 2 * cfg["hidden"]
    tensors = {T_SHAPE_TEMPERATURE: np.array([1.5], np.float32),
               "calibration.continuous_interval": np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32),
               "ood.feature_mean": np.zeros(d, np.float32), "ood.feature_precision": np.eye(d, dtype=np.float32),
               "ood.threshold": np.array([1e6], np.float32)}
    metadata = {"task": task, "training": {"population_ranges": {"mean_diameter_nm": [1.0, 10.0]}}, **meta}
    return save_bundle(path, model, metadata, tensors)


def pattern(q, d_nm=4.0):
    """A sphere's form factor (SAXS) plus Gaussian Bragg-like peaks of fcc Au (WAXS), positive everywhere."""
    r = 10 * d_nm / 2
    x = q * r
    saxs = (3 * (np.sin(x) - x * np.cos(x)) / x ** 3) ** 2
    waxs = sum(np.exp(-0.5 * ((q - c) / 0.05) ** 2) for c in (2.67, 3.08, 4.36, 5.11))
    return 1e4 * saxs + 0.5 * waxs + 0.05


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("cluster") / "tiny_cluster.safetensors")


def test_a_task_bundle_reads_back_with_its_task_and_loads_as_a_cluster_predictor(bundle):
    contents = read_bundle(bundle)
    assert contents.architecture == "cluster-cnn" and contents.task == TASK
    predictor = Predictor.from_bundle(bundle, device="numpy")
    assert isinstance(predictor, ClusterPredictor) and predictor.task.name == "metal-shape-size"


def test_numpy_and_torch_engines_give_the_same_answers(bundle):
    q = np.geomspace(0.01, 20.0, 3000)
    Y = np.stack([pattern(q, d) for d in (2.0, 5.0)])
    a = Predictor.from_bundle(bundle, device="numpy").predict_batch(q, Y, x_unit="q")
    b = Predictor.from_bundle(bundle, device="cpu").predict_batch(q, Y, x_unit="q")
    for ea, eb in zip(a, b):
        assert ea.classes["shape"] == pytest.approx(eb.classes["shape"], abs=1e-4)
        for k in ea.values:
            assert ea.values[k] == pytest.approx(eb.values[k], rel=1e-3, nan_ok=True)


def test_an_answer_holds_what_the_task_declares_and_publishes_under_its_keys(bundle):
    predictor = Predictor.from_bundle(bundle, device="numpy")
    q = np.geomspace(0.01, 20.0, 3000)
    est = predictor.predict_pattern(q, pattern(q), x_unit="q")
    assert sum(est.classes["shape"].values()) == pytest.approx(1.0, abs=1e-6)
    assert est.classes["structure"]["fcc"] == pytest.approx(sum(est.classes["shape"][f] for f in
                                                                ("octahedron", "truncated_octahedron", "cuboctahedron",
                                                                 "sphere")))
    assert set(est.values) == {"size_nm", "size_volume_nm", "dispersion"} and est.units["size_nm"] == "nm"
    assert sum(est.size_probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    keys = schema.output_keys(predictor.task)
    record = est.record()
    assert set(record) <= set(keys) and {"size_nm", "size_std_nm", "shape", "structure_probabilities"} <= set(record)
    text = json.dumps(est.to_dict(), allow_nan=False)  # JSON without NaN: a missing value is null
    assert '"task": "metal-shape-size"' in text
    assert est.status == "sized" and 2.0 < est.size_nm < 5.0 and est.size_std_nm > 0 and "±" in est.summary()
    assert est.values["size_volume_nm"][0] >= est.size_nm and est.values["dispersion"][0] >= 0  # physical bounds
    shape, p = est.best("structure")
    assert shape in ("icosahedral", "decahedral", "fcc") and 0 < p <= 1 and record["structure"] == shape


def test_where_no_particles_are_found_nothing_is_published_but_the_reason(tmp_path):
    q = np.geomspace(0.01, 20.0, 3000)
    path = tiny_bundle(tmp_path / "blind.safetensors")
    from qdots_bluesky.models.bundle import read_bundle as read

    contents = read(path)
    contents.weights["presence_head.bias"] = np.array([-10.0], np.float32)  # the presence head sees nothing
    predictor = ClusterPredictor(contents, device="numpy")
    est = predictor.predict_pattern(q, pattern(q), x_unit="q")
    assert est.status == "no_nanocrystals" and "no_nanocrystals" in est.flags
    assert np.isnan(est.size_nm) and all(np.isnan(v) for v in est.classes["shape"].values())
    assert all(np.isnan(v) for v in est.size_probabilities.values()) and est.best("shape")[0] == ""
    record = est.record()
    assert record["shape"] == "" and np.isnan(record["structure_confidence"])
    assert json.dumps(est.to_dict(), allow_nan=False) and est.summary().startswith("no particles detected")


def test_a_saxs_only_pattern_is_flagged_no_waxs_and_its_report_says_what_was_measured(bundle):
    predictor = Predictor.from_bundle(bundle, device="numpy")
    q = np.geomspace(0.01, 0.6, 800)
    est = predictor.predict_pattern(q, pattern(q), x_unit="q")
    assert "no_waxs" in est.flags
    assert est.standardization["q_max_data"] == pytest.approx(0.6) and est.standardization["coverage"] < 0.6


def test_bad_task_bundles_are_refused_with_what_is_wrong(tmp_path):
    with pytest.raises(BundleError, match="needs a 'task'"):
        q = np.geomspace(0.02, 15.0, N)
        cfg = default_cluster_config(n_points=N, saxs_stop=int(np.searchsorted(q, 1.0)), widths=[4], kernel=3,
                                     hidden=4, waxs_start=int(np.searchsorted(q, 0.5)))
        save_bundle(tmp_path / "x.safetensors", ClusterNet(cfg), {}, {})
    with pytest.raises(BundleError, match="input has 64 points"):
        tiny_bundle(tmp_path / "y.safetensors", task=metal_shape_size_task(n_points=64))


def test_refinement_and_bad_inputs_of_a_task_model_get_one_line_errors(bundle):
    predictor = Predictor.from_bundle(bundle, device="numpy")
    with pytest.raises(ValueError, match="accepted: finite"):
        predictor.predict_standardized(np.zeros((1, 2, N + 1), np.float32))
    with pytest.raises(ValueError, match="outside the model's grid"):
        predictor.predict_pattern(np.linspace(20, 30, 50), np.ones(50), x_unit="q")


def test_qdots_predict_with_a_task_bundle_prints_json_with_the_task_keys_and_a_figure(bundle, tmp_path, capsys):
    from qdots_bluesky.cli.main import main

    q = np.geomspace(0.01, 20.0, 2000)
    path = tmp_path / "gold.xy"
    np.savetxt(path, np.c_[q, pattern(q)], header="x_unit: q")
    assert main(["predict", "--model", str(bundle), "--device", "numpy", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert record["task"] == "metal-shape-size" and set(record["structure_probabilities"]) == {"icosahedral",
                                                                                              "decahedral", "fcc"}
    assert record["units"]["size_nm"] == "nm"
    assert main(["predict", "--model", str(bundle), "--device", "numpy", str(path), "--plot", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 5000
    assert main(["predict", "--model", str(bundle), "--device", "numpy", str(path), "--refine"]) == 2
    assert "--refine: the DSE refinement refines quantum-dot sizes" in capsys.readouterr().err


def test_a_bundle_whose_network_cannot_answer_its_task_is_refused_when_written(tmp_path):
    from qdots_bluesky.models.task import InputSpec, Target, Task

    wrong_classes = Task("t", "Au", InputSpec("saxs-waxs", 0.02, 15.0, N, "log"),
                         (Target("shape", "classes", labels=("a", "b")), Target("size_nm", "value", unit="nm")),
                         size_classes_nm=(1.0, 2.0))
    with pytest.raises(BundleError, match="not the network's families"):
        tiny_bundle(tmp_path / "a.safetensors", task=wrong_classes)
    strain = Task("t", "Au", TASK.input, TASK.targets + (Target("strain", "value", unit="dimensionless"),),
                  size_classes_nm=TASK.size_classes_nm)
    with pytest.raises(BundleError, match="not among the network's outputs"):
        tiny_bundle(tmp_path / "b.safetensors", task=strain)
    linear = Task("t", "Au", InputSpec("saxs-waxs", 0.02, 15.0, N, "linear"), TASK.targets,
                  size_classes_nm=TASK.size_classes_nm)
    with pytest.raises(BundleError, match="a cluster network reads saxs-waxs, log"):
        tiny_bundle(tmp_path / "c.safetensors", task=linear)


def test_a_live_sizer_does_not_refine_with_a_task_it_cannot_refine(bundle):
    pytest.importorskip("bluesky")
    from qdots_bluesky.callbacks.live_sizer import LiveSizer

    with pytest.raises(ValueError, match="refine: the DSE refinement refines quantum-dot sizes"):
        LiveSizer(model=bundle, device="numpy", refine=True)


def test_the_dispersion_slope_widens_the_sizes_uncertainty_and_a_bad_one_is_refused(tmp_path):
    from qdots_bluesky.models.architectures import T_DISPERSION_SLOPE
    from qdots_bluesky.models.bundle import read_bundle as read

    q = np.geomspace(0.01, 20.0, 3000)
    base = read(tiny_bundle(tmp_path / "base.safetensors"))
    plain = ClusterPredictor(base, device="numpy").predict_pattern(q, pattern(q), x_unit="q")
    base.tensors[T_DISPERSION_SLOPE] = np.array([5.0, 5.0, 5.0], np.float32)
    wide = ClusterPredictor(base, device="numpy").predict_pattern(q, pattern(q), x_unit="q")
    d = wide.values["dispersion"][0]
    assert wide.size_std_nm == pytest.approx(plain.size_std_nm * np.exp(5.0 * d), rel=1e-6)
    torch.manual_seed(0)
    model = ClusterNet(base.config).eval()
    bad = dict(base.tensors, **{T_DISPERSION_SLOPE: np.zeros(2, np.float32)})
    with pytest.raises(BundleError, match="continuous_dispersion_slope has shape"):
        save_bundle(tmp_path / "bad.safetensors", model, {"task": TASK}, bad)
