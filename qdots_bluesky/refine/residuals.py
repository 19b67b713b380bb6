"""How much serially correlated residuals understate a least-squares fit's e.s.d.s.

The covariance of a least-squares fit, scaled by the reduced chi^2, holds for independent residuals. A fit of
measured dots leaves systematic residuals: neighbouring points miss together, over a peak's width, so the data
carry fewer independent pieces of information than points and the e.s.d.s come out too small (Berar & Lelann
1991, J. Appl. Cryst. 24, 1). The factor returned here is sqrt(tau), tau = 1 + 2 sum_k rho_k the integrated
autocorrelation time of the weighted residuals, the sum of their autocorrelations rho_k cut by Geyer's initial
positive sequence (Geyer 1992, Stat. Sci. 7, 473: pairs rho_(2m-1) + rho_(2m) are summed while positive). It is
~1 for independent residuals (a model that describes the data up to noise) and grows with the width over which
the residuals are correlated (peak widths in points for a misfit of peak shapes). Unlike the AR(1) form
sqrt((1 + rho_1) / (1 - rho_1)), it does not extrapolate the lag-1 correlation of finely sampled data to
infinitely long correlations.
"""
from __future__ import annotations

import numpy as np

__all__ = ["esd_correlation_factor"]


def esd_correlation_factor(weighted_residuals: np.ndarray) -> float:
    """sqrt of the integrated autocorrelation time of ``weighted_residuals`` (points in measurement order), >= 1."""
    r = np.asarray(weighted_residuals, dtype=float).ravel()
    r = r[np.isfinite(r)]
    if r.size < 8:
        return 1.0
    r = r - r.mean()
    n = r.size
    spectrum = np.fft.rfft(r, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[:n]
    if not acf[0] > 0:
        return 1.0
    acf = acf / acf[0]
    pairs = acf[1:n - 1:2][: (n - 2) // 2] + acf[2:n:2][: (n - 2) // 2]
    stop = np.flatnonzero(pairs <= 0)
    total = float(pairs[: stop[0] if stop.size else pairs.size].sum())
    return float(np.sqrt(max(1.0 + 2.0 * total, 1.0)))
