"""Augmentation of clean metal-cluster patterns (SAXS + WAXS on one Q grid) into measured-like network inputs.

Each effect, in the order applied, with its physical meaning (Q in 1/A; ``W`` is a pattern's mean intensity over
its WAXS part, Q >= :data:`WAXS_FROM_Q`, the level every relative amplitude below refers to):

1. **Instrument smearing** (SAXS resolution: beam size, divergence, pixel size): a Gaussian in Q of standard
   deviation sigma (1/A), drawn log-uniformly in ``smearing_sigma_q`` and snapped to one of ``smearing_levels``
   values (each a sparse, row-normalised kernel built once). The same constant sigma applies over the whole grid; in
   WAXS it is small against the peaks' size broadening (2 pi / D ~ 0.06 1/A at 10 nm).
2. **Background** from the sample cell and parasitic scattering: a flat part b W (fluorescence, incoherent
   scattering of the cell), b ~ U(``flat_background``), plus a low-Q power law a I(Q_min) (Q / Q_min)^-alpha
   (slit and window scattering, aggregates), a ~ U(``low_q_background``), alpha ~ U(``low_q_exponent``).
3. **Poisson counting noise** at a drawn signal level: the pattern is counted with c W-level counts per Q point,
   i.e. counts ~ Poisson(c Y / W), c drawn log-uniformly in ``counts_per_point``; back in intensity units the
   variance is Y W / c. ``counts_per_point=None``: no noise.
4. **Solvent-subtraction residual**: a blank scaled by a slightly wrong factor (transmission or thickness error)
   leaves r x (the liquid's scattering curve scaled to mean W over WAXS), r ~ U(``solvent_residual``), positive or
   negative; the curve is the built-in liquid model of :mod:`~qdots_bluesky.sim.physics.solvents` (hexane or
   toluene, drawn). Added after the noise: a systematic, noiseless error.
5. **Overall scale** (detector calibration, concentration, exposure): x 10^U(``log10_scale``).
6. **Q-range masks** (which detectors measured): "both" (the whole grid), "saxs" (Q <= s), "waxs" (Q >= w), "gap"
   (Q <= s and Q >= s + g, two detectors with a gap between), drawn with ``mask_probabilities``; s ~
   U(``saxs_end_q``), w ~ U(``waxs_start_q``), g ~ U(``gap_width_q``). Masked points are set to :data:`MASK_FILL`.

The network input (:func:`network_input`) is two channels per Q point: asinh(Y / median of the measured Y) (log-like
over the decades between SAXS and WAXS, defined for the negative values a residual can leave) with masked points
at 0, and the mask (1 measured, 0 masked).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse

from ...saxs_waxs_input import MASK_FILL, network_input  # noqa: F401  (the one input of training and prediction)
from ..physics.solvents import solvent_pattern

#: Q (1/A) from which a pattern counts as WAXS, for the reference level W.
WAXS_FROM_Q = 1.0
MASK_MODES = ("both", "saxs", "waxs", "gap")
SOLVENTS = ("hexane", "toluene")


def _check_range(name: str, value, lo: float, hi: float, positive: bool = False) -> None:
    ok = len(value) == 2 and all(np.isfinite(v) for v in value) and lo <= value[0] <= value[1] <= hi
    if not ok or (positive and value[0] <= 0):
        raise ValueError(f"{name} {value!r}; accepted: (low, high) with {'0 < ' if positive else ''}{lo} <= low <= high "
                         f"<= {hi}")


@dataclass(frozen=True)
class MetalAugmentSettings:
    """Ranges (low, high) of every drawn effect (see the module docstring); each is drawn per pattern."""

    smearing_sigma_q: tuple[float, float] = (0.001, 0.01)  # 1/A, standard deviation of the Gaussian
    smearing_levels: int = 12
    flat_background: tuple[float, float] = (0.0, 0.3)  # x W
    low_q_background: tuple[float, float] = (0.0, 0.1)  # x I(Q_min)
    low_q_exponent: tuple[float, float] = (2.0, 4.0)
    counts_per_point: tuple[float, float] | None = (30.0, 1e5)  # counts per Q point at the WAXS level W; None: none
    solvent_residual: tuple[float, float] = (-0.2, 0.2)  # x the liquid's curve at mean W over WAXS
    log10_scale: tuple[float, float] = (-2.0, 2.0)
    mask_probabilities: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)  # both, saxs, waxs, gap
    saxs_end_q: tuple[float, float] = (0.3, 1.0)  # 1/A
    waxs_start_q: tuple[float, float] = (0.5, 2.0)  # 1/A
    gap_width_q: tuple[float, float] = (0.05, 1.0)  # 1/A
    wavelength_a: float = 0.56  # A, for the solvent curve

    def __post_init__(self):
        _check_range("smearing_sigma_q", self.smearing_sigma_q, 0.0, 0.1, positive=True)
        _check_range("flat_background", self.flat_background, 0.0, 10.0)
        _check_range("low_q_background", self.low_q_background, 0.0, 10.0)
        _check_range("low_q_exponent", self.low_q_exponent, 0.0, 6.0)
        if self.counts_per_point is not None:
            _check_range("counts_per_point", self.counts_per_point, 0.0, 1e12, positive=True)
        _check_range("solvent_residual", self.solvent_residual, -1.0, 1.0)
        _check_range("log10_scale", self.log10_scale, -10.0, 10.0)
        for name in ("saxs_end_q", "waxs_start_q", "gap_width_q"):
            _check_range(name, getattr(self, name), 0.0, 50.0, positive=True)
        p = np.asarray(self.mask_probabilities, dtype=float)
        if p.shape != (4,) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"mask_probabilities {self.mask_probabilities!r}; accepted: 4 non-negative numbers "
                             f"summing to 1, for {', '.join(MASK_MODES)}")
        if not (isinstance(self.smearing_levels, int) and self.smearing_levels >= 1):
            raise ValueError(f"smearing_levels {self.smearing_levels!r}; accepted: an integer >= 1")

    def off(self) -> "MetalAugmentSettings":
        """The same settings with every effect off (clean patterns on the whole grid, scale 1, no noise)."""
        return replace(self, smearing_sigma_q=(1e-9, 1e-9), smearing_levels=1, flat_background=(0.0, 0.0),
                       low_q_background=(0.0, 0.0), counts_per_point=None, solvent_residual=(0.0, 0.0),
                       log10_scale=(0.0, 0.0), mask_probabilities=(1.0, 0.0, 0.0, 0.0))


def smearing_matrix(q: np.ndarray, sigma_q: float) -> sparse.csr_matrix:
    """Row-normalised Gaussian kernel (standard deviation ``sigma_q``, 1/A, cut at 4 sigma) on a sorted, possibly
    non-uniform Q grid: row i holds G(Q_i - Q_j) dQ_j / sum_j G dQ_j, so a smooth level is kept at the grid's ends
    and the integral over Q is kept away from them."""
    q = np.asarray(q, dtype=float)
    dq = np.gradient(q)
    lo = np.searchsorted(q, q - 4 * sigma_q)
    hi = np.searchsorted(q, q + 4 * sigma_q, side="right")
    n = hi - lo
    rows = np.repeat(np.arange(q.size), n)
    cols = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    w = np.exp(-0.5 * ((q[rows] - q[cols]) / sigma_q) ** 2) * dq[cols]
    w /= np.bincount(rows, weights=w, minlength=q.size)[rows]
    return sparse.csr_matrix((w, (rows, cols)), shape=(q.size, q.size))


def waxs_level(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """W per row: the mean of ``y`` over Q >= :data:`WAXS_FROM_Q` (the whole grid if it has no WAXS part)."""
    waxs = q >= WAXS_FROM_Q
    return (y[:, waxs] if waxs.any() else y).mean(axis=1)


def counting_noise(y: np.ndarray, level: np.ndarray, counts_per_point: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Poisson counts of expected value c y / level (c counts per point at ``level``), back in the units of ``y``:
    variance y level / c per point. Negative expectations are counted as 0; rows with c = inf are left as they are."""
    counts = np.asarray(counts_per_point, dtype=float)
    out = np.array(y, dtype=float)
    rows = np.flatnonzero(np.isfinite(counts))
    factor = (counts[rows] / np.asarray(level, dtype=float)[rows])[:, None]
    out[rows] = rng.poisson(np.maximum(out[rows], 0.0) * factor) / factor
    return out


