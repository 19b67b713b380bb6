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

from .. import __version__
from ..standardize import QGrid
from .augment import AugmentationSettings, Augmenter
from .library import library_content_sha256, load_library
from .splits import Split, kfold_by_simulation, split_by_simulation
from .training_settings import TrainingSettings  # noqa: F401  (re-exported)

#: The reference test conditions: 2 solvents x 4 nanocrystal area fractions x 4 signal-to-noise ratios.
REFERENCE_SOLVENTS = ("hexane", "toluene")
REFERENCE_FRACTIONS = (1.0, 0.65, 0.37, 0.15)
REFERENCE_SNRS = (122.0, 46.0, 24.0, 14.0)


#: Seconds kept free for calibration and the held-out tests when the main network's training leaves time for the
#: coarse specialist within ``max_minutes``.
_RESERVE_OVERHEAD_S = 45.0

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


class _BatchProducer:
    """Augments one epoch's batches on a worker thread so augmentation overlaps with the network's work; the
    epoch's library patterns get their own lattice parameters first (``Augmenter.with_lattice_jitter``)."""

    def __init__(self, augmenter: Augmenter, indices: np.ndarray, batch_size: int, n_batches: int, seed: int):
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, args=(augmenter, indices, batch_size, n_batches, seed), daemon=True)
        self._thread.start()

    def _run(self, augmenter, indices, batch_size, n_batches, seed):
        rng = np.random.default_rng(seed)
        try:
            augmenter = augmenter.with_lattice_jitter(rng, indices)  # this epoch's lattice parameters
            for _ in range(n_batches):
                idx = rng.choice(indices, size=batch_size)
                x, meta = augmenter.sample(idx, rng)
                self._q.put((idx, x, meta["fraction"] > 0))
        except BaseException as exc:  # surface worker errors in the training thread
            self._q.put(exc)
        self._q.put(None)

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


