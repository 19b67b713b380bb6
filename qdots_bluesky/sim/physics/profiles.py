"""Peak-profile physics of measured patterns that the DSE of ideal clusters leaves out, as convolutions.

- :func:`instrument_profile`: an instrument's resolution, a Voigt profile of constant width on the measured
  axis (2theta for a laboratory diffractometer; about constant in Q over a synchrotron pattern's range);
- :func:`microstrain_broadening`: inhomogeneous strain (lattice spacings spread by a fraction around their
  mean, from dot to dot and within dots), which broadens every peak in proportion to Q: a Gaussian of
  constant width in ln Q.

Both work row by row on patterns sampled on one equispaced axis, by FFT with the profiles' exact transforms.
NumPy/SciPy only; units are those of the axis (Q in 1/A, 2theta in degrees).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["instrument_profile", "microstrain_broadening", "voigt_convolve", "GAUSS_TRANSFER_COEFF", "FWHM_PER_SIGMA"]

#: FWHM of a Gaussian over its standard deviation.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: A Gaussian of FWHM G has the transfer function exp(-GAUSS_TRANSFER_COEFF G^2 f^2) (f: frequency per unit of the axis).
GAUSS_TRANSFER_COEFF = 2.0 * np.pi**2 / FWHM_PER_SIGMA**2


def instrument_profile(y: np.ndarray, step: float, gauss_fwhm: np.ndarray, lorentz_fwhm: np.ndarray) -> np.ndarray:
    """Rows of ``y`` (patterns on one equispaced axis of ``step``) convolved each with its own Voigt profile of
    Gaussian and Lorentzian FWHMs (same unit as ``step``; 0 = none). By FFT with the profiles' exact transforms,
    exp(-2 pi^2 s^2 f^2) (s = FWHM / 2.3548) and exp(-pi FWHM |f|); the ends are extended by their end values so
    nothing wraps around. Keeps each row's area; float32."""
    y = np.asarray(y, dtype=np.float32)
    g = np.broadcast_to(np.asarray(gauss_fwhm, dtype=float), (y.shape[0],))
    lor = np.broadcast_to(np.asarray(lorentz_fwhm, dtype=float), (y.shape[0],))
    if not (np.all(g >= 0) and np.all(lor >= 0)):
        raise ValueError("instrument profile FWHMs must be >= 0")
    if y.shape[0] == 0 or not (g.any() or lor.any()):
        return y
    pad = int(np.ceil(8.0 * (g.max() + 4.0 * lor.max()) / step)) + 2
    n = scipy.fft.next_fast_len(y.shape[1] + 2 * pad, real=True)
    right = n - y.shape[1] - pad
    ext = np.concatenate([np.repeat(y[:, :1], pad, axis=1), y, np.repeat(y[:, -1:], right, axis=1)], axis=1)
    f = np.fft.rfftfreq(n, d=step).astype(np.float32)
    sigma = (g / FWHM_PER_SIGMA).astype(np.float32)
    transfer = np.exp(np.float32(-2.0 * np.pi**2) * sigma[:, None] ** 2 * f[None, :] ** 2
                      - np.float32(np.pi) * lor.astype(np.float32)[:, None] * f[None, :])
    out = scipy.fft.irfft(scipy.fft.rfft(ext, axis=1) * transfer, n=n, axis=1)
    return np.ascontiguousarray(out[:, pad:pad + y.shape[1]], dtype=np.float32)


