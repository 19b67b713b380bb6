"""Tasks a bundle declares: presets, round trips, the legacy reading, bad tasks, and the stream keys they give."""
from __future__ import annotations

import json
import math

import pytest

from qdots_bluesky.callbacks import schema
from qdots_bluesky.models.task import (
    PRESETS,
    InputSpec,
    Target,
    Task,
    TaskError,
    load_task,
    metal_shape_size_task,
    pbs_size_task,
    task_of,
)


def test_presets_round_trip_through_json():
    for name, make in PRESETS.items():
        task = make()
        again = Task.from_dict(json.loads(json.dumps(task.to_dict())))
        assert again == task and again.name == name


def test_a_bundle_without_a_task_is_the_pbs_size_preset_with_its_classes_and_grid():
    meta = {"size_classes_nm": [2.0, 2.5, 3.0], "q_grid": {"q_min": 1.0, "q_max": 15.0, "n_points": 5004}}
    task = task_of(meta)
    assert task.is_pbs_preset and task.size_classes_nm == (2.0, 2.5, 3.0)
    assert [t.name for t in task.values] == ["size_nm", "size_volume_nm", "dispersion", "strain"]
    assert task.input.kind == "waxs-standardized" and task.input.n_points == 5004


def test_metal_task_declares_families_structures_sizes_and_a_log_grid():
    task = metal_shape_size_task("Ag", n_points=512)
    shape = task.target("shape")
    assert shape.kind == "classes" and len(shape.labels) == 6 and shape.group_labels() == ["icosahedral", "decahedral", "fcc"]
    assert task.material == "Ag" and task.input.spacing == "log" and task.input.channels == ("asinh_intensity", "mask")
    assert task.size_classes_nm[0] == 1.0 and task.size_classes_nm[-1] == 10.0
    assert task.target("size_nm").std_key() == "size_std_nm" and task.target("dispersion").std_key() == "dispersion_std"
    with pytest.raises(KeyError, match="no target 'colour'"):
        task.target("colour")


@pytest.mark.parametrize("bad, message", [
    (dict(name="x y", kind="value", unit="nm"), "identifier"),
    (dict(name="x", kind="histogram", unit="nm"), "accepted: classes, value"),
    (dict(name="x", kind="value"), "has no unit"),
    (dict(name="x", kind="classes", labels=("a",)), "two or more"),
    (dict(name="x", kind="classes", labels=("a", "b"), group_name="g", groups=(("g1", ("a",)),)), "exactly once"),
])
def test_bad_targets_are_refused_with_what_is_accepted(bad, message):
    with pytest.raises(TaskError, match=message):
        Target(**bad)


def test_bad_tasks_and_inputs_are_refused():
    with pytest.raises(TaskError, match="lacks"):
        Task.from_dict({"name": "x"})
    with pytest.raises(TaskError, match="distinct names"):
        Task("t", "Au", InputSpec("saxs-waxs", 0.02, 15, 64, "log"),
             (Target("a", "value", unit="nm"), Target("a", "value", unit="nm")))
    with pytest.raises(TaskError, match="spacing"):
        InputSpec("saxs-waxs", 0.02, 15, 64, "cubic")
    with pytest.raises(TaskError, match="accepted: waxs-standardized, saxs-waxs"):
        InputSpec("saxs", 0.02, 15, 64)


def test_load_task_from_a_preset_name_or_a_json_file(tmp_path):
    assert load_task("metal-shape-size").name == "metal-shape-size"
    path = tmp_path / "silver.json"
    path.write_text(json.dumps(metal_shape_size_task("Ag").to_dict()))
    assert load_task(path).material == "Ag"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TaskError, match="not JSON"):
        load_task(tmp_path / "bad.json")
    with pytest.raises(TaskError, match="a preset"):
        load_task("gold-please")


def test_stream_keys_follow_the_task_with_units_and_labels():
    keys = schema.output_keys(metal_shape_size_task())
    assert keys["size_nm"]["units"] == "nm" and keys["size_std_nm"]["units"] == "nm"
    assert keys["dispersion"]["units"] == "dimensionless" and "dispersion_std" in keys
    assert keys["shape"]["dtype"] == "string" and "icosahedron" in keys["shape"]["choices"]
    assert keys["structure_probabilities"]["shape"] == [3] and keys["structure_probabilities"]["labels"][2] == "fcc"
    assert keys["probabilities"]["shape"] == [19]
    for common in ("outcome", "status", "flags", "message", "source_seq_num", "source_uid", "latency_ms"):
        assert common in keys
    assert "size_regression_nm" not in keys and "strain" not in keys  # what the task does not declare is not published
    # the quantum-dot sizer keeps its published layout, whether given by its task or its classes
    assert schema.output_keys(pbs_size_task([2.0, 3.0])) == schema.output_keys([2.0, 3.0])


def test_an_error_event_of_a_task_fills_every_key_with_nothing():
    keys = schema.output_keys(metal_shape_size_task())
    data = schema.event_data("broken file", keys, seq_num=3, uid="u", latency_ms=2.0)
    assert set(keys) == set(data)
    assert math.isnan(data["size_nm"]) and data["shape"] == "" and len(data["shape_probabilities"]) == 6
    assert all(math.isnan(v) for v in data["structure_probabilities"])
    assert data["status"] == "error" and data["message"] == "broken file" and data["source_seq_num"] == 3


def test_tasks_whose_keys_clash_or_whose_fields_are_malformed_are_refused():
    nm = dict(kind="value", unit="nm")
    spec = InputSpec("saxs-waxs", 0.02, 15, 64, "log")
    with pytest.raises(TaskError, match="published twice or are the sizer's own"):
        Task("t", "Au", spec, (Target("size_nm", **nm), Target("size_std_nm", **nm)))
    with pytest.raises(TaskError, match="sizer's own"):
        Task("t", "Au", spec, (Target("status", **nm),))
    bad = metal_shape_size_task().to_dict()
    bad["targets"][0]["labels"] = None
    with pytest.raises(TaskError, match="a list of label names"):
        Task.from_dict(bad)
    for key, value, message in (("presence", "false", "true or false"), ("size_classes_nm", [1.0, float("nan")], "positive")):
        with pytest.raises(TaskError, match=message):
            Task.from_dict({**metal_shape_size_task().to_dict(), key: value})
    spec_dict = {**metal_shape_size_task().to_dict()}
    spec_dict["input"] = {**spec_dict["input"], "n_points": 2.7}
    with pytest.raises(TaskError, match="whole number"):
        Task.from_dict(spec_dict)
    assert task_of({"q_grid": "abc"}).is_pbs_preset  # a bad grid is left to the bundle check to report
