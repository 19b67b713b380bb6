"""The solvent probe: how far the network's size moves when more solvent is mixed into a pattern.

A size does not depend on how much solvent dilutes the dots, and on patterns like its training ones the network
honours that: mixing in a share of a solvent model moves its size by a fraction of its uncertainty. On patterns
unlike them, e.g. measured colloids whose peaks are broader than the training's profile prior, the size follows the
solvent share (README, *Measured patterns*: the same colloids read ~0.13 nm larger with their solvent subtracted).
So a bundle may hold solvent patterns on its grid (``calibration.solvent_probe``, written at training from the
built-in solvent models); each is mixed into the standardized pattern as the training's augmentation mixes a solvent:
on the measured points only, both at equal area there, ``X' = (1 - PROBE_SHARE) X / <X> + PROBE_SHARE S / <S>``, then
padded as the standardization pads (the mean of the ``N_PAD_MEAN`` outermost measured points; a padded stretch is
the constant run at an end of the grid) and scaled to mean 1. The network sizes the mixtures, and the largest shift of
ln D and ln D_V is added in quadrature to their standard deviations *before* the power-law interval calibration,
which is fitted with the probe in place (so the intervals keep their coverage on simulations and widen where the
answer depends on the solvent). Pure NumPy: the network pass is the caller's.
"""
from __future__ import annotations

import numpy as np

from ..standardize import N_PAD_MEAN

__all__ = ["PROBE_SHARE", "PROBED_COLUMNS", "padded_ends", "mixed_patterns", "probe_shift", "probe_widened_std", "check_probes"]

#: Share of the solvent pattern in the probe's mixtures (the dots keep 1 - PROBE_SHARE of the area).
PROBE_SHARE = 0.3
#: Continuous outputs whose standard deviations the probe widens: ln D (number-weighted) and ln D_V.
PROBED_COLUMNS = (0, 1)


def check_probes(probes: np.ndarray, n_points: int) -> np.ndarray:
    """The probe patterns as float32 (k, n_points); ValueError unless finite, positive mean, on the grid."""
    probes = np.asarray(probes, dtype=np.float32)
    if probes.ndim != 2 or probes.shape[0] < 1 or probes.shape[1] != n_points:
        raise ValueError(f"solvent probe of shape {probes.shape}; accepted: (k >= 1, {n_points}) patterns on the grid")
    if not (np.isfinite(probes).all() and (probes.mean(axis=1) > 0).all()):
        raise ValueError("solvent probe patterns must be finite with a positive mean")
    return probes


def padded_ends(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of standardized patterns, the number of padded grid points at the low and at the high end: the
    length of the constant run at that end (the standardization pads with one value), 0 where the end value does
    not repeat."""
    X = np.asarray(X)
    n = X.shape[1]

    def run(rows: np.ndarray) -> np.ndarray:
        same = rows == rows[:, :1]
        length = np.where(same.all(axis=1), n, np.argmin(same, axis=1))
        return np.where(length > 1, length, 0)

    return run(X), run(X[:, ::-1])


def mixed_patterns(X: np.ndarray, probes: np.ndarray, share: float = PROBE_SHARE) -> np.ndarray:
    """The k mixtures of every standardized pattern: float32 (k * n, n_points), the k-th block X mixed with probe k
    on its measured points (:func:`padded_ends`), each at equal area there, padded again as the standardization pads
    and scaled to mean 1."""
    X = np.asarray(X, dtype=np.float64)
    probes = np.asarray(probes, dtype=np.float64)
    k, (n, m) = probes.shape[0], X.shape
    out = np.empty((k, n, m))
    lo, hi = padded_ends(X)
    for i in range(n):
        a, b = int(lo[i]), m - int(hi[i])
        if b - a < 2 * N_PAD_MEAN:  # (nothing measured to speak of: leave the pattern as it is)
            out[:, i] = X[i]
            continue
        x = X[i, a:b] / X[i, a:b].mean()
        s = probes[:, a:b] / probes[:, a:b].mean(axis=1, keepdims=True)
        mix = (1.0 - share) * x[None, :] + share * s
        out[:, i, a:b] = mix
        out[:, i, :a] = mix[:, :N_PAD_MEAN].mean(axis=1, keepdims=True)
        out[:, i, b:] = mix[:, -N_PAD_MEAN:].mean(axis=1, keepdims=True)
    out /= out.mean(axis=2, keepdims=True)
    return out.reshape(-1, m).astype(np.float32)


def probe_shift(mean: np.ndarray, mixed_mean: np.ndarray) -> np.ndarray:
    """Per row and probed column, the largest |mixed - plain| over the k mixtures: ``mean`` (n, quantities) of the
    plain patterns, ``mixed_mean`` (k * n, quantities) in :func:`mixed_patterns`' order. Returns (n, len(PROBED_COLUMNS))."""
    mean = np.asarray(mean, dtype=np.float64)
    n = mean.shape[0]
    cols = list(PROBED_COLUMNS)
    if n == 0:
        return np.zeros((0, len(cols)))
    mixed = np.asarray(mixed_mean, dtype=np.float64).reshape(-1, n, mean.shape[1])
    return np.abs(mixed[:, :, cols] - mean[None, :, cols]).max(axis=0)


def probe_widened_std(std: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``std`` (n, quantities) with the probed columns sqrt(std^2 + shift^2); the other columns unchanged."""
    out = np.array(std, dtype=np.float64, copy=True)
    cols = list(PROBED_COLUMNS)
    out[:, cols] = np.hypot(out[:, cols], np.asarray(shift, dtype=np.float64))
    return out