def voigt_convolve(y: np.ndarray, step: float, gauss_fwhm: float, lorentz_fwhm: float, derivatives: bool = False,
                   max_fwhm: float | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``y`` (float64, equispaced axis of ``step``) convolved with one Voigt profile of Gaussian and
    Lorentzian FWHMs (unit of ``step``), as :func:`instrument_profile` but in float64 for least squares.

    ``derivatives``: also return d/d(gauss_fwhm^2) and d/d(lorentz_fwhm) of the result (exact, from the transfer
    function exp(-2 pi^2 (G / 2.3548)^2 f^2 - pi L |f|); by the Gaussian's squared FWHM, which adds in quadrature
    and whose derivative stays finite at 0). ``max_fwhm``: pad for this width (a fixed padding keeps
    the result smooth in the widths); default the widths given. The ends are extended by their end values.
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    g, lor = float(gauss_fwhm), float(lorentz_fwhm)
    if not (g >= 0 and lor >= 0):
        raise ValueError(f"Voigt FWHMs {g!r}, {lor!r}; accepted: >= 0")
    if g == 0 and lor == 0 and not derivatives:
        return y.copy()
    reach = max(g + 4.0 * lor, 5.0 * float(max_fwhm or 0.0))
    pad = int(np.ceil(8.0 * reach / step)) + 2
    n = scipy.fft.next_fast_len(y.shape[1] + 2 * pad, real=True)
    right = n - y.shape[1] - pad
    ext = np.concatenate([np.repeat(y[:, :1], pad, axis=1), y, np.repeat(y[:, -1:], right, axis=1)], axis=1)
    f = np.fft.rfftfreq(n, d=step)
    a = GAUSS_TRANSFER_COEFF
    transfer = np.exp(-a * g * g * f * f - np.pi * lor * f)
    spec = scipy.fft.rfft(ext, axis=1)
    cut = slice(pad, pad + y.shape[1])
    out = scipy.fft.irfft(spec * transfer, n=n, axis=1)[:, cut]
    if not derivatives:
        return out
    d_g = scipy.fft.irfft(spec * (transfer * (-a * f * f)), n=n, axis=1)[:, cut]
    d_l = scipy.fft.irfft(spec * (transfer * (-np.pi * f)), n=n, axis=1)[:, cut]
    return out, d_g, d_l


def microstrain_broadening(q: np.ndarray, y: np.ndarray, fwhm_fraction: np.ndarray, log_points: int = 8192) -> np.ndarray:
    """Rows of ``y`` (patterns on the equispaced Q grid ``q``, 1/A) broadened each by its own inhomogeneous strain:
    a Gaussian of FWHM ``fwhm_fraction`` x Q (the FWHM of the spread of d-spacings, as a fraction; 0 = none).

    A pattern whose lattice spacings are scaled by 1 + e is I(Q (1 + e)) (see ``lattice_jitter``): averaged over a
    Gaussian spread of e it is a convolution in ln Q of constant width. The rows are read on ``log_points``
    points equispaced in ln Q (linear interpolation), convolved there (:func:`instrument_profile`) and read back.
    Rows with no broadening are returned unchanged; float32.
    """
    q = np.asarray(q, dtype=np.float64)
    y = np.asarray(y, dtype=np.float32)
    k = np.broadcast_to(np.asarray(fwhm_fraction, dtype=float), (y.shape[0],))
    if not np.all((k >= 0) & (k < 0.5)):
        raise ValueError("microstrain FWHM fractions must be within 0 to 0.5")
    out = y.copy()
    rows = np.flatnonzero(k > 0)
    if rows.size == 0:
        return out
    ln_q = np.linspace(np.log(q[0]), np.log(q[-1]), int(log_points))
    step = ln_q[1] - ln_q[0]
    # equispaced q -> ln q grid and back: fractional indices and linear weights, shared by every row
    x = (np.exp(ln_q) - q[0]) / (q[1] - q[0])
    i = np.clip(x.astype(np.int64), 0, q.size - 2)
    t = (x - i).astype(np.float32)
    xb = (np.log(q) - ln_q[0]) / step
    ib = np.clip(xb.astype(np.int64), 0, ln_q.size - 2)
    tb = (xb - ib).astype(np.float32)
    for start in range(0, rows.size, 256):
        r = rows[start:start + 256]
        on_log = y[r][:, i] * (1.0 - t) + y[r][:, i + 1] * t
        broad = instrument_profile(on_log, step, k[r], 0.0)  # a Gaussian of FWHM k in ln Q
        out[r] = broad[:, ib] * (1.0 - tb) + broad[:, ib + 1] * tb
    return out
