"""Training the size classifier from a library file, with on-the-fly physics augmentation.

Steps, each a function below or in the modules named: split the library by DSE simulation (before augmentation) and
make its targets (:func:`prepare_library`); the training and validation sources (:func:`make_sources`,
``sources.py``: fresh continuous populations, or the library's training patterns with new lattice parameters every
epoch); fit the network on batches augmented on a worker thread (``fitting.py``: size classes, dispersion classes,
size regression and the continuous head on patterns with nanocrystals, the presence head on all, blanks included;
focal loss, one-cycle rate, best epoch kept); calibrate it on validation (``calibrate.py``: temperatures, interval
factors, out-of-distribution statistics); measure the held-out test set on the reference conditions; then
(``coarse_epochs`` > 0) fine-tune a copy on patterns resampled to Q steps about one peak width of the largest dots
and calibrate it the same way, the coarse-sampling specialist (:func:`train_coarse_specialist`); write the model
bundle with its provenance (:func:`save_trained_bundle`).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ... import __version__
from ...models.bundle import T_CONTINUOUS_INTERVAL
from ...models.engine import instrument_condition
from ...standardize import QGrid
from ..physics.cluster_basis import ClusterBasis, PopulationRanges, build_cluster_basis, population_targets
from ..physics.library import Library, LibrarySettings, library_content_sha256, load_library
from ..physics.solvents import solvent_pattern
from .augment import AugmentationSettings, Augmenter
from .calibrate import Calibration, blank_metrics, calibrate, continuous_metrics, reference_metrics
from .fitting import TrainingLoss, fit, network_outputs, resolve_precision
from .settings import TrainingSettings  # noqa: F401  (re-exported)
from .sources import (
    FixedLibrarySource,
    LibrarySource,
    PopulationSource,
    Source,
    draw_set,
    instrument_fwhm_max_q,
    reference_test_set,
    row_targets,
)
from .splits import Split, kfold_by_simulation, split_by_simulation

if TYPE_CHECKING:  # pragma: no cover
    from ...models.bundle import CoarseSpecialist
    from ...models.network import QDotsNet

#: Fewest continuous validation populations (the interval factors are quantiles over them).
MIN_CONTINUOUS_VALIDATION = 256

#: Points over Q 1-15 1/A of the coarse-sampling specialist's test in the training metrics (the evaluation's coarsest).
COARSE_TEST_POINTS = 251


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (macOS, Windows)
        return os.cpu_count() or 1


def training_noise_threads(n_threads: int, torch_threads: int, cores: int) -> int:
    """Noise threads of the augmentation in a training run (``AugmentationSettings.n_threads``, 1 = drawn inline): at
    most what the ``cores`` leave beside torch's ``torch_threads`` (0: torch takes them all) and the batch worker
    itself. On 2 cores with torch on one, 1: a pool of two beside the worker and the network (four threads on two
    cores) made an epoch 20-25 % slower. The noise of a row does not depend on it. (The run's validation,
    calibration and test sets are drawn with the same augmenter: on 2 cores inline as well, seconds in all.)"""
    free = cores - (torch_threads or cores) - 1  # beside the network and the batch worker itself
    return max(1, min(int(n_threads), free if free >= 2 else 1))


def training_augmenter(lib: Library, augmentation: AugmentationSettings, settings: TrainingSettings) -> Augmenter:
    """The augmenter of a training run: ``augmentation`` with the noise threads of :func:`training_noise_threads`
    (the bundle records ``augmentation`` as given: the threads change the speed, not the patterns)."""
    threads = training_noise_threads(augmentation.n_threads, settings.torch_threads, available_cores())
    return Augmenter.from_library(lib, dataclasses.replace(augmentation, n_threads=threads))


def coarse_augmentation(augmentation: AugmentationSettings, settings: TrainingSettings) -> AugmentationSettings:
    """The coarse specialist's augmentation: ``augmentation`` with every pattern synchrotron and resampled to
    ``settings.coarse_points`` points over its measured range, Q_max truncated in ``coarse_truncate_high_fraction``."""
    return dataclasses.replace(augmentation, coarsen_fraction=1.0, n_points_choices=list(settings.coarse_points),
                               lab_fraction=0.0, truncate_high_fraction=settings.coarse_truncate_high_fraction)


@dataclass
class TrainingResult:
    """The written bundle, the metrics stored in it and the main network's history (one record per epoch)."""

    bundle_path: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)


