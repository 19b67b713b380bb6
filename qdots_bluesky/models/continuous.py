"""Continuous estimates with uncertainties: from the network's Gaussian outputs to sizes, classes and coverage.

The continuous head gives, for each quantity (ln number-weighted mean diameter, ln volume-weighted mean
diameter, dispersion, strain), a mean and a standard deviation. Calibration maps each standard deviation
through a power law fitted on held-out simulations so that the 68.3 % interval holds 68.3 % of them at every
level of uncertainty (:func:`fit_interval_calibration`). The size-class probabilities are the Gaussian's mass in each class's interval of
ln D (edges halfway between classes; the end classes take the tails), so they come from the same output.
NumPy only.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.special import ndtr

#: Share of a Gaussian within one standard deviation.
ONE_SIGMA = 0.6826894921370859


def class_probabilities(log_mean: np.ndarray, log_std: np.ndarray, classes_nm: np.ndarray) -> np.ndarray:
    """Probability of each size class (rows x classes) for Gaussian estimates of ln D (``log_mean`` +- ``log_std``):
    the mass between the ln of the midpoints of neighbouring classes, the end classes with the tails."""
    classes_nm = np.asarray(classes_nm, dtype=np.float64)
    edges = np.log(0.5 * (classes_nm[1:] + classes_nm[:-1]))
    mu = np.asarray(log_mean, dtype=np.float64)[:, None]
    sd = np.maximum(np.asarray(log_std, dtype=np.float64), 1e-12)[:, None]
    cdf = ndtr((edges[None, :] - mu) / sd)
    ones = np.ones((cdf.shape[0], 1))
    return np.diff(np.concatenate([0.0 * ones, cdf, ones], axis=1), axis=1)


def fit_interval_calibration(error: np.ndarray, std: np.ndarray, n_bins: int = 8) -> np.ndarray:
    """Calibration (2 x quantities: ln a, b) of standard deviations as a power law, std_cal = a std^b.

    ``error``, ``std``: rows x quantities on held-out simulations (truth - mean, and the network's std). The rows
    are split into ``n_bins`` bins by std; in each, the factor that makes 68.3 % of the rows fall within one
    calibrated std is taken, and ln(factor x std) is fitted by a line in ln(std) (b within 0.5..2). With b = 1
    this is one factor per quantity; b > 1 widens the large uncertainties (noisy, dilute patterns) more than the
    small ones, which one factor cannot do.
    """
    error = np.abs(np.asarray(error, dtype=np.float64))
    std = np.asarray(std, dtype=np.float64)
    if error.shape != std.shape or error.ndim != 2 or error.shape[0] < 10 * n_bins:
        raise ValueError(f"error {error.shape} and std {std.shape}; accepted: equal shapes (rows >= {10 * n_bins}, "
                         "quantities)")
    if not (np.isfinite(error).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError("errors and standard deviations must be finite, standard deviations > 0")
    out = np.empty((2, error.shape[1]))
    for j in range(error.shape[1]):
        order = np.argsort(std[:, j])
        x, y = [], []
        for rows in np.array_split(order, n_bins):
            s = std[rows, j]
            x.append(np.log(np.median(s)))
            y.append(np.log(max(np.quantile(error[rows, j] / s, ONE_SIGMA), 1e-3) * np.median(s)))
        x, y = np.asarray(x), np.asarray(y)
        b = float(np.clip(np.polyfit(x, y, 1)[0], 0.5, 2.0)) if np.ptp(x) > 1e-6 else 1.0
        out[:, j] = (float(np.mean(y - b * x)), b)
    return out


def calibrated_std(std: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """std_cal = a std^b per quantity (columns), ``calibration`` from :func:`fit_interval_calibration`."""
    calibration = np.asarray(calibration, dtype=np.float64)
    return np.exp(calibration[0] + calibration[1] * np.log(np.maximum(np.asarray(std, dtype=np.float64), 1e-300)))


def fit_interval_scale(z: np.ndarray) -> np.ndarray:
    """Per column of z-scores (rows x quantities, (truth - mean) / std on held-out data): the factor k by which the
    standard deviations must be multiplied so that 68.3 % of the rows fall within one of them (at least 1e-3)."""
    z = np.abs(np.asarray(z, dtype=np.float64))
    if z.ndim != 2 or z.shape[0] < 10 or not np.isfinite(z).all():
        raise ValueError(f"z-scores of shape {z.shape}; accepted: (rows >= 10, quantities), finite")
    return np.maximum(np.quantile(z, ONE_SIGMA, axis=0), 1e-3)


def coverage(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float = 1.0) -> float:
    """Share of rows with |truth - mean| <= k std."""
    truth, mean, std = (np.asarray(a, dtype=np.float64) for a in (truth, mean, std))
    return float(np.mean(np.abs(truth - mean) <= k * std))


def widened_std(std: np.ndarray, covariate: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Standard deviations (rows x quantities) widened by exp(slope x covariate) per quantity, the covariate (one per
    row, e.g. the estimated dispersion) taken as at least 0: what one power law of the network's own width misses."""
    cov = np.maximum(np.asarray(covariate, dtype=np.float64), 0.0)[:, None]
    return np.asarray(std, dtype=np.float64) * np.exp(np.asarray(slope, dtype=np.float64)[None, :] * cov)


def fit_covariate_slope(error: np.ndarray, std: np.ndarray, covariate: np.ndarray, n_bins: int = 4,
                        slopes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per quantity, the slope of :func:`widened_std` that makes the 68.3 % intervals hold alike in ``n_bins``
    quantile bins of the covariate (least spread of their log factors over a grid of ``slopes``), and the factor
    (per quantity) that then makes 68.3 % hold overall. ``error``, ``std``: rows x quantities on held-out data."""
    error = np.abs(np.asarray(error, dtype=np.float64))
    std = np.asarray(std, dtype=np.float64)
    cov = np.maximum(np.asarray(covariate, dtype=np.float64), 0.0)
    if error.shape != std.shape or error.ndim != 2 or cov.shape != (error.shape[0],) or error.shape[0] < 10 * n_bins:
        raise ValueError(f"error {error.shape}, std {std.shape}, covariate {cov.shape}; accepted: (rows >= "
                         f"{10 * n_bins}, quantities) and one covariate per row")
    slopes = np.linspace(-2.0, 12.0, 57) if slopes is None else np.asarray(slopes, dtype=np.float64)
    bins = np.array_split(np.argsort(cov, kind="stable"), n_bins)
    best = np.zeros(error.shape[1])
    for j in range(error.shape[1]):
        spread = [np.std([np.log(max(np.quantile(error[b, j] / (std[b, j] * np.exp(c * cov[b])), ONE_SIGMA), 1e-6))
                          for b in bins]) for c in slopes]
        best[j] = slopes[int(np.argmin(spread))]
    factor = np.quantile(error / widened_std(std, cov, best), ONE_SIGMA, axis=0)
    return best, np.maximum(factor, 1e-3)


def trained_range_nm(training: Mapping[str, Any], size_classes_nm: np.ndarray, continuous: bool) -> tuple[float, float]:
    """Number-weighted mean diameters (nm) the network was trained on.

    Continuous bundles: the ``population_ranges.mean_diameter_nm`` of their training; class-only bundles (and
    continuous ones without that record): the size classes widened by half a class step on each side.
    """
    ranges = (training.get("population_ranges") or {}).get("mean_diameter_nm") if continuous else None
    if ranges is not None:
        return float(ranges[0]), float(ranges[1])
    half = 0.5 * float(np.min(np.diff(size_classes_nm))) if size_classes_nm.size > 1 else 0.0
    return float(size_classes_nm[0]) - half, float(size_classes_nm[-1]) + half
