"""benchmarks/bench_measured_robustness.py: the derived recordings, the summary, a run on a simulated file, no data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from qdots_bluesky.cli import main as qdots_main
from qdots_bluesky.units import tth_to_q
from _bench_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT.parent / "shared" / "data" / "measured"

bench = load_benchmark("bench_measured_robustness")


def test_q_window_keeps_the_points_inside():
    x = np.linspace(5.0, 120.0, 2000)
    sigma = np.full(x.size, 0.5)
    xs, ys, ss = bench.q_window(2.0, 10.0, 0.56)(x, x * 2.0, sigma, np.random.default_rng(0))
    q = tth_to_q(xs, 0.56)
    assert q.min() >= 2.0 and q.max() <= 10.0
    dropped = tth_to_q(np.setdiff1d(x, xs), 0.56)
    assert np.all((dropped < 2.0) | (dropped > 10.0)) and dropped.size > 0
    assert np.array_equal(ys, xs * 2.0) and ss.size == xs.size


def test_rebin_averages_and_combines_sigma():
    x = np.arange(10.0)
    y = np.arange(10.0) ** 2
    xs, ys, ss = bench.rebin(4)(x, y, np.full(10, 2.0), None)
    assert np.allclose(xs, [1.5, 5.5])  # the remainder (8, 9) is dropped
    assert np.allclose(ys, [np.mean([0, 1, 4, 9]), np.mean([16, 25, 36, 49])])
    assert np.allclose(ss, 1.0)  # 2 / sqrt(4): the mean of 4 points
    assert bench.rebin(2)(x, y, None, None)[2] is None


def test_decimation_keeps_every_kth_point():
    x = np.arange(10.0)
    xs, ys, ss = bench.decimate(3)(x, x * 2, np.ones(10), None)
    assert np.array_equal(xs, [0, 3, 6, 9]) and np.array_equal(ys, [0, 6, 12, 18]) and np.array_equal(ss, np.ones(4))


def test_no_blank_named_no_subtraction(tmp_path):
    info = bench.NameInfo(0.56, 5.0, "synchrotron")
    x = np.linspace(1, 80, 100)
    assert bench.subtract_solvent(tmp_path / "PbS_synchr_wl0p56A_5p00nm.xy", info, x, x, None, tmp_path) is None
    # named, but no blank file in the solvents directory
    assert bench.subtract_solvent(tmp_path / "PbS_synchr_wl0p56A_5p00nm_hexane.xy", info, x, x, None, tmp_path) is None


def test_thinning_makes_the_counts_of_a_shorter_exposure():
    rng = np.random.default_rng(1)
    counts = rng.poisson(400.0, 20000).astype(float)
    _, thinned, sigma = bench.thin_counts(0.25)(np.arange(counts.size, dtype=float), counts, None, rng)
    assert sigma is None and np.all(thinned == np.round(thinned))
    assert thinned.mean() == pytest.approx(100.0, rel=0.01)
    assert thinned.var() == pytest.approx(100.0, rel=0.05)  # Poisson again: variance = mean
    with pytest.raises(ValueError, match="counts"):
        bench.thin_counts(0.5)(np.arange(3.0), np.array([1.5, 2.0, 3.0]), None, rng)


def test_more_noise_multiplies_the_noise():
    rng = np.random.default_rng(2)
    y = np.full(40000, 10.0)
    sigma = np.full(y.size, 0.1)
    _, noisy, s = bench.more_noise(3.0)(np.arange(y.size, dtype=float), y, sigma, rng)
    assert np.std(noisy - y) == pytest.approx(0.1 * math.sqrt(8.0), rel=0.02)
    assert np.allclose(s, 0.3)
    with pytest.raises(ValueError, match="sigma"):
        bench.more_noise(2.0)(np.arange(3.0), np.ones(3), None, rng)


def test_every_derivation_applies_to_a_kind_and_labels_are_shared_across_wavelengths():
    for d in bench.derivations(0.56):
        assert set(d.kinds) <= {"synchrotron", "laboratory"} and d.kinds
    assert [d.label for d in bench.derivations(0.56)] == [d.label for d in bench.derivations(1.5406)]


def test_summary_on_hand_made_rows():
    def row(kind, ref, base, size, std, flags=()):
        return {"kind": kind, "reference_nm": ref, "base_nm": base, "size_nm": size, "size_std_nm": std,
                "flags": list(flags)}

    rows = [row("synchrotron", 5.0, 5.1, 5.3, 0.1, ["padded"]),  # error 0.3 (outside 2 std), shift +0.2 = 2 std
            row("laboratory", 5.0, 5.0, 4.9, 0.1),              # error 0.1 (inside), shift -0.1
            row("laboratory", 5.0, 5.0, None, None)]            # no size
    s = bench.summarize("test", rows)
    assert (s["n"], s["n_sized"]) == (3, 2)
    assert s["mae_nm"] == pytest.approx(0.2)
    assert s["mae_synchrotron_nm"] == pytest.approx(0.3) and s["mae_laboratory_nm"] == pytest.approx(0.1)
    assert s["within_2_std"] == pytest.approx(1 / 3)
    assert s["mean_shift_nm"] == pytest.approx(0.05) and s["max_abs_shift_nm"] == pytest.approx(0.2)
    assert s["max_shift_per_std"] == pytest.approx(2.0)
    assert s["flags"] == ["padded"]


def test_end_to_end_on_a_simulated_pattern(tmp_path, capsys):
    name = "PbS_synchr_wl0p56A_5p00nm.xy"
    assert qdots_main(["simulate", "--material", "PbS", "--diameter", "5.0", "--dispersion", "0.1", "--wavelength",
                       "0.56", "--tth", "0.5:84:0.0036", "-o", str(tmp_path / name)]) == 0
    capsys.readouterr()
    out_json = tmp_path / "out.json"
    assert bench.main([str(tmp_path), "--draws", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    assert "as measured" in lines and "Q max 8 1/A" in lines and "16 points averaged" in lines
    assert "Q max 4 1/A" not in lines  # a laboratory derivation: no laboratory file
    assert "solvent subtracted (refined blank scale)" not in lines  # no blank named in the file name
    report = json.loads(out_json.read_text())
    first = report["summaries"][0]
    assert first["derivation"] == "as measured" and first["n_sized"] == 1
    assert abs(report["rows"]["as measured"][0]["size_nm"] - 5.0) <= 0.5
    assert report["rows"]["as measured"][0]["base_nm"] == report["rows"]["as measured"][0]["size_nm"]
    # the file has no sigma column: the added-noise derivation says so and sizes nothing
    assert not report["rows"]["noise x4 (Gaussian added)"]


def test_no_data_and_bad_draws(tmp_path, capsys):
    assert bench.main([str(tmp_path / "absent")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path), "--draws", "0"])


def test_real_measured_data(capsys):
    if not MEASURED.is_dir():
        pytest.skip(f"no measured data at {MEASURED}")
    assert bench.main([str(MEASURED), "--draws", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("as measured") and "6/6" in line for line in lines)
    # the two colloids named with their solvent, whose blanks are in ../solvents, are sized with it subtracted
    assert any(line.startswith("solvent subtracted") and "2/2" in line for line in lines)