@dataclass
class PreparedLibrary:
    """A library ready for training: its patterns on the standard Q grid, the size classes (nm) and dispersion
    classes it holds, the split by simulation, the targets of its patterns and (continuous training) the
    per-cluster basis of its material."""

    path: str | Path  # as the caller gave it (the bundle's provenance records it so)
    lib: Library
    grid: QGrid
    size_classes: np.ndarray
    dispersion_classes: np.ndarray
    split: Split
    targets: dict[str, np.ndarray]
    basis: ClusterBasis | None
    faceted: dict[str, ClusterBasis] = field(default_factory=dict)  # habit -> basis (settings.faceted_share > 0)


def _library_settings(lib: Library) -> LibrarySettings:
    """The LibrarySettings a library file was built with (its stored JSON; unknown keys ignored)."""
    known = {f.name for f in dataclasses.fields(LibrarySettings)}
    return LibrarySettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in (lib.settings or {}).items()
                              if k in known})


def prepare_library(library_path: str | Path, settings: TrainingSettings,
                    split: Split | None = None) -> PreparedLibrary:
    """Load the library on the standard Q grid, take its classes, split it by simulation (seeded, unless ``split`` is
    given) and make its targets. Raises ValueError for another Q grid or a library too small to split."""
    lib = load_library(library_path, grid="q")
    grid = QGrid()
    if lib.q.size != grid.n_points or not np.allclose(lib.q, grid.q):
        raise ValueError(f"library {library_path} has a Q grid of {lib.q.size} points {lib.q[0]:.3f}..{lib.q[-1]:.3f}; "
                         f"training needs the standard grid {grid.q_min}..{grid.q_max} 1/A with {grid.n_points} points")
    size_classes = np.unique(np.round(lib.mean_diameter_nm, 6))
    dispersion_classes = np.unique(np.round(lib.dispersion, 6))
    if split is None:
        split = split_by_simulation(lib.population, settings.seed, settings.test_fraction, settings.validation_fraction)
    if min(split.train.size, split.validation.size, split.test.size) == 0:
        raise ValueError(f"library {library_path} is too small to split by simulation ({split.train.size} train, "
                         f"{split.validation.size} validation, {split.test.size} test simulations); each population "
                         "needs at least 3 simulations (e.g. 3 or more lattice ratios)")
    basis = build_cluster_basis(_library_settings(lib), lib.q) if settings.continuous else None
    faceted = ({h: build_cluster_basis(_library_settings(lib), lib.q, habit=h) for h in settings.faceted_habits}
               if basis is not None and settings.faceted_share > 0 else {})
    if basis is not None:
        volume = population_targets(basis.n, basis.unit_nm, lib.mean_diameter_nm, lib.dispersion,
                                    lib.strain)["volume_diameter_nm"]
    else:
        volume = lib.mean_diameter_nm
    targets = row_targets(lib.mean_diameter_nm, volume, lib.dispersion, lib.strain, size_classes, dispersion_classes)
    return PreparedLibrary(library_path, lib, grid, size_classes, dispersion_classes, split, targets, basis, faceted)


def make_sources(data: PreparedLibrary, augmenter: Augmenter, settings: TrainingSettings) -> tuple[Source, Source]:
    """(training source, validation source) for an augmenter: fresh continuous populations (``data.basis``), or the
    library's training simulations with new lattice parameters and its validation simulations."""
    if data.basis is not None:
        src = PopulationSource(augmenter, data.basis, PopulationRanges.from_dict(settings.population_ranges),
                               settings.populations_per_epoch, data.size_classes, data.dispersion_classes,
                               data.faceted, settings.faceted_share, settings.known_instrument_share)
        n_val = max(settings.validation_repeats * data.split.validation.size, MIN_CONTINUOUS_VALIDATION)
        val_src = PopulationSource(augmenter, data.basis, src.ranges, n_val, data.size_classes, data.dispersion_classes,
                                   data.faceted, settings.faceted_share, settings.known_instrument_share)
        return src, val_src
    return (LibrarySource(augmenter, data.split.train, data.targets),
            FixedLibrarySource(augmenter, data.split.validation, data.targets))