def train_model(library_path: str | Path, output: str | Path, settings: TrainingSettings | None = None,
                augmentation: AugmentationSettings | None = None, progress: bool = True,
                split: Split | None = None) -> TrainingResult:
    """Train a model on a library file and write the bundle to ``output`` (split: by simulation, seeded, unless given)."""
    import torch
    import torch.nn.functional as F

    from ..models.bundle import CoarseSpecialist, file_sha256, save_bundle
    from ..models.calibration import expected_calibration_error, fit_feature_statistics, fit_temperature
    from ..models.network import QDotsNet

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
    y_size = class_labels(lib.mean_diameter_nm, size_classes)
    y_disp = class_labels(lib.dispersion, dispersion_classes)
    if split is None:
        split = split_by_simulation(lib.population, settings.seed, settings.test_fraction, settings.validation_fraction)
    if min(split.train.size, split.validation.size, split.test.size) == 0:
        raise ValueError(f"library {library_path} is too small to split by simulation ({split.train.size} train, "
                         f"{split.validation.size} validation, {split.test.size} test simulations); each population "
                         "needs at least 3 simulations (e.g. 3 or more lattice ratios)")
    augmenter = Augmenter.from_library(lib, augmentation)

    val_idx = np.repeat(split.validation, settings.validation_repeats)
    x_val, val_meta = augmenter.sample(val_idx, np.random.default_rng(settings.seed + 1))
    val_nc = val_meta["fraction"] > 0
    presence = augmentation.blank_fraction > 0 and bool(augmenter.solvent_names)  # blanks need a solvent
    model = QDotsNet(n_points=grid.n_points, size_classes_nm=size_classes.tolist(),
                     dispersion_classes=dispersion_classes.tolist(), presence_head=presence,
                     input_transform=settings.input_transform, filters=settings.filters,
                     kernels=settings.kernels)
    precision = resolve_precision(settings.precision)
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    size_t = torch.as_tensor(y_size)
    disp_t = torch.as_tensor(y_disp)
    diam_t = torch.as_tensor(lib.mean_diameter_nm, dtype=torch.float32)

    def losses(out, idx, has_nc):
        """Size, dispersion and regression losses on the patterns with nanocrystals; presence loss on all."""
        idx_t = torch.as_tensor(idx)
        nc = torch.as_tensor(has_nc)
        total = torch.zeros(())
        if bool(nc.any()):
            sel = idx_t[nc]
            l_size = classification_loss(out["size_logits"][nc].float(), size_t[sel], settings.focal_gamma)
            l_disp = classification_loss(out["dispersion_logits"][nc].float(), disp_t[sel], settings.focal_gamma)
            l_reg = F.smooth_l1_loss(out["size_nm"][nc].float(), diam_t[sel])
            total = l_size + settings.dispersion_weight * l_disp + settings.regression_weight * l_reg
        if presence:
            total = total + settings.presence_weight * F.binary_cross_entropy_with_logits(
                out["nanocrystal_logit"].float(), nc.float())
        return total

    keys = ("size_logits", "dispersion_logits", "size_nm", "features") + (("nanocrystal_logit",) if presence else ())

    def evaluate(net, x):
        net.eval()
        outs = []
        with torch.inference_mode():
            for s in range(0, len(x), 1024):
                outs.append(net(torch.as_tensor(x[s:s + 1024])))
        net.train()
        return {k: torch.cat([o[k] for o in outs]) for k in keys}

    def fit(net, augmenter_, x_val_, val_nc_, epochs, learning_rate, batch_seed, desc, reserve_epochs=0):
        """Train ``net`` with a one-cycle rate; keep the weights of the epoch with the least validation loss.

        Stops at ``settings.max_minutes`` since the start of training, or earlier by the time ``reserve_epochs``
        more epochs of this speed would take (what a later fit, the coarse specialist's, needs within the cap)."""
        optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
        n_batches = max(1, settings.samples_per_epoch // settings.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=epochs * n_batches,
                                                        pct_start=0.15)
        val_nc_t = torch.as_tensor(val_nc_)

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
        for epoch in range(epochs):
            net.train()
            total, count = 0.0, 0
            for idx, x, has_nc in _BatchProducer(augmenter_, split.train, settings.batch_size, n_batches, batch_seed(epoch)):
                out = forward(torch.as_tensor(x))
                loss = losses(out, idx, has_nc)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            val_out = evaluate(net, x_val_)
            val_loss = float(losses(val_out, val_idx, val_nc_))
            val_acc = float((val_out["size_logits"][val_nc_t].argmax(1)
                             == size_t[torch.as_tensor(val_idx[val_nc_])]).float().mean())
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
        bar.close()
        net.load_state_dict(best[1])
        net.eval()
        return history, best[2], stopped

    with_coarse = settings.coarse_epochs > 0 and augmentation.lab_fraction < 1.0
    history, best_epoch, stopped = fit(model, augmenter, x_val, val_nc, settings.max_epochs, settings.learning_rate,
                                       lambda epoch: settings.seed * 1000 + epoch, "training",
                                       reserve_epochs=settings.coarse_epochs if with_coarse else 0)

    def calibrate(net, augmenter_, x_val_, val_nc_, seed):
        """Temperatures on validation patterns with nanocrystals; out-of-distribution statistics of training
        features with the threshold from held-out validation features."""
        val_out = evaluate(net, x_val_)
        nc_t = torch.as_tensor(val_nc_)
        t_size = fit_temperature(val_out["size_logits"][nc_t].numpy(), y_size[val_idx[val_nc_]])
        t_disp = fit_temperature(val_out["dispersion_logits"][nc_t].numpy(), y_disp[val_idx[val_nc_]])
        rng_tr = np.random.default_rng(seed + 1)
        x_tr, tr_meta = augmenter_.with_lattice_jitter(rng_tr, split.train).sample(
            np.random.default_rng(seed).choice(split.train, 8192), rng_tr)
        stats = fit_feature_statistics(evaluate(net, x_tr[tr_meta["fraction"] > 0])["features"].numpy(),
                                       quantile=settings.ood_quantile, reference=val_out["features"][nc_t].numpy())
        tensors = {
            "calibration.temperature_size": torch.tensor([t_size], dtype=torch.float32),
            "calibration.temperature_dispersion": torch.tensor([t_disp], dtype=torch.float32),
            "ood.feature_mean": torch.as_tensor(stats["feature_mean"]),
            "ood.feature_precision": torch.as_tensor(stats["feature_precision"]),
            "ood.threshold": torch.as_tensor(stats["threshold"]),
        }
        return t_size, t_disp, tensors

    t_size, t_disp, tensors = calibrate(model, augmenter, x_val, val_nc, settings.seed + 2)
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
        x_val_c, val_meta_c = augmenter_c.sample(val_idx, np.random.default_rng(settings.seed + 11))
        val_nc_c = val_meta_c["fraction"] > 0
        specialist = copy.deepcopy(model)
        c_history, c_best, c_stopped = fit(specialist, augmenter_c, x_val_c, val_nc_c, settings.coarse_epochs,
                                           settings.coarse_learning_rate, lambda epoch: [settings.seed, 1, epoch],
                                           "coarse specialist")
        ct_size, ct_disp, c_tensors = calibrate(specialist, augmenter_c, x_val_c, val_nc_c, settings.seed + 12)
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
