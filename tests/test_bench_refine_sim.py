"""benchmarks/bench_refine_sim.py: the refinement on simulations of its own model (found, unbiased, covered)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_refine_sim", ROOT / "benchmarks" / "bench_refine_sim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def test_summary_of_rows():
    rows = [{"status": "sized", "size_nm": 3.1, "size_std_nm": 0.2, "truth_nm": 3.0, "ms": 10.0},
            {"status": "sized", "size_nm": 3.5, "size_std_nm": 0.2, "truth_nm": 3.0, "ms": 30.0},
            {"status": "no_nanocrystals", "size_nm": np.nan, "size_std_nm": np.nan, "truth_nm": 3.0, "ms": 20.0}]
    s = bench.summarize(rows)
    assert s["n"] == 3 and s["sized"] == 2 and s["median_ms"] == 20.0
    assert s["within_1"] == 0.5 and s["within_2"] == 0.5
    assert s["bias_over_esd"] == pytest.approx(1.5) and s["median_abs_error_nm"] == pytest.approx(0.3)


def test_small_run_finds_the_dots_and_no_false_ones(tmp_path):
    out = tmp_path / "sim.json"
    assert bench.main(["--draws", "4", "--blanks", "2", "--max-diameter", "9", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for setting, s in data["summaries"].items():
        assert s["all"]["n"] == 4 and s["all"]["sized"] == 4, setting
        assert s["false_positives"] == 0 and s["blanks"] == 2
    assert {r["weights"] for r in data["rows"]} <= {"counts", "model"}
