"""The instrument's resolution from a line-profile standard (qdots_bluesky.refine.standard, qdots fit --standard).

Standards are simulated independently of the fit's analytic Voigt profiles: each reflection family a line (split
between its two neighbouring grid points, so its centroid is exact) convolved by FFT with a Voigt profile
(``voigt_convolve``), plus background and counting noise."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from qdots_bluesky.cli.fit import add_fit
from qdots_bluesky.refine.standard import fit_instrument, standard_structure
from qdots_bluesky.sim.physics.profiles import voigt_convolve
from qdots_bluesky.sim.physics.reflections import bragg_reflections
from qdots_bluesky.units import q_to_tth, tth_to_q

WL = 0.564162
CU = 1.5406


def _lines(u: np.ndarray, positions: np.ndarray, heights: np.ndarray) -> np.ndarray:
    step = u[1] - u[0]
    y = np.zeros_like(u)
    for p, h in zip(positions, heights):
        t = (p - u[0]) / step
        i = int(np.floor(t))
        if 0 <= i < u.size - 1:
            y[i] += h * (1 - (t - i))
            y[i + 1] += h * (t - i)
    return y


def _profile(u, positions, heights, gauss, lorentz, fine=8):
    """Lines convolved on a grid ``fine`` times finer, read at ``u`` (the two-point split of a line then adds a
    negligible width)."""
    step = (u[1] - u[0]) / fine
    uf = u[0] + step * np.arange((u.size - 1) * fine + 1)
    return voigt_convolve(_lines(uf, positions, heights), step, gauss, lorentz)[0][::fine]


def _standard(u, positions, heights, gauss, lorentz, rng, counts=2e4):
    y = _profile(u, positions, heights, gauss, lorentz)
    y = counts * y / y.max() + 400.0 + 30.0 * (u - u[0]) / np.ptp(u)
    return rng.poisson(y).astype(float)


def test_capillary_widths_recovered():
    q = np.arange(1.0, 8.0, 0.0028)
    refl = bragg_reflections(standard_structure("Si"), 8.2, wavelength_a=WL)
    y = _standard(q, np.array([r.q for r in refl]), np.array([r.multiplicity * r.f_squared / r.q**2 for r in refl]),
                  0.006, 0.004, np.random.default_rng(0))
    fit = fit_instrument(q, y, wavelength_a=WL, standard="Si", x_unit="q")
    assert fit.unit == "1/A" and fit.n_reflections >= 10 and not fit.flags
    for value, std, truth in ((fit.gauss_fwhm, fit.gauss_fwhm_std, 0.006), (fit.lorentz_fwhm, fit.lorentz_fwhm_std, 0.004)):
        assert 0 < std < 0.001 and abs(value - truth) < 3 * std, fit.summary()
    assert abs(fit.lattice_strain) < 2e-4 and 0.8 < fit.reduced_chi2 < 1.25  # describes the data to the noise
    assert "--instrument-fwhm" in fit.summary()


def test_flat_plate_doublet_and_zero_offset_recovered():
    tth = np.arange(20.0, 90.0, 0.01)
    structure = standard_structure("LaB6")
    refl = bragg_reflections(structure, float(tth_to_q(92.0, CU)), wavelength_a=CU)
    q_k = np.array([r.q for r in refl])
    h = np.array([r.multiplicity * r.f_squared / r.q**2 for r in refl])
    offset = 0.03
    t1, t2 = q_to_tth(q_k, CU) + offset, q_to_tth(q_k, 1.54443) + offset
    ok = np.isfinite(t2)
    y = _profile(tth, np.r_[t1, t2[ok]], np.r_[h, 0.5 * h[ok]], 0.05, 0.03)
    y = np.random.default_rng(1).poisson(2e4 * y / y.max() + 300.0).astype(float)
    fit = fit_instrument(tth, y, wavelength_a=CU, standard="LaB6", geometry="flat-plate")
    assert fit.unit == "deg" and fit.lattice_strain is None
    assert abs(fit.zero_offset_deg - offset) < 0.005, fit.summary()
    for value, std, truth in ((fit.gauss_fwhm, fit.gauss_fwhm_std, 0.05), (fit.lorentz_fwhm, fit.lorentz_fwhm_std, 0.03)):
        assert abs(value - truth) < max(3 * std, 0.003), fit.summary()


def test_bad_input():
    q = np.linspace(1.0, 8.0, 5000)
    with pytest.raises(ValueError, match="accepted: Si, LaB6"):
        fit_instrument(q, np.ones_like(q), wavelength_a=WL, standard="unobtainium", x_unit="q")
    with pytest.raises(ValueError, match="no reflection of Si"):
        fit_instrument(q, np.ones_like(q), wavelength_a=WL, standard="Si", x_unit="q", q_range=(1.0, 1.5))
    with pytest.raises(ValueError, match="accepted: capillary, flat-plate"):
        fit_instrument(q, np.ones_like(q), wavelength_a=WL, geometry="kapton", x_unit="q")


def test_cli_standard(tmp_path, capsys):
    tth = np.arange(5.0, 40.0, 0.004)
    q = tth_to_q(tth, WL)
    refl = bragg_reflections(standard_structure("Si"), float(q.max()) + 0.2, wavelength_a=WL)
    y = _standard(q, np.array([r.q for r in refl]), np.array([r.multiplicity * r.f_squared / r.q**2 for r in refl]),
                  0.005, 0.002, np.random.default_rng(2))
    path = tmp_path / "si.xye"
    np.savetxt(path, np.column_stack([tth, y]), header=f"wavelength: {WL} A")
    parser = argparse.ArgumentParser(prog="qdots")
    add_fit(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fit", str(path), "--standard", "Si", "--json"])
    assert args.func(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["standard"] == "Si" and row["unit"] == "1/A" and 0.004 < row["gauss_fwhm"] < 0.006
    args = parser.parse_args(["fit", str(path), "--standard", "Si", "--wavelength", "-1"])
    assert args.func(args) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
