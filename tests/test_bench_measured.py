"""benchmarks/bench_measured.py: file-name parsing, the summary, a run on a simulated file, empty and real data."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qdots_bluesky.cli import main as qdots_main
from _bench_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT.parent / "shared" / "data" / "measured"

bench = load_benchmark("bench_measured")


def test_parse_name_synchrotron():
    info = bench.parse_name("PbS_synchr_wl0p564162A_3p52nm.xye")
    assert info.wavelength_a == pytest.approx(0.564162)
    assert info.reference_nm == pytest.approx(3.52)
    assert info.kind == "synchrotron"


def test_parse_name_laboratory_without_angstrom_suffix():
    info = bench.parse_name("PbS_lab_wl1p5406_5p03nm_hexane.xy")
    assert (info.wavelength_a, info.reference_nm, info.kind) == (pytest.approx(1.5406), pytest.approx(5.03), "laboratory")


@pytest.mark.parametrize("name, kind", [("PbS_wl1p5406_5p03nm.xy", "laboratory"), ("PbS_wl0p7_5p03nm.xy", "synchrotron")])
def test_kind_from_wavelength(name, kind):
    assert bench.parse_name(name).kind == kind


def test_names_without_size_or_wavelength_are_skipped_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="reference size"):
        bench.parse_name("PbS_synchr_wl0p564162A_hexane.xye")
    with pytest.raises(ValueError, match="wavelength"):
        bench.parse_name("PbS_5p03nm.xye")
    for name in ("PbS_synchr_wl0p564162A_hexane.xye", "PbS_lab_wl1p5406_5p03nm.xy", "README.md"):
        (tmp_path / name).write_text("1 2\n")
    found, skipped = bench.find_files(tmp_path)
    assert [p.name for p, _ in found] == ["PbS_lab_wl1p5406_5p03nm.xy"]
    assert [(p.name, "reference size" in reason) for p, reason in skipped] == [("PbS_synchr_wl0p564162A_hexane.xye", True)]


def test_summary_on_hand_made_rows():
    def row(kind, ref, size, std, right):
        return {"kind": kind, "reference_nm": ref, "size_nm": size, "size_std_nm": std, "class_right": right}

    rows = [row("synchrotron", 5.0, 5.1, 0.1, True),     # error 0.1, within 2 std, within 0.25
            row("synchrotron", 3.5, 3.2, 0.1, False),    # error 0.3, outside 2 std (0.2), outside 0.25
            row("laboratory", 5.0, 4.5, 0.3, False),     # error 0.5, within 2 std (0.6), outside 0.25
            row("laboratory", 6.0, None, None, False)]   # a miss
    s = bench.summarize(rows)
    assert s["n"] == 4 and s["misses"] == 1
    assert s["all"]["mae_nm"] == pytest.approx(0.9 / 3) and s["all"]["n_sized"] == 3
    assert s["synchrotron"] == {"n": 2, "n_sized": 2, "mae_nm": pytest.approx(0.2)}
    assert s["laboratory"] == {"n": 2, "n_sized": 1, "mae_nm": pytest.approx(0.5)}
    assert s["class_right"] == 1
    assert s["within_2_std"] == pytest.approx(2 / 4)
    assert s["within_0p25_nm"] == pytest.approx(1 / 4)
    assert s["max_abs_error_nm"] == pytest.approx(0.5)


def test_nan_size_is_a_miss_and_optional_attributes_are_kept():
    info = bench.parse_name("PbS_synchr_wl0p56A_5p00nm.xy")
    classes = np.arange(2.0, 10.01, 0.5)
    nan = SimpleNamespace(size_nm=float("nan"), size_std_nm=float("nan"), size_class_nm=5.0, flags=[])
    row = bench.make_row("a.xy", info, nan, classes)
    assert row["size_nm"] is None and row["miss"] == "no size given" and row["class_right"]
    full = SimpleNamespace(size_nm=5.2, size_std_nm=0.1, size_class_nm=5.0, flags=["padded"], strain=0.001)
    row = bench.make_row("b.xy", info, full, classes)
    assert row["abs_error_nm"] == pytest.approx(0.2) and row["error_per_std"] == pytest.approx(2.0)
    assert row["extras"] == {"strain": 0.001} and row["reference_class_nm"] == 5.0
    assert bench.summarize([row])["misses"] == 0


def test_end_to_end_on_a_simulated_pattern(tmp_path, capsys):
    name = "PbS_synchr_wl0p56A_5p00nm.xy"
    assert qdots_main(["simulate", "--material", "PbS", "--diameter", "5.0", "--dispersion", "0.1", "--wavelength",
                       "0.56", "--tth", "0.5:84:0.0036", "-o", str(tmp_path / name)]) == 0
    (tmp_path / "notes_wl0p56A.xy").write_text("1 2\n")
    capsys.readouterr()
    out_json = tmp_path / "out.json"
    assert bench.main([str(tmp_path), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "skipped notes_wl0p56A.xy: no reference size" in out
    line = next(line for line in out.splitlines() if line.startswith(name))
    estimate = float(re.search(r"(\d+\.\d+) ± ", line).group(1))
    assert abs(estimate - 5.0) <= 0.5
    assert "nearest class right: 1 of 1" in out
    report = json.loads(out_json.read_text())
    assert [r["file"] for r in report["rows"]] == [name]
    assert report["summary"]["synchrotron"]["n"] == 1 and report["summary"]["laboratory"]["n"] == 0


def test_empty_and_missing_directories_exit_cleanly(tmp_path, capsys):
    assert bench.main([str(tmp_path), str(tmp_path / "absent")]) == 0
    out = capsys.readouterr().out
    assert f"no measured files found in {tmp_path}\n" in out
    assert f"no measured files found in {tmp_path / 'absent'}" in out


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("DIR", "--model", "--device", "--json", "Naming convention"))


def test_real_measured_data(capsys):
    if not MEASURED.is_dir():
        pytest.skip(f"no measured data at {MEASURED}")
    files = sorted(p.name for p in MEASURED.iterdir() if p.suffix in bench.EXTENSIONS)
    assert bench.main([str(MEASURED)]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in files]
    assert rows == files and len(rows) == 6
    assert "mean absolute error" in out
