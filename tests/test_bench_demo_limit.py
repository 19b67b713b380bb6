"""benchmarks/bench_demo_limit.py: the demo's patterns sized by the network and refined with the exact model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _bench_helpers import load_benchmark

bench = load_benchmark("bench_demo_limit")


def test_summary_counts_only_sized_patterns():
    truth = np.array([5.0, 6.0, 7.0])
    s = bench.summary(truth, np.array([5.1, np.nan, 7.5]), np.array([0.1, np.nan, 0.1]))
    assert s["sized"] == 2 and s["n"] == 3
    assert s["mae_nm"] == pytest.approx(0.3) and s["within_2_sigma"] == pytest.approx(0.5)


def test_run_sizes_and_refines_the_demo_patterns(tmp_path, capsys):
    pytest.importorskip("ophyd")
    out = tmp_path / "limit.json"
    assert bench.main(["--points", "4", "--count-rate", "1e5", "--max-diameter", "9", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    text = capsys.readouterr().out
    assert len(data["rows"]) == 3 and "network (instrument unknown): sized 3 of 3" in text
    # the shipped model has the instrument input: it is also run told the ideal detector's resolution
    assert "network told the detector's resolution (0): sized 3 of 3" in text and data["summary"]["network_told"]["sized"] == 3
    exact = data["summary"]["exact"]
    # the exact model on its own patterns: every one sized, within a few e.s.d.s of the truth
    assert exact["sized"] == 3 and exact["mae_nm"] < 0.1
    for row in data["rows"]:
        size, std = row["exact"]
        assert abs(size - row["true_nm"]) < 3 * std