def probe_patterns(data: PreparedLibrary, augmentation: AugmentationSettings,
                   settings: TrainingSettings) -> np.ndarray | None:
    """The solvent probe's patterns (:mod:`~qdots_bluesky.models.solvent_probe`): the augmentation's built-in solvents
    on the library grid at its wavelength, each mean 1, for a network with a continuous head where
    ``settings.solvent_probe``; else None (also without solvents)."""
    if not (settings.solvent_probe and data.basis is not None and augmentation.solvents):
        return None
    wavelength = float((data.lib.settings or {}).get("wavelength_a", 0.56))
    rows = [solvent_pattern(name, data.lib.q, wavelength_a=wavelength) for name in augmentation.solvents]
    return np.stack([r / r.mean() for r in rows]).astype(np.float32)


def _validation_repeats(data: PreparedLibrary, settings: TrainingSettings) -> int:
    """Draws per validation item: one per population (their number is set instead), else ``validation_repeats``."""
    return 1 if data.basis is not None else settings.validation_repeats


def train_coarse_specialist(model: "QDotsNet", data: PreparedLibrary, augmenter: Augmenter,
                            augmentation: AugmentationSettings, settings: TrainingSettings, loss: TrainingLoss,
                            fit_options: dict, probes: np.ndarray | None = None) -> tuple["CoarseSpecialist", dict]:
    """Fine-tune a copy of ``model`` on coarsely sampled patterns (:func:`coarse_augmentation`), calibrate it (with
    the solvent ``probes`` of :func:`probe_patterns`, as the main network), and measure it and ``model`` on the
    reference conditions at :data:`COARSE_TEST_POINTS` points (``augmenter``: the main augmentation). Returns the
    specialist for the bundle and its metrics."""
    from ...models.bundle import CoarseSpecialist

    t_coarse = time.perf_counter()
    coarse_aug = coarse_augmentation(augmentation, settings)
    augmenter_c = training_augmenter(data.lib, coarse_aug, settings)
    source_c, val_source_c = make_sources(data, augmenter_c, settings)
    validation_c = draw_set(val_source_c, settings.seed + 11, _validation_repeats(data, settings))
    specialist = copy.deepcopy(model)
    outcome = fit(specialist, loss, source_c, validation_c, settings, epochs=settings.coarse_epochs,
                  learning_rate=settings.coarse_learning_rate, batch_seed=lambda epoch: [settings.seed, 1, epoch],
                  desc="coarse specialist", **fit_options)
    cal = calibrate(specialist, source_c, validation_c, settings, settings.seed + 12, data.split.train, probes)
    # both networks on the reference conditions resampled to the coarsest point count of the evaluation
    x_c, idx_c, _ = reference_test_set(augmenter, data.split.test, settings.seed + 14, n_points=COARSE_TEST_POINTS)
    y_size = data.targets["size_class"]

    def accuracy(net: "QDotsNet") -> float:
        return float(np.mean(network_outputs(net, x_c)["size_logits"].argmax(1).numpy() == y_size[idx_c]))

    metrics = {"test_points": COARSE_TEST_POINTS, "test_patterns": int(idx_c.size),
               "test_size_accuracy": accuracy(specialist), "main_network_test_size_accuracy": accuracy(model),
               "temperature_size": float(cal.temperature_size),
               "temperature_dispersion": float(cal.temperature_dispersion),
               "ood_threshold": cal.ood_threshold, "best_epoch": int(outcome.best_epoch),
               "epochs_run": len(outcome.history), "stopped_by": outcome.stopped_by,
               "minutes": (time.perf_counter() - t_coarse) / 60}
    if specialist.config["continuous_head"]:
        metrics["test_continuous"] = continuous_metrics(specialist, cal, x_c, data.lib.mean_diameter_nm[idx_c],
                                                        data.size_classes)
    info = {"augmentation": coarse_aug.to_dict(), "training": settings.to_dict(), "metrics": metrics,
            "history": outcome.history}
    return CoarseSpecialist(specialist, cal.tensors, settings.coarse_min_q_step, info), metrics


