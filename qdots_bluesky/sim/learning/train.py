"""Training the size classifier from a library file, with on-the-fly physics augmentation.

Steps: split the library by DSE simulation (before augmentation); draw fresh augmented patterns
for every batch (a worker thread augments while the network trains), from training patterns that
get new lattice parameters every epoch (``strain_jitter``); train the network (size
classes, dispersion classes, size regression on patterns with nanocrystals; the presence head on
all, blanks included; focal loss on the classes) with a one-cycle learning rate, keeping the weights of the best epoch on a
fixed augmented validation set (early stopping only once the rate has annealed); matrix
products in bfloat16 where the CPU has it natively; fit calibration temperatures on validation; fit the
out-of-distribution statistics on training features; measure the held-out test set on the
reference conditions; then (``coarse_epochs`` > 0) fine-tune a copy of the network on patterns
resampled to Q steps about one peak width of the largest dots, calibrate it the same way and store it
in the bundle as the coarse-sampling specialist that sizes such patterns; write the model bundle with
its provenance.
"""
from __future__ import annotations

import copy
import dataclasses
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ... import __version__
from ...standardize import QGrid
from .augment import AugmentationSettings, Augmenter
from ..physics.cluster_basis import ClusterBasis, PopulationRanges, build_cluster_basis, draw_populations, population_targets
from ..physics.library import LibrarySettings, library_content_sha256, load_library
from .splits import Split, kfold_by_simulation, split_by_simulation
from .settings import TrainingSettings  # noqa: F401  (re-exported)

#: The reference test conditions: 2 solvents x 4 nanocrystal area fractions x 4 signal-to-noise ratios.
REFERENCE_SOLVENTS = ("hexane", "toluene")
REFERENCE_FRACTIONS = (1.0, 0.65, 0.37, 0.15)
REFERENCE_SNRS = (122.0, 46.0, 24.0, 14.0)


#: Seconds kept free for calibration and the held-out tests when the main network's training leaves time for the
#: coarse specialist within ``max_minutes``.
_RESERVE_OVERHEAD_S = 45.0

#: Fewest continuous validation populations (the interval factors are quantiles over them).
MIN_CONTINUOUS_VALIDATION = 256

#: Points over Q 1-15 1/A of the coarse-sampling specialist's test in the training metrics (the evaluation's coarsest).
COARSE_TEST_POINTS = 251


def coarse_augmentation(augmentation: AugmentationSettings, settings: TrainingSettings) -> AugmentationSettings:
    """The coarse specialist's augmentation: ``augmentation`` with every pattern synchrotron and resampled to
    ``settings.coarse_points`` points over its measured range, Q_max truncated in ``coarse_truncate_high_fraction``."""
    return dataclasses.replace(augmentation, coarsen_fraction=1.0, n_points_choices=list(settings.coarse_points),
                               lab_fraction=0.0, truncate_high_fraction=settings.coarse_truncate_high_fraction)


@dataclass
class TrainingResult:
    bundle_path: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)


def resolve_precision(precision: str) -> str:
    """"bf16" or "fp32": "auto" is bf16 where the CPU computes bfloat16 natively (AVX512-BF16 / AMX), else fp32."""
    if precision != "auto":
        return precision
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


def classification_loss(logits, target, gamma: float = 0.0):
    """Mean cross-entropy, or with gamma > 0 the focal loss mean((1 - p_true)^gamma * CE) (Lin et al. 2017),
    which weights the patterns the network still gets wrong (dilute, noisy, coarse) over the easy ones."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, reduction="none")
    if gamma == 0.0:
        return ce.mean()
    p_true = (-ce).exp()
    return ((1.0 - p_true) ** gamma * ce).mean()


def class_labels(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of the class nearest to each value."""
    return np.abs(np.asarray(values)[:, None] - np.asarray(classes)[None, :]).argmin(axis=1)


