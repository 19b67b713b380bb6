"""Preparing a measured pattern for refinement: Q and 2theta axes, weights, fit range, exclusions, rebinning,
and the measured blanks (solvent, capillary) interpolated onto it.

Weights are 1 / sigma^2 with sigma from the file's third column where given (non-positive entries take the
counting value), else counting statistics sqrt(max(I, 1)). Points finer than the basis grid are averaged in
bins of the basis step (1/A): sigma of a bin = sqrt(sum sigma^2) / n, so the statistics are kept and a
5004-point refinement of a 30 000-point synchrotron scan costs what a 5004-point pattern costs.

Units: Q in 1/A, 2theta in degrees, wavelength in A.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import read_pattern
from ..units import XUnit, check_wavelength, q_to_tth, tth_to_q

__all__ = ["FitData", "Blank", "prepare_data", "load_blank", "parse_ranges", "data_axes"]



@dataclass
class FitData:
    """The points a refinement fits: Q (1/A), 2theta (deg, None where Q > 4 pi / lambda cannot be converted),
    intensity and sigma, after range, exclusions and rebinning."""

    q: np.ndarray
    tth: np.ndarray | None
    y: np.ndarray
    sigma: np.ndarray
    n_raw: int


@dataclass
class Blank:
    """A measured blank (solvent, empty capillary): Q (1/A, increasing) and intensity."""

    name: str
    q: np.ndarray
    intensity: np.ndarray

    def on(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intensity linearly interpolated at ``q`` and a mask of the points the blank covers."""
        inside = (q >= self.q[0]) & (q <= self.q[-1])
        return np.interp(q, self.q, self.intensity), inside


def parse_ranges(text: str | None) -> list[tuple[float, float]]:
    """'lo-hi,lo-hi' or 'lo:hi,...' (2theta deg) -> [(lo, hi), ...]; ValueError says what is accepted."""
    if text is None or not str(text).strip():
        return []
    out = []
    for part in str(text).split(","):
        part = part.strip()
        sep = ":" if ":" in part else "-"
        pieces = part.split(sep) if sep == ":" else part.rsplit("-", 1) if part.count("-") == 1 else None
        try:
            lo, hi = (float(v) for v in pieces)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"exclusion range {part!r}; accepted: 2theta ranges in degrees 'lo-hi' or 'lo:hi', "
                             "comma-separated, e.g. '27.5-28.8,47:48'") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"exclusion range {part!r} is empty; accepted: lo < hi in degrees 2theta")
        out.append((lo, hi))
    return out


