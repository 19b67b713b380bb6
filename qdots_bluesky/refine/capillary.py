"""A capillary model's evaluation at one theta, kept for its Jacobian: the population's weights (and those of its
forward-difference neighbours in D and dispersion), its crystal row convolved on the basis grid through the kept
spectra (:mod:`~qdots_bluesky.refine.spectral`), its cubic reading at Q (1 + strain), and the column built from them;
the analytic Jacobian then reuses all of it, so a least-squares trial that is rejected costs the column alone (a third
of a step with its Jacobian). Also the readings the model makes: linear rows computed when first asked for
(:class:`LazyRows`) and the taps and weights of a cubic reading (:class:`CubicReading`).

Units as in :mod:`~qdots_bluesky.refine.model` (Q in 1/A, diameters in nm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from ..sim.physics.cluster_basis import WEIGHT_CUTOFF, ClusterBasis, lognormal_weight_matrix
from .spectral import basis_spectra

__all__ = ["KEPT_EVALUATIONS", "linear_rows", "LazyRows", "CubicReading", "LogNormalRows", "CapillaryEvaluation",
           "evaluate", "jacobian"]

#: A capillary model keeps its evaluations at the last KEPT_EVALUATIONS thetas: a least-squares step's accepted point
#: (whose Jacobian builds on it) and its last trial.
KEPT_EVALUATIONS = 2


def linear_rows(rows: np.ndarray, x0: float, step: float, x: np.ndarray) -> np.ndarray:
    """Rows on the equispaced grid x0 + step i read at ``x`` by linear interpolation (end values held beyond the
    grid, as :func:`numpy.interp`), all rows at once."""
    n = rows.shape[1]
    t = np.clip((np.asarray(x, dtype=float) - x0) / step, 0.0, n - 1.0)
    base = np.minimum(t.astype(np.int64), n - 2)
    t = t - base
    return rows[:, base] * (1.0 - t) + rows[:, base + 1] * t


class LazyRows:
    """Rows on the equispaced grid x0 + step i read at ``x`` by linear interpolation (:func:`linear_rows`), each row
    computed when first asked for: a population weights a dozen or two of the series' clusters, so a refinement reads
    those, not all of them (reading every cluster's Compton part at 5000 points cost 1 ms per model)."""

    def __init__(self, rows: np.ndarray, x0: float, step: float, x: np.ndarray) -> None:
        self._source, self._x0, self._step, self._x = rows, x0, step, np.asarray(x, dtype=float)
        self._rows = np.empty((rows.shape[0], self._x.size))
        self._have = np.zeros(rows.shape[0], dtype=bool)

    def take(self, index: np.ndarray | slice) -> np.ndarray:
        """Rows ``index`` (an integer array, or a slice: then a view) read at x (rows x points)."""
        wanted = np.arange(self._have.size)[index]
        missing = wanted[~self._have[wanted]]
        if missing.size:
            self._rows[missing] = linear_rows(self._source[missing], self._x0, self._step, self._x)
            self._have[missing] = True
        return self._rows[index]


class LogNormalRows:
    """:func:`~qdots_bluesky.sim.physics.cluster_basis.lognormal_weight_matrix` of a basis's clusters (the same
    numbers) with the logarithms of the cluster bounds computed once and without its checks where the populations are
    valid (the refinement's bounds keep them so): a third of its time, in a step that costs a few hundred
    microseconds."""

    def __init__(self, basis: ClusterBasis) -> None:
        self._n, self._unit = basis.n, basis.unit_nm
        n = np.asarray(basis.n, dtype=float)
        self._log_lo = np.log(np.maximum(n - 0.5, 1e-12) * basis.unit_nm)
        self._log_hi = np.log((n + 0.5) * basis.unit_nm)

    def __call__(self, size_nm: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
        """Number weights (populations x clusters) of log-normals of mean diameters ``size_nm`` (nm) and relative
        stds ``dispersion``."""
        if not (np.all(size_nm > 0) and np.all((dispersion > 0) & (dispersion < 0.5))):
            return lognormal_weight_matrix(self._n, self._unit, size_nm, dispersion)  # its message
        w2 = np.log1p(dispersion**2)
        m = np.log(size_nm) - w2 / 2.0
        s = np.sqrt(w2)
        w = ndtr((self._log_hi[None, :] - m[:, None]) / s[:, None]) - ndtr((self._log_lo[None, :] - m[:, None]) / s[:, None])
        w[w < WEIGHT_CUTOFF] = 0.0
        total = w.sum(axis=1, keepdims=True)
        if np.any(total <= 0):
            return lognormal_weight_matrix(self._n, self._unit, size_nm, dispersion)  # its message
        return w / total


class CubicReading:
    """How points x are read from rows on the equispaced grid x0 + step i (``n`` points): the taps and weights of
    :func:`~qdots_bluesky.refine.model.cubic_interp` (Keys, a = -1/2; end values held beyond the grid) and of linear interpolation, computed once
    per set of points and used for every row read there (a capillary evaluation reads five rows at Q (1 + strain))."""

    def __init__(self, x0: float, step: float, n: int, x: np.ndarray, slope_step: float | None = None) -> None:
        u = np.asarray(x, dtype=float) - x0 if step == 1.0 else (np.asarray(x, dtype=float) - x0) / step
        self.step = float(step if slope_step is None else slope_step)  # x's unit per grid step, for the slope
        self._u, self._n = u, n
        t = np.clip(u, 0.0, n - 1.0)
        self.base = np.minimum(t.astype(np.int64), n - 2)
        t -= self.base
        self.t = t
        self._t2 = t2 = t * t
        self.taps = self.base + np.arange(-1, 3)[:, None]  # (4, points): the edge padding by clipping
        if self.base.min() < 1 or self.base.max() > n - 3:
            np.clip(self.taps, 0, n - 1, out=self.taps)
        w = self.weights = np.empty((4, t.size))  # Keys' kernel, a = -1/2
        np.multiply(t, (2.0 - t) * t - 1.0, out=w[0])
        np.multiply(t2, 3.0 * t - 5.0, out=w[1])
        w[1] += 2.0
        np.multiply(t, (4.0 - 3.0 * t) * t + 1.0, out=w[2])
        np.multiply(t2, t - 1.0, out=w[3])
        w *= 0.5

    def taps_of(self, row: np.ndarray) -> np.ndarray:
        """The four taps of one row at every point (4 x points), for :meth:`cubic_of` and :meth:`slope_of`."""
        return np.take(row, self.taps)

    def cubic(self, rows: np.ndarray) -> np.ndarray:
        """Rows (rows x grid points) at the points (rows x points)."""
        return np.einsum("rkp,kp->rp", np.take(np.atleast_2d(rows), self.taps, axis=1), self.weights)

    def cubic_of(self, taps: np.ndarray) -> np.ndarray:
        """One row at the points from its :meth:`taps_of`."""
        return np.einsum("kp,kp->p", taps, self.weights)

    def slope_of(self, taps: np.ndarray) -> np.ndarray:
        """d/dx of the cubic reading of one row at the points, from its :meth:`taps_of` (0 beyond the grid)."""
        t, t2 = self.t, self._t2
        d = 0.5 * np.stack([-3.0 * t2 + 4.0 * t - 1.0, 9.0 * t2 - 10.0 * t, -9.0 * t2 + 8.0 * t + 1.0, 3.0 * t2 - 2.0 * t])
        inside = (self._u > 0) & (self._u < self._n - 1)  # beyond the grid the held end values have no slope
        return np.einsum("kp,kp->p", taps, d) / self.step * inside

    def linear(self, values: np.ndarray) -> np.ndarray:
        """One row at the points by linear interpolation (as :func:`numpy.interp` on the grid)."""
        return values[self.base] * (1.0 - self.t) + values[self.base + 1] * self.t


@dataclass
class CapillaryEvaluation:
    """A capillary model at one theta: the dot column and what its Jacobian builds on (see
    :meth:`~qdots_bluesky.refine.model.DotModel.columns_jacobian`)."""

    key: bytes
    weights: np.ndarray  # (3, live clusters): the population, D + h_d, dispersion + h_s
    live: slice  # the clusters from the first to the last one weighted
    steps: tuple[float, float]  # h_d (nm), h_s
    widths: tuple[float, float]  # instrument FWHMs on the basis grid (x (1 + strain))
    spectrum: np.ndarray | None  # the population's convolved spectrum (None: no instrument, or beyond reach)
    rows: np.ndarray | None  # beyond the spectra's reach: the 5 rows of voigt_convolve (population, D, disp, d_g, d_l)
    crystal: np.ndarray  # the population's crystal row on the basis grid (convolved)
    transfer: np.ndarray | None  # the instrument's transfer function at the widths (with ``spectrum``)
    reading: CubicReading
    taps: np.ndarray  # the crystal row's taps at the points (:meth:`CubicReading.taps_of`)
    value: np.ndarray  # crystal at Q (1 + strain)
    f_at: np.ndarray  # F(Q (1 + strain)), at least 1e-30
    ratio: np.ndarray  # F(Q) / F(Q (1 + strain))
    damp: np.ndarray  # the Debye-Waller offset's factor on the pair terms
    atoms: np.ndarray  # (3,) mean atoms per nanocrystal of the three populations
    compton: np.ndarray  # (live clusters, points)
    pair: np.ndarray  # interference part of the population's crystal column (before the damping)
    column: np.ndarray
    jacobian: np.ndarray | None = None
    jacobian_instrument: bool = False  # whether the Jacobian holds the instrument widths' columns


def evaluate(model, theta: np.ndarray) -> CapillaryEvaluation:
    """A capillary :class:`~qdots_bluesky.refine.model.DotModel` at theta (float array): its dot column, and the
    weights, spectra and cubic reading its Jacobian (:func:`jacobian`) builds on."""
    size, disp, strain, b_offset = (float(v) for v in theta[:4])
    gauss, lorentz = model.instrument_widths(theta)
    h_d, h_s = 1e-4 * max(size, 1.0), 1e-4
    W = model.weight_rows(np.array([size, size + h_d, size]), np.array([disp, disp, disp + h_s]))
    nonzero = np.flatnonzero(W.any(axis=0))
    live = slice(int(nonzero[0]), int(nonzero[-1]) + 1)  # the clusters the populations weight, as views
    W = W[:, live]
    stretch = 1.0 + strain
    widths = (gauss * stretch, lorentz * stretch)  # the widths on the basis grid read at Q (1 + strain)
    spectral = basis_spectra(model.basis, model.max_instrument_fwhm)
    spectrum = rows = transfer = None
    if not spectral.within_reach(*widths):  # beyond the padding: every row from the general routine
        out, d_g, d_l = spectral.convolve(W, live, *widths, derivatives=True)
        rows = np.vstack([out, stretch**2 * d_g, stretch * d_l])
        crystal = rows[0]
    elif gauss > 0 or lorentz > 0:
        transfer = spectral.transfer(*widths)
        spectrum = spectral.spectra(W[0], live, *widths, transfer=transfer)[0]
        crystal = spectral.rows(spectrum)
    else:
        crystal = W[0] @ model.basis.crystal[live]
    reading = CubicReading(model._u0, 1.0, crystal.size, model._q_steps * stretch, model.step)
    taps = reading.taps_of(crystal)
    value = reading.cubic_of(taps)
    f_at = np.maximum(reading.linear(model.f_sq), 1e-30)
    ratio = model._f_true[0] / f_at
    damp = np.exp(-b_offset * model._q2)
    atoms = W @ model._atoms[live]
    compton = model._compton_q[0].take(live)
    self_terms = atoms[0] * model._f_true[0]
    pair = value * ratio - self_terms
    column = self_terms + pair * damp + W[0] @ compton
    return CapillaryEvaluation(theta.tobytes(), W, live, (h_d, h_s), widths, spectrum, rows, crystal, transfer,
                               reading, taps, value, f_at, ratio, damp, atoms, compton, pair, column)


def jacobian(model, ev: CapillaryEvaluation, theta: np.ndarray, instrument: bool = True) -> np.ndarray:
    """The derivatives (points x 6) of the column of ``ev`` (the evaluation of ``model`` at theta) by D, dispersion,
    strain, dB and the instrument's Gaussian FWHM squared and Lorentzian FWHM (see
    :meth:`~qdots_bluesky.refine.model.DotModel.columns_jacobian`); ``instrument`` False leaves the widths' 0."""
    W, live, reading = ev.weights, ev.live, ev.reading
    stretch = 1.0 + float(np.asarray(theta, dtype=float)[2])
    spectral = basis_spectra(model.basis, model.max_instrument_fwhm)
    if ev.rows is not None:
        rows = ev.rows[1:] if instrument else ev.rows[1:3]
    else:
        if ev.spectrum is not None:
            fd = spectral.rows(spectral.spectra(W[1:], live, *ev.widths, transfer=ev.transfer))
        else:
            fd = W[1:] @ model.basis.crystal[live]
        rows = fd
        if instrument:
            spectrum = ev.spectrum if ev.spectrum is not None else spectral.spectra(W[0], live, 0.0, 0.0)[0]
            d = spectral.rows(spectral.derivative_spectra(spectrum))
            rows = np.vstack([fd, stretch**2 * d[:1], stretch * d[1:]])
    values = reading.cubic(rows)  # (2 or 4, points)
    q, f_true = model.q, model._f_true[0]
    slope = reading.slope_of(ev.taps)  # d crystal / dQ at Q (1 + strain)
    d_ratio = -ev.ratio * reading.linear(model._f_grad) / ev.f_at * q
    self_terms = ev.atoms[1:, None] * f_true
    shifted = self_terms + (values[:2] * ev.ratio - self_terms) * ev.damp + W[1:] @ ev.compton  # (2, points)
    jac = np.zeros((q.size, 6))
    jac[:, 0] = (shifted[0] - ev.column) / ev.steps[0]
    jac[:, 1] = (shifted[1] - ev.column) / ev.steps[1]
    jac[:, 2] = (slope * q * ev.ratio + ev.value * d_ratio) * ev.damp
    jac[:, 3] = -model._q2 * ev.pair * ev.damp
    if instrument:
        jac[:, 4] = values[2] * ev.ratio * ev.damp
        jac[:, 5] = values[3] * ev.ratio * ev.damp
    return jac
