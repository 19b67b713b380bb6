"""``qdots fit`` (qdots_bluesky.cli.fit) through a small parser of its own, and a measured laboratory film."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from qdots_bluesky.cli.fit import add_fit
from qdots_bluesky.refine.basis import refinement_basis
from qdots_bluesky.sim.physics.solvents import solvent_pattern
from qdots_bluesky.units import tth_to_q

WL = 0.564162


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="qdots")
    add_fit(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fit"] + argv)
    return args.func(args)


@pytest.fixture(scope="module")
def pattern_file(tmp_path_factory):
    """A simulated colloid (3.0 nm PbS, dispersion 0.1, hexane) as 2theta / I / sigma with a wavelength header."""
    basis = refinement_basis("PbS", WL, max_diameter_nm=6.0)
    tth = np.arange(5.5, 45.0, 0.01)
    q = tth_to_q(tth, WL)
    crys, comp = basis.patterns(np.array([3.0]), np.array([0.10]), np.array([0.0]))
    dots = np.interp(q, basis.q, (crys + comp)[0])
    solv = solvent_pattern("hexane", q, WL)
    y = np.random.default_rng(1).poisson(2e4 * dots / dots.mean() + 1e4 * solv / solv.mean() + 2000.0).astype(float)
    path = tmp_path_factory.mktemp("fit") / "colloid.xye"
    np.savetxt(path, np.column_stack([tth, y, np.sqrt(y)]), header=f"wavelength: {WL} A")
    return path


def test_fit_json_csv_plot(pattern_file, tmp_path, capsys):
    out_csv, png = tmp_path / "fit.csv", tmp_path / "fit.png"
    status = _run([str(pattern_file), "--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7",
                   "--exclude", "20-20.5", "--json", "--csv", str(out_csv), "--plot", str(png), "--no-profile"])
    assert status == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["status"] == "sized"
    assert abs(rows[0]["size_nm"] - 3.0) < 3 * rows[0]["size_std_nm"]
    for key in ("size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "dispersion", "dispersion_std",
                "strain", "strain_std", "rwp", "reduced_chi2", "scales"):
        assert key in rows[0]
    table = list(csv.DictReader(out_csv.open()))
    assert float(table[0]["size_nm"]) == pytest.approx(rows[0]["size_nm"])
    assert png.stat().st_size > 10_000


def test_fit_instrument_fwhm_held(pattern_file, capsys):
    status = _run([str(pattern_file), "--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7",
                   "--instrument-fwhm", "0.001", "0.002", "--json", "--no-profile"])
    assert status == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["instrument_refined"] is False and row["instrument_unit"] == "1/A"
    assert row["instrument_gauss_fwhm"] == pytest.approx(0.001) and row["instrument_lorentz_fwhm"] == 0.002
    assert _run([str(pattern_file), "--instrument-fwhm", "0", "1"]) == 2
    assert "accepted: 0 to 0.02" in capsys.readouterr().err


def test_fit_statistical_esd(pattern_file, capsys):
    options = [str(pattern_file), "--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7", "--json",
               "--no-profile"]
    assert _run(options) == 0
    corrected = json.loads(capsys.readouterr().out)[0]
    assert _run(options + ["--statistical-esd"]) == 0
    plain = json.loads(capsys.readouterr().out)[0]
    assert corrected["esd_correlated"] is True and plain["esd_correlated"] is False
    factor = corrected["esd_correlation_factor"]
    assert factor >= 1.0 and corrected["size_std_nm"] == pytest.approx(factor * plain["size_std_nm"], rel=1e-6)


def test_fit_bad_input_one_line_errors(pattern_file, tmp_path, capsys):
    assert _run([str(tmp_path / "missing.xy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qdots fit: ")
    bad = tmp_path / "short.xy"
    bad.write_text("1 2\n2 3\n")
    assert _run([str(bad), "--wavelength", "0.56"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _run([str(pattern_file), "--exclude", "a-b"]) == 2
    assert "exclusion range" in capsys.readouterr().err
    assert _run([str(pattern_file), "--wavelength", "99"]) == 2
    assert "wavelength" in capsys.readouterr().err
    assert _run([str(pattern_file), "--solvent", "water", "--max-diameter", "6"]) == 2
    assert "solvent" in capsys.readouterr().err
    nowl = tmp_path / "nowl.xy"
    np.savetxt(nowl, np.column_stack([np.arange(5, 45, 0.1), np.ones(400)]))
    assert _run([str(nowl)]) == 2
    assert "wavelength" in capsys.readouterr().err


LAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured" / "PbS_lab_wl1p5406_5p03nm_toluene.xy"


@pytest.mark.skipif(not LAB.is_file(), reason="measured laboratory pattern not available")
def test_measured_lab_film_refines(capsys):
    """A textured laboratory film (checked only for a sane fit: sized, Rwp below the poor-fit threshold)."""
    status = _run([str(LAB), "--wavelength", "1.5406", "--geometry", "flat-plate", "--max-diameter", "10",
                   "--json", "--no-profile"])
    assert status == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["status"] == "sized" and row["rwp"] < 0.10 and 2.0 < row["size_nm"] < 7.0
    assert row["texture"] and all(v >= 0 for v in row["texture"].values())
    # held narrow, no instrument term: the untextured dot column takes a (near) zero scale while the reflection
    # families carry the dots (once reported as "no nanocrystals" at Rwp 45 %; see test_refine's dots_improve_fit)
    status = _run([str(LAB), "--wavelength", "1.5406", "--geometry", "flat-plate", "--json", "--no-profile",
                   "--instrument-fwhm", "0", "0", "--dispersion", "0.05"])
    row = json.loads(capsys.readouterr().out)[0]
    assert status == 0 and row["status"] == "sized" and row["rwp"] < 0.10
    texture = np.array(list(row["texture"].values()))  # relative to the families' mean: finite, of order 1
    assert np.all(np.isfinite(texture)) and 0.05 < texture.min() and texture.max() < 20.0


def test_fit_reads_the_x_unit_of_the_header_and_checks_outputs_first(pattern_file, tmp_path, capsys):
    """The same pattern written on Q with an `x_unit: q` header refines to the same size; output paths that
    cannot be written fail in one line before any fitting."""
    tth, y, sigma = np.loadtxt(pattern_file, unpack=True)
    q_file = tmp_path / "colloid_q.xye"
    np.savetxt(q_file, np.column_stack([tth_to_q(tth, WL), y, sigma]), header=f"wavelength: {WL} A\nx_unit: q")
    options = ["--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7", "--json", "--no-profile"]
    assert _run([str(pattern_file)] + options) == 0
    on_tth = json.loads(capsys.readouterr().out)[0]
    assert _run([str(q_file)] + options) == 0
    on_q = json.loads(capsys.readouterr().out)[0]
    assert on_q["status"] == "sized" and on_q["size_nm"] == pytest.approx(on_tth["size_nm"], abs=0.05)
    assert _run([str(pattern_file), "--csv", str(tmp_path / "no" / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "--csv" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_series_figure_over_time(tmp_path, capsys):
    """A growing population in three files with a time header: sequential refinement, sizes rising with time in the
    CSV and JSON, and the series figure; a file without the key is a one-line error."""
    basis = refinement_basis("PbS", WL, max_diameter_nm=6.0)
    tth = np.arange(5.5, 45.0, 0.01)
    q = tth_to_q(tth, WL)
    rng = np.random.default_rng(7)
    files = []
    for minutes, size in ((2.0, 2.6), (5.0, 3.0), (9.0, 3.4)):
        crys, comp = basis.patterns(np.array([size]), np.array([0.10]), np.array([0.0]))
        dots = np.interp(q, basis.q, (crys + comp)[0])
        y = rng.poisson(2e4 * dots / dots.mean() + 2000.0).astype(float)
        path = tmp_path / f"run_{int(minutes):02d}.xye"
        np.savetxt(path, np.column_stack([tth, y, np.sqrt(y)]), header=f"wavelength: {WL} A\ntime: {minutes} min")
        files.append(str(path))
    png, out_csv = tmp_path / "series.png", tmp_path / "series.csv"
    options = ["--solvent", "none", "--max-diameter", "6", "--q-range", "1", "7", "--no-profile", "--sequential"]
    status = _run(files + options + ["--time-key", "time", "--series-plot", str(png), "--csv", str(out_csv), "--json"])
    assert status == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["time"] for r in rows] == [2.0, 5.0, 9.0]
    sizes = [r["size_nm"] for r in rows]
    assert sizes[0] < sizes[1] < sizes[2]
    for r, truth in zip(rows, (2.6, 3.0, 3.4)):
        assert abs(r["size_nm"] - truth) < 3 * r["size_std_nm"] + 0.05
    with open(out_csv) as fh:
        table = list(csv.DictReader(fh))
    assert [float(r["time"]) for r in table] == [2.0, 5.0, 9.0]
    assert png.stat().st_size > 10_000
    bare = tmp_path / "no_time.xye"
    np.savetxt(bare, np.loadtxt(files[0]), header=f"wavelength: {WL} A")
    assert _run([str(bare)] + options + ["--time-key", "time"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--time-key 'time'" in err[0] and "accepted" in err[0]


def test_series_keeps_places_and_time_key_is_checked(pattern_file, tmp_path, capsys):
    from qdots_bluesky.cli.fit import result_keys

    bad = tmp_path / "bad.xye"
    bad.write_text("not a pattern\n")
    png = tmp_path / "series.png"
    options = ["--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7", "--no-profile", "--json"]
    assert _run([str(pattern_file), str(bad), str(pattern_file)] + options + ["--series-plot", str(png)]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and png.stat().st_size > 10_000  # the failed file is a gap, not a shift
    assert _run([str(pattern_file), "--time-key", "rwp"] + options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "also a result field" in err[0]
    # every key of a result row is reserved
    row = rows[0]
    assert set(row) <= result_keys() | {"file"}


def test_blank_of_another_wavelength_is_read_on_its_own_q_axis(pattern_file, tmp_path, capsys):
    """A hexane blank recorded at 0.70 A serves the 0.564 A colloid once its own wavelength is known (option or
    header); read at the colloid's wavelength its Q axis is wrong and the fit is worse."""
    from qdots_bluesky.refine import load_blank
    from qdots_bluesky.units import q_to_tth

    wl_blank = 0.70
    q = np.linspace(0.5, 9.0, 4000)
    tth = q_to_tth(q, wl_blank)
    y = 1e4 * solvent_pattern("hexane", q, WL)
    bare, headed = tmp_path / "hexane_blank.xye", tmp_path / "hexane_headed.xye"
    np.savetxt(bare, np.column_stack([tth, y]))
    np.savetxt(headed, np.column_stack([tth, y]), header=f"wavelength: {wl_blank} A")
    common = [str(pattern_file), "--solvent", "none", "--max-diameter", "6", "--q-range", "1", "7", "--json",
              "--no-profile", "--statistical-esd"]
    chi2 = {}
    for label, extra in (("option", ["--blank", str(bare), "--blank-wavelength", str(wl_blank)]),
                         ("header", ["--blank", str(headed)]), ("wrong", ["--blank", str(bare)])):
        assert _run(common + extra) == 0
        row = json.loads(capsys.readouterr().out)[0]
        chi2[label] = row["reduced_chi2"]
        if label != "wrong":
            assert abs(row["size_nm"] - 3.0) < 3 * row["size_std_nm"]
    assert chi2["option"] == pytest.approx(chi2["header"], rel=1e-6)
    assert chi2["option"] < 1.5 and chi2["wrong"] > 1.5 * chi2["option"]
    blank = load_blank(bare, wl_blank)
    assert blank.q == pytest.approx(q, rel=1e-9)
    with pytest.raises(ValueError, match="blank's wavelength"):
        load_blank(bare, None)
    assert _run([str(pattern_file), "--blank", str(bare), "--blank-wavelength", "-1"]) == 2
    assert "wavelength" in capsys.readouterr().err