def save_trained_bundle(output: str | Path, model: "QDotsNet", calibration: Calibration, data: PreparedLibrary,
                        augmentation: AugmentationSettings, settings: TrainingSettings, metrics: dict,
                        history: list[dict], coarse: "CoarseSpecialist | None") -> Path:
    """Write the bundle with its provenance: Q grid, classes, augmentation and training settings, the library (path,
    file and content SHA-256, settings), the split, the metrics and the history."""
    from ...models.bundle import file_sha256, save_bundle

    lib = data.lib
    metadata = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "program_version": __version__,
        "q_grid": data.grid.to_dict(),
        "size_classes_nm": data.size_classes.tolist(),
        "dispersion_classes": data.dispersion_classes.tolist(),
        "augmentation": augmentation.to_dict(),
        "training": settings.to_dict(),
        "training_library": {"path": str(data.path), "sha256": file_sha256(data.path),
                             "content_sha256": library_content_sha256(data.path),
                             "settings": lib.settings, "created": str(lib.attrs.get("created")), "n_patterns": lib.n_patterns},
        "split": data.split.to_dict(),
        "metrics": metrics,
        "history": history,
    }
    return Path(save_bundle(output, model, metadata, calibration.tensors, coarse=coarse))


def train_model(library_path: str | Path, output: str | Path, settings: TrainingSettings | None = None,
                augmentation: AugmentationSettings | None = None, progress: bool = True,
                split: Split | None = None) -> TrainingResult:
    """Train a model on a library file and write the bundle to ``output`` (split: by simulation, seeded, unless given).

    With ``settings.continuous`` (the default) the network trains on fresh continuous populations every epoch (made
    from the library material's per-cluster patterns) and learns the continuous head; the library's held-out
    simulations give the test figures.
    """
    import torch

    from ...models.network import QDotsNet

    settings = settings or TrainingSettings()
    augmentation = augmentation or AugmentationSettings()
    t_start = time.perf_counter()
    torch.manual_seed(settings.seed)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    data = prepare_library(library_path, settings, split)
    lib, split = data.lib, data.split

    # the sources, the fixed validation set and the network
    augmenter = training_augmenter(lib, augmentation, settings)
    source, val_source = make_sources(data, augmenter, settings)
    validation = draw_set(val_source, settings.seed + 1, _validation_repeats(data, settings))
    presence = augmentation.blank_fraction > 0 and bool(augmenter.solvent_names)  # blanks need a solvent
    told = data.basis is not None and settings.known_instrument_share > 0  # the network gets the instrument input
    model = QDotsNet(n_points=data.grid.n_points, size_classes_nm=data.size_classes.tolist(),
                     dispersion_classes=data.dispersion_classes.tolist(), presence_head=presence,
                     input_transform=settings.input_transform, filters=settings.filters,
                     kernels=settings.kernels, continuous_head=data.basis is not None, instrument_input=told,
                     **({"instrument_fwhm_max_q": instrument_fwhm_max_q(source.ranges)} if told else {}))
    precision = resolve_precision(settings.precision)
    fit_options = {"t_start": t_start, "autocast_dtype": torch.bfloat16 if precision == "bf16" else None,
                   "progress": progress}
    loss = TrainingLoss(settings, model.config)

    # fit, calibrate
    with_coarse = settings.coarse_epochs > 0 and augmentation.lab_fraction < 1.0
    outcome = fit(model, loss, source, validation, settings, epochs=settings.max_epochs,
                  learning_rate=settings.learning_rate, batch_seed=lambda epoch: settings.seed * 1000 + epoch,
                  desc="training", reserve_epochs=settings.coarse_epochs if with_coarse else 0, **fit_options)
    probes = probe_patterns(data, augmentation, settings)
    calibration = calibrate(model, source, validation, settings, settings.seed + 2, split.train, probes)

    # held-out test on the reference conditions
    x_test, test_idx, test_meta = reference_test_set(augmenter, split.test, settings.seed + 4)
    test_out = network_outputs(model, x_test)
    metrics = {"test_simulations": int(split.test.size),
               **reference_metrics(test_out, calibration, data.targets["size_class"][test_idx],
                                   data.targets["dispersion_class"][test_idx], lib.mean_diameter_nm[test_idx],
                                   data.size_classes, test_meta),
               "best_epoch": int(outcome.best_epoch), "epochs_run": len(outcome.history),
               "stopped_by": outcome.stopped_by, "precision": precision,
               "training_minutes": (time.perf_counter() - t_start) / 60}
    if model.config["continuous_head"]:
        metrics["continuous_interval_calibration"] = calibration.tensors[T_CONTINUOUS_INTERVAL].tolist()
        metrics["test_continuous"] = continuous_metrics(model, calibration, x_test, lib.mean_diameter_nm[test_idx],
                                                        data.size_classes,
                                                        {"fraction": test_meta["fraction"], "snr": test_meta["snr"]})
        x_pop, t_pop, nc_pop = draw_set(val_source, settings.seed + 6)
        metrics["test_continuous_populations"] = continuous_metrics(model, calibration, x_pop[nc_pop],
                                                                    np.exp(t_pop["continuous"][nc_pop, 0]),
                                                                    data.size_classes)
    if model.config["instrument_input"]:  # the same test patterns, the network told their instrument: none
        known = instrument_condition((0.0, 0.0), x_test.shape[0], model.config)
        known_metrics = reference_metrics(network_outputs(model, x_test, known), calibration,
                                          data.targets["size_class"][test_idx], data.targets["dispersion_class"][test_idx],
                                          lib.mean_diameter_nm[test_idx], data.size_classes, test_meta)
        known_metrics["test_continuous"] = continuous_metrics(model, calibration, x_test, lib.mean_diameter_nm[test_idx],
                                                              data.size_classes, instrument=known)
        metrics["known_instrument"] = known_metrics
    if presence:
        metrics.update(blank_metrics(model, augmenter, test_out, settings.seed + 5))

    # the coarse-sampling specialist, then the bundle
    coarse = None
    if with_coarse:
        coarse, metrics["coarse_specialist"] = train_coarse_specialist(model, data, augmenter, augmentation, settings,
                                                                       loss, fit_options, probes)
    metrics["training_minutes"] = (time.perf_counter() - t_start) / 60
    path = save_trained_bundle(output, model, calibration, data, augmentation, settings, metrics, outcome.history,
                               coarse)
    return TrainingResult(path, metrics, outcome.history)


def cross_validate(library_path: str | Path, n_folds: int, settings: TrainingSettings | None = None,
                   augmentation: AugmentationSettings | None = None, progress: bool = True) -> dict:
    """K-fold cross-validation by simulation: each fold is the test set once; returns the test accuracies."""
    import tempfile

    settings = settings or TrainingSettings()
    lib = load_library(library_path, grid="q")
    folds = kfold_by_simulation(lib.population, n_folds, settings.seed)
    accuracies = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, test in enumerate(folds):
            rest = np.setdiff1d(np.arange(lib.n_patterns), test)
            rng = np.random.default_rng(settings.seed + 100 + k)
            val = np.sort(rng.choice(rest, size=max(1, int(round(settings.validation_fraction * lib.n_patterns))), replace=False))
            split = Split(np.setdiff1d(rest, val), val, test)
            result = train_model(library_path, Path(tmp) / f"fold{k}.safetensors", settings, augmentation, progress, split)
            accuracies.append(result.metrics["test_size_accuracy"])
    return {"folds": accuracies, "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}
