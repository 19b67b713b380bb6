"""Continuous estimates with uncertainties: from the network's Gaussian outputs to sizes, classes and coverage.

The continuous head gives, for each quantity (ln number-weighted mean diameter, ln volume-weighted mean
diameter, dispersion, strain), a mean and a standard deviation. Calibration maps each standard deviation
through a power law fitted on held-out simulations so that the 68.3 % interval holds 68.3 % of them at every
level of uncertainty (:func:`fit_interval_calibration`). The size-class probabilities are the Gaussian's mass in each class's interval of
ln D (edges halfway between classes; the end classes take the tails), so they come from the same output.
NumPy only.
"""
from __future__ import annotations

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