def row_targets(mean_nm: np.ndarray, volume_nm: np.ndarray, dispersion: np.ndarray, strain: np.ndarray,
                size_classes: np.ndarray, dispersion_classes: np.ndarray) -> dict[str, np.ndarray]:
    """Training targets of clean patterns: nearest size and dispersion class, the mean diameter (nm, regression head)
    and the continuous head's quantities (ln mean diameter, ln volume-weighted diameter, dispersion, strain)."""
    mean_nm = np.asarray(mean_nm, dtype=float)
    return {"size_class": class_labels(mean_nm, size_classes),
            "dispersion_class": class_labels(dispersion, dispersion_classes),
            "diameter_nm": mean_nm.astype(np.float32),
            "continuous": np.stack([np.log(mean_nm), np.log(volume_nm), dispersion, strain], axis=1).astype(np.float32)}


class LibrarySource:
    """Each epoch: the library's training patterns, each with its own lattice parameter (``with_lattice_jitter``)."""

    def __init__(self, augmenter: Augmenter, indices: np.ndarray, targets: dict[str, np.ndarray]):
        self.augmenter, self.indices, self.targets = augmenter, indices, targets

    def __call__(self, rng: np.random.Generator) -> tuple[Augmenter, np.ndarray, dict[str, np.ndarray]]:
        return self.augmenter.with_lattice_jitter(rng, self.indices), self.indices, self.targets


class PopulationSource:
    """Each epoch: ``size`` fresh populations with mean diameter, dispersion, strain, microstrain and a synchrotron
    instrument profile drawn within ``ranges``, made from the per-cluster patterns of ``basis`` (a matrix product,
    a Q rescaling and two convolutions per population)."""

    def __init__(self, augmenter: Augmenter, basis: ClusterBasis, ranges: PopulationRanges, size: int,
                 size_classes: np.ndarray, dispersion_classes: np.ndarray):
        self.augmenter, self.basis, self.ranges, self.size = augmenter, basis, ranges, int(size)
        self.classes = (size_classes, dispersion_classes)

    def __call__(self, rng: np.random.Generator) -> tuple[Augmenter, np.ndarray, dict[str, np.ndarray]]:
        pops = draw_populations(rng, self.size, self.ranges)
        mean, disp, strain = pops["mean_diameter_nm"], pops["dispersion"], pops["strain"]
        crystal, compton = self.basis.patterns(mean, disp, strain, pops["microstrain"], pops["instrument_gauss_fwhm_q"],
                                               pops["instrument_lorentz_fwhm_q"])
        t = population_targets(self.basis.n, self.basis.unit_nm, mean, disp, strain)
        targets = row_targets(mean, t["volume_diameter_nm"], disp, strain, *self.classes)
        return self.augmenter.with_patterns(crystal, compton, mean, strain), np.arange(self.size), targets


def draw_set(source, seed: int, repeats: int = 1, indices: np.ndarray | None = None):
    """A fixed augmented set from one draw of ``source``: every index (or ``indices``) ``repeats`` times.
    Returns (X, targets per row, has-nanocrystals per row)."""
    rng = np.random.default_rng(seed)
    augmenter, all_indices, targets = source(rng)
    idx = np.repeat(all_indices if indices is None else indices, repeats)
    x, meta = augmenter.sample(idx, rng)
    return x, {k: v[idx] for k, v in targets.items()}, meta["fraction"] > 0


