"""``qdots fit``: DSE refinement of measured patterns (size, dispersion, strain with e.s.d.s).

    qdots fit FILE... [--material M | --cif F] [--wavelength A] [--blank FILE ...] [--solvent NAME|auto|none]
                      [--geometry capillary|flat-plate] [--exclude 2THETA_RANGES] [--json] [--plot PNG] [--csv OUT]
    qdots fit STANDARD_FILE... --standard Si|LaB6|CIF [--geometry ...]   (the instrument's FWHMs for --instrument-fwhm)

Register with ``add_fit(subparsers)``; the handler is ``cmd_fit(args)`` (returns the exit status: 0, or 2 when
a file could not be refined; each failure is one line on stderr).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from ..units import XUnit

CSV_KEYS = ("status", "size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "dispersion",
            "dispersion_std", "strain", "strain_std", "b_offset", "displacement_mm", "instrument_gauss_fwhm",
            "instrument_gauss_fwhm_std", "instrument_lorentz_fwhm", "instrument_lorentz_fwhm_std", "instrument_unit",
            "dispersion_held", "rwp", "reduced_chi2", "reduced_chi2_with_dots", "weights", "habit", "n_points")


def add_fit(sub) -> argparse.ArgumentParser:
    """Add the ``fit`` sub-command to an argparse sub-parser collection."""
    p = sub.add_parser(
        "fit", help="DSE refinement of measured patterns: size, dispersion, strain with uncertainties",
        description="Refine the Debye-scattering-equation model of a log-normal population of nanocrystals "
                    "(mean diameter, dispersion, strain, Debye-Waller offset) seen through a Voigt instrument resolution "
                    "(refined, or held with --instrument-fwhm) with solvent/blank scales and a "
                    "Chebyshev background against each pattern file (2theta in degrees, or Q with --x-unit q).")
    p.add_argument("files", nargs="+", metavar="FILE", help="pattern files (x, I[, sigma] columns)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--material", default="PbS", help="built-in material: PbS, PbSe or CdSe (default PbS)")
    what.add_argument("--cif", default=None, metavar="F", help="crystal structure from a CIF file instead")
    p.add_argument("--wavelength", type=float, default=None, metavar="A",
                   help="wavelength in A (K-alpha1 for a flat plate); default: the file header's")
    p.add_argument("--x-unit", choices=XUnit.choices(), default=None,
                   help="x column: 2theta deg or Q 1/A (default: the file header's x unit, else 2theta)")
    p.add_argument("--blank", action="append", default=[], metavar="FILE",
                   help="measured blank (solvent, capillary), its own scale; repeatable")
    p.add_argument("--blank-wavelength", type=float, default=None, metavar="A",
                   help="wavelength in A the blanks were measured at, if not the patterns' (a blank of another "
                        "beamtime: it is used on its own Q axis); default: the blank file's header, else the "
                        "pattern's wavelength")
    p.add_argument("--solvent", default=None, metavar="NAME",
                   help="built-in solvent model: hexane, toluene, auto (the one that fits better) or none "
                        "(default: none with --blank or a flat plate, else auto)")
    p.add_argument("--geometry", choices=["capillary", "flat-plate"], default="capillary",
                   help="capillary (synchrotron, default) or flat-plate (laboratory Bragg-Brentano, Cu K-alpha "
                        "doublet, polarization, sample displacement, a scale per reflection family)")
    p.add_argument("--exclude", default=None, metavar="RANGES",
                   help="2theta ranges to leave out, e.g. '27.5-28.8,47:48' (degrees)")
    p.add_argument("--q-range", type=float, nargs=2, default=None, metavar=("QMIN", "QMAX"),
                   help="Q range to fit in 1/A (default 1-15 for a capillary, the data's for a flat plate)")
    p.add_argument("--background-order", type=int, default=3, metavar="N", help="Chebyshev degree (default 3)")
    p.add_argument("--max-diameter", type=float, default=21.0, metavar="NM",
                   help="largest cluster of the basis in nm (default 21)")
    p.add_argument("--instrument-fwhm", type=float, nargs=2, default=None, metavar=("GAUSS", "LORENTZ"),
                   help="hold the instrument's Voigt resolution at these FWHMs (e.g. a measured standard's): in Q "
                        "(1/A) for a capillary, in 2theta (deg) for a flat plate; default: both refined (0-0.02 1/A, "
                        "0-0.3 deg)")
    p.add_argument("--dispersion", type=float, default=None, metavar="S",
                   help="hold the dispersion (relative std of the log-normal, 0.02-0.45) at a value known from "
                        "elsewhere (TEM, SAXS) instead of refining it: WAXS alone determines it poorly against the "
                        "number-weighted mean D_N, whose value and e.s.d. are then those at that dispersion")
    p.add_argument("--habit", default="sphere", metavar="HABIT",
                   help="the nanocrystals' habit, the shape of the basis clusters (same equal-volume diameters): "
                        "sphere (the near-spherical reference series, default), octahedron, truncated-octahedron, "
                        "cuboctahedron, cube or rhombic-dodecahedron (faceted, cubic structures; first use builds its "
                        "basis, 10-30 s), or auto: refined with every habit, the lowest reduced chi^2 kept and every "
                        "habit's printed (six refinements per file). A sphere series reads a faceted population's "
                        "peak shapes as dispersion or instrument broadening")
    p.add_argument("--standard", default=None, metavar="NAME",
                   help="the files are a line-profile standard (Si, LaB6, a built-in material or a CIF file): fit the "
                        "instrument's Voigt FWHMs from its peaks (widths constant in Q for a capillary, in 2theta for "
                        "a flat plate) and print them for --instrument-fwhm, instead of refining dots")
    p.add_argument("--sequential", action="store_true", help="start each file from the previous file's result")
    p.add_argument("--no-profile", action="store_true",
                   help="size e.s.d.s from the covariance only (faster; no profile over the dispersion)")
    p.add_argument("--statistical-esd", action="store_true",
                   help="report the covariance's e.s.d.s as they are; by default every e.s.d. is multiplied by the "
                        "residuals' correlation factor (esd_correlation_factor, ~1 where the model leaves only noise), "
                        "since systematic residuals make the covariance's e.s.d.s too small")
    p.add_argument("--json", action="store_true", help="print one JSON list of results instead of text")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="save a Rietveld-style figure (several files: FILE's stem is added to the name)")
    p.add_argument("--plot-x", choices=["q", "tth"], default="q", help="x axis of the figure (default q)")
    p.add_argument("--csv", default=None, metavar="OUT", help="write one row of results per file to a CSV table")
    p.add_argument("--series-plot", default=None, metavar="PNG",
                   help="save a figure of D_N, D_V, dispersion, strain (with e.s.d.s) and Rwp against the file order "
                        "(or --time-key) over all files: the time series of an in-situ synthesis")
    p.add_argument("--time-key", default=None, metavar="KEY",
                   help="a header key of every file holding a number (e.g. 'time' for a line '# time: 120 s'): the x "
                        "axis of --series-plot, and a column of --csv and --json")
    p.set_defaults(func=cmd_fit, command="fit")
    return p


def _plot_path(base: str, name: str, several: bool) -> Path:
    path = Path(base)
    path = path if path.suffix else path.with_suffix(".png")
    return path.with_name(f"{path.stem}_{Path(name).stem}{path.suffix}") if several else path


def _read_input(name: str, args):
    """(pattern, wavelength A, x unit) of one file: the wavelength from --wavelength or the header; ValueError else."""
    from ..file_sizing import resolve_x_unit
    from ..io import read_pattern
    from ..units import check_wavelength

    pattern = read_pattern(name)
    wavelength = args.wavelength if args.wavelength is not None else pattern.wavelength_from_header()
    if wavelength is None:
        raise ValueError("no wavelength: pass --wavelength A or put 'wavelength: 0.5646 A' in the header")
    check_wavelength(wavelength)
    return pattern, wavelength, resolve_x_unit(pattern, args.x_unit)


def _report_failure(name: str, exc: ValueError) -> None:
    """One line on stderr for a file that failed (its name not repeated)."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for prefix in (f"{name}: ", f"{Path(name)}: "):
        msg = msg[len(prefix):] if msg.startswith(prefix) else msg
    print(f"qdots fit: {name}: {msg}", file=sys.stderr)


