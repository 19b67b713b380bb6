"""Measured solvent blanks: reading them (2theta or Q) and comparing the built-in models with them.

Q in 1/A, 2theta in degrees, wavelength in A.
"""
from __future__ import annotations

import numpy as np

from ....units import XUnit, check_wavelength, tth_to_q

__all__ = ["compare_to_blank", "load_solvent_blank", "peak_position"]



def load_solvent_blank(path, *, x_unit: str = "tth", wavelength_a: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a measured solvent blank; return (Q in 1/A, intensity), sorted by Q.

    The file is read with :func:`qdots_bluesky.io.read_pattern` (columns x, I and optionally
    sigma; '#' and other comment lines, header lines). x_unit "tth" (2theta in degrees) or "q"
    (Q in 1/A). For "tth" the wavelength (A) is wavelength_a, or, when that is None, a
    ``wavelength`` / ``lambda`` key of the file header. Raises ValueError (io.PatternFileError
    for unreadable files) for bad content, a bad unit or a missing/bad wavelength.
    """
    from ....io import read_pattern  # the project's shared pattern reader

    x_unit = XUnit.parse(x_unit)
    if wavelength_a is not None:
        check_wavelength(wavelength_a)
    pattern = read_pattern(path)
    x = np.asarray(pattern.x, dtype=float)
    y = np.asarray(pattern.y, dtype=float)
    if x_unit == "tth":
        if wavelength_a is None:
            wavelength_a = pattern.wavelength_from_header()
            if wavelength_a is None:
                raise ValueError(
                    f"{path}: x_unit='tth' needs the wavelength: pass wavelength_a (A), e.g. 0.564162 "
                    "for the X04SA blanks, or give the file a 'wavelength: ...' header line"
                )
            check_wavelength(wavelength_a)
        if x.min() < 0 or x.max() > 180:
            raise ValueError(f"{path}: 2theta must lie in 0-180 deg, found {x.min():.4g} to {x.max():.4g}")
        q = tth_to_q(x, wavelength_a)
    else:
        if x.min() < 0:
            raise ValueError(f"{path}: Q must be non-negative, found {x.min():.4g} 1/A")
        q = x
    order = np.argsort(q, kind="stable")
    return q[order], y[order]


def peak_position(q: np.ndarray, y: np.ndarray, lo: float, hi: float, smooth_a: float = 0.02) -> float:
    """Position (1/A) of the maximum of y in [lo, hi]: moving average over ~smooth_a, then the
    vertex of the parabola through the maximum and the points +-smooth_a away."""
    sel = (q >= lo) & (q <= hi)
    qs, ys = q[sel], y[sel]
    w = max(1, int(round(smooth_a / np.median(np.diff(qs)))))
    if qs.size < 2 * w + 3:
        raise ValueError(f"too few points in {lo}-{hi} 1/A to locate a peak")
    ys = np.convolve(ys, np.ones(w) / w, mode="same")
    i = w + int(np.argmax(ys[w : qs.size - w]))
    (x0, x1, x2), (y0, y1, y2) = qs[[i - w, i, i + w]], ys[[i - w, i, i + w]]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
    return float(-b / (2 * a)) if a < 0 else float(x1)


def compare_to_blank(name: str, q, intensity, wavelength_a: float, q_range: tuple[float, float] = (1.0, 15.0)) -> dict[str, float]:
    """Agreement of the built-in model with a measured blank on q_range (1/A).

    Both are normalised to equal area on q_range (no background). Returns: "correlation"
    (Pearson), "relative_rms" (RMS of model - data over RMS of data), the same two after a
    least-squares scale plus constant background ("relative_rms_fit", "background_fraction" =
    constant / mean data), and "peak_model" / "peak_data", the main liquid peak (1/A, searched
    in 0.8-2.5 1/A), plus "n_points".
    """
    from . import solvent_components  # the package's public model (imports this module)

    q = np.asarray(q, dtype=float)
    y = np.asarray(intensity, dtype=float)
    if q.shape != y.shape or q.ndim != 1:
        raise ValueError("q and intensity must be 1-D arrays of the same length")
    sel = (q >= q_range[0]) & (q <= q_range[1]) & np.isfinite(y)
    if sel.sum() < 10:
        raise ValueError(f"fewer than 10 data points in Q {q_range[0]}-{q_range[1]} 1/A")
    qs, ys = q[sel], y[sel]
    model = solvent_components(name, qs, wavelength_a)["total"]
    m = model / np.trapezoid(model, qs)
    d = ys / np.trapezoid(ys, qs)
    norm = np.sqrt(np.mean(d**2))
    design = np.column_stack([model, np.ones_like(model)])
    coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
    fit_resid = ys - design @ coef
    wide = (q >= 0.8) & (q <= 2.5)
    peak_data = peak_position(q[wide], y[wide], 0.8, 2.5)
    qm = np.linspace(0.8, 2.5, 1701)
    peak_model = peak_position(qm, solvent_components(name, qm, wavelength_a)["total"], 0.8, 2.5, smooth_a=0.002)
    return {
        "correlation": float(np.corrcoef(m, d)[0, 1]),
        "relative_rms": float(np.sqrt(np.mean((m - d) ** 2)) / norm),
        "relative_rms_fit": float(np.sqrt(np.mean(fit_resid**2)) / np.sqrt(np.mean(ys**2))),
        "background_fraction": float(coef[1] / np.mean(ys)),
        "peak_model": peak_model,
        "peak_data": peak_data,
        "n_points": int(sel.sum()),
    }