def test_fit_dispersion_held(pattern_file, capsys):
    common = [str(pattern_file), "--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7"]
    assert _run(common + ["--dispersion", "0.1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["dispersion_held"] is True and row["dispersion"] == pytest.approx(0.1)
    assert abs(row["size_nm"] - 3.0) < 3 * row["size_std_nm"]
    assert _run(common + ["--dispersion", "0.1"]) == 0
    assert "dispersion 0.100 (held)" in capsys.readouterr().out
    assert _run(common + ["--dispersion", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "--dispersion 0.9; accepted: 0.02 to 0.45" in err and len(err.strip().splitlines()) == 1


def test_fit_habit_auto_and_bad_habit(pattern_file, capsys):
    status = _run([str(pattern_file), "--solvent", "hexane", "--max-diameter", "6", "--q-range", "1", "7",
                   "--habit", "auto", "--json", "--no-profile"])
    assert status == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["status"] == "sized" and row["habit"] in row["habit_reduced_chi2"]
    assert len(row["habit_reduced_chi2"]) == 6 and min(row["habit_reduced_chi2"].values()) == pytest.approx(
        row["reduced_chi2_with_dots"])
    assert _run([str(pattern_file), "--habit", "prism"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "habit 'prism'; accepted: sphere, octahedron" in err[0]