class _BatchProducer:
    """Augments one epoch's batches on a worker thread so augmentation overlaps with the network's work; the
    epoch's clean patterns and targets come from ``source`` (fresh lattice parameters or fresh populations)."""

    def __init__(self, source, batch_size: int, n_batches: int, seed):
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, batch_size, n_batches, seed), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Queue ``item`` unless the producer was closed; False when closed."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Stop the worker (an epoch that will not be trained: training ended early) and wait for it."""
        self._stop.set()
        self._thread.join()

    def _run(self, source, batch_size, n_batches, seed):
        rng = np.random.default_rng(seed)
        try:
            augmenter, indices, targets = source(rng)  # this epoch's patterns
            for _ in range(n_batches):
                if self._stop.is_set():
                    return
                idx = rng.choice(indices, size=batch_size)
                x, meta = augmenter.sample(idx, rng)
                if not self._put(({k: v[idx] for k, v in targets.items()}, x, meta["fraction"] > 0)):
                    return
        except BaseException as exc:  # surface worker errors in the training thread
            self._put(exc)
        self._put(None)

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def reference_test_set(augmenter: Augmenter, indices: np.ndarray, seed: int,
                       n_points: int = 5004) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every test simulation under the 32 reference conditions (solvent x fraction x SNR), full Q range
    (``n_points`` over it: 5004 is the library step, fewer resamples to coarser steps)."""
    rng = np.random.default_rng(seed)
    xs, idxs, meta = [], [], {"solvent": [], "fraction": [], "snr": []}
    for solvent in REFERENCE_SOLVENTS:
        for fraction in REFERENCE_FRACTIONS:
            for snr in REFERENCE_SNRS:
                x, _ = augmenter.fixed(indices, rng, fraction=fraction, snr=snr, solvent=solvent, q_min=1.0, q_max=15.0,
                                       n_points=n_points, lab=False, background=False)
                xs.append(x)
                idxs.append(indices)
                meta["solvent"] += [solvent] * indices.size
                meta["fraction"] += [fraction] * indices.size
                meta["snr"] += [snr] * indices.size
    return np.concatenate(xs), np.concatenate(idxs), {k: np.asarray(v) for k, v in meta.items()}


def blank_test_set(augmenter: Augmenter, seed: int, repeats: int = 64) -> tuple[np.ndarray, np.ndarray] | None:
    """Blanks (no nanocrystals), ``repeats`` per reference SNR for every loaded solvent and, when the
    augmentation makes them, for empty blanks (background only), full Q range.

    Returns the patterns and a label per row ("hexane snr 14", "empty snr 14"), or None without solvents.
    """
    if not augmenter.solvent_names:
        return None
    rng = np.random.default_rng(seed)
    idx = np.zeros(repeats, dtype=np.int64)  # the library pattern is multiplied by f = 0
    xs, labels = [], []
    kinds = list(augmenter.solvent_names) + (["empty"] if augmenter.settings.empty_blank_share > 0 else [])
    for name in kinds:
        for snr in REFERENCE_SNRS:
            xs.append(augmenter.fixed(idx, rng, fraction=0.0, snr=snr, solvent=name, q_min=1.0, q_max=15.0,
                                      n_points=5004, lab=False, background=False)[0])
            labels += [f"{name} snr {snr:g}"] * repeats
    return np.concatenate(xs), np.asarray(labels)


def _library_settings(lib) -> LibrarySettings:
    """The LibrarySettings a library file was built with (its stored JSON; unknown keys ignored)."""
    known = {f.name for f in dataclasses.fields(LibrarySettings)}
    return LibrarySettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in (lib.settings or {}).items()
                              if k in known})


def train_model(library_path: str | Path, output: str | Path, settings: TrainingSettings | None = None,
                augmentation: AugmentationSettings | None = None, progress: bool = True,
                split: Split | None = None) -> TrainingResult:
    """Train a model on a library file and write the bundle to ``output`` (split: by simulation, seeded, unless given).

    With ``settings.continuous`` (the default) the network trains on fresh continuous populations every epoch (made
    from the library material's per-cluster patterns) and learns the continuous head; the library's held-out
    simulations give the test figures.
    """
    import torch
    import torch.nn.functional as F

    from ...models.bundle import T_CONTINUOUS_INTERVAL, CoarseSpecialist, file_sha256, save_bundle
    from ...models.calibration import expected_calibration_error, fit_feature_statistics, fit_temperature
    from ...models.continuous import calibrated_std, class_probabilities, fit_interval_calibration
    from ...models.engine import LOG_SIGMA_BOUNDS, continuous_estimates
    from ...models.network import QDotsNet

    settings = settings or TrainingSettings()
    augmentation = augmentation or AugmentationSettings()
    t_start = time.perf_counter()
    torch.manual_seed(settings.seed)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
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
    augmenter = Augmenter.from_library(lib, augmentation)
    continuous = bool(settings.continuous)
    basis = build_cluster_basis(_library_settings(lib), lib.q) if continuous else None
    if continuous:
        lib_volume = population_targets(basis.n, basis.unit_nm, lib.mean_diameter_nm, lib.dispersion,
                                        lib.strain)["volume_diameter_nm"]
    else:
        lib_volume = lib.mean_diameter_nm
    lib_targets = row_targets(lib.mean_diameter_nm, lib_volume, lib.dispersion, lib.strain, size_classes,
                              dispersion_classes)
    y_size, y_disp = lib_targets["size_class"], lib_targets["dispersion_class"]

    def sources(augmenter_):
        """(training source, validation set) for an augmenter: continuous populations or the library's split."""
        if continuous:
            src = PopulationSource(augmenter_, basis, PopulationRanges.from_dict(settings.population_ranges),
                                   settings.populations_per_epoch, size_classes, dispersion_classes)
            n_val = max(settings.validation_repeats * split.validation.size, MIN_CONTINUOUS_VALIDATION)
            val_src = PopulationSource(augmenter_, basis, src.ranges, n_val, size_classes, dispersion_classes)
            return src, val_src
        return LibrarySource(augmenter_, split.train, lib_targets), (lambda rng: (augmenter_, split.validation, lib_targets))

    source, val_source = sources(augmenter)
    x_val, val_t, val_nc = draw_set(val_source, settings.seed + 1, 1 if continuous else settings.validation_repeats)
    presence = augmentation.blank_fraction > 0 and bool(augmenter.solvent_names)  # blanks need a solvent
    model = QDotsNet(n_points=grid.n_points, size_classes_nm=size_classes.tolist(),
                     dispersion_classes=dispersion_classes.tolist(), presence_head=presence,
                     input_transform=settings.input_transform, filters=settings.filters,
                     kernels=settings.kernels, continuous_head=continuous)
    precision = resolve_precision(settings.precision)
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    offsets = torch.tensor(model.config["continuous_offsets"])
    scales = torch.tensor(model.config["continuous_scales"])
    n_cont = offsets.numel()

    def losses(out, t, has_nc):
        """Size, dispersion, regression and continuous losses on the patterns with nanocrystals; presence on all."""
        nc = torch.as_tensor(has_nc)
        total = torch.zeros(())
        if bool(nc.any()):
            l_size = classification_loss(out["size_logits"][nc].float(), torch.as_tensor(t["size_class"][has_nc]),
                                         settings.focal_gamma)
            l_disp = classification_loss(out["dispersion_logits"][nc].float(),
                                         torch.as_tensor(t["dispersion_class"][has_nc]), settings.focal_gamma)
            l_reg = F.smooth_l1_loss(out["size_nm"][nc].float(), torch.as_tensor(t["diameter_nm"][has_nc]))
            total = l_size + settings.dispersion_weight * l_disp + settings.regression_weight * l_reg
            if continuous:
                raw = out["continuous"][nc].float()
                y = (torch.as_tensor(t["continuous"][has_nc]) - offsets) / scales
                log_sigma = raw[:, n_cont:].clamp(*LOG_SIGMA_BOUNDS)
                nll = log_sigma + 0.5 * ((y - raw[:, :n_cont]) * torch.exp(-log_sigma)) ** 2  # Gaussian NLL
                total = total + settings.continuous_weight * nll.mean()
        if presence:
            total = total + settings.presence_weight * F.binary_cross_entropy_with_logits(
                out["nanocrystal_logit"].float(), nc.float())
        return total

    keys = (("size_logits", "dispersion_logits", "size_nm", "features") + (("nanocrystal_logit",) if presence else ())
            + (("continuous",) if continuous else ()))

    def evaluate(net, x):
        net.eval()
        outs = []
        with torch.inference_mode():
            for s in range(0, len(x), 1024):
                outs.append(net(torch.as_tensor(x[s:s + 1024])))
        net.train()
        return {k: torch.cat([o[k] for o in outs]) for k in keys}

    def fit(net, source_, x_val_, val_t_, val_nc_, epochs, learning_rate, batch_seed, desc, reserve_epochs=0):
        """Train ``net`` with a one-cycle rate; keep the weights of the epoch with the least validation loss.

        Stops at ``settings.max_minutes`` since the start of training, or earlier by the time ``reserve_epochs``
        more epochs of this speed would take (what a later fit, the coarse specialist's, needs within the cap)."""
        optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
        n_batches = max(1, settings.samples_per_epoch // settings.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=epochs * n_batches,
                                                        pct_start=0.15)
        val_nc_t = torch.as_tensor(val_nc_)
        val_size_t = torch.as_tensor(val_t_["size_class"][val_nc_])

        def forward(x):
            if autocast_dtype is None:
                return net(x)
            with torch.autocast("cpu", dtype=autocast_dtype):
                return net(x)

        history: list[dict] = []
        best = (np.inf, None, -1)
        stopped = "max_epochs"
        bar = tqdm(total=epochs, desc=desc, disable=not progress)
        t_fit = time.perf_counter()
        producer = _BatchProducer(source_, settings.batch_size, n_batches, batch_seed(0))
        for epoch in range(epochs):
            net.train()
            total, count = 0.0, 0
            batches, producer = producer, None
            for t, x, has_nc in batches:
                out = forward(torch.as_tensor(x))
                loss = losses(out, t, has_nc)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(x)
                count += len(x)
            if epoch + 1 < epochs:  # the next epoch's patterns are made while this one is validated
                producer = _BatchProducer(source_, settings.batch_size, n_batches, batch_seed(epoch + 1))
            val_out = evaluate(net, x_val_)
            val_loss = float(losses(val_out, val_t_, val_nc_))
            val_acc = float((val_out["size_logits"][val_nc_t].argmax(1) == val_size_t).float().mean())
            record = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "validation_loss": val_loss,
                      "validation_size_accuracy": val_acc, "seconds": time.perf_counter() - t_start}
            if presence:
                record["validation_presence_accuracy"] = float(((val_out["nanocrystal_logit"] > 0).numpy() == val_nc_).mean())
            history.append(record)
            bar.update(1)
            bar.set_postfix(train=f"{total / max(count, 1):.3f}", val=f"{val_loss:.3f}", acc=f"{val_acc:.3f}")
            if val_loss < best[0]:
                best = (val_loss, {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch + 1)
            elif epoch + 1 - max(best[2], int(settings.early_stopping_from * epochs)) >= settings.patience:
                # patience counts only epochs after early_stopping_from (the annealed learning rate)
                stopped = "early_stopping"
                break
            now = time.perf_counter()
            reserve = reserve_epochs * (now - t_fit) / (epoch + 1) + (_RESERVE_OVERHEAD_S if reserve_epochs else 0.0)
            if (now - t_start + reserve) / 60 > settings.max_minutes:
                stopped = "time_limit"
                break
        if producer is not None:
            producer.close()
        bar.close()
        net.load_state_dict(best[1])
        net.eval()
        return history, best[2], stopped

    with_coarse = settings.coarse_epochs > 0 and augmentation.lab_fraction < 1.0
    history, best_epoch, stopped = fit(model, source, x_val, val_t, val_nc, settings.max_epochs, settings.learning_rate,
                                       lambda epoch: settings.seed * 1000 + epoch, "training",
                                       reserve_epochs=settings.coarse_epochs if with_coarse else 0)

    def calibrate(net, source_, x_val_, val_t_, val_nc_, seed):
        """Temperatures and continuous-interval factors on validation patterns with nanocrystals; out-of-distribution
        statistics of training features with the threshold from held-out validation features."""
        val_out = evaluate(net, x_val_)
        nc_t = torch.as_tensor(val_nc_)
        t_size = fit_temperature(val_out["size_logits"][nc_t].numpy(), val_t_["size_class"][val_nc_])
        t_disp = fit_temperature(val_out["dispersion_logits"][nc_t].numpy(), val_t_["dispersion_class"][val_nc_])
        x_tr, _, tr_nc = draw_set(source_, seed, repeats=4) if continuous else draw_set(
            source_, seed, indices=np.random.default_rng(seed).choice(split.train, 8192))
        stats = fit_feature_statistics(evaluate(net, x_tr[tr_nc][:8192])["features"].numpy(),
                                       quantile=settings.ood_quantile, reference=val_out["features"][nc_t].numpy())
        tensors = {
            "calibration.temperature_size": torch.tensor([t_size], dtype=torch.float32),
            "calibration.temperature_dispersion": torch.tensor([t_disp], dtype=torch.float32),
            "ood.feature_mean": torch.as_tensor(stats["feature_mean"]),
            "ood.feature_precision": torch.as_tensor(stats["feature_precision"]),
            "ood.threshold": torch.as_tensor(stats["threshold"]),
        }
        if continuous:
            mean, std = continuous_estimates(val_out["continuous"][nc_t].numpy(), net.config)
            calibration = fit_interval_calibration(val_t_["continuous"][val_nc_] - mean, std)
            tensors[T_CONTINUOUS_INTERVAL] = torch.as_tensor(calibration, dtype=torch.float32)
        return t_size, t_disp, tensors

    def continuous_metrics(net, tensors_, x, truth_nm, meta=None) -> dict:
        """MAE of the number-weighted size and the coverage of its 68 / 95 % intervals (overall and per condition)."""
        mean, std = continuous_estimates(evaluate(net, x)["continuous"].numpy(), net.config)
        std = calibrated_std(std, tensors_[T_CONTINUOUS_INTERVAL].numpy())
        size = np.exp(mean[:, 0])
        err = np.abs(size - truth_nm)
        inside1 = np.abs(np.log(truth_nm) - mean[:, 0]) <= std[:, 0]
        inside2 = np.abs(np.log(truth_nm) - mean[:, 0]) <= 1.96 * std[:, 0]
        out = {"size_mae_nm": float(err.mean()), "size_coverage_68": float(inside1.mean()),
               "size_coverage_95": float(inside2.mean()),
               "size_class_accuracy": float(np.mean(class_probabilities(mean[:, 0], std[:, 0], size_classes).argmax(1)
                                                    == class_labels(truth_nm, size_classes)))}
        for key, values in (meta or {}).items():
            out[f"by_{key}"] = {str(v): {"size_mae_nm": float(err[values == v].mean()),
                                         "size_coverage_68": float(inside1[values == v].mean()),
                                         "size_coverage_95": float(inside2[values == v].mean())}
                                for v in np.unique(values)}
        return out

    t_size, t_disp, tensors = calibrate(model, source, x_val, val_t, val_nc, settings.seed + 2)
    ood_threshold = float(tensors["ood.threshold"][0])

    # held-out test on the reference conditions
    x_test, test_idx, test_meta = reference_test_set(augmenter, split.test, settings.seed + 4)
    test_out = evaluate(model, x_test)
    p_size = torch.softmax(test_out["size_logits"] / t_size, 1).numpy()
    p_disp = torch.softmax(test_out["dispersion_logits"] / t_disp, 1).numpy()
    pred = p_size.argmax(1)
    truth = y_size[test_idx]
    metrics = {
        "test_simulations": int(split.test.size),
        "test_patterns": int(test_idx.size),
        "test_size_accuracy": float(np.mean(pred == truth)),
        "test_size_within_one_class": float(np.mean(np.abs(pred - truth) <= 1)),
        "test_dispersion_accuracy": float(np.mean(p_disp.argmax(1) == y_disp[test_idx])),
        "test_size_mae_nm": float(np.mean(np.abs(p_size @ size_classes - lib.mean_diameter_nm[test_idx]))),
        "test_ece_size": float(expected_calibration_error(p_size, truth)),
        "test_ece_size_uncalibrated": float(expected_calibration_error(torch.softmax(test_out["size_logits"], 1).numpy(), truth)),
        "test_ece_dispersion": float(expected_calibration_error(p_disp, y_disp[test_idx])),
        "temperature_size": float(t_size),
        "temperature_dispersion": float(t_disp),
        "ood_threshold": ood_threshold,
        "best_epoch": int(best_epoch),
        "epochs_run": len(history),
        "stopped_by": stopped,
        "precision": precision,
        "training_minutes": (time.perf_counter() - t_start) / 60,
        "test_size_accuracy_by_fraction": {str(f): float(np.mean((pred == truth)[test_meta["fraction"] == f])) for f in REFERENCE_FRACTIONS},
        "test_size_accuracy_by_snr": {str(s): float(np.mean((pred == truth)[test_meta["snr"] == s])) for s in REFERENCE_SNRS},
        "test_size_accuracy_by_solvent": {s: float(np.mean((pred == truth)[test_meta["solvent"] == s])) for s in REFERENCE_SOLVENTS},
    }
    if continuous:
        metrics["continuous_interval_calibration"] = tensors[T_CONTINUOUS_INTERVAL].numpy().tolist()
        metrics["test_continuous"] = continuous_metrics(model, tensors, x_test, lib.mean_diameter_nm[test_idx],
                                                        {"fraction": test_meta["fraction"], "snr": test_meta["snr"]})
        x_pop, t_pop, nc_pop = draw_set(val_source, settings.seed + 6)
        metrics["test_continuous_populations"] = continuous_metrics(model, tensors, x_pop[nc_pop],
                                                                    np.exp(t_pop["continuous"][nc_pop, 0]))
    if presence:
        blanks = blank_test_set(augmenter, settings.seed + 5)
        if blanks is not None:
            metrics["test_blank_detected"] = float(np.mean(evaluate(model, blanks[0])["nanocrystal_logit"].numpy() < 0))
        metrics["test_nanocrystals_missed"] = float(np.mean(test_out["nanocrystal_logit"].numpy() < 0))
    coarse = None
    if with_coarse:
        t_coarse = time.perf_counter()
        coarse_aug = coarse_augmentation(augmentation, settings)
        augmenter_c = Augmenter.from_library(lib, coarse_aug)
        source_c, val_source_c = sources(augmenter_c)
        x_val_c, val_t_c, val_nc_c = draw_set(val_source_c, settings.seed + 11,
                                              1 if continuous else settings.validation_repeats)
        specialist = copy.deepcopy(model)
        c_history, c_best, c_stopped = fit(specialist, source_c, x_val_c, val_t_c, val_nc_c, settings.coarse_epochs,
                                           settings.coarse_learning_rate, lambda epoch: [settings.seed, 1, epoch],
                                           "coarse specialist")
        ct_size, ct_disp, c_tensors = calibrate(specialist, source_c, x_val_c, val_t_c, val_nc_c, settings.seed + 12)
        # both networks on the reference conditions resampled to the coarsest point count of the evaluation
        x_c, idx_c, _ = reference_test_set(augmenter, split.test, settings.seed + 14, n_points=COARSE_TEST_POINTS)

        def accuracy(net):
            return float(np.mean(evaluate(net, x_c)["size_logits"].argmax(1).numpy() == y_size[idx_c]))

        c_metrics = {"test_points": COARSE_TEST_POINTS, "test_patterns": int(idx_c.size),
                     "test_size_accuracy": accuracy(specialist), "main_network_test_size_accuracy": accuracy(model),
                     "temperature_size": float(ct_size), "temperature_dispersion": float(ct_disp),
                     "ood_threshold": float(c_tensors["ood.threshold"][0]), "best_epoch": int(c_best),
                     "epochs_run": len(c_history), "stopped_by": c_stopped,
                     "minutes": (time.perf_counter() - t_coarse) / 60}
        if continuous:
            c_metrics["test_continuous"] = continuous_metrics(specialist, c_tensors, x_c, lib.mean_diameter_nm[idx_c])
        metrics["coarse_specialist"] = c_metrics
        coarse = CoarseSpecialist(specialist, c_tensors, settings.coarse_min_q_step,
                                  {"augmentation": coarse_aug.to_dict(), "training": settings.to_dict(),
                                   "metrics": c_metrics, "history": c_history})
    metrics["training_minutes"] = (time.perf_counter() - t_start) / 60
    metadata = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "program_version": __version__,
        "q_grid": grid.to_dict(),
        "size_classes_nm": size_classes.tolist(),
        "dispersion_classes": dispersion_classes.tolist(),
        "augmentation": augmentation.to_dict(),
        "training": settings.to_dict(),
        "training_library": {"path": str(library_path), "sha256": file_sha256(library_path),
                             "content_sha256": library_content_sha256(library_path),
                             "settings": lib.settings, "created": str(lib.attrs.get("created")), "n_patterns": lib.n_patterns},
        "split": split.to_dict(),
        "metrics": metrics,
        "history": history,
    }
    path = save_bundle(output, model, metadata, tensors, coarse=coarse)
    return TrainingResult(Path(path), metrics, history)


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
