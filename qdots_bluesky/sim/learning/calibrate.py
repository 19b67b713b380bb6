"""Calibrating a trained network on held-out simulations, and measuring it on the held-out tests.

:func:`calibrate` fits the temperatures of the class heads and the continuous head's interval factors on the
validation patterns with nanocrystals (the size's standard deviations widened by the solvent probe first, where the
training uses it), and the out-of-distribution statistics on training features (threshold from
the validation features); the tensors go into the bundle under its ``T_*`` names. :func:`reference_metrics`,
:func:`continuous_metrics` and :func:`blank_metrics` give the figures stored in the bundle's ``metrics``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...models.bundle import T_CONTINUOUS_INTERVAL, T_OOD_THRESHOLD, T_SOLVENT_PROBE
from ...models.calibration import (
    expected_calibration_error,
    fit_feature_statistics,
    fit_temperature,
    named_calibration_tensors,
)
from ...models.continuous import calibrated_std, class_probabilities, fit_interval_calibration
from ...models.engine import continuous_estimates
from ...models.solvent_probe import mixed_patterns, probe_shift, probe_widened_std
from .augment import Augmenter
from .fitting import network_outputs
from .settings import TrainingSettings
from .sources import (
    REFERENCE_FRACTIONS,
    REFERENCE_SNRS,
    REFERENCE_SOLVENTS,
    DrawnSet,
    Source,
    blank_test_set,
    class_labels,
    draw_set,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...models.network import QDotsNet


@dataclass
class Calibration:
    """A network's calibration: the fitted temperatures (float64, as fitted) and the bundle tensors (float32)."""

    temperature_size: float
    temperature_dispersion: float
    tensors: dict[str, np.ndarray]

    @property
    def ood_threshold(self) -> float:
        """Mahalanobis distance above which a pattern is flagged out of distribution."""
        return float(self.tensors[T_OOD_THRESHOLD][0])


def probe_outputs_shift(net: "QDotsNet", x: np.ndarray, mean: np.ndarray, probes: np.ndarray,
                        instrument: np.ndarray | None = None) -> np.ndarray:
    """The solvent probe's shift of ln D and ln D_V (:func:`~qdots_bluesky.models.solvent_probe.probe_shift`) for
    patterns ``x`` whose continuous means are ``mean``, through the torch network."""
    k, shifts = probes.shape[0], []
    for s in range(0, x.shape[0], 1024):  # (at most k x 1024 mixtures held)
        rows = slice(s, s + 1024)
        mixed_instrument = None if instrument is None else np.tile(instrument[rows], (k, 1))
        mixed = network_outputs(net, mixed_patterns(x[rows], probes), mixed_instrument)["continuous"].numpy()
        shifts.append(probe_shift(mean[rows], continuous_estimates(mixed, net.config)[0]))
    return np.concatenate(shifts)


def calibrate(net: "QDotsNet", source: Source, validation: DrawnSet, settings: TrainingSettings, seed: int,
              train_indices: np.ndarray, probes: np.ndarray | None = None) -> Calibration:
    """Temperatures and continuous-interval factors on ``validation`` patterns with nanocrystals; out-of-distribution
    statistics of training features (a set drawn from ``source`` with ``seed``: every population 4 times, or 8192 of
    the library's ``train_indices``) with the threshold from the validation features. For a network with an
    instrument input the validation patterns are told their instrument as in training (about half of them), and one
    power law serves both kinds of answer (README, *A known instrument resolution*). With solvent ``probes``
    (:func:`~.train.probe_patterns`) the interval factors are fitted on the probe-widened standard deviations and
    the probes go into the bundle (:mod:`~qdots_bluesky.models.solvent_probe`)."""
    import torch

    x_val, val_t, val_nc = validation
    val_out = network_outputs(net, x_val, val_t.get("instrument"))
    nc = torch.as_tensor(val_nc)
    t_size = fit_temperature(val_out["size_logits"][nc].numpy(), val_t["size_class"][val_nc])
    t_disp = fit_temperature(val_out["dispersion_logits"][nc].numpy(), val_t["dispersion_class"][val_nc])
    continuous = bool(net.config["continuous_head"])
    if continuous:
        x_tr, _, tr_nc = draw_set(source, seed, repeats=4)
    else:
        x_tr, _, tr_nc = draw_set(source, seed, indices=np.random.default_rng(seed).choice(train_indices, 8192))
    stats = fit_feature_statistics(network_outputs(net, x_tr[tr_nc][:8192])["features"].numpy(),
                                   quantile=settings.ood_quantile, reference=val_out["features"][nc].numpy())
    tensors = named_calibration_tensors(t_size, t_disp, stats)
    if continuous:
        mean, std = continuous_estimates(val_out["continuous"][nc].numpy(), net.config)
        if probes is not None:
            instrument = val_t.get("instrument")
            std = probe_widened_std(std, probe_outputs_shift(net, x_val[val_nc], mean, probes,
                                                             None if instrument is None else instrument[val_nc]))
            tensors[T_SOLVENT_PROBE] = np.asarray(probes, dtype=np.float32)
        tensors[T_CONTINUOUS_INTERVAL] = np.asarray(fit_interval_calibration(val_t["continuous"][val_nc] - mean, std),
                                                    dtype=np.float32)
    return Calibration(t_size, t_disp, tensors)