def data_axes(x: np.ndarray, x_unit: str, wavelength_a: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Q (1/A) and 2theta (deg; None for Q beyond 4 pi / lambda) of points ``x`` in ``x_unit`` ("tth" or "q");
    ValueError for 2theta outside 0-180 deg or a negative Q."""
    if x_unit == "tth":
        if x.min() < 0 or x.max() >= 180:
            raise ValueError(f"2theta from {x.min():.4g} to {x.max():.4g} deg; accepted: 0 to 180 deg")
        return tth_to_q(x, wavelength_a), x
    if x.min() < 0:
        raise ValueError(f"Q from {x.min():.4g} 1/A; accepted: Q >= 0")
    reach = 4.0 * np.pi / wavelength_a
    return x, (q_to_tth(x, wavelength_a) if x.max() <= reach else None)


def _rebin(q, tth, y, s, step: float):
    idx = np.floor((q - q[0]) / step).astype(np.int64)
    n = np.bincount(idx).astype(float)
    ok = n > 0
    mean = lambda v: (np.bincount(idx, weights=v)[ok] / n[ok])  # noqa: E731
    sig = np.sqrt(np.bincount(idx, weights=s * s)[ok]) / n[ok]
    return mean(q), (None if tth is None else mean(tth)), mean(y), sig


def prepare_data(x, y, sigma=None, *, x_unit: str = "tth", wavelength_a: float,
                 q_range: tuple[float, float] = (1.0, 15.0), exclude_tth=(), rebin_step: float | None = None) -> FitData:
    """Points of a pattern to refine: finite arrays x (2theta deg or Q 1/A), y, optional sigma; Q within
    ``q_range`` (1/A); 2theta ranges ``exclude_tth`` [(lo, hi) deg] dropped; averaged onto bins of ``rebin_step``
    (1/A) where the data are over 1.5 times finer. Raises ValueError for bad input."""
    x_unit = XUnit.parse(x_unit).value
    check_wavelength(wavelength_a)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape or x.size < 50:
        raise ValueError(f"x {x.shape} and y {y.shape}; accepted: two 1-D arrays of the same length, >= 50 points")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x or y holds NaN or infinite values; accepted: finite numbers")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x is not strictly increasing; accepted: sorted x without repeats")
    counting = np.sqrt(np.maximum(y, 1.0))
    if sigma is None:
        s = counting
    else:
        s = np.asarray(sigma, dtype=float)
        if s.shape != y.shape or not np.all(np.isfinite(s)):
            raise ValueError("sigma must be finite and as long as y")
        s = np.where(s > 0, s, counting)
    q, tth = data_axes(x, x_unit, wavelength_a)
    lo, hi = float(q_range[0]), float(q_range[1])
    keep = (q >= lo) & (q <= hi)
    for a, b in exclude_tth:
        if tth is None:
            raise ValueError("2theta exclusions need 2theta for every point; these Q data reach beyond 4 pi / lambda")
        keep &= ~((tth >= a) & (tth <= b))
    if keep.sum() < 50:
        raise ValueError(f"only {int(keep.sum())} points in Q {lo:.3g}-{hi:.3g} 1/A after exclusions (the data cover "
                         f"Q {q.min():.3g}-{q.max():.3g} 1/A); accepted: >= 50 points: widen the range or check the "
                         "wavelength and x unit")
    q, y_k, s_k = q[keep], y[keep], s[keep]
    t = None if tth is None else tth[keep]
    n_raw = int(q.size)
    if rebin_step is not None and np.median(np.diff(q)) < rebin_step / 1.5:
        q, t, y_k, s_k = _rebin(q, t, y_k, s_k, rebin_step)
    return FitData(q=q, tth=t, y=y_k, sigma=s_k, n_raw=n_raw)


def load_blank(path: str | Path, wavelength_a: float | None, x_unit: str = "tth", *,
               default_wavelength_a: float | None = None) -> Blank:
    """A measured blank from a pattern file (read with :func:`qdots_bluesky.io.read_pattern`), x in 2theta (deg)
    or Q (1/A). ``wavelength_a`` (A): the wavelength the *blank* was measured at; None takes the file header's
    (``wavelength: ... A``), else ``default_wavelength_a`` (e.g. the sample's, for a blank of the same beamtime).
    The blank is kept on its own Q axis, so one blank serves patterns of any wavelength (the solvent's I(Q) does
    not depend on it; its Compton share and absorption do, a little)."""
    pattern = read_pattern(path)
    if wavelength_a is None and x_unit != "q":
        header = pattern.wavelength_from_header()
        wavelength_a = header if header is not None else default_wavelength_a
        if wavelength_a is None:
            raise ValueError(f"blank {path}: 2theta data need the blank's wavelength; accepted: the wavelength given "
                             "(qdots fit --blank-wavelength A), a 'wavelength: ... A' header line in the blank file, "
                             "or Q data")
    if wavelength_a is not None:
        check_wavelength(wavelength_a)
    x = np.asarray(pattern.x, float)
    if x_unit == "q" and wavelength_a is None:
        if x.min() < 0:
            raise ValueError(f"blank {path}: Q from {x.min():.4g} 1/A; accepted: Q >= 0")
        q = x
    else:
        q, _ = data_axes(x, x_unit, wavelength_a)
    order = np.argsort(q)
    return Blank(Path(path).stem, q[order], np.asarray(pattern.y, float)[order])
