"""Beamline readiness of the `qdots` command: files of our own and other reducers, one-line errors, one --device."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from _model_helpers import GRID, make_bundle, synthetic_patterns, write_pattern
from qdots_bluesky.cli import build_parser, main
from qdots_bluesky.io import ACCEPTED


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def q_files(tmp_path_factory):
    """The same pattern as Q in 1/A, as Q in 1/nm with a pyFAI column header, and as 1/nm without a header."""
    d = tmp_path_factory.mktemp("qfiles")
    q = np.linspace(0.8, 15.5, 4000)
    y = np.interp(q, GRID.q, synthetic_patterns(1, seed=5)[0])
    return {
        "a": write_pattern(d / "q_a.xy", q, y),
        "nm": _with_line(d / "q_nm.dat", "#  q_nm^-1  I", q * 10, y),
        "nm_bare": write_pattern(d / "q_nm_bare.xy", q * 10, y),
        "zeros": write_pattern(d / "zeros.xy", q, np.zeros_like(q)),
    }


def _with_line(path, line, x, y):
    path.write_text(line + "\n" + "\n".join(f"{a:.10g} {b:.10g}" for a, b in zip(x, y)) + "\n")
    return path


def run(capsys, *argv):
    rc = main([*map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------- predict reads what simulate writes
@pytest.mark.parametrize("grid", [["--tth", "2:60:0.02", "--wavelength", "0.5646"], ["--q", "1:15:2000"]])
def test_predict_reads_a_file_written_by_simulate(tmp_path, capsys, model, grid):
    out = tmp_path / "sim.xy"
    assert main(["simulate", "--diameter", "3", "--dispersion", "0.1", *grid, "-o", str(out)]) == 0
    capsys.readouterr()
    rc, stdout, err = run(capsys, "predict", out, "--json", "--model", model)
    assert rc == 0, err
    assert json.loads(stdout)["size_nm"] > 0


def test_q_in_inverse_nm_is_converted_when_the_header_says_so(capsys, model, q_files):
    rc, out, err = run(capsys, "predict", q_files["a"], q_files["nm"], "--x-unit", "q", "--json", "--model", model)
    assert rc == 0, err
    a, nm = (json.loads(line) for line in out.splitlines())
    assert nm["size_nm"] == pytest.approx(a["size_nm"], rel=1e-4)


def test_q_range_that_makes_no_sense_is_refused_with_the_accepted_units(capsys, model, q_files):
    rc, out, err = run(capsys, "predict", q_files["nm_bare"], "--x-unit", "q", "--model", model)
    assert rc == 1 and "not Q in 1/A" in err and "q_nm^-1" in err and "accepted x units" in err


def test_option_contradicting_the_header_unit_is_an_error(capsys, model, q_files):
    rc, out, err = run(capsys, "predict", q_files["nm"], "--x-unit", "tth", "--wavelength", "0.56", "--model", model)
    assert rc == 1 and "declares" in err and "q_nm^-1" in err


def test_descending_2theta_is_sized_like_ascending(tmp_path, capsys, model):
    tth = np.arange(1.0, 100.0, 0.01)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / 0.5646
    y = np.interp(q, GRID.q, synthetic_patterns(1, seed=9)[0])
    up = write_pattern(tmp_path / "up.xy", tth, y)
    down = write_pattern(tmp_path / "down.xy", tth[::-1], y[::-1])
    rc, out, err = run(capsys, "predict", up, down, "--wavelength", "0.5646", "--json", "--model", model)
    assert rc == 0, err
    a, b = (json.loads(line) for line in out.splitlines())
    assert a["size_nm"] == pytest.approx(b["size_nm"], rel=1e-6)


def test_accepted_tail_is_printed_once_per_run(tmp_path, capsys, model):
    bad = [tmp_path / f"bad{i}.xy" for i in range(3)]
    for path in bad:
        path.write_text("")
    rc, out, err = run(capsys, "predict", *bad, "--json", "--model", model)
    assert rc == 1 and err.count(ACCEPTED) == 1
    assert all(json.loads(line)["error"] == "the file is empty" for line in out.splitlines())
    assert all(f"qdots predict: {path}: the file is empty\n" in err for path in bad)


def test_internal_pattern_index_does_not_leak(capsys, model, q_files):
    rc, out, err = run(capsys, "predict", q_files["zeros"], "--x-unit", "q", "--model", model)
    assert rc == 1 and "pattern 0" not in err and "the pattern is all zeros" in err


# ---------------------------------------------------------------- simulate: one-line errors before the work
@pytest.fixture
def no_simulation(monkeypatch):
    import qdots_bluesky.sim.physics.population as population

    def forbidden(*args, **kwargs):
        raise AssertionError("the simulation ran before the error")

    monkeypatch.setattr(population, "simulate_population", forbidden)


@pytest.mark.parametrize("where,words", [
    (["-o", "/no/such/dir/out.xy"], "does not exist"),
    (["-o", "{tmp}"], "is a directory"),
    (["-o", "{tmp}/out.xy", "--plot", "/no/such/dir/fig.png"], "--plot"),
])
def test_simulate_output_errors_come_before_the_simulation(tmp_path, capsys, no_simulation, where, words):
    where = [w.replace("{tmp}", str(tmp_path)) for w in where]
    rc, out, err = run(capsys, "simulate", "--diameter", "5", *where)
    assert rc == 2 and words in err and err.count("\n") == 1 and "wrote" not in out


def test_huge_diameter_names_the_option(tmp_path, capsys, no_simulation):
    rc, _, err = run(capsys, "simulate", "--diameter", "1e6", "-o", tmp_path / "x.xy")
    assert rc == 2 and "--max-diameter" in err and err.count("\n") == 1


@pytest.mark.parametrize("content,words", [(b"", "empty"), (bytes(range(256)) * 4, "binary")])
def test_unreadable_cif_says_why(tmp_path, capsys, no_simulation, content, words):
    cif = tmp_path / "bad.cif"
    cif.write_bytes(content)
    rc, _, err = run(capsys, "simulate", "--material", cif, "--diameter", "3", "-o", tmp_path / "x.xy")
    assert rc == 2 and words in err and "CIF" in err and ": ;" not in err


# ---------------------------------------------------------------- one --device, missing extras
def test_every_command_has_the_same_device_option():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    found = {}
    for name, sub in commands.items():
        for action in sub._actions:
            if "--device" in action.option_strings:
                found[name] = (action.default, action.help)
    assert set(found) == {"predict", "demo", "replay", "serve"}
    assert {v for v in found.values()} == {found["predict"]} and found["predict"][0] == "auto"
    assert "cuda" in found["predict"][1] and "NumPy" in found["predict"][1]


def test_auto_device_without_a_gpu_driver_is_numpy_without_importing_torch(monkeypatch):
    import os
    import shutil

    from qdots_bluesky.predictor import default_device

    monkeypatch.setattr(os.path, "exists", lambda p: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch would raise
    assert default_device() == "numpy"


def test_missing_extra_is_a_one_line_error(tmp_path, capsys, monkeypatch, model, q_files):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, _, err = run(capsys, "predict", q_files["a"], "--x-unit", "q", "--plot", tmp_path / "f.png", "--model", model)
    assert rc == 2 and "qdots-bluesky[sim]" in err and err.count("\n") == 1


def test_predict_runs_without_the_heavy_extras(model, q_files):
    """The light install: predict works with torch, bluesky, tiled, ase, matplotlib... absent (import blocked)."""
    import subprocess
    from pathlib import Path

    blocked = ["torch", "bluesky", "ophyd", "tiled", "event_model", "databroker", "zmq", "ase", "xraylib",
               "matplotlib", "tqdm", "bluesky_tiled_plugins"]
    code = (f"import sys; sys.modules.update({{m: None for m in {blocked!r}}}); from qdots_bluesky.cli import main; "
            f"sys.exit(main(['predict', {str(q_files['a'])!r}, '--x-unit', 'q', '--model', {str(model)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert " nm " in proc.stdout


def test_predict_plot_to_a_bad_folder_fails_before_sizing(capsys, model, q_files):
    rc, out, err = run(capsys, "predict", q_files["a"], "--x-unit", "q", "--plot", "/no/such/dir/f.png", "--model", model)
    assert rc == 2 and out == "" and "--plot" in err and err.count("\n") == 1
