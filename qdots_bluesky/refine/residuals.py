"""How much serially correlated residuals understate a least-squares fit's e.s.d.s.

The covariance of a least-squares fit, scaled by the reduced chi^2, holds for independent residuals. A fit of
measured dots leaves systematic residuals: neighbouring points miss together, over a peak's width, so the data
carry fewer independent pieces of information than points and the e.s.d.s come out too small (Berar & Lelann
1991, J. Appl. Cryst. 24, 1). The factor returned here is sqrt(tau), tau = 1 + 2 sum_k rho_k the integrated
autocorrelation time of the weighted residuals, estimated by Geyer's initial positive sequence (Geyer 1992, Stat.
Sci. 7, 473): tau = -1 + 2 sum_m Gamma_m with Gamma_m = rho_(2m) + rho_(2m+1), summed while Gamma_m > 0. It is
~1 for independent residuals (a model that describes the data up to noise) and grows with the width over which
the residuals are correlated (peak widths in points for a misfit of peak shapes). Unlike the AR(1) form
sqrt((1 + rho_1) / (1 - rho_1)), it does not extrapolate the lag-1 correlation of finely sampled data to
infinitely long correlations.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["esd_correlation_factor"]


def esd_correlation_factor(weighted_residuals: np.ndarray) -> float:
    """sqrt of the integrated autocorrelation time of ``weighted_residuals`` (points in measurement order), >= 1."""
    r = np.asarray(weighted_residuals, dtype=float).ravel()
    r = r[np.isfinite(r)]
    if r.size < 8:
        return 1.0
    r = r - r.mean()
    peak = float(np.max(np.abs(r)))
    if not peak > 0 or not np.isfinite(peak):
        return 1.0
    r = r / peak  # the products below stay finite for any scale of residuals
    n = r.size
    # zero-padded to at least 2n, the linear (not circular) autocorrelation, at a length the FFT factors well (2n of a
    # prime n, e.g. 4967 synchrotron points, cost 1.5 ms; the padding beyond 2n adds zeros and changes nothing)
    size = scipy.fft.next_fast_len(2 * n, real=True)
    spectrum = scipy.fft.rfft(r, size)
    acf = scipy.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    acf = acf / acf[0]
    m = n // 2
    gammas = acf[0:2 * m:2] + acf[1:2 * m:2]  # Gamma_m = rho_2m + rho_(2m+1), Gamma_0 = 1 + rho_1
    stop = np.flatnonzero(gammas <= 0)
    tau = -1.0 + 2.0 * float(gammas[: stop[0] if stop.size else gammas.size].sum())
    return float(np.sqrt(max(tau, 1.0)))
