"""Pattern discovery and the output schema: pure functions of documents, tested without a RunEngine."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qdots_bluesky.callbacks import schema
from qdots_bluesky.callbacks.discovery import (
    DiscoveryOptions,
    PatternError,
    extract_pattern,
    find_source,
    parse_unit,
)


def descriptor(x_key="det_tth", n=200, config=None, data_keys=None, name="primary", x_units=None):
    x = np.linspace(5, 60, n).tolist()
    cfg = {"det": {"data": {x_key: x, "det_wavelength": 0.5646}, "timestamps": {},
                   "data_keys": {x_key: {"dtype": "array", "shape": [n], "units": x_units},
                                 "det_wavelength": {"dtype": "number", "shape": []}}}}
    keys = {"det_image": {"dtype": "array", "shape": [n], "source": "t", "object_name": "det"},
            "temp": {"dtype": "number", "shape": [], "source": "t"}}
    return {"uid": "d1", "run_start": "s1", "name": name, "data_keys": data_keys or keys,
            "configuration": cfg if config is None else config, "object_keys": {"det": ["det_image"]}}


def test_axis_unit_and_wavelength_from_the_configuration():
    src = find_source({"uid": "s1"}, descriptor())
    assert src.problem is None and src.pattern_key == "det_image" and src.x_key == "det_tth"
    assert src.x_unit == "tth" and src.wavelength == pytest.approx(0.5646) and src.x.shape == (200,)
    assert not src.x_in_event and "2theta (deg)" in src.describe()
    # a Q axis needs no wavelength
    src = find_source({}, descriptor(x_key="det_q"))
    assert src.x_unit == "q" and src.wavelength is None


def test_wavelength_in_nm_is_converted_and_missing_wavelength_is_a_problem():
    desc = descriptor()
    desc["configuration"]["det"]["data_keys"]["det_wavelength"]["units"] = "nm"
    desc["configuration"]["det"]["data"]["det_wavelength"] = 0.05646
    assert find_source({}, desc).wavelength == pytest.approx(0.5646)
    desc["configuration"]["det"]["data"].pop("det_wavelength")
    assert "no wavelength" in find_source({}, desc).problem
    assert find_source({"wavelength": 0.7}, desc).wavelength == 0.7  # from the start document
    assert find_source({}, desc, DiscoveryOptions(wavelength=0.9)).wavelength == 0.9  # option


def test_start_document_and_options_choose_keys_and_stream():
    keys = {"a_pattern": {"dtype": "array", "shape": [200]}, "other": {"dtype": "array", "shape": [200]},
            "axis": {"dtype": "array", "shape": [200], "units": "1/A"}}
    desc = descriptor(data_keys=keys, config={})
    src = find_source({"qdots_pattern_key": "other", "qdots_x_key": "axis"}, desc)
    assert src.pattern_key == "other" and src.x_in_event and src.x_unit == "q" and src.x is None
    assert find_source({}, desc, DiscoveryOptions(x_key="axis")).pattern_key == "a_pattern"  # preferred word
    assert find_source({"qdots_pattern_key": "missing"}, desc) is None
    assert find_source({}, descriptor(), DiscoveryOptions(source_stream="baseline")) is None
    assert find_source({}, descriptor(data_keys={"t": {"dtype": "number", "shape": []}})) is None
    src = find_source({}, desc, DiscoveryOptions(x_key="nowhere"))
    assert "neither a configuration value nor a data key" in src.problem


def test_external_data_and_unknown_unit_are_problems():
    keys = {"det_image": {"dtype": "array", "shape": [200], "external": "FILESTORE:"}}
    assert "external data" in find_source({}, descriptor(data_keys=keys)).problem
    src = find_source({}, descriptor(), DiscoveryOptions(x_key="det_tth", x_unit=None))
    assert src.x_unit == "tth"
    desc = descriptor(x_key="det_axis_tth")
    desc["configuration"]["det"]["data"]["det_x"] = desc["configuration"]["det"]["data"].pop("det_axis_tth")
    src = find_source({}, desc, DiscoveryOptions(x_key="det_x"))
    assert "unit of the x axis 'det_x' unknown" in src.problem
    assert find_source({"x_unit": "deg"}, desc, DiscoveryOptions(x_key="det_x")).x_unit == "tth"


def test_parse_unit():
    assert [parse_unit(u) for u in ("2theta", " Degrees", "1/A", "q", "nm", None, 3)] == \
        ["tth", "tth", "q", "q", None, None, None]


def test_extract_pattern_checks_each_event():
    src = find_source({}, descriptor())
    y = np.linspace(1, 2, 200)
    x, out = extract_pattern(src, {"det_image": y.tolist()}, 1)
    assert np.array_equal(out, y) and x is src.x
    bad = {"missing": ({}, "no data key 'det_image'"), "string": ({"det_image": "datum/0"}, "holds a string"),
           "2d": ({"det_image": np.ones((2, 200))}, r"shape \(2, 200\)"),
           "short": ({"det_image": y[:50]}, "50 points but the x axis"),
           "zeros": ({"det_image": np.zeros(200)}, "all zeros"),
           "tail": ({"det_image": np.r_[y[:150], np.full(50, np.nan)]}, "NaN tail")}
    for name, (data, text) in bad.items():
        with pytest.raises(PatternError, match=text):
            extract_pattern(src, data, 3)
    src.problem = "no axis"
    with pytest.raises(PatternError, match="no axis"):
        extract_pattern(src, {"det_image": y}, 1)


def test_schema_keys_units_and_error_events():
    keys = schema.output_keys([2.0, 3.0, 4.0])
    assert set(keys) == set(schema.OUTPUT_KEYS)
    for k in schema.FLOAT_KEYS:
        assert keys[k]["dtype"] == "number" and keys[k]["dtype_numpy"] == "<f8", k
    assert keys["size_nm"]["units"] == "nm" and keys["latency_ms"]["units"] == "ms"
    assert keys["probabilities"]["shape"] == [3] and keys["probabilities"]["size_classes_nm"] == [2.0, 3.0, 4.0]
    data = schema.event_data("broken", 3, seq_num=4, uid="u", latency_ms=1.5)
    assert data["status"] == schema.STATUS_ERROR and data["message"] == "broken"
    assert all(math.isnan(data[k]) for k in schema.FLOAT_KEYS) and len(data["probabilities"]) == 3
    assert set(data) == set(keys)
    conf = schema.configuration({"chunk_size": 8, "wavelength": 0.5, "size_classes_nm": [2.0], "model_path": "m"})
    dks = conf[schema.SIZER_OBJECT]["data_keys"]
    assert dks["chunk_size"]["dtype"] == "integer" and dks["wavelength"]["units"] == "angstrom"
    assert dks["size_classes_nm"]["dtype"] == "array" and dks["model_path"]["dtype"] == "string"
    assert schema.stored_chunk_size({"configuration": conf}) == 8 and schema.stored_chunk_size({}) is None
