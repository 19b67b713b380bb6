"""benchmarks/bench_cluster_model.py end to end on a tiny untrained cluster bundle (1-4 nm clusters, 128 Q points,
a few populations per condition): the report and figures are written, a missing bundle exits 2."""
from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from _bench_helpers import load_benchmark  # noqa: E402
from test_cluster_predictor import tiny_bundle  # noqa: E402


def _bench():
    return load_benchmark("bench_cluster_model")


def test_the_benchmark_writes_its_report_and_figures(tmp_path, monkeypatch, capsys):
    bundle = tiny_bundle(tmp_path / "tiny.safetensors", training={
        "population_ranges": {"mean_diameter_nm": [1.0, 4.0]}, "d_min_nm": 1.0, "d_max_nm": 4.0, "test_every": 3,
        "ranges": {"mean_diameter_nm": [1.0, 4.0], "dispersion": [0.0, 0.3], "strain": [-0.01, 0.01]}})
    out = tmp_path / "eval"
    monkeypatch.setattr(sys, "argv", ["bench", str(bundle), "--out", str(out), "--per-condition", "6",
                                      "--skip-debyecalculator", "--device", "numpy"])
    assert _bench().main() == 0
    printed = capsys.readouterr().out
    assert "0.5 nm size class from SAXS alone" in printed and "waxs start 3" in printed
    report = json.loads((out / "report.json").read_text())
    held = report["held_out"]
    assert len(held["targets"]) == 6 and all(isinstance(t["met"], bool) for t in held["targets"])
    assert len(held["conditions"]) == 16 and held["conditions"]["gap, disp 0.3"]["n"] == 6
    assert set(held["robustness"]) == {"noise", "saxs_end", "waxs_start"}
    for name in ("confusion_families", "confusion_structures", "size_errors_by_shape", "robustness"):
        assert (out / f"{name}.png").stat().st_size > 1000


def test_a_missing_bundle_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "e")])
    assert _bench().main() == 2
    assert "no bundle at" in capsys.readouterr().err
