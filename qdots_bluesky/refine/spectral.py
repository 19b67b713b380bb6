"""The instrument's Voigt convolution of population patterns through the spectra of the basis clusters.

A population's crystal pattern is a weighted sum of cluster rows, w . B, and the Fourier transform is linear:
rfft(w . B) = w . rfft(B). The spectra of every cluster row (extended by its end values, padded for the widest
allowed profile as :func:`~qdots_bluesky.sim.physics.profiles.voigt_convolve` pads) are computed once per basis
and kept on it; a refinement step then costs one small complex product and one inverse FFT per row, instead
of a forward and an inverse FFT. Same transfer function and padding as ``voigt_convolve`` (the results agree to
rounding); widths beyond the padding's reach fall back to it.

Units: those of the basis axis (Q in 1/A; widths as FWHM in 1/A).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from ..sim.physics.cluster_basis import ClusterBasis
from ..sim.physics.profiles import GAUSS_TRANSFER_COEFF as _A, voigt_convolve

__all__ = ["SpectralRows", "basis_spectra"]


class SpectralRows:
    """Spectra of the rows of ``crystal`` (clusters x points on an axis of ``step``), padded for Voigt profiles up to
    ``max_fwhm`` (the padding of ``voigt_convolve(..., max_fwhm=max_fwhm)``)."""

    def __init__(self, crystal: np.ndarray, step: float, max_fwhm: float) -> None:
        self.crystal = np.asarray(crystal, dtype=float)
        self.step, self.max_fwhm = float(step), float(max_fwhm)
        self.reach = 5.0 * self.max_fwhm
        pad = int(np.ceil(8.0 * self.reach / self.step)) + 2
        points = self.crystal.shape[1]
        self.n = scipy.fft.next_fast_len(points + 2 * pad, real=True)
        right = self.n - points - pad
        ext = np.concatenate([np.repeat(self.crystal[:, :1], pad, axis=1), self.crystal,
                              np.repeat(self.crystal[:, -1:], right, axis=1)], axis=1)
        self.spec = scipy.fft.rfft(ext, axis=1)
        self.f = np.fft.rfftfreq(self.n, d=self.step)
        self._d_gauss = -_A * self.f * self.f
        self._d_lorentz = -np.pi * self.f
        self.cut = slice(pad, pad + points)

    def within_reach(self, gauss: float, lorentz: float) -> bool:
        """Whether a Voigt profile of these FWHMs fits the padding (beyond it :meth:`convolve` falls back to
        ``voigt_convolve``)."""
        return gauss + 4.0 * lorentz <= self.reach

    def transfer(self, gauss: float, lorentz: float) -> np.ndarray:
        """The Voigt transfer function of FWHMs ``gauss`` and ``lorentz`` at the spectra's frequencies."""
        return np.exp(self._d_gauss * (gauss * gauss) + self._d_lorentz * lorentz)

    def spectra(self, weights: np.ndarray, live: np.ndarray | slice, gauss: float, lorentz: float,
                transfer: np.ndarray | None = None) -> np.ndarray:
        """Spectra of the rows ``weights`` (populations x live clusters) . crystal[live] times the Voigt transfer
        function of FWHMs ``gauss`` and ``lorentz`` (within reach; ``transfer``: that of :meth:`transfer` where
        already computed); :meth:`rows` turns them into patterns."""
        transfer = self.transfer(gauss, lorentz) if transfer is None else transfer
        return (np.atleast_2d(weights) @ self.spec[live]) * transfer

    def rows(self, spectra: np.ndarray) -> np.ndarray:
        """Patterns (rows x points of the axis) of spectra from :meth:`spectra` (or their derivatives)."""
        return scipy.fft.irfft(spectra, n=self.n, axis=-1)[..., self.cut]

    def derivative_spectra(self, spectrum: np.ndarray) -> np.ndarray:
        """The spectra of one convolved row differentiated by the Gaussian FWHM squared and the Lorentzian FWHM (2 x
        frequencies)."""
        return np.stack([spectrum * self._d_gauss, spectrum * self._d_lorentz])

    def convolve(self, weights: np.ndarray, live: np.ndarray | slice, gauss: float, lorentz: float,
                 derivatives: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``weights`` (populations x live clusters) . crystal[live] convolved with a Voigt profile of FWHMs
        ``gauss`` and ``lorentz``; ``derivatives``: also d/d(gauss^2) and d/d(lorentz) of the first row (1-row
        arrays), as ``voigt_convolve(..., derivatives=True)`` gives them."""
        weights = np.atleast_2d(weights)
        if not self.within_reach(gauss, lorentz):  # beyond the padding: the general routine
            rows = weights @ self.crystal[live]
            if not derivatives:
                return voigt_convolve(rows, self.step, gauss, lorentz, max_fwhm=self.max_fwhm)
            out, d_g, d_l = voigt_convolve(rows, self.step, gauss, lorentz, derivatives=True, max_fwhm=self.max_fwhm)
            return out, d_g[:1], d_l[:1]
        spec = self.spectra(weights, live, gauss, lorentz)
        out = self.rows(spec)
        if not derivatives:
            return out
        d = self.rows(self.derivative_spectra(spec[0]))
        return out, d[:1], d[1:]


def basis_spectra(basis: ClusterBasis, max_fwhm: float) -> SpectralRows:
    """The :class:`SpectralRows` of a basis's crystal rows for widths up to ``max_fwhm`` (1/A), computed once and
    kept on the basis (a few ms for PbS up to 21 nm)."""
    cache = basis.__dict__.setdefault("_spectral_rows", {})
    key = float(max_fwhm)
    if key not in cache:
        cache[key] = SpectralRows(basis.crystal, float(basis.q[1] - basis.q[0]), key)
    return cache[key]
