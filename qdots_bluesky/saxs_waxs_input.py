"""The input of SAXS + WAXS models: a measured pattern on the model's log-spaced Q grid, with the mask of measured points.

Shared by training (the augmenter's rows go through :func:`network_input`) and prediction (a measured pattern
goes through :func:`resample_saxs_waxs`, then :func:`network_input`), so both see one definition.

Resampling: each grid point's value is the mean of the data's linear interpolant over the grid point's cell
(edges halfway between grid points, in ln Q), computed from the running trapezoid integral of the data. Where the
data are denser than the grid (WAXS on a log grid) this averages several points and their noise; where they are
sparser (SAXS near Q_min) it interpolates. A grid point is *measured* when its Q lies within the data's range and
not inside a gap of the data (two neighbouring data points further apart than :data:`GAP_FACTOR` times the median
of the neighbouring steps and than two grid cells: between two detectors, or at non-finite intensities, which are
dropped first; repeated Q values, e.g. where two detectors overlap, are averaged first). Masked points carry
:data:`MASK_FILL`.

Network input: two channels per grid point, asinh(Y / median of the measured |Y|) (log-like over the decades from
SAXS to WAXS, defined for the slightly negative values a subtraction can leave) with masked points at 0, and the
mask (1 measured, 0 masked). NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .units import XUnit, check_wavelength, tth_to_q

#: Value of masked intensities and of masked network inputs.
MASK_FILL = 0.0
#: Two data points further apart than this many median steps leave a gap (masked grid points between them).
GAP_FACTOR = 5.0
#: Q (1/A) from which a pattern counts as wide-angle (a SAXS + WAXS model's shape rests on data above it).
SAXS_WAXS_SPLIT_Q = 1.0


def log_q_grid(q_min: float, q_max: float, n_points: int) -> np.ndarray:
    """The log-spaced model grid (1/A)."""
    if not (0 < q_min < q_max and int(n_points) >= 2):
        raise ValueError(f"Q grid {q_min}-{q_max} 1/A with {n_points} points; accepted: 0 < q_min < q_max, >= 2 points")
    return np.geomspace(float(q_min), float(q_max), int(n_points))


@dataclass
class ResampleReport:
    """How a pattern met the grid: the data's Q range (1/A), the share of grid points measured, gaps (1/A)."""

    q_min_data: float
    q_max_data: float
    coverage: float
    gaps: list[tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"q_min_data": self.q_min_data, "q_max_data": self.q_max_data, "coverage": self.coverage,
                "gaps": [list(g) for g in self.gaps]}


def resample_saxs_waxs(x: Any, y: Any, grid_q: np.ndarray, *, x_unit: str = "q",
                       wavelength: float | None = None) -> tuple[np.ndarray, np.ndarray, ResampleReport]:
    """One pattern (``x`` in Q 1/A, or 2theta degrees with ``wavelength`` A) on ``grid_q``: the cell means,
    the mask of measured grid points and a report. ValueError (one line) for input that cannot be resampled."""
    unit = XUnit.parse(x_unit)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"x of shape {x.shape} and y of shape {y.shape}; accepted: two 1D arrays of one length")
    if unit is XUnit.TTH:
        if wavelength is None:
            raise ValueError("a 2theta axis needs the wavelength; accepted: wavelength in A, or Q in 1/A (x_unit='q')")
        check_wavelength(float(wavelength))
        x = tth_to_q(x, float(wavelength))
    keep = np.isfinite(x) & np.isfinite(y)
    x, index = np.unique(x[keep], return_inverse=True)  # sorted; repeated Q (overlapping detectors) averaged
    y = np.bincount(index, weights=y[keep], minlength=x.size) / np.bincount(index, minlength=x.size)
    if x.size < 2 or x[-1] <= x[0]:
        raise ValueError(f"{x.size} finite data points; accepted: two or more at distinct Q")
    grid_q = np.asarray(grid_q, dtype=np.float64)
    inside = (grid_q >= x[0]) & (grid_q <= x[-1])
    if not inside.any():
        raise ValueError(f"the data cover Q {x[0]:.3g}-{x[-1]:.3g} 1/A, outside the model's grid "
                         f"{grid_q[0]:.3g}-{grid_q[-1]:.3g} 1/A; accepted: a pattern that overlaps it")
    cell = np.exp(np.mean(np.diff(np.log(grid_q))))  # ratio of neighbouring grid points
    gaps = [(lo, hi) for lo, hi in _gaps(x) if hi / lo > cell ** 2]  # narrower ones are bridged by the interpolant
    mask = inside.copy()
    for lo, hi in gaps:
        mask &= ~((grid_q > lo) & (grid_q < hi))
    if not mask.any():
        raise ValueError("no grid point lies on measured data (the data's gaps cover the overlap); accepted: a pattern "
                         "that overlaps the model's Q grid")
    ln_edges = np.concatenate([[np.log(grid_q[0])], 0.5 * (np.log(grid_q[1:]) + np.log(grid_q[:-1])),
                               [np.log(grid_q[-1])]])
    edges = np.clip(np.exp(ln_edges), x[0], x[-1])
    running = np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])
    integral = np.interp(edges, x, running)
    width = np.diff(edges)
    means = np.where(width > 0, np.diff(integral) / np.where(width > 0, width, 1.0), np.interp(grid_q, x, y))
    out = np.where(mask, means, MASK_FILL)
    report = ResampleReport(float(x[0]), float(x[-1]), float(mask.mean()), gaps)
    return out, mask, report


def _gaps(x: np.ndarray) -> list[tuple[float, float]]:
    """(low, high) Q of every step longer than GAP_FACTOR x the median of the (up to six) neighbouring steps: a
    detector gap or dropped points, whatever the data's spacing (linear, log or changing at a detector edge)."""
    steps = np.diff(x)
    n = steps.size
    if n < 3:
        return []
    shifts = [k for k in range(-3, 4) if k != 0]
    padded = np.concatenate([np.full(3, np.nan), steps, np.full(3, np.nan)])
    neighbours = np.stack([padded[3 + k: 3 + k + n] for k in shifts])
    local = np.nanmedian(neighbours, axis=0)
    return [(float(x[i]), float(x[i + 1])) for i in np.flatnonzero(steps > GAP_FACTOR * local)]


def network_input(intensity: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Two channels (rows, 2, Q) float32: asinh(Y / median of the row's measured |Y|), :data:`MASK_FILL` where
    masked, and the mask (1 measured, 0 masked)."""
    intensity = np.atleast_2d(np.asarray(intensity, dtype=np.float64))
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    scale = np.array([np.median(np.abs(y[m])) if m.any() else 1.0 for y, m in zip(intensity, mask)])
    x = np.where(mask, np.arcsinh(intensity / np.maximum(scale, 1e-300)[:, None]), MASK_FILL)
    return np.stack([x, mask], axis=1).astype(np.float32)
