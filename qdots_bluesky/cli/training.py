"""``qdots train`` and ``qdots evaluate``: the learning pipeline (needs the [train] extra: PyTorch)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import non_negative_int
from ..units import XUnit


def add_train(sub) -> None:
    """Add ``train``: a model bundle from a library file."""
    p = sub.add_parser("train", help="train a sizing model on a library file (or a shape + size model of metal clusters)",
                       description="Train the size/dispersion classifier on a DSE library with on-the-fly physics "
                                   "augmentation (solvents, noise, Q range, sampling, laboratory geometry), calibrate it "
                                   "and write a model bundle (safetensors + JSON provenance). The shipped model is "
                                   "retrained with: qdots train --library library_q.h5 --build-library "
                                   "-o qdots_bluesky/models/default_model.safetensors. With --task metal-shape-size "
                                   "(or a task file) it trains a SAXS + WAXS shape + size model of metal nanoclusters "
                                   "instead (no library: per-cluster DSE bases built and cached on the way; the options "
                                   "that name the library's network do not apply; --epochs, --samples-per-epoch, "
                                   "--batch-size, --learning-rate, --max-minutes and --seed do)")
    p.add_argument("--task", default="pbs-size", metavar="PRESET|FILE",
                   help="what the model answers: pbs-size (quantum-dot sizes from WAXS, the default), metal-shape-size "
                        "(cluster family and size of an fcc metal from SAXS + WAXS), or a JSON task file (e.g. the "
                        "metal-shape-size task with another material or Q range; see qdots_bluesky.models.task)")
    p.add_argument("--library", default=None,
                   help="library HDF5 file with the standard Q grid (qdots library build --no-tth); required for pbs-size")
    p.add_argument("--build-library", action="store_true",
                   help="build the reference library (Q grid only) at --library first if the file does not exist")
    p.add_argument("-o", "--output", default="model.safetensors", help="bundle file to write (default model.safetensors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the augmentation and the initial weights (default 0)")
    from ..models.engine import INPUT_TRANSFORMS
    from ..sim.learning.settings import DEFAULT_STRAIN_JITTER, MAX_STRAIN_JITTER, PRECISIONS

    d = _training_defaults()
    p.add_argument("--epochs", type=int, default=None,
                   help=f"maximum number of epochs (default {d.max_epochs}; early stopping may end sooner; "
                        "metal-shape-size: its own default, 400, the time limit ends it sooner)")
    p.add_argument("--samples-per-epoch", type=int, default=None,
                   help=f"augmented patterns drawn per epoch (default {d.samples_per_epoch}; metal-shape-size: "
                        "8192 fresh populations)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"batch size (default {d.batch_size}; metal-shape-size: 256)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"peak learning rate of the one-cycle schedule (default {d.learning_rate:g}; metal-shape-size: "
                        "0.002, cosine)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="epochs without validation improvement before stopping, counted only in the last "
                        f"{(1 - d.early_stopping_from) * 100:.0f} %% of the epochs, once the learning rate anneals (default {d.patience})")
    p.add_argument("--max-minutes", type=float, default=None,
                   help=f"stop after this many minutes even if epochs remain, the coarse specialist's included: the main "
                        "network stops early enough to leave the specialist its epochs at the speed measured so far "
                        f"(default {d.max_minutes:g}, a safety net: the README gives the default run's time; a run this "
                        "cap stops ends where the machine's speed lets it, so it does not reproduce bit for bit; "
                        "metal-shape-size: 45, the time its training takes)")
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
                        "about the peak width of 10 nm dots; the reference network has 10,5,4,3,2)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="arithmetic of the network's matrix products in training: bf16 (bfloat16 autocast, weights "
                        "stay float32; faster on CPUs with AVX512-BF16/AMX), fp32, or auto: bf16 where the CPU "
                        f"has it natively (default {d.precision})")
    p.add_argument("--coarse-epochs", type=non_negative_int, default=d.coarse_epochs, metavar="N",
                   help="epochs of fine-tuning a copy of the trained network into the coarse-sampling specialist, "
                        "which sizes patterns measured with a Q step of at least "
                        f"{d.coarse_min_q_step:g} 1/A (peaks of the largest dots "
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
    p.add_argument("--faceted-share", type=_share, default=d.faceted_share, metavar="F",
                   help="share (0-1) of the continuous training populations made of faceted clusters (octahedra, "
                        "truncated octahedra, cuboctahedra, rhombic dodecahedra of the same equal-volume diameters, "
                        "drawn uniformly) instead of the near-spherical series; their bases are built once (~10 s "
                        f"each) (default {d.faceted_share:g}: spheres only)")
    p.add_argument("--known-instrument-share", type=_share, default=None, metavar="F",
                   help="share (0-1) of the continuous training populations whose synchrotron instrument resolution "
                        "(Gaussian and Lorentzian FWHM in Q, zero where they carry none) the network is told, as a "
                        "second input; the rest, and every laboratory sample, are sized as of an unknown instrument. "
                        "Gives `qdots predict --instrument-fwhm` and LiveSizer(instrument_fwhm_q=) a model to use; 0: "
                        f"no instrument input (default {d.known_instrument_share:g}; 0 with --library-populations-only, "
                        "whose populations carry no instrument profile)")
    p.add_argument("--solvent-probe", action="store_true",
                   help="widen the size uncertainties by how far the size moves when 30 %% of a built-in solvent model "
                        "is mixed into the pattern, and calibrate them with that (README, *Measured patterns*: it "
                        "covers solvent-subtracted colloids better but widens laboratory films' uncertainties beyond "
                        "their errors; off in the shipped model); continuous populations only")
    p.add_argument("--cross-validation", type=int, default=0, metavar="K",
                   help="also run K-fold cross-validation by simulation and report mean and spread of the test accuracy")
    p.set_defaults(func=cmd_train)


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


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: a share from 0 to 1, e.g. 0.5")
    return value


def _strain_jitter(text: str) -> float:
    from ..sim.learning.settings import MAX_STRAIN_JITTER

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= MAX_STRAIN_JITTER:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: a fraction from 0 to {MAX_STRAIN_JITTER:g} (0.01 = +-1 %)")
    return value


def _parse_blank(text: str) -> tuple[str, str, float | None]:
    parts = text.split(":")
    path = parts[0]
    unit = parts[1] if len(parts) > 1 and parts[1] else "tth"
    wavelength = float(parts[2]) if len(parts) > 2 and parts[2] else None
    if unit not in XUnit.choices():
        raise ValueError(f"solvent blank {text!r}: the x unit {unit!r} is not known; accepted: {XUnit.accepted()}")
    return path, unit, wavelength


def cmd_train(args) -> int:
    from ..io import check_output_path
    from ..models.task import load_task

    check_output_path(args.output, "-o/--output")
    task = load_task(args.task)
    if not task.is_pbs_preset:
        return _train_task(args, task)
    if args.library is None:
        raise ValueError("--library is required for the pbs-size task; accepted: --library FILE (with --build-library "
                         "to build it)")
    return _train_pbs(args)


def _train_task(args, task) -> int:
    """A SAXS + WAXS shape + size model of the task's material (sim.learning.cluster_training)."""
    from ..sim.learning.cluster_bundle import save_cluster_bundle, task_training_settings
    from ..sim.learning.cluster_training import train_cluster_model

    given = {name: getattr(args, option) for name, option in (  # None: the task's own default
        ("epochs", "epochs"), ("populations_per_epoch", "samples_per_epoch"), ("batch_size", "batch_size"),
        ("lr", "learning_rate"), ("max_minutes", "max_minutes"))}
    settings = task_training_settings(task, seed=args.seed, **given)
    trained = train_cluster_model(settings, progress=True)
    path = save_cluster_bundle(args.output, trained, task)
    m = trained.metrics
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB) after {m['epochs']} epochs "
          f"({m['train_seconds'] / 60:.1f} min of training, {m['total_seconds'] / 60:.1f} min in all)")
    for name, c in m["conditions"].items():
        print(f"  held-out {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in c.items() if isinstance(v, (int, float))))
    return 0


#: TrainingSettings fields and the options that set them (their errors are reported in the options' words).
_SETTING_OPTIONS = {"max_epochs": "--epochs", "samples_per_epoch": "--samples-per-epoch", "batch_size": "--batch-size",
                    "learning_rate": "--learning-rate", "coarse_epochs": "--coarse-epochs",
                    "faceted_share": "--faceted-share", "known_instrument_share": "--known-instrument-share"}


def _train_pbs(args) -> int:
    from ..sim.learning.augment import AugmentationSettings
    from ..sim.learning.train import TrainingSettings, cross_validate, train_model

    d = _training_defaults()  # options not given take the pbs-size defaults
    for option, default in (("epochs", d.max_epochs), ("samples_per_epoch", d.samples_per_epoch),
                            ("batch_size", d.batch_size), ("learning_rate", d.learning_rate),
                            ("max_minutes", d.max_minutes)):
        if getattr(args, option) is None:
            setattr(args, option, default)
    try:  # the options checked before any library is built
        settings = TrainingSettings(seed=args.seed, max_epochs=args.epochs, samples_per_epoch=args.samples_per_epoch,
                                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                                    patience=args.patience, max_minutes=args.max_minutes, precision=args.precision,
                                    input_transform=args.input_transform, focal_gamma=args.focal_gamma,
                                    filters=args.filters, kernels=args.kernels, coarse_epochs=args.coarse_epochs,
                                    continuous=not args.library_populations_only, faceted_share=args.faceted_share,
                                    known_instrument_share=_known_instrument_share(args, d),
                                    solvent_probe=args.solvent_probe)
    except ValueError as exc:  # in the words of the command line
        message = str(exc)
        for field, option in _SETTING_OPTIONS.items():
            message = message.replace(f"{field}=", f"{option} ")
        raise ValueError(message) from None
    library = Path(args.library)
    if not library.exists():
        if not args.build_library:
            raise ValueError(f"library {library} does not exist; build it with `qdots library build --no-tth -o {library}` "
                             "or add --build-library")
        from ..sim.physics.library import LibrarySettings, build_library

        print(f"building the reference library (1292 patterns, Q grid) at {library}")
        build_library(LibrarySettings(tth_grid_deg=None), library, progress=True)
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
    if "known_instrument" in m:
        k = m["known_instrument"]
        print(f"the same patterns with the instrument known (none): size accuracy {k['test_size_accuracy']:.2%}, "
              f"dispersion accuracy {k['test_dispersion_accuracy']:.2%}, continuous size MAE "
              f"{k['test_continuous']['size_mae_nm']:.3f} nm, within 1 / 2 sigma {k['test_continuous']['size_coverage_68']:.1%}"
              f" / {k['test_continuous']['size_coverage_95']:.1%}")
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


def _known_instrument_share(args, defaults) -> float:
    """--known-instrument-share, its default by the kind of training; a share with the library's populations is an
    error (they carry no instrument profile to tell)."""
    share = args.known_instrument_share
    if args.library_populations_only:
        if share:
            raise ValueError(f"--known-instrument-share {share:g} needs continuous populations (their instrument "
                             "profiles are what the network is told); accepted: 0, or without --library-populations-only")
        return 0.0
    return defaults.known_instrument_share if share is None else share


def add_evaluate(sub) -> None:
    """Add ``evaluate``: figures and report.json of a model on its held-out simulations."""
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
                        "reference library; report.json gives the standard error of every point)")
    p.add_argument("--instrument-fwhm", type=float, nargs=2, default=None, metavar=("GAUSS", "LORENTZ"),
                   help="tell a model trained with an instrument input this resolution (Gaussian, Lorentzian FWHM in "
                        "1/A; 0 0: the held-out DSE simulations' own, none); the laboratory curve is sized as of an "
                        "unknown instrument (default: unknown everywhere)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from ..models.bundle import default_bundle_path
    from ..sim.learning.evaluation import evaluate_model

    model = args.model or default_bundle_path()
    from ..models.bundle import read_bundle

    task = read_bundle(model).task
    if not task.is_pbs_preset:
        raise ValueError(f"the model's task is {task.name!r}; qdots evaluate scores quantum-dot sizers on their library. "
                         "The evaluation report of a SAXS + WAXS shape + size model (held-out clusters, confusion "
                         "matrices, robustness curves, DebyeCalculator patterns): python benchmarks/bench_cluster_model.py "
                         f"{model}")
    report = evaluate_model(model, args.library, args.output, seed=args.seed, progress=True,
                            robustness_repeats=args.repeats, instrument_fwhm_q=args.instrument_fwhm)
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
