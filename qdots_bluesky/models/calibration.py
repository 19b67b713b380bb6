"""Probability calibration and out-of-distribution statistics for a trained network (NumPy/SciPy only).

The trainer calls these on a held-out (validation) set and stores the results in the model
bundle (:func:`calibration_tensors` gives the tensors under their bundle names); the predictor
applies them.

- Temperature scaling (Guo et al. 2017): calibrated probabilities softmax(logits / T), with T
  minimising the negative log-likelihood of the held-out labels (:func:`fit_temperature`,
  L-BFGS on log T). T > 1 softens an overconfident network.
- Expected calibration error (:func:`expected_calibration_error`): the top-label ECE with equal-width
  confidence bins, sum_b (n_b / N) |accuracy_b - confidence_b|.
- Out-of-distribution score (:func:`fit_feature_statistics`, :func:`mahalanobis_distance`): the
  Mahalanobis distance of the pooled 32-feature vector to the Gaussian fitted to the held-out
  features (covariance shrunk towards a scaled identity so dead or collinear channels stay
  invertible); the threshold is a high quantile of the held-out distances times a margin.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .bundle import (
    T_DISPERSION_TEMPERATURE,
    T_FEATURE_MEAN,
    T_FEATURE_PRECISION,
    T_OOD_THRESHOLD,
    T_SIZE_TEMPERATURE,
)

#: Temperatures are searched within these bounds.
TEMPERATURE_BOUNDS = (0.01, 100.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _check_logits_labels(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(_to_numpy(logits), dtype=np.float64)
    y = np.asarray(_to_numpy(labels))
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits have shape {z.shape}; accepted: (n_samples >= 1, n_classes >= 2)")
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels have shape {y.shape} and dtype {y.dtype}; accepted: ({z.shape[0]},) integer class indices")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels span {y.min()}..{y.max()}; accepted: 0..{z.shape[1] - 1}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or infinite values; accepted: finite logits")
    return z, y.astype(np.intp)


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature T minimising the NLL of ``labels`` under softmax(logits / T).

    ``logits``: (n, n_classes) array (NumPy or torch), ``labels``: (n,) integer classes.
    Solved by L-BFGS-B on log T within :data:`TEMPERATURE_BOUNDS`, with the analytic gradient.
    """
    from scipy.optimize import minimize

    z, y = _check_logits_labels(logits, labels)
    z_true = z[np.arange(z.shape[0]), y]

    def nll(log_t: np.ndarray) -> tuple[float, np.ndarray]:
        s = float(np.exp(-log_t[0]))  # 1 / T
        a = z * s
        m = a.max(axis=1, keepdims=True)
        e = np.exp(a - m)
        tot = e.sum(axis=1)
        value = float(np.mean(np.log(tot) + m[:, 0] - z_true * s))
        expected = (e * z).sum(axis=1) / tot  # E_p[z]
        grad = -s * float(np.mean(expected - z_true))
        return value, np.array([grad])

    lo, hi = np.log(TEMPERATURE_BOUNDS)
    res = minimize(nll, x0=np.array([0.0]), jac=True, method="L-BFGS-B", bounds=[(lo, hi)],
                   options={"maxiter": 200, "ftol": 1e-12, "gtol": 1e-9})
    return float(np.exp(res.x[0]))


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width confidence bins on [0, 1].

    ``probs``: (n, n_classes) probabilities, ``labels``: (n,) integer classes.
    """
    p, y = _check_logits_labels(probs, labels)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins={n_bins}; accepted: an integer >= 1")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    b = np.minimum((conf * n_bins).astype(np.intp), n_bins - 1)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=correct, minlength=n_bins)
    return float(np.sum(np.abs(sum_acc - sum_conf)) / p.shape[0])


def mahalanobis_distance(features: Any, mean: Any, precision: Any) -> np.ndarray:
    """Mahalanobis distances (n,) of ``features`` (n, d) to ``mean`` (d,) with ``precision`` (d, d)."""
    f = np.asarray(_to_numpy(features), dtype=np.float64)
    mu = np.asarray(_to_numpy(mean), dtype=np.float64).reshape(-1)
    P = np.asarray(_to_numpy(precision), dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != mu.size or P.shape != (mu.size, mu.size):
        raise ValueError(f"features {f.shape}, mean {mu.shape}, precision {P.shape} do not fit: need (n, d), (d,), (d, d)")
    d = f - mu
    return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", d, P, d), 0.0))


def fit_feature_statistics(features: Any, *, quantile: float = 0.999, margin: float = 1.0, shrinkage: float = 0.01,
                           reference: Any = None) -> dict[str, np.ndarray]:
    """Gaussian statistics of pooled features for the out-of-distribution score.

    ``features``: (n, d) features of in-distribution patterns (preferably held-out ones, with the
    same augmentation as training). Returns float32 ``feature_mean`` (d,), ``feature_precision``
    (d, d) — the inverse of (1 - shrinkage) * cov + shrinkage * (trace(cov) / d) * I — and
    ``threshold`` (1,): ``margin`` times the ``quantile`` of the distances of ``reference``
    (default: ``features``) — a fraction 1 - quantile of such patterns gets flagged.
    """
    f = np.asarray(_to_numpy(features), dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features have shape {f.shape}; accepted: (n >= 2, d)")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values")
    if not 0.0 < quantile <= 1.0 or margin <= 0 or not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"quantile={quantile}, margin={margin}, shrinkage={shrinkage}; accepted: 0 < quantile <= 1, "
                         "margin > 0, 0 <= shrinkage <= 1")
    d = f.shape[1]
    mean = f.mean(axis=0)
    cov = np.atleast_2d(np.cov(f, rowvar=False))
    scale = np.trace(cov) / d
    if not scale > 0:
        scale = 1e-12
    cov = (1.0 - shrinkage) * cov + shrinkage * scale * np.eye(d) + 1e-12 * scale * np.eye(d)
    precision = np.linalg.inv(cov)
    precision = 0.5 * (precision + precision.T)
    ref = f if reference is None else np.asarray(_to_numpy(reference), dtype=np.float64)
    dist = mahalanobis_distance(ref, mean, precision)
    threshold = margin * float(np.quantile(dist, quantile))
    return {
        "feature_mean": mean.astype(np.float32),
        "feature_precision": precision.astype(np.float32),
        "threshold": np.array([threshold], dtype=np.float32),
    }


def calibration_tensors(size_logits: Any, size_labels: Any, dispersion_logits: Any, dispersion_labels: Any,
                        features: Any, **feature_options: Any) -> dict[str, np.ndarray]:
    """Every extra tensor a model bundle needs, under its bundle name, fitted on held-out outputs.

    Inputs are the network outputs on a validation set (``size_logits`` (n, 17),
    ``dispersion_logits`` (n, 4), ``features`` (n, 32)) and the true class indices.
    ``feature_options`` go to :func:`fit_feature_statistics`.
    """
    return named_calibration_tensors(fit_temperature(size_logits, size_labels),
                                     fit_temperature(dispersion_logits, dispersion_labels),
                                     fit_feature_statistics(features, **feature_options))


def named_calibration_tensors(temperature_size: float, temperature_dispersion: float,
                              feature_statistics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fitted calibration under its bundle tensor names, float32: the size and dispersion temperatures
    (:func:`fit_temperature`) and the out-of-distribution statistics (:func:`fit_feature_statistics`)."""
    return {
        T_SIZE_TEMPERATURE: np.array([temperature_size], dtype=np.float32),
        T_DISPERSION_TEMPERATURE: np.array([temperature_dispersion], dtype=np.float32),
        T_FEATURE_MEAN: np.asarray(feature_statistics["feature_mean"], dtype=np.float32),
        T_FEATURE_PRECISION: np.asarray(feature_statistics["feature_precision"], dtype=np.float32),
        T_OOD_THRESHOLD: np.asarray(feature_statistics["threshold"], dtype=np.float32),
    }


def _to_numpy(a: Any) -> Any:
    """Torch tensors to NumPy without importing torch."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        return a.detach().cpu().numpy()
    return a
