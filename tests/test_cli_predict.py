"""`qdots predict`: JSON lines, human lines, per-file errors, exit codes, plots, help, lean imports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _model_helpers import GRID, make_bundle, synthetic_patterns, write_pattern
from qdots_bluesky.cli import build_parser, main

WAVELENGTH = 0.5646
REQUIRED = {"file", "size_nm", "size_class_nm", "size_std_nm", "dispersion", "confidence", "probabilities", "flags"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model = make_bundle(d / "tiny.safetensors")
    X = synthetic_patterns(3, seed=31)
    tth = np.arange(0.5, 120.0, 0.01)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / WAVELENGTH
    qq = np.linspace(0.8, 15.5, 4000)
    out = {
        "model": model,
        "tth_header": write_pattern(d / "with_header.xye", tth, np.interp(q, GRID.q, X[0]) * 1e4,
                                    {"wavelength": f"{WAVELENGTH} A"}),
        "tth_plain": write_pattern(d / "plain.xy", tth, np.interp(q, GRID.q, X[1]) * 1e4),
        "q1": write_pattern(d / "q1.xy", qq, np.interp(qq, GRID.q, X[1])),
        "q2": write_pattern(d / "q2.dat", qq, np.interp(qq, GRID.q, X[2])),
    }
    bad = {
        "empty": "",
        "short": "\n".join(f"{1 + 0.1 * i} 5" for i in range(20)),
        "text": "\n".join(f"{1 + 0.1 * i} 5" for i in range(60)) + "\n8.0 abc\n",
        "nan": "\n".join(f"{1 + 0.1 * i} {'nan' if i == 30 else 5}" for i in range(60)),
        "unsorted": "\n".join(f"{1 + 0.1 * (i if i != 30 else 2)} 5" for i in range(60)),
        "narrow": f"# wavelength: {WAVELENGTH}\n" + "\n".join(f"{10 + 0.01 * i} 5" for i in range(100)),
    }
    for name, text in bad.items():
        out[name] = d / f"{name}.xy"
        out[name].write_text(text)
    out["bad_wavelength"] = write_pattern(d / "bad_wavelength.xy", tth, np.ones_like(tth), {"wavelength": "50 A"})
    return out


def run(capsys, *argv):
    rc = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_json_lines_with_required_keys(files, capsys):
    rc, out, err = run(capsys, files["q1"], files["q2"], "--x-unit", "q", "--json", "--model", files["model"])
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["file"] for d in lines] == [str(files["q1"]), str(files["q2"])]
    for d in lines:
        assert REQUIRED <= set(d)
        assert sum(d["probabilities"].values()) == pytest.approx(1.0)
        assert all(isinstance(k, str) for k in d["probabilities"]) and "10.0" in d["probabilities"]
        assert 2.0 <= d["size_nm"] <= 10.0 and isinstance(d["flags"], list)


def test_wavelength_from_option_or_header_gives_the_same(files, capsys):
    rc, out, _ = run(capsys, files["tth_header"], "--json", "--model", files["model"])
    assert rc == 0
    from_header = json.loads(out)
    rc, out, _ = run(capsys, files["tth_header"], "--json", "--wavelength", WAVELENGTH, "--model", files["model"])
    assert rc == 0
    assert json.loads(out)["size_nm"] == pytest.approx(from_header["size_nm"])


def test_human_output(files, capsys):
    rc, out, _ = run(capsys, files["tth_header"], "--model", files["model"])
    assert rc == 0
    line = out.strip()
    assert line.startswith(f"{files['tth_header']}: ") and "±" in line and " nm" in line
    assert "dispersion" in line and "confidence" in line and "flags:" in line


def test_bad_files_are_reported_and_good_ones_sized(files, capsys):
    bad = ["empty", "short", "text", "nan", "unsorted", "narrow", "tth_plain", "bad_wavelength"]
    argv = [files["tth_header"], *(files[b] for b in bad), "--json", "--model", files["model"]]
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1 + len(bad)
    assert REQUIRED <= set(lines[0]) and lines[0]["file"] == str(files["tth_header"])
    for name, d in zip(bad, lines[1:]):
        assert d["file"] == str(files[name]) and d["error"], name
        assert f"qdots predict: {files[name]}: " in err, name
    assert "wavelength" in lines[bad.index("tth_plain") + 1]["error"]
    assert "50" in lines[bad.index("bad_wavelength") + 1]["error"]
    assert "overlap" in lines[bad.index("narrow") + 1]["error"]
    rc, out, err = run(capsys, files["tth_header"], files["empty"], "--model", files["model"])
    assert rc == 1 and out.startswith(f"{files['tth_header']}: ") and f"{files['empty']}: the file is empty" in err


def test_bad_model_or_option_exit_2(files, tmp_path, capsys):
    rc, _, err = run(capsys, files["q1"], "--x-unit", "q", "--model", tmp_path / "missing.safetensors")
    assert rc == 2 and "missing.safetensors" in err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(files["model"].read_bytes()[:1000])
    rc, _, err = run(capsys, files["q1"], "--x-unit", "q", "--model", broken)
    assert rc == 2 and "broken.safetensors" in err
    rc, _, err = run(capsys, files["tth_header"], "--wavelength", "-1", "--model", files["model"])
    assert rc == 2 and "--wavelength" in err
    rc, _, err = run(capsys, files["q1"], "--x-unit", "q", "--device", "warp-drive", "--model", files["model"])
    assert rc == 2 and "--device" in err
    rc, _, err = run(capsys, files["q1"], "--x-unit", "q", "--cam-layer", "9", "--model", files["model"])
    assert rc == 2 and "--cam-layer" in err


def test_plot_one_and_several(files, tmp_path, capsys):
    png = tmp_path / "fig.png"
    rc, out, _ = run(capsys, files["q1"], "--x-unit", "q", "--plot", png, "--model", files["model"])
    assert rc == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, _ = run(capsys, files["q1"], files["q2"], files["empty"], "--x-unit", "q", "--plot", png,
                     "--cam-layer", "2", "--model", files["model"])
    assert rc == 1
    for stem in ("q1", "q2"):
        assert (tmp_path / f"fig_{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "fig_empty.png").exists()


def test_torch_device_gives_the_same(files, capsys):
    rc, out, _ = run(capsys, files["q1"], "--x-unit", "q", "--json", "--model", files["model"])
    rc2, out2, _ = run(capsys, files["q1"], "--x-unit", "q", "--json", "--device", "cpu", "--model", files["model"])
    assert rc == rc2 == 0
    assert json.loads(out)["size_nm"] == pytest.approx(json.loads(out2)["size_nm"], rel=1e-5)


def test_help_explains_every_option(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["predict"]
    text = sub.format_help()
    for action in sub._actions:
        assert action.help and len(action.help) > 10, action.dest
        for opt in action.option_strings:
            assert opt in text
    for word in ("--wavelength", "--x-unit", "--json", "--plot", "--model", "--device", "exit", "flags"):
        assert word in text.replace("\n", " ")
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--help"])
    assert exc.value.code == 0
    assert "--plot" in capsys.readouterr().out


def test_predict_does_not_import_torch(files):
    # start-up time: neither PyTorch nor the training and simulation stack (ase, augmentation) is loaded
    code = ("import sys; from qdots_bluesky.cli import main; "
            f"rc = main(['predict', {str(files['q1'])!r}, '--x-unit', 'q', '--device', 'numpy', "
            f"'--model', {str(files['model'])!r}]); "
            "heavy = [m for m in ('torch', 'ase', 'qdots_bluesky.sim.learning.augment', 'qdots_bluesky.sim.learning.train') "
            "if m in sys.modules]; assert not heavy, f'imported: {heavy}'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "nm" in proc.stdout


def test_refine_prints_and_writes_the_refinement_beside_the_network(tmp_path, files, capsys):
    from qdots_bluesky.refine.basis import refinement_basis
    from qdots_bluesky.sim.physics.solvents import solvent_pattern

    basis = refinement_basis("PbS", WAVELENGTH, max_diameter_nm=6.0)
    tth = np.arange(5.5, 40.0, 0.01)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / WAVELENGTH
    crys, comp = basis.patterns(np.array([3.0]), np.array([0.10]), np.array([0.0]))
    dots = np.interp(q, basis.q, (crys + comp)[0])
    solv = solvent_pattern("hexane", q, WAVELENGTH)
    y = np.random.default_rng(2).poisson(2e4 * dots / dots.mean() + 1e4 * solv / solv.mean() + 2000.0).astype(float)
    path = write_pattern(tmp_path / "colloid.xy", tth, y, {"wavelength": f"{WAVELENGTH} A"})
    small = ("--max-diameter", "6")  # a small basis keeps the test fast
    rc, out, err = run(capsys, path, "--refine", *small, "--json", "--model", files["model"])
    assert rc == 0, err
    record = json.loads(out)
    assert "size_nm" in record and record["refined"]["status"] == "sized"
    refined = record["refined"]
    assert abs(refined["size_nm"] - 3.0) < 3 * refined["size_std_nm"]
    for key in ("size_volume_nm", "size_volume_std_nm", "dispersion", "strain", "rwp", "instrument_lorentz_fwhm"):
        assert refined[key] is not None
    rc, out, _ = run(capsys, path, "--refine", *small, "--instrument-fwhm", "0", "0", "--model", files["model"])
    assert rc == 0 and "refined: D_N" in out and "(held)" in out
    rc, out, _ = run(capsys, files["tth_header"], "--json", "--model", files["model"])
    assert "refined" not in json.loads(out)  # only where asked for
    # bad refinement options: one line and exit 2 before any sizing, not one failure per file
    rc, out, _ = run(capsys, path, "--refine", *small, "--habit", "cuboctahedron", "--json", "--model", files["model"])
    assert rc == 0 and json.loads(out)["refined"]["habit"] == "cuboctahedron"
    for option, what in ((("--material", "Unobtainium"), "--material"), (("--max-diameter", "100"), "--max-diameter"),
                         (("--habit", "prism"), "--habit")):
        rc, out, err = run(capsys, path, "--refine", *option, "--model", files["model"])
        assert rc == 2 and out == "" and what in err and len(err.strip().splitlines()) == 1
