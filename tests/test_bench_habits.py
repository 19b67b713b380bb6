"""benchmarks/bench_habits.py: a model sizes simulated populations of every habit (tiny run, tiny bundle)."""
from __future__ import annotations

import json

import pytest

from _bench_helpers import load_benchmark


def test_bench_habits_prints_every_habit(bundle, tmp_path, capsys):
    bench = load_benchmark("bench_habits")
    out = tmp_path / "habits.json"
    assert bench.main(["--model", str(bundle), "--n", "3", "--sizes", "2.5", "3.0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for habit in ("sphere", "octahedron", "truncated-octahedron", "cuboctahedron", "cube", "rhombic-dodecahedron"):
        assert habit in text
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {"sphere", "octahedron", "truncated-octahedron", "cuboctahedron", "cube",
                            "rhombic-dodecahedron"}
    assert all(f["n"] == 3 and f["mae_nm"] >= 0 for f in figures.values())


def test_bench_habits_rejects_bad_options(capsys):
    bench = load_benchmark("bench_habits")
    for argv in (["--sizes", "5", "2"], ["--sizes", "0.1", "0.3"], ["--model", "missing.safetensors"],
                 ["--instrument-fwhm", "0", "0.1"]):  # wider than the shipped model was trained with
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and "error: " in err[-1] and "accepted" in err[-1] and "Traceback" not in "".join(err)
