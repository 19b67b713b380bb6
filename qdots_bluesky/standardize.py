"""The one standardization of a powder pattern, used by training and by every prediction.

Steps (DESIGN.md, "Standardisation"): convert x to Q (1/A); keep the data on the grid's range
(1.0 <= Q <= 15.0 by default; points beyond it are used only as far as the edge grid cells
need, half a grid step); where the data do not reach a grid end, pad that side with the mean of
the 5 outermost data points on that side; put the data onto the equispaced grid (where the data
are as coarse as the grid or coarser, each point is the average over its bin and the pattern is
rebuilt by area-preserving cubic interpolation, which keeps the width of sparsely sampled peaks;
where they are finer, the average over each grid cell, which conserves the integrated intensity
and suppresses aliasing of noise); finally scale so that the mean over the grid is 1
(area = q_max - q_min).

Everything up to the last step is linear in the intensities, so for a given x axis it is one
sparse matrix, built once and cached; a batch of patterns is one sparse-dense product.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

from .lru import LRUCache, array_key
from .units import XUnit, check_wavelength, tth_to_q

#: The fewest points a pattern may have.
MIN_POINTS = 50
#: The least overlap (1/A) of the data's Q range with the grid's range.
MIN_OVERLAP_Q = 2.0
#: Number of outermost data points averaged for padding.
N_PAD_MEAN = 5
#: Operators (one per x axis) the cache holds by default; see :func:`reserve_operator_cache`.
DEFAULT_OPERATOR_CACHE_SIZE = 32


@dataclass(frozen=True)
class QGrid:
    """The model's equispaced Q grid: ``n_points`` from ``q_min`` to ``q_max`` inclusive (1/A)."""

    q_min: float = 1.0
    q_max: float = 15.0
    n_points: int = 5004

    def __post_init__(self) -> None:
        if not (np.isfinite(self.q_min) and np.isfinite(self.q_max) and 0.0 <= self.q_min < self.q_max):
            raise ValueError(f"Q grid {self.q_min}..{self.q_max} 1/A is invalid; accepted: 0 <= q_min < q_max, finite")
        if int(self.n_points) != self.n_points or self.n_points < 2:
            raise ValueError(f"Q grid n_points={self.n_points!r} is invalid; accepted: an integer >= 2")

    @property
    def q(self) -> np.ndarray:
        """Grid points (1/A)."""
        return np.linspace(self.q_min, self.q_max, int(self.n_points))

    @property
    def step(self) -> float:
        """Grid step (1/A)."""
        return (self.q_max - self.q_min) / (int(self.n_points) - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"q_min": float(self.q_min), "q_max": float(self.q_max), "n_points": int(self.n_points)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QGrid":
        """Inverse of :meth:`to_dict`."""
        return cls(q_min=float(d["q_min"]), q_max=float(d["q_max"]), n_points=int(d["n_points"]))


@dataclass(frozen=True)
class StandardizationReport:
    """What the standardization did with a pattern's x axis.

    ``q_min_data``/``q_max_data``: Q range (1/A) of the grid covered by the data;
    ``n_pad_low``/``n_pad_high``: grid points padded at the low / high Q end;
    ``coverage``: fraction of grid points not padded; ``source_q_step``: median Q step (1/A)
    of the source points used; ``n_source_points``: number of source points used;
    ``n_averaged``/``n_interpolated``: grid points obtained by cell averaging (source finer
    than the grid) / by area-preserving cubic interpolation of bin averages (source as coarse or
    coarser);
    ``method``: "average", "interpolate" or "mixed".
    """

    q_min_data: float
    q_max_data: float
    n_pad_low: int
    n_pad_high: int
    coverage: float
    source_q_step: float
    n_source_points: int
    n_averaged: int
    n_interpolated: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def standardize_pattern(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_unit: str = "tth",
    wavelength: float | None = None,
    grid: QGrid = QGrid(),
) -> tuple[np.ndarray, StandardizationReport]:
    """Standardize one pattern onto ``grid``; returns float32 (grid.n_points,) with mean 1, and the report.

    ``x_unit``: "tth" (2theta in degrees; needs ``wavelength`` in A) or "q" (1/A).
    Raises ValueError for input that cannot be standardized.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y has shape {y.shape}; accepted: one pattern, a 1D array (use standardize_batch for many)")
    out, report = standardize_batch(x, y[None, :], x_unit=x_unit, wavelength=wavelength, grid=grid)
    return out[0], report


def standardize_batch(
    x: np.ndarray,
    Y: np.ndarray,
    *,
    x_unit: str = "tth",
    wavelength: float | None = None,
    grid: QGrid = QGrid(),
) -> tuple[np.ndarray, StandardizationReport]:
    """Standardize patterns sharing one x axis: ``Y`` of shape (n, len(x)) -> float32 (n, grid.n_points).

    Each output row has mean 1. The operator for an x axis is cached, so repeated calls with
    the same axis cost one sparse product. Same units and errors as :func:`standardize_pattern`.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    Y = np.asarray(Y)
    if x.ndim != 1:
        raise ValueError(f"x has shape {x.shape}; accepted: a 1D array")
    if Y.ndim != 2:
        raise ValueError(f"Y has shape {Y.shape}; accepted: a 2D array (n_patterns, len(x))")
    if Y.shape[1] != x.size:
        raise ValueError(
            f"lengths of x ({x.size}) and y ({Y.shape[1]}) differ; accepted: one intensity per x value"
        )
    operator, report = _operator(x, x_unit, wavelength, grid)
    finite = np.isfinite(Y)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(
            f"{_which(row, Y.shape[0])} has a NaN or infinite intensity at index {col}; accepted: finite intensities"
        )
    if Y.shape[0] == 0:
        return np.zeros((0, grid.n_points), dtype=np.float32), report
    zero = ~Y.any(axis=1)
    if zero.any():
        raise ValueError(
            f"{_which(int(np.flatnonzero(zero)[0]), Y.shape[0])} is all zeros and cannot be scaled to a fixed area; "
            "accepted: a pattern with positive area on the Q grid"
        )
    # (n_grid, n_x) @ (n_x, n): scipy is ~10x faster with a C-contiguous dense operand.
    out = np.asarray(operator @ np.ascontiguousarray(Y.T, dtype=np.float64))
    mean = out.mean(axis=0)
    bad = ~(mean > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{_which(i, Y.shape[0])} has non-positive area ({mean[i] * (grid.q_max - grid.q_min):.4g}) on the Q grid "
            f"{grid.q_min}-{grid.q_max} 1/A and cannot be scaled; accepted: a pattern with positive area"
        )
    return np.ascontiguousarray((out / mean).T, dtype=np.float32), report


# --------------------------------------------------------------------------------------------
def _which(row: int, n: int) -> str:
    """'the pattern' for a single pattern, else 'pattern ROW' (0-based row of the batch)."""
    return "the pattern" if n == 1 else f"pattern {row}"


_cache: "LRUCache[tuple[sp.csr_matrix, StandardizationReport]]" = LRUCache(DEFAULT_OPERATOR_CACHE_SIZE)


def operator_cache_size() -> int:
    """Number of x axes whose standardization operators are kept (least recently used dropped first)."""
    return _cache.maxsize


def reserve_operator_cache(n_axes: int) -> None:
    """Let the operator cache hold at least ``n_axes`` x axes (it never shrinks here); results are unchanged.

    A training loop that cycles through a fixed set of axes (the augmentation) reserves room for all of them
    so that no operator is built twice.
    """
    if int(n_axes) > _cache.maxsize:
        _cache.resize(int(n_axes))


def _operator(x: np.ndarray, x_unit: str, wavelength: float | None, grid: QGrid) -> tuple[sp.csr_matrix, StandardizationReport]:
    """The cached (grid.n_points, len(x)) operator and report for an x axis."""
    unit = XUnit.parse(x_unit).value
    if unit == "tth":
        if wavelength is None:
            raise ValueError("2theta data (x_unit='tth') need a wavelength in A; pass wavelength= or use x_unit='q'")
        wavelength = float(wavelength)
        check_wavelength(wavelength)
    key = (array_key(x), unit, wavelength if unit == "tth" else None, grid)
    return _cache.get_or_compute(key, lambda: _build_operator(x, unit, wavelength, grid))


def _build_operator(x: np.ndarray, unit: str, wavelength: float | None, grid: QGrid) -> tuple[sp.csr_matrix, StandardizationReport]:
    n_x = x.size
    if n_x < MIN_POINTS:
        raise ValueError(f"only {n_x} points; accepted: at least {MIN_POINTS}")
    if not np.isfinite(x).all():
        raise ValueError(f"x has a NaN or infinite value at index {int(np.flatnonzero(~np.isfinite(x))[0])}; accepted: finite x")
    steps = np.diff(x)
    if not (steps > 0).all():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise ValueError(
            f"x is not strictly increasing at index {i} (x = {x[i]:.10g} after {x[i - 1]:.10g}); "
            "accepted: strictly increasing x (sort the pattern, drop repeated points)"
        )
    if unit == "tth":
        if x[0] < -180.0 or x[-1] > 180.0:
            raise ValueError(
                f"2theta spans {x[0]:.6g}..{x[-1]:.6g} deg; Q is impossible beyond 180 deg; "
                "accepted: 2theta in degrees within [-180, 180] (is x in radians, or Q?)"
            )
        q = tth_to_q(x, wavelength)
    else:
        q = x
    q_grid = grid.q
    h = grid.step
    overlap = min(q[-1], grid.q_max) - max(q[0], grid.q_min)
    if overlap < MIN_OVERLAP_Q:
        raise ValueError(
            f"the data span Q = {q[0]:.4g}..{q[-1]:.4g} 1/A, which overlaps the grid range "
            f"{grid.q_min}..{grid.q_max} 1/A by {max(overlap, 0.0):.3g} 1/A; accepted: an overlap of at "
            f"least {MIN_OVERLAP_Q} 1/A (check x_unit and wavelength)"
        )

    # Source points used: those within the grid cells' span plus one neighbour outside each end.
    i0 = max(int(np.searchsorted(q, grid.q_min - h / 2, side="right")) - 1, 0)
    i1 = min(int(np.searchsorted(q, grid.q_max + h / 2, side="left")), n_x - 1)
    qs = q[i0 : i1 + 1]
    m = qs.size
    if m < N_PAD_MEAN:
        raise ValueError(
            f"only {m} data points fall on the Q grid {grid.q_min}..{grid.q_max} 1/A; accepted: at least {N_PAD_MEAN}"
        )
    d = np.diff(qs)
    tol = 1e-6 * h
    n_pad_low = int(np.count_nonzero(q_grid < qs[0] - tol))
    n_pad_high = int(np.count_nonzero(q_grid > qs[-1] + tol))
    inside = np.arange(n_pad_low, grid.n_points - n_pad_high)
    qk = np.clip(q_grid[inside], qs[0], qs[-1])
    seg = np.clip(np.searchsorted(qs, qk, side="right") - 1, 0, m - 2)
    average = d[seg] < h * (1.0 - 1e-6)

    rows, cols, vals = [], [], []
    # Padding: the mean of the 5 outermost used points on that side.
    for k_range, c in ((np.arange(n_pad_low), np.arange(N_PAD_MEAN)),
                       (np.arange(grid.n_points - n_pad_high, grid.n_points), np.arange(m - N_PAD_MEAN, m))):
        rows.append(np.repeat(k_range, N_PAD_MEAN))
        cols.append(np.tile(c, k_range.size))
        vals.append(np.full(k_range.size * N_PAD_MEAN, 1.0 / N_PAD_MEAN))
    # Data as coarse as the grid or coarser: each point is taken as the average over its bin (what a strip or
    # area detector integrated to that step records; bin edges halfway between points), and the pattern is
    # rebuilt by area-preserving cubic interpolation (histopolation): the cumulative integral C at the bin
    # edges is interpolated by cubic convolution (Keys 1981, a = -1/2, the Catmull-Rom spline, in the local
    # parameter of each edge segment; an end edge stands in for a missing neighbour), and grid point k gets
    # the mean over its cell, (C(q_k + h/2) - C(q_k - h/2)) / h. The integral over every source bin is
    # the data's, and a peak keeps its width: taking bin averages for point values adds the bin's variance
    # step^2 / 12 (at 626 points over 1-15 1/A the peaks of 10 nm dots then look 2.5 % broader, half the
    # difference between 9.5 and 10 nm dots), and linear interpolation another step^2 / 6.
    k_int = inside[~average]
    if k_int.size:
        # one more source point on each side where the data have it, so that the cubic has its neighbours
        e0, e1 = max(i0 - 1, 0), min(i1 + 1, n_x - 1)
        qe = q[e0 : e1 + 1]
        me = qe.size
        de = np.diff(qe)
        edges = np.concatenate(([qe[0] - de[0] / 2.0], (qe[:-1] + qe[1:]) / 2.0, [qe[-1] + de[-1] / 2.0]))
        widths = np.diff(edges)  # bin widths, one per source point
        ends = np.clip(np.stack([q_grid[k_int] - h / 2.0, q_grid[k_int] + h / 2.0]), edges[0], edges[-1])
        seg_e = np.clip(np.searchsorted(edges, ends, side="right") - 1, 0, me - 1)
        t = (ends - edges[seg_e]) / widths[seg_e]
        t2, t3 = t * t, t * t * t
        cr = ((-t3 + 2.0 * t2 - t) / 2.0, (3.0 * t3 - 5.0 * t2 + 2.0) / 2.0,
              (-3.0 * t3 + 4.0 * t2 + t) / 2.0, (t3 - t2) / 2.0)
        # the cell's weights on the edges C_i (+ at its high end, - at its low end), in a local window of
        # edges base .. base + span
        base = np.maximum(seg_e[0] - 1, 0)
        span = int((np.minimum(seg_e[1] + 2, me) - base).max())
        local = np.zeros((k_int.size, span + 1))
        rk = np.arange(k_int.size)
        for sign, end in ((-1.0, 0), (1.0, 1)):
            for offset, w in zip((-1, 0, 1, 2), cr):
                knot = np.clip(seg_e[end] + offset, 0, me)
                np.add.at(local, (rk, knot - base), sign * w[end])
        # C_i = sum_{l < i} widths_l y_l, so the weight of source l is widths_l times the sum of the edge
        # weights above l (the edge weights of a cell sum to zero, so sources below the window drop out)
        above = np.cumsum(local[:, ::-1], axis=1)[:, ::-1][:, 1:]  # above[:, r] = sum of local[:, r+1:]
        src = base[:, None] + np.arange(span)[None, :]
        ok = (src < me) & (above != 0.0)
        cell = (ends[1] - ends[0])[:, None]
        rows.append(np.broadcast_to(k_int[:, None], src.shape)[ok])
        cols.append(src[ok] + e0 - i0)
        vals.append((widths[np.minimum(src, me - 1)] * above / cell)[ok])
    # Cell average of the piecewise-linear interpolant over [q_k - h/2, q_k + h/2] clipped to the data.
    k_avg = inside[average]
    if k_avg.size:
        a = np.maximum(q_grid[k_avg] - h / 2, qs[0])
        b = np.minimum(q_grid[k_avg] + h / 2, qs[-1])
        ja = np.clip(np.searchsorted(qs, a, side="right") - 1, 0, m - 2)
        jb = np.clip(np.searchsorted(qs, b, side="left") - 1, 0, m - 2)
        counts = jb - ja + 1
        pair_cell = np.repeat(np.arange(k_avg.size), counts)
        offsets = np.arange(pair_cell.size) - np.repeat(np.cumsum(counts) - counts, counts)
        jj = ja[pair_cell] + offsets
        dj = d[jj]
        lo = np.maximum(a[pair_cell], qs[jj])
        hi = np.minimum(b[pair_cell], qs[jj + 1])
        tl = (lo - qs[jj]) / dj
        th = (hi - qs[jj]) / dj
        w_right = dj * (th**2 - tl**2) / 2.0
        w_left = (hi - lo) - w_right
        width = (b - a)[pair_cell]
        rows += [k_avg[pair_cell], k_avg[pair_cell]]
        cols += [jj, jj + 1]
        vals += [w_left / width, w_right / width]

    rows_a, cols_a, vals_a = (np.concatenate(v) for v in (rows, cols, vals))
    operator = sp.csr_matrix((vals_a, (rows_a, cols_a + i0)), shape=(grid.n_points, n_x))
    operator.sum_duplicates()
    operator.eliminate_zeros()

    n_avg = int(k_avg.size)
    n_int = int(inside.size - n_avg)
    method = "average" if n_int == 0 else "interpolate" if n_avg == 0 else "mixed"
    report = StandardizationReport(
        q_min_data=float(max(qs[0], grid.q_min)),
        q_max_data=float(min(qs[-1], grid.q_max)),
        n_pad_low=n_pad_low,
        n_pad_high=n_pad_high,
        coverage=float(inside.size / grid.n_points),
        source_q_step=float(np.median(d)),
        n_source_points=int(m),
        n_averaged=n_avg,
        n_interpolated=n_int,
        method=method,
    )
    return operator, report