def continuous_metrics(net: "QDotsNet", calibration: Calibration, x: np.ndarray, truth_nm: np.ndarray,
                       size_classes: np.ndarray, meta: dict[str, np.ndarray] | None = None,
                       instrument: np.ndarray | None = None) -> dict:
    """MAE (nm) of the number-weighted size and the coverage of its 68 / 95 % intervals (overall and per condition
    in ``meta``), and the class accuracy of the continuous estimate (``instrument``: the network's instrument
    condition per row, None: unknown)."""
    mean, std = continuous_estimates(network_outputs(net, x, instrument)["continuous"].numpy(), net.config)
    probes = calibration.tensors.get(T_SOLVENT_PROBE)
    if probes is not None:
        std = probe_widened_std(std, probe_outputs_shift(net, x, mean, probes, instrument))
    std = calibrated_std(std, calibration.tensors[T_CONTINUOUS_INTERVAL])
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


def reference_metrics(outputs: dict, calibration: Calibration, truth_class: np.ndarray, truth_dispersion: np.ndarray,
                      truth_nm: np.ndarray, size_classes: np.ndarray, conditions: dict[str, np.ndarray]) -> dict:
    """Size and dispersion accuracy, size MAE (nm) and calibration error of the network ``outputs`` on the reference
    test set (:func:`~.sources.reference_test_set`), overall and by nanocrystal fraction, SNR and solvent."""
    import torch

    p_size = torch.softmax(outputs["size_logits"] / calibration.temperature_size, 1).numpy()
    p_disp = torch.softmax(outputs["dispersion_logits"] / calibration.temperature_dispersion, 1).numpy()
    pred = p_size.argmax(1)
    hit = pred == truth_class
    return {
        "test_patterns": int(truth_class.size),
        "test_size_accuracy": float(np.mean(hit)),
        "test_size_within_one_class": float(np.mean(np.abs(pred - truth_class) <= 1)),
        "test_dispersion_accuracy": float(np.mean(p_disp.argmax(1) == truth_dispersion)),
        "test_size_mae_nm": float(np.mean(np.abs(p_size @ size_classes - truth_nm))),
        "test_ece_size": float(expected_calibration_error(p_size, truth_class)),
        "test_ece_size_uncalibrated": float(expected_calibration_error(
            torch.softmax(outputs["size_logits"], 1).numpy(), truth_class)),
        "test_ece_dispersion": float(expected_calibration_error(p_disp, truth_dispersion)),
        "temperature_size": float(calibration.temperature_size),
        "temperature_dispersion": float(calibration.temperature_dispersion),
        "ood_threshold": calibration.ood_threshold,
        "test_size_accuracy_by_fraction": {str(f): float(np.mean(hit[conditions["fraction"] == f]))
                                           for f in REFERENCE_FRACTIONS},
        "test_size_accuracy_by_snr": {str(s): float(np.mean(hit[conditions["snr"] == s])) for s in REFERENCE_SNRS},
        "test_size_accuracy_by_solvent": {s: float(np.mean(hit[conditions["solvent"] == s]))
                                          for s in REFERENCE_SOLVENTS},
    }


def blank_metrics(net: "QDotsNet", augmenter: Augmenter, outputs: dict, seed: int) -> dict:
    """The presence head: share of blanks (:func:`~.sources.blank_test_set`, without solvents none) it detects and
    share of reference test patterns (``outputs``) whose nanocrystals it misses."""
    out = {}
    blanks = blank_test_set(augmenter, seed)
    if blanks is not None:
        out["test_blank_detected"] = float(np.mean(network_outputs(net, blanks[0])["nanocrystal_logit"].numpy() < 0))
    out["test_nanocrystals_missed"] = float(np.mean(outputs["nanocrystal_logit"].numpy() < 0))
    return out
