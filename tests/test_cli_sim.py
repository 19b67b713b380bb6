"""`qdots simulate` and `qdots library` from the command line."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qdots_bluesky.cli import main
from qdots_bluesky.io import read_pattern
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.population import simulate_population
from qdots_bluesky.units import tth_to_q


def test_simulate_on_a_2theta_grid_writes_the_pattern_header_and_plot(tmp_path, capsys):
    out = tmp_path / "pbs.xy"
    png = tmp_path / "pbs.png"
    rc = main(["simulate", "--material", "PbS", "--diameter", "3.0", "--dispersion", "0.10", "--strain", "0.001",
               "--wavelength", "0.56", "--tth", "5:60:0.05", "-o", str(out), "--plot", str(png)])
    assert rc == 0
    p = read_pattern(out)
    assert p.x[0] == 5.0 and p.x.size == 1101
    assert p.header["mean_diameter_nm"] == "3.0" and p.header["dispersion"] == "0.1" and p.header["strain"] == "0.001"
    assert p.header["wavelength_a"] == "0.56" and p.header["x_unit"] == "2theta_deg" and "qdots-bluesky" in p.header["program"]
    expected = simulate_population(get_structure("PbS"), 3.0, tth_to_q(p.x, 0.56), 0.1, 0.001, 0.56).total
    np.testing.assert_allclose(p.y, expected, rtol=1e-6)
    assert png.stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_simulate_on_a_q_grid_without_compton(tmp_path):
    out = tmp_path / "q.xy"
    assert main(["simulate", "--diameter", "2.5", "--q", "1:15:300", "--no-compton", "--components", "-o", str(out)]) == 0
    data = np.loadtxt(out)
    assert data.shape == (300, 4) and data[0, 0] == 1.0 and data[-1, 0] == 15.0
    assert np.all(data[:, 3] == 0) and np.allclose(data[:, 1], data[:, 2])


@pytest.mark.parametrize("args,words", [
    (["--diameter", "0"], "positive"),
    (["--diameter", "-2"], "positive"),
    (["--diameter", "1e6"], "largest cluster"),
    (["--diameter", "300", "--max-diameter", "400"], "atoms"),
    (["--diameter", "5", "--dispersion", "0.5"], "[0, 0.5)"),
    (["--diameter", "5", "--strain", "0.2"], "10 %"),
    (["--diameter", "5", "--tth", "10:5:0.1", "--wavelength", "0.56"], "increase"),
    (["--diameter", "5", "--tth", "10:181:0.1", "--wavelength", "0.56"], "180"),
    (["--diameter", "5", "--tth", "10:80:0.1"], "--wavelength"),
    (["--diameter", "5", "--q", "1:15"], "START:STOP:N"),
    (["--diameter", "5", "--q", "5:1:100"], "increase"),
    (["--diameter", "5", "--material", "Unobtainium"], "unknown material"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, args, words):
    out = tmp_path / "x.xy"
    assert main(["simulate", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and "error" in err
    assert not out.exists()


def test_library_build_and_info(tmp_path, capsys):
    path = tmp_path / "lib.h5"
    assert main(["library", "build", "-o", str(path), "--diameters", "2:3:0.5", "--dispersions", "0.1",
                 "--lattice-ratios", "1.0", "--q", "1:15:200", "--no-tth"]) == 0
    assert main(["library", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 patterns" in out and "grid q: 200 points" in out


def test_console_script_help_explains_every_option():
    result = subprocess.run([sys.executable, "-m", "qdots_bluesky.cli", "simulate", "--help"], capture_output=True, text=True, check=True)
    for option in ("--material", "--diameter", "--dispersion", "--strain", "--wavelength", "--tth", "--q", "--no-compton", "--plot"):
        assert option in result.stdout
