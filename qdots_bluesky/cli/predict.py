"""``qdots predict``: size quantum dots in pattern files (light install: NumPy, SciPy, safetensors)."""
from __future__ import annotations

import json
import sys

from .common import add_device_option, fail
from ..units import XUnit

_DESCRIPTION = (
    "Read powder patterns (columns x, intensity[, sigma]), standardize them onto the model's Q grid and print the "
    "mean diameter +- its uncertainty, the volume-weighted diameter, dispersion and strain where the model gives "
    "them, the most probable size class, the confidence and warning flags (no_nanocrystals, out_of_distribution, "
    "low_confidence, truncated_q_range, padded, coarse_sampling, size_at_range_edge). The x unit and the wavelength "
    "come from the options or from the file header (qdots simulate's wavelength_a and x_unit, pyFAI's 2th_deg, "
    "q_A^-1, q_nm^-1 column headers; Q in 1/nm is converted). A file that cannot be read or standardized is "
    "reported on stderr as 'qdots predict: FILE: reason' (what the reader accepts is printed once) and the other "
    "files are still sized. How accurate a model is on measured patterns of known size: "
    "python benchmarks/bench_measured.py DIR --model PATH (in the source tree; its docstring gives the file naming). "
    "Exit status: 0 all files sized, 1 some file failed, 2 bad model or option."
)


def add_predict(sub) -> None:
    """Add ``predict``."""
    p = sub.add_parser("predict", help="size quantum dots in pattern files with a trained model",
                       description=_DESCRIPTION)
    p.add_argument("files", nargs="+", metavar="FILE", help="pattern files (.xy, .xye, .dat, .chi, .csv, any column text)")
    p.add_argument("--wavelength", type=float, default=None, metavar="A",
                   help="X-ray wavelength in angstrom for 2theta data (default: the file header's 'wavelength', "
                        "'wavelength_a' or 'lambda' entry; one of the two is needed for 2theta data)")
    p.add_argument("--x-unit", choices=XUnit.choices(), default=None,
                   help="unit of the first column: 'tth' = 2theta in degrees or 'q' = Q in 1/angstrom (default: the "
                        "unit the file header declares, else tth)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per file and line (file, size_nm, size_std_nm, size_volume_nm, "
                        "size_volume_std_nm, size_class_nm, size_regression_nm, dispersion, dispersion_std, strain, "
                        "strain_std, confidence, probabilities, dispersion_probabilities, ood_distance, flags, "
                        "flag_details, standardization, instrument_fwhm_q (the resolution the network was told in "
                        "1/A, null: unknown); diameters in nm, strain as a fraction); a failed file gives "
                        "{\"file\", \"error\"}")
    p.add_argument("--plot", metavar="PNG",
                   help="save a figure of the standardized pattern shaded by the class activation map (the Q regions "
                        "that drove the size class) with the class probabilities; with several files one figure per "
                        "file, named PNG's stem + '_' + the file's stem (needs matplotlib: the [sim] extra)")
    p.add_argument("--cam-layer", type=int, default=-1, metavar="N",
                   help="conv layer (0-4, or -1 for the last) whose Grad-CAM shades the --plot figure: -1 = the last "
                        "layer, the classic class activation map, coarse cells (default); lower layers give finer "
                        "cells")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="model bundle (.safetensors) written by `qdots train` (default: the shipped model, "
                        "qdots_bluesky/models/default_model.safetensors)")
    p.add_argument("--instrument-fwhm", type=float, nargs=2, default=None, metavar=("GAUSS", "LORENTZ"),
                   help="the instrument resolution where it is known (e.g. from a standard of the same beamtime: qdots "
                        "fit STANDARD --standard Si): Gaussian and Lorentzian FWHM, in 1/A for capillary "
                        "(synchrotron) patterns, deg 2theta for --geometry flat-plate. A network trained with an "
                        "instrument input (qdots train --known-instrument-share) is told a capillary resolution (0 0 "
                        "for ideal simulated patterns); the refinement holds it (default: the network allows for any "
                        "resolution it was trained with, the refinement refines it)")
    ref = p.add_argument_group("DSE refinement (--refine)")
    ref.add_argument("--refine", action="store_true",
                     help="after the network, refine each sized file by the Debye scattering equation seeded by the "
                          "network's estimate (mean and volume-weighted diameter, dispersion, strain with e.s.d.s, "
                          "Rwp); printed beside the network's values, in JSON as a 'refined' object (qdots fit's "
                          "fields); the first use of a wavelength builds a basis (seconds, cached)")
    ref.add_argument("--material", default="PbS",
                     help="material of the refinement: built-in name (PbS, PbSe, CdSe) or a CIF path (default PbS, "
                          "the shipped model's)")
    ref.add_argument("--geometry", choices=["capillary", "flat-plate"], default="capillary",
                     help="refinement geometry: capillary (synchrotron, default, solvent auto) or flat-plate "
                          "(laboratory Bragg-Brentano, Cu K-alpha doublet, texture)")
    ref.add_argument("--max-diameter", type=float, default=21.0, metavar="NM",
                     help="largest cluster of the refinement basis in nm (default 21)")
    ref.add_argument("--habit", default="sphere", metavar="HABIT",
                     help="the dots' habit in the refinement, as qdots fit --habit: sphere (default), octahedron, "
                          "truncated-octahedron, cuboctahedron, cube, rhombic-dodecahedron or auto")
    add_device_option(p)
    p.set_defaults(func=cmd_predict)


