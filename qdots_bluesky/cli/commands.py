"""The `qdots` command line."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import __version__


def _float_list(text: str) -> list[float]:
    """'2:10:0.5' (start:stop:step, inclusive) or '0.05,0.1' -> floats."""
    import numpy as np

    if ":" in text:
        start, stop, step = (float(v) for v in text.split(":"))
        if step <= 0 or stop < start:
            raise argparse.ArgumentTypeError(f"range {text!r} must be START:STOP:STEP with STEP > 0 and STOP >= START")
        return [round(float(v), 8) for v in np.arange(start, stop + step / 2, step)]
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.05,0.1 or START:STOP:STEP, got {text!r}") from None


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="DSE powder pattern of a quantum-dot population",
                       description="Compute the X-ray powder pattern of a log-normal population of near-spherical "
                                   "quantum dots with the Debye scattering equation and write it as two columns.")
    p.add_argument("--material", default="PbS", help="built-in material (PbS, PbSe, CdSe) or the path of a CIF file (default PbS)")
    p.add_argument("--diameter", type=float, required=True, help="mean diameter in nm of the log-normal number distribution")
    p.add_argument("--dispersion", type=float, default=0.0,
                   help="relative standard deviation of the diameter, in [0, 0.5); 0 = the single nearest cluster (default 0)")
    p.add_argument("--strain", type=float, default=0.0,
                   help="fractional isotropic change of the lattice parameter, within +-0.1 (default 0)")
    p.add_argument("--wavelength", type=float, default=None,
                   help="X-ray wavelength in angstrom; needed with --tth; sets anomalous dispersion and Compton recoil "
                        "(default 0.56 when only --q is given)")
    p.add_argument("--tth", metavar="START:STOP:STEP", help="2theta grid in degrees, e.g. 0.5:84:0.0036")
    p.add_argument("--q", metavar="START:STOP:N", help="N Q points in 1/angstrom, e.g. 1:15:5004 (the default grid)")
    p.add_argument("--no-compton", action="store_true", help="leave out the incoherent (Compton) scattering")
    p.add_argument("--components", action="store_true", help="also write the crystal and Compton parts as columns 3 and 4")
    p.add_argument("--max-diameter", type=float, default=21.0,
                   help="largest cluster diameter in nm used for the distribution (default 21, as the reference series)")
    p.add_argument("--precision", choices=["fast", "double"], default="fast",
                   help="'fast' (float32 sine after float64 range reduction, error < 3e-7) or 'double' (default fast)")
    p.add_argument("-o", "--output", required=True, help="output text file (x, intensity) with a '#' header")
    p.add_argument("--plot", metavar="PNG", help="also save a plot of the pattern and its components")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args) -> int:
    import numpy as np

    from ..io import write_xy
    from ..sim.physics.grids import simulation_grid
    from ..sim.physics.materials import get_structure
    from ..sim.physics.population import population_weights, simulate_population

    q, tth = simulation_grid(args.tth, args.q, args.wavelength)
    wavelength = 0.56 if args.wavelength is None else args.wavelength
    structure = get_structure(args.material)
    pop = population_weights(structure, args.diameter, args.dispersion, args.strain, args.max_diameter)
    t0 = time.perf_counter()
    pattern = simulate_population(structure, args.diameter, q, args.dispersion, args.strain, wavelength,
                                  compton=not args.no_compton, precision=args.precision, progress=True,
                                  max_diameter_nm=args.max_diameter)
    elapsed = time.perf_counter() - t0
    x = tth if tth is not None else q
    header = {
        "program": f"qdots-bluesky {__version__} (qdots simulate)",
        "material": f"{structure.name} ({structure.source})",
        "mean_diameter_nm": args.diameter,
        "dispersion": args.dispersion,
        "strain": args.strain,
        "wavelength_a": wavelength,
        "x_unit": "2theta_deg" if tth is not None else "q_inv_angstrom",
        "grid": args.tth or args.q or "1:15:5004",
        "compton": not args.no_compton,
        "max_cluster_diameter_nm": args.max_diameter,
        "clusters_n": f"{int(pop.n.min())}..{int(pop.n.max())} ({pop.n.size} clusters)",
        "number_mean_diameter_of_clusters_nm": round(float(np.sum(pop.weights * pop.diameters_nm)), 4),
        "precision": args.precision,
        "intensity": "electron units per nanocrystal",
    }
    columns = "x intensity"
    y = pattern.total
    if args.components:
        y = np.column_stack([pattern.total, pattern.crystal, pattern.compton])
        columns = "x total crystal compton"
    write_xy(args.output, x, y, header, columns=columns)
    print(f"wrote {args.output}: {structure.name}, mean diameter {args.diameter} nm, dispersion {args.dispersion}, "
          f"strain {args.strain}, {x.size} points, clusters n={int(pop.n.min())}..{int(pop.n.max())}, {elapsed:.2f} s")
    if args.plot:
        from ..plotting import plot_simulated_pattern

        xlabel = "2theta (deg)" if tth is not None else "Q (1/A)"
        title = f"{structure.name}: D = {args.diameter} nm, dispersion {args.dispersion:.0%}, strain {args.strain:+.2%}"
        plot_simulated_pattern(args.plot, x, pattern.total, pattern.crystal, pattern.compton, xlabel, title)
        print(f"plot saved to {args.plot}")
    return 0


def _add_library(sub) -> None:
    p = sub.add_parser("library", help="build or inspect a training library of DSE patterns")
    lsub = p.add_subparsers(dest="library_command", required=True)
    b = lsub.add_parser("build", help="compute the grid of populations (default: the reference grid, 1292 patterns)",
                        description="Compute DSE patterns for every mean diameter x dispersion x lattice ratio and store "
                                    "patterns, crystal and Compton parts and all parameters in one HDF5 file.")
    b.add_argument("-o", "--output", default="library.h5", help="HDF5 file to write (default library.h5)")
    b.add_argument("--material", default="PbS", help="built-in material or CIF path (default PbS)")
    b.add_argument("--diameters", type=_float_list, default=None,
                   help="mean diameters in nm, START:STOP:STEP or a comma list (default 2:10:0.5, 17 values)")
    b.add_argument("--dispersions", type=_float_list, default=None,
                   help="relative standard deviations, comma list or range (default 0.05,0.10,0.15,0.20)")
    b.add_argument("--lattice-ratios", type=_float_list, default=None,
                   help="a/a_bulk values, comma list or range (default 19 values from 0.9975 to 1.0051)")
    b.add_argument("--wavelength", type=float, default=0.56, help="wavelength in angstrom (default 0.56)")
    b.add_argument("--tth", default="0.5:84:0.0036", metavar="START:STOP:STEP",
                   help="2theta grid in degrees (default 0.5:84:0.0036, the X04SA instrument)")
    b.add_argument("--no-tth", action="store_true", help="do not compute the 2theta grid")
    b.add_argument("--q", default="1:15:5004", metavar="START:STOP:N", help="Q grid in 1/angstrom (default 1:15:5004)")
    b.add_argument("--no-q", action="store_true", help="do not compute the Q grid")
    b.add_argument("--no-compton", action="store_true", help="leave out the incoherent (Compton) scattering")
    b.add_argument("--max-diameter", type=float, default=21.0, help="largest cluster diameter in nm (default 21)")
    b.set_defaults(func=_cmd_library_build)
    i = lsub.add_parser("info", help="summarise a library file")
    i.add_argument("path", help="library HDF5 file")
    i.set_defaults(func=_cmd_library_info)


def _cmd_library_build(args) -> int:
    from ..sim.physics.grids import parse_range, q_grid, tth_grid
    from ..sim.physics.library import LibrarySettings, build_library

    settings = LibrarySettings(material=args.material, wavelength_a=args.wavelength, compton=not args.no_compton,
                               max_diameter_nm=args.max_diameter)
    if args.diameters is not None:
        settings.mean_diameters_nm = args.diameters
    if args.dispersions is not None:
        settings.dispersions = args.dispersions
    if args.lattice_ratios is not None:
        settings.lattice_ratios = args.lattice_ratios
    if args.no_tth:
        settings.tth_grid_deg = None
    else:
        settings.tth_grid_deg = parse_range(args.tth, "--tth")
        tth_grid(*settings.tth_grid_deg)
    if args.no_q:
        settings.q_grid = None
    else:
        q0, q1, n = parse_range(args.q, "--q")
        q_grid(q0, q1, n)
        settings.q_grid = (q0, q1, int(n))
    n_patterns = len(settings.mean_diameters_nm) * len(settings.dispersions) * len(settings.lattice_ratios)
    print(f"building {n_patterns} patterns of {settings.material} -> {args.output}")
    t0 = time.perf_counter()
    build_library(settings, args.output, progress=True)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_library_info(args) -> int:
    import h5py
    import numpy as np

    from ..sim.physics.library import LIBRARY_FORMAT

    try:
        f = h5py.File(args.path, "r")
    except OSError as exc:
        raise ValueError(f"{args.path!r} is not a readable HDF5 library file: {exc}") from exc
    with f:
        if f.attrs.get("format") != LIBRARY_FORMAT:
            raise ValueError(f"{args.path!r} is not a qdots library (format {f.attrs.get('format')!r}, expected {LIBRARY_FORMAT!r})")
        par = f["parameters"]
        n = par["mean_diameter_nm"].shape[0]
        strain = par["strain"][()]
        print(f"{args.path}: {f.attrs['format']}, material {f.attrs['material']}, created {f.attrs['created']}, "
              f"program {f.attrs['program_version']}")
        print(f"  {n} patterns: mean diameters {sorted(set(np.round(par['mean_diameter_nm'][()], 3).tolist()))} nm")
        print(f"  dispersions {sorted(set(np.round(par['dispersion'][()], 3).tolist()))}, "
              f"strains {strain.min():+.4f}..{strain.max():+.4f}")
        for name in f["grids"]:
            q = f[f"grids/{name}/q"]
            print(f"  grid {name}: {q.shape[0]} points, Q {q[0]:.4f}..{q[-1]:.4f} 1/A")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="size quantum dots in pattern files with a trained model",
        description="Read powder patterns (columns x, intensity[, sigma]), standardize them onto the model's Q grid and "
                    "print the mean diameter (calibrated probability-weighted mean over the size classes) +- its "
                    "uncertainty, the most probable size class, the dispersion class, the confidence and warning "
                    "flags (out_of_distribution, low_confidence, truncated_q_range, padded, coarse_sampling, "
                    "size_at_range_edge). A file that cannot be read or standardized is reported on stderr as "
                    "'qdots predict: FILE: message' and the other files are still sized. Exit status: 0 all files "
                    "sized, 1 some file failed, 2 bad model or option.")
    p.add_argument("files", nargs="+", metavar="FILE", help="pattern files (.xy, .xye, .dat, .chi, .csv, any column text)")
    p.add_argument("--wavelength", type=float, default=None, metavar="A",
                   help="X-ray wavelength in angstrom for 2theta data (default: the file header's 'wavelength'/'lambda' "
                        "entry; one of the two is needed with --x-unit tth)")
    p.add_argument("--x-unit", choices=["tth", "q"], default="tth",
                   help="unit of the first column: 'tth' = 2theta in degrees (default) or 'q' = Q in 1/angstrom")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per file and line (file, size_nm, size_std_nm, size_volume_nm, "
                        "size_volume_std_nm, size_class_nm, size_regression_nm, dispersion, dispersion_std, strain, "
                        "strain_std, confidence, probabilities, dispersion_probabilities, ood_distance, flags, "
                        "flag_details, standardization; diameters in nm, strain as a fraction); a failed file gives "
                        "{\"file\", \"error\"}")
    p.add_argument("--plot", metavar="PNG",
                   help="save a figure of the standardized pattern shaded by the class activation map (the Q regions "
                        "that drove the size class) with the class probabilities; with several files one figure per "
                        "file, named PNG's stem + '_' + the file's stem")
    p.add_argument("--cam-layer", type=int, default=-1, metavar="N",
                   help="conv layer (0-4, or -1 for the last) whose Grad-CAM shades the --plot figure: -1 = the last "
                        "layer, the classic class activation map, 4 cells of ~3.4 1/A (default); 2 = 25 cells of "
                        "~0.56 1/A, finer")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="model bundle (.safetensors) written by `qdots train` (default: the shipped model, "
                        "qdots_bluesky/models/default_model.safetensors)")
    p.add_argument("--device", default="numpy",
                   help="where the network runs: 'numpy' (default: NumPy on the CPU without importing PyTorch, the "
                        "fastest start for a few files), 'auto' (PyTorch: cuda if available, else cpu), 'cpu', "
                        "'cuda', 'cuda:N' or 'mps' (PyTorch)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    import json

    import numpy as np

    from ..io import read_pattern
    from ..models.bundle import BundleError
    from ..predictor import Predictor, plot_prediction
    from ..standardize import standardize_pattern
    from ..units import check_wavelength

    def fail(msg: str) -> int:
        print(f"qdots predict: error: {msg}", file=sys.stderr)
        return 2

    if args.wavelength is not None:
        try:
            check_wavelength(args.wavelength)
        except ValueError as exc:
            return fail(f"--wavelength: {exc}")
    try:
        predictor = Predictor.from_bundle(args.model, device=args.device)
    except BundleError as exc:
        return fail(str(exc))
    except ValueError as exc:
        return fail(f"--device: {exc}")
    n_layers = len(predictor.contents.config["kernels"])
    if not -n_layers <= args.cam_layer < n_layers:
        return fail(f"--cam-layer {args.cam_layer}: the model has {n_layers} conv layers; accepted: "
                    f"0..{n_layers - 1} or -1..-{n_layers}")

    rows, reports, good, errors = [], [], [], {}
    for index, name in enumerate(args.files):
        try:
            pattern = read_pattern(name)
            wavelength, origin = args.wavelength, "--wavelength"
            if wavelength is None and args.x_unit == "tth":
                wavelength, origin = pattern.wavelength_from_header(), "the file header"
                if wavelength is None:
                    raise ValueError("2theta data need a wavelength: pass --wavelength A, put 'wavelength: 0.5646 A' "
                                     "in the file header, or use --x-unit q for Q data")
                try:
                    check_wavelength(wavelength)
                except ValueError as exc:
                    raise ValueError(f"{exc} (read from {origin})") from None
            row, report = standardize_pattern(pattern.x, pattern.y, x_unit=args.x_unit, wavelength=wavelength,
                                              grid=predictor.grid)
        except ValueError as exc:  # PatternFileError is a ValueError
            msg = str(exc)
            for prefix in (f"{name}: ", f"{Path(name)}: "):
                if msg.startswith(prefix):
                    msg = msg[len(prefix):]
                    break
            errors[index] = msg
            print(f"qdots predict: {name}: {msg}", file=sys.stderr)
            continue
        rows.append(row)
        reports.append(report)
        good.append(index)

    estimates, saved = {}, []
    if rows:
        X = np.stack(rows)
        for index, estimate in zip(good, predictor.predict_standardized(X, reports)):
            estimates[index] = estimate
        if args.plot:
            cams = predictor.class_activation_map(X, reports, layer=args.cam_layer)
            plot = Path(args.plot)
            plot = plot if plot.suffix else plot.with_suffix(".png")
            used: set[Path] = set()
            for row_i, index in enumerate(good):
                name = args.files[index]
                out = plot
                if len(args.files) > 1:
                    out = plot.with_name(f"{plot.stem}_{Path(name).stem}{plot.suffix}")
                    if out in used:
                        out = plot.with_name(f"{plot.stem}_{Path(name).stem}_{index}{plot.suffix}")
                used.add(out)
                try:
                    plot_prediction(out, predictor.grid.q, X[row_i], cams[row_i], estimates[index], title=str(name))
                except OSError as exc:
                    errors[index] = f"sized, but the plot {out} cannot be written ({exc})"
                    print(f"qdots predict: {name}: {errors[index]}", file=sys.stderr)
                    continue
                saved.append(f"{name}: plot saved to {out}")

    for index, name in enumerate(args.files):
        if index not in estimates:
            if args.json:
                print(json.dumps({"file": name, "error": errors[index]}))
            continue
        if args.json:
            print(json.dumps({"file": name, **estimates[index].to_dict()}))
        else:
            print(f"{name}: {estimates[index].summary()}")
    if not args.json:
        for line in saved:
            print(line)
    return 1 if errors else 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a sizing model on a library file",
                       description="Train the size/dispersion classifier on a DSE library with on-the-fly physics "
                                   "augmentation (solvents, noise, Q range, sampling, laboratory geometry), calibrate it "
                                   "and write a model bundle (safetensors + JSON provenance). The shipped model is "
                                   "retrained with: qdots train --library library_q.h5 --build-library "
                                   "-o qdots_bluesky/models/default_model.safetensors")
    p.add_argument("--library", required=True, help="library HDF5 file with the standard Q grid (qdots library build --no-tth)")
    p.add_argument("--build-library", action="store_true",
                   help="build the reference library (Q grid only, ~10 s) at --library first if the file does not exist")
    p.add_argument("-o", "--output", default="model.safetensors", help="bundle file to write (default model.safetensors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the augmentation and the initial weights (default 0)")
    from ..models.engine import INPUT_TRANSFORMS
    from ..sim.learning.settings import DEFAULT_STRAIN_JITTER, MAX_STRAIN_JITTER, PRECISIONS

    d = _training_defaults()
    p.add_argument("--epochs", type=int, default=d.max_epochs,
                   help=f"maximum number of epochs (default {d.max_epochs}; early stopping may end sooner)")
    p.add_argument("--samples-per-epoch", type=int, default=d.samples_per_epoch,
                   help=f"augmented patterns drawn per epoch (default {d.samples_per_epoch})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate,
                   help=f"peak learning rate of the one-cycle schedule (default {d.learning_rate:g})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="epochs without validation improvement before stopping, counted only in the last "
                        f"{(1 - d.early_stopping_from) * 100:.0f} %% of the epochs, once the learning rate anneals (default {d.patience})")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes,
                   help=f"stop after this many minutes even if epochs remain, the coarse specialist's included: the main "
                        "network stops early enough to leave the specialist its epochs at the speed measured so far "
                        f"(default {d.max_minutes:g}, a safety net: the README gives the default run's time; a run this "
                        "cap stops ends where the machine's speed lets it, so it does not reproduce bit for bit)")
    p.add_argument("--focal-gamma", type=float, default=d.focal_gamma,
                   help="focal loss exponent on the size and dispersion classes, weighting the patterns still "
                        f"misclassified (dilute, noisy, coarse) over easy ones; 0 = cross-entropy (default {d.focal_gamma:g})")
    p.add_argument("--input-transform", choices=INPUT_TRANSFORMS, default=d.input_transform,
                   help="transform of the standardized (mean 1) pattern before the first convolution: center (x - 1), "
                        "sqrt (2 sqrt(x) - 2: Poisson noise of equal size at every Q), log, none "
                        f"(default {d.input_transform})")
    p.add_argument("--filters", type=_per_convolution("filters", d.filters), default=d.filters, metavar="F1,F2,F3,F4,F5",
                   help="filters of the five convolutions: a wider network is more accurate on coarse and dilute data "
                        "and slower to train (default " + ",".join(map(str, d.filters)) + "; the reference network has 32)")
    p.add_argument("--kernels", type=_per_convolution("kernels", d.kernels), default=d.kernels, metavar="K1,K2,K3,K4,K5",
                   help="kernel = stride of the five convolutions, in grid points; their product is the span of one "
                        "last-layer position (default " + ",".join(map(str, d.kernels)) + ": a first window of 0.056 1/A, "
                        "about the peak width of 10 nm dots, and epochs ~30 %% faster than the reference's 10,5,4,3,2)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="arithmetic of the network's matrix products in training: bf16 (bfloat16 autocast, weights "
                        "stay float32; 2.5x faster on CPUs with AVX512-BF16/AMX), fp32, or auto: bf16 where the CPU "
                        f"has it natively (default {d.precision})")
    p.add_argument("--coarse-epochs", type=_non_negative_int, default=d.coarse_epochs, metavar="N",
                   help="epochs of fine-tuning a copy of the trained network into the coarse-sampling specialist, "
                        "which sizes patterns measured with a Q step of at least "
                        f"{d.coarse_min_q_step:g} 1/A (fewer than ~380 points over 1-15 1/A; peaks of the largest dots "
                        "then span one or two points); 0: no specialist, every pattern goes to the main network "
                        f"(default {d.coarse_epochs})")
    p.add_argument("--solvent-blank", action="append", default=[], metavar="FILE[:tth|q[:WAVELENGTH]]",
                   help="a measured solvent blank to mix in besides the built-in hexane and toluene models; repeatable")
    p.add_argument("--strain-jitter", type=_strain_jitter, default=DEFAULT_STRAIN_JITTER, metavar="FRACTION",
                   help="every epoch each training pattern's lattice parameter is changed by a fraction drawn "
                        f"uniformly within +-FRACTION (0 to {MAX_STRAIN_JITTER:g}), so that the network sizes dots whose lattice "
                        "parameter lies beyond the library's -0.25..+0.51 %% (heat, strain, a wavelength a little "
                        f"off); 0: the library's lattice parameters only (default {DEFAULT_STRAIN_JITTER:g}). Used with "
                        "--library-populations-only: continuous populations (the default) draw their own lattice "
                        "parameter within +-1 %%")
    p.add_argument("--library-populations-only", action="store_true",
                   help="train on the library's grid populations (17 sizes x 4 dispersions x 19 lattice parameters) "
                        "and their classes only, as models before the continuous head; default: every epoch "
                        f"{d.populations_per_epoch} fresh populations with continuous mean diameter, dispersion, strain, "
                        "microstrain and instrument width made from the per-cluster patterns, and a continuous head "
                        "that reports number- and volume-weighted sizes, dispersion and strain with uncertainties")
    p.add_argument("--cross-validation", type=int, default=0, metavar="K",
                   help="also run K-fold cross-validation by simulation and report mean and spread of the test accuracy")
    p.set_defaults(func=_cmd_train)


def _training_defaults():
    from ..sim.learning.settings import TrainingSettings

    return TrainingSettings()


def _per_convolution(name: str, default: list[int]):
    """An argparse type for five comma-separated positive integers (``--filters``, ``--kernels``); errors quote
    ``default`` as the example."""
    def parse(text: str) -> list[int]:
        from ..sim.learning.settings import check_per_convolution

        try:
            return check_per_convolution(name, [int(v) for v in text.split(",")])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: accepted: five positive integers separated by commas, "
                                             "e.g. " + ",".join(map(str, default))) from None

    return parse


def _strain_jitter(text: str) -> float:
    from ..sim.learning.settings import MAX_STRAIN_JITTER

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= MAX_STRAIN_JITTER:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: a fraction from 0 to {MAX_STRAIN_JITTER:g} (0.01 = +-1 %)")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: an integer >= 0")
    return value


def _parse_blank(text: str) -> tuple[str, str, float | None]:
    parts = text.split(":")
    path = parts[0]
    unit = parts[1] if len(parts) > 1 and parts[1] else "tth"
    wavelength = float(parts[2]) if len(parts) > 2 and parts[2] else None
    if unit not in ("tth", "q"):
        raise ValueError(f"solvent blank {text!r}: the x unit must be tth or q")
    return path, unit, wavelength


def _cmd_train(args) -> int:
    from ..sim.learning.augment import AugmentationSettings
    from ..sim.learning.train import TrainingSettings, cross_validate, train_model

    library = Path(args.library)
    if not library.exists():
        if not args.build_library:
            raise ValueError(f"library {library} does not exist; build it with `qdots library build --no-tth -o {library}` "
                             "or add --build-library")
        from ..sim.physics.library import LibrarySettings, build_library

        print(f"building the reference library (1292 patterns, Q grid) at {library}")
        build_library(LibrarySettings(tth_grid_deg=None), library, progress=True)
    settings = TrainingSettings(seed=args.seed, max_epochs=args.epochs, samples_per_epoch=args.samples_per_epoch,
                                batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
                                max_minutes=args.max_minutes, precision=args.precision,
                                input_transform=args.input_transform, focal_gamma=args.focal_gamma,
                                filters=args.filters, kernels=args.kernels, coarse_epochs=args.coarse_epochs,
                                continuous=not args.library_populations_only)
    augmentation = AugmentationSettings(strain_jitter=args.strain_jitter)
    if args.solvent_blank:
        augmentation.solvent_blanks = [_parse_blank(b) for b in args.solvent_blank]
    result = train_model(library, args.output, settings, augmentation, progress=True)
    m = result.metrics
    print(f"wrote {result.bundle_path} ({result.bundle_path.stat().st_size / 1e3:.0f} kB) after {m['epochs_run']} epochs "
          f"({m['training_minutes']:.1f} min, {m['stopped_by']})")
    print(f"held-out test ({m['test_patterns']} patterns of {m['test_simulations']} simulations x 32 reference conditions): "
          f"size accuracy {m['test_size_accuracy']:.2%}, within one class {m['test_size_within_one_class']:.2%}, "
          f"dispersion accuracy {m['test_dispersion_accuracy']:.2%}, MAE {m['test_size_mae_nm']:.3f} nm, "
          f"ECE {m['test_ece_size']:.3f} (uncalibrated {m['test_ece_size_uncalibrated']:.3f})")
    if "coarse_specialist" in m:
        c = m["coarse_specialist"]
        print(f"coarse-sampling specialist ({c['epochs_run']} epochs, {c['minutes']:.1f} min; sizes source Q steps >= "
              f"{settings.coarse_min_q_step:g} 1/A): size accuracy at {c['test_points']} points over 1-15 1/A "
              f"{c['test_size_accuracy']:.2%} (main network {c['main_network_test_size_accuracy']:.2%})")
    if "test_blank_detected" in m:
        print(f"presence head: blank test patterns (pure solvent, empty) flagged no_nanocrystals {m['test_blank_detected']:.1%}, "
              f"reference patterns with nanocrystals wrongly flagged {m['test_nanocrystals_missed']:.2%}")
    if args.cross_validation:
        cv = cross_validate(library, args.cross_validation, settings, augmentation, progress=True)
        print(f"{args.cross_validation}-fold cross-validation: size accuracy {cv['mean']:.2%} +- {cv['std']:.2%} "
              f"(folds: {', '.join(f'{a:.2%}' for a in cv['folds'])})")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="write an evaluation report of a model on its held-out simulations",
                       description="Confusion matrices, error per size and concentration, robustness curves (Qmax, "
                                   "Qmin, Q step, concentration, SNR, lattice parameter, laboratory data), calibration and "
                                   "learning curves, as PNG figures and report.json.")
    p.add_argument("--model", default=None, help="model bundle (default: the shipped model)")
    p.add_argument("--library", required=True, help="the library file the model was trained on")
    p.add_argument("-o", "--output", default="evaluation", help="report directory (default ./evaluation)")
    p.add_argument("--seed", type=int, default=123, help="seed of the test augmentations (default 123)")
    p.add_argument("--repeats", type=int, default=4,
                   help="draws of each held-out simulation per solvent for every point of the robustness curves, "
                        "the reference fractions and SNRs taken in turn (default 4: 2176 patterns per point with the "
                        "reference library, a standard error of about 0.65 %% at 90 %%; report.json gives it per point)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from ..models.bundle import default_bundle_path
    from ..sim.learning.evaluation import evaluate_model

    model = args.model or default_bundle_path()
    report = evaluate_model(model, args.library, args.output, seed=args.seed, progress=True,
                            robustness_repeats=args.repeats)
    ref = report["reference"]
    print(f"reference conditions ({ref['patterns']} patterns): size accuracy {ref['size_accuracy']:.2%}, within one class "
          f"{ref['size_within_one_class']:.2%}, dispersion {ref['dispersion_accuracy']:.2%}, ECE {ref['ece_size']:.3f}")
    print(f"robustness curves ({report['robustness_patterns_per_point']} patterns per point):")
    for key, curve in report["robustness"].items():
        print(f"  {key:>16}: " + ", ".join(f"{k}: {v:.1%}" for k, v in curve.items()))
    for key, values in report.get("nanocrystal_detection", {}).items():
        print(f"  no_nanocrystals flag, {key.replace('_', ' ')}: " + ", ".join(f"{k}: {v:.1%}" for k, v in values.items()))
    if "coarse_specialist" in report:
        c = report["coarse_specialist"]
        print(f"the coarse-sampling specialist sized the patterns with a Q step >= {c['min_source_q_step']:g} 1/A (points: "
              f"{', '.join(map(str, c['n_points_routed'])) or 'none'}); n_points_main_network: the main network alone")
    print(f"figures and report.json in {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdots", description="Quantum-dot sizing from wide-angle X-ray scattering: "
                                     "DSE simulation, training and live sizing in Bluesky.")
    parser.add_argument("--version", action="version", version=f"qdots-bluesky {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_simulate(sub)
    _add_library(sub)
    _add_predict(sub)
    _add_train(sub)
    _add_evaluate(sub)
    from .bluesky_commands import add_demo, add_replay, add_serve

    add_demo(sub)
    add_replay(sub)
    add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"qdots {args.command}: error: {exc}", file=sys.stderr)
        return 2
