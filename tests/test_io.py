"""Tests of the pattern file reader (qdots_bluesky.io)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdots_bluesky.io import (ACCEPTED, Pattern, PatternFileError, check_output_path, check_text_file,
                              read_pattern, write_xy)

HEXANE = Path(__file__).resolve().parents[2] / "shared" / "data" / "solvents" / "hexane.xye"
if not HEXANE.exists():
    HEXANE = Path("/work/shared/data/solvents/hexane.xye")
needs_hexane = pytest.mark.skipif(not HEXANE.exists(), reason="shared solvent data (hexane.xye) not available")

N = 100
X = np.round(np.linspace(2.0, 40.0, N), 6)
Y = np.round(100.0 + 10.0 * np.sin(X), 6)
S = np.round(np.sqrt(Y), 6)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(sep: str = " ", cols: int = 2, x=X, y=Y, s=S) -> list[str]:
    arrays = (x, y, s, s * 2)[:cols]
    return [sep.join(f"{v:.6f}" for v in row) for row in zip(*arrays)]


# ---------------------------------------------------------------- real data
@needs_hexane
def test_hexane_reads_all_points_with_the_right_values():
    p = read_pattern(HEXANE)
    assert isinstance(p, Pattern)
    assert p.x.size == p.y.size == p.sigma.size == 33530
    assert p.x[0] == 0.126 and p.x[1] == 0.1296 and p.x[-1] == 120.8304
    assert p.y[0] == pytest.approx(0.26346964912076859, rel=1e-15)
    assert p.sigma[0] == pytest.approx(6.3308850579095730e-2, rel=1e-15)
    assert p.y[-1] == pytest.approx(34.487103924990421, rel=1e-15)
    assert np.all(np.diff(p.x) > 0)
    assert p.header == {} and p.wavelength_from_header() is None
    assert p.source == str(HEXANE)


# ---------------------------------------------------------------- formats
def test_xye_with_comment_header_and_wavelength(tmp_path):
    text = "# sample: PbS 5 nm\n# wavelength: 0.56\n! instrument = X04SA\n" + "\n".join(_rows(cols=3)) + "\n"
    p = read_pattern(_write(tmp_path, "a.xye", text))
    np.testing.assert_array_equal(p.x, X)
    np.testing.assert_array_equal(p.y, Y)
    np.testing.assert_array_equal(p.sigma, S)
    assert p.header == {"sample": "PbS 5 nm", "wavelength": "0.56", "instrument": "X04SA"}
    assert p.wavelength_from_header() == 0.56


def test_two_columns_give_no_sigma_and_extra_columns_are_ignored(tmp_path):
    p2 = read_pattern(_write(tmp_path, "a.xy", "\n".join(_rows(cols=2))))
    assert p2.sigma is None
    p4 = read_pattern(_write(tmp_path, "a.dat", "\n".join(_rows("\t", cols=4))))
    np.testing.assert_array_equal(p4.sigma, S)
    np.testing.assert_array_equal(p4.y, Y)


@pytest.mark.parametrize("sep", [",", ";", "\t", "  ", ", "])
def test_delimiters(tmp_path, sep):
    p = read_pattern(_write(tmp_path, "a.csv", "2theta,I\n" + "\n".join(_rows(sep, cols=3)) + "\n\n\n"))
    np.testing.assert_array_equal(p.x, X)
    np.testing.assert_array_equal(p.sigma, S)


def test_semicolon_with_decimal_commas(tmp_path):
    rows = [r.replace(".", ",") for r in _rows(";")]
    p = read_pattern(_write(tmp_path, "a.csv", "Winkel;Intensitaet\n" + "\n".join(rows)))
    np.testing.assert_array_equal(p.x, X)
    np.testing.assert_array_equal(p.y, Y)


def test_fit2d_chi_header(tmp_path):
    text = f"PbS capillary 300 K\n2-Theta Angle (Degrees)\nIntensity\n{N:8d}\n" + "\n".join(_rows("   ")) + "\n"
    p = read_pattern(_write(tmp_path, "a.chi", text))
    assert p.x.size == N and p.x[0] == X[0] and p.y[-1] == Y[-1]


def test_utf16_with_bom_and_crlf(tmp_path):
    path = tmp_path / "win.xy"
    path.write_bytes(("# wavelength: 1.5406\r\n" + "\r\n".join(_rows(cols=2)) + "\r\n").encode("utf-16"))
    p = read_pattern(path)
    np.testing.assert_array_equal(p.y, Y)
    assert p.wavelength_from_header() == 1.5406


def test_comment_and_blank_lines_inside_the_data_are_skipped(tmp_path):
    rows = _rows(cols=3)
    rows.insert(10, "# a comment")
    rows.insert(20, "")
    rows.insert(30, "   ! another")
    rows.insert(40, "% matlab style")
    rows.insert(50, "; ini style")
    p = read_pattern(_write(tmp_path, "a.xye", "\n".join(rows)))
    np.testing.assert_array_equal(p.x, X)


def test_wavelength_header_variants(tmp_path):
    body = "\n" + "\n".join(_rows())
    cases = {
        "# Wavelength = 0.5646": 0.5646,
        "# lambda: 1.5406 A": 1.5406,
        "# wavelength (nm): 0.15406": 1.5406,
        "# Wavelength: 5.64162e-11 m": 0.564162,
        "# Wavelength: 5.64162e-11": 0.564162,
        "# WAVELENGTH = 0.7 Angstrom": 0.7,
        "# temperature: 300 K": None,
    }
    for i, (line, expected) in enumerate(cases.items()):
        p = read_pattern(_write(tmp_path, f"w{i}.xy", line + body))
        got = p.wavelength_from_header()
        assert (got is None) if expected is None else got == pytest.approx(expected, rel=1e-12), line


def test_write_xy_round_trip(tmp_path):
    path = write_xy(tmp_path / "rt.xy", X, Y, {"wavelength": 0.564162, "x_unit": "tth"})
    p = read_pattern(path)
    np.testing.assert_allclose(p.x, X, rtol=1e-7)
    np.testing.assert_allclose(p.y, Y, rtol=1e-7)
    assert p.header["x_unit"] == "tth" and p.wavelength_from_header() == 0.564162


# ---------------------------------------------------------------- errors
def _raises(path: Path, *words: str) -> str:
    with pytest.raises(PatternFileError) as info:
        read_pattern(path)
    msg = str(info.value)
    assert str(path) in msg and "accepted" in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_error_is_a_value_error():
    assert issubclass(PatternFileError, ValueError)


def test_missing_file_and_directory(tmp_path):
    _raises(tmp_path / "nope.xy", "not found")
    _raises(tmp_path, "directory")


def test_binary_file(tmp_path):
    path = tmp_path / "image.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 20)
    _raises(path, "binary")


def test_empty_and_comment_only_files(tmp_path):
    _raises(_write(tmp_path, "e.xy", ""), "empty")
    _raises(_write(tmp_path, "w.xy", "  \n\n "), "empty")
    _raises(_write(tmp_path, "c.xy", "# only\n# comments\ntext line\n"), "no rows of numbers")


def test_too_few_points(tmp_path):
    _raises(_write(tmp_path, "s.xy", "\n".join(_rows()[:49])), "only 49 data points", "at least 50")


def test_non_numeric_value_names_the_line(tmp_path):
    rows = _rows()
    rows[29] = "12.5 abc"
    _raises(_write(tmp_path, "n.xy", "# header\n" + "\n".join(rows)), "non-numeric", "'abc'", "line 31")


def test_changed_column_count_names_the_line(tmp_path):
    rows = _rows(cols=3)
    rows[59] = rows[59].rsplit(" ", 1)[0]
    _raises(_write(tmp_path, "c.xye", "\n".join(rows)), "line 60", "columns")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_nan_or_inf(tmp_path, bad):
    rows = _rows()
    rows[40] = f"{X[40]} {bad}"
    _raises(_write(tmp_path, "n.xy", "\n".join(rows)), "NaN or infinite", "line 41")


def test_x_not_strictly_increasing_says_where(tmp_path):
    x = X.copy()
    x[70] = x[69]
    _raises(_write(tmp_path, "d.xy", "\n".join(_rows(x=x))), "not strictly increasing", "line 71")
    x = X[::-1].copy()
    x[70] = x[69]
    _raises(_write(tmp_path, "m.xy", "\n".join(_rows(x=x, y=Y[::-1]))), "not strictly increasing")


# ---------------------------------------------------------------- beamline readiness
def test_descending_2theta_is_sorted_not_rejected(tmp_path):
    p = read_pattern(_write(tmp_path, "r.xye", "\n".join(_rows(x=X[::-1], y=Y[::-1], s=S[::-1], cols=3))))
    np.testing.assert_array_equal(p.x, X)
    np.testing.assert_array_equal(p.y, Y)
    np.testing.assert_array_equal(p.sigma, S)


def test_own_header_keys_of_qdots_simulate(tmp_path):
    path = write_xy(tmp_path / "sim.xy", X, Y, {"wavelength_a": 0.564162, "x_unit": "2theta_deg"})
    p = read_pattern(path)
    assert p.wavelength_from_header() == 0.564162 and p.x_unit == "tth"
    path = write_xy(tmp_path / "simq.xy", X / 4, Y, {"wavelength_a": 0.56, "x_unit": "q_inv_angstrom"})
    p = read_pattern(path)
    assert p.x_unit == "q" and p.wavelength_from_header() == 0.56
    np.testing.assert_allclose(p.x, X / 4)


@pytest.mark.parametrize("line,unit,factor", [
    ("#       2th_deg             I               sigma", "tth", 1.0),           # pyFAI
    ("#  q_A^-1  I  sigma", "q", 1.0),
    ("#  q_nm^-1  I  sigma", "q", 0.1),
    ("# 2th_rad I", "tth", float(np.degrees(1.0))),
    ("Q (1/A), I", "q", 1.0),
    ("Q (nm^-1)   I", "q", 0.1),
    ("# x_unit: q_nm^-1", "q", 0.1),
    ("# radial unit = 2th_deg", "tth", 1.0),
    ("2-Theta Angle (Degrees)", "tth", 1.0),
    ("# sample: PbS", None, 1.0),
])
def test_column_headers_of_reducers_give_the_unit(tmp_path, line, unit, factor):
    p = read_pattern(_write(tmp_path, "u.dat", line + "\n" + "\n".join(_rows(cols=3))))
    assert p.x_unit == unit
    np.testing.assert_allclose(p.x, X * factor, rtol=1e-12)


@pytest.mark.parametrize("line", ["#  r_mm  I  sigma", "#  chi_deg  I", "# x_unit: d*2_A^-2"])
def test_other_radial_units_are_refused_with_the_accepted_ones(tmp_path, line):
    msg = _raises(_write(tmp_path, "r.dat", line + "\n" + "\n".join(_rows())), "neither 2theta nor Q")
    assert "q_nm^-1" in msg and "2th_deg" in msg


def test_one_column_file_says_what_was_found(tmp_path):
    msg = _raises(_write(tmp_path, "one.xy", "\n".join(f"{v:.3f}" for v in Y)), "single number", "x values")
    assert f"found {N} line" in msg


def test_error_parts_for_callers_reporting_many_files(tmp_path):
    with pytest.raises(PatternFileError) as info:
        read_pattern(_write(tmp_path, "e.xy", ""))
    exc = info.value
    assert exc.problem == "the file is empty" and exc.accepted == ACCEPTED and str(exc).endswith(ACCEPTED)
    assert str(exc).startswith(f"{tmp_path / 'e.xy'}: the file is empty")


def test_check_output_path_and_text_file(tmp_path):
    assert check_output_path(tmp_path / "out.xy", "-o") == tmp_path / "out.xy"
    with pytest.raises(ValueError, match="does not exist"):
        check_output_path(tmp_path / "no" / "such" / "out.xy", "-o")
    with pytest.raises(ValueError, match="is a directory"):
        check_output_path(tmp_path, "-o")
    with pytest.raises(ValueError, match="empty"):
        check_text_file(_write(tmp_path, "e.cif", ""), "CIF file")
    binary = tmp_path / "b.cif"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="binary"):
        check_text_file(binary, "CIF file")