def _fit_standards(args, geometry) -> int:
    """``--standard``: the instrument's FWHMs from each file (text or JSON); 2 if any file failed."""
    from ..file_sizing import json_safe
    from ..refine.standard import fit_instrument

    rows, failed = [], 0
    for name in args.files:
        try:
            pattern, wavelength, x_unit = _read_input(name, args)
            fit = fit_instrument(pattern.x, pattern.y, pattern.sigma, wavelength_a=wavelength, standard=args.standard,
                                 x_unit=x_unit, geometry=geometry.kind, q_range=args.q_range,
                                 background_order=args.background_order)
        except ValueError as exc:
            _report_failure(name, exc)
            failed += 1
            continue
        rows.append({"file": name, **fit.to_dict()})
        if not args.json:
            print(f"{name}: {fit.summary()}")
    if args.json:
        print(json.dumps(json_safe(rows), indent=2, allow_nan=False))
    return 2 if failed else 0


def result_keys() -> set[str]:
    """Keys of a result row of ``--json`` and ``--csv`` (which ``--time-key`` may not take)."""
    from dataclasses import fields

    from ..refine.result import RefinementResult

    return {"file"} | {f.name for f in fields(RefinementResult) if f.name != "curves"}


def header_number(header: dict[str, str], key: str) -> float:
    """The number at the start of a header value (``'120 s'`` -> 120.0), for ``--time-key``."""
    value = next((v for k, v in header.items() if k.strip().lower() == key.strip().lower()), None)
    token = str(value).strip().split()[0] if value is not None and str(value).strip() else ""
    try:
        number = float(token)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number):
        shown = "no such key" if value is None else f"{value!r}"
        raise ValueError(f"--time-key {key!r}: the header gives {shown}; accepted: a header line '# {key}: NUMBER' "
                         "in every file")
    return number