def q_mask(q: np.ndarray, mode: np.ndarray, saxs_end: np.ndarray, waxs_start: np.ndarray,
           gap: np.ndarray) -> np.ndarray:
    """Measured points (rows x Q, bool) for each row's mask mode (:data:`MASK_MODES` index) and edges (1/A)."""
    q = np.asarray(q)[None, :]
    s, w, g = (np.asarray(v, dtype=float)[:, None] for v in (saxs_end, waxs_start, gap))
    mode = np.asarray(mode)[:, None]
    return ((mode == 0) | ((mode == 1) & (q <= s)) | ((mode == 2) & (q >= w))
            | ((mode == 3) & ((q <= s) | (q >= s + g))))


class MetalAugmenter:
    """Clean patterns (rows x Q, electron units, crystal + Compton) on the grid ``q`` and the settings that turn
    rows of them into network inputs (:meth:`sample`); :meth:`with_patterns` gives another epoch's patterns."""

    def __init__(self, q: np.ndarray, patterns: np.ndarray | None = None,
                 settings: MetalAugmentSettings | None = None):
        self.q = np.asarray(q, dtype=float)
        if self.q.ndim != 1 or self.q.size < 2 or np.any(np.diff(self.q) <= 0):
            raise ValueError(f"q of shape {self.q.shape}; accepted: an increasing 1-D grid in 1/A")
        self.patterns = np.zeros((0, self.q.size)) if patterns is None else np.asarray(patterns, dtype=float)
        if self.patterns.ndim != 2 or self.patterns.shape[1] != self.q.size:
            raise ValueError(f"patterns of shape {self.patterns.shape}; accepted: (rows, {self.q.size}) on q")
        self.settings = settings or MetalAugmentSettings()
        lo, hi = self.settings.smearing_sigma_q
        self.sigma_levels = np.geomspace(lo, hi, self.settings.smearing_levels)
        self._kernels: dict[int, sparse.csr_matrix] = {}
        liquids = [solvent_pattern(s, self.q, self.settings.wavelength_a) for s in SOLVENTS]
        self.liquids = np.stack([c / waxs_level(self.q, c[None])[0] for c in liquids])  # mean 1 over WAXS

    def with_patterns(self, patterns: np.ndarray) -> "MetalAugmenter":
        """The same grid, settings and kernels with new clean patterns."""
        new = object.__new__(MetalAugmenter)
        new.__dict__.update(self.__dict__)
        new.patterns = np.asarray(patterns, dtype=float)
        if new.patterns.ndim != 2 or new.patterns.shape[1] != self.q.size:
            raise ValueError(f"patterns of shape {new.patterns.shape}; accepted: (rows, {self.q.size}) on q")
        return new

    def kernel(self, level: int) -> sparse.csr_matrix:
        if level not in self._kernels:
            self._kernels[level] = smearing_matrix(self.q, float(self.sigma_levels[level]))
        return self._kernels[level]

    def draw(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The drawn parameters of ``n`` augmentations (one value per row; names as in the module docstring)."""
        s = self.settings

        def uniform(r, log=False):
            return 10 ** rng.uniform(*np.log10(r), n) if log else rng.uniform(*r, n)
        sigma = uniform(s.smearing_sigma_q, log=True)
        level = np.abs(np.log(sigma)[:, None] - np.log(self.sigma_levels)[None, :]).argmin(axis=1)
        return {"smearing_level": level, "smearing_sigma_q": self.sigma_levels[level],
                "flat_background": uniform(s.flat_background), "low_q_background": uniform(s.low_q_background),
                "low_q_exponent": uniform(s.low_q_exponent),
                "counts_per_point": np.full(n, np.inf) if s.counts_per_point is None else uniform(s.counts_per_point, True),
                "solvent": rng.integers(0, len(SOLVENTS), n), "solvent_residual": uniform(s.solvent_residual),
                "scale": 10 ** uniform(s.log10_scale), "mask_mode": rng.choice(4, n, p=np.asarray(s.mask_probabilities)),
                "saxs_end_q": uniform(s.saxs_end_q), "waxs_start_q": uniform(s.waxs_start_q),
                "gap_width_q": uniform(s.gap_width_q)}

    def augment(self, clean: np.ndarray, p: dict[str, np.ndarray], rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
        """Measured-like intensities (rows x Q, :data:`MASK_FILL` where masked) and the mask of ``clean`` rows
        under the drawn parameters ``p`` (:meth:`draw`), steps 1-6 of the module docstring."""
        y = np.array(clean, dtype=float)
        for level in np.unique(p["smearing_level"]):
            rows = np.flatnonzero(p["smearing_level"] == level)
            y[rows] = (self.kernel(int(level)) @ y[rows].T).T
        w = waxs_level(self.q, y)
        y += p["flat_background"][:, None] * w[:, None]
        y += (p["low_q_background"] * y[:, 0])[:, None] * (self.q[None, :] / self.q[0]) ** -p["low_q_exponent"][:, None]
        y = counting_noise(y, w, p["counts_per_point"], rng)
        y += (p["solvent_residual"] * w)[:, None] * self.liquids[p["solvent"]]
        y *= p["scale"][:, None]
        mask = q_mask(self.q, p["mask_mode"], p["saxs_end_q"], p["waxs_start_q"], p["gap_width_q"])
        return np.where(mask, y, MASK_FILL), mask

    def sample(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Network inputs (rows, 2, Q) of the clean patterns ``indices`` (:func:`network_input`) and the meta data:
        the drawn parameters, the intensities and masks, and ``fraction`` (1: every row holds clusters, as the
        batch producer of :mod:`.sources` expects)."""
        idx = np.asarray(indices)
        p = self.draw(idx.size, rng)
        intensity, mask = self.augment(self.patterns[idx], p, rng)
        return network_input(intensity, mask), p | {"intensity": intensity, "mask": mask, "fraction": np.ones(idx.size)}
