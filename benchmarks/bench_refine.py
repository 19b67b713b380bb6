"""DSE refinement of measured patterns whose reference size is known: accuracy, e.s.d. coverage and speed.

    python benchmarks/bench_refine.py DIR [--solvents DIR] [--network] [--no-profile] [--no-instrument] [--dispersion S] [--repeat N]
                                          [--json [OUT]]

File names carry wavelength and reference size as in ``bench_measured.py`` (whose name parsing is reused):
``PbS_synchr_wl0p564162A_5p03nm_hexane.xye``. A synchrotron file whose name names a solvent (hexane, toluene)
is refined with that measured blank from ``--solvents`` (default DIR/../solvents) when it is there (read at
``--blank-wavelength``, else its header's wavelength, else 0.564162 A, the beamtime of the shared blanks, and used on
its own Q axis, so it serves patterns of any wavelength), else with ``--solvent auto`` (the better of the built-in hexane and toluene models); ``_lab_`` files as flat plates
(K-alpha doublet, displacement, a scale per reflection family) without solvent, the Si plate's reflection near 95 deg
left out (``--lab-exclude``). ``--network`` starts each
refinement from the shipped network's estimate (else the coarse grid) and compares with it.

Prints per file: reference, refined D_N +- e.s.d., D_V +- e.s.d., dispersion, strain, the instrument's refined
Gaussian and Lorentzian FWHM (1/A synchrotron, deg laboratory), Rwp, time, the network's estimate, the e.s.d.
correlation factor (BL, applied to the e.s.d.s unless ``--statistical-esd``); ``--no-instrument`` holds the instrument widths at 0 (the model without resolution); then the mean absolute error of D_N per instrument kind, the share
within 2 e.s.d. (and within 2 statistical e.s.d.s, without the correlation factor), the median time per pattern once the basis
is cached (each file refined ``--repeat`` times, the median taken), and the time to build the basis of each
wavelength (pair histograms cached). Timings are on one core: the benchmark sets ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 unless they are set already (issue 17's targets: a median
<= 20 ms per synchrotron pattern, <= 200 ms per laboratory scan); they depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before NumPy loads BLAS
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_measured import find_files  # noqa: E402  (file-name parsing shared with the network benchmark)

from qdots_bluesky.io import read_pattern  # noqa: E402
from qdots_bluesky.refine import load_blank, parse_ranges, refine_pattern  # noqa: E402
from qdots_bluesky.sim.physics.habits import HABITS  # noqa: E402
from qdots_bluesky.refine.basis import default_q_grid, refinement_basis  # noqa: E402
from qdots_bluesky.sim.physics.cluster_basis import build_cluster_basis  # noqa: E402
from qdots_bluesky.sim.physics.library import LibrarySettings  # noqa: E402

SOLVENTS = ("hexane", "toluene")


#: Wavelength (A) of the measured solvent blanks in ../shared/data/solvents (the X04SA beamtime of the colloids).
BLANK_WAVELENGTH_A = 0.564162


def basis_seconds(material: str, wavelength: float) -> float:
    """Seconds to build a basis for a new wavelength (pair histograms from their cache, basis cache bypassed)."""
    t = time.perf_counter()
    build_cluster_basis(LibrarySettings(material=material, wavelength_a=wavelength), default_q_grid(wavelength))
    return time.perf_counter() - t


def refine_file(path: Path, info, solvents_dir: Path, predictor, profile: bool, repeat: int,
                instrument: tuple[float, float] | None = None, correlated_esd: bool = True,
                blank_wavelength_a: float | None = None, dispersion: float | None = None,
                lab_exclude: list[tuple[float, float]] | None = None, habit: str = "sphere") -> dict[str, Any]:
    pattern = read_pattern(path)
    lab = info.kind == "laboratory"
    named = next((s for s in SOLVENTS if s in path.stem.lower()), None)
    blank_path = solvents_dir / f"{named}.xye" if named else None
    options: dict[str, Any] = {"wavelength_a": info.wavelength_a, "profile": profile, "instrument_fwhm": instrument,
                               "correlated_esd": correlated_esd, "dispersion": dispersion, "habit": habit}
    if lab:
        options.update(geometry="flat-plate", solvent="none", exclude_tth=lab_exclude or [])
        background = "none"
    elif blank_path is not None and blank_path.is_file():
        options.update(blanks=[load_blank(blank_path, blank_wavelength_a, default_wavelength_a=BLANK_WAVELENGTH_A)], solvent="none")
        background = f"blank {blank_path.name}"
    else:
        options.update(solvent="auto")
        background = "auto (built-in hexane/toluene)"
    start, net_ms = None, None
    if predictor is not None:
        t = time.perf_counter()
        start = predictor.predict_pattern(pattern.x, pattern.y, x_unit="tth", wavelength=info.wavelength_a)
        net_ms = 1e3 * (time.perf_counter() - t)
    times, cpu, result = [], [], None
    for _ in range(max(1, repeat)):
        t, c = time.perf_counter(), time.process_time()
        result = refine_pattern(pattern.x, pattern.y, pattern.sigma, network=start, keep_curves=False, **options)
        times.append(1e3 * (time.perf_counter() - t))
        cpu.append(1e3 * (time.process_time() - c))
    d = result.to_dict()
    return {"file": path.name, "kind": info.kind, "reference_nm": info.reference_nm, "solvent": background,
            "network_nm": None if start is None else d.get("network_size_nm"), "network_ms": net_ms,
            "ms": statistics.median(times), "cpu_ms": statistics.median(cpu), **{k: d[k] for k in (
                "status", "size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "dispersion",
                "dispersion_std", "strain", "strain_std", "b_offset", "rwp", "reduced_chi2", "n_points", "flags",
                "esd_correlation_factor", "esd_correlated", "instrument_gauss_fwhm", "instrument_gauss_fwhm_std",
                "instrument_lorentz_fwhm", "instrument_lorentz_fwhm_std", "instrument_unit",
                "scales", "texture", "habit", "habit_reduced_chi2")}}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("synchrotron", "laboratory"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        err = [abs(r["size_nm"] - r["reference_nm"]) if r["size_nm"] is not None else math.inf for r in sel]
        within = [r["size_nm"] is not None and abs(r["size_nm"] - r["reference_nm"]) <= 2 * r["size_std_nm"] for r in sel]
        err_v = [abs(r["size_volume_nm"] - r["reference_nm"]) if r.get("size_volume_nm") is not None else math.inf
                 for r in sel]
        # the covariance's own e.s.d.s (what a fit reports without the correlation factor)
        within_stat = [r["size_nm"] is not None and abs(r["size_nm"] - r["reference_nm"])
                       <= 2 * r["size_std_nm"] / (r["esd_correlation_factor"] if r["esd_correlated"] else 1.0)
                       for r in sel]
        out[kind] = {"n": len(sel), "mae_nm": float(np.mean(err)),
                     "within_2esd_statistical": float(np.mean(within_stat)),
                     "mae_volume_vs_reference_nm": float(np.mean(err_v)), "within_2esd": float(np.mean(within)),
                     "median_ms": float(np.median([r["ms"] for r in sel])),
                     "median_cpu_ms": float(np.median([r["cpu_ms"] for r in sel])),
                     "median_points": float(np.median([r["n_points"] for r in sel]))}
    within = [r["size_nm"] is not None and abs(r["size_nm"] - r["reference_nm"]) <= 2 * r["size_std_nm"] for r in rows]
    out["all"] = {"n": len(rows), "within_2esd": float(np.mean(within)) if rows else None}
    return out


def _f(v, fmt=".3f") -> str:
    return "-" if v is None else format(v, fmt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--solvents", type=Path, default=None, help="measured solvent blanks (default DIR/../solvents)")
    ap.add_argument("--blank-wavelength", type=float, default=None, metavar="A",
                    help="wavelength (A) the blanks in --solvents were measured at (default: a blank's header, else "
                         "0.564162, the shared blanks' beamtime)")
    ap.add_argument("--material", default="PbS")
    ap.add_argument("--network", action="store_true", help="start from the shipped network's estimate")
    ap.add_argument("--no-profile", action="store_true", help="e.s.d.s from the covariance only")
    ap.add_argument("--no-instrument", action="store_true", help="hold the instrument widths at 0 (no resolution)")
    ap.add_argument("--dispersion", type=float, default=None, metavar="S",
                    help="hold the dispersion at S in every refinement (as qdots fit --dispersion): how D_N follows it")
    ap.add_argument("--habit", default="sphere",
                    help="the dots' habit in every refinement, as qdots fit --habit: sphere (default), octahedron, "
                         "truncated-octahedron, cuboctahedron, cube, rhombic-dodecahedron, or auto (every habit "
                         "refined, the lowest reduced chi^2 kept; its habit is printed)")
    ap.add_argument("--statistical-esd", action="store_true",
                    help="e.s.d.s without the residuals' correlation factor (as qdots fit --statistical-esd)")
    ap.add_argument("--lab-exclude", default="94-96", metavar="RANGES",
                    help="2theta ranges (deg) left out of laboratory scans, as qdots fit --exclude (default 94-96: the "
                         "Si zero-background plate's reflection near 95 deg that the dots' model does not hold; '' "
                         "for none)")
    ap.add_argument("--repeat", type=int, default=3, help="refinements per file for the timing (median; default 3)")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT", help="JSON to OUT (or stdout)")
    args = ap.parse_args(argv)
    try:
        lab_exclude = parse_ranges(args.lab_exclude)
    except ValueError as exc:
        ap.error(f"--lab-exclude: {exc}")
    files, skipped = find_files(args.directory)
    for path, why in skipped:
        print(f"skipped {path.name}: {why}", file=sys.stderr)
    if not files:
        print(f"no pattern files with wavelength and reference size in {args.directory}; nothing to do")
        return 0
    solvents_dir = args.solvents or args.directory.parent / "solvents"
    predictor = None
    if args.network:
        from qdots_bluesky.predictor import Predictor

        predictor = Predictor.from_bundle(device="numpy")
    basis_s = {}
    for wl in sorted({info.wavelength_a for _, info in files}):
        basis_s[wl] = basis_seconds(args.material, wl)
        refinement_basis(args.material, wl)  # cached from here on: the timings below are per pattern
        for habit in (HABITS if args.habit == "auto" else (args.habit,) if args.habit != "sphere" else ()):
            refinement_basis(args.material, wl, habit=habit)
    rows = []
    for path, info in files:
        try:
            rows.append(refine_file(path, info, solvents_dir, predictor, not args.no_profile, args.repeat,
                                    (0.0, 0.0) if args.no_instrument else None, not args.statistical_esd,
                                    args.blank_wavelength, args.dispersion, lab_exclude, args.habit))
        except ValueError as exc:
            print(f"{path.name}: error: {exc}", file=sys.stderr)
            rows.append({"file": path.name, "kind": info.kind, "reference_nm": info.reference_nm, "size_nm": None,
                         "size_std_nm": None, "ms": math.nan, "cpu_ms": math.nan, "n_points": 0, "status": "error",
                         "error": str(exc)})
    summary = summarize(rows)
    summary["basis_seconds"] = {str(k): v for k, v in basis_s.items()}
    if args.json is not None:
        text = json.dumps({"rows": rows, "summary": summary}, indent=2, default=float)
        if args.json == "-":
            print(text)
            return 0
        Path(args.json).write_text(text)
    print(f"{'file':44s} {'ref':>5s} {'D_N':>6s} {'esd':>6s} {'D_V':>6s} {'esd':>6s} {'disp':>6s} {'strain%':>7s} "
          f"{'instG':>7s} {'instL':>7s} {'Rwp%':>5s} {'ms':>6s} {'net':>5s} {'BL':>5s} flags")
    for r in rows:
        if r["status"] == "error":
            print(f"{r['file']:44s} {r['reference_nm']:5.2f} error: {r['error']}")
            continue
        strain = None if r["strain"] is None else 100 * r["strain"]
        print(f"{r['file']:44s} {r['reference_nm']:5.2f} {_f(r['size_nm'])} {_f(r['size_std_nm'])} "
              f"{_f(r['size_volume_nm'])} {_f(r['size_volume_std_nm'])} {_f(r['dispersion'])} {_f(strain, '+.3f')} "
              f"{_f(r['instrument_gauss_fwhm'], '7.4f')} {_f(r['instrument_lorentz_fwhm'], '7.4f')} "
              f"{100 * r['rwp']:5.2f} {r['ms']:6.0f} {_f(r['network_nm'], '.2f'):>5s} "
              f"{_f(r['esd_correlation_factor'], '.1f'):>5s} {','.join(r['flags']) or '-'}"
              + (f" habit {r['habit']}" if args.habit == "auto" else ""))
    for kind in ("synchrotron", "laboratory"):
        if kind in summary:
            s = summary[kind]
            print(f"{kind}: n={s['n']}, MAE(D_N) {s['mae_nm']:.3f} nm (D_V against the same reference: "
                  f"{s['mae_volume_vs_reference_nm']:.3f} nm), within 2 esd {100 * s['within_2esd']:.0f} %, "
                  f"median {s['median_ms']:.0f} ms wall, {s['median_cpu_ms']:.0f} ms CPU per pattern "
                  f"({s['median_points']:.0f} points); within 2 statistical e.s.d.s (without the correlation "
                  f"factor) {100 * s['within_2esd_statistical']:.0f} %")
    print(f"all: within 2 esd {100 * summary['all']['within_2esd']:.0f} %; basis for a new wavelength: "
          + ", ".join(f"{k} A {v:.1f} s" for k, v in basis_s.items()) + " (timings indicative: shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