def cmd_fit(args) -> int:
    """Refine every file; print results (text or JSON), optional figures and CSV; 2 if any file failed."""
    from ..file_sizing import json_safe
    from ..io import check_output_path
    from ..refine import Geometry, load_blank, material_habit, parse_ranges, refine_pattern
    from ..refine.fit import DISPERSION_BOUNDS
    from ..refine.plot import plot_refinement
    from ..refine.series_plot import plot_series
    from ..units import check_wavelength
    from .common import fail

    material = args.cif if args.cif else args.material
    try:
        exclude = parse_ranges(args.exclude)
        for value in (args.wavelength, args.blank_wavelength):
            if value is not None:
                check_wavelength(value)
        geometry = Geometry(kind=args.geometry)
        if args.dispersion is not None and not DISPERSION_BOUNDS[0] <= args.dispersion <= DISPERSION_BOUNDS[1]:
            raise ValueError(f"--dispersion {args.dispersion}; accepted: {DISPERSION_BOUNDS[0]} to "
                             f"{DISPERSION_BOUNDS[1]} (relative std of the log-normal)")
        if args.cif and not Path(args.cif).is_file():
            raise ValueError(f"--cif {args.cif!r} does not exist; give the path of a CIF file")
        args.habit = material_habit(material, args.habit)
        if not 0 <= args.background_order <= 12:
            raise ValueError(f"--background-order {args.background_order}; accepted: 0 to 12")
        if args.csv:  # output paths before the fitting, not after it
            check_output_path(args.csv, "--csv")
        if args.plot:
            for name in args.files:
                check_output_path(_plot_path(args.plot, name, len(args.files) > 1), "--plot")
        if args.series_plot:
            check_output_path(args.series_plot, "--series-plot")
        if args.time_key is not None and args.time_key.strip().lower() in result_keys():
            raise ValueError(f"--time-key {args.time_key!r} is also a result field; accepted: another header key "
                             "(e.g. time, elapsed_time, t_s)")
    except ValueError as exc:
        return fail("fit", str(exc))
    if args.standard:
        return _fit_standards(args, geometry)
    solvent = args.solvent or ("none" if args.blank or geometry.flat_plate else "auto")
    rows, failed, previous, series, times = [], 0, None, [], []
    for name in args.files:
        time_value = None
        try:
            pattern, wavelength, x_unit = _read_input(name, args)
            time_value = header_number(pattern.header, args.time_key) if args.time_key else None
            blanks = [load_blank(b, args.blank_wavelength, args.x_unit or "tth", default_wavelength_a=wavelength)
                      for b in args.blank]
            result = refine_pattern(pattern.x, pattern.y, pattern.sigma, wavelength_a=wavelength, x_unit=x_unit,
                                    material=material, geometry=geometry, blanks=blanks, solvent=solvent,
                                    background_order=args.background_order, q_range=args.q_range,
                                    exclude_tth=exclude, start=previous if args.sequential else None,
                                    max_diameter_nm=args.max_diameter, profile=not args.no_profile,
                                    instrument_fwhm=args.instrument_fwhm, dispersion=args.dispersion,
                                    correlated_esd=not args.statistical_esd, habit=args.habit)
        except ValueError as exc:  # PatternFileError is a ValueError
            _report_failure(name, exc)
            failed += 1
            series.append(None)  # a gap in the series figure: the other files keep their places
            times.append(time_value if time_value is not None else float("nan"))
            continue
        series.append(result)
        times.append(time_value)
        if result.status == "sized":
            previous = result.to_dict()
        if args.plot:
            path = plot_refinement(result, _plot_path(args.plot, name, len(args.files) > 1),
                                   x=args.plot_x if result.curves.tth is not None else "q")
            if not args.json:
                print(f"figure: {path}")
        rows.append({"file": name, **({args.time_key: time_value} if args.time_key else {}), **result.to_dict()})
        if not args.json:
            print(f"{name}: {result.summary()}")
    if args.json:
        print(json.dumps(json_safe(rows), indent=2, allow_nan=False))
    if args.csv and rows:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            keys = ((args.time_key,) if args.time_key else ()) + CSV_KEYS
            writer.writerow(("file",) + keys)
            for row in rows:
                writer.writerow([row["file"]] + ["" if row.get(k) is None else row.get(k) for k in keys])
    if args.series_plot and any(r is not None for r in series):
        path = plot_series(series, args.series_plot, x=times if args.time_key else None,
                           x_label=args.time_key or "file (in the order given)")
        if not args.json:
            print(f"series figure: {path}")
    return 2 if failed else 0