def _load(args):
    """The predictor, or an exit status 2 with the reason printed."""
    from ..models.bundle import BundleError, read_bundle
    from ..predictor import Predictor
    from ..units import check_wavelength
    from .common import resolve_cli_device

    if args.wavelength is not None:
        try:
            check_wavelength(args.wavelength)
        except ValueError as exc:
            return fail("predict", f"--wavelength: {exc}")
    try:
        contents = read_bundle(args.model)
    except BundleError as exc:
        return fail("predict", str(exc))
    options = _instrument_option(args, contents.config)
    if isinstance(options, int):
        return options
    try:
        predictor = Predictor.from_contents(contents, device=resolve_cli_device(args.device), **options)
    except ValueError as exc:
        return fail("predict", f"--device: {exc}")
    n_layers = len(predictor.contents.config.get("kernels", ()))  # Grad-CAM layers (quantum-dot networks only)
    if n_layers and not -n_layers <= args.cam_layer < n_layers:
        return fail("predict", f"--cam-layer {args.cam_layer}: the model has {n_layers} conv layers; accepted: "
                               f"0..{n_layers - 1} or -1..-{n_layers}")
    return predictor


def _instrument_option(args, config: dict) -> dict | int:
    """The predictor's ``instrument_fwhm_q`` option from --instrument-fwhm, or an exit status 2 with the reason printed.

    A capillary resolution goes to a network trained with an instrument input where it lies within the widths that
    network knows; with --refine the refinement holds it in any case (outside the network's widths, or for a network
    without the input, the network sizes as of an unknown instrument, said on stderr). A flat plate's resolution (deg
    2theta) is the refinement's only."""
    from ..models.engine import check_instrument_fwhm

    known = getattr(args, "instrument_fwhm", None)
    refine = getattr(args, "refine", False)
    if known is None:
        return {}
    if getattr(args, "geometry", "capillary") == "flat-plate":
        if not refine:
            return fail("predict", "--instrument-fwhm with --geometry flat-plate is a 2theta resolution for the "
                                   "refinement; accepted: with --refine")
        return {}
    if not config.get("instrument_input"):
        if not refine:
            return fail("predict", "--instrument-fwhm: this model was not trained with a known instrument resolution "
                                   "(qdots train --known-instrument-share); accepted: a model trained with it, or "
                                   "--refine (the refinement holds the resolution)")
        print("qdots predict: --instrument-fwhm: the model has no instrument input; the network sizes as of an unknown "
              "instrument, the refinement holds the resolution", file=sys.stderr)
        return {}
    try:
        return {"instrument_fwhm_q": check_instrument_fwhm(known, config)}
    except ValueError as exc:
        if not refine:
            return fail("predict", f"--instrument-fwhm: {exc}")
        print(f"qdots predict: --instrument-fwhm: {exc}; the network sizes as of an unknown instrument, the refinement "
              "holds the resolution", file=sys.stderr)
        return {}


def cmd_predict(args) -> int:
    from ..file_sizing import json_record, plot_files, plot_names, refine_files, size_files
    from ..io import check_output_path

    if args.plot:
        for name in set(plot_names(args.plot, args.files)):
            check_output_path(name, "--plot")
        import matplotlib  # noqa: F401  (a missing [sim] extra fails here, before the sizing)
    if getattr(args, "refine", False):
        import ase  # noqa: F401  (the refinement's DSE needs the [sim] extra: fail before the sizing)
        import xraylib  # noqa: F401

        from ..refine import material_habit
        from ..sim.physics.materials import get_structure

        try:  # the refinement's options, once, before any sizing (not one failure per file)
            get_structure(args.material)
        except ValueError as exc:
            return fail("predict", f"--material: {exc}")
        try:
            args.habit = material_habit(args.material, args.habit)
        except ValueError as exc:
            return fail("predict", f"--habit: {exc}")
        if not 0.5 <= args.max_diameter <= 40.0:
            return fail("predict", f"--max-diameter {args.max_diameter:g}; accepted: 0.5 to 40 nm")
    predictor = _load(args)
    if isinstance(predictor, int):
        return predictor
    if getattr(args, "refine", False) and not predictor.task.is_pbs_preset:
        return fail("predict", f"--refine: the DSE refinement refines quantum-dot sizes; the model's task is "
                               f"{predictor.task.name!r}; accepted: --refine with a quantum-dot model (or use qdots fit)")
    told = getattr(predictor, "instrument_fwhm_q", None)
    if told is not None and not args.json:  # (JSON says it in every record)
        print("the network is told the instrument resolution {:g} {:g} 1/A".format(*told))
    results = size_files(predictor, args.files, x_unit=args.x_unit, wavelength=args.wavelength)
    if getattr(args, "refine", False):
        refine_files(results, material=args.material, x_unit=args.x_unit, wavelength=args.wavelength,
                     geometry=args.geometry, instrument_fwhm=args.instrument_fwhm,
                     max_diameter_nm=args.max_diameter, habit=args.habit)
    if args.plot:
        plot_files(predictor, results, args.plot, layer=args.cam_layer)
    accepted = []
    for r in results:
        if r.error is not None:
            print(f"qdots predict: {r.path}: {r.error}", file=sys.stderr)
            if r.accepted and r.accepted not in accepted:
                accepted.append(r.accepted)
    for text in accepted:
        print(f"qdots predict: {text}", file=sys.stderr)
    for r in results:
        if args.json:
            print(json.dumps(json_record(r), allow_nan=False))
        elif r.estimate is not None:
            print(f"{r.path}: {r.estimate.summary()}")
            if r.refined is not None:
                print(f"{r.path}: refined: {r.refined.summary()}")
            elif r.refine_error is not None:
                print(f"qdots predict: {r.path}: refinement failed: {r.refine_error}", file=sys.stderr)
    if not args.json:
        for r in results:
            if r.plot is not None:
                print(f"{r.path}: plot saved to {r.plot}")
    return 1 if any(r.error is not None for r in results) else 0
